//! The delivery pipeline end to end, each scenario on SQLite and on PostgreSQL: accept over HTTP,
//! dispatch through the Twilio plugin to the local carrier, track signed status callbacks.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::app::{ACCOUNT_SID, AUTH_TOKEN, Backend, OUR_NUMBER, TestApp};
use herald_testkit::carrier::{ScriptedResponse, twilio_signature};
use reqwest::StatusCode;
use serde_json::{Value, json};

on_both_backends!(
    delivered_end_to_end,
    templated_send,
    forged_and_late_callbacks,
    stop_start_and_substrings,
    retry_then_deliver,
    invalid_recipient_is_not_retried,
    idempotent_sends,
    bad_input_is_refused,
    listing_filters_and_pages,
    graceful_shutdown_finishes_calls_in_flight,
);

/// A graceful shutdown stops claiming but lets the call in flight finish and record its outcome.
async fn graceful_shutdown_finishes_calls_in_flight(backend: Backend) {
    let mut app = TestApp::start(backend).await;
    app.carrier
        .script(ScriptedResponse::Hang(std::time::Duration::from_millis(
            600,
        )));
    let id = app
        .send(json!({"to_number": "+14155552671", "message": "in flight"}))
        .await["id"]
        .as_str()
        .unwrap()
        .to_string();
    app.wait_for(&id, "sending").await;
    app.shutdown().await;
    let store = herald::store::Store::connect(&app.storage, &Default::default())
        .await
        .unwrap();
    let message = store
        .get_message(&herald::TenantId::default_tenant(), &id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        message.status.as_str(),
        "sent",
        "the call in flight must finish and be recorded"
    );
    assert_eq!(store.count_queue().await.unwrap(), 0);
    store.close().await;
}

