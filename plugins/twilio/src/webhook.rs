//! Reading Twilio's webhooks (already verified): status callbacks and inbound messages.
//!
//! Both arrive as form posts. A status word of `received`/`receiving` (in `MessageStatus` or the
//! legacy `SmsStatus`) marks an inbound message; any other status word marks a status callback; a
//! request with a `Body` and no status word is taken as an inbound message too.

use crate::bindings::exports::herald::plugin::provider_api::{
    DeliveryState, InboundMessage, ProviderError, StatusUpdate, WebhookError, WebhookEvent,
};
use crate::bindings::herald::plugin::types::HttpRequest;
use crate::fields;
use crate::form::{self, Fields};

/// Reads the events in one webhook request (Twilio sends one event per request).
pub fn parse(request: &HttpRequest) -> Result<Vec<WebhookEvent>, WebhookError> {
    if !form::is_form(request) {
        return Err(malformed(
            "the body is not application/x-www-form-urlencoded",
        ));
    }
    let fields = Fields::parse(&request.body);
    let status = fields.first_of(&["MessageStatus", "SmsStatus"]);
    let event = match status {
        Some(word) if is_inbound_status(word) => WebhookEvent::Inbound(inbound(&fields)?),
        Some(word) => WebhookEvent::Status(status_update(&fields, word)?),
        None if fields.raw("Body").is_some() => WebhookEvent::Inbound(inbound(&fields)?),
        None => {
            return Err(malformed(
                "neither a status callback (no MessageStatus) nor an inbound message (no Body)",
            ));
        }
    };
    Ok(vec![event])
}

/// Maps Twilio's status word to the host's state; `None` for words the host has no state for.
pub fn delivery_state(word: &str) -> Option<DeliveryState> {
    Some(match word {
        "queued" | "accepted" | "scheduled" => DeliveryState::Queued,
        "sending" => DeliveryState::Sending,
        "sent" => DeliveryState::Sent,
        "delivered" => DeliveryState::Delivered,
        "undelivered" => DeliveryState::Undelivered,
        "failed" => DeliveryState::Failed,
        "canceled" => DeliveryState::Canceled,
        "read" => DeliveryState::Read,
        _ => return None,
    })
}

fn is_inbound_status(word: &str) -> bool {
    matches!(word, "received" | "receiving")
}

fn status_update(fields: &Fields, word: &str) -> Result<StatusUpdate, WebhookError> {
    let state = delivery_state(word)
        .ok_or_else(|| malformed(&format!("unknown message status `{word}`")))?;
    let provider_message_id = fields
        .first_of(&["MessageSid", "SmsSid"])
        .ok_or_else(|| malformed("a status callback without MessageSid"))?;
    // Twilio sends `ErrorCode` on failures; `0` would mean "no error" if a channel ever sent it.
    let error = fields
        .get("ErrorCode")
        .filter(|code| *code != "0")
        .map(|code| ProviderError {
            code: Some(code.to_string()),
            message: fields
                .first_of(&["ErrorMessage", "ChannelStatusMessage"])
                .map(str::to_string)
                .unwrap_or_else(|| describe_code(code)),
        });
    Ok(StatusUpdate {
        provider_message_id: provider_message_id.to_string(),
        state,
        provider_status: word.to_string(),
        error,
        segments: fields.get("NumSegments").and_then(fields::segments),
        price: fields
            .get("Price")
            .and_then(|amount| fields::price(amount, fields.get("PriceUnit"))),
    })
}

fn inbound(fields: &Fields) -> Result<InboundMessage, WebhookError> {
    let required = |names: &[&str], what: &str| {
        fields
            .first_of(names)
            .map(str::to_string)
            .ok_or_else(|| malformed(&format!("an inbound message without {what}")))
    };
    Ok(InboundMessage {
        provider_message_id: required(&["MessageSid", "SmsMessageSid", "SmsSid"], "MessageSid")?,
        from: required(&["From"], "From")?,
        to: required(&["To"], "To")?,
        body: fields.raw("Body").unwrap_or_default().to_string(),
        segments: fields.get("NumSegments").and_then(fields::segments),
    })
}

/// A short description for error codes Twilio's callbacks carry without a message.
fn describe_code(code: &str) -> String {
    let text = match code {
        "30001" => "queue overflow",
        "30002" => "account suspended",
        "30003" => "unreachable destination handset",
        "30004" => "message blocked",
        "30005" => "unknown destination handset",
        "30006" => "landline or unreachable carrier",
        "30007" => "message filtered by the carrier",
        "30008" => "unknown error",
        "30032" => "toll-free number not verified",
        "30034" => "message from an unregistered A2P 10DLC number",
        _ => return format!("Twilio error {code}"),
    };
    format!("Twilio error {code}: {text}")
}

fn malformed(why: &str) -> WebhookError {
    WebhookError::Malformed(why.to_string())
}

#[cfg(test)]
#[path = "webhook_tests.rs"]
mod tests;
