//! Input that must never become a 500, and idempotent replays, against a running Herald on
//! SQLite and on PostgreSQL (which cannot store a NUL character, so it is where a NUL that
//! slipped through would surface).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::app::{Backend, TestApp};
use reqwest::StatusCode;
use serde_json::{Value, json};

on_both_backends!(nul_never_reaches_storage, replay_after_opt_out);

/// Sends `body` with `Idempotency-Key: key`; returns status, whether it was a replay, and body.
async fn send_with_key(app: &TestApp, key: &str, body: &Value) -> (StatusCode, bool, Value) {
    let response = app
        .client
        .post(format!("{}/api/v1/sms/send", app.base))
        .bearer_auth(common::app::API_KEY)
        .header("Idempotency-Key", key)
        .json(body)
        .send()
        .await
        .unwrap();
    let status = response.status();
    let replayed = response
        .headers()
        .get("idempotent-replayed")
        .is_some_and(|v| v == "true");
    (status, replayed, response.json().await.unwrap())
}

/// A NUL character in a body, a customer reference, a path id, a query filter or a webhook is
/// refused with a 4xx in the one error shape, never a 500; Herald keeps serving afterwards.
async fn nul_never_reaches_storage(backend: Backend) {
    let app = TestApp::start(backend).await;
    let to = "+14155552671";
    for body in [
        json!({"to_number": to, "message": "a\u{0}b"}),
        json!({"to_number": to, "message": "x", "customer_id": "c\u{0}"}),
    ] {
        let (status, answer) = app.post("/api/v1/sms/send", &body).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{answer}");
        assert_eq!(answer["error"]["code"], "invalid_field");
    }
    let (status, answer) = app.get("/api/v1/sms/messages/%00").await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{answer}");
    assert_eq!(answer["error"]["code"], "invalid_field");
    for query in ["customer_id=%00", "phone_number=%2B1415555%002671"] {
        let (status, answer) = app.get(&format!("/api/v1/sms/messages?{query}")).await;
        assert_eq!(
            status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{query}: {answer}"
        );
        assert_eq!(answer["error"]["code"], "invalid_query");
    }
    for (path, body) in [
        (
            "/api/v1/sms/webhooks/twilio/inbound",
            "From=%2B14155552671&Body=%00",
        ),
        (
            "/api/v1/sms/webhooks/twilio/status?message_id=%00",
            "MessageSid=SM1&MessageStatus=delivered",
        ),
    ] {
        let (status, answer) = app
            .request(
                app.client
                    .post(format!("{}{path}", app.base))
                    .header("content-type", "application/x-www-form-urlencoded")
                    .body(body),
            )
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{path}: {answer}");
        assert_eq!(answer["error"]["code"], "malformed_webhook");
    }
    assert_eq!(app.message_count().await, 0);
    let sent = app
        .send(json!({"to_number": to, "message": "still fine"}))
        .await;
    app.wait_for(sent["id"].as_str().unwrap(), "delivered")
        .await;
    app.stop().await;
}

/// A replay after the number opted out answers 202 with the stored message and
/// `Idempotent-Replayed: true`, not 409; a new request to that number is still refused, and a
/// different request under the same key is still a conflict.
async fn replay_after_opt_out(backend: Backend) {
    let app = TestApp::start(backend).await;
    let body = json!({"to_number": "+14155552671", "message": "Your table is ready"});
    let (status, replayed, first) = send_with_key(&app, "table-7", &body).await;
    assert_eq!((status, replayed), (StatusCode::ACCEPTED, false), "{first}");
    let id = first["id"].as_str().unwrap().to_owned();
    app.wait_for(&id, "delivered").await;

    let stop = app
        .carrier
        .send_inbound("+14155552671", common::app::OUR_NUMBER, "STOP")
        .await
        .unwrap();
    assert_eq!(stop, reqwest::StatusCode::OK);
    let (status, refused) = app.post("/api/v1/sms/send", &body).await;
    assert_eq!(status, StatusCode::CONFLICT, "{refused}");
    assert_eq!(refused["error"]["code"], "recipient_opted_out");

    let (status, replayed, again) = send_with_key(&app, "table-7", &body).await;
    assert_eq!((status, replayed), (StatusCode::ACCEPTED, true), "{again}");
    assert_eq!(again["id"], id.as_str());
    assert_eq!(again["status"], "delivered");

    let other = json!({"to_number": "+14155552671", "message": "Something else"});
    let (status, _, conflict) = send_with_key(&app, "table-7", &other).await;
    assert_eq!(status, StatusCode::CONFLICT, "{conflict}");
    assert_eq!(conflict["error"]["code"], "idempotency_conflict");
    // The carrier saw the message once: nothing was sent again. (The STOP confirmation may or
    // may not have gone out yet, so only this body is counted.)
    let sends = app
        .carrier
        .requests()
        .iter()
        .filter(|r| {
            r.form
                .iter()
                .any(|(k, v)| k == "Body" && v == "Your table is ready")
        })
        .count();
    assert_eq!(sends, 1);
    app.stop().await;
}