/// A send reaches the carrier as the right request and ends `delivered`, history in order.
async fn delivered_end_to_end(backend: Backend) {
    let app = TestApp::start(backend).await;
    let accepted = app.send(json!({"to_number": "+14155552671", "message": "Your order is ready!", "customer_id": 123})).await;
    assert_eq!(accepted["status"], "queued");
    assert_eq!(accepted["encoding"], "GSM-7");
    assert_eq!(accepted["segments"], 1);
    let id = accepted["id"].as_str().unwrap();

    let message = app.wait_for(id, "delivered").await;
    assert_eq!(
        TestApp::history(&message),
        ["queued", "sending", "sent", "delivered"]
    );
    let times: Vec<i64> = message["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["occurred_at"].as_i64().unwrap())
        .collect();
    assert!(times.windows(2).all(|w| w[0] <= w[1]), "{times:?}");
    assert!(
        message["provider_message_id"]
            .as_str()
            .unwrap()
            .starts_with("SM")
    );
    assert_eq!(message["price"]["currency"], "USD");
    assert_eq!(message["customer_id"], "123");

    let requests = app.carrier.requests();
    assert_eq!(requests.len(), 1);
    let form = &requests[0].form;
    let field = |k: &str| form.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
    assert_eq!(
        requests[0].path,
        format!("/2010-04-01/Accounts/{ACCOUNT_SID}/Messages.json")
    );
    assert_eq!(field("To"), Some("+14155552671"));
    assert_eq!(field("Body"), Some("Your order is ready!"));
    assert_eq!(field("From"), Some(OUR_NUMBER));
    let token = app.herald.pipeline().callback_key().token(
        &herald::TenantId::default_tenant(),
        id,
        "twilio",
    );
    assert_eq!(
        field("StatusCallback"),
        Some(
            format!(
                "{}/api/v1/sms/webhooks/twilio/status?message_id={id}&token={token}",
                app.base
            )
            .as_str()
        )
    );
    app.stop().await;
}

/// A templated send is rendered by the mustache plugin; a missing variable is a 422 naming it.
async fn templated_send(backend: Backend) {
    let app = TestApp::start(backend).await;
    let (status, template) = app
        .post(
            "/api/v1/sms/templates",
            &json!({"name": "pickup_ready", "category": "order", "template_body": "Hi {{customer_name}}, order #{{order_number}} is ready!"}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{template}");
    assert_eq!(
        template["variables"],
        json!(["customer_name", "order_number"])
    );
    let template_id = template["id"].as_str().unwrap();

    let (status, error) = app
        .post("/api/v1/sms/send", &json!({"to_number": "+14155552671", "template_id": template_id, "template_variables": {"customer_name": "Ann"}}))
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{error}");
    assert_eq!(error["error"]["code"], "missing_template_variable");
    assert!(
        error["error"]["message"]
            .as_str()
            .unwrap()
            .contains("order_number"),
        "{error}"
    );
    assert_eq!(
        app.message_count().await,
        0,
        "a refused send stores nothing"
    );

    let accepted = app
        .send(json!({"to_number": "+14155552671", "template_id": template_id, "template_variables": {"customer_name": "Ann", "order_number": 42}}))
        .await;
    assert_eq!(accepted["body"], "Hi Ann, order #42 is ready!");
    app.wait_for(accepted["id"].as_str().unwrap(), "delivered")
        .await;
    assert_eq!(
        app.carrier.requests()[0]
            .form
            .iter()
            .find(|(k, _)| k == "Body")
            .unwrap()
            .1,
        "Hi Ann, order #42 is ready!"
    );

    let (status, error) = app
        .post(
            "/api/v1/sms/templates",
            &json!({"name": "broken", "template_body": "Hi {{name"}),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(error["error"]["code"], "invalid_template");
    let (status, error) = app
        .post(
            "/api/v1/sms/templates",
            &json!({"name": "pickup_ready", "template_body": "x"}),
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert_eq!(error["error"]["code"], "template_exists");
    app.stop().await;
}

/// Posts a status callback for `id` (on the URL Herald gave Twilio) signed with `token` (or
/// unsigned).
async fn callback(
    app: &TestApp,
    id: &str,
    sid: &str,
    status: &str,
    token: Option<&str>,
) -> StatusCode {
    let callback_token = app.herald.pipeline().callback_key().token(
        &herald::TenantId::default_tenant(),
        id,
        "twilio",
    );
    let url = format!(
        "{}/api/v1/sms/webhooks/twilio/status?message_id={id}&token={callback_token}",
        app.base
    );
    let params: Vec<(String, String)> = [
        ("MessageSid", sid),
        ("MessageStatus", status),
        ("AccountSid", ACCOUNT_SID),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    let mut request = app.client.post(&url).form(&params);
    if let Some(token) = token {
        request = request.header("X-Twilio-Signature", twilio_signature(token, &url, &params));
    }
    request.send().await.unwrap().status()
}

/// Forged and unsigned callbacks are 403 and change nothing; duplicate and late ones never regress.
async fn forged_and_late_callbacks(backend: Backend) {
    let app = TestApp::start(backend).await;
    let id = app
        .send(json!({"to_number": "+14155552671", "message": "hi"}))
        .await["id"]
        .as_str()
        .unwrap()
        .to_string();
    let delivered = app.wait_for(&id, "delivered").await;
    let sid = delivered["provider_message_id"]
        .as_str()
        .unwrap()
        .to_string();
    let events = delivered["history"].as_array().unwrap().len();

    assert_eq!(
        callback(&app, &id, &sid, "failed", Some("not-the-token")).await,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        callback(&app, &id, &sid, "failed", None).await,
        StatusCode::FORBIDDEN
    );
    let after = app.message(&id).await;
    assert_eq!(after["status"], "delivered");
    assert_eq!(
        after["history"].as_array().unwrap().len(),
        events,
        "a forged callback must change nothing"
    );

    assert_eq!(
        callback(&app, &id, &sid, "sent", Some(AUTH_TOKEN)).await,
        StatusCode::OK
    );
    assert_eq!(
        callback(&app, &id, &sid, "delivered", Some(AUTH_TOKEN)).await,
        StatusCode::OK
    );
    assert_eq!(
        callback(&app, &id, &sid, "queued", Some(AUTH_TOKEN)).await,
        StatusCode::OK
    );
    let after = app.message(&id).await;
    assert_eq!(after["status"], "delivered");
    assert_eq!(
        after["history"].as_array().unwrap().len(),
        events,
        "late and duplicate callbacks add no event"
    );

    // A webhook for a provider that is not loaded is not ours to take.
    let (status, body) = app
        .post("/api/v1/sms/webhooks/nope/status", &json!({}))
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    app.stop().await;
}

/// STOP blocks later sends (nothing reaches the carrier), START allows them, "please stop by" does nothing.
async fn stop_start_and_substrings(backend: Backend) {
    let app = TestApp::start(backend).await;
    let number = "+14155550123";

    assert_eq!(
        app.carrier
            .send_inbound(number, OUR_NUMBER, "please stop by at 5")
            .await
            .unwrap(),
        StatusCode::OK
    );
    let id = app
        .send(json!({"to_number": number, "message": "still allowed"}))
        .await["id"]
        .as_str()
        .unwrap()
        .to_string();
    app.wait_for(&id, "delivered").await;

    assert_eq!(
        app.carrier
            .send_inbound(number, OUR_NUMBER, " Stop ")
            .await
            .unwrap(),
        StatusCode::OK
    );
    let (status, error) = app
        .post(
            "/api/v1/sms/send",
            &json!({"to_number": number, "message": "blocked"}),
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{error}");
    assert_eq!(error["error"]["code"], "recipient_opted_out");
    // The one message that may still reach the number is the opt-out confirmation.
    wait_until(|| app.carrier_requests_to(number) == 2).await;
    let confirmation = app.carrier.requests().last().unwrap().form.clone();
    assert!(
        confirmation
            .iter()
            .any(|(k, v)| k == "Body" && v.contains("unsubscribed")),
        "{confirmation:?}"
    );
    assert!(
        !app.carrier
            .requests()
            .iter()
            .any(|r| r.form.iter().any(|(k, v)| k == "Body" && v == "blocked"))
    );

    assert_eq!(
        app.carrier
            .send_inbound(number, OUR_NUMBER, "help")
            .await
            .unwrap(),
        StatusCode::OK
    );
    wait_until(|| app.carrier_requests_to(number) == 3).await;
    let help = app.carrier.requests().last().unwrap().form.clone();
    assert!(
        help.iter()
            .any(|(k, v)| k == "Body" && v.contains("Reply STOP")),
        "{help:?}"
    );
    assert_eq!(
        app.carrier
            .send_inbound(number, OUR_NUMBER, "START")
            .await
            .unwrap(),
        StatusCode::OK
    );
    let id = app
        .send(json!({"to_number": number, "message": "welcome back"}))
        .await["id"]
        .as_str()
        .unwrap()
        .to_string();
    app.wait_for(&id, "delivered").await;
    app.stop().await;
}

async fn wait_until(condition: impl Fn() -> bool) {
    for _ in 0..400 {
        if condition() {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
    panic!("condition not met within 10 s");
}

/// A 429 from the carrier is retried and the message is delivered on the next attempt.
async fn retry_then_deliver(backend: Backend) {
    let app = TestApp::start(backend).await;
    app.carrier.script(ScriptedResponse::Error {
        http_status: 429,
        code: 20429,
        retry_after: None,
    });
    let id = app
        .send(json!({"to_number": "+14155552671", "message": "retry me"}))
        .await["id"]
        .as_str()
        .unwrap()
        .to_string();
    let message = app.wait_for(&id, "delivered").await;
    assert_eq!(message["attempts"], 2);
    assert_eq!(app.carrier.requests().len(), 2);
    assert_eq!(
        TestApp::history(&message),
        [
            "queued",
            "sending",
            "queued",
            "sending",
            "sent",
            "delivered"
        ]
    );
    app.stop().await;
}

/// Twilio's 21211 (invalid number) fails the message at once, without a retry.
async fn invalid_recipient_is_not_retried(backend: Backend) {
    let app = TestApp::start(backend).await;
    let id = app
        .send(json!({"to_number": "+15005550001", "message": "nobody"}))
        .await["id"]
        .as_str()
        .unwrap()
        .to_string();
    let message = app.wait_for(&id, "failed").await;
    assert_eq!(message["attempts"], 1);
    assert_eq!(message["error"]["code"], "21211");
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert_eq!(
        app.carrier.requests().len(),
        1,
        "an invalid recipient must not be retried"
    );
    app.stop().await;
}

/// The same Idempotency-Key twice makes one message and one carrier request; another body is a 409.
async fn idempotent_sends(backend: Backend) {
    let app = TestApp::start(backend).await;
    let url = format!("{}/api/v1/sms/send", app.base);
    let body = json!({"to_number": "+14155552671", "message": "once"});
    let (s1, first) = app
        .request(
            app.client
                .post(&url)
                .header("Idempotency-Key", "order-42")
                .json(&body),
        )
        .await;
    let (s2, second) = app
        .request(
            app.client
                .post(&url)
                .header("Idempotency-Key", "order-42")
                .json(&body),
        )
        .await;
    assert_eq!((s1, s2), (StatusCode::ACCEPTED, StatusCode::ACCEPTED));
    assert_eq!(first["id"], second["id"]);
    let other = json!({"to_number": "+14155552671", "message": "twice"});
    let (s3, conflict) = app
        .request(
            app.client
                .post(&url)
                .header("Idempotency-Key", "order-42")
                .json(&other),
        )
        .await;
    assert_eq!(s3, StatusCode::CONFLICT, "{conflict}");
    assert_eq!(conflict["error"]["code"], "idempotency_conflict");
    app.wait_for(first["id"].as_str().unwrap(), "delivered")
        .await;
    assert_eq!(app.message_count().await, 1);
    assert_eq!(app.carrier.requests().len(), 1);
    app.stop().await;
}

/// Client mistakes get the one error shape with a 4xx, and nothing is stored.
async fn bad_input_is_refused(backend: Backend) {
    let app = TestApp::start(backend).await;
    let url = format!("{}/api/v1/sms/send", app.base);
    let raw = |body: &'static str| {
        app.client
            .post(&url)
            .header("content-type", "application/json")
            .body(body)
    };
    let cases: Vec<(reqwest::RequestBuilder, StatusCode, &str)> = vec![
        (
            raw("{\"to_number\": "),
            StatusCode::BAD_REQUEST,
            "malformed_json",
        ),
        (
            raw("[1, 2]"),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_field",
        ),
        (
            raw("{\"to_number\": 14155552671, \"message\": \"x\"}"),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_field",
        ),
        (
            raw("{\"to_number\": \"+14155552671\", \"message\": \"x\", \"surprise\": 1}"),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_field",
        ),
        (
            raw("{\"to_number\": \"555-1234\", \"message\": \"x\"}"),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_phone_number",
        ),
        (
            raw("{\"to_number\": \"+14155552671\", \"message\": \"   \"}"),
            StatusCode::UNPROCESSABLE_ENTITY,
            "empty_message",
        ),
        (
            raw("{\"to_number\": \"+14155552671\"}"),
            StatusCode::UNPROCESSABLE_ENTITY,
            "missing_body",
        ),
        (
            raw("{\"to_number\": \"+14155552671\", \"message\": \"x\", \"template_id\": \"t\"}"),
            StatusCode::UNPROCESSABLE_ENTITY,
            "ambiguous_body",
        ),
        (
            raw("{\"to_number\": \"+14155552671\", \"template_id\": \"tpl_missing\"}"),
            StatusCode::UNPROCESSABLE_ENTITY,
            "unknown_template",
        ),
        (
            app.client.post(&url).body("to_number=x"),
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
        ),
    ];
    for (request, status, code) in cases {
        let (got, body) = app.request(request).await;
        assert_eq!(
            (got, body["error"]["code"].as_str()),
            (status, Some(code)),
            "{body}"
        );
        assert!(body["error"]["message"].is_string(), "{body}");
    }
    let too_long = "a".repeat(1601);
    let (status, body) = app
        .post(
            "/api/v1/sms/send",
            &json!({"to_number": "+14155552671", "message": too_long}),
        )
        .await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (StatusCode::UNPROCESSABLE_ENTITY, Some("message_too_long"))
    );
    let huge = json!({"to_number": "+14155552671", "message": "x", "metadata": {"blob": "b".repeat(200_000)}});
    let (status, body) = app.post("/api/v1/sms/send", &huge).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (StatusCode::PAYLOAD_TOO_LARGE, Some("payload_too_large")),
        "{body}"
    );
    let response = app
        .client
        .post(&url)
        .json(&json!({"to_number": "+14155552671", "message": "x"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    let (status, body) = app.get("/api/v1/sms/messages/msg_nope").await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (StatusCode::NOT_FOUND, Some("message_not_found"))
    );
    let (status, body) = app.get("/api/v1/sms/messages?status=bogus").await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (StatusCode::UNPROCESSABLE_ENTITY, Some("invalid_query"))
    );
    assert_eq!(app.message_count().await, 0);
    assert!(app.carrier.requests().is_empty());
    app.stop().await;
}

/// Listing filters by status, number and customer, and pages with a cursor.
async fn listing_filters_and_pages(backend: Backend) {
    let app = TestApp::start(backend).await;
    let mut ids = Vec::new();
    for i in 0..5 {
        let to = if i % 2 == 0 {
            "+14155552671"
        } else {
            "+14155552672"
        };
        ids.push(app.send(json!({"to_number": to, "message": format!("m{i}"), "customer_id": format!("c{}", i % 2)})).await["id"].clone());
    }
    for id in &ids {
        app.wait_for(id.as_str().unwrap(), "delivered").await;
    }
    let (_, page) = app
        .get("/api/v1/sms/messages?phone_number=%2B14155552671")
        .await;
    assert_eq!(page["items"].as_array().unwrap().len(), 3);
    let (_, page) = app
        .get("/api/v1/sms/messages?customer_id=c1&status=delivered")
        .await;
    assert_eq!(page["items"].as_array().unwrap().len(), 2);
    let (_, first) = app.get("/api/v1/sms/messages?limit=2").await;
    assert_eq!(first["items"][0]["id"], ids[4], "newest first");
    let cursor = first["next_cursor"].as_str().unwrap();
    let (_, second) = app
        .get(&format!("/api/v1/sms/messages?limit=2&cursor={cursor}"))
        .await;
    assert_eq!(second["items"][0]["id"], ids[2]);
    let (_, none) = app
        .get("/api/v1/sms/messages?start_date=2000-01-01&end_date=2000-01-02")
        .await;
    assert!(none["items"].as_array().unwrap().is_empty());
    let (status, _) = app.get("/api/v1/sms/messages?start_date=yesterday").await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    let _: Value = Value::Null;
    app.stop().await;
}
