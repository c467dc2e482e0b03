//! Tests for reading a message back: the request, and the mapping of Twilio's Message resource
//! and errors onto `status-update` / `fetch-status-error`.

#![allow(clippy::unwrap_used, clippy::panic)]

use super::*;
use crate::bindings::exports::herald::plugin::provider_api::DeliveryState;
use crate::bindings::herald::plugin::types::{MaybeSentReason, NotSentReason};
use crate::config::Credentials;

const ACCOUNT: &str = "AC0123456789abcdef0123456789abcdef";
const SID: &str = "SM0123456789abcdef0123456789abcdef";

fn config() -> SendConfig {
    SendConfig {
        account_sid: ACCOUNT.to_string(),
        credentials: Credentials {
            user: ACCOUNT.to_string(),
            secret: "token".to_string(),
        },
        from: None,
        messaging_service_sid: None,
        base_url: "https://api.twilio.com".to_string(),
    }
}

fn answer(status: u16, headers: &[(&str, &str)], body: &str) -> Result<HttpResponse, HttpError> {
    Ok(HttpResponse {
        status,
        headers: headers
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        body: body.as_bytes().to_vec(),
    })
}

/// A Message resource as Twilio returns it, with `fields` (raw JSON values) replacing defaults.
fn message(fields: &[(&str, &str)]) -> String {
    let mut json: serde_json::Map<String, Value> = serde_json::from_str(&format!(
        r#"{{"account_sid":"{ACCOUNT}","api_version":"2010-04-01","body":"Hello",
        "date_created":"Thu, 24 Aug 2023 05:01:45 +0000","date_sent":"Thu, 24 Aug 2023 05:01:46 +0000",
        "date_updated":"Thu, 24 Aug 2023 05:01:50 +0000","direction":"outbound-api",
        "error_code":null,"error_message":null,"from":"+15557122661","messaging_service_sid":null,
        "num_media":"0","num_segments":"1","price":null,"price_unit":"USD","sid":"{SID}",
        "status":"sent","to":"+15558675310","uri":"/2010-04-01/Accounts/{ACCOUNT}/Messages/{SID}.json"}}"#
    ))
    .unwrap();
    for (name, value) in fields {
        json.insert(name.to_string(), serde_json::from_str(value).unwrap());
    }
    Value::Object(json).to_string()
}

fn update(fields: &[(&str, &str)]) -> StatusUpdate {
    map_outcome(SID, answer(200, &[], &message(fields))).unwrap()
}

fn error_of(outcome: Result<HttpResponse, HttpError>) -> FetchStatusError {
    map_outcome(SID, outcome).unwrap_err()
}

fn retryable_of(error: FetchStatusError) -> RetryableError {
    match error {
        FetchStatusError::Retryable(r) => r,
        other => panic!("expected retryable, got {other:?}"),
    }
}

fn permanent_of(error: FetchStatusError) -> ProviderError {
    match error {
        FetchStatusError::Permanent(e) => e,
        other => panic!("expected permanent, got {other:?}"),
    }
}

/// The lookup is a GET of the Message resource with Basic auth and no body.
#[test]
fn request_shape() {
    let request = build_request(&config(), SID).unwrap();
    assert_eq!(request.method, "GET");
    assert_eq!(
        request.url,
        format!("https://api.twilio.com/2010-04-01/Accounts/{ACCOUNT}/Messages/{SID}.json")
    );
    let auth = request
        .headers
        .iter()
        .find(|(k, _)| k == "Authorization")
        .map(|(_, v)| v.clone())
        .unwrap();
    use base64::Engine as _;
    let expected = base64::engine::general_purpose::STANDARD.encode(format!("{ACCOUNT}:token"));
    assert_eq!(auth, format!("Basic {expected}"));
    assert!(request.body.is_empty());
    let mms = "MM0123456789abcdef0123456789abcdef";
    assert!(
        build_request(&config(), mms)
            .unwrap()
            .url
            .ends_with(&format!("{mms}.json"))
    );
}

/// Anything but a message SID is refused before a request is made: it would go into the path.
#[test]
fn only_message_sids_are_asked_about() {
    for sid in [
        "",
        "SM1",
        "../../Calls",
        "CA0123456789abcdef0123456789abcdef",
        "SM0123456789abcdef0123456789abcdeg",
    ] {
        let error = permanent_of(build_request(&config(), sid).unwrap_err());
        assert!(error.message.contains("message SID"), "{sid}: {error:?}");
    }
}

