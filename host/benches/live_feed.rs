//! The live feed: how late status changes reach one `GET /api/v1/sms/delivery/stream` client
//! when they happen at a steady rate (the target: 1,000 a second, p99 lag ≤ 250 ms).
//!
//! Everything runs in this one process on 127.0.0.1 (with PostgreSQL, the server shares the
//! machine too): Herald's API (`Herald::router` served with axum; no dispatcher, so the only
//! writes are the load's), one SSE client reading with `reqwest`, and the load: writer tasks
//! calling `Store::enqueue`, paced together to `HERALD_BENCH_FEED_RATE` new messages a second,
//! each written with its `queued` status change in one transaction. A change's lag is the time
//! the client parsed its event minus the `occurred_at` in its payload (the writer's clock, read
//! just before its transaction; both in milliseconds since the epoch from this machine's
//! clock). The run checks that the client got every change once, in id order, none skipped.
//!
//! Settings (environment): `HERALD_BENCH_FEED_RATE` (changes a second, default 1000),
//! `HERALD_BENCH_FEED_SECONDS` (default 10), `HERALD_BENCH_FEED_WRITERS` (default 16),
//! `HERALD_BENCH_BACKENDS` (default `sqlite,postgres`). PostgreSQL at
//! `postgres://postgres@127.0.0.1:5432/test` (or `HERALD_TEST_POSTGRES`), a fresh database per
//! run. Needs `target/plugins/{twilio,mustache}.wasm` (`cargo xtask build-plugins`).
//!
//! Run with: `cargo bench -p herald --bench live_feed`
#![allow(clippy::unwrap_used, clippy::expect_used)]

/// The allocator of the `herald` binary (`host/src/main.rs`), so that the figures are its.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[path = "../tests/common/mod.rs"]
mod common;

use std::time::{Duration, Instant};

use herald::Herald;
use herald::config::ConfigSource;
use herald::segments::Encoding;
use herald::store::{Category, NewMessage, TenantId, new_id, now_millis};
use serde_json::Value;

const API_KEY: &str = common::app::API_KEY;

fn setting(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(default)
}

/// A `queued` message for the default tenant, written at `now`.
fn message(n: usize) -> NewMessage {
    NewMessage {
        charge: None,
        id: new_id("msg"),
        tenant_id: TenantId::default_tenant(),
        to_number: format!("+1415555{:04}", n % 10_000),
        sender: None,
        body: "Your table is ready".to_owned(),
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
        due_at: None,
        bulk: false,
        batch_id: None,
        now: now_millis(),
    }
}

/// The value at quantile `q` of sorted `values`.
fn quantile(values: &[i64], q: f64) -> i64 {
    let index = ((values.len() as f64 - 1.0) * q).round() as usize;
    values[index.min(values.len() - 1)]
}

async fn run(backend: &str, rate: usize, seconds: usize, writers: usize) {
    let dir = tempfile::tempdir().unwrap();
    let storage = match backend {
        "postgres" => common::db::postgres_url().await,
        _ => format!("sqlite://{}", dir.path().join("herald.db").display()),
    };
    let mut config = common::app::config("http://127.0.0.1:9", "http://127.0.0.1:9", &storage);
    config.runtime.watch = false;
    config.delivery.workers = writers;
    let herald = Herald::builder()
        .config(config)
        .source(ConfigSource::default())
        .build()
        .await
        .unwrap();
    let base = common::serve(herald.router()).await;
    let mut response = reqwest::Client::new()
        .get(format!("{base}/api/v1/sms/delivery/stream"))
        .bearer_auth(API_KEY)
        .send()
        .await
        .unwrap();
    assert!(response.status().is_success());

    let total = rate * seconds;
    let started = Instant::now();
    let load = tokio::spawn({
        let store = herald.store().clone();
        async move {
            let mut tasks = Vec::new();
            for writer in 0..writers {
                let store = store.clone();
                tasks.push(tokio::spawn(async move {
                    // Writer `w` writes changes w, w + writers, …, each at its slot of the rate.
                    let mut n = writer;
                    while n < total {
                        let due = started + Duration::from_secs_f64(n as f64 / rate as f64);
                        tokio::time::sleep_until(due.into()).await;
                        store.enqueue(&message(n)).await.unwrap();
                        n += writers;
                    }
                }));
            }
            for task in tasks {
                task.await.unwrap();
            }
            started.elapsed()
        }
    });

    let mut lags = Vec::with_capacity(total);
    let mut last_id = 0_i64;
    let mut buffer = String::new();
    while lags.len() < total {
        let chunk = tokio::time::timeout(Duration::from_secs(30), response.chunk())
            .await
            .expect("no event for 30 s")
            .unwrap()
            .expect("the stream ended");
        buffer.push_str(std::str::from_utf8(&chunk).unwrap());
        while let Some(end) = buffer.find("\n\n") {
            let block: String = buffer.drain(..end + 2).collect();
            let Some(data) = block.lines().find_map(|l| l.strip_prefix("data:")) else {
                continue;
            };
            let event: Value = serde_json::from_str(data.trim_start()).unwrap();
            let id = event["id"].as_i64().unwrap();
            // Only this run writes, and nothing rolls back: the ids run without a gap.
            assert_eq!(id, last_id + 1, "event {id} came after {last_id}");
            last_id = id;
            let occurred = event["payload"]["occurred_at"].as_i64().unwrap();
            lags.push(now_millis() - occurred);
        }
    }
    let written_in = load.await.unwrap();
    let received_in = started.elapsed();
    lags.sort_unstable();
    println!(
        "{backend}: {total} changes written in {:.2} s ({:.0}/s), all received in {:.2} s; \
         lag p50 {} ms, p99 {} ms, max {} ms",
        written_in.as_secs_f64(),
        total as f64 / written_in.as_secs_f64(),
        received_in.as_secs_f64(),
        quantile(&lags, 0.5),
        quantile(&lags, 0.99),
        lags[lags.len() - 1],
    );
    herald.close().await;
}

#[tokio::main(flavor = "multi_thread")]
async fn main() {
    let rate = setting("HERALD_BENCH_FEED_RATE", 1_000);
    let seconds = setting("HERALD_BENCH_FEED_SECONDS", 10);
    let writers = setting("HERALD_BENCH_FEED_WRITERS", 16);
    let backends =
        std::env::var("HERALD_BENCH_BACKENDS").unwrap_or_else(|_| "sqlite,postgres".to_owned());
    for backend in backends.split(',') {
        run(backend.trim(), rate, seconds, writers).await;
    }
}
