//! Tests of simulated inbound messages: a handset texting in through the carrier, in-process and
//! through `POST /testkit/inbound`, posted to a receiver as Twilio's signed inbound webhook.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use axum::http::StatusCode;
use common::{
    FROM, Receiver, SID, TOKEN, assert_twilio_error, config, receiver, send, start, start_with,
};
use herald_testkit::carrier::{
    self, Carrier, CarrierConfig, CarrierError, INBOUND_PATH, InboundRequest, request_inbound,
};
use serde_json::{Value, json};

/// A receiver failing its first `failures` requests, and a carrier posting inbound messages to it.
async fn texting_carrier(failures: u32) -> (Receiver, Carrier, String) {
    let rx = receiver(failures).await;
    let inbound = format!("{}/sms/inbound", rx.base);
    let carrier = start_with(CarrierConfig {
        inbound_url: Some(inbound.clone()),
        ..config()
    })
    .await;
    (rx, carrier, inbound)
}

/// Posts `body` with `content_type` to the carrier's inbound endpoint; returns status and JSON.
async fn post_endpoint(carrier: &Carrier, content_type: &str, body: String) -> (StatusCode, Value) {
    let response = reqwest::Client::new()
        .post(format!("{}{INBOUND_PATH}", carrier.base_url()))
        .header("Content-Type", content_type)
        .body(body)
        .send()
        .await
        .unwrap();
    (response.status(), response.json().await.unwrap())
}

/// Inbound messages are posted with Twilio's fields and a valid signature; STOP blocks later sends.
#[tokio::test]
async fn inbound_is_signed_and_stop_opts_out() {
    let (rx, carrier, inbound) = texting_carrier(0).await;
    let status = carrier
        .send_inbound("+14155552671", FROM, "STOP")
        .await
        .unwrap();
    assert_eq!(status, StatusCode::OK);
    let hit = rx.hits.lock().unwrap()[0].clone();
    assert_eq!(hit.url, inbound);
    assert!(hit.signed_with(TOKEN));
    let sid = hit.field("MessageSid").unwrap();
    assert!(sid.starts_with("SM") && sid.len() == 34);
    assert_eq!(hit.field("SmsSid"), Some(sid));
    assert_eq!(hit.field("SmsMessageSid"), Some(sid));
    for (name, value) in [
        ("AccountSid", SID),
        ("From", "+14155552671"),
        ("To", FROM),
        ("Body", "STOP"),
        ("NumMedia", "0"),
        ("NumSegments", "1"),
        ("SmsStatus", "received"),
        ("ApiVersion", "2010-04-01"),
        ("FromCity", ""),
        ("ToZip", ""),
    ] {
        assert_eq!(hit.field(name), Some(value), "{name}");
    }

    let fields = [("To", "+14155552671"), ("From", FROM), ("Body", "Hi")];
    let (s, _, j) = send(&carrier, &fields).await;
    assert_twilio_error(s, &j, 400, 21610);
    carrier
        .send_inbound("+14155552671", FROM, " start ")
        .await
        .unwrap();
    let (s, _, _) = send(&carrier, &fields).await;
    assert_eq!(s, StatusCode::CREATED);
}

/// Without an inbound URL, `send_inbound` fails instead of posting.
#[tokio::test]
async fn inbound_needs_url() {
    let carrier = start().await;
    assert!(matches!(
        carrier.send_inbound("+14155552671", FROM, "hi").await,
        Err(carrier::CarrierError::NoInboundUrl)
    ));
}

