//! Reload triggers an operator uses: the authenticated admin endpoint and SIGHUP.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use herald::config::ConfigSource;
use herald::plugin::model::SendOutcome;
use tower::ServiceExt;

async fn version(state: &herald::Herald) -> String {
    match state
        .plugins()
        .provider()
        .unwrap()
        .send(&common::outbound("hello"))
        .await
    {
        SendOutcome::Accepted(a) => a.provider_message_id,
        other => panic!("{other:?}"),
    }
}

/// A config file in a temp dir with the probe copied beside it; returns (dir, plugin path, source).
fn setup() -> (tempfile::TempDir, std::path::PathBuf, ConfigSource) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("probe.wasm");
    std::fs::copy(common::plugin("probe"), &path).unwrap();
    let cache = common::root().join("target/herald-cache");
    let key = common::root().join("target/herald-artifact.key");
    let db = dir.path().join("herald.db");
    let toml = format!(
        "[server]\nadmin_key = \"admin-secret\"\napi_keys = [\"k\"]\n[storage]\nurl = \"sqlite://{}\"\n[runtime]\ncache_dir = {cache:?}\nartifact_key_file = {key:?}\nmax_instances = 16\nwatch = false\n[routing]\nprovider = \"probe\"\nrenderer = \"\"\n[plugins.probe]\npath = {path:?}\n",
        db.display()
    );
    let file = dir.path().join("herald.toml");
    std::fs::write(&file, toml).unwrap();
    (
        dir,
        path,
        ConfigSource {
            file: Some(file),
            env: false,
        },
    )
}

/// The admin endpoint reloads a changed plugin, and refuses callers without the admin key.
#[tokio::test]
async fn admin_endpoint_reloads() {
    let (_dir, path, source) = setup();
    let state = herald::Herald::builder()
        .config(source.load().unwrap())
        .source(source)
        .build()
        .await
        .unwrap();
    assert!(version(&state).await.starts_with("probe-1.0.0-"));
    std::fs::copy(common::plugin("probe-v2"), &path).unwrap();

    let router = state.router();
    let unauth = Request::post("/admin/plugins/reload")
        .body(Body::empty())
        .unwrap();
    let response = router.clone().oneshot(unauth).await.unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    let body: serde_json::Value = serde_json::from_slice(
        &axum::body::to_bytes(response.into_body(), 1 << 16)
            .await
            .unwrap(),
    )
    .unwrap();
    assert_eq!(body["error"]["code"], "unauthorized");
    assert!(
        version(&state).await.starts_with("probe-1.0.0-"),
        "an unauthorized call must change nothing"
    );

    let authed = Request::post("/admin/plugins/reload")
        .header("authorization", "Bearer admin-secret")
        .body(Body::empty())
        .unwrap();
    let response = router.oneshot(authed).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let report: serde_json::Value = serde_json::from_slice(
        &axum::body::to_bytes(response.into_body(), 1 << 16)
            .await
            .unwrap(),
    )
    .unwrap();
    assert_eq!(report["loaded"], serde_json::json!(["probe"]));
    assert!(version(&state).await.starts_with("probe-2.0.0-"));
}

/// SIGHUP makes the running process reload.
#[tokio::test]
async fn sighup_reloads() {
    let (_dir, path, source) = setup();
    let state = herald::Herald::builder()
        .config(source.load().unwrap())
        .source(source.clone())
        .build()
        .await
        .unwrap();
    let _task = herald::watch::spawn_sighup(state.pipeline().clone()).unwrap();
    std::fs::copy(common::plugin("probe-v2"), &path).unwrap();
    let status = std::process::Command::new("kill")
        .args(["-HUP", &std::process::id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    // Generous for a loaded machine; the loop ends as soon as the new version answers.
    for _ in 0..1200 {
        if version(&state).await.starts_with("probe-2.0.0-") {
            return;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("SIGHUP did not reload the plugin");
}
