//! Bulk batches on SQLite: how long a 100,000-recipient `POST /api/v1/sms/send-bulk` takes to
//! its `202`, and how much this process's resident memory grows while it is served; then the
//! same growth for a 1,000,000-line NDJSON upload to `/batches/{id}/recipients`.
//!
//! Everything runs in this one process on 127.0.0.1: Herald's API (`Herald::router` served with
//! axum; the dispatcher is not started, so only acceptance is measured), the mustache renderer,
//! and the client. The request body is built before the baseline is read, so its bytes are not
//! counted as growth. Resident memory (`VmRSS` of `/proc/self/status`) is sampled every 5 ms
//! from a separate thread while the request runs; the figure is the peak minus the baseline.
//!
//! Scenarios (each on a fresh SQLite file):
//! - `text`: 100,000 distinct numbers, each with its own literal message;
//! - `template`: 100,000 distinct numbers, one template, a distinct `name` variable per row (a
//!   renderer call per row, the cache cannot help);
//! - `upload`: a draft, then 1,000,000 NDJSON lines (distinct numbers, literal messages);
//! - `drain`: fairness. Herald runs whole (`Herald::serve`: API and dispatcher, 32 workers) with
//!   the Twilio plugin sending to the local Twilio-compatible carrier (`herald_testkit`, status
//!   callbacks held back). A 100,000-recipient batch is accepted, and while it drains a client
//!   posts single `/send` requests, alternately `authentication` and `transactional`, one every
//!   50 ms (`HERALD_BENCH_DRAIN_SINGLES`, default 300). Each single's accept-to-claim latency is
//!   read afterwards from the store: its `sending` event's time minus its `created_at` (both
//!   stamped by Herald's clock, in milliseconds). Reported: p50, p99 and max, and how many batch
//!   rows were still queued when the last single was claimed (proof the batch was still
//!   draining).
//!
//! Settings (environment): `HERALD_BENCH_BULK_ROWS` (default 100000),
//! `HERALD_BENCH_UPLOAD_ROWS` (default 1000000), `HERALD_BENCH_BULK_SCENARIOS` (default
//! `text,template,upload,drain`). Needs `target/plugins/{twilio,mustache}.wasm`
//! (`cargo xtask build-plugins`).
//!
//! Run with: `cargo bench -p herald --bench bulk`
#![allow(clippy::unwrap_used, clippy::expect_used)]

/// The allocator of the `herald` binary (`host/src/main.rs`), so that the figures are its.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[path = "../tests/common/mod.rs"]
mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use herald::Herald;
use herald::config::{ConfigSource, ServerConfig, StorageConfig};
use herald::store::{MessageStatus, TenantId};
use herald_testkit::carrier::{self, CarrierConfig};
use serde_json::{Value, json};
use tokio::sync::watch;

const API_KEY: &str = "bench-api-key";
const SID: &str = "AC0123456789abcdef0123456789abcdef";
const TOKEN: &str = "bench-auth-token-0123456789";

fn setting(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(default)
}

/// This process's resident memory, in KiB.
fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|kib| kib.parse().ok())
        .unwrap_or(0)
}

/// Samples resident memory until dropped; [`Sampler::peak_kib`] is the highest seen.
struct Sampler {
    peak: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Sampler {
    fn start() -> Self {
        let peak = Arc::new(AtomicU64::new(rss_kib()));
        let stop = Arc::new(AtomicBool::new(false));
        let thread = std::thread::spawn({
            let (peak, stop) = (Arc::clone(&peak), Arc::clone(&stop));
            move || {
                while !stop.load(Ordering::Relaxed) {
                    peak.fetch_max(rss_kib(), Ordering::Relaxed);
                    std::thread::sleep(Duration::from_millis(5));
                }
            }
        });
        Self {
            peak,
            stop,
            thread: Some(thread),
        }
    }

    fn peak_kib(mut self) -> u64 {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            thread.join().unwrap();
        }
        self.peak.load(Ordering::Relaxed)
    }
}

/// A Herald on a fresh SQLite file serving its API on an ephemeral port, its Twilio plugin
/// pointed at `carrier_url`.
fn config(base: &str, carrier_url: &str, dir: &tempfile::TempDir) -> herald::config::Config {
    let mut config = common::config(
        vec![
            ("twilio", common::twilio_settings(carrier_url, SID, TOKEN)),
            (
                "mustache",
                common::plugin_config(common::plugin("mustache")),
            ),
        ],
        "twilio",
        "mustache",
    );
    config.server = ServerConfig {
        public_url: base.to_owned(),
        api_keys: vec![API_KEY.to_owned()],
        body_read_timeout_ms: 600_000,
        ..ServerConfig::default()
    };
    config.storage = StorageConfig {
        url: format!("sqlite://{}", dir.path().join("herald.db").display()),
        ..StorageConfig::default()
    };
    config
}

