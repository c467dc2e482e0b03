//! Storage that goes away and comes back while Herald runs: a SQLite disk that fills up, a
//! PostgreSQL that stops answering. Sends answer `503 storage_unavailable` (with `Retry-After`)
//! promptly during the fault, `/readyz` says so, and everything works again afterwards without
//! a restart. The readiness report itself runs on both backends.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::{Duration, Instant};

use common::app::{Backend, TestApp};
use common::faults::{PgProxy, Tmpfs};
use reqwest::StatusCode;
use serde_json::{Value, json};

on_both_backends!(readiness_reports_storage_and_plugins);

/// `/readyz` answers 200 with storage and each routed plugin when all are there; `/healthz`
/// answers 200.
async fn readiness_reports_storage_and_plugins(backend: Backend) {
    let app = TestApp::start(backend).await;
    let (status, report) = get(&app, "/readyz").await;
    assert_eq!(status, StatusCode::OK, "{report}");
    assert_eq!(
        report,
        json!({
            "status": "ready",
            "storage": "ok",
            "plugins": {
                "provider": {"name": "twilio", "status": "loaded"},
                "renderer": {"name": "mustache", "status": "loaded"},
            },
        })
    );
    let (status, _) = get(&app, "/healthz").await;
    assert_eq!(status, StatusCode::OK);
    app.stop().await;
}

/// A send that must fail because storage is unavailable: 503 `storage_unavailable` with
/// `Retry-After`, answered within `within`.
async fn send_refused(app: &TestApp, within: Duration) {
    let started = Instant::now();
    let response = app
        .client
        .post(format!("{}/api/v1/sms/send", app.base))
        .bearer_auth(common::app::API_KEY)
        .json(&json!({"to_number": "+14155552671", "message": "during the outage"}))
        .send()
        .await
        .unwrap();
    let elapsed = started.elapsed();
    let status = response.status();
    let retry_after = response.headers().get("retry-after").cloned();
    let body: Value = response.json().await.unwrap();
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert_eq!(body["error"]["code"], "storage_unavailable", "{body}");
    assert!(retry_after.is_some(), "a 503 says when to retry");
    assert!(
        elapsed < within,
        "answered after {elapsed:?}, not within {within:?}"
    );
}

/// `GET path` without credentials (health endpoints need none).
async fn get(app: &TestApp, path: &str) -> (StatusCode, Value) {
    let response = app
        .client
        .get(format!("{}{path}", app.base))
        .send()
        .await
        .unwrap();
    let status = response.status();
    (status, response.json().await.unwrap())
}

/// SQLite on a disk that fills up: every send during the fault answers 503
/// `storage_unavailable` (the first failed commit does not wedge the writer), and once space
/// is back sends are accepted and delivered, without a restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_full_disk_then_space_again() {
    let disk = Tmpfs::mount(8);
    let url = format!("sqlite://{}", disk.path().join("herald.db").display());
    let app = TestApp::start_with(Backend::Sqlite, |config| config.storage.url = url).await;
    let before = app
        .send(json!({"to_number": "+14155552671", "message": "before"}))
        .await;
    app.wait_for(before["id"].as_str().unwrap(), "delivered")
        .await;

    let filler = disk.fill();
    for _ in 0..3 {
        send_refused(&app, Duration::from_secs(5)).await;
    }

    std::fs::remove_file(filler).unwrap();
    let after = app
        .send(json!({"to_number": "+14155552671", "message": "after"}))
        .await;
    app.wait_for(after["id"].as_str().unwrap(), "delivered")
        .await;
    assert_eq!(
        app.message_count().await,
        2,
        "nothing was stored during the fault"
    );
    let (status, report) = get(&app, "/readyz").await;
    assert_eq!(status, StatusCode::OK, "{report}");
    app.stop().await;
}

/// PostgreSQL out of reach after start: a send answers 503 `storage_unavailable` within the
/// acquire timeout (plus a margin), `/readyz` answers 503 while `/healthz` stays 200, and once
/// the database is back sends are accepted and delivered, without a restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_outage_then_recovery() {
    let proxy = PgProxy::start(common::db::POSTGRES_ADMIN_URL).await;
    let acquire = Duration::from_millis(1_000);
    let app = TestApp::start_with(Backend::Postgres, |config| {
        config.storage.url = proxy.url(&config.storage.url);
        config.storage.acquire_timeout_ms = acquire.as_millis() as u64;
    })
    .await;
    let before = app
        .send(json!({"to_number": "+14155552671", "message": "before"}))
        .await;
    app.wait_for(before["id"].as_str().unwrap(), "delivered")
        .await;

    proxy.set_up(false);
    send_refused(&app, acquire + Duration::from_secs(2)).await;
    send_refused(&app, acquire + Duration::from_secs(2)).await;
    let started = Instant::now();
    let (status, report) = get(&app, "/readyz").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{report}");
    assert_eq!(report["status"], "not_ready");
    assert_eq!(report["storage"], "unavailable");
    assert_eq!(report["plugins"]["provider"]["status"], "loaded");
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "readiness answers promptly"
    );
    let (status, _) = get(&app, "/healthz").await;
    assert_eq!(
        status,
        StatusCode::OK,
        "liveness does not depend on storage"
    );

    proxy.set_up(true);
    let after = app
        .send(json!({"to_number": "+14155552671", "message": "after"}))
        .await;
    app.wait_for(after["id"].as_str().unwrap(), "delivered")
        .await;
    assert_eq!(
        app.message_count().await,
        2,
        "nothing was stored during the outage"
    );
    let (status, report) = get(&app, "/readyz").await;
    assert_eq!(status, StatusCode::OK, "{report}");
    app.stop().await;
}
