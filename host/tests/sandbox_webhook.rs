//! The sandbox against a hostile provider's webhooks (issue 8, finding 3): a provider plugin that
//! accepts every webhook and reports whatever the body asks (`hostile-webhook`), loaded beside
//! Twilio, cannot touch a Twilio message, cannot jump a queued message to `delivered`, and cannot
//! make one inbound keyword trigger more than one compliance reply. Each scenario runs on SQLite
//! and on PostgreSQL.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::app::{ACCOUNT_SID, AUTH_TOKEN, Backend, TestApp};
use herald::segments::Encoding;
use herald::store::{NewMessage, new_id};
use herald::{Category, TenantId};
use herald_testkit::carrier::twilio_signature;
use reqwest::StatusCode;
use serde_json::{Value, json};

on_both_backends!(
    hostile_callbacks_cannot_touch_a_twilio_message,
    a_queued_message_is_not_moved_by_a_callback,
    one_inbound_keyword_triggers_one_reply,
    a_tenants_number_is_not_spoken_for_by_another_provider,
);

/// The hostile plugin's name, as configured.
const HOSTILE: &str = "hostile-webhook";
/// The number the hostile plugin's settings name, so inbound messages to it are the default
/// tenant's through that provider.
const HOSTILE_NUMBER: &str = "+15005550011";

/// Starts Herald with Twilio routed and the hostile plugin loaded beside it; the carrier calls
/// back after `callback_delay`.
async fn start(backend: Backend, callback_delay: Duration) -> TestApp {
    TestApp::start_custom(
        backend,
        |carrier| carrier.callback_delay = callback_delay,
        |config| {
            let mut hostile = common::plugin_config(common::plugin(HOSTILE));
            hostile
                .config
                .insert("from".to_string(), HOSTILE_NUMBER.to_string());
            config.plugins.insert(HOSTILE.to_string(), hostile);
        },
    )
    .await
}

/// Posts `body` to the hostile plugin's webhook `path` (`status?…` or `inbound`), with the
/// `x-hostile-id` header when given.
async fn hostile_post(app: &TestApp, path: &str, body: &str, id: Option<&str>) -> StatusCode {
    let mut request = app
        .client
        .post(format!("{}/api/v1/sms/webhooks/{HOSTILE}/{path}", app.base))
        .body(body.to_string());
    if let Some(id) = id {
        request = request.header("x-hostile-id", id);
    }
    request.send().await.unwrap().status()
}

