//! S5–S7: a deep queue, the plugin's cost per message, and two processes on one PostgreSQL.

use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use herald::config::Config;
use herald::plugin::Plugins;
use herald::plugin::model::{Encoding, OutboundMessage, SendOutcome};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

use crate::Plan;
use crate::native::NativeTwilio;
use crate::report::{Figure, Target};
use crate::rig::{self, Backend, Callbacks, Database, Rig, TO, bounded};
use crate::throughput::{self, Baselines};

/// The argument that makes the harness binary a dispatcher process for S7.
pub const DISPATCHER_ARG: &str = "--harness-dispatcher";

/// S5: a queue `plan.depth` deep on SQLite: resident memory growth and claim latency.
pub async fn s5(plan: &Plan) -> Vec<Figure> {
    let db = Database::new(Backend::Sqlite).await;
    let rig = Rig::start(&db.url, "http://127.0.0.1:9", false, |_| {}).await;
    let store = rig.store().clone();
    rig::prefill(&store, 1_000).await;
    let shallow = claim_latency(&store, plan.claims).await;
    let before = rig::rss_bytes();
    let peak = Arc::new(AtomicU64::new(before));
    let filling = Arc::new(AtomicBool::new(true));
    let sampler = {
        let (peak, filling) = (Arc::clone(&peak), Arc::clone(&filling));
        std::thread::spawn(move || {
            while filling.load(Ordering::Relaxed) {
                peak.fetch_max(rig::rss_bytes(), Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(20));
            }
        })
    };
    let fill = rig::prefill(&store, plan.depth - 1_000).await;
    filling.store(false, Ordering::Relaxed);
    let _ = sampler.join();
    let after = rig::rss_bytes();
    let depth = rig::depth(&store).await;
    let deep = claim_latency(&store, plan.claims).await;
    let mb = |bytes: u64| bytes.saturating_sub(before) as f64 / 1e6;
    let growth = mb(peak.load(Ordering::Relaxed).max(after));
    rig.stop().await;
    vec![
        Figure::new(
            "S5",
            &format!("RSS growth, 1k → {} queued", depth_name(plan.depth)),
            growth,
            "MB",
        )
        .target(Target::AtMost(50.0))
        .note(format!(
            "peak VmRSS during the fill minus VmRSS at 1k depth (after the fill: +{:.1} MB); \
                 {depth} queued in {:.1} s as bulk batches, SQLite",
            mb(after),
            fill.as_secs_f64()
        )),
        Figure::new(
            "S5",
            &format!("claim latency at {} depth", depth_name(plan.depth)),
            deep,
            "ms",
        )
        .against("at 1k", shallow, Target::AtMost(2.0))
        .note(format!(
            "median of {} `Store::claim`s of 32 (the dispatcher's batch), dispatcher off",
            plan.claims
        )),
    ]
}

fn depth_name(depth: usize) -> String {
    if depth >= 1_000_000 && depth.is_multiple_of(1_000_000) {
        format!("{}M", depth / 1_000_000)
    } else {
        format!("{}k", depth / 1_000)
    }
}

/// The median time, in ms, of `n` claims of 32 entries.
async fn claim_latency(store: &herald::store::Store, n: usize) -> f64 {
    let mut times = Vec::with_capacity(n);
    for _ in 0..n {
        let start = Instant::now();
        let jobs = store
            .claim(
                "harness-s5",
                herald::store::now_millis(),
                Duration::from_secs(600),
                32,
            )
            .await
            .expect("claim");
        times.push(start.elapsed().as_secs_f64() * 1e3);
        assert_eq!(jobs.len(), 32, "the queue is deep enough");
    }
    times.sort_by(f64::total_cmp);
    times[n / 2]
}

