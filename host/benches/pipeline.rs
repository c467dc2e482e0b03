//! Throughput of the whole delivery pipeline: HTTP accept with a durable commit, then dispatch
//! through the Twilio WebAssembly plugin to the local Twilio-compatible carrier.
//!
//! For each backend (a SQLite file in a temporary directory, then a fresh PostgreSQL database),
//! everything runs in this one process on 127.0.0.1: the carrier (`herald_testkit::carrier`), Herald
//! (`Herald::builder`, its API router and its dispatcher with `delivery.workers = 32`) and the
//! load generator (64 tasks sharing one keep-alive `reqwest` client, each posting
//! `POST /api/v1/sms/send` until `MESSAGES` sends have been answered `202`). Each scenario gets a
//! fresh database and a fresh carrier:
//!
//! 0. **store only**: `Store::enqueue` called directly by 64 tasks (no HTTP, JSON, validation or
//!    opt-out read): the ceiling the store's write path puts on acceptance.
//! 1. **staged, callbacks off**: Herald serves only its API (the dispatcher is not started), so
//!    *accepted* is acceptance alone: validation, opt-out check and the enqueue transaction,
//!    committed before the `202`. Then the dispatcher starts and *dispatched* is the time until
//!    the queue is empty, i.e. every message was claimed, sent through the Twilio plugin to the
//!    carrier and recorded `sent`. The carrier's status callbacks are held back (an hour's delay),
//!    so dispatch is measured alone.
//! 2. **staged, callbacks on**: the same with the carrier posting its signed `sent` and
//!    `delivered` callbacks 50 ms after each step (two per message, each verified and parsed by
//!    the plugin and applied to the store), concurrently with dispatch. *delivered* is the time
//!    from the dispatcher's start until no message is queued, sending or `sent` any more.
//! 3. **concurrent, callbacks on**: `Herald::serve` (API and dispatcher together, as in
//!    production): *accepted* is measured while dispatch and callbacks compete for the same CPU
//!    and store, and *dispatched* / *delivered* run from the first request to the empty queue /
//!    the last callback applied.
//!
//! Every run checks its end state: all `MESSAGES` messages exist, all `sent` (callbacks off) or
//! all `delivered` (callbacks on). The machine's cores are shared by the load generator, Herald,
//! the carrier and (for the second backend) the PostgreSQL server, so the figures are for the
//! whole loop on one box. Every wait is bounded (10 minutes per phase).
//!
//! Settings (environment): `HERALD_BENCH_MESSAGES` (default 20000), `HERALD_BENCH_CLIENTS`
//! (default 64), `HERALD_BENCH_WORKERS` (`delivery.workers`, default 32), `HERALD_BENCH_BACKENDS`
//! (default `sqlite,postgres`), `HERALD_BENCH_SCENARIOS` (default
//! `store-only,staged-quiet,staged-callbacks,concurrent`: scenarios 0 to 3),
//! `HERALD_TEST_POSTGRES` (default `postgres://postgres@127.0.0.1:5432/test`; a database is
//! created per scenario and dropped after it), `RUST_LOG` (default `warn`).
//! Needs `target/plugins/twilio.wasm` (`cargo xtask build-plugins`).
//!
//! Run with: `cargo bench -p herald --bench pipeline`
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "../tests/common/mod.rs"]
mod common;

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use herald::config::{Config, ConfigSource, DeliveryConfig, ServerConfig, StorageConfig};
use herald::segments::Encoding;
use herald::store::{MessageFilter, MessageStatus, NewMessage, Store};
use herald_testkit::carrier::{self, Carrier, CarrierConfig};
use sqlx::{AssertSqlSafe, Connection, PgConnection};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// Concurrent HTTP clients (and store tasks), unless `HERALD_BENCH_CLIENTS` says otherwise.
const CLIENTS: usize = 64;
/// `delivery.workers`, unless `HERALD_BENCH_WORKERS` says otherwise.
const WORKERS: usize = 32;
const SID: &str = "AC0123456789abcdef0123456789abcdef";
const TOKEN: &str = "bench-auth-token-0123456789";
const API_KEY: &str = "bench-api-key";
const TO: &str = "+14155552671";
/// Upper bound for any one phase (accepting, draining, waiting for callbacks).
const PHASE_TIMEOUT: Duration = Duration::from_secs(600);

