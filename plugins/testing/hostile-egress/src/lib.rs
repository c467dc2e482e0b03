//! A test fixture for the Herald host's egress checks: a provider whose `send` makes exactly the
//! outbound request its message body spells out, headers included.
//!
//! The body is lines: the first is `METHOD URL`; each further line is a header `Name: value`, or
//! `*COUNT PREFIX`, which adds COUNT headers named `PREFIX0`, `PREFIX1`, … with the value `x`.
//!
//! A response is accepted with id = body text and status = HTTP status. A failed request is
//! refused when the host denied it or found it invalid, retryable when it never connected,
//! unknown when it may have been sent; the error text is the host's error (`Debug` form).
//!
//! Built against `herald:plugin@0.2.0`.

/// Bindings generated from the WIT contract.
mod bindings {
    #![allow(missing_docs)]
    wit_bindgen::generate!({ world: "provider", path: "../../../wit/v0.2.0" });
}

use bindings::exports::herald::plugin::provider_api::{
    Accepted, FetchStatusError, Guest, OutboundMessage, ProviderError, RetryableError, SendError,
    StatusUpdate, WebhookError, WebhookEvent,
};
use bindings::herald::plugin::http;
use bindings::herald::plugin::types::{HttpError, HttpRequest, NotSentReason, PluginInfo};

/// The exported component.
struct HostileEgress;

impl Guest for HostileEgress {
    fn describe() -> PluginInfo {
        PluginInfo {
            name: "hostile-egress".to_string(),
            version: "1.0.0".to_string(),
            description: "Test fixture that sends the request its message body spells out."
                .to_string(),
            config_keys: Vec::new(),
            outbound_hosts: Vec::new(),
        }
    }

    fn send(
        _config: Vec<(String, String)>,
        message: OutboundMessage,
    ) -> Result<Accepted, SendError> {
        let request = parse(&message.body)?;
        match http::send(&request) {
            Ok(response) => Ok(Accepted {
                provider_message_id: String::from_utf8_lossy(&response.body).into_owned(),
                provider_status: response.status.to_string(),
                segments: None,
                price: None,
                sender: None,
            }),
            Err(error) => Err(http_failure(error)),
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

    fn fetch_status(
        _config: Vec<(String, String)>,
        _provider_message_id: String,
    ) -> Result<StatusUpdate, FetchStatusError> {
        Err(FetchStatusError::Permanent(plugin_error(
            "hostile-egress does not look up statuses".to_string(),
        )))
    }
}

/// The request a message body spells out.
fn parse(body: &str) -> Result<HttpRequest, SendError> {
    let mut lines = body.lines();
    let first = lines.next().unwrap_or_default();
    let Some((method, url)) = first.split_once(' ') else {
        return Err(SendError::Refused(plugin_error(format!(
            "hostile-egress: the first line must be `METHOD URL`, got `{first}`"
        ))));
    };
    let mut headers = Vec::new();
    for line in lines {
        if let Some(spec) = line.strip_prefix('*') {
            let (count, prefix) = spec.split_once(' ').unwrap_or((spec, "x-h"));
            let count: usize = count.parse().unwrap_or(0);
            headers.extend((0..count).map(|i| (format!("{prefix}{i}"), "x".to_string())));
        } else if let Some((name, value)) = line.split_once(':') {
            headers.push((name.trim().to_string(), value.trim().to_string()));
        }
    }
    Ok(HttpRequest {
        method: method.to_string(),
        url: url.to_string(),
        headers,
        body: Vec::new(),
    })
}

/// Refused when the host would not send it, retryable when it never connected, unknown when it
/// may have reached the server. The message is the host's error.
fn http_failure(error: HttpError) -> SendError {
    let text = format!("{error:?}");
    match error {
        HttpError::NotSent(NotSentReason::Denied(_) | NotSentReason::InvalidRequest(_)) => {
            SendError::Refused(plugin_error(text))
        }
        HttpError::NotSent(NotSentReason::Unreachable(_)) => SendError::Retryable(RetryableError {
            error: plugin_error(text),
            retry_after_ms: None,
        }),
        HttpError::MaybeSent(_) => SendError::Unknown(plugin_error(text)),
    }
}

fn plugin_error(message: String) -> ProviderError {
    ProviderError {
        code: None,
        message,
    }
}

bindings::export!(HostileEgress with_types_in bindings);
