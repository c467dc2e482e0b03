//! What a call into a plugin costs, through the same runtime Herald serves with.
//!
//! 1. **Warm call**: one live instance of the probe plugin, `describe` (and `send`, which the probe
//!    answers without HTTP) called over and over, bare: the floor of the host↔guest boundary.
//! 2. **Fresh pooled instance per call**, which is what Herald does for every call: `Store::new`
//!    alone, then + instantiate, then + `describe`, built from the public pieces exactly as
//!    `Plugins::start` and `LoadedPlugin::new_store` build them; then the runtime's own path,
//!    `LoadedPlugin::send` of the probe (store, instance, limits, deadline, conversions), one task
//!    and 8 concurrent tasks; and the same sends through a reuse `Session`
//!    (`runtime.instance_reuse = "per-batch"`, N = 32), which keeps one instance for 32 sends.
//! 3. **Twilio**: the Twilio plugin's `send` through the runtime against the local
//!    Twilio-compatible carrier, versus the same request (same form, Basic auth, headers, JSON
//!    parse of the answer) made natively with reqwest. The difference is what the plugin costs per
//!    message; a fresh Twilio instance alone and a warm Twilio send show where it goes. Plugin
//!    sends are measured per-call and per-batch (a `Session`, N = 32).
//!
//! Every figure is the best of 5 rounds, a round's figure being its mean per call; the worst round
//! is printed too, because a shared VM varies by 30–50 % from run to run. Twilio rounds alternate
//! plugin and native, and a fresh carrier is started every 250 messages (see `PER_CARRIER`).
//!
//! Needs `target/plugins/{probe,twilio}.wasm` (`cargo xtask build-plugins`).
//!
//! Run with: `cargo bench -p herald --bench plugin_calls`
#![allow(clippy::unwrap_used, clippy::expect_used)]

/// The allocator of the `herald` binary (`host/src/main.rs`), so that the figures are its.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::collections::BTreeMap;
use std::hint::black_box;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};

use base64::Engine as _;
use herald::config::{Config, PluginConfig, RoutingConfig, RuntimeConfig};
use herald::plugin::bindings::v0_2_0::provider::ProviderPre;
use herald::plugin::bindings::{self, v0_2_0};
use herald::plugin::egress::Egress;
use herald::plugin::engine::PluginEngine;
use herald::plugin::host::{HostState, HttpGrant, Redactor};
use herald::plugin::model::{Encoding, OutboundMessage, SendOutcome};
use herald::plugin::reuse::{ReuseLimits, Session};
use herald::plugin::{LoadedPlugin, Plugins};
use herald_testkit::carrier::{self, Carrier, CarrierConfig};
use wasmtime::{Store, UpdateDeadline};

const ROUNDS: usize = 5;
const WARM_N: usize = 20_000;
const FRESH_N: usize = 2_000;
const HTTP_N: usize = 2_000;
const TASKS: usize = 8;
/// Messages one carrier serves before the next replaces it: the carrier finds a message by scanning
/// every message it has seen (tens of ns each), which would otherwise grow into the figures.
const PER_CARRIER: usize = 250;
const SID: &str = "AC0123456789abcdef0123456789abcdef";
const TOKEN: &str = "bench-auth-token-0123456789";
const FROM: &str = "+15005550006";

/// The mean µs per evaluation of `$body` over `$n` evaluations: one round.
macro_rules! round {
    ($n:expr, $body:expr) => {{
        let start = Instant::now();
        for _ in 0..$n {
            black_box($body);
        }
        start.elapsed().as_secs_f64() * 1e6 / $n as f64
    }};
}

/// `ROUNDS` rounds of `$body`, after a warm-up of a tenth of a round.
macro_rules! rounds {
    ($n:expr, $body:expr) => {{
        let _warm_up = round!($n / 10, $body);
        let mut results = Vec::with_capacity(ROUNDS);
        for _ in 0..ROUNDS {
            results.push(round!($n, $body));
        }
        results
    }};
}

/// The best and the worst round.
fn span(rounds: &[f64]) -> (f64, f64) {
    let best = rounds.iter().copied().fold(f64::INFINITY, f64::min);
    (best, rounds.iter().copied().fold(0.0, f64::max))
}