/// `POST /testkit/inbound` (JSON, through `request_inbound`) posts a correctly signed inbound
/// webhook, reports the receiver's answer, and STOP blocks later sends as Twilio does.
#[tokio::test]
async fn endpoint_posts_a_signed_webhook() {
    let (rx, carrier, inbound) = texting_carrier(0).await;
    let request = InboundRequest {
        from: "+14155552671".into(),
        to: FROM.into(),
        body: "STOP".into(),
    };
    let receipt = request_inbound(carrier.base_url(), &request).await.unwrap();
    assert_eq!(receipt.webhook_status, 200);
    assert_eq!(receipt.webhook_url, inbound);
    assert_eq!(
        (receipt.from.as_str(), receipt.to.as_str()),
        ("+14155552671", FROM)
    );

    let hits = rx.hits.lock().unwrap().clone();
    assert_eq!(hits.len(), 1);
    let hit = &hits[0];
    assert_eq!(hit.url, inbound);
    assert!(hit.signed_with(TOKEN));
    assert!(!hit.signed_with("other-token"));
    assert_eq!(hit.field("MessageSid"), Some(receipt.message_sid.as_str()));
    assert_eq!(hit.field("AccountSid"), Some(SID));
    assert_eq!(hit.field("From"), Some("+14155552671"));
    assert_eq!(hit.field("To"), Some(FROM));
    assert_eq!(hit.field("Body"), Some("STOP"));
    assert_eq!(hit.field("FromCountry"), Some("US"));
    let stored = carrier.message(&receipt.message_sid).unwrap();
    assert_eq!(
        (stored.direction.as_str(), stored.status.as_str()),
        ("inbound", "received")
    );

    let fields = [("To", "+14155552671"), ("From", FROM), ("Body", "Hi")];
    let (s, _, j) = send(&carrier, &fields).await;
    assert_twilio_error(s, &j, 400, 21610);
}

/// The endpoint also takes a form (Twilio's own field names work too), writes numbers in E.164,
/// and reports a receiver's error status rather than hiding it.
#[tokio::test]
async fn endpoint_takes_a_form_and_reports_the_answer() {
    let (rx, carrier, _) = texting_carrier(1).await;
    let form =
        serde_urlencoded::to_string([("From", "+1 415 555 2671"), ("To", FROM), ("Body", "HELP")])
            .unwrap();
    let (status, receipt) =
        post_endpoint(&carrier, "application/x-www-form-urlencoded", form).await;
    assert_eq!(status, StatusCode::OK, "{receipt}");
    assert_eq!(receipt["webhook_status"], 500);
    assert_eq!(receipt["from"], "+14155552671");
    let hit = rx.hits.lock().unwrap()[0].clone();
    assert_eq!(hit.field("From"), Some("+14155552671"));
    assert_eq!(hit.field("Body"), Some("HELP"));
    assert!(hit.signed_with(TOKEN));
}

/// Bad requests are refused with one JSON error shape and post nothing.
#[tokio::test]
async fn endpoint_refuses_bad_requests() {
    let (rx, carrier, _) = texting_carrier(0).await;
    let long = "a".repeat(1601);
    for (body, code) in [
        (
            json!({"from": "+14155552671", "to": FROM}),
            "invalid_request",
        ),
        (
            json!({"from": "4155552671", "to": FROM, "body": "STOP"}),
            "invalid_phone_number",
        ),
        (
            json!({"from": "+14155552671", "to": "+1555", "body": "STOP"}),
            "invalid_phone_number",
        ),
        (
            json!({"from": "+14155552671", "to": FROM, "body": long}),
            "message_too_long",
        ),
    ] {
        let (status, error) = post_endpoint(&carrier, "application/json", body.to_string()).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{error}");
        assert_eq!(error["error"]["code"], code, "{error}");
        assert!(
            error["error"]["message"]
                .as_str()
                .is_some_and(|m| !m.is_empty())
        );
    }
    let body = json!({"from": "+14155552671", "to": "oops", "body": "STOP"}).to_string();
    let (_, error) = post_endpoint(&carrier, "application/json", body).await;
    let message = error["error"]["message"].as_str().unwrap();
    assert!(message.starts_with("`to` (\"oops\")"), "{error}");
    let (status, error) = post_endpoint(&carrier, "application/json", "{not json".into()).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{error}");
    assert!(rx.hits.lock().unwrap().is_empty());
    assert!(carrier.messages().is_empty());
}

/// Without an inbound URL the endpoint answers 409; `request_inbound` says so, and says when the
/// carrier is not there at all.
#[tokio::test]
async fn request_inbound_errors() {
    let carrier = start().await;
    let request = InboundRequest {
        from: "+14155552671".into(),
        to: FROM.into(),
        body: "hi".into(),
    };
    match request_inbound(carrier.base_url(), &request).await {
        Err(CarrierError::Refused {
            status: 409,
            message,
        }) => {
            assert!(message.contains("inbound_url"), "{message}")
        }
        other => panic!("{other:?}"),
    }
    let closed = carrier.base_url().to_owned();
    carrier.shutdown().await;
    assert!(matches!(
        request_inbound(&closed, &request).await,
        Err(CarrierError::Unreachable { .. })
    ));
}
