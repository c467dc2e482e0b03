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
//! - `upload`: a draft, then 1,000,000 NDJSON lines (distinct numbers, literal messages).
//!
//! Settings (environment): `HERALD_BENCH_BULK_ROWS` (default 100000),
//! `HERALD_BENCH_UPLOAD_ROWS` (default 1000000), `HERALD_BENCH_BULK_SCENARIOS` (default
//! `text,template,upload`). Needs `target/plugins/{twilio,mustache}.wasm`
//! (`cargo xtask build-plugins`).
//!
//! Run with: `cargo bench -p herald --bench bulk`
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "../tests/common/mod.rs"]
mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use herald::Herald;
use herald::config::{ConfigSource, ServerConfig, StorageConfig};
use serde_json::{Value, json};

const API_KEY: &str = "bench-api-key";

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

/// A Herald on a fresh SQLite file serving its API on an ephemeral port.
async fn start() -> (Herald, String, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let mut config = common::config(
        vec![
            (
                "twilio",
                common::twilio_settings(
                    "http://127.0.0.1:9",
                    "AC0123456789abcdef0123456789abcdef",
                    "bench-auth-token-0123456789",
                ),
            ),
            (
                "mustache",
                common::plugin_config(common::plugin("mustache")),
            ),
        ],
        "twilio",
        "mustache",
    );
    config.server = ServerConfig {
        public_url: base.clone(),
        api_keys: vec![API_KEY.to_owned()],
        body_read_timeout_ms: 600_000,
        ..ServerConfig::default()
    };
    config.storage = StorageConfig {
        url: format!("sqlite://{}", dir.path().join("herald.db").display()),
        ..StorageConfig::default()
    };
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

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let rows = setting("HERALD_BENCH_BULK_ROWS", 100_000);
    let upload_rows = setting("HERALD_BENCH_UPLOAD_ROWS", 1_000_000);
    let scenarios = std::env::var("HERALD_BENCH_BULK_SCENARIOS")
        .unwrap_or_else(|_| "text,template,upload".into());
    println!("bulk bench on SQLite, 2 tokio workers, this process serving and posting");
    for scenario in scenarios.split(',') {
        match scenario {
            "text" | "template" => send_bulk(scenario, rows).await,
            "upload" => upload(upload_rows).await,
            other => panic!("unknown scenario {other}"),
        }
    }
}