fn latency(label: &str, rounds: &[f64], n: usize) {
    let (best, worst) = span(rounds);
    println!(
        "{label:<52} {best:>8.2} µs/call  (best of {ROUNDS} rounds of {n}; worst round {worst:.2})"
    );
}

fn throughput(label: &str, tasks: usize, rounds: &[f64], n: usize) {
    let (best, worst) = span(rounds);
    let (best, worst) = (1e6 / best, 1e6 / worst);
    let label = format!("{label}, {tasks} tasks");
    println!(
        "{label:<52} {best:>8.0} msg/s    (best of {ROUNDS} rounds of {n}; worst round {worst:.0})"
    );
}

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn plugin_settings(name: &str) -> PluginConfig {
    let path = root().join("target/plugins").join(format!("{name}.wasm"));
    assert!(
        path.exists(),
        "{} is missing: build the plugins with `cargo xtask build-plugins`",
        path.display()
    );
    PluginConfig {
        path: Some(path),
        ..PluginConfig::default()
    }
}

fn config(name: &str, settings: PluginConfig) -> Config {
    Config {
        runtime: RuntimeConfig {
            cache_dir: root().join("target/herald-cache"),
            artifact_key_file: root().join("target/herald-artifact.key"),
            plugin_dir: root().join("target/plugins"),
            max_instances: 32,
            watch: false,
            ..RuntimeConfig::default()
        },
        routing: RoutingConfig {
            provider: name.into(),
            renderer: String::new(),
        },
        plugins: BTreeMap::from([(name.to_string(), settings)]),
        ..Config::default()
    }
}

fn message() -> OutboundMessage {
    OutboundMessage {
        message_id: "msg_bench".into(),
        to: "+14155552671".into(),
        sender: None,
        body: "Hello from Herald".into(),
        encoding: Encoding::Gsm7,
        segments: 1,
        status_callback: None,
        attempt: 1,
    }
}

/// An engine and instantiation handle for a provider, linked as `Plugins::start` links them.
fn provider_pre(name: &str) -> (PluginEngine, ProviderPre<HostState>) {
    let engine = PluginEngine::new(
        32,
        64 << 20,
        root().join("target/herald-cache"),
        herald::plugin::engine::artifact_key(&root().join("target/herald-artifact.key")),
    )
    .unwrap();
    let wasm = std::fs::read(plugin_settings(name).path.unwrap()).unwrap();
    let (component, _hash) = engine.component(&wasm).unwrap();
    let linker = bindings::provider_linker(engine.engine()).unwrap();
    let pre = ProviderPre::new(linker.instantiate_pre(&component).unwrap()).unwrap();
    (engine, pre)
}

/// A store as `LoadedPlugin::new_store` makes one: memory limiter, epoch deadline with yields.
fn new_store(engine: &PluginEngine, grant: Option<Arc<HttpGrant>>) -> Store<HostState> {
    let state = HostState::new(
        Arc::from("bench"),
        32 << 20,
        grant,
        Arc::new(Redactor::default()),
        Arc::new(AtomicBool::new(false)),
    );
    let mut store = Store::new(engine.engine(), state);
    store.limiter(|s| &mut s.limits);
    store.set_epoch_deadline(1);
    store.epoch_deadline_callback(|_| Ok(UpdateDeadline::Yield(1)));
    store
}

/// A fresh store and instance, one `describe`, and both dropped.
async fn fresh_describe(
    engine: &PluginEngine,
    pre: &ProviderPre<HostState>,
) -> v0_2_0::types::PluginInfo {
    let mut store = new_store(engine, None);
    let instance = pre.instantiate_async(&mut store).await.unwrap();
    let api = instance.herald_plugin_provider_api();
    api.call_describe(&mut store).await.unwrap()
}

/// Reuse as the dispatcher does it by default: up to 32 sends per instance within a second.
const PER_BATCH: Option<ReuseLimits> = Some(ReuseLimits {
    max_calls: 32,
    max_age: Duration::from_secs(1),
});

