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
//! Two more run only when named in `HERALD_BENCH_SCENARIOS`: `ledger` (the ledger and a budget
//! on / off around the store's enqueue alone) and `ledger-http` (the same over `POST /send`);
//! each prints its on ÷ off ratio.
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

/// The allocator of the `herald` binary (`host/src/main.rs`), so that the figures are its.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[path = "../tests/common/mod.rs"]
mod common;
// The harness's rig; this bench uses only part of it.
#[allow(dead_code)]
#[path = "harness/rig.rs"]
mod rig;

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use herald::config::{Config, ConfigSource};
use herald::store::{MessageFilter, MessageStatus, NewMessage, Store};
use rig::{API_KEY, Backend, Callbacks, Database, Rig, TO};
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// Upper bound for any one phase (accepting, draining, waiting for callbacks).
const PHASE_TIMEOUT: Duration = Duration::from_secs(600);
/// How long stopping waits for the dispatcher and for the server before aborting them.
const STOP_GRACE: Duration = Duration::from_secs(30);

impl Backend {
    /// The backend's name in the report's first column.
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
    LedgerHttp,
    StagedQuiet,
    StagedCallbacks,
    Concurrent,
}

impl Scenario {
    fn label(self) -> &'static str {
        match self {
            Scenario::StoreOnly => "store only, no HTTP",
            Scenario::Ledger => "accept's store work, ledger and budget on / off",
            Scenario::LedgerHttp => "accept over HTTP, ledger and budget on / off",
            Scenario::StagedQuiet => "staged, callbacks off",
            Scenario::StagedCallbacks => "staged, callbacks on",
            Scenario::Concurrent => "concurrent, callbacks on",
        }
    }

    fn callbacks(self) -> bool {
        matches!(self, Scenario::StagedCallbacks | Scenario::Concurrent)
    }
}

