//! Crash safety: SIGKILL the `herald` process while messages are in flight, start it again, and
//! every accepted message still reaches a final status; a dispatcher that panics is replaced —
//! on SQLite and on PostgreSQL.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use common::app::{ACCOUNT_SID, API_KEY, AUTH_TOKEN, Backend};
use herald::clock::{Clock, SystemClock};
use herald::{Herald, MessageStatus, SendRequest, TenantId};
use herald_testkit::carrier::{self, CarrierConfig, ScriptedResponse};
use serde_json::{Value, json};

on_both_backends!(
    killed_mid_dispatch_loses_nothing,
    a_panicking_dispatcher_is_replaced
);

/// The system clock, except that the first reading after [`TrippingClock::arm`] panics: with
/// no message queued, that reading is the dispatcher loop's own, so the loop itself panics.
#[derive(Default)]
struct TrippingClock {
    armed: AtomicBool,
    tripped: tokio::sync::Notify,
}

impl TrippingClock {
    fn arm(&self) {
        self.armed.store(true, Ordering::SeqCst);
    }
}

impl Clock for TrippingClock {
    fn now_millis(&self) -> i64 {
        if self.armed.swap(false, Ordering::SeqCst) {
            self.tripped.notify_one();
            panic!("the test clock trips the dispatcher");
        }
        SystemClock.now_millis()
    }
}

/// A dispatcher whose loop panics is replaced rather than left dead until shutdown: a message
/// sent after the panic is still delivered.
async fn a_panicking_dispatcher_is_replaced(backend: Backend) {
    let (storage, _dir) = common::app::storage_url(backend).await;
    let mut config = common::config(
        vec![("probe", common::plugin_config(common::plugin("probe")))],
        "probe",
        "",
    );
    config.storage.url = storage;
    let clock = Arc::new(TrippingClock::default());
    let herald = Herald::builder()
        .config(config)
        .clock(clock.clone())
        .build()
        .await
        .unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let running = tokio::spawn({
        let herald = herald.clone();
        async move {
            herald
                .run(async {
                    let _ = stopped.await;
                })
                .await;
        }
    });
    clock.arm();
    tokio::time::timeout(Duration::from_secs(10), clock.tripped.notified())
        .await
        .expect("the dispatcher reads the clock within its idle poll");
    let tenant = TenantId::default_tenant();
    let to = "+14155552671".parse().unwrap();
    let id = herald
        .send(&tenant, SendRequest::text(to, "after the panic"))
        .await
        .unwrap()
        .message
        .id;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let status = herald.message(&tenant, &id).await.unwrap().message.status;
        if status == MessageStatus::Sent {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no dispatcher sent the message after the panic: it is still `{status}`"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    let _ = stop.send(());
    running.await.unwrap();
    herald.close().await;
}

const MESSAGES: usize = 40;

fn start_herald(config: &std::path::Path) -> Child {
    Command::new(env!("CARGO_BIN_EXE_herald"))
        .args(["serve", "--config"])
        .arg(config)
        .env("HERALD_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start herald")
}

async fn wait_healthy(client: &reqwest::Client, base: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        if client
            .get(format!("{base}/healthz"))
            .send()
            .await
            .is_ok_and(|r| r.status().is_success())
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("herald did not become healthy at {base}");
}

/// Messages accepted before a SIGKILL are all delivered after a restart; none is lost.
async fn killed_mid_dispatch_loses_nothing(backend: Backend) {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let base = format!("http://127.0.0.1:{port}");
    // Callbacks come late enough to land on the restarted process.
    let carrier = carrier::spawn(
        tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap(),
        CarrierConfig {
            account_sid: ACCOUNT_SID.into(),
            auth_token: AUTH_TOKEN.into(),
            callback_delay: Duration::from_millis(2_500),
            inbound_url: None,
            accounts: Vec::new(),
        },
    )
    .await;
    // Slow answers keep sends in flight when the process dies.
    for _ in 0..12 {
        carrier.script(ScriptedResponse::Hang(Duration::from_millis(400)));
    }
    let (storage, dir) = common::app::storage_url(backend).await;
    let mut config = common::app::config(&base, carrier.base_url(), &storage);
    config.server.listen = format!("127.0.0.1:{port}").parse().unwrap();
    config.delivery.lease_ms = 1_500;
    config.delivery.workers = 4;
    let twilio = config.plugins.get_mut("twilio").unwrap();
    twilio.timeout_ms = 1_000;
    twilio.http_timeout_ms = 900;
    // The wait for an instance counts against the lease too.
    twilio.max_wait_ms = 200;
    let file = dir.path().join("herald.toml");
    std::fs::write(&file, toml_of(&config)).unwrap();

    let client = reqwest::Client::new();
    let mut herald = start_herald(&file);
    wait_healthy(&client, &base).await;
    let mut ids = Vec::new();
    for i in 0..MESSAGES {
        let response = client
            .post(format!("{base}/api/v1/sms/send"))
            .bearer_auth(API_KEY)
            .json(&json!({"to_number": "+14155552671", "message": format!("crash test {i}")}))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), reqwest::StatusCode::ACCEPTED);
        ids.push(
            response.json::<Value>().await.unwrap()["id"]
                .as_str()
                .unwrap()
                .to_string(),
        );
    }
    herald.kill().unwrap(); // SIGKILL: no graceful shutdown, leases left behind.
    herald.wait().unwrap();
    let store = herald::store::Store::connect(&storage, &Default::default())
        .await
        .unwrap();
    let unfinished = store.count_queue().await.unwrap();
    store.close().await;
    assert!(
        unfinished > 0,
        "the kill must leave queued or leased messages behind for this test to mean anything"
    );

    let mut herald = start_herald(&file);
    wait_healthy(&client, &base).await;
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut pending = ids.clone();
    while !pending.is_empty() && Instant::now() < deadline {
        let mut still = Vec::new();
        for id in pending {
            let message: Value = client
                .get(format!("{base}/api/v1/sms/messages/{id}"))
                .bearer_auth(API_KEY)
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            assert_ne!(message["status"], "failed", "{message}");
            if message["status"] != "delivered" {
                still.push(id);
            }
        }
        pending = still;
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    herald.kill().unwrap();
    herald.wait().unwrap();
    assert!(
        pending.is_empty(),
        "{} of {MESSAGES} messages never reached a final status: {pending:?}",
        pending.len()
    );
    assert!(carrier.requests().len() >= MESSAGES);
}