/// A delivered message: state, Twilio's word, segments, the negative price as a positive cost,
/// and the sender.
#[test]
fn delivered_message_with_price_segments_and_sender() {
    let update = update(&[
        ("status", r#""delivered""#),
        ("price", r#""-0.00750""#),
        ("price_unit", r#""USD""#),
        ("num_segments", r#""2""#),
    ]);
    assert_eq!(update.provider_message_id, SID);
    assert_eq!(update.state, DeliveryState::Delivered);
    assert_eq!(update.provider_status, "delivered");
    assert!(update.error.is_none());
    assert_eq!(update.segments, Some(2));
    let price = update.price.unwrap();
    assert_eq!((price.micros, price.currency.as_str()), (7_500, "USD"));
    assert_eq!(update.sender.as_deref(), Some("+15557122661"));
}

/// Failures carry Twilio's code (an integer in JSON) and message, or a description of the code.
#[test]
fn failures_carry_their_error() {
    let update = update(&[
        ("status", r#""undelivered""#),
        ("error_code", "30003"),
        ("error_message", r#""Unreachable destination handset""#),
    ]);
    assert_eq!(update.state, DeliveryState::Undelivered);
    let error = update.error.unwrap();
    assert_eq!(error.code.as_deref(), Some("30003"));
    assert_eq!(error.message, "Unreachable destination handset");

    let update = update_of_failed();
    let error = update.error.unwrap();
    assert_eq!(error.code.as_deref(), Some("30007"));
    assert_eq!(
        error.message,
        "Twilio error 30007: message filtered by the carrier"
    );
}

fn update_of_failed() -> StatusUpdate {
    update(&[("status", r#""failed""#), ("error_code", r#""30007""#)])
}

/// A Messaging Service message before a sender is picked: no sender, no segment count, no price.
#[test]
fn pooled_message_before_a_sender_is_picked() {
    let update = update(&[
        ("status", r#""accepted""#),
        ("from", "null"),
        (
            "messaging_service_sid",
            r#""MG0123456789abcdef0123456789abcdef""#,
        ),
        ("num_segments", r#""0""#),
    ]);
    assert_eq!(update.state, DeliveryState::Queued);
    assert_eq!(update.sender, None);
    assert_eq!(update.segments, None);
    assert!(update.price.is_none());
}

/// Every outbound status Twilio documents reads back as its state.
#[test]
fn every_outbound_status() {
    let cases = [
        ("queued", DeliveryState::Queued),
        ("accepted", DeliveryState::Queued),
        ("scheduled", DeliveryState::Queued),
        ("sending", DeliveryState::Sending),
        ("sent", DeliveryState::Sent),
        ("delivered", DeliveryState::Delivered),
        ("undelivered", DeliveryState::Undelivered),
        ("partially_delivered", DeliveryState::Undelivered),
        ("failed", DeliveryState::Failed),
        ("canceled", DeliveryState::Canceled),
        ("read", DeliveryState::Read),
    ];
    for (word, state) in cases {
        let update = update(&[("status", &format!("\"{word}\""))]);
        assert_eq!(
            (update.state, update.provider_status.as_str()),
            (state, word)
        );
    }
    let partial = update(&[("status", r#""partially_delivered""#)]);
    assert!(
        partial
            .error
            .unwrap()
            .message
            .contains("partially delivered")
    );
}

/// An inbound message or an undocumented word can never become a state: permanent.
#[test]
fn inbound_and_unknown_statuses_are_permanent() {
    for word in ["received", "receiving"] {
        let body = message(&[
            ("status", &format!("\"{word}\"")),
            ("direction", r#""inbound""#),
        ]);
        let error = permanent_of(error_of(answer(200, &[], &body)));
        assert!(error.message.contains("inbound"), "{error:?}");
    }
    let body = message(&[("status", r#""exploded""#)]);
    assert!(
        permanent_of(error_of(answer(200, &[], &body)))
            .message
            .contains("exploded")
    );
}

/// Twilio not knowing the SID, or any other client error, is permanent with Twilio's code.
#[test]
fn not_found_and_client_errors_are_permanent() {
    let body = r#"{"code":20404,"message":"The requested resource was not found","more_info":"https://www.twilio.com/docs/errors/20404","status":404}"#;
    let error = permanent_of(error_of(answer(404, &[], body)));
    assert_eq!(error.code.as_deref(), Some("20404"));
    assert_eq!(error.message, "The requested resource was not found");
    let error = permanent_of(error_of(answer(400, &[], "nope")));
    assert_eq!(error.message, "Twilio answered HTTP 400: nope");
}

/// Rate limits, outages and refused credentials pass: retryable, with Twilio's hint.
#[test]
fn passing_failures_are_retryable() {
    let limited = retryable_of(error_of(answer(
        429,
        &[("retry-after", "3")],
        r#"{"code":20429,"message":"Too Many Requests","status":429}"#,
    )));
    assert_eq!(limited.error.code.as_deref(), Some("20429"));
    assert_eq!(limited.retry_after_ms, Some(3_000));
    for status in [500, 503] {
        let r = retryable_of(error_of(answer(status, &[], "")));
        assert!(r.error.message.contains(&status.to_string()), "{r:?}");
    }
    let auth = retryable_of(error_of(answer(
        401,
        &[],
        r#"{"code":20003,"message":"Authenticate","status":401}"#,
    )));
    assert_eq!(auth.error.code.as_deref(), Some("20003"));
    assert!(matches!(
        error_of(answer(302, &[], "")),
        FetchStatusError::Retryable(_)
    ));
}

/// An answer that is not a Message (a proxy's page, no status) is retryable.
#[test]
fn unreadable_answers_are_retryable() {
    let r = retryable_of(error_of(answer(200, &[], "<html>ok</html>")));
    assert!(r.error.message.contains("not a Message"), "{r:?}");
    retryable_of(error_of(answer(200, &[], r#"{"sid":"SM1"}"#)));
}

/// A lookup changes nothing at Twilio, so whether or not it left the host it may be repeated.
#[test]
fn http_failures_are_retryable() {
    let errors = [
        HttpError::NotSent(NotSentReason::Unreachable("connection refused".into())),
        HttpError::NotSent(NotSentReason::Denied("api.twilio.com".into())),
        HttpError::NotSent(NotSentReason::InvalidRequest("bad".into())),
        HttpError::MaybeSent(MaybeSentReason::Timeout),
        HttpError::MaybeSent(MaybeSentReason::Transport("reset".into())),
        HttpError::MaybeSent(MaybeSentReason::ResponseTooLarge),
    ];
    for error in errors {
        let r = retryable_of(error_of(Err(error.clone())));
        assert!(
            r.error.message.starts_with("could not read the message"),
            "{error:?}: {r:?}"
        );
        assert_eq!(r.retry_after_ms, None);
    }
}
