//! Herald's Twilio provider: a WebAssembly component (world `provider` of `herald:plugin@0.2.0`)
//! that sends SMS through Twilio's Messages API, reads Twilio's signed webhooks and reads a
//! message's status back when its callbacks were lost.
//!
//! This file owns the component's exports and the calls to the host's imports; everything it
//! decides is done by the pure modules below, which have native unit tests.

mod config;
mod fetch;
mod fields;
mod form;
mod response;
mod send;
mod signature;
mod status;
mod webhook;

/// Bindings generated from the WIT contract.
mod bindings {
    #![allow(missing_docs)]
    wit_bindgen::generate!({
        world: "provider",
        path: "../../wit/v0.2.0",
        // Lets the unit tests compare results directly.
        additional_derives: [PartialEq],
    });
}

use bindings::exports::herald::plugin::provider_api::{
    Accepted, FetchStatusError, Guest, OutboundMessage, ProviderError, SendError, StatusUpdate,
    WebhookError, WebhookEvent,
};
use bindings::herald::plugin::http;
use bindings::herald::plugin::log::{Level, log};
use bindings::herald::plugin::types::{HttpRequest, PluginInfo};

/// The exported component.
struct Twilio;

impl Guest for Twilio {
    fn describe() -> PluginInfo {
        PluginInfo {
            name: "twilio".to_string(),
            version: env!("CARGO_PKG_VERSION").to_string(),
            description: "Sends SMS through Twilio Programmable Messaging and reads its status \
                          and inbound-message webhooks."
                .to_string(),
            config_keys: config::config_keys(),
            outbound_hosts: vec!["api.twilio.com".to_string()],
        }
    }

    fn send(
        config: Vec<(String, String)>,
        message: OutboundMessage,
    ) -> Result<Accepted, SendError> {
        let refused = |message: String| {
            SendError::Refused(ProviderError {
                code: None,
                message,
            })
        };
        let settings = config::SendConfig::parse(&config).map_err(refused)?;
        if message.to.trim().is_empty() {
            return Err(SendError::InvalidRecipient(ProviderError {
                code: None,
                message: "the recipient is empty".to_string(),
            }));
        }
        let request = send::build_request(&settings, &message).map_err(refused)?;
        log(
            Level::Debug,
            &format!(
                "sending message {} (attempt {})",
                message.message_id, message.attempt
            ),
        );
        let outcome = response::map_outcome(http::send(&request));
        match &outcome {
            Ok(accepted) => log(
                Level::Debug,
                &format!(
                    "message {} accepted as {} ({})",
                    message.message_id, accepted.provider_message_id, accepted.provider_status
                ),
            ),
            Err(error) => log(
                Level::Warn,
                &format!(
                    "message {} not accepted: {}",
                    message.message_id,
                    summary(error)
                ),
            ),
        }
        outcome
    }

    fn verify_webhook(
        config: Vec<(String, String)>,
        request: HttpRequest,
    ) -> Result<(), WebhookError> {
        let Some(auth_token) = config::lookup(&config, "auth_token") else {
            // Twilio signs with the Auth Token even when sends use an API key, so without it no
            // webhook can be trusted.
            log(
                Level::Error,
                "cannot verify a webhook: config key `auth_token` is not set",
            );
            return Err(WebhookError::BadSignature);
        };
        signature::verify(&request, auth_token)
    }

    fn parse_webhook(
        _config: Vec<(String, String)>,
        request: HttpRequest,
    ) -> Result<Vec<WebhookEvent>, WebhookError> {
        webhook::parse(&request)
    }

    fn fetch_status(
        config: Vec<(String, String)>,
        provider_message_id: String,
    ) -> Result<StatusUpdate, FetchStatusError> {
        // Settings are the operator's to fix; once fixed, the same question gets an answer.
        let settings = config::SendConfig::parse(&config)
            .map_err(|message| fetch::retryable(None, message, None))?;
        let request = fetch::build_request(&settings, &provider_message_id)?;
        let outcome = fetch::map_outcome(&provider_message_id, http::send(&request));
        match &outcome {
            Ok(update) => log(
                Level::Debug,
                &format!(
                    "message {provider_message_id} is {} at Twilio",
                    update.provider_status
                ),
            ),
            Err(FetchStatusError::Retryable(r)) => log(
                Level::Warn,
                &format!(
                    "could not read message {provider_message_id}: {}",
                    r.error.message
                ),
            ),
            Err(FetchStatusError::Permanent(e)) => log(
                Level::Warn,
                &format!(
                    "Twilio will not report message {provider_message_id}: {}",
                    e.message
                ),
            ),
        }
        outcome
    }
}

/// One line about a send error for the host's log (no secrets: only Twilio's code and text).
fn summary(error: &SendError) -> String {
    let (kind, detail) = match error {
        SendError::Retryable(r) => ("retryable", &r.error),
        SendError::Refused(e) => ("refused", e),
        SendError::Unknown(e) => ("unknown", e),
        SendError::OptedOut(e) => ("opted-out", e),
        SendError::InvalidRecipient(e) => ("invalid-recipient", e),
    };
    match &detail.code {
        Some(code) => format!("{kind} (Twilio {code}): {}", detail.message),
        None => format!("{kind}: {}", detail.message),
    }
}

bindings::export!(Twilio with_types_in bindings);