/// Posts a Twilio status callback to `url`, signed with the carrier's auth token.
async fn twilio_callback(app: &TestApp, url: &str, sid: &str, status: &str) -> StatusCode {
    let params: Vec<(String, String)> = [
        ("MessageSid", sid),
        ("MessageStatus", status),
        ("AccountSid", ACCOUNT_SID),
        ("Price", "-0.00790"),
        ("PriceUnit", "USD"),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    app.client
        .post(url)
        .header(
            "X-Twilio-Signature",
            twilio_signature(AUTH_TOKEN, url, &params),
        )
        .form(&params)
        .send()
        .await
        .unwrap()
        .status()
}

/// What a hostile callback must not change about a message.
fn fingerprint(message: &Value) -> Value {
    json!({
        "status": message["status"],
        "price": message["price"],
        "provider_segments": message["provider_segments"],
        "provider_message_id": message["provider_message_id"],
        "history": message["history"].as_array().unwrap().len(),
    })
}

/// A hostile provider's callbacks naming a Twilio message (no token, a forged token, Twilio's own
/// token, or the Twilio message's provider id) are refused or ignored and change nothing, even
/// an early `undelivered`; the genuine Twilio callback still delivers it.
async fn hostile_callbacks_cannot_touch_a_twilio_message(backend: Backend) {
    let app = start(backend, Duration::from_millis(1_500)).await;
    let id = app
        .send(json!({"to_number": "+14155552671", "message": "hi"}))
        .await["id"]
        .as_str()
        .unwrap()
        .to_string();
    let sent = app.wait_for(&id, "sent").await;
    let sid = sent["provider_message_id"].as_str().unwrap().to_string();
    let request = app.carrier.requests()[0].clone();
    let twilio_url = request
        .form
        .iter()
        .find(|(k, _)| k == "StatusCallback")
        .map(|(_, v)| v.clone())
        .unwrap();
    let twilio_token = twilio_url.split("&token=").nth(1).unwrap().to_string();
    assert_eq!(twilio_token.len(), 64, "{twilio_url}");

    // An early `undelivered`, then absurd facts, every way a hostile webhook can name it.
    let attacks = [
        format!("status?message_id={id}"),
        format!("status?message_id={id}&token={}", "0".repeat(64)),
        format!("status?message_id={id}&token={twilio_token}"),
        format!("status?message_id={id}&token=not-hex"),
    ];
    for query in &attacks {
        for body in [
            format!("status {sid} undelivered"),
            format!("status {sid} read {} 999", i64::MIN),
        ] {
            assert_eq!(
                hostile_post(&app, query, &body, None).await,
                StatusCode::FORBIDDEN,
                "{query}"
            );
        }
    }
    // Without a message id the report is looked up by provider id, within the hostile provider.
    assert_eq!(
        hostile_post(&app, "status", &format!("status {sid} undelivered"), None).await,
        StatusCode::OK
    );
    assert_eq!(
        fingerprint(&app.message(&id).await),
        fingerprint(&sent),
        "a hostile callback changed a Twilio message"
    );

    // The genuine callback still delivers it.
    let delivered = app.wait_for(&id, "delivered").await;
    assert_eq!(
        TestApp::history(&delivered),
        ["queued", "sending", "sent", "delivered"]
    );
    for query in &attacks {
        let body = format!("status {sid} read {} 999", i64::MIN);
        assert_eq!(
            hostile_post(&app, query, &body, None).await,
            StatusCode::FORBIDDEN
        );
    }
    let after = app.message(&id).await;
    assert_eq!(fingerprint(&after), fingerprint(&delivered));
    assert_ne!(after["provider_segments"], 999);

    // Twilio's own URL, posted through the hostile provider's path, is refused too.
    let through_hostile = twilio_url.replace("/webhooks/twilio/", &format!("/webhooks/{HOSTILE}/"));
    let status = app
        .client
        .post(&through_hostile)
        .body(format!("status {sid} read"))
        .send()
        .await
        .unwrap()
        .status();
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(app.message(&id).await["status"], "delivered");
    app.stop().await;
}

/// A genuinely signed callback with a valid token cannot move a message that is still `queued`
/// (not in flight, never accepted) to `delivered`, nor store its price.
async fn a_queued_message_is_not_moved_by_a_callback(backend: Backend) {
    let app = start(backend, Duration::from_millis(20)).await;
    let pipeline = app.herald.pipeline();
    let now = pipeline.now();
    let tenant = TenantId::default_tenant();
    let id = new_id("msg");
    app.herald
        .store()
        .enqueue(&NewMessage {
            id: id.clone(),
            tenant_id: tenant.clone(),
            to_number: "+14155552671".to_owned(),
            sender: None,
            body: "later".to_owned(),
            template_id: None,
            template_version: None,
            category: Category::transactional(),
            encoding: Encoding::Gsm7,
            segments: 1,
            units: 1,
            provider: "twilio".to_owned(),
            max_attempts: 3,
            customer_id: None,
            order_id: None,
            reservation_id: None,
            metadata: None,
            idempotency_key: None,
            request_hash: None,
            due_at: Some(now + 3_600_000),
            bulk: false,
            batch_id: None,
            now,
            charge: None,
        })
        .await
        .unwrap();
    let token = pipeline.callback_key().token(&tenant, &id, "twilio");
    let url = format!(
        "{}/api/v1/sms/webhooks/twilio/status?message_id={id}&token={token}",
        app.base
    );
    assert_eq!(
        twilio_callback(&app, &url, "SMforged0000000000000000000000000", "delivered").await,
        StatusCode::OK
    );
    let message = app.message(&id).await;
    // Due in an hour, it waits as `scheduled`: no provider has it either.
    assert_eq!(message["status"], "scheduled", "{message:#}");
    assert_eq!(TestApp::history(&message), ["scheduled"]);
    assert_eq!(message["price"], Value::Null);
    assert_eq!(message["provider_message_id"], Value::Null);
    app.stop().await;
}

/// The messages the default tenant has queued to `to` (keyword replies among them).
async fn replies_to(app: &TestApp, to: &str) -> usize {
    let (status, page) = app
        .get(&format!(
            "/api/v1/sms/messages?limit=500&phone_number={}",
            to.replace('+', "%2B")
        ))
        .await;
    assert_eq!(status, StatusCode::OK, "{page}");
    page["items"].as_array().unwrap().len()
}

/// One inbound keyword triggers one compliance reply, however many times the request is
/// replayed with a different plugin-chosen id, and however many copies one request reports;
/// another inbound message still gets its own reply.
async fn one_inbound_keyword_triggers_one_reply(backend: Backend) {
    let app = start(backend, Duration::from_millis(20)).await;
    let help_from = "+14155550101";
    let help = format!("inbound header {help_from} {HOSTILE_NUMBER} HELP");
    for replay in ["id-1", "id-2", "id-3"] {
        assert_eq!(
            hostile_post(&app, "inbound", &help, Some(replay)).await,
            StatusCode::OK
        );
    }
    let copies = format!(
        "inbound copy-1 {help_from} {HOSTILE_NUMBER} help\ninbound copy-2 {help_from} {HOSTILE_NUMBER} help"
    );
    assert_eq!(
        hostile_post(&app, "inbound", &copies, None).await,
        StatusCode::OK
    );
    // Two messages (the replayed one and the one with two copies): two replies, not five.
    wait_until(|| async { replies_to(&app, help_from).await >= 2 }).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(replies_to(&app, help_from).await, 2);

    let stop_from = "+14155550102";
    let stop = format!("inbound header {stop_from} {HOSTILE_NUMBER} STOP");
    let start_again = format!("inbound header {stop_from} {HOSTILE_NUMBER} START");
    for (body, replay) in [(&stop, "s-1"), (&start_again, "s-2"), (&stop, "s-3")] {
        assert_eq!(
            hostile_post(&app, "inbound", body, Some(replay)).await,
            StatusCode::OK
        );
    }
    // STOP (reply), START (reply), and the STOP replayed with another id: nothing more.
    wait_until(|| async { replies_to(&app, stop_from).await >= 2 }).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(replies_to(&app, stop_from).await, 2);
    let (status, _) = app
        .post(
            "/api/v1/sms/send",
            &json!({"to_number": stop_from, "message": "still allowed"}),
        )
        .await;
    assert_eq!(
        status,
        StatusCode::ACCEPTED,
        "the replayed STOP must not opt the number out again"
    );
    app.stop().await;
}

/// An inbound STOP to a number the tenant owns, posted through a loaded provider that does not
/// serve the tenant, opts nobody out and triggers no reply.
async fn a_tenants_number_is_not_spoken_for_by_another_provider(backend: Backend) {
    let app = start(backend, Duration::from_millis(20)).await;
    let tenant_number = "+15005550012";
    let (status, body) = app
        .admin(
            reqwest::Method::PUT,
            "/admin/tenants/default/settings",
            Some(&json!({"numbers": [tenant_number]})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let from = "+14155550103";
    let stop = format!("inbound hostile-1 {from} {tenant_number} STOP");
    assert_eq!(
        hostile_post(&app, "inbound", &stop, None).await,
        StatusCode::OK
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(replies_to(&app, from).await, 0, "no keyword reply");
    let (status, body) = app
        .post(
            "/api/v1/sms/send",
            &json!({"to_number": from, "message": "still allowed"}),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    app.stop().await;
}

/// Polls `check` for up to 5 s.
async fn wait_until<F, Fut>(check: F)
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    for _ in 0..200 {
        if check().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("condition not met within 5 s");
}
