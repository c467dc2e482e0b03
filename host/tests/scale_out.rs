//! Scale-out on PostgreSQL: several Herald instances on one database share the queue, and each
//! message reaches the provider exactly once.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::app::{ACCOUNT_SID, API_KEY, AUTH_TOKEN};
use herald::config::ConfigSource;
use herald_testkit::carrier::{self, CarrierConfig};
use serde_json::json;

const MESSAGES: usize = 60;

/// Two instances dispatch from one PostgreSQL queue: every message is sent once and delivered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_share_one_queue() {
    let carrier = carrier::spawn(
        tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap(),
        CarrierConfig {
            account_sid: ACCOUNT_SID.into(),
            auth_token: AUTH_TOKEN.into(),
            callback_delay: Duration::from_millis(20),
            inbound_url: None,
            accounts: Vec::new(),
        },
    )
    .await;
    let storage = common::db::postgres_url().await;
    let mut bases = Vec::new();
    let mut stops = Vec::new();
    for _ in 0..2 {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let config = common::app::config(&base, carrier.base_url(), &storage);
        let state = herald::Herald::builder()
            .config(config)
            .source(ConfigSource::default())
            .build()
            .await
            .unwrap();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(async move {
            state
                .serve(listener, async {
                    let _ = stopped.await;
                })
                .await
        });
        stops.push((stop, server));
        bases.push(base);
    }

    let client = reqwest::Client::new();
    let mut ids = Vec::new();
    for i in 0..MESSAGES {
        // Alternate instances, so both enqueue and both are woken by the other's NOTIFY.
        let base = &bases[i % 2];
        let response = client
            .post(format!("{base}/api/v1/sms/send"))
            .bearer_auth(API_KEY)
            .json(&json!({"to_number": "+14155552671", "message": format!("shared {i}")}))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), reqwest::StatusCode::ACCEPTED);
        ids.push(
            response.json::<serde_json::Value>().await.unwrap()["id"]
                .as_str()
                .unwrap()
                .to_string(),
        );
    }
    for _ in 0..400 {
        let (_, page) = get(
            &client,
            &bases[0],
            "/api/v1/sms/messages?status=delivered&limit=500",
        )
        .await;
        if page["items"].as_array().unwrap().len() == MESSAGES {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (_, page) = get(
        &client,
        &bases[1],
        "/api/v1/sms/messages?status=delivered&limit=500",
    )
    .await;
    assert_eq!(
        page["items"].as_array().unwrap().len(),
        MESSAGES,
        "every message is delivered"
    );
    let requests = carrier.requests();
    assert_eq!(
        requests.len(),
        MESSAGES,
        "each message reaches the carrier exactly once"
    );
    let mut bodies: Vec<String> = requests
        .iter()
        .map(|r| r.form.iter().find(|(k, _)| k == "Body").unwrap().1.clone())
        .collect();
    bodies.sort();
    bodies.dedup();
    assert_eq!(bodies.len(), MESSAGES);
    for (stop, server) in stops {
        let _ = stop.send(());
        server.await.unwrap().unwrap();
    }
}

async fn get(
    client: &reqwest::Client,
    base: &str,
    path: &str,
) -> (reqwest::StatusCode, serde_json::Value) {
    let response = client
        .get(format!("{base}{path}"))
        .bearer_auth(API_KEY)
        .send()
        .await
        .unwrap();
    (response.status(), response.json().await.unwrap())
}