/// A Herald serving only its API (no dispatcher) on a fresh SQLite file.
async fn start() -> (Herald, String, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let config = config(&base, "http://127.0.0.1:9", &dir);
    let herald = Herald::builder()
        .config(config)
        .source(ConfigSource::default())
        .build()
        .await
        .unwrap();
    let router = herald.router();
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    (herald, base, dir)
}

fn number(i: usize) -> String {
    format!("+1415{:07}", 2_000_000 + i)
}

/// Posts `body` and reports the time to the answer and the memory growth meanwhile.
async fn measure(
    client: &reqwest::Client,
    url: &str,
    content_type: &str,
    body: Vec<u8>,
) -> (Duration, u64, Value) {
    let baseline = rss_kib();
    let sampler = Sampler::start();
    let started = Instant::now();
    let response = client
        .post(url)
        .bearer_auth(API_KEY)
        .header("content-type", content_type)
        .body(body)
        .send()
        .await
        .unwrap();
    let status = response.status();
    let answer: Value = response.json().await.unwrap();
    let elapsed = started.elapsed();
    let growth = sampler.peak_kib().saturating_sub(baseline);
    assert!(status.is_success(), "{status}: {answer}");
    (elapsed, growth, answer)
}

async fn send_bulk(scenario: &str, rows: usize) {
    let (herald, base, _dir) = start().await;
    let client = reqwest::Client::new();
    let mut template_id = None;
    if scenario == "template" {
        let response = client
            .post(format!("{base}/api/v1/sms/templates"))
            .bearer_auth(API_KEY)
            .json(&json!({"name": "hello", "template_body": "Hi {{name}}, your table is ready"}))
            .send()
            .await
            .unwrap();
        let template: Value = response.json().await.unwrap();
        template_id = Some(template["id"].clone());
    }
    let recipients: Vec<Value> = (0..rows)
        .map(|i| match &template_id {
            None => json!({"to_number": number(i), "message": format!("Order {i} is ready")}),
            Some(_) => {
                json!({"to_number": number(i), "template_variables": {"name": format!("guest {i}")}})
            }
        })
        .collect();
    let mut body = json!({"batch_name": "bench", "recipients": recipients});
    if let Some(id) = template_id {
        body["template_id"] = id;
    }
    let body = serde_json::to_vec(&body).unwrap();
    let size = body.len();
    let url = format!("{base}/api/v1/sms/send-bulk");
    let (elapsed, growth, answer) = measure(&client, &url, "application/json", body).await;
    assert_eq!(answer["accepted"], rows, "{}", answer["rejected"]);
    println!(
        "send-bulk {scenario:<8} {rows} recipients ({:.1} MiB body): 202 after {:.2} s, RSS +{:.1} MiB",
        size as f64 / 1_048_576.0,
        elapsed.as_secs_f64(),
        growth as f64 / 1024.0
    );
    herald.close().await;
}

