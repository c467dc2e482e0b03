//! Simulated inbound messages: a handset texting a number, posted to the receiver (Herald) as
//! Twilio's signed inbound-message webhook (`reference/sms-protocols.md` §2.4).
//!
//! Three ways in: [`super::Carrier::send_inbound`] in-process, `POST /testkit/inbound` on the
//! carrier's HTTP server (form or JSON `{from, to, body}`, no credentials: it stands for a phone,
//! not for Twilio's API), and [`request_inbound`], the client of that endpoint that
//! `herald demo inbound` uses.

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::CarrierError;
use super::billing::rough_segments;
use super::callbacks::{now_rfc2822, post_signed};
use super::signature::twilio_signature;
use super::state::{CarrierState, MessageRecord, new_sid};
use super::validate::e164;

/// The path of the carrier's inbound-simulation endpoint.
pub const INBOUND_PATH: &str = "/testkit/inbound";

/// Longest body the endpoint accepts, in characters (Twilio's concatenation limit).
const MAX_BODY_CHARS: usize = 1600;

/// A handset texting a number: the body of `POST /testkit/inbound` (form or JSON).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InboundRequest {
    /// The handset's number, in international form (e.g. `+14155552671`).
    #[serde(alias = "From")]
    pub from: String,
    /// The number texted, i.e. the receiver's Twilio number.
    #[serde(alias = "To")]
    pub to: String,
    /// The message text, e.g. `STOP`.
    #[serde(alias = "Body")]
    pub body: String,
}

/// What `POST /testkit/inbound` answers once the signed webhook was posted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InboundReceipt {
    /// The SID the carrier gave the inbound message (`SM…`).
    pub message_sid: String,
    /// The sender, in E.164.
    pub from: String,
    /// The number texted, in E.164.
    pub to: String,
    /// Where the webhook was posted.
    pub webhook_url: String,
    /// The HTTP status the receiver answered the webhook with.
    pub webhook_status: u16,
}

/// A webhook that was posted, and the receiver's answer.
pub(super) struct Posted {
    pub(super) sid: String,
    pub(super) url: String,
    pub(super) status: StatusCode,
}

/// Twilio's default opt-out handling (Advanced Opt-Out on long codes, `sms-protocols.md` §2.7):
/// `Some(true)` for an opt-out keyword, `Some(false)` for an opt-in one, when the keyword is the
/// whole message (case and surrounding whitespace aside).
fn opt_out_change(body: &str) -> Option<bool> {
    match body.trim().to_uppercase().as_str() {
        "STOP" | "STOPALL" | "UNSUBSCRIBE" | "CANCEL" | "END" | "QUIT" | "REVOKE" | "OPTOUT" => {
            Some(true)
        }
        "START" | "YES" | "UNSTOP" => Some(false),
        _ => None,
    }
}

/// The ISO country of a number for the geo fields, empty when it has none.
fn country(number: &str) -> String {
    phonenumber::parse(None, number)
        .ok()
        .and_then(|n| n.country().id())
        .map(|id| id.as_ref().to_owned())
        .unwrap_or_default()
}

/// Records an inbound message from `from` to `to` and posts it, signed, to the inbound URL.
pub(super) async fn post_inbound(
    state: &CarrierState,
    from: &str,
    to: &str,
    body: &str,
) -> Result<Posted, CarrierError> {
    let url = state.inbound_url().ok_or(CarrierError::NoInboundUrl)?;
    let sid = new_sid("SM");
    let (account_sid, token) = state.config().account_for_number(to);
    let (account_sid, token) = (account_sid.to_owned(), token.to_owned());
    let num_segments = rough_segments(body).to_string();
    let now = now_rfc2822();
    state.insert_message(MessageRecord {
        account_sid: account_sid.clone(),
        api_version: "2010-04-01".to_owned(),
        body: body.to_owned(),
        date_created: now.clone(),
        date_sent: Some(now.clone()),
        date_updated: now,
        direction: "inbound".to_owned(),
        error_code: None,
        error_message: None,
        from: Some(from.to_owned()),
        messaging_service_sid: None,
        num_media: "0".to_owned(),
        num_segments: num_segments.clone(),
        price: None,
        price_unit: "USD".to_owned(),
        sid: sid.clone(),
        status: "received".to_owned(),
        subresource_uris: Default::default(),
        to: to.to_owned(),
        uri: format!("/2010-04-01/Accounts/{account_sid}/Messages/{sid}.json"),
    });
    // Twilio keeps its own opt-out list from these keywords: later sends fail with 21610.
    if let Some(opted_out) = opt_out_change(body) {
        state.set_opted_out(from, to, opted_out);
    }
    let fields: Vec<(&str, String)> = vec![
        ("ToCountry", country(to)),
        ("ToState", String::new()),
        ("SmsMessageSid", sid.clone()),
        ("NumMedia", "0".to_owned()),
        ("ToCity", String::new()),
        ("FromZip", String::new()),
        ("SmsSid", sid.clone()),
        ("FromState", String::new()),
        ("SmsStatus", "received".to_owned()),
        ("FromCity", String::new()),
        ("Body", body.to_owned()),
        ("FromCountry", country(from)),
        ("To", to.to_owned()),
        ("ToZip", String::new()),
        ("NumSegments", num_segments),
        ("MessageSid", sid.clone()),
        ("AccountSid", account_sid),
        ("From", from.to_owned()),
        ("ApiVersion", "2010-04-01".to_owned()),
    ];
    let params: Vec<(String, String)> =
        fields.into_iter().map(|(k, v)| (k.to_owned(), v)).collect();
    let signature = twilio_signature(&token, &url, &params);
    let status = post_signed(state, &url, &params, &signature).await?;
    Ok(Posted { sid, url, status })
}

