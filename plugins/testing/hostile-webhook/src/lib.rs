//! A hostile test fixture for the Herald host's sandbox tests: a provider that accepts every
//! webhook, unsigned or not, and reports whatever the body asks, one event per line:
//!
//! | line | event |
//! |---|---|
//! | `status <provider-id> <state> [<price-micros> [<segments>]]` | a status report (`state` as in the WIT: `delivered`, `read`, …), price in USD |
//! | `inbound <id> <from> <to> <text…>` | an inbound message; `id` = `header` takes the `x-hostile-id` header, so a replay of the same body can carry another id |
//!
//! `send` accepts every message with id `hostile-<message-id>`; `fetch-status` answers permanent.
//!
//! Built against `herald:plugin@0.2.0`.

/// Bindings generated from the WIT contract.
mod bindings {
    #![allow(missing_docs)]
    wit_bindgen::generate!({ world: "provider", path: "../../../wit/v0.2.0" });
}

use bindings::exports::herald::plugin::provider_api::{
    Accepted, DeliveryState, FetchStatusError, Guest, InboundMessage, OutboundMessage,
    ProviderError, SendError, StatusUpdate, WebhookError, WebhookEvent,
};
use bindings::herald::plugin::types::{HttpRequest, Money, PluginInfo};

/// The exported component.
struct Hostile;

impl Guest for Hostile {
    fn describe() -> PluginInfo {
        PluginInfo {
            name: "hostile-webhook".to_string(),
            version: "1.0.0".to_string(),
            description: "Hostile fixture: accepts every webhook and reports what its body asks."
                .to_string(),
            config_keys: Vec::new(),
            outbound_hosts: Vec::new(),
        }
    }

    fn send(
        _config: Vec<(String, String)>,
        message: OutboundMessage,
    ) -> Result<Accepted, SendError> {
        Ok(Accepted {
            provider_message_id: format!("hostile-{}", message.message_id),
            provider_status: "accepted".to_string(),
            segments: None,
            price: None,
            sender: None,
        })
    }

    fn verify_webhook(
        _config: Vec<(String, String)>,
        _request: HttpRequest,
    ) -> Result<(), WebhookError> {
        Ok(())
    }

    fn parse_webhook(
        _config: Vec<(String, String)>,
        request: HttpRequest,
    ) -> Result<Vec<WebhookEvent>, WebhookError> {
        let body = String::from_utf8_lossy(&request.body).into_owned();
        let header_id = request
            .headers
            .iter()
            .find(|(name, _)| name.eq_ignore_ascii_case("x-hostile-id"))
            .map(|(_, value)| value.clone())
            .unwrap_or_default();
        body.lines()
            .filter(|line| !line.trim().is_empty())
            .map(|line| event(line, &header_id))
            .collect()
    }

    fn fetch_status(
        _config: Vec<(String, String)>,
        _provider_message_id: String,
    ) -> Result<StatusUpdate, FetchStatusError> {
        Err(FetchStatusError::Permanent(ProviderError {
            code: None,
            message: "hostile-webhook does not look statuses up".to_string(),
        }))
    }
}

/// One line of the body as an event.
fn event(line: &str, header_id: &str) -> Result<WebhookEvent, WebhookError> {
    let words: Vec<&str> = line.split_whitespace().collect();
    let malformed = || WebhookError::Malformed(format!("cannot read line {line:?}"));
    match words.as_slice() {
        ["status", id, state, rest @ ..] => Ok(WebhookEvent::Status(StatusUpdate {
            provider_message_id: (*id).to_string(),
            state: state_named(state).ok_or_else(malformed)?,
            provider_status: (*state).to_string(),
            error: None,
            price: match rest.first() {
                Some(micros) => Some(Money {
                    micros: micros.parse().map_err(|_| malformed())?,
                    currency: "USD".to_string(),
                }),
                None => None,
            },
            segments: match rest.get(1) {
                Some(n) => Some(n.parse().map_err(|_| malformed())?),
                None => None,
            },
            sender: None,
        })),
        ["inbound", id, from, to, text @ ..] => Ok(WebhookEvent::Inbound(InboundMessage {
            provider_message_id: if *id == "header" {
                header_id.to_string()
            } else {
                (*id).to_string()
            },
            from: (*from).to_string(),
            to: (*to).to_string(),
            body: text.join(" "),
            segments: None,
        })),
        _ => Err(malformed()),
    }
}

fn state_named(name: &str) -> Option<DeliveryState> {
    Some(match name {
        "queued" => DeliveryState::Queued,
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

bindings::export!(Hostile with_types_in bindings);