/// S6: what the plugin costs per message over the native send: per call (a fresh instance for
/// each send, one task) and per batch (the dispatch pipeline with `runtime.instance_reuse` on,
/// against the native pipeline of S0), when this build has that setting.
pub async fn s6(plan: &Plan, base: &Baselines) -> Vec<Figure> {
    let carrier = rig::carrier(Callbacks::Held).await;
    let config = rig::config("sqlite::memory:", "http://127.0.0.1:9", carrier.base_url());
    let plugins = Plugins::start(&config).await.expect("load the plugins");
    let plugin = plugins.provider().expect("the Twilio plugin");
    let native = NativeTwilio::new(carrier.base_url());
    let message = OutboundMessage {
        message_id: "msg_harness".into(),
        to: TO.into(),
        sender: None,
        body: "Your Herald verification code is 0000000.".into(),
        encoding: Encoding::Gsm7,
        segments: 1,
        status_callback: None,
        attempt: 1,
    };
    let (mut with_plugin, mut natively) = (f64::MAX, f64::MAX);
    for _ in 0..plan.rounds {
        let start = Instant::now();
        for _ in 0..plan.per_round {
            let outcome = plugin.send(&message).await;
            assert!(matches!(outcome, SendOutcome::Accepted(_)), "{outcome:?}");
        }
        with_plugin = with_plugin.min(start.elapsed().as_secs_f64() * 1e6 / plan.per_round as f64);
        let start = Instant::now();
        for _ in 0..plan.per_round {
            native.send(&message.to, &message.body, None).await;
        }
        natively = natively.min(start.elapsed().as_secs_f64() * 1e6 / plan.per_round as f64);
    }
    drop(plugins);
    carrier.shutdown().await;
    let mut figures = vec![
        Figure::new(
            "S6",
            "plugin overhead per call (fresh instance)",
            with_plugin - natively,
            "µs",
        )
        .note(format!(
            "LoadedPlugin::send {with_plugin:.1} µs − native reqwest send {natively:.1} µs, \
                 1 task, best of {} alternating rounds of {}",
            plan.rounds, plan.per_round
        )),
    ];
    figures.push(match instance_reuse(&config) {
        Err(why) => {
            Figure::not_available("S6", "plugin overhead per message, per batch", "µs", &why)
        }
        Ok(reuse) => {
            let rate = plugin_pipeline(plan, reuse).await;
            let overhead = 1e6 / rate - 1e6 / base.native;
            Figure::new(
                "S6",
                "plugin overhead per message, per batch",
                overhead,
                "µs",
            )
            .target(Target::AtMost(60.0))
            .note(format!(
                "1/{rate:.0} − 1/{:.0} per s: the dispatch pipeline with runtime.instance_reuse \
                     ({}) against the native pipeline (S0), wall-clock per message, 32 workers",
                base.native,
                reuse_value()
            ))
        }
    });
    figures
}

/// The value `runtime.instance_reuse` is set to: `HERALD_BENCH_INSTANCE_REUSE` (JSON), else
/// `"per-batch"`.
fn reuse_value() -> serde_json::Value {
    std::env::var("HERALD_BENCH_INSTANCE_REUSE")
        .ok()
        .and_then(|v| serde_json::from_str(&v).ok())
        .unwrap_or_else(|| serde_json::Value::from("per-batch"))
}

/// `config` with `runtime.instance_reuse` set, or why it cannot be: the setting is applied
/// through serde, so a build without it says so (unknown field) instead of failing to compile.
fn instance_reuse(config: &Config) -> Result<Config, String> {
    let mut value = serde_json::to_value(config).map_err(|e| e.to_string())?;
    value["runtime"]["instance_reuse"] = reuse_value();
    serde_json::from_value(value).map_err(|e| {
        format!("`runtime.instance_reuse` is not a setting of this build ({e}); per-call only")
    })
}

/// Dispatched/s through the plugin on a pre-filled SQLite queue with `config`'s runtime.
async fn plugin_pipeline(plan: &Plan, with: Config) -> f64 {
    let db = Database::new(Backend::Sqlite).await;
    let carrier = rig::carrier(Callbacks::Recorded).await;
    let rig = Rig::start(&db.url, carrier.base_url(), false, |config| {
        config.runtime = with.runtime.clone();
    })
    .await;
    rig::prefill(rig.store(), plan.prefill).await;
    let (dispatched, elapsed) = throughput::dispatch_for(&rig, plan.window).await;
    rig.stop().await;
    carrier.shutdown().await;
    dispatched as f64 / elapsed.as_secs_f64()
}

