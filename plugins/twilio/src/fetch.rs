//! `fetch-status`: reading one message back from the Messages API
//! (`GET /2010-04-01/Accounts/{AccountSid}/Messages/{Sid}.json`, Basic auth) when its status
//! callbacks may have been lost.
//!
//! A lookup changes nothing at Twilio, so repeating one is always safe: every failure that may
//! pass (no connection, a timeout, 429, 5xx, credentials Twilio refused, an answer that is not a
//! Message) is `retryable`; Twilio not knowing the SID (404), any other client error, a SID that
//! is not a message's, a status word Twilio does not document and an inbound message are
//! `permanent`. The Message resource maps field by field: `status` through [`crate::status`],
//! `error_code`/`error_message`, `price`/`price_unit` (a negative charge, kept as a positive
//! cost), `num_segments` and `from`.

use serde_json::Value;

use crate::bindings::exports::herald::plugin::provider_api::{
    FetchStatusError, ProviderError, RetryableError, StatusUpdate,
};
use crate::bindings::herald::plugin::types::{HttpError, HttpRequest, HttpResponse};
use crate::config::{SendConfig, is_sid};
use crate::fields;
use crate::response::{self, snippet, text};
use crate::status::{self, Meaning};

/// Builds the request that reads message `sid`. The error says why the SID cannot be asked about.
pub fn build_request(config: &SendConfig, sid: &str) -> Result<HttpRequest, FetchStatusError> {
    // The SID goes into the request path: only a message SID's exact shape may.
    if !(is_sid(sid, "SM") || is_sid(sid, "MM")) {
        return Err(permanent(
            None,
            "not a Twilio message SID (SM or MM followed by 32 hex digits)".to_string(),
        ));
    }
    Ok(HttpRequest {
        method: "GET".to_string(),
        url: format!(
            "{}/2010-04-01/Accounts/{}/Messages/{sid}.json",
            config.base_url, config.account_sid
        ),
        headers: vec![
            ("Accept".to_string(), "application/json".to_string()),
            (
                "Authorization".to_string(),
                config.credentials.authorization(),
            ),
            (
                "User-Agent".to_string(),
                concat!("herald-twilio/", env!("CARGO_PKG_VERSION")).to_string(),
            ),
        ],
        body: Vec::new(),
    })
}

/// Maps the host's HTTP outcome of the lookup of message `sid`.
pub fn map_outcome(
    sid: &str,
    outcome: Result<HttpResponse, HttpError>,
) -> Result<StatusUpdate, FetchStatusError> {
    match outcome {
        Ok(response) => map_response(sid, &response),
        // Sent or not, a lookup changed nothing: asking again is safe.
        Err(error) => Err(retryable(
            None,
            format!(
                "could not read the message from Twilio: {}",
                http_error(&error)
            ),
            None,
        )),
    }
}

fn map_response(sid: &str, response: &HttpResponse) -> Result<StatusUpdate, FetchStatusError> {
    let status = response.status;
    let json: Option<Value> = serde_json::from_slice(&response.body).ok();
    if status == 200 {
        return match &json {
            Some(message) => status_update(sid, message),
            None => Err(retryable(
                None,
                format!(
                    "Twilio answered HTTP 200 but the body is not a Message ({})",
                    snippet(&response.body)
                ),
                None,
            )),
        };
    }
    let code = json.as_ref().and_then(|j| j.get("code")).and_then(text);
    let message = json
        .as_ref()
        .and_then(|j| j.get("message"))
        .and_then(Value::as_str)
        .map(str::to_string)
        .unwrap_or_else(|| format!("Twilio answered HTTP {status}: {}", snippet(&response.body)));
    match status {
        429 | 500..=599 => Err(retryable(
            code,
            message,
            response::retry_after_ms(&response.headers),
        )),
        // Credentials are the operator's to fix, and then the same question gets an answer.
        401 | 403 => Err(retryable(code, message, None)),
        400..=499 => Err(permanent(code, message)),
        // A redirect or the like comes from something in front of `base_url`, not from Twilio.
        _ => Err(retryable(code, message, None)),
    }
}

/// Reads a Message resource into a status update.
fn status_update(sid: &str, message: &Value) -> Result<StatusUpdate, FetchStatusError> {
    let Some(word) = message.get("status").and_then(Value::as_str) else {
        return Err(retryable(
            None,
            "Twilio's Message has no status".to_string(),
            None,
        ));
    };
    let state = match status::meaning(word) {
        Some(Meaning::Outbound(state)) => state,
        Some(Meaning::Inbound) => {
            return Err(permanent(
                None,
                format!("{sid} is an inbound message (status `{word}`)"),
            ));
        }
        None => {
            return Err(permanent(
                None,
                format!("Twilio reported status `{word}`, which this plugin does not know"),
            ));
        }
    };
    let error = message
        .get("error_code")
        .and_then(text)
        .filter(|code| code != "0")
        .map(|code| ProviderError {
            message: message
                .get("error_message")
                .and_then(Value::as_str)
                .filter(|m| !m.trim().is_empty())
                .map(str::to_string)
                .unwrap_or_else(|| status::describe_code(&code)),
            code: Some(code),
        })
        .or_else(|| status::implied_error(word));
    Ok(StatusUpdate {
        provider_message_id: message
            .get("sid")
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .unwrap_or(sid)
            .to_string(),
        state,
        provider_status: word.to_string(),
        error,
        segments: message
            .get("num_segments")
            .and_then(text)
            .and_then(|n| fields::segments(&n)),
        price: message.get("price").and_then(text).and_then(|amount| {
            fields::price(&amount, message.get("price_unit").and_then(Value::as_str))
        }),
        sender: response::sender(message),
    })
}

/// The host's error as one line (its texts carry no secrets).
fn http_error(error: &HttpError) -> String {
    use crate::bindings::herald::plugin::types::{MaybeSentReason, NotSentReason};
    match error {
        HttpError::NotSent(NotSentReason::Denied(text)) => format!("denied by the host: {text}"),
        HttpError::NotSent(NotSentReason::InvalidRequest(text)) => {
            format!("invalid request: {text}")
        }
        HttpError::NotSent(NotSentReason::Unreachable(text)) => format!("unreachable: {text}"),
        HttpError::MaybeSent(MaybeSentReason::Timeout) => "timed out".to_string(),
        HttpError::MaybeSent(MaybeSentReason::Transport(text)) => format!("transport: {text}"),
        HttpError::MaybeSent(MaybeSentReason::ResponseTooLarge) => {
            "the answer exceeded the host's size limit".to_string()
        }
    }
}

/// A failure that may pass.
pub fn retryable(
    code: Option<String>,
    message: String,
    retry_after_ms: Option<u64>,
) -> FetchStatusError {
    FetchStatusError::Retryable(RetryableError {
        error: ProviderError { code, message },
        retry_after_ms,
    })
}

fn permanent(code: Option<String>, message: String) -> FetchStatusError {
    FetchStatusError::Permanent(ProviderError { code, message })
}

#[cfg(test)]
#[path = "fetch_tests.rs"]
mod tests;
