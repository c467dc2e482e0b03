//! The sender a message actually went out from: a message queued without one shows the number
//! the provider used once it is sent, read back through `GET /api/v1/sms/messages/{id}`. Runs on
//! SQLite and on PostgreSQL.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::app::{Backend, OUR_NUMBER, TestApp};
use serde_json::json;

on_both_backends!(
    sent_message_shows_the_sender,
    pooled_sender_comes_with_the_callbacks
);

/// A messaging service the carrier accepts (`MG` and 32 hex digits).
const SERVICE: &str = "MG0123456789abcdef0123456789abcdef";

/// A message sent without `from_number` and still `sent` (its callbacks lost, no reconciler)
/// shows the number Twilio answered with, not `null`.
async fn sent_message_shows_the_sender(backend: Backend) {
    let app = TestApp::start_with(backend, |c| c.reconcile.enabled = false).await;
    app.carrier.lose_callbacks(true);
    let queued = app
        .send(json!({"to_number": "+14155552671", "message": "Hello"}))
        .await;
    assert!(queued["sender"].is_null(), "{queued:#}");
    let id = queued["id"].as_str().unwrap();
    let sent = app.wait_for(id, "sent").await;
    assert_eq!(sent["sender"], OUR_NUMBER, "{sent:#}");
    assert_eq!(app.carrier.messages()[0].from.as_deref(), Some(OUR_NUMBER));
    app.stop().await;
}

/// Through a Messaging Service Twilio answers `from: null`; the sender the pool picks arrives
/// with the status callbacks and is stored then.
async fn pooled_sender_comes_with_the_callbacks(backend: Backend) {
    let app = TestApp::start_with(backend, |c| {
        let twilio = c.plugins.get_mut("twilio").unwrap();
        twilio.config.remove("from");
        twilio
            .config
            .insert("messaging_service_sid".into(), SERVICE.into());
    })
    .await;
    let queued = app
        .send(json!({"to_number": "+14155552671", "message": "Hello"}))
        .await;
    let id = queued["id"].as_str().unwrap();
    let delivered = app.wait_for(id, "delivered").await;
    let carried = &app.carrier.messages()[0];
    assert_eq!(carried.messaging_service_sid.as_deref(), Some(SERVICE));
    assert_eq!(
        delivered["sender"],
        carried.from.clone().unwrap(),
        "{delivered:#}"
    );
    assert_eq!(delivered["sender"], "+15005550006");
    app.stop().await;
}
