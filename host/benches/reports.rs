//! The report routes over a large history (the target: p95 ≤ 100 ms per request with
//! 1,000,000 messages in the store, on both backends).
//!
//! For each backend, Herald's API runs in this process on 127.0.0.1 (no dispatcher: the store
//! holds still while it is read). The history is written first, with SQL through a separate
//! connection, as 100,000-row statements with the rollup triggers on (so the rollups are the
//! triggers' own work): `HERALD_BENCH_REPORT_MESSAGES` messages (default 1,000,000) spread
//! evenly over 30 days, 2 providers, 3 categories, 20 templates (a quarter of the messages have
//! none), 5 countries, 85 % delivered, 5 % failed and 3 % undelivered with 10 error codes, the
//! rest sent or queued; every message has a cost row, and those sent or further have a `sent`
//! event and, when delivered, a `delivered` event, at spread-out delays.
//!
//! Then each route is asked `HERALD_BENCH_REPORT_REQUESTS` times (default 30), one request at a
//! time, for the whole 30 days: `/costs/summary` without a group and with each `group_by`,
//! `/costs/report` (JSON), and `/delivery/metrics` without a group and with each `group_by`.
//! The bench prints p50, p95 and the maximum per route, and checks that the figures add up to
//! the history written.
//!
//! Settings (environment): `HERALD_BENCH_REPORT_MESSAGES`, `HERALD_BENCH_REPORT_REQUESTS`,
//! `HERALD_BENCH_BACKENDS` (default `sqlite,postgres`). PostgreSQL at
//! `postgres://postgres@127.0.0.1:5432/test` (or `HERALD_TEST_POSTGRES`), a fresh database per
//! run. Needs `target/plugins/{twilio,mustache}.wasm` (`cargo xtask build-plugins`).
//!
//! Run with: `cargo bench -p herald --bench reports`
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "../tests/common/mod.rs"]
mod common;

use std::str::FromStr;
use std::time::{Duration, Instant};

use herald::Herald;
use herald::config::ConfigSource;
use serde_json::Value;
use sqlx::sqlite::SqliteConnectOptions;
use sqlx::{AssertSqlSafe, Executor};

const API_KEY: &str = common::app::API_KEY;
const DAY_MS: i64 = 86_400_000;
/// The history's days.
const DAYS: i64 = 30;
/// Rows per generating statement.
const CHUNK: i64 = 100_000;

fn setting(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(default)
}

/// The SQL that writes messages `[lo, hi)` of `total`, their cost rows and their first `sent` and
/// `delivered` events, from `series` (a table expression of one column `n`).
fn history_sql(series: &str, first_day: i64, total: i64) -> [String; 4] {
    // `text` with `x` replaced: an integer as text on either backend.
    let text = "CAST(x AS TEXT)";
    let start = first_day * DAY_MS;
    let step = DAYS * DAY_MS / total;
    let status = "CASE WHEN n % 100 < 85 THEN 'delivered' WHEN n % 100 < 90 THEN 'failed' \
                  WHEN n % 100 < 93 THEN 'undelivered' WHEN n % 100 < 97 THEN 'sent' \
                  ELSE 'queued' END";
    let messages = format!(
        "INSERT INTO messages (id, tenant_id, to_number, body, template_id, category, encoding,
             segments, units, status, provider, max_attempts, error_code, created_at, updated_at)
         SELECT 'msg_bench' || {n}, 'default', '+1415' || {n7}, 'Your order has shipped',
             CASE WHEN n % 4 = 0 THEN NULL ELSE 'tpl_bench' || {t20} END,
             CASE n % 3 WHEN 0 THEN 'transactional' WHEN 1 THEN 'marketing' ELSE 'alerts' END,
             'GSM-7', 1 + n % 2, 1 + n % 2, {status},
             CASE WHEN n % 5 < 3 THEN 'twilio' ELSE 'sns' END, 3,
             CASE WHEN n % 100 >= 85 AND n % 100 < 93 THEN '300' || {e10} END,
             {start} + n * {step}, {start} + n * {step}
         FROM {series}",
        n = text.replace('x', "n"),
        n7 = text.replace('x', "(1000000 + n % 100000)"),
        t20 = text.replace('x', "(n % 20)"),
        e10 = text.replace('x', "(n % 10)"),
    );
    let costs = format!(
        "INSERT INTO message_costs (tenant_id, message_id, provider, country, segments,
             estimate_micros, currency, estimate_source, actual_micros, actual_currency,
             difference_micros, created_at)
         SELECT 'default', 'msg_bench' || {n}, CASE WHEN n % 5 < 3 THEN 'twilio' ELSE 'sns' END,
             CASE n % 5 WHEN 0 THEN 'US' WHEN 1 THEN 'CA' WHEN 2 THEN 'GB' WHEN 3 THEN 'FR'
                  ELSE 'DE' END,
             1 + n % 2, 8300 * (1 + n % 2), 'USD', 'price_table',
             CASE WHEN n % 100 < 85 THEN 7900 * (1 + n % 2) END,
             CASE WHEN n % 100 < 85 THEN 'USD' END,
             CASE WHEN n % 100 < 85 THEN -400 * (1 + n % 2) END,
             {start} + n * {step}
         FROM {series}",
        n = text.replace('x', "n"),
    );
    let sent = format!(
        "INSERT INTO status_events (tenant_id, message_id, status, source, occurred_at)
         SELECT 'default', 'msg_bench' || {n}, 'sent', 'dispatcher',
             {start} + n * {step} + 40 + (n * 7919) % 900
         FROM {series} WHERE n % 100 < 97",
        n = text.replace('x', "n"),
    );
    let delivered = format!(
        "INSERT INTO status_events (tenant_id, message_id, status, source, occurred_at)
         SELECT 'default', 'msg_bench' || {n}, 'delivered', 'webhook',
             {start} + n * {step} + 1500 + (n * 104729) % 30000
         FROM {series} WHERE n % 100 < 85",
        n = text.replace('x', "n"),
    );
    [messages, costs, sent, delivered]
}

