//! Turning the outcome of the Messages API call into the contract's `accepted` or `send-error`.
//!
//! The cases are chosen by what the host may safely do next: anything that might have created a
//! message at Twilio is `unknown` (never resend blindly), everything that certainly did not is
//! `refused`, `retryable`, `opted-out` or `invalid-recipient`. The mapping table for Twilio's
//! answers is in [`classify`]; a request that failed is `retryable` when the host says it was not
//! sent and `unknown` when it may have been.

use serde_json::Value;

use crate::bindings::exports::herald::plugin::provider_api::{
    Accepted, ProviderError, RetryableError, SendError,
};
use crate::bindings::herald::plugin::types::{
    HttpError, HttpResponse, MaybeSentReason, NotSentReason,
};
use crate::fields;

/// What a Twilio error means for the host.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Try again later.
    Retryable,
    /// Permanent for this provider; another provider may work.
    Refused,
    /// The recipient texted STOP.
    OptedOut,
    /// The number is invalid or cannot receive SMS.
    InvalidRecipient,
}

/// Classifies an error answer by HTTP status and Twilio error code.
///
/// | condition | kind |
/// |---|---|
/// | HTTP 429 or any 5xx | retryable |
/// | 20429 (too many requests), 21611 (sender queue full) | retryable |
/// | 21610 (recipient unsubscribed) | opted-out |
/// | 21211, 21612, 21614, 21635, 30005, 30006 (bad, unreachable or landline `To`) | invalid-recipient |
/// | anything else, e.g. 20003 / HTTP 401, 21212, 21408, 21606, 21608 | refused |
pub fn classify(status: u16, code: Option<&str>) -> Kind {
    if status == 429 || status >= 500 {
        return Kind::Retryable;
    }
    match code.unwrap_or_default() {
        "20429" | "21611" => Kind::Retryable,
        "21610" => Kind::OptedOut,
        "21211" | "21612" | "21614" | "21635" | "30005" | "30006" => Kind::InvalidRecipient,
        _ => Kind::Refused,
    }
}

/// Maps the host's HTTP outcome for the create-message call.
pub fn map_outcome(outcome: Result<HttpResponse, HttpError>) -> Result<Accepted, SendError> {
    match outcome {
        Ok(response) => map_response(&response),
        Err(error) => Err(map_http_error(error)),
    }
}

/// Maps a failed HTTP exchange by whether the request can have reached Twilio.
///
/// Not sent (host policy, invalid request, no connection): no message can exist at Twilio, so a
/// later attempt is safe and may succeed, once the network is back or the operator fixed the
/// grant. Maybe sent: a message may exist, so it is unknown and must never be resent blindly.
fn map_http_error(error: HttpError) -> SendError {
    let plugin_error = |message: String| ProviderError {
        code: None,
        message,
    };
    match error {
        HttpError::NotSent(reason) => SendError::Retryable(RetryableError {
            error: plugin_error(match reason {
                NotSentReason::Denied(text) => {
                    format!("the host refused the request to Twilio: {text}")
                }
                NotSentReason::InvalidRequest(text) => {
                    format!("the host could not make the request to Twilio: {text}")
                }
                NotSentReason::Unreachable(text) => {
                    format!("could not connect to Twilio ({text}); nothing was sent")
                }
            }),
            retry_after_ms: None,
        }),
        HttpError::MaybeSent(reason) => SendError::Unknown(plugin_error(match reason {
            MaybeSentReason::Timeout => {
                "no answer from Twilio before the deadline; the message may have been sent".into()
            }
            MaybeSentReason::Transport(text) => {
                format!("connection to Twilio failed ({text}); the message may have been sent")
            }
            MaybeSentReason::ResponseTooLarge => "Twilio's answer exceeded the host's size \
                                                  limit; the message may have been sent"
                .into(),
        })),
    }
}

/// Maps an HTTP response from the create-message call.
fn map_response(response: &HttpResponse) -> Result<Accepted, SendError> {
    let status = response.status;
    let json: Option<Value> = serde_json::from_slice(&response.body).ok();
    if (200..300).contains(&status) {
        return json.as_ref().and_then(accepted).ok_or_else(|| {
            SendError::Unknown(ProviderError {
                code: None,
                message: format!(
                    "Twilio answered HTTP {status} but the body is not a Message ({}); the \
                     message may have been sent",
                    snippet(&response.body)
                ),
            })
        });
    }
    if !(400..600).contains(&status) {
        // Neither success nor a Twilio error (e.g. a redirect from a proxy in front of a custom
        // `base_url`): the request did reach a server, so whether a message exists is unknown.
        return Err(SendError::Unknown(ProviderError {
            code: None,
            message: format!(
                "unexpected HTTP {status} from Twilio: {}",
                snippet(&response.body)
            ),
        }));
    }

    let code = json.as_ref().and_then(|j| j.get("code")).and_then(text);
    let message = json
        .as_ref()
        .and_then(|j| j.get("message"))
        .and_then(Value::as_str)
        .map(str::to_string)
        .unwrap_or_else(|| format!("Twilio answered HTTP {status}: {}", snippet(&response.body)));
    let kind = classify(status, code.as_deref());
    let error = ProviderError { code, message };
    Err(match kind {
        Kind::Retryable => SendError::Retryable(RetryableError {
            error,
            retry_after_ms: retry_after_ms(&response.headers),
        }),
        Kind::Refused => SendError::Refused(error),
        Kind::OptedOut => SendError::OptedOut(error),
        Kind::InvalidRecipient => SendError::InvalidRecipient(error),
    })
}

/// Reads the Message resource Twilio returns on success; `None` when it has no SID.
fn accepted(message: &Value) -> Option<Accepted> {
    let sid = message.get("sid")?.as_str()?.trim();
    if sid.is_empty() {
        return None;
    }
    let status = message
        .get("status")
        .and_then(Value::as_str)
        .unwrap_or("unknown");
    Some(Accepted {
        provider_message_id: sid.to_string(),
        provider_status: status.to_string(),
        segments: message
            .get("num_segments")
            .and_then(text)
            .and_then(|n| fields::segments(&n)),
        price: message.get("price").and_then(text).and_then(|amount| {
            fields::price(&amount, message.get("price_unit").and_then(Value::as_str))
        }),
        sender: sender(message),
    })
}

/// The `from` of a Message resource: the sender it went out from, null while a Messaging Service
/// has not picked one.
pub fn sender(message: &Value) -> Option<String> {
    message
        .get("from")
        .and_then(Value::as_str)
        .map(str::trim)
        .filter(|from| !from.is_empty())
        .map(str::to_string)
}

/// A JSON string or number as text (Twilio documents strings for some numbers, but be lenient).
pub fn text(value: &Value) -> Option<String> {
    match value {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// The `Retry-After` header in milliseconds, when it is a number of seconds.
pub fn retry_after_ms(headers: &[(String, String)]) -> Option<u64> {
    headers
        .iter()
        .find(|(name, _)| name.eq_ignore_ascii_case("retry-after"))
        .and_then(|(_, value)| value.trim().parse::<u64>().ok())
        .map(|seconds| seconds.saturating_mul(1000))
}

/// The start of a body, for error messages that must stay short.
pub fn snippet(body: &[u8]) -> String {
    const LIMIT: usize = 200;
    let text = String::from_utf8_lossy(body);
    let text = text.trim();
    if text.is_empty() {
        return "empty body".to_string();
    }
    match text.char_indices().nth(LIMIT) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text.to_string(),
    }
}

#[cfg(test)]
#[path = "response_tests.rs"]
mod tests;
