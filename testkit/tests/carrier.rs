//! Tests of `herald_testkit::carrier`'s Twilio Messages API: creation, validation, scripted
//! answers and signed status callbacks.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use axum::http::StatusCode;
use base64::Engine as _;
use common::{FROM, SID, TOKEN, assert_twilio_error, config, receiver, send, send_as, start};
use herald_testkit::carrier::{self, ScriptedResponse, twilio_signature, verify_twilio_signature};
use serde_json::Value;

/// A valid send gets HTTP 201 and Twilio's Message JSON, with string counts and an SM sid.
#[tokio::test]
async fn create_returns_message_json() {
    let carrier = start().await;
    let (status, _, json) = send(
        &carrier,
        &[("To", "+14155552671"), ("From", FROM), ("Body", "Hello")],
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{json}");
    let fixture: Value =
        serde_json::from_str(herald_testkit::fixtures::TWILIO_CREATE_MESSAGE).unwrap();
    let mut expected: Vec<&str> = fixture["response_201_properties"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    let mut keys: Vec<&str> = json
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    expected.sort_unstable();
    keys.sort_unstable();
    assert_eq!(keys, expected);
    let sid = json["sid"].as_str().unwrap();
    assert!(
        sid.starts_with("SM") && sid.len() == 34 && sid[2..].bytes().all(|b| b.is_ascii_hexdigit())
    );
    assert_eq!(json["num_segments"], "1");
    assert_eq!(json["num_media"], "0");
    assert_eq!(json["status"], "queued");
    assert_eq!(json["direction"], "outbound-api");
    assert_eq!(json["account_sid"], SID);
    assert_eq!(json["api_version"], "2010-04-01");
    assert_eq!(json["price_unit"], "USD");
    assert!(json["price"].is_null() && json["date_sent"].is_null() && json["error_code"].is_null());
    assert_eq!(
        json["uri"],
        format!("/2010-04-01/Accounts/{SID}/Messages/{sid}.json")
    );
    let created = json["date_created"].as_str().unwrap();
    time::OffsetDateTime::parse(created, &time::format_description::well_known::Rfc2822).unwrap();

    let long = "x".repeat(161);
    let (_, _, json) = send(
        &carrier,
        &[("To", "+14155552671"), ("From", FROM), ("Body", &long)],
    )
    .await;
    assert_eq!(json["num_segments"], "2");
    let (_, _, json) = send(
        &carrier,
        &[("To", "+14155552671"), ("From", FROM), ("Body", "Привет")],
    )
    .await;
    assert_eq!(json["num_segments"], "1");

    let requests = carrier.requests();
    assert_eq!(requests.len(), 3);
    let first = &requests[0];
    assert_eq!(first.method, "POST");
    assert_eq!(
        first.path,
        format!("/2010-04-01/Accounts/{SID}/Messages.json")
    );
    assert_eq!(first.field("Body"), Some("Hello"));
    let auth = base64::engine::general_purpose::STANDARD.encode(format!("{SID}:{TOKEN}"));
    assert_eq!(
        first.header("Authorization"),
        Some(format!("Basic {auth}").as_str())
    );
    carrier.shutdown().await;
}

/// Wrong credentials, no credentials or another account's path all give 401 with code 20003.
#[tokio::test]
async fn bad_auth_is_rejected() {
    let carrier = start().await;
    let fields = [("To", "+14155552671"), ("From", FROM), ("Body", "Hi")];
    let (status, headers, json) = send_as(&carrier, SID, "wrong", &fields).await;
    assert_twilio_error(status, &json, 401, 20003);
    assert!(headers.contains_key("www-authenticate"));
    let (status, _, json) = send_as(
        &carrier,
        "AC99999999999999999999999999999999",
        TOKEN,
        &fields,
    )
    .await;
    assert_twilio_error(status, &json, 401, 20003);

    let response = reqwest::Client::new()
        .post(carrier.messages_url())
        .body("To=%2B14155552671&From=%2B15005550006&Body=Hi")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);

    let other = format!(
        "{}/2010-04-01/Accounts/AC99999999999999999999999999999999/Messages.json",
        carrier.base_url()
    );
    let response = reqwest::Client::new()
        .post(other)
        .basic_auth(SID, Some(TOKEN))
        .body("To=%2B14155552671&From=%2B15005550006&Body=Hi")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert!(carrier.messages().is_empty());
}

/// Missing or malformed fields give Twilio's validation codes, in Twilio's order.
#[tokio::test]
async fn validation_errors() {
    let carrier = start().await;
    let (s, _, j) = send(&carrier, &[("From", FROM), ("Body", "Hi")]).await;
    assert_twilio_error(s, &j, 400, 21604);
    let (s, _, j) = send(
        &carrier,
        &[("To", "4155552671"), ("From", FROM), ("Body", "Hi")],
    )
    .await;
    assert_twilio_error(s, &j, 400, 21211);
    assert!(j["message"].as_str().unwrap().contains("4155552671"));
    let (s, _, j) = send(&carrier, &[("To", "+0123"), ("Body", "Hi")]).await;
    assert_twilio_error(s, &j, 400, 21211);
    let (s, _, j) = send(&carrier, &[("To", "+14155552671"), ("Body", "Hi")]).await;
    assert_twilio_error(s, &j, 400, 21603);
    let (s, _, j) = send(&carrier, &[("To", "+14155552671"), ("From", FROM)]).await;
    assert_twilio_error(s, &j, 400, 21602);
    let long = "a".repeat(1601);
    let (s, _, j) = send(
        &carrier,
        &[("To", "+14155552671"), ("From", FROM), ("Body", &long)],
    )
    .await;
    assert_twilio_error(s, &j, 400, 21617);
    assert!(carrier.messages().is_empty());
}

/// Twilio's magic test recipients produce their documented errors.
#[tokio::test]
async fn magic_numbers() {
    let carrier = start().await;
    for (to, code) in [
        ("+15005550001", 21211),
        ("+15005550002", 21612),
        ("+15005550004", 21610),
        ("+15005550009", 21614),
    ] {
        let (s, _, j) = send(&carrier, &[("To", to), ("From", FROM), ("Body", "Hi")]).await;
        assert_twilio_error(s, &j, 400, code);
    }
}

/// Scripted responses are served in order before normal processing resumes.
#[tokio::test]
async fn scripted_responses() {
    let carrier = start().await;
    let fields = [("To", "+14155552671"), ("From", FROM), ("Body", "Hi")];
    carrier.script(ScriptedResponse::rate_limited(Some(2)));
    carrier.script(ScriptedResponse::Status5xx(503));
    carrier.script(ScriptedResponse::error(400, 21211));
    let (s, h, j) = send(&carrier, &fields).await;
    assert_twilio_error(s, &j, 429, 20429);
    assert_eq!(h.get("retry-after").unwrap(), "2");
    let (s, _, j) = send(&carrier, &fields).await;
    assert_twilio_error(s, &j, 503, 20503);
    let (s, _, j) = send(&carrier, &fields).await;
    assert_twilio_error(s, &j, 400, 21211);
    let (s, _, j) = send(&carrier, &fields).await;
    assert_eq!(s, StatusCode::CREATED, "{j}");
    assert_eq!(carrier.requests().len(), 4);
    assert_eq!(carrier.messages().len(), 1);
}

/// A scripted hang makes a client with a short timeout give up.
#[tokio::test]
async fn scripted_hang_times_out() {
    let carrier = start().await;
    carrier.script(ScriptedResponse::Hang(Duration::from_secs(5)));
    let err = reqwest::Client::new()
        .post(carrier.messages_url())
        .basic_auth(SID, Some(TOKEN))
        .body("To=%2B14155552671&From=%2B15005550006&Body=Hi")
        .timeout(Duration::from_millis(200))
        .send()
        .await
        .unwrap_err();
    assert!(err.is_timeout(), "{err}");
    carrier.shutdown().await;
}

/// Status callbacks arrive in order sent → delivered, correctly signed, and the resource follows.
#[tokio::test]
async fn status_callbacks_are_signed_and_ordered() {
    let carrier = start().await;
    let rx = receiver(0).await;
    let callback = format!("{}/status?tenant=a&id=7", rx.base);
    let (s, _, j) = send(
        &carrier,
        &[
            ("To", "+14155552671"),
            ("From", FROM),
            ("Body", "Hello"),
            ("StatusCallback", &callback),
        ],
    )
    .await;
    assert_eq!(s, StatusCode::CREATED);
    let sid = j["sid"].as_str().unwrap();
    let done = carrier.wait_for_callbacks(2, Duration::from_secs(5)).await;
    assert_eq!(done.len(), 2);
    let hits = rx.hits.lock().unwrap().clone();
    let statuses: Vec<_> = hits
        .iter()
        .map(|h| h.field("MessageStatus").unwrap())
        .collect();
    assert_eq!(statuses, ["sent", "delivered"]);
    for hit in &hits {
        assert_eq!(hit.url, callback);
        assert!(verify_twilio_signature(
            TOKEN,
            &hit.url,
            &hit.form,
            &hit.signature
        ));
        assert_eq!(twilio_signature(TOKEN, &hit.url, &hit.form), hit.signature);
        assert!(!verify_twilio_signature(
            "other",
            &hit.url,
            &hit.form,
            &hit.signature
        ));
        assert_eq!(hit.field("MessageSid"), Some(sid));
        assert_eq!(hit.field("SmsSid"), Some(sid));
        assert_eq!(hit.field("SmsStatus"), hit.field("MessageStatus"));
        assert_eq!(hit.field("AccountSid"), Some(SID));
        assert_eq!(hit.field("From"), Some(FROM));
        assert_eq!(hit.field("To"), Some("+14155552671"));
        assert_eq!(hit.field("ApiVersion"), Some("2010-04-01"));
    }
    let delivered = &hits[1];
    assert_eq!(delivered.field("Price"), Some("-0.00830"));
    assert_eq!(delivered.field("PriceUnit"), Some("USD"));
    assert_eq!(delivered.field("NumSegments"), Some("1"));
    assert_eq!(delivered.field("RawDlrDoneDate").map(str::len), Some(10));
    assert!(hits[0].field("RawDlrDoneDate").is_none());

    let fetched: Value = serde_json::from_slice(
        &reqwest::Client::new()
            .get(format!(
                "{}/2010-04-01/Accounts/{SID}/Messages/{sid}.json",
                carrier.base_url()
            ))
            .basic_auth(SID, Some(TOKEN))
            .send()
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap(),
    )
    .unwrap();
    assert_eq!(fetched["status"], "delivered");
    assert_eq!(fetched["price"], "-0.00830");
    assert!(fetched["date_sent"].is_string());
    carrier.shutdown().await;
}

/// Recipients ending in 0030 and 0070 end undelivered (30003) and failed (30007).
#[tokio::test]
async fn failure_recipients() {
    let carrier = start().await;
    let rx = receiver(0).await;
    let callback = format!("{}/status", rx.base);
    for to in ["+14155550030", "+14155550070"] {
        let (s, _, _) = send(
            &carrier,
            &[
                ("To", to),
                ("From", FROM),
                ("Body", "Hi"),
                ("StatusCallback", &callback),
            ],
        )
        .await;
        assert_eq!(s, StatusCode::CREATED);
    }
    carrier.wait_for_callbacks(3, Duration::from_secs(5)).await;
    let hits = rx.hits.lock().unwrap().clone();
    let seen = |to: &str| -> Vec<(String, Option<String>)> {
        hits.iter()
            .filter(|h| h.field("To") == Some(to))
            .map(|h| {
                (
                    h.field("MessageStatus").unwrap().to_owned(),
                    h.field("ErrorCode").map(str::to_owned),
                )
            })
            .collect()
    };
    assert_eq!(
        seen("+14155550030"),
        [
            ("sent".to_owned(), None),
            ("undelivered".to_owned(), Some("30003".to_owned()))
        ]
    );
    assert_eq!(
        seen("+14155550070"),
        [("failed".to_owned(), Some("30007".to_owned()))]
    );
    let failed = carrier
        .messages()
        .into_iter()
        .find(|m| m.to == "+14155550070")
        .unwrap();
    assert_eq!(
        (failed.status.as_str(), failed.error_code),
        ("failed", Some(30007))
    );
}

/// A callback answered with 5xx is retried, and every attempt is recorded.
#[tokio::test]
async fn failed_callbacks_are_retried() {
    let carrier = start().await;
    let rx = receiver(1).await;
    let callback = format!("{}/status", rx.base);
    send(
        &carrier,
        &[
            ("To", "+14155552671"),
            ("From", FROM),
            ("Body", "Hi"),
            ("StatusCallback", &callback),
        ],
    )
    .await;
    carrier.wait_for_callbacks(2, Duration::from_secs(5)).await;
    let attempts: Vec<_> = carrier
        .callbacks()
        .iter()
        .map(|c| {
            (
                c.field("MessageStatus").unwrap().to_owned(),
                c.attempt,
                c.status,
            )
        })
        .collect();
    assert_eq!(
        attempts,
        [
            ("sent".to_owned(), 1, Some(500)),
            ("sent".to_owned(), 2, Some(200)),
            ("delivered".to_owned(), 1, Some(200)),
        ]
    );
}

/// Messaging Service sends start accepted with no sender and get one from the pool.
#[tokio::test]
async fn messaging_service_send() {
    let carrier = start().await;
    let rx = receiver(0).await;
    let callback = format!("{}/status", rx.base);
    let ms = "MG0123456789abcdef0123456789abcdef";
    let (s, _, j) = send(
        &carrier,
        &[
            ("To", "+14155552671"),
            ("MessagingServiceSid", ms),
            ("Body", "Hi"),
            ("StatusCallback", &callback),
        ],
    )
    .await;
    assert_eq!(s, StatusCode::CREATED, "{j}");
    assert_eq!(j["status"], "accepted");
    assert_eq!(j["num_segments"], "0");
    assert!(j["from"].is_null());
    assert_eq!(j["messaging_service_sid"], ms);
    carrier.wait_for_callbacks(3, Duration::from_secs(5)).await;
    let hits = rx.hits.lock().unwrap().clone();
    let statuses: Vec<_> = hits
        .iter()
        .map(|h| h.field("MessageStatus").unwrap())
        .collect();
    assert_eq!(statuses, ["queued", "sent", "delivered"]);
    assert!(
        hits.iter()
            .all(|h| h.field("MessagingServiceSid") == Some(ms) && h.field("From") == Some(FROM))
    );
}
/// GETs a message resource with the given credentials; returns the status and JSON body.
async fn fetch_as(carrier: &carrier::Carrier, sid: &str, password: &str) -> (StatusCode, Value) {
    let response = reqwest::Client::new()
        .get(format!(
            "{}/2010-04-01/Accounts/{SID}/Messages/{sid}.json",
            carrier.base_url()
        ))
        .basic_auth(SID, Some(password))
        .send()
        .await
        .unwrap();
    let status = response.status();
    (
        status,
        serde_json::from_slice(&response.bytes().await.unwrap()).unwrap(),
    )
}

/// While callbacks are lost none reaches the receiver, yet messages still move and a GET (with
/// the POST's authentication) shows their final state; delivering resumes when switched back.
#[tokio::test]
async fn lost_callbacks_are_held_back_but_messages_move() {
    let carrier = start().await;
    let rx = receiver(0).await;
    let callback = format!("{}/status", rx.base);
    carrier.lose_callbacks(true);
    let mut sids = Vec::new();
    for to in ["+14155552671", "+14155550030", "+14155550070"] {
        let (s, _, j) = send(
            &carrier,
            &[
                ("To", to),
                ("From", FROM),
                ("Body", "Hi"),
                ("StatusCallback", &callback),
            ],
        )
        .await;
        assert_eq!(s, StatusCode::CREATED, "{j}");
        sids.push(j["sid"].as_str().unwrap().to_owned());
    }
    let five = Duration::from_secs(5);
    for (sid, last) in sids.iter().zip(["delivered", "undelivered", "failed"]) {
        assert!(
            carrier.wait_for_status(sid, last, five).await.is_some(),
            "{sid}"
        );
    }
    assert!(rx.hits.lock().unwrap().is_empty());
    assert!(carrier.callbacks().is_empty());
    let lost = carrier.lost_callbacks();
    let words: Vec<_> = lost
        .iter()
        .map(|c| c.field("MessageStatus").unwrap())
        .collect();
    assert_eq!(words.len(), 5, "{words:?}");
    for c in &lost {
        assert_eq!((c.status, c.attempt), (None, 0));
        assert!(verify_twilio_signature(
            TOKEN,
            &c.url,
            &c.params,
            &c.signature
        ));
    }

    let (status, delivered) = fetch_as(&carrier, &sids[0], TOKEN).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(delivered["status"], "delivered");
    assert_eq!(delivered["price"], "-0.00830");
    assert_eq!(delivered["from"], FROM);
    let (_, undelivered) = fetch_as(&carrier, &sids[1], TOKEN).await;
    assert_eq!(
        (
            undelivered["status"].as_str(),
            undelivered["error_code"].as_u64()
        ),
        (Some("undelivered"), Some(30003))
    );
    let (_, failed) = fetch_as(&carrier, &sids[2], TOKEN).await;
    assert_eq!(
        (failed["status"].as_str(), failed["error_code"].as_u64()),
        (Some("failed"), Some(30007))
    );
    let (status, json) = fetch_as(&carrier, &sids[0], "wrong").await;
    assert_twilio_error(status, &json, 401, 20003);
    let (status, json) = fetch_as(&carrier, "SM00000000000000000000000000000000", TOKEN).await;
    assert_twilio_error(status, &json, 404, 20404);

    carrier.lose_callbacks(false);
    send(
        &carrier,
        &[
            ("To", "+14155552671"),
            ("From", FROM),
            ("Body", "Hi"),
            ("StatusCallback", &callback),
        ],
    )
    .await;
    assert_eq!(carrier.wait_for_callbacks(2, five).await.len(), 2);
    assert_eq!(carrier.lost_callbacks().len(), 5);
}

/// The router also works in-process through tower's `oneshot`.
#[tokio::test]
async fn router_oneshot() {
    use tower::ServiceExt as _;
    let state = carrier::CarrierState::new(config());
    let auth = base64::engine::general_purpose::STANDARD.encode(format!("{SID}:{TOKEN}"));
    let request = axum::http::Request::post(format!("/2010-04-01/Accounts/{SID}/Messages.json"))
        .header("Authorization", format!("Basic {auth}"))
        .header("Content-Type", "application/x-www-form-urlencoded")
        .body(axum::body::Body::from(
            "To=%2B14155552671&From=%2B15005550006&Body=Hi",
        ))
        .unwrap();
    let response = carrier::router(state.clone())
        .oneshot(request)
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::CREATED);
    let body = axum::body::to_bytes(response.into_body(), 1 << 20)
        .await
        .unwrap();
    let json: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(
        state.message(json["sid"].as_str().unwrap()).unwrap().body,
        "Hi"
    );

    let request = axum::http::Request::get("/nowhere")
        .body(axum::body::Body::empty())
        .unwrap();
    let response = carrier::router(state).oneshot(request).await.unwrap();
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
}