#[derive(Clone, Copy, PartialEq, Eq)]
enum Backend {
    Sqlite,
    Postgres,
}

impl Backend {
    fn name(self) -> &'static str {
        match self {
            Backend::Sqlite => "sqlite",
            Backend::Postgres => "postgres",
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Scenario {
    StoreOnly,
    Ledger,
    StagedQuiet,
    StagedCallbacks,
    Concurrent,
}

impl Scenario {
    fn label(self) -> &'static str {
        match self {
            Scenario::StoreOnly => "store only, no HTTP",
            Scenario::Ledger => "accept's store work, ledger and budget on / off",
            Scenario::StagedQuiet => "staged, callbacks off",
            Scenario::StagedCallbacks => "staged, callbacks on",
            Scenario::Concurrent => "concurrent, callbacks on",
        }
    }

    fn callbacks(self) -> bool {
        matches!(self, Scenario::StagedCallbacks | Scenario::Concurrent)
    }
}

/// A fresh database for one scenario; dropping the guard's directory removes a SQLite file.
struct Database {
    url: String,
    _dir: Option<tempfile::TempDir>,
    postgres_name: Option<String>,
}

async fn database(backend: Backend) -> Database {
    match backend {
        Backend::Sqlite => {
            let dir = tempfile::tempdir().unwrap();
            // Without `mode=`: the store then creates the file (as for Herald's default URL).
            let url = format!("sqlite://{}", dir.path().join("herald.db").display());
            Database {
                url,
                _dir: Some(dir),
                postgres_name: None,
            }
        }
        Backend::Postgres => {
            let url = common::db::postgres_url().await;
            let name = url.rsplit_once('/').unwrap().1.to_owned();
            Database {
                url,
                _dir: None,
                postgres_name: Some(name),
            }
        }
    }
}

/// Drops a scenario's PostgreSQL database (once Herald has closed its pool).
async fn drop_database(db: &Database) {
    let Some(name) = &db.postgres_name else {
        return;
    };
    let admin_url = std::env::var("HERALD_TEST_POSTGRES")
        .unwrap_or_else(|_| common::db::POSTGRES_ADMIN_URL.to_owned());
    if let Ok(mut admin) = PgConnection::connect(&admin_url).await {
        let drop = format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)");
        let _ = sqlx::query(AssertSqlSafe(drop)).execute(&mut admin).await;
    }
}

fn herald_config(storage_url: &str, public_url: &str, carrier_url: &str) -> Config {
    let mut config = common::config(
        vec![("twilio", common::twilio_settings(carrier_url, SID, TOKEN))],
        "twilio",
        "",
    );
    config.runtime.max_instances = 128;
    config.runtime.watch = false;
    config.server = ServerConfig {
        public_url: public_url.to_owned(),
        api_keys: vec![API_KEY.to_owned()],
        ..ServerConfig::default()
    };
    config.storage = StorageConfig {
        url: storage_url.to_owned(),
        ..StorageConfig::default()
    };
    config.delivery = DeliveryConfig {
        workers: workers(),
        ..DeliveryConfig::default()
    };
    config
}

/// The dispatcher's concurrency: `HERALD_BENCH_WORKERS`, or `WORKERS`.
fn workers() -> usize {
    std::env::var("HERALD_BENCH_WORKERS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(WORKERS)
}

/// The number of concurrent clients: `HERALD_BENCH_CLIENTS`, or `CLIENTS`.
fn clients() -> usize {
    std::env::var("HERALD_BENCH_CLIENTS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(CLIENTS)
}

/// Posts `total` sends from `clients()` concurrent tasks; returns when every one was answered 202.
async fn accept(client: &reqwest::Client, base_url: &str, total: usize) -> Duration {
    let url = format!("{base_url}/api/v1/sms/send");
    let next = Arc::new(AtomicUsize::new(0));
    let start = Instant::now();
    let mut tasks = Vec::with_capacity(clients());
    for _ in 0..clients() {
        let client = client.clone();
        let url = url.clone();
        let next = Arc::clone(&next);
        tasks.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= total {
                    return;
                }
                let body = serde_json::json!({
                    "to_number": TO,
                    "message": format!("Your Herald verification code is {i:06}."),
                })
                .to_string();
                let response = client
                    .post(&url)
                    .header("authorization", format!("Bearer {API_KEY}"))
                    .header("content-type", "application/json")
                    .body(body)
                    .send()
                    .await
                    .expect("send request");
                let status = response.status();
                if status != reqwest::StatusCode::ACCEPTED {
                    let text = response.text().await.unwrap_or_default();
                    panic!("send {i} answered {status}: {text}");
                }
                // Read the body so the connection goes back to the pool.
                response.bytes().await.expect("read the 202 body");
            }
        }));
    }
    within("accepting", async {
        for task in tasks {
            task.await.expect("a client task failed");
        }
    })
    .await;
    start.elapsed()
}

