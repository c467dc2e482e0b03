//! The benchmark harness of issue 11: every scenario of the table in one run, each
//! figure next to its baseline from the same run and its target, written as JSON.
//!
//! | # | scenario | target |
//! |---|---|---|
//! | S0 | baselines: `fdatasync`/s of the data directory's disk; `GET /healthz`/s of the same Herald under the same client; the dispatch pipeline with a native provider ([`native`]) | — |
//! | S1 | accepted sends/s over HTTP, 64 clients, SQLite (WAL, `synchronous = NORMAL`), dispatcher off | ≥ 3,000/s and ≥ 0.15 × `/healthz`; ratio to `fdatasync` reported |
//! | S1-pg | the same on PostgreSQL | ≥ 2,000/s |
//! | S1-all | S1 with `Herald::serve` (dispatcher) and the carrier posting callbacks, sends offered at 2,100/s | ≥ 2,000/s accepted; delivered ≥ 0.95 × accepted over the second half of the window |
//! | S2 | dispatched/s through the Twilio plugin, callbacks held back | ≥ 2,000/s; ≥ 0.8 × the native pipeline |
//! | S3 | the S2 messages' signed status callbacks, replayed by 64 clients | ≥ 3 × S2 |
//! | S4 | request → the carrier receives, paced at half of S2's rate | p50 ≤ 5 ms, p99 ≤ 25 ms |
//! | S5 | a queue 1,000,000 deep (SQLite) | RSS growth ≤ 50 MB; claim latency ≤ 2 × at 1k |
//! | S6 | plugin overhead per message over the native send | per batch ≤ 60 µs (with `runtime.instance_reuse`); per call reported |
//! | S7 | two dispatcher processes on one PostgreSQL queue | ≥ 1.6 × one process |
//!
//! Everything but S7's dispatchers runs in this process on 127.0.0.1 and shares the machine's
//! cores: the local Twilio-compatible carrier (`herald_testkit::carrier`), Herald (32 dispatch
//! workers), the load generator (64 keep-alive clients) and, for PostgreSQL, the server. Every
//! scenario gets a fresh database and carrier and is bounded by its time window; the run takes
//! about 5 minutes (`--quick`: about 60 s, the same scenarios with 3-second windows and a
//! 50,000-deep queue for S5).
//!
//! A figure is `pass` (target met), `MISS` (missed by less than a factor of two), `FAIL`
//! (below half an at-least target, or above twice an at-most one) or for information. With
//! `--quick` the process exits non-zero when a figure FAILs: a gross regression. A scenario that
//! panics is recorded as a FAIL with its message, and the rest still run.
//!
//! Arguments: `--quick`; `--out PATH` (default `target/bench/results.json`, or
//! `HERALD_BENCH_RESULTS`); `--only S2,S3` (scenarios to run). Environment:
//! `HERALD_TEST_POSTGRES` (default `postgres://postgres@127.0.0.1:5432/test`),
//! `HERALD_BENCH_INSTANCE_REUSE` (the JSON value S6 sets `runtime.instance_reuse` to, default
//! `"per-batch"`), `RUST_LOG` (default `warn,sqlx::query=error`). Needs `target/plugins/twilio.wasm`.
//!
//! Run with: `cargo xtask bench` (or `cargo xtask bench --quick`).
#![allow(clippy::unwrap_used, clippy::expect_used)]

/// The allocator of the `herald` binary (`host/src/main.rs`), so that the figures are its.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[path = "../tests/common/mod.rs"]
mod common;
#[path = "harness/native.rs"]
mod native;
#[path = "harness/report.rs"]
mod report;
#[path = "harness/rig.rs"]
mod rig;
#[path = "harness/scale.rs"]
mod scale;
#[path = "harness/throughput.rs"]
mod throughput;

use std::future::Future;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use report::{Figure, Run};
use rig::Backend;
use throughput::Baselines;

/// How long and how large the scenarios are.
pub struct Plan {
    /// Each scenario's measuring window.
    pub window: Duration,
    /// Messages queued before a dispatch scenario (more than its window drains).
    pub prefill: usize,
    /// S5's queue depth.
    pub depth: usize,
    /// S5's claims at each depth.
    pub claims: usize,
    /// S6's rounds (plugin and native alternating).
    pub rounds: usize,
    /// S6's sends per round.
    pub per_round: usize,
}

impl Plan {
    fn full() -> Plan {
        Plan {
            window: Duration::from_secs(20),
            prefill: 80_000,
            depth: 1_000_000,
            claims: 25,
            rounds: 5,
            per_round: 1_000,
        }
    }

    fn quick() -> Plan {
        Plan {
            window: Duration::from_secs(3),
            prefill: 12_000,
            depth: 50_000,
            claims: 15,
            rounds: 3,
            per_round: 200,
        }
    }
}