/// Sends one message either through a provider plugin or natively, the way the Twilio plugin
/// would make the request. Plugin sends go through a [`Session`] under `reuse` (each task has its
/// own, as each dispatcher task has); `None` is a fresh instance per send.
#[derive(Clone)]
struct Sender {
    plugin: Option<Arc<LoadedPlugin>>,
    reuse: Option<ReuseLimits>,
    client: reqwest::Client,
    url: String,
}

impl Sender {
    async fn send(&self, session: &mut Session, message: &OutboundMessage) {
        match &self.plugin {
            Some(plugin) => {
                let outcome = session.send("ten_bench", plugin, message).await;
                assert!(matches!(outcome, SendOutcome::Accepted(_)), "{outcome:?}");
            }
            None => drop(black_box(
                native_send(&self.client, &self.url, message).await,
            )),
        }
    }
}

/// The Twilio plugin's request, made natively: form, Basic auth and headers built per message,
/// the JSON answer parsed for the message SID.
async fn native_send(client: &reqwest::Client, url: &str, message: &OutboundMessage) -> String {
    let form = [
        ("To", message.to.as_str()),
        ("From", FROM),
        ("Body", message.body.as_str()),
    ];
    let body = serde_urlencoded::to_string(form).unwrap();
    let basic = base64::engine::general_purpose::STANDARD.encode(format!("{SID}:{TOKEN}"));
    let response = client
        .post(url)
        .timeout(Duration::from_millis(2_000))
        .header("Content-Type", "application/x-www-form-urlencoded")
        .header("Accept", "application/json")
        .header("Authorization", format!("Basic {basic}"))
        .header("User-Agent", "herald-twilio/0.1.0")
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 201);
    let json: serde_json::Value = serde_json::from_slice(&response.bytes().await.unwrap()).unwrap();
    json["sid"].as_str().unwrap().to_string()
}

/// Mean µs of wall-clock time per message, `tasks` tasks each sending `per_task` messages.
async fn run_tasks(sender: &Sender, tasks: usize, per_task: usize) -> f64 {
    let start = Instant::now();
    let handles: Vec<_> = (0..tasks)
        .map(|_| {
            let sender = sender.clone();
            tokio::spawn(async move {
                let message = message();
                let mut session = Session::new(sender.reuse);
                for _ in 0..per_task {
                    sender.send(&mut session, &message).await;
                }
            })
        })
        .collect();
    for handle in handles {
        handle.await.unwrap();
    }
    start.elapsed().as_secs_f64() * 1e6 / (tasks * per_task) as f64
}

/// A carrier whose status lifecycle never advances during the benchmark.
async fn start_carrier() -> Carrier {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let config = CarrierConfig {
        callback_delay: Duration::from_secs(3_600),
        ..CarrierConfig::new(SID, TOKEN)
    };
    carrier::spawn(listener, config).await
}

fn twilio_config(carrier: &Carrier) -> BTreeMap<String, String> {
    BTreeMap::from([
        ("account_sid".to_string(), SID.to_string()),
        ("auth_token".to_string(), TOKEN.to_string()),
        ("from".to_string(), FROM.to_string()),
        ("base_url".to_string(), carrier.base_url().to_string()),
    ])
}

