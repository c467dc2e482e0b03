//! Tests for the mapping of Messages API answers and HTTP failures onto `accepted` / `send-error`.

#![allow(clippy::unwrap_used, clippy::panic)]

use super::*;

fn response(status: u16, headers: &[(&str, &str)], body: &str) -> Result<HttpResponse, HttpError> {
    Ok(HttpResponse {
        status,
        headers: headers
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        body: body.as_bytes().to_vec(),
    })
}

fn twilio_error(status: u16, code: u32) -> Result<HttpResponse, HttpError> {
    response(
        status,
        &[("content-type", "application/json")],
        &format!(
            r#"{{"code":{code},"message":"Twilio says {code}","more_info":"https://www.twilio.com/docs/errors/{code}","status":{status}}}"#
        ),
    )
}

fn error_of(outcome: Result<HttpResponse, HttpError>) -> SendError {
    map_outcome(outcome).unwrap_err()
}

fn assert_provider_error(error: &ProviderError, code: u32) {
    assert_eq!(error.code.as_deref(), Some(code.to_string().as_str()));
    assert_eq!(error.message, format!("Twilio says {code}"));
}

const CREATED: &str = r#"{"account_sid":"AC0123456789abcdef0123456789abcdef","api_version":"2010-04-01",
 "body":"Hello","date_created":"Thu, 24 Aug 2023 05:01:45 +0000","date_sent":null,"direction":"outbound-api",
 "error_code":null,"error_message":null,"from":"+15557122661","messaging_service_sid":null,"num_media":"0",
 "num_segments":"2","price":"-0.00790","price_unit":"USD","sid":"SM0123456789abcdef0123456789abcdef",
 "status":"queued","to":"+15558675310"}"#;

#[test]
fn created_message_is_accepted() {
    let accepted = map_outcome(response(201, &[], CREATED)).unwrap();
    assert_eq!(
        accepted.provider_message_id,
        "SM0123456789abcdef0123456789abcdef"
    );
    assert_eq!(accepted.provider_status, "queued");
    assert_eq!(accepted.segments, Some(2));
    let price = accepted.price.unwrap();
    assert_eq!((price.micros, price.currency.as_str()), (7900, "USD"));
    assert_eq!(accepted.sender.as_deref(), Some("+15557122661"));
}

/// A Messaging Service send has no `from` yet: the sender is absent, not empty.
#[test]
fn service_send_has_no_sender_yet() {
    let body = r#"{"sid":"SMabc","status":"accepted","from":null,"messaging_service_sid":"MG1"}"#;
    assert_eq!(map_outcome(response(201, &[], body)).unwrap().sender, None);
    let body = r#"{"sid":"SMabc","status":"queued","from":" "}"#;
    assert_eq!(map_outcome(response(201, &[], body)).unwrap().sender, None);
}

#[test]
fn null_price_and_service_zero_segments() {
    let body =
        r#"{"sid":"SMabc","status":"accepted","num_segments":"0","price":null,"price_unit":"USD"}"#;
    let accepted = map_outcome(response(200, &[], body)).unwrap();
    assert_eq!(accepted.provider_status, "accepted");
    assert_eq!(accepted.segments, None);
    assert!(accepted.price.is_none());
}

#[test]
fn unparseable_success_is_unknown() {
    for body in [
        "",
        "<html>ok</html>",
        r#"{"status":"queued"}"#,
        r#"{"sid":""}"#,
    ] {
        match error_of(response(201, &[], body)) {
            SendError::Unknown(e) => assert!(e.message.contains("HTTP 201")),
            other => panic!("{body}: {other:?}"),
        }
    }
}