/// S7: dispatched/s from one PostgreSQL queue by one, then two Herald processes (this binary
/// started again as a dispatcher), sending to one carrier in this process.
pub async fn s7(plan: &Plan) -> Vec<Figure> {
    let db = Database::new(Backend::Postgres).await;
    let carrier = rig::carrier(Callbacks::Held).await;
    // Migrates the database; its store measures the queue's depth.
    let rig = Rig::start(&db.url, carrier.base_url(), false, |_| {}).await;
    rig::prefill(rig.store(), plan.prefill).await;
    let one = processes(&rig, &db.url, carrier.base_url(), 1, plan.window).await;
    let left = rig::depth(rig.store()).await as f64;
    let wanted = one * plan.window.as_secs_f64() * 2.5;
    if left < wanted {
        rig::prefill(rig.store(), (wanted - left) as usize).await;
    }
    let two = processes(&rig, &db.url, carrier.base_url(), 2, plan.window).await;
    rig.stop().await;
    carrier.shutdown().await;
    db.drop_now().await;
    vec![
        Figure::new(
            "S7",
            "dispatched/s, one Herald process, PostgreSQL",
            one,
            "/s",
        ),
        Figure::new("S7", "dispatched/s, two Herald processes", two, "/s")
            .against("one process", one, Target::AtLeast(1.6))
            .note(
                "separate processes (this binary re-run as a dispatcher), 32 workers each, one \
                   shared PostgreSQL queue; the carrier and PostgreSQL share the same 2 cores",
            ),
    ]
}

/// Runs `count` dispatcher processes on the queue for `window` once all are ready; returns the
/// rate at which the queue shrank.
async fn processes(rig: &Rig, url: &str, carrier_url: &str, count: usize, window: Duration) -> f64 {
    let exe = std::env::current_exe().expect("this binary's path");
    let mut children: Vec<Child> = Vec::new();
    for _ in 0..count {
        let mut child = Command::new(&exe)
            .args([DISPATCHER_ARG, url, carrier_url])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("start a dispatcher process");
        let stdout = child.stdout.take().expect("its stdout");
        let mut line = String::new();
        bounded("a dispatcher process starting", async {
            BufReader::new(stdout).read_line(&mut line).await
        })
        .await
        .expect("read its first line");
        assert_eq!(line.trim(), "ready", "the dispatcher process started");
        children.push(child);
    }
    let initial = rig::depth(rig.store()).await;
    let start = Instant::now();
    tokio::time::sleep(window).await;
    let left = rig::depth(rig.store()).await;
    let elapsed = start.elapsed();
    for mut child in children {
        // Closing stdin asks it to stop; it finishes its attempts in flight.
        drop(child.stdin.take());
        if tokio::time::timeout(Duration::from_secs(15), child.wait())
            .await
            .is_err()
        {
            let _ = child.kill().await;
        }
    }
    assert!(left > 0, "the queue did not run dry during the window");
    (initial - left) as f64 / elapsed.as_secs_f64()
}

/// The dispatcher process of S7: Herald on `url` sending to `carrier_url`, dispatching until
/// its stdin closes.
pub async fn dispatcher_process(url: &str, carrier_url: &str) {
    let config = rig::config(url, "http://127.0.0.1:9", carrier_url);
    let herald = herald::Herald::builder()
        .config(config)
        .source(herald::config::ConfigSource::default())
        .build()
        .await
        .expect("start Herald");
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let dispatcher = tokio::spawn(herald::pipeline::dispatch::run(
        herald.pipeline().clone(),
        stopped,
    ));
    println!("ready");
    let mut stdin = BufReader::new(tokio::io::stdin());
    let mut line = String::new();
    while stdin.read_line(&mut line).await.is_ok_and(|n| n > 0) {
        line.clear();
    }
    let _ = stop.send(true);
    let _ = dispatcher.await;
    herald.close().await;
}