/// Runs `future` with the phase timeout, panicking (so the bench ends) when it is exceeded.
async fn within<T>(what: &str, future: impl Future<Output = T>) -> T {
    tokio::time::timeout(PHASE_TIMEOUT, future)
        .await
        .unwrap_or_else(|_| panic!("{what} took longer than {PHASE_TIMEOUT:?}"))
}

/// Waits until the queue is empty: every message was dispatched (sent, or failed for good).
async fn drained(store: &Store) {
    within("dispatching", async {
        loop {
            if store.count_queue().await.expect("count the queue") == 0 {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
}

/// Waits until no message is queued, sending or merely `sent`: every callback was applied.
async fn delivered(store: &Store) {
    drained(store).await;
    let sent = MessageFilter {
        status: Some(MessageStatus::Sent),
        limit: Some(1),
        ..MessageFilter::default()
    };
    within("waiting for status callbacks", async {
        loop {
            let page = store
                .list_messages(&herald::TenantId::default_tenant(), &sent)
                .await
                .expect("list sent messages");
            if page.items.is_empty() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
}

/// Counts the tenant's messages by status.
async fn statuses(store: &Store) -> BTreeMap<&'static str, usize> {
    let mut counts = BTreeMap::new();
    let mut filter = MessageFilter {
        limit: Some(500),
        ..MessageFilter::default()
    };
    loop {
        let page = store
            .list_messages(&herald::TenantId::default_tenant(), &filter)
            .await
            .expect("list messages");
        for message in &page.items {
            *counts.entry(message.status.as_str()).or_insert(0) += 1;
        }
        match page.next_cursor {
            Some(cursor) => filter.cursor = Some(cursor),
            None => return counts,
        }
    }
}

/// Checks that all `total` messages exist and that those the run waited for got there.
async fn check(store: &Store, total: usize, expect: &[MessageStatus]) {
    let counts = statuses(store).await;
    let all: usize = counts.values().sum();
    let good: usize = expect
        .iter()
        .map(|s| counts.get(s.as_str()).copied().unwrap_or(0))
        .sum();
    assert!(
        all == total && good == total,
        "expected {total} messages, all {expect:?}; found {counts:?}"
    );
}

fn rate(count: usize, elapsed: Duration) -> String {
    let per_second = (count as f64 / elapsed.as_secs_f64()).round() as u64;
    let digits = per_second.to_string();
    let mut grouped = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            grouped.push(',');
        }
        grouped.push(c);
    }
    format!("{grouped}/s")
}

fn report(
    backend: Backend,
    scenario: Scenario,
    figure: &str,
    count: usize,
    elapsed: Duration,
    note: &str,
) {
    println!(
        "{:<8} {:<26} {:<11} {:>9} ({count} in {:.2} s{note})",
        backend.name(),
        scenario.label(),
        format!("{figure}:"),
        rate(count, elapsed),
        elapsed.as_secs_f64(),
    );
}

/// One running API server (and, when started, a dispatcher) over one Herald.
struct Herald {
    state: herald::Herald,
    base_url: String,
    stop: watch::Sender<bool>,
    server: JoinHandle<()>,
    dispatcher: Option<JoinHandle<()>>,
}

impl Herald {
    /// Starts Herald on an ephemeral port; `full` serves it as production does (`Herald::serve`),
    /// otherwise only its API router is served and the dispatcher waits for `start_dispatcher`.
    async fn start(storage_url: &str, carrier: &Carrier, full: bool) -> Herald {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base_url = format!("http://{}", listener.local_addr().unwrap());
        let config = herald_config(storage_url, &base_url, carrier.base_url());
        let state = herald::Herald::builder()
            .config(config)
            .source(ConfigSource::default())
            .build()
            .await
            .expect("start Herald");
        let (stop, mut stopped) = watch::channel(false);
        let shutdown = async move {
            let _ = stopped.wait_for(|s| *s).await;
        };
        let server = if full {
            let state = state.clone();
            tokio::spawn(async move { state.serve(listener, shutdown).await.expect("serve") })
        } else {
            let router = state.router();
            tokio::spawn(async move {
                axum::serve(listener, router)
                    .with_graceful_shutdown(shutdown)
                    .await
                    .expect("serve the API");
            })
        };
        Herald {
            state,
            base_url,
            stop,
            server,
            dispatcher: None,
        }
    }

    fn start_dispatcher(&mut self) {
        let stopped = self.stop.subscribe();
        self.dispatcher = Some(tokio::spawn(herald::pipeline::dispatch::run(
            self.state.pipeline().clone(),
            stopped,
        )));
    }

    async fn stop(self) {
        let _ = self.stop.send(true);
        let mut tasks = vec![self.server];
        tasks.extend(self.dispatcher);
        for mut task in tasks {
            if tokio::time::timeout(Duration::from_secs(30), &mut task)
                .await
                .is_err()
            {
                task.abort();
            }
        }
        // `Herald::serve` closes the store itself; closing twice is harmless.
        self.state.close().await;
    }
}

/// Scenario 0: `Store::enqueue` called directly by `clients()` tasks, as the send handler calls it
/// (same store options as Herald's), without HTTP, JSON, validation or the opt-out read.
/// A message for the store-level scenarios: message `i` of a 64-task load, charged with
/// `charge` (`None`: no cost row, as before the ledger).
fn bench_message(i: usize, charge: Option<herald::store::Charge>) -> NewMessage {
    let body = format!("Your Herald verification code is {i:06}.");
    NewMessage {
        id: herald::store::new_id("msg"),
        tenant_id: herald::TenantId::default_tenant(),
        to_number: TO.into(),
        sender: None,
        units: body.len() as u32,
        body,
        template_id: None,
        template_version: None,
        category: herald::Category::transactional(),
        encoding: Encoding::Gsm7,
        segments: 1,
        provider: "twilio".into(),
        max_attempts: 5,
        customer_id: None,
        order_id: None,
        reservation_id: None,
        metadata: None,
        idempotency_key: None,
        request_hash: None,
        due_at: None,
        bulk: false,
        batch_id: None,
        now: herald::store::now_millis(),
        charge,
    }
}

/// The cost of the ledger and a budget on acceptance (the target: on ≥ 0.85 × off):
/// `clients()` tasks each do what `POST /send` does after validation and the opt-out read,
/// alternately with and without the ledger, in rounds of `total / 4` messages on one store.
///
/// * **on**: the price lookup and budget load (`pipeline::ledger::charge`, as the send path
///   does), then the enqueue with its cost row, its `estimate` ledger entry and a reservation on
///   a hard-capped monthly budget (a conditional `UPDATE … RETURNING`) with alert thresholds.
/// * **off**: the same enqueue with no charge: no price lookup, cost row, ledger entry or
///   reservation (what the store did before the ledger).
///
/// HTTP, JSON and validation cost the same either way and are left out, so the ratio here is
/// the ledger's share of the store work alone: the HTTP ratio can only be closer to 1.
async fn ledger(backend: Backend, total: usize) {
    use herald::pipeline::budgets::{self, BudgetSpec};

    let db = database(backend).await;
    let config = herald_config(&db.url, "http://127.0.0.1:9", "http://127.0.0.1:9");
    let state = herald::Herald::builder()
        .config(config)
        .source(ConfigSource::default())
        .build()
        .await
        .expect("start Herald");
    let pipeline = state.pipeline().clone();
    let tenant = herald::TenantId::default_tenant();
    let spec: BudgetSpec = serde_json::from_value(serde_json::json!({
        "period": "monthly",
        "limit": {"micros": 1_000_000_000_000_i64, "currency": "USD"},
        "alert_thresholds": [50, 80, 100],
        "hard_cap": true,
    }))
    .unwrap();
    budgets::put(&pipeline, &tenant, "bench", spec)
        .await
        .expect("create the budget");
    let to = herald::PhoneNumber::parse(TO).unwrap();
    let round = (total / 4).max(1);
    let mut rates = BTreeMap::<bool, Vec<f64>>::new();
    for on in [false, true, false, true] {
        let next = Arc::new(AtomicUsize::new(0));
        let start = Instant::now();
        let mut tasks = Vec::with_capacity(clients());
        for _ in 0..clients() {
            let pipeline = pipeline.clone();
            let (next, tenant, to) = (Arc::clone(&next), tenant.clone(), to.clone());
            tasks.push(tokio::spawn(async move {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= round {
                        return;
                    }
                    let charge = if on {
                        let body = format!("Your Herald verification code is {i:06}.");
                        let count = herald::segments::count(&body, Default::default()).unwrap();
                        let category = herald::Category::transactional();
                        let charge = herald::pipeline::ledger::charge(
                            &pipeline, &tenant, "twilio", &to, &category, &count,
                        )
                        .await
                        .expect("charge");
                        assert_eq!(charge.holds.len(), 1, "the budget applies");
                        Some(charge)
                    } else {
                        None
                    };
                    pipeline
                        .store()
                        .enqueue(&bench_message(i, charge))
                        .await
                        .expect("enqueue");
                }
            }));
        }
        within("enqueueing", async {
            for task in tasks {
                task.await.expect("an enqueue task failed");
            }
        })
        .await;
        let rate = round as f64 / start.elapsed().as_secs_f64();
        println!(
            "[{}] ledger {}: {round} enqueued in {:.2} s: {rate:.0}/s",
            backend.name(),
            if on { "on " } else { "off" },
            start.elapsed().as_secs_f64()
        );
        rates.entry(on).or_default().push(rate);
    }
    let mean = |on: bool| rates[&on].iter().sum::<f64>() / rates[&on].len() as f64;
    println!(
        "[{}] ledger and budget on / off: {:.0}/s / {:.0}/s = {:.2} (target ≥ 0.85)",
        backend.name(),
        mean(true),
        mean(false),
        mean(true) / mean(false)
    );
    let budgets = budgets::list(&pipeline, &tenant).await.unwrap();
    assert_eq!(
        budgets[0].usage.reserved.micros,
        8_300 * 2 * round as i64,
        "every message with the ledger on reserved its estimate"
    );
    state.close().await;
    drop_database(&db).await;
}

async fn store_only(backend: Backend, total: usize) {
    let db = database(backend).await;
    let config = herald_config(&db.url, "http://127.0.0.1:9", "http://127.0.0.1:9");
    let store = herald::app::open_store(&config)
        .await
        .expect("open the store");
    let next = Arc::new(AtomicUsize::new(0));
    let start = Instant::now();
    let mut tasks = Vec::with_capacity(clients());
    for _ in 0..clients() {
        let store = store.clone();
        let next = Arc::clone(&next);
        tasks.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= total {
                    return;
                }
                let new = bench_message(i, None);
                store.enqueue(&new).await.expect("enqueue");
            }
        }));
    }
    within("enqueueing", async {
        for task in tasks {
            task.await.expect("an enqueue task failed");
        }
    })
    .await;
    let elapsed = start.elapsed();
    report(
        backend,
        Scenario::StoreOnly,
        "enqueued",
        total,
        elapsed,
        &format!(", {} tasks", clients()),
    );
    assert_eq!(store.count_queue().await.unwrap(), total as u64);
    store.close().await;
    drop(store);
    drop_database(&db).await;
}

