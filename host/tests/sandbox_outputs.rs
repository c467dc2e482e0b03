//! The sandbox against a plugin whose *output* is hostile (`plugins/testing/hostile-output`):
//! 512 KiB strings, 2,000 webhook events, absurd numbers, secrets echoed back in every encoding
//! and forged log lines are bounded and redacted before the host stores, logs or answers with
//! them.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::BTreeMap;
use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};
use common::app::{Backend, OUR_NUMBER, TestApp};
use herald::config::Config;
use herald::plugin::Plugins;
use herald::plugin::model::SendOutcome;
use reqwest::StatusCode;
use serde_json::{Value, json};

/// The plugin's name, as configured and as it describes itself.
const HOSTILE: &str = "hostile-output";
/// The secret the plugin echoes; `/`, `+` and `=` make its encodings differ from it.
const SECRET: &str = "sk_live/Zq+9=hostile";
/// The most a message with its history may take as JSON once bounded: a few capped fields.
const MESSAGE_JSON_MAX: usize = 8 * 1024;

/// The hostile plugin's settings: the secret, and our number (so inbound messages to it are
/// the default tenant's).
fn hostile_settings() -> herald::config::PluginConfig {
    let mut settings = common::plugin_config(common::plugin(HOSTILE));
    settings.memory_mb = 64;
    settings.cpu_ms = 5_000;
    settings.config = BTreeMap::from([
        ("api_key".to_string(), SECRET.to_string()),
        ("from".to_string(), OUR_NUMBER.to_string()),
    ]);
    settings
}

/// Routes sends to the hostile plugin, with few quick retries.
fn hostile(config: &mut Config) {
    config.plugins.insert(HOSTILE.into(), hostile_settings());
    config.routing.provider = HOSTILE.into();
    config.delivery.max_attempts = 2;
}

/// Every encoding of the secret the plugin returns.
fn secret_forms() -> Vec<String> {
    let bytes = SECRET.as_bytes();
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    let percent: String = bytes.iter().map(|b| format!("%{b:02X}")).collect();
    vec![
        SECRET.to_string(),
        percent,
        STANDARD.encode(bytes),
        STANDARD_NO_PAD.encode(bytes),
        URL_SAFE.encode(bytes),
        URL_SAFE_NO_PAD.encode(bytes),
        hex.to_uppercase(),
        hex,
    ]
}

/// Asserts `text` holds no form of the secret.
fn assert_no_secret(text: &str) {
    for form in secret_forms() {
        assert!(
            !text.contains(&form),
            "the secret came back as `{form}`: {text}"
        );
    }
}

/// Sends `body` through the hostile plugin and waits for the message to reach `status`.
async fn send_and_wait(app: &TestApp, body: &str, status: &str) -> Value {
    let sent = app
        .send(json!({"to_number": "+14155552671", "message": body}))
        .await;
    app.wait_for(sent["id"].as_str().unwrap(), status).await
}

/// The number of inbound rows stored, read straight from the database.
async fn inbound_rows(app: &TestApp) -> (i64, i64) {
    let sql = "SELECT COUNT(*), COALESCE(MAX(LENGTH(body)), 0) FROM inbound_messages";
    if app.storage.starts_with("sqlite") {
        let pool = sqlx::SqlitePool::connect(&app.storage).await.unwrap();
        let row: (i64, i64) = sqlx::query_as(sql).fetch_one(&pool).await.unwrap();
        pool.close().await;
        row
    } else {
        let pool = sqlx::PgPool::connect(&app.storage).await.unwrap();
        let row: (i64, i32) = sqlx::query_as(sql).fetch_one(&pool).await.unwrap();
        pool.close().await;
        (row.0, i64::from(row.1))
    }
}

on_both_backends!(
    huge_outcomes_are_stored_bounded,
    secrets_never_come_back,
    webhook_floods_are_capped
);

/// A 512 KiB provider id, status, sender and error text are stored cut to their caps, in the
/// message and in every history row; an impossible price and segment count are dropped, and a
/// list of 500 messages stays small.
async fn huge_outcomes_are_stored_bounded(backend: Backend) {
    let app = TestApp::start_with(backend, hostile).await;
    let accepted = send_and_wait(&app, "huge-accept", "sent").await;
    let text = accepted.to_string();
    assert!(text.len() < MESSAGE_JSON_MAX, "{} bytes stored", text.len());
    assert!(text.contains("[truncated]"), "{text}");
    assert!(accepted["price"].is_null(), "{accepted:#}");

    let refused = send_and_wait(&app, "huge-error", "failed").await;
    let text = refused.to_string();
    assert!(text.len() < MESSAGE_JSON_MAX, "{} bytes stored", text.len());

    let retried = send_and_wait(&app, "retry-max", "failed").await;
    let text = retried.to_string();
    assert!(text.len() < MESSAGE_JSON_MAX, "{} bytes stored", text.len());

    let (status, page) = app.get("/api/v1/sms/messages?limit=500").await;
    assert_eq!(status, StatusCode::OK);
    assert!(page.to_string().len() < 4 * MESSAGE_JSON_MAX);
    app.stop().await;
}