/// Where the Twilio plugin's time goes: a fresh instance, and a warm send over HTTP against the
/// same request made natively.
async fn twilio_parts(client: &reqwest::Client) {
    let (engine, pre) = provider_pre("twilio");
    let r = rounds!(FRESH_N, fresh_describe(&engine, &pre).await);
    latency("twilio: store + instantiate + describe + drop", &r, FRESH_N);
    // A grant is scheme, host and port, so the plugin's carriers are started up front and each
    // granted; the native side starts its own as before.
    let mut carriers = Vec::new();
    for _ in 0..ROUNDS * (HTTP_N / PER_CARRIER) {
        carriers.push(start_carrier().await);
    }
    let grants: Vec<String> = carriers.iter().map(|c| c.base_url().to_string()).collect();
    let mut carriers = carriers.into_iter();
    let grant = HttpGrant {
        client: client.clone(),
        rules: Egress::parse(&grants).unwrap(),
        timeout: Duration::from_millis(2_000),
        max_response_bytes: 1 << 20,
    };
    let mut store = new_store(&engine, Some(Arc::new(grant)));
    let instance = pre.instantiate_async(&mut store).await.unwrap();
    let api = instance.herald_plugin_provider_api();
    let wire = v0_2_0::outbound(&message());
    let (mut warm, mut native) = (Vec::new(), Vec::new());
    for _ in 0..ROUNDS {
        let (mut w, mut n) = (0.0, 0.0);
        for _ in 0..HTTP_N / PER_CARRIER {
            let carrier = carriers.next().unwrap();
            let settings: Vec<_> = twilio_config(&carrier).into_iter().collect();
            let mut send = async || {
                let outcome = api.call_send(&mut store, &settings, &wire).await;
                assert!(matches!(outcome, Ok(Ok(_))), "{outcome:?}");
            };
            let _warm_up = round!(2, send().await);
            w += round!(PER_CARRIER, send().await);
            let (carrier, message) = (start_carrier().await, message());
            let url = carrier.messages_url();
            let _warm_up = round!(2, native_send(client, &url, &message).await);
            n += round!(PER_CARRIER, native_send(client, &url, &message).await);
        }
        warm.push(w / (HTTP_N / PER_CARRIER) as f64);
        native.push(n / (HTTP_N / PER_CARRIER) as f64);
    }
    latency("twilio: warm send over HTTP, one instance", &warm, HTTP_N);
    latency("native reqwest send, same rounds", &native, HTTP_N);
    let overhead = span(&warm).0 - span(&native).0;
    println!(
        "{:<52} {overhead:>8.2} µs/msg   (best − best)\n",
        "warm overhead (guest work + host HTTP import)"
    );
}

/// One round of Twilio sends, through the plugin or natively, on fresh carriers.
async fn twilio_round(
    plugin: bool,
    reuse: Option<ReuseLimits>,
    client: &reqwest::Client,
    tasks: usize,
    n: usize,
) -> f64 {
    let mut sum = 0.0;
    for _ in 0..n / PER_CARRIER {
        let carrier = start_carrier().await;
        let mut plugins = None;
        if plugin {
            let mut settings = plugin_settings("twilio");
            settings.allowed_hosts = vec![carrier.base_url().trim_start_matches("http://").into()];
            settings.http_timeout_ms = 2_000;
            settings.config = twilio_config(&carrier);
            plugins = Some(Plugins::start(&config("twilio", settings)).await.unwrap());
        }
        let sender = Sender {
            plugin: plugins.as_ref().map(|p| p.provider().unwrap()),
            reuse,
            client: client.clone(),
            url: carrier.messages_url(),
        };
        run_tasks(&sender, tasks, 2).await; // opens the connections
        sum += run_tasks(&sender, tasks, PER_CARRIER / tasks).await;
    }
    sum / (n / PER_CARRIER) as f64
}

/// Rounds alternating plugin per-call, plugin per-batch and native, so drift in the machine's
/// speed hits all alike.
async fn twilio_rounds(client: &reqwest::Client, tasks: usize) -> [Vec<f64>; 3] {
    let [mut per_call, mut per_batch, mut native] = [Vec::new(), Vec::new(), Vec::new()];
    for _ in 0..ROUNDS {
        per_call.push(twilio_round(true, None, client, tasks, HTTP_N).await);
        per_batch.push(twilio_round(true, PER_BATCH, client, tasks, HTTP_N).await);
        native.push(twilio_round(false, None, client, tasks, HTTP_N).await);
    }
    [per_call, per_batch, native]
}

/// Prints the plugin's overhead per message over native: best − best, and the per-round pairs.
fn overhead(label: &str, plugin: &[f64], native: &[f64]) {
    let paired: Vec<f64> = plugin.iter().zip(native).map(|(p, n)| p - n).collect();
    let (low, high) = span(&paired);
    let overhead = span(plugin).0 - span(native).0;
    println!(
        "{label:<52} {overhead:>8.2} µs/msg   (best − best; per-round pairs {low:.1} to {high:.1})"
    );
}