async fn run(backend: Backend, scenario: Scenario, total: usize, client: &reqwest::Client) {
    if scenario == Scenario::StoreOnly {
        return store_only(backend, total).await;
    }
    if scenario == Scenario::Ledger {
        return ledger(backend, total).await;
    }
    let db = database(backend).await;
    let carrier_config = CarrierConfig {
        account_sid: SID.to_owned(),
        auth_token: TOKEN.to_owned(),
        // Held back for an hour when off: no callback fires while the scenario runs.
        callback_delay: if scenario.callbacks() {
            Duration::from_millis(50)
        } else {
            Duration::from_secs(3600)
        },
        inbound_url: None,
        accounts: Vec::new(),
    };
    let carrier = carrier::spawn(
        TcpListener::bind("127.0.0.1:0").await.unwrap(),
        carrier_config,
    )
    .await;
    let full = scenario == Scenario::Concurrent;
    let mut herald = Herald::start(&db.url, &carrier, full).await;
    let store = herald.state.store().clone();

    let first_request = Instant::now();
    let accepted = accept(client, &herald.base_url, total).await;
    let clients = format!(", {} clients", clients());
    if full {
        report(
            backend,
            scenario,
            "accepted",
            total,
            accepted,
            &format!("{clients}, dispatch running"),
        );
        drained(&store).await;
        report(
            backend,
            scenario,
            "dispatched",
            total,
            first_request.elapsed(),
            ", from the first request",
        );
        delivered(&store).await;
        report(
            backend,
            scenario,
            "delivered",
            total,
            first_request.elapsed(),
            ", from the first request",
        );
    } else {
        report(
            backend,
            scenario,
            "accepted",
            total,
            accepted,
            &format!("{clients}, dispatcher paused"),
        );
        let dispatch_start = Instant::now();
        herald.start_dispatcher();
        drained(&store).await;
        report(
            backend,
            scenario,
            "dispatched",
            total,
            dispatch_start.elapsed(),
            ", queue drained",
        );
        if scenario.callbacks() {
            delivered(&store).await;
            report(
                backend,
                scenario,
                "delivered",
                total,
                dispatch_start.elapsed(),
                ", callbacks applied",
            );
        }
    }
    let expect = if scenario.callbacks() {
        MessageStatus::Delivered
    } else {
        MessageStatus::Sent
    };
    check(&store, total, &[expect]).await;
    drop(store);
    if scenario.callbacks() {
        let attempts = carrier.callbacks();
        let failed = attempts.iter().filter(|c| !c.succeeded()).count();
        println!(
            "{:<8} {:<26} callbacks: {} answered 2xx, {failed} attempts failed and were retried",
            backend.name(),
            scenario.label(),
            attempts.len() - failed,
        );
    }

    carrier.shutdown().await;
    herald.stop().await;
    drop_database(&db).await;
}