/// The dispatcher's concurrency: `HERALD_BENCH_WORKERS`, or [`rig::WORKERS`].
fn workers() -> usize {
    std::env::var("HERALD_BENCH_WORKERS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(rig::WORKERS)
}

/// The number of concurrent clients (and store tasks): `HERALD_BENCH_CLIENTS`, or
/// [`rig::CLIENTS`].
fn clients() -> usize {
    std::env::var("HERALD_BENCH_CLIENTS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(rig::CLIENTS)
}

/// The rig's configuration with `delivery.workers` from [`workers`], for the scenarios that
/// open the store without serving or sending.
fn store_config(storage_url: &str) -> Config {
    let mut config = rig::config(storage_url, "http://127.0.0.1:9", "http://127.0.0.1:9");
    config.delivery.workers = workers();
    config
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

/// The rig's Herald and, in a staged scenario, the dispatcher started once acceptance was
/// measured.
struct Herald {
    rig: Rig,
    dispatcher: Option<(watch::Sender<bool>, JoinHandle<()>)>,
}

impl Herald {
    /// Starts Herald on an ephemeral port with `delivery.workers` from [`workers`]; `full` serves
    /// it as production does (`Herald::serve`), otherwise only its API router is served and the
    /// dispatcher waits for `start_dispatcher`.
    async fn start(storage_url: &str, carrier_url: &str, full: bool) -> Herald {
        let rig = Rig::start(storage_url, carrier_url, full, |config| {
            config.delivery.workers = workers();
        })
        .await;
        Herald {
            rig,
            dispatcher: None,
        }
    }

    fn start_dispatcher(&mut self) {
        let (stop, stopped) = watch::channel(false);
        let task = tokio::spawn(herald::pipeline::dispatch::run(
            self.rig.herald.pipeline().clone(),
            stopped,
        ));
        self.dispatcher = Some((stop, task));
    }

    /// Stops the dispatcher, then the server, giving each [`STOP_GRACE`], and closes the store.
    async fn stop(self) {
        if let Some((stop, mut task)) = self.dispatcher {
            let _ = stop.send(true);
            if tokio::time::timeout(STOP_GRACE, &mut task).await.is_err() {
                task.abort();
            }
        }
        self.rig.stop_within(STOP_GRACE).await;
    }
}

/// A message for the store-level scenarios: message `i` of a 64-task load, charged with
/// `charge` (`None`: no cost row, as before the ledger).
fn bench_message(i: usize, charge: Option<herald::store::Charge>) -> NewMessage {
    NewMessage {
        charge,
        ..rig::new_message(format!("Your Herald verification code is {i:06}."), None)
    }
}

/// The ledger scenarios' budget: monthly, hard-capped far above what a run spends, with alert
/// thresholds, so every charged send takes a reservation and checks the cap.
fn bench_budget() -> herald::pipeline::budgets::BudgetSpec {
    serde_json::from_value(serde_json::json!({
        "period": "monthly",
        "limit": {"micros": 1_000_000_000_000_i64, "currency": "USD"},
        "alert_thresholds": [50, 80, 100],
        "hard_cap": true,
    }))
    .expect("a budget")
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
    use herald::pipeline::budgets;

    let db = Database::new(backend).await;
    let config = store_config(&db.url);
    let state = herald::Herald::builder()
        .config(config)
        .source(ConfigSource::default())
        .build()
        .await
        .expect("start Herald");
    let pipeline = state.pipeline().clone();
    let tenant = herald::TenantId::default_tenant();
    budgets::put(&pipeline, &tenant, "bench", bench_budget())
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
    db.drop_now().await;
}

/// The ledger's cost on acceptance as clients see it (the issue's "accept throughput with
/// ledger and budget on vs off", target ≥ 0.85): `POST /send` over HTTP from `clients()`
/// clients, in four rounds of `total / 4` sends, alternately off and on, each round on a fresh
/// database and Herald (the dispatcher paused), so that every round starts from the same empty
/// tables.
///
/// * **on**: the shipped price table (Twilio US at 0.0083 USD per segment, which prices every
///   send here) and a hard-capped monthly budget with alert thresholds: every send is priced,
///   writes its cost row and ledger entries and takes a reservation.
/// * **off**: an empty price table and no budget: no send is priced or reserved.
async fn ledger_http(backend: Backend, total: usize, client: &reqwest::Client) {
    use herald::pipeline::budgets;

    let round = (total / 4).max(1);
    let mut rates = BTreeMap::<bool, Vec<f64>>::new();
    for on in [false, true, false, true] {
        let db = Database::new(backend).await;
        let rig = Rig::start(&db.url, "http://127.0.0.1:9", false, |config| {
            config.delivery.workers = workers();
            if !on {
                config.pricing = herald::pipeline::pricing::PriceTable { prices: Vec::new() };
            }
        })
        .await;
        let tenant = herald::TenantId::default_tenant();
        if on {
            budgets::put(rig.herald.pipeline(), &tenant, "bench", bench_budget())
                .await
                .expect("create the budget");
        }
        let elapsed = accept(client, &rig.base_url, round).await;
        let rate = round as f64 / elapsed.as_secs_f64();
        println!(
            "[{}] ledger over HTTP {}: {round} accepted in {:.2} s: {rate:.0}/s",
            backend.name(),
            if on { "on " } else { "off" },
            elapsed.as_secs_f64()
        );
        let budgets = budgets::list(rig.herald.pipeline(), &tenant).await.unwrap();
        let reserved: i64 = budgets.iter().map(|b| b.usage.reserved.micros).sum();
        let expected = if on { 8_300 * round as i64 } else { 0 };
        assert_eq!(
            reserved, expected,
            "every send with the ledger on reserved its estimate"
        );
        rates.entry(on).or_default().push(rate);
        rig.stop_within(STOP_GRACE).await;
        db.drop_now().await;
    }
    let mean = |on: bool| rates[&on].iter().sum::<f64>() / rates[&on].len() as f64;
    println!(
        "[{}] ledger and budget over HTTP on / off: {:.0}/s / {:.0}/s = {:.2} (target ≥ 0.85)",
        backend.name(),
        mean(true),
        mean(false),
        mean(true) / mean(false)
    );
}

/// Scenario 0: `Store::enqueue` called directly by `clients()` tasks, as the send handler calls it
/// (same store options as Herald's), without HTTP, JSON, validation or the opt-out read.
async fn store_only(backend: Backend, total: usize) {
    let db = Database::new(backend).await;
    let config = store_config(&db.url);
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
    db.drop_now().await;
}

async fn run(backend: Backend, scenario: Scenario, total: usize, client: &reqwest::Client) {
    if scenario == Scenario::StoreOnly {
        return store_only(backend, total).await;
    }
    if scenario == Scenario::Ledger {
        return ledger(backend, total).await;
    }
    if scenario == Scenario::LedgerHttp {
        return ledger_http(backend, total, client).await;
    }
    let db = Database::new(backend).await;
    let carrier = rig::carrier(if scenario.callbacks() {
        Callbacks::Posted
    } else {
        Callbacks::Held
    })
    .await;
    let full = scenario == Scenario::Concurrent;
    let mut herald = Herald::start(&db.url, carrier.base_url(), full).await;
    let store = herald.rig.store().clone();

    let first_request = Instant::now();
    let accepted = accept(client, &herald.rig.base_url, total).await;
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
    db.drop_now().await;
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
            "ledger-http" => Scenario::LedgerHttp,
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