/// Runs one scenario; a panic becomes a FAIL figure naming it, so the run goes on.
async fn scenario<F>(id: &'static str, figures: &mut Vec<Figure>, run: F)
where
    F: Future<Output = Vec<Figure>>,
{
    let start = Instant::now();
    eprintln!("harness: {id} …");
    // The scenarios borrow the plan and the baselines, so they are polled here rather than
    // spawned; `catch_unwind` keeps a panicking one from ending the run.
    let result = futures_util::FutureExt::catch_unwind(std::panic::AssertUnwindSafe(run)).await;
    match result {
        Ok(found) => {
            for f in &found {
                eprintln!(
                    "harness: {id} {}: {}",
                    f.name,
                    f.value.map_or_else(|| "n/a".to_owned(), report::number)
                );
            }
            figures.extend(found);
        }
        Err(panic) => {
            let why = panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| (*s).to_owned()))
                .unwrap_or_else(|| "a panic".into());
            let mut failed = Figure::new(id, "scenario failed to run", f64::NAN, "");
            failed.value = None;
            failed.verdict = report::Verdict::Fail;
            failed.note = why;
            figures.push(failed);
        }
    }
    eprintln!("harness: {id} took {:.1} s", start.elapsed().as_secs_f64());
}

fn main() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        // sqlx's slow-statement warnings would flood a saturated run's output.
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn,sqlx::query=error"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
    let args: Vec<String> = std::env::args().skip(1).collect();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    if args.first().map(String::as_str) == Some(scale::DISPATCHER_ARG) {
        return runtime.block_on(scale::dispatcher_process(&args[1], &args[2]));
    }
    let quick = args.iter().any(|a| a == "--quick");
    let value = |flag: &str| {
        args.iter()
            .position(|a| a == flag)
            .and_then(|i| args.get(i + 1))
            .cloned()
    };
    let out = value("--out")
        .or_else(|| std::env::var("HERALD_BENCH_RESULTS").ok())
        .map_or_else(
            || common::root().join("target/bench/results.json"),
            PathBuf::from,
        );
    let only: Option<Vec<String>> =
        value("--only").map(|s| s.split(',').map(|id| id.trim().to_uppercase()).collect());
    let wanted = |id: &str| only.as_ref().is_none_or(|o| o.iter().any(|w| w == id));
    let plan = if quick { Plan::quick() } else { Plan::full() };

    let started_at = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let load_average = std::fs::read_to_string("/proc/loadavg")
        .unwrap_or_default()
        .split_whitespace()
        .take(3)
        .collect::<Vec<_>>()
        .join(" ");
    let start = Instant::now();
    let figures = runtime.block_on(async {
        let mut figures = Vec::new();
        let mut base = Baselines::default();
        if wanted("S0") || wanted("S2") || wanted("S6") {
            scenario("S0", &mut figures, throughput::s0(&plan, &mut base)).await;
        }
        if wanted("S1") || wanted("S0") {
            scenario(
                "S1",
                &mut figures,
                throughput::s1(&plan, &mut base, Backend::Sqlite),
            )
            .await;
        }
        if wanted("S1-PG") {
            scenario(
                "S1-pg",
                &mut figures,
                throughput::s1(&plan, &mut base, Backend::Postgres),
            )
            .await;
        }
        if wanted("S1-ALL") {
            scenario("S1-all", &mut figures, throughput::s1_all(&plan)).await;
        }
        if wanted("S2") || wanted("S3") || wanted("S4") {
            scenario("S2", &mut figures, throughput::s2_s3(&plan, &mut base)).await;
        }
        if wanted("S4") {
            scenario("S4", &mut figures, throughput::s4(&plan, &base)).await;
        }
        if wanted("S5") {
            scenario("S5", &mut figures, scale::s5(&plan)).await;
        }
        if wanted("S6") {
            scenario("S6", &mut figures, scale::s6(&plan, &base)).await;
        }
        if wanted("S7") {
            scenario("S7", &mut figures, scale::s7(&plan)).await;
        }
        figures
    });
    let run = Run {
        mode: if quick { "quick" } else { "full" },
        profile: if cfg!(debug_assertions) {
            "dev"
        } else {
            "release"
        },
        started_at,
        seconds: start.elapsed().as_secs_f64(),
        cpus: std::thread::available_parallelism().map_or(0, |n| n.get()),
        load_average,
        figures,
    };
    if let Err(e) = run.write(&out) {
        eprintln!("harness: could not write {}: {e}", out.display());
        std::process::exit(2);
    }
    println!(
        "\nHerald benchmark harness ({} run, {} profile, {:.0} s, {} CPUs, load {}): {}\n",
        run.mode,
        run.profile,
        run.seconds,
        run.cpus,
        run.load_average,
        out.display()
    );
    print!("{}", run.table());
    let failures = run.gross_failures();
    if quick && !failures.is_empty() {
        println!(
            "\n{} figure(s) below half their target: {}",
            failures.len(),
            failures
                .iter()
                .map(|f| format!("{} {}", f.scenario, f.name))
                .collect::<Vec<_>>()
                .join("; ")
        );
        std::process::exit(1);
    }
}
