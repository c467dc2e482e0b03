//! A test fixture for the Herald host: a provider built against the frozen `herald:plugin@0.1.0`
//! (`wit/v0.1.0`), so the host's tests can prove that components of the first contract version
//! keep loading and working.
//!
//! | body | behaviour |
//! |---|---|
//! | `http:<url>` | GETs `<url>` through the host; accepted with id = body text, status = HTTP status, or an error whose text is 0.1.0's `http-error` as received |
//! | anything else | accepted with id `contract-0.1.0-<message-id>`, status `queued` |

/// Bindings generated from the 0.1.0 contract.
mod bindings {
    #![allow(missing_docs)]
    wit_bindgen::generate!({ world: "provider", path: "../../../wit/v0.1.0" });
}

use bindings::exports::herald::plugin::provider_api::{
    Accepted, Guest, OutboundMessage, ProviderError, SendError, WebhookError, WebhookEvent,
};
use bindings::herald::plugin::http;
use bindings::herald::plugin::log::{Level, log};
use bindings::herald::plugin::types::{HttpError, HttpRequest, PluginInfo};

/// The exported component.
struct Probe;

impl Guest for Probe {
    fn describe() -> PluginInfo {
        PluginInfo {
            name: "contract-0.1.0".to_string(),
            version: "1.0.0".to_string(),
            description: "Test fixture built against herald:plugin@0.1.0.".to_string(),
            config_keys: Vec::new(),
            outbound_hosts: Vec::new(),
        }
    }

    fn send(
        _config: Vec<(String, String)>,
        message: OutboundMessage,
    ) -> Result<Accepted, SendError> {
        log(
            Level::Debug,
            &format!("contract-0.1.0 send {}", message.message_id),
        );
        match message.body.strip_prefix("http:") {
            Some(url) => get(url),
            None => Ok(accepted(
                format!("contract-0.1.0-{}", message.message_id),
                "queued",
            )),
        }
    }

    fn verify_webhook(
        _config: Vec<(String, String)>,
        _request: HttpRequest,
    ) -> Result<(), WebhookError> {
        Ok(())
    }

    fn parse_webhook(
        _config: Vec<(String, String)>,
        _request: HttpRequest,
    ) -> Result<Vec<WebhookEvent>, WebhookError> {
        Ok(Vec::new())
    }
}

fn accepted(id: String, status: &str) -> Accepted {
    Accepted {
        provider_message_id: id,
        provider_status: status.to_string(),
        segments: None,
        price: None,
    }
}

/// GETs `url`; a failure is mapped as 0.1.0 plugins had to: only `denied` and `invalid-request`
/// say nothing was sent, everything else may have reached the server.
fn get(url: &str) -> Result<Accepted, SendError> {
    let request = HttpRequest {
        method: "GET".to_string(),
        url: url.to_string(),
        headers: Vec::new(),
        body: Vec::new(),
    };
    match http::send(&request) {
        Ok(response) => Ok(accepted(
            String::from_utf8_lossy(&response.body).into_owned(),
            &response.status.to_string(),
        )),
        Err(error) => {
            let text = ProviderError {
                code: None,
                message: format!("{error:?}"),
            };
            Err(match error {
                HttpError::Denied(_) | HttpError::InvalidRequest(_) => SendError::Refused(text),
                HttpError::Timeout | HttpError::Transport(_) | HttpError::ResponseTooLarge => {
                    SendError::Unknown(text)
                }
            })
        }
    }
}

bindings::export!(Probe with_types_in bindings);