/// `{"error": {"code": …, "message": …}}` with `status`.
fn error(status: StatusCode, code: &str, message: impl Into<String>) -> Response {
    let body = json!({"error": {"code": code, "message": message.into()}});
    (status, Json(body)).into_response()
}

/// `POST /testkit/inbound`: validates the handset message, posts it as Twilio would and answers
/// with an [`InboundReceipt`] (200 whatever the receiver answered; see `webhook_status`).
pub(super) async fn simulate(
    State(state): State<CarrierState>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let is_json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    let parsed = if is_json {
        serde_json::from_slice::<InboundRequest>(&body).map_err(|e| e.to_string())
    } else {
        serde_urlencoded::from_bytes::<InboundRequest>(&body).map_err(|e| e.to_string())
    };
    let request = match parsed {
        Ok(request) => request,
        Err(err) => {
            let message = format!("expected `from`, `to` and `body` as a form or JSON: {err}");
            return error(StatusCode::UNPROCESSABLE_ENTITY, "invalid_request", message);
        }
    };
    let number = |field: &str, value: &str| {
        e164(value).ok_or_else(|| {
            format!("`{field}` ({value:?}) is not a valid phone number in international form, e.g. +14155552671")
        })
    };
    let (from, to) = match (number("from", &request.from), number("to", &request.to)) {
        (Ok(from), Ok(to)) => (from, to),
        (Err(message), _) | (_, Err(message)) => {
            return error(
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid_phone_number",
                message,
            );
        }
    };
    if request.body.chars().count() > MAX_BODY_CHARS {
        let message = format!("`body` is longer than {MAX_BODY_CHARS} characters");
        return error(
            StatusCode::UNPROCESSABLE_ENTITY,
            "message_too_long",
            message,
        );
    }
    match post_inbound(&state, &from, &to, &request.body).await {
        Ok(posted) => Json(InboundReceipt {
            message_sid: posted.sid,
            from,
            to,
            webhook_url: posted.url,
            webhook_status: posted.status.as_u16(),
        })
        .into_response(),
        Err(err @ CarrierError::NoInboundUrl) => {
            error(StatusCode::CONFLICT, "no_inbound_url", err.to_string())
        }
        Err(err) => error(StatusCode::BAD_GATEWAY, "webhook_failed", err.to_string()),
    }
}

/// Asks the carrier at `carrier_url` (its root, e.g. `http://127.0.0.1:4010`) to post `request`
/// to its receiver as a signed inbound message, and returns the carrier's receipt.
pub async fn request_inbound(
    carrier_url: &str,
    request: &InboundRequest,
) -> Result<InboundReceipt, CarrierError> {
    let url = format!("{}{INBOUND_PATH}", carrier_url.trim_end_matches('/'));
    let unreachable = |source| CarrierError::Unreachable {
        url: url.clone(),
        source,
    };
    let response = reqwest::Client::new()
        .post(&url)
        .json(request)
        .send()
        .await
        .map_err(unreachable)?;
    let status = response.status();
    let text = response.text().await.map_err(unreachable)?;
    if status.is_success() {
        return serde_json::from_str(&text).map_err(|err| CarrierError::Refused {
            status: status.as_u16(),
            message: format!("unexpected answer ({err}): {text}"),
        });
    }
    let message = serde_json::from_str::<serde_json::Value>(&text)
        .ok()
        .and_then(|v| v["error"]["message"].as_str().map(str::to_owned))
        .unwrap_or(text);
    Err(CarrierError::Refused {
        status: status.as_u16(),
        message,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Twilio's default keywords count only as the whole message, in any case.
    #[test]
    fn keywords_change_opt_out() {
        assert_eq!(opt_out_change(" Stop\n"), Some(true));
        assert_eq!(opt_out_change("unsubscribe"), Some(true));
        assert_eq!(opt_out_change("START"), Some(false));
        assert_eq!(opt_out_change("unstop"), Some(false));
        assert_eq!(opt_out_change("HELP"), None);
        assert_eq!(opt_out_change("please stop by at 5"), None);
    }

    /// The geo fields name the number's country, or nothing.
    #[test]
    fn countries() {
        assert_eq!(country("+14155552671"), "US");
        assert_eq!(country("+33612345678"), "FR");
        assert_eq!(country("not a number"), "");
    }
}