async fn upload(rows: usize) {
    let (herald, base, _dir) = start().await;
    let client = reqwest::Client::new();
    let draft: Value = client
        .post(format!("{base}/api/v1/sms/send-bulk"))
        .bearer_auth(API_KEY)
        .json(&json!({"send_immediately": false}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let id = draft["batch_id"].as_str().unwrap();
    let mut body = Vec::with_capacity(rows * 64);
    for i in 0..rows {
        serde_json::to_writer(
            &mut body,
            &json!({"to_number": number(i), "message": format!("Order {i} is ready")}),
        )
        .unwrap();
        body.push(b'\n');
    }
    let size = body.len();
    let url = format!("{base}/api/v1/sms/batches/{id}/recipients");
    let (elapsed, growth, answer) = measure(&client, &url, "application/x-ndjson", body).await;
    assert_eq!(answer["accepted"], rows, "{}", answer["rejected"]);
    println!(
        "upload ndjson {rows} lines ({:.1} MiB body): answered after {:.1} s ({:.0} rows/s), RSS +{:.1} MiB",
        size as f64 / 1_048_576.0,
        elapsed.as_secs_f64(),
        rows as f64 / elapsed.as_secs_f64(),
        growth as f64 / 1024.0
    );
    herald.close().await;
}

/// The `drain` scenario (see the module docs).
async fn drain(rows: usize) {
    let singles = setting("HERALD_BENCH_DRAIN_SINGLES", 300);
    let carrier = carrier::spawn(
        tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap(),
        CarrierConfig {
            account_sid: SID.to_owned(),
            auth_token: TOKEN.to_owned(),
            callback_delay: Duration::from_secs(3600),
            inbound_url: None,
            accounts: Vec::new(),
        },
    )
    .await;
    let dir = tempfile::tempdir().unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let mut config = config(&base, carrier.base_url(), &dir);
    config.delivery.workers = 32;
    config.runtime.max_instances = 128;
    let herald = Herald::builder()
        .config(config)
        .source(ConfigSource::default())
        .build()
        .await
        .unwrap();
    let (stop, mut stopped) = watch::channel(false);
    let server = tokio::spawn({
        let herald = herald.clone();
        async move {
            let shutdown = async move {
                let _ = stopped.wait_for(|s| *s).await;
            };
            herald.serve(listener, shutdown).await.unwrap();
        }
    });
    let client = reqwest::Client::new();
    let recipients: Vec<Value> = (0..rows)
        .map(|i| json!({"to_number": number(i), "message": format!("Order {i} is ready")}))
        .collect();
    let body = json!({"batch_name": "drain", "recipients": recipients});
    let answer: Value = client
        .post(format!("{base}/api/v1/sms/send-bulk"))
        .bearer_auth(API_KEY)
        .json(&body)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(answer["accepted"], rows, "{answer}");
    let store = herald.store().clone();
    let tenant = TenantId::default_tenant();
    let mut ids = Vec::with_capacity(singles);
    let mut ticker = tokio::time::interval(Duration::from_millis(50));
    let started = Instant::now();
    for i in 0..singles {
        ticker.tick().await;
        let category = if i % 2 == 0 {
            "authentication"
        } else {
            "transactional"
        };
        let response = client
            .post(format!("{base}/api/v1/sms/send"))
            .bearer_auth(API_KEY)
            .json(
                &json!({"to_number": number(rows + i), "message": "Your code is 123456",
                          "category": category}),
            )
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 202);
        let sent: Value = response.json().await.unwrap();
        ids.push(sent["id"].as_str().unwrap().to_owned());
    }
    let posting = started.elapsed();
    let mut latencies = Vec::with_capacity(singles);
    for id in &ids {
        let claimed = loop {
            let events = store.message_events(&tenant, id).await.unwrap();
            if let Some(event) = events.iter().find(|e| e.status == MessageStatus::Sending) {
                break event.occurred_at;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        let message = store.get_message(&tenant, id).await.unwrap().unwrap();
        latencies.push(claimed - message.created_at);
    }
    let still_queued = store.count_queue().await.unwrap();
    latencies.sort_unstable();
    let at = |q: f64| latencies[((latencies.len() as f64 * q).ceil() as usize).saturating_sub(1)];
    println!(
        "drain    {singles} single sends over {:.1} s while a {rows}-row batch drained: \
         accept-to-claim p50 {} ms, p99 {} ms, max {} ms; {still_queued} batch rows still queued",
        posting.as_secs_f64(),
        at(0.5),
        at(0.99),
        latencies.last().unwrap()
    );
    assert!(
        still_queued > 0,
        "the batch had drained before the last single: raise the rows or lower the singles"
    );
    let _ = stop.send(true);
    if tokio::time::timeout(Duration::from_secs(60), server)
        .await
        .is_err()
    {
        eprintln!("Herald did not stop within a minute");
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let rows = setting("HERALD_BENCH_BULK_ROWS", 100_000);
    let upload_rows = setting("HERALD_BENCH_UPLOAD_ROWS", 1_000_000);
    let scenarios = std::env::var("HERALD_BENCH_BULK_SCENARIOS")
        .unwrap_or_else(|_| "text,template,upload,drain".into());
    println!("bulk bench on SQLite, 2 tokio workers, this process serving and posting");
    for scenario in scenarios.split(',') {
        match scenario {
            "text" | "template" => send_bulk(scenario, rows).await,
            "upload" => upload(upload_rows).await,
            "drain" => drain(rows).await,
            other => panic!("unknown scenario {other}"),
        }
    }
}
