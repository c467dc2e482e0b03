//! The report routes over a large history (the target: p95 ≤ 100 ms per request with
//! 1,000,000 messages in the store, on both backends).
//!
//! For each backend, Herald's API runs in this process on 127.0.0.1 (no dispatcher: the store
//! holds still while it is read). The history is written first, with SQL through a separate
//! connection, as 100,000-row statements with the rollup triggers on (so the rollups are the
//! triggers' own work): `HERALD_BENCH_REPORT_MESSAGES` messages (default 1,000,000) spread
//! evenly over 30 days, with templates, categories, countries, providers, statuses and error
//! codes drawn for each message (see [`history_sql`]); every message has a cost row, and those
//! sent or further have a `sent` event and, when delivered, a `delivered` event, at spread-out
//! delays.
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

/// The allocator of the `herald` binary (`host/src/main.rs`), so that the figures are its.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

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

/// A pseudo-random value in `0..modulus` of message `n`, one stream per `salt` (a prime), so that
/// the dimensions vary independently of each other and of the message's place in time.
fn pick(salt: u64, modulus: u32) -> String {
    format!("((n * {salt}) % 1000003 % {modulus})")
}

/// The SQL that writes messages `[lo, hi)` of `total`, their cost rows and their first `sent` and
/// `delivered` events, from `series` (a table expression of one column `n`).
///
/// The shape of one busy tenant: 28 template slots of which 20 are templates (each in one
/// category) and 8 mean a literal message in a random category; half the messages to the US,
/// 20 % to Canada, 10 % each to Great Britain, France and Germany; North America through
/// Twilio and Europe through SNS, with 5 % failed over to the other; 85 % delivered, 5 % failed
/// and 3 % undelivered (six error codes, unevenly), 4 % sent and 3 % still queued.
fn history_sql(series: &str, first_day: i64, total: i64) -> [String; 4] {
    let start = first_day * DAY_MS;
    let step = DAYS * DAY_MS / total;
    let slot = pick(7919, 28);
    let template = format!("CASE WHEN {slot} < 20 THEN 'tpl_bench' || CAST({slot} AS TEXT) END");
    let category = format!(
        "CASE CASE WHEN {slot} < 20 THEN {slot} % 3 ELSE {} END          WHEN 0 THEN 'transactional' WHEN 1 THEN 'marketing' ELSE 'alerts' END",
        pick(104_729, 3)
    );
    let place = pick(15_485_863, 10);
    let country = format!(
        "CASE WHEN {place} < 5 THEN 'US' WHEN {place} < 7 THEN 'CA' WHEN {place} = 7 THEN 'GB'          WHEN {place} = 8 THEN 'FR' ELSE 'DE' END"
    );
    let provider = format!(
        "CASE WHEN ({place} < 7) = ({} > 0) THEN 'twilio' ELSE 'sns' END",
        pick(32_452_843, 20)
    );
    let roll = pick(49_979_687, 100);
    let status = format!(
        "CASE WHEN {roll} < 85 THEN 'delivered' WHEN {roll} < 90 THEN 'failed'          WHEN {roll} < 93 THEN 'undelivered' WHEN {roll} < 97 THEN 'sent' ELSE 'queued' END"
    );
    let error = pick(86_028_121, 100);
    let error_code = format!(
        "CASE WHEN {roll} >= 85 AND {roll} < 93 THEN '300' || CAST(({error} * {error}) % 10 AS TEXT) END"
    );
    let segments = format!("(1 + {})", pick(2_038_074_743, 2));
    let messages = format!(
        "INSERT INTO messages (id, tenant_id, to_number, body, template_id, category, encoding,
             segments, units, status, provider, max_attempts, error_code, created_at, updated_at)
         SELECT 'msg_bench' || CAST(n AS TEXT), 'default',
             '+1415' || CAST(1000000 + n % 100000 AS TEXT), 'Your order has shipped',
             {template}, {category}, 'GSM-7', {segments}, {segments}, {status}, {provider}, 3,
             {error_code}, {start} + n * {step}, {start} + n * {step}
         FROM {series}"
    );
    let delivered = format!("{roll} < 85");
    let costs = format!(
        "INSERT INTO message_costs (tenant_id, message_id, provider, country, segments,
             estimate_micros, currency, estimate_source, actual_micros, actual_currency,
             difference_micros, created_at)
         SELECT 'default', 'msg_bench' || CAST(n AS TEXT), {provider}, {country}, {segments},
             8300 * {segments}, 'USD', 'config',
             CASE WHEN {delivered} THEN 7900 * {segments} END,
             CASE WHEN {delivered} THEN 'USD' END,
             CASE WHEN {delivered} THEN -400 * {segments} END,
             {start} + n * {step}
         FROM {series}"
    );
    let sent = format!(
        "INSERT INTO status_events (tenant_id, message_id, status, source, occurred_at)
         SELECT 'default', 'msg_bench' || CAST(n AS TEXT), 'sent', 'dispatcher',
             {start} + n * {step} + 40 + {}
         FROM {series} WHERE {roll} < 97",
        pick(1_299_709, 900)
    );
    let delivered = format!(
        "INSERT INTO status_events (tenant_id, message_id, status, source, occurred_at)
         SELECT 'default', 'msg_bench' || CAST(n AS TEXT), 'delivered', 'webhook',
             {start} + n * {step} + 1500 + {}
         FROM {series} WHERE {delivered}",
        pick(179_424_673, 30_000)
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
                let series = format!("generate_series(CAST({lo} AS BIGINT), {}) AS g(n)", hi - 1);
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
    // Steady state: on PostgreSQL the store folds its rollup deltas about once a second, so a
    // reader finds at most a second's writes unfolded, not the whole history written above.
    herald.store().fold_rollups().await.unwrap();
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
