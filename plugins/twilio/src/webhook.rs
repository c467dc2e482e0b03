//! Reading Twilio's webhooks (already verified): status callbacks and inbound messages.
//!
//! Both arrive as form posts. A status word of `received`/`receiving` (in `MessageStatus` or the
//! legacy `SmsStatus`) marks an inbound message; any other documented status word marks a status
//! callback ([`crate::status`] says what each means); a request with a `Body` and no status word
//! is taken as an inbound message too.

use crate::bindings::exports::herald::plugin::provider_api::{
    InboundMessage, ProviderError, StatusUpdate, WebhookError, WebhookEvent,
};
use crate::bindings::herald::plugin::types::HttpRequest;
use crate::fields;
use crate::form::{self, Fields};
use crate::status::{self, Meaning};

/// Reads the events in one webhook request (Twilio sends one event per request).
pub fn parse(request: &HttpRequest) -> Result<Vec<WebhookEvent>, WebhookError> {
    if !form::is_form(request) {
        return Err(malformed(
            "the body is not application/x-www-form-urlencoded",
        ));
    }
    let fields = Fields::parse(&request.body);
    let status = fields.first_of(&["MessageStatus", "SmsStatus"]);
    let event = match status.map(|word| (word, status::meaning(word))) {
        Some((_, Some(Meaning::Inbound))) => WebhookEvent::Inbound(inbound(&fields)?),
        Some((word, Some(Meaning::Outbound(_)))) => {
            WebhookEvent::Status(status_update(&fields, word)?)
        }
        Some((word, None)) => return Err(malformed(&format!("unknown message status `{word}`"))),
        None if fields.raw("Body").is_some() => WebhookEvent::Inbound(inbound(&fields)?),
        None => {
            return Err(malformed(
                "neither a status callback (no MessageStatus) nor an inbound message (no Body)",
            ));
        }
    };
    Ok(vec![event])
}

fn status_update(fields: &Fields, word: &str) -> Result<StatusUpdate, WebhookError> {
    let Some(Meaning::Outbound(state)) = status::meaning(word) else {
        return Err(malformed(&format!(
            "`{word}` is not a status of an outbound message"
        )));
    };
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
                .unwrap_or_else(|| status::describe_code(code)),
        })
        .or_else(|| status::implied_error(word));
    Ok(StatusUpdate {
        provider_message_id: provider_message_id.to_string(),
        state,
        provider_status: word.to_string(),
        error,
        segments: fields.get("NumSegments").and_then(fields::segments),
        price: fields
            .get("Price")
            .and_then(|amount| fields::price(amount, fields.get("PriceUnit"))),
        sender: fields.get("From").map(str::to_string),
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

fn malformed(why: &str) -> WebhookError {
    WebhookError::Malformed(why.to_string())
}

#[cfg(test)]
#[path = "webhook_tests.rs"]
mod tests;