/// The configuration as a TOML file for the `herald` binary.
fn toml_of(config: &herald::config::Config) -> String {
    let value = serde_json::to_value(config).unwrap();
    let mut out = String::new();
    write_table(&mut out, "", &value);
    out
}

fn write_table(out: &mut String, prefix: &str, value: &Value) {
    let Value::Object(map) = value else { return };
    for (key, v) in map {
        match v {
            Value::Object(_) | Value::Null => {}
            other => out.push_str(&format!("{key} = {}\n", toml_value(other))),
        }
    }
    for (key, v) in map {
        if let Value::Object(_) = v {
            let name = if prefix.is_empty() {
                key.clone()
            } else {
                format!("{prefix}.{key}")
            };
            out.push_str(&format!("[{name}]\n"));
            write_table(out, &name, v);
        }
    }
}

fn toml_value(v: &Value) -> String {
    match v {
        Value::String(s) => format!("{s:?}"),
        Value::Array(items) => format!(
            "[{}]",
            items.iter().map(toml_value).collect::<Vec<_>>().join(", ")
        ),
        // An inline table (an array's element, such as a price entry); TOML has no null.
        Value::Object(map) => format!(
            "{{ {} }}",
            map.iter()
                .filter(|(_, v)| !v.is_null())
                .map(|(k, v)| format!("{k} = {}", toml_value(v)))
                .collect::<Vec<_>>()
                .join(", ")
        ),
        other => other.to_string(),
    }
}