#[tokio::main]
async fn main() {
    let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
    println!("plugin_calls: {cpus} CPUs, tokio multi-thread runtime; figures are means per call\n");

    println!("1. warm call (one instance, reused)");
    let (engine, pre) = provider_pre("probe");
    let mut store = new_store(&engine, None);
    let instance = pre.instantiate_async(&mut store).await.unwrap();
    let api = instance.herald_plugin_provider_api();
    let r = rounds!(WARM_N, api.call_describe(&mut store).await.unwrap());
    latency("warm call (describe, probe)", &r, WARM_N);
    let settings: Vec<(String, String)> = Vec::new();
    let wire = v0_2_0::outbound(&message());
    let r = rounds!(
        WARM_N,
        api.call_send(&mut store, &settings, &wire)
            .await
            .unwrap()
            .unwrap()
    );
    latency("warm call (send, probe, no HTTP)", &r, WARM_N);
    drop(store);

    println!("\n2. fresh pooled instance per call (what Herald does)");
    let r = rounds!(FRESH_N, new_store(&engine, None));
    latency("Store::new + drop", &r, FRESH_N);
    let r = rounds!(FRESH_N, {
        let mut store = new_store(&engine, None);
        pre.instantiate_async(&mut store).await.unwrap();
    });
    latency("store + instantiate + drop", &r, FRESH_N);
    let r = rounds!(FRESH_N, fresh_describe(&engine, &pre).await);
    latency("store + instantiate + describe + drop", &r, FRESH_N);
    let plugins = Plugins::start(&config("probe", plugin_settings("probe")))
        .await
        .unwrap();
    let mut probe = Sender {
        plugin: Some(plugins.provider().unwrap()),
        reuse: None,
        client: reqwest::Client::new(),
        url: String::new(),
    };
    run_tasks(&probe, 1, FRESH_N / 10).await;
    let [mut one, mut many, mut one_batch, mut many_batch] =
        [Vec::new(), Vec::new(), Vec::new(), Vec::new()];
    for _ in 0..ROUNDS {
        probe.reuse = None;
        one.push(run_tasks(&probe, 1, FRESH_N).await);
        many.push(run_tasks(&probe, TASKS, FRESH_N / TASKS).await);
        probe.reuse = PER_BATCH;
        one_batch.push(run_tasks(&probe, 1, FRESH_N).await);
        many_batch.push(run_tasks(&probe, TASKS, FRESH_N / TASKS).await);
    }
    latency("LoadedPlugin::send, probe (no HTTP), 1 task", &one, FRESH_N);
    throughput("LoadedPlugin::send, probe (no HTTP)", TASKS, &many, FRESH_N);
    latency(
        "per-batch Session::send, probe, 1 task",
        &one_batch,
        FRESH_N,
    );
    throughput(
        "per-batch Session::send, probe",
        TASKS,
        &many_batch,
        FRESH_N,
    );
    drop(plugins);

    println!("\n3. Twilio send against the local carrier: plugin vs native reqwest");
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    twilio_parts(&client).await;
    let [per_call, per_batch, native] = twilio_rounds(&client, 1).await;
    latency("twilio plugin send, per-call, 1 task", &per_call, HTTP_N);
    latency(
        "twilio plugin send, per-batch (N = 32), 1 task",
        &per_batch,
        HTTP_N,
    );
    latency("native reqwest send, 1 task", &native, HTTP_N);
    overhead(
        "plugin overhead per message, per-call, 1 task",
        &per_call,
        &native,
    );
    overhead(
        "plugin overhead per message, per-batch, 1 task",
        &per_batch,
        &native,
    );
    let [per_call, per_batch, native] = twilio_rounds(&client, TASKS).await;
    throughput("twilio plugin send, per-call", TASKS, &per_call, HTTP_N);
    throughput("twilio plugin send, per-batch", TASKS, &per_batch, HTTP_N);
    throughput("native reqwest send", TASKS, &native, HTTP_N);
    for (label, plugin) in [("per-call", &per_call), ("per-batch", &per_batch)] {
        let overhead = span(plugin).0 - span(&native).0;
        println!(
            "{:<52} {overhead:>8.2} µs/msg   (wall-clock per message, best − best)",
            format!("plugin overhead per message, {label}, {TASKS} tasks")
        );
    }
}