fn main() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    tracing_subscriber::fmt().with_env_filter(filter).init();
    let total: usize = std::env::var("HERALD_BENCH_MESSAGES")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(20_000);
    let backends: Vec<Backend> = std::env::var("HERALD_BENCH_BACKENDS")
        .unwrap_or_else(|_| "sqlite,postgres".into())
        .split(',')
        .map(|name| match name.trim() {
            "sqlite" => Backend::Sqlite,
            "postgres" => Backend::Postgres,
            other => panic!("unknown backend `{other}` in HERALD_BENCH_BACKENDS"),
        })
        .collect();
    let scenarios: Vec<Scenario> = std::env::var("HERALD_BENCH_SCENARIOS")
        .unwrap_or_else(|_| "store-only,staged-quiet,staged-callbacks,concurrent".into())
        .split(',')
        .map(|name| match name.trim() {
            "store-only" => Scenario::StoreOnly,
            "ledger" => Scenario::Ledger,
            "staged-quiet" => Scenario::StagedQuiet,
            "staged-callbacks" => Scenario::StagedCallbacks,
            "concurrent" => Scenario::Concurrent,
            other => panic!("unknown scenario `{other}` in HERALD_BENCH_SCENARIOS"),
        })
        .collect();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let client = reqwest::Client::builder()
            .pool_max_idle_per_host(clients())
            .timeout(Duration::from_secs(60))
            .build()
            .unwrap();
        println!(
            "pipeline: {total} sends per scenario, {} HTTP clients, {} dispatch workers, {} cores",
            clients(),
            workers(),
            std::thread::available_parallelism().map_or(0, |n| n.get())
        );
        for backend in backends {
            for &scenario in &scenarios {
                run(backend, scenario, total, &client).await;
            }
        }
    });
}