/// Writes the history of `total` messages starting on day `first_day`.
async fn write_history(backend: &str, url: &str, first_day: i64, total: i64) {
    let started = Instant::now();
    let mut lo = 0;
    while lo < total {
        let hi = (lo + CHUNK).min(total);
        match backend {
            "postgres" => {
                let pool = sqlx::PgPool::connect(url).await.unwrap();
                let series = format!("generate_series({lo}, {}) AS g(n)", hi - 1);
                let mut tx = pool.begin().await.unwrap();
                for sql in history_sql(&series, first_day, total) {
                    tx.execute(AssertSqlSafe(sql)).await.unwrap();
                }
                tx.commit().await.unwrap();
                pool.close().await;
            }
            _ => {
                let options = SqliteConnectOptions::from_str(url)
                    .unwrap()
                    .busy_timeout(Duration::from_secs(60));
                let pool = sqlx::SqlitePool::connect_with(options).await.unwrap();
                let series = format!(
                    "(WITH RECURSIVE g(n) AS (SELECT {lo} UNION ALL SELECT n + 1 FROM g \
                     WHERE n + 1 < {hi}) SELECT n FROM g)"
                );
                let mut tx = pool.begin().await.unwrap();
                for sql in history_sql(&series, first_day, total) {
                    tx.execute(AssertSqlSafe(sql)).await.unwrap();
                }
                tx.commit().await.unwrap();
                pool.close().await;
            }
        }
        lo = hi;
    }
    println!(
        "{backend}: wrote {total} messages (with cost rows, events and rollups) in {:.1} s",
        started.elapsed().as_secs_f64()
    );
}

fn quantile(sorted: &[f64], q: f64) -> f64 {
    let rank = ((sorted.len() as f64) * q).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

async fn run(backend: &str, total: i64, requests: usize) {
    let dir = tempfile::tempdir().unwrap();
    let storage = match backend {
        "postgres" => common::db::postgres_url().await,
        _ => format!("sqlite://{}", dir.path().join("herald.db").display()),
    };
    let mut config = common::app::config("http://127.0.0.1:9", "http://127.0.0.1:9", &storage);
    config.runtime.watch = false;
    let herald = Herald::builder()
        .config(config)
        .source(ConfigSource::default())
        .build()
        .await
        .unwrap();
    // The history ends yesterday (UTC), so no request's period is still being written.
    let today = herald::store::now_millis() / DAY_MS;
    let first_day = today - DAYS;
    write_history(backend, &storage, first_day, total).await;
    let base = common::serve(herald.router()).await;
    let client = reqwest::Client::new();
    let date = |day: i64| {
        chrono::DateTime::from_timestamp_millis(day * DAY_MS)
            .unwrap()
            .format("%Y-%m-%d")
            .to_string()
    };
    let period = format!(
        "start_date={}&end_date={}",
        date(first_day),
        date(today - 1)
    );
    let groups = ["", "day", "category", "provider", "template", "country"];
    let mut routes: Vec<String> = Vec::new();
    for route in ["costs/summary", "delivery/metrics"] {
        for group in groups {
            let by = if group.is_empty() {
                String::new()
            } else {
                format!("&group_by={group}")
            };
            routes.push(format!("{route}?{period}{by}"));
        }
    }
    routes.push(format!("costs/report?{period}"));

    println!(
        "{backend}: {total} messages, {requests} requests per route, one at a time \
         (p50 / p95 / max, ms)"
    );
    for route in &routes {
        let mut times = Vec::with_capacity(requests);
        let mut last = Value::Null;
        for _ in 0..requests {
            let started = Instant::now();
            let response = client
                .get(format!("{base}/api/v1/sms/{route}"))
                .bearer_auth(API_KEY)
                .send()
                .await
                .unwrap();
            assert!(
                response.status().is_success(),
                "{route}: {}",
                response.status()
            );
            last = response.json().await.unwrap();
            times.push(started.elapsed().as_secs_f64() * 1000.0);
        }
        // Every message is in the period, and nothing else is.
        assert_eq!(
            last["totals"]["messages"].as_i64(),
            Some(total),
            "{route}: {last:#}"
        );
        times.sort_by(f64::total_cmp);
        let name = route.split('?').next().unwrap();
        let group = route
            .split("group_by=")
            .nth(1)
            .map_or(String::new(), |g| format!(" by {g}"));
        println!(
            "  {:<36} {:>7.1} {:>7.1} {:>7.1}",
            format!("{name}{group}"),
            quantile(&times, 0.5),
            quantile(&times, 0.95),
            times[times.len() - 1],
        );
    }
    herald.close().await;
}

#[tokio::main(flavor = "multi_thread")]
async fn main() {
    let total = setting("HERALD_BENCH_REPORT_MESSAGES", 1_000_000) as i64;
    let requests = setting("HERALD_BENCH_REPORT_REQUESTS", 30);
    let backends =
        std::env::var("HERALD_BENCH_BACKENDS").unwrap_or_else(|_| "sqlite,postgres".to_owned());
    for backend in backends.split(',') {
        run(backend.trim(), total, requests).await;
    }
}