/// A secret the plugin echoes in its error, its provider id, status and sender, or its webhook
/// rejection never comes back through the API, in any encoding, and the rejection is bounded.
async fn secrets_never_come_back(backend: Backend) {
    let app = TestApp::start_with(backend, hostile).await;
    let refused = send_and_wait(&app, "echo-secret", "failed").await;
    assert!(refused.to_string().contains("[redacted]"), "{refused:#}");
    assert_no_secret(&refused.to_string());
    let accepted = send_and_wait(&app, "echo-secret-accept", "sent").await;
    assert_no_secret(&accepted.to_string());

    // An unauthenticated 14-byte webhook that the plugin answers with 512 KiB echoing the secret.
    let response = app
        .client
        .post(format!(
            "{}/api/v1/sms/webhooks/{HOSTILE}/inbound",
            app.base
        ))
        .body("malformed-webhook")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    let body = response.text().await.unwrap();
    assert!(body.len() < 2 * 1024, "a {}-byte answer", body.len());
    assert!(body.contains("malformed_webhook"), "{body}");
    assert_no_secret(&body);
    app.stop().await;
}

/// One webhook with 2,000 inbound events stores at most the plugin's cap (100), and an inbound
/// body of 512 KiB is stored cut to 1,600 characters. (Far larger outputs, like the review's
/// 20,000 events or 12 MB strings, are refused earlier, as a plugin fault, by the hostcall fuel.)
async fn webhook_floods_are_capped(backend: Backend) {
    let app = TestApp::start_with(backend, hostile).await;
    let inbound = format!("{}/api/v1/sms/webhooks/{HOSTILE}/inbound", app.base);
    let response = app
        .client
        .post(&inbound)
        .body("flood")
        .timeout(Duration::from_secs(120))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let (rows, _) = inbound_rows(&app).await;
    assert_eq!(rows, 100, "one webhook stored {rows} inbound messages");

    let response = app
        .client
        .post(&inbound)
        .body("huge-inbound")
        .send()
        .await
        .unwrap();
    assert_eq!(
        response.status(),
        StatusCode::OK,
        "{:?}",
        response.text().await
    );
    let (rows, longest) = inbound_rows(&app).await;
    assert_eq!(rows, 101);
    assert!(longest <= 1_600, "an inbound body of {longest} characters");
    app.stop().await;
}

/// A writer that keeps what the log subscriber writes, for the test to read.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// A plugin cannot forge a log line with CR/LF, and one call cannot log more than 100 lines.
/// (A current-thread runtime, so the thread-local subscriber sees the plugin's calls.)
#[tokio::test(flavor = "current_thread")]
async fn plugin_logs_are_escaped_and_bounded() {
    let captured = Captured::default();
    let writer = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .with_max_level(tracing::Level::INFO)
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);
    let plugins = Plugins::start(&common::config(
        vec![(HOSTILE, hostile_settings())],
        HOSTILE,
        "",
    ))
    .await
    .unwrap();
    let provider = plugins.provider().unwrap();
    for body in ["log-forge", "log-flood"] {
        let outcome = provider.send(&common::outbound(body)).await;
        assert!(matches!(outcome, SendOutcome::Accepted(_)), "{outcome:?}");
    }
    let text = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
    for line in text.lines() {
        assert!(
            !line.starts_with("2026-01-01T00:00:00Z"),
            "a forged line: {line}"
        );
        assert!(!line.starts_with("more"), "a forged line: {line}");
    }
    assert!(
        text.contains("FORGED"),
        "the forged text is logged, escaped: {text}"
    );
    let flood = text.lines().filter(|l| l.contains("xxxxxxxx")).count();
    assert!(flood <= 100, "one call logged {flood} lines");
    assert!(text.contains("log budget"), "the drop is noticed once");
}

/// `herald config` hides a setting the plugin declares secret (`api_key`, which the name
/// heuristic misses), shows one it declares public, and hides every setting of a plugin it
/// cannot describe.
#[test]
fn config_hides_declared_secrets() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("herald.toml");
    let root = common::root();
    std::fs::write(
        &file,
        format!(
            "[runtime]\nplugin_dir = {:?}\ncache_dir = {:?}\nartifact_key_file = {:?}\n\
             [plugins.{HOSTILE}.config]\napi_key = \"{SECRET}\"\nregion = \"eu-west\"\n\
             [plugins.ghost.config]\nendpoint = \"https://ghost.example\"\n",
            root.join("target/plugins"),
            root.join("target/herald-cache"),
            root.join("target/herald-artifact.key"),
        ),
    )
    .unwrap();
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_herald"))
        .args(["config", "--config"])
        .arg(&file)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let config: Value = serde_json::from_str(&stdout).unwrap();
    let hostile = &config["plugins"][HOSTILE]["config"];
    assert_eq!(hostile["api_key"], "[redacted]");
    assert_eq!(hostile["region"], "eu-west");
    assert_eq!(
        config["plugins"]["ghost"]["config"]["endpoint"],
        "[redacted]"
    );
    assert!(!stdout.contains(SECRET));
}

/// A trap message says what happened: a stack overflow, a call to WASI `exit`, the stderr cap.
#[tokio::test]
async fn trap_messages_say_what_happened() {
    let plugins = Plugins::start(&common::config(
        vec![(HOSTILE, hostile_settings())],
        HOSTILE,
        "",
    ))
    .await
    .unwrap();
    let provider = plugins.provider().unwrap();
    for (body, wanted) in [
        ("stack-overflow", "overflowed its call stack"),
        ("exit", "called exit with status 1"),
        ("stderr-flood", "its stderr reached the 4096 bytes"),
    ] {
        match provider.send(&common::outbound(body)).await {
            SendOutcome::Retryable { error, .. } => {
                assert!(error.message.contains(wanted), "{body}: {}", error.message);
                assert!(error.message.len() <= 1024);
            }
            other => panic!("{body}: expected retryable, got {other:?}"),
        }
    }
}
