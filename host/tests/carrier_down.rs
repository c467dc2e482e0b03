//! A carrier that is down: nothing listens at its address, so every connection is refused and
//! nothing can have been sent. The message is retried (back to `queued`, each attempt counted)
//! instead of ending `unknown`, and is sent once the carrier is back on the same address.
//! Runs on SQLite and on PostgreSQL.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::app::{ACCOUNT_SID, API_KEY, AUTH_TOKEN, Backend};
use herald::Herald;
use herald::config::DeliveryConfig;
use herald_testkit::carrier::{self, CarrierConfig};
use serde_json::{Value, json};
use tokio::net::TcpListener;

on_both_backends!(refused_connection_is_retried_until_the_carrier_is_back);

/// Reads message `id` through the API.
async fn message(client: &reqwest::Client, base: &str, id: &str) -> Value {
    let response = client
        .get(format!("{base}/api/v1/sms/messages/{id}"))
        .bearer_auth(API_KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    response.json().await.unwrap()
}

/// Polls message `id` until `done` holds (10 s at most), then returns it.
async fn wait_until(
    client: &reqwest::Client,
    base: &str,
    id: &str,
    what: &str,
    done: impl Fn(&Value) -> bool,
) -> Value {
    let mut last = Value::Null;
    for _ in 0..400 {
        last = message(client, base, id).await;
        if done(&last) {
            return last;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("message {id}: {what} did not happen within 10 s: {last:#}");
}

/// Binds `addr` again; the port was just released, so only another process could hold it.
async fn rebind(addr: SocketAddr) -> TcpListener {
    for _ in 0..50 {
        if let Ok(listener) = TcpListener::bind(addr).await {
            return listener;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("could not bind the carrier's address {addr} again");
}

/// With nothing listening at the carrier's address, a message goes back to `queued` after each
/// refused attempt (attempts counted, the error saying nothing was sent); once the carrier
/// listens on that address again, the next attempt sends it.
async fn refused_connection_is_retried_until_the_carrier_is_back(backend: Backend) {
    // The carrier's address refuses connections until the carrier is started on it.
    let (reserved, carrier_addr) = common::refusing_address();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let (storage, _dir) = common::app::storage_url(backend).await;
    let mut config = common::app::config(&base, &format!("http://{carrier_addr}"), &storage);
    config.delivery = DeliveryConfig {
        max_attempts: 1_000,
        retry_base_ms: 20,
        retry_max_ms: 60,
        ..config.delivery
    };
    let herald = Herald::builder().config(config).build().await.unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn({
        let herald = herald.clone();
        async move {
            herald
                .serve(listener, async {
                    let _ = stopped.await;
                })
                .await
                .unwrap();
        }
    });
    let client = reqwest::Client::new();
    let response = client
        .post(format!("{base}/api/v1/sms/send"))
        .bearer_auth(API_KEY)
        .json(&json!({"to_number": "+14155552671", "message": "Are you there?"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 202);
    let id = response.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();

    let retried = wait_until(&client, &base, &id, "two refused attempts", |m| {
        m["attempts"].as_u64().unwrap() >= 2 && m["status"] == "queued"
    })
    .await;
    let error = retried["error"]["message"].as_str().unwrap();
    assert!(error.contains("nothing was sent"), "{retried:#}");
    let statuses: Vec<&str> = retried["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["status"].as_str().unwrap())
        .collect();
    assert!(!statuses.contains(&"unknown"), "{statuses:?}");
    assert!(!statuses.contains(&"failed"), "{statuses:?}");
    assert_eq!(&statuses[..3], ["queued", "sending", "queued"]);

    drop(reserved);
    let carrier = carrier::spawn(
        rebind(carrier_addr).await,
        CarrierConfig {
            account_sid: ACCOUNT_SID.into(),
            auth_token: AUTH_TOKEN.into(),
            callback_delay: Duration::from_millis(20),
            inbound_url: None,
            accounts: Vec::new(),
        },
    )
    .await;
    let sent = wait_until(&client, &base, &id, "sent", |m| {
        m["provider_message_id"].is_string()
    })
    .await;
    let attempts = sent["attempts"].as_u64().unwrap();
    assert!(attempts >= 3, "{sent:#}");
    let delivered = wait_until(&client, &base, &id, "delivered", |m| {
        m["status"] == "delivered"
    })
    .await;
    let history: Vec<(&str, &str)> = delivered["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| (e["status"].as_str().unwrap(), e["source"].as_str().unwrap()))
        .collect();
    let sends = history.iter().filter(|(s, _)| *s == "sending").count();
    assert_eq!(sends as u64, attempts, "{history:?}");
    assert!(history.contains(&("sent", "dispatcher")), "{history:?}");
    assert_eq!(history.last(), Some(&("delivered", "webhook")));
    // Only the attempt after the carrier came back reached it.
    assert_eq!(carrier.requests().len(), 1);
    assert_eq!(delivered["provider_message_id"], carrier.messages()[0].sid);

    let _ = stop.send(());
    server.await.unwrap();
}