#[test]
fn rate_limit_is_retryable_with_hint() {
    let mut outcome = twilio_error(429, 20429);
    if let Ok(r) = &mut outcome {
        r.headers.push(("retry-after".into(), "7".into()));
    }
    match error_of(outcome) {
        SendError::Retryable(r) => {
            assert_provider_error(&r.error, 20429);
            assert_eq!(r.retry_after_ms, Some(7000));
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn server_errors_are_retryable_without_body() {
    for status in [500, 502, 503, 504] {
        match error_of(response(status, &[("Retry-After", " 2 ")], "")) {
            SendError::Retryable(r) => {
                assert_eq!(r.error.code, None);
                assert!(r.error.message.contains(&status.to_string()));
                assert_eq!(r.retry_after_ms, Some(2000));
            }
            other => panic!("{status}: {other:?}"),
        }
    }
    match error_of(response(
        503,
        &[("retry-after", "Wed, 21 Oct 2015 07:28:00 GMT")],
        "",
    )) {
        SendError::Retryable(r) => assert_eq!(r.retry_after_ms, None),
        other => panic!("{other:?}"),
    }
}

#[test]
fn recipient_codes() {
    for code in [21211, 21612, 21614, 21635, 30005, 30006] {
        match error_of(twilio_error(400, code)) {
            SendError::InvalidRecipient(e) => assert_provider_error(&e, code),
            other => panic!("{code}: {other:?}"),
        }
    }
    match error_of(twilio_error(400, 21610)) {
        SendError::OptedOut(e) => assert_provider_error(&e, 21610),
        other => panic!("{other:?}"),
    }
}

#[test]
fn other_client_errors_are_refused() {
    for (status, code) in [
        (401, 20003),
        (400, 21212),
        (400, 21408),
        (400, 21606),
        (404, 20404),
    ] {
        match error_of(twilio_error(status, code)) {
            SendError::Refused(e) => assert_provider_error(&e, code),
            other => panic!("{code}: {other:?}"),
        }
    }
    match error_of(response(403, &[], "Forbidden")) {
        SendError::Refused(e) => {
            assert_eq!(e.code, None);
            assert_eq!(e.message, "Twilio answered HTTP 403: Forbidden");
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn sender_queue_full_is_retryable() {
    assert_eq!(classify(400, Some("21611")), Kind::Retryable);
    assert_eq!(classify(400, None), Kind::Refused);
}

#[test]
fn string_codes_are_accepted() {
    let body = r#"{"code":"21610","message":"Twilio says 21610","status":400}"#;
    match error_of(response(400, &[], body)) {
        SendError::OptedOut(e) => assert_provider_error(&e, 21610),
        other => panic!("{other:?}"),
    }
}

/// A request the host did not send is retryable, whatever stopped it; one that may have been
/// sent is unknown.
#[test]
fn http_errors_map_by_whether_anything_was_sent() {
    let cases = [
        (
            HttpError::NotSent(NotSentReason::Unreachable(
                "tcp connect error: Connection refused".into(),
            )),
            "retryable",
        ),
        (
            HttpError::NotSent(NotSentReason::Denied("api.twilio.com not granted".into())),
            "retryable",
        ),
        (
            HttpError::NotSent(NotSentReason::InvalidRequest("bad url".into())),
            "retryable",
        ),
        (HttpError::MaybeSent(MaybeSentReason::Timeout), "unknown"),
        (
            HttpError::MaybeSent(MaybeSentReason::Transport("reset".into())),
            "unknown",
        ),
        (
            HttpError::MaybeSent(MaybeSentReason::ResponseTooLarge),
            "unknown",
        ),
    ];
    for (error, expected) in cases {
        let kind = match error_of(Err(error.clone())) {
            SendError::Retryable(r) => {
                assert_eq!(r.error.code, None);
                assert_eq!(r.retry_after_ms, None);
                assert!(!r.error.message.contains("may have been sent"), "{r:?}");
                "retryable"
            }
            SendError::Unknown(e) => {
                assert_eq!(e.code, None);
                assert!(e.message.contains("may have been sent"), "{e:?}");
                "unknown"
            }
            other => panic!("{error:?}: {other:?}"),
        };
        assert_eq!(kind, expected, "{error:?}");
    }
}

/// A refused connection says so, with the host's text, and that nothing was sent.
#[test]
fn unreachable_twilio_is_retryable_and_says_why() {
    let error = HttpError::NotSent(NotSentReason::Unreachable("dns error".into()));
    match error_of(Err(error)) {
        SendError::Retryable(r) => {
            assert!(r.error.message.contains("dns error"), "{r:?}");
            assert!(r.error.message.contains("nothing was sent"), "{r:?}");
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn redirects_are_unknown() {
    assert!(matches!(
        error_of(response(302, &[("location", "https://elsewhere/")], "")),
        SendError::Unknown(_)
    ));
}

#[test]
fn long_bodies_are_cut() {
    let body = "x".repeat(5000);
    match error_of(response(400, &[], &body)) {
        SendError::Refused(e) => assert!(e.message.chars().count() < 260),
        other => panic!("{other:?}"),
    }
}
