//! S0–S4: the baselines, acceptance, dispatch, status callbacks and latency.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use herald::pipeline::dispatch;
use herald_testkit::carrier::RecordedCallback;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::Plan;
use crate::native::{self, NativeTwilio};
use crate::report::{Figure, Target};
use crate::rig::{self, Backend, CLIENTS, Callbacks, Database, Rig, bounded};

/// How the SQLite store commits, for the figures' notes (`store::sqlite` sets it).
pub const SQLITE_MODE: &str = "SQLite WAL, synchronous = NORMAL";

/// Figures later scenarios compare with.
#[derive(Default)]
pub struct Baselines {
    /// S0: `fdatasync`/s of the data directory's disk.
    pub fdatasync: f64,
    /// S0: `GET /healthz`/s.
    pub healthz: f64,
    /// S0: dispatched/s with the native provider.
    pub native: f64,
    /// S2: dispatched/s through the Twilio plugin.
    pub plugin: f64,
}

/// Herald's dispatcher, started and stopped on its own (the rig's API keeps serving).
struct Dispatcher {
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl Dispatcher {
    fn start(rig: &Rig) -> Dispatcher {
        let (stop, stopped) = watch::channel(false);
        let task = tokio::spawn(dispatch::run(rig.herald.pipeline().clone(), stopped));
        Dispatcher { stop, task }
    }

    async fn stop(self) {
        let _ = self.stop.send(true);
        let mut task = self.task;
        if tokio::time::timeout(Duration::from_secs(10), &mut task)
            .await
            .is_err()
        {
            task.abort();
        }
    }
}

/// S0: the disk's `fdatasync` rate and, on a fresh SQLite store, the native-provider pipeline.
pub async fn s0(plan: &Plan, base: &mut Baselines) -> Vec<Figure> {
    let fsync_window = plan.window.min(Duration::from_secs(5));
    base.fdatasync = tokio::task::spawn_blocking(move || rig::fdatasync_rate(fsync_window))
        .await
        .expect("the fdatasync probe");
    let db = Database::new(Backend::Sqlite).await;
    let carrier = rig::carrier(Callbacks::Recorded).await;
    let rig = Rig::start(&db.url, carrier.base_url(), false, |_| {}).await;
    rig::prefill(rig.store(), plan.prefill).await;
    let native = NativeTwilio::new(carrier.base_url());
    let (sent, elapsed) = native::dispatch(rig.herald.pipeline(), &native, plan.window).await;
    base.native = sent as f64 / elapsed.as_secs_f64();
    rig.stop().await;
    carrier.shutdown().await;
    vec![
        Figure::new(
            "S0",
            "fdatasync/s (4 KiB write + fdatasync)",
            base.fdatasync,
            "/s",
        )
        .note("the system temporary directory's disk, where the SQLite scenarios keep their files"),
        Figure::new(
            "S0",
            "dispatched/s, native provider (SQLite)",
            base.native,
            "/s",
        )
        .note(format!(
            "claim → opt-out check → reqwest send (the plugin's wire request) → complete_accepted, \
             32 workers, driven by the harness; {sent} in {:.1} s",
            elapsed.as_secs_f64()
        )),
    ]
}

/// S0 `/healthz`, then S1: accepted sends/s over HTTP, 64 clients, dispatcher off.
pub async fn s1(plan: &Plan, base: &mut Baselines, backend: Backend) -> Vec<Figure> {
    let db = Database::new(backend).await;
    let carrier = rig::carrier(Callbacks::Held).await;
    let rig = Rig::start(&db.url, carrier.base_url(), false, |_| {}).await;
    let client = rig::http_client();
    let mut figures = Vec::new();
    if backend == Backend::Sqlite {
        let (client, url) = (client.clone(), format!("{}/healthz", rig.base_url));
        let (n, elapsed) = rig::closed_loop(CLIENTS, plan.window, move |_| {
            let (client, url) = (client.clone(), url.clone());
            async move {
                let response = client.get(&url).send().await.expect("healthz");
                assert!(response.status().is_success(), "healthz answered");
                response.bytes().await.expect("healthz body");
                true
            }
        })
        .await;
        base.healthz = n as f64 / elapsed.as_secs_f64();
        figures.push(
            Figure::new("S0", "GET /healthz/s (64 clients)", base.healthz, "/s")
                .note("the same Herald and client as S1: the HTTP framework's ceiling"),
        );
    }
    let (n, elapsed) = accept(&client, &rig.base_url, plan.window, None, None).await;
    let rate = n as f64 / elapsed.as_secs_f64();
    let note = format!(
        "{n} in {:.1} s, 64 clients, dispatcher off, each 202 after the commit",
        elapsed.as_secs_f64()
    );
    match backend {
        Backend::Sqlite => {
            let name = "accepted/s over HTTP, SQLite";
            figures.push(
                Figure::new("S1", name, rate, "/s")
                    .target(Target::AtLeast(3_000.0))
                    .note(format!("{note}; {SQLITE_MODE}")),
            );
            figures.push(
                Figure::new("S1", "accepted/s ÷ /healthz/s", rate, "/s").against(
                    "healthz",
                    base.healthz,
                    Target::AtLeast(0.15),
                ),
            );
            figures.push(
                Figure::new("S1", "accepted/s ÷ fdatasync/s", rate, "/s").against(
                    "fdatasync",
                    base.fdatasync,
                    Target::Report,
                ),
            );
        }
        Backend::Postgres => figures.push(
            Figure::new("S1-pg", "accepted/s over HTTP, PostgreSQL", rate, "/s")
                .target(Target::AtLeast(2_000.0))
                .note(format!("{note}; synchronous_commit as the server is set")),
        ),
    }
    rig.stop().await;
    carrier.shutdown().await;
    db.drop_now().await;
    figures
}

/// Sends from 64 clients for `window`, back to back or, with `pace`, send `i` not before
/// `i / pace` seconds in (an offered rate; clients that fall behind send back to back), counting
/// each 202 in `accepted` too.
async fn accept(
    client: &reqwest::Client,
    base_url: &str,
    window: Duration,
    pace: Option<f64>,
    accepted: Option<Arc<AtomicUsize>>,
) -> (usize, Duration) {
    let (client, base_url) = (client.clone(), base_url.to_owned());
    let t0 = tokio::time::Instant::now();
    rig::closed_loop(CLIENTS, window, move |i| {
        let (client, base_url, accepted) = (client.clone(), base_url.clone(), accepted.clone());
        async move {
            if let Some(rate) = pace {
                tokio::time::sleep_until(t0 + Duration::from_secs_f64(i as f64 / rate)).await;
            }
            rig::post_send(&client, &base_url, i).await;
            if let Some(accepted) = accepted {
                accepted.fetch_add(1, Ordering::Relaxed);
            }
            true
        }
    })
    .await
}

/// S1-all's offered rate: 5 % over its target, so that a Herald that keeps up measures above it.
const S1_ALL_RATE: f64 = 2_100.0;

/// S1-all: S1 on SQLite with `Herald::serve` (dispatcher and background tasks) and the carrier
/// posting its signed callbacks 50 ms after each step, the sends offered just over the target
/// rate: can Herald accept 2,000/s and deliver as many?
pub async fn s1_all(plan: &Plan) -> Vec<Figure> {
    let db = Database::new(Backend::Sqlite).await;
    let carrier = Arc::new(rig::carrier(Callbacks::Posted).await);
    let rig = Rig::start(&db.url, carrier.base_url(), true, |_| {}).await;
    let client = rig::http_client();
    let accepted = Arc::new(AtomicUsize::new(0));
    // (accepted, delivered) at the middle and the end of the window.
    let sampler = {
        let (accepted, carrier, window) =
            (Arc::clone(&accepted), Arc::clone(&carrier), plan.window);
        tokio::spawn(async move {
            let sample = || {
                let delivered = carrier
                    .callbacks()
                    .iter()
                    .filter(|c| c.succeeded() && c.field("MessageStatus") == Some("delivered"))
                    .count();
                (accepted.load(Ordering::Relaxed), delivered)
            };
            tokio::time::sleep(window / 2).await;
            let middle = sample();
            tokio::time::sleep(window / 2).await;
            (middle, sample())
        })
    };
    let (n, elapsed) = accept(
        &client,
        &rig.base_url,
        plan.window,
        Some(S1_ALL_RATE),
        Some(accepted),
    )
    .await;
    let ((a0, d0), (a1, d1)) = bounded("sampling", sampler).await.expect("the sampler");
    let rate = n as f64 / elapsed.as_secs_f64();
    let kept_up = (d1 - d0) as f64 / (a1 - a0).max(1) as f64;
    rig.stop().await;
    if let Ok(carrier) = Arc::try_unwrap(carrier) {
        carrier.shutdown().await;
    }
    vec![
        Figure::new(
            "S1-all",
            "accepted/s, dispatch + carrier + callbacks running",
            rate,
            "/s",
        )
        .target(Target::AtLeast(2_000.0))
        .note(format!(
            "{n} in {:.1} s, offered at {S1_ALL_RATE:.0}/s by 64 clients, {SQLITE_MODE}",
            elapsed.as_secs_f64()
        )),
        Figure::new(
            "S1-all",
            "delivered ÷ accepted, 2nd half of the window",
            kept_up,
            "×",
        )
        .target(Target::AtLeast(0.95))
        .note(format!(
            "no backlog growth = every message accepted in the second half delivered in it \
                 (5 % slack); backlog accepted − delivered went {} → {}",
            a0 - d0.min(a0),
            a1 - d1.min(a1)
        )),
    ]
}

/// S2: dispatched/s through the Twilio plugin (callbacks recorded, not posted); then S3 replays
/// the recorded callbacks against the same Herald.
pub async fn s2_s3(plan: &Plan, base: &mut Baselines) -> Vec<Figure> {
    let db = Database::new(Backend::Sqlite).await;
    let carrier = rig::carrier(Callbacks::Recorded).await;
    let rig = Rig::start(&db.url, carrier.base_url(), false, |_| {}).await;
    rig::prefill(rig.store(), plan.prefill).await;
    let (dispatched, elapsed) = dispatch_for(&rig, plan.window).await;
    base.plugin = dispatched as f64 / elapsed.as_secs_f64();
    let s2_note = format!(
        "{dispatched} in {:.1} s, 32 workers, {SQLITE_MODE}; queue pre-filled",
        elapsed.as_secs_f64()
    );
    let recorded = carrier.lost_callbacks();
    let before = rig.store().status_applies();
    let (applied, elapsed) = replay(recorded, plan.window).await;
    let callbacks = applied as f64 / elapsed.as_secs_f64();
    let after = rig.store().status_applies();
    let (reports, applies, batches) = (after.0 - before.0, after.1 - before.1, after.2 - before.2);
    rig.stop().await;
    carrier.shutdown().await;
    vec![
        Figure::new("S2", "dispatched/s via the Twilio plugin, SQLite", base.plugin, "/s")
            .target(Target::AtLeast(2_000.0))
            .note(s2_note.clone()),
        Figure::new("S2", "plugin pipeline ÷ native pipeline", base.plugin, "/s").against(
            "native",
            base.native,
            Target::AtLeast(0.8),
        ),
        Figure::new("S3", "status callbacks applied/s", callbacks, "/s")
            .against("S2", base.plugin, Target::AtLeast(3.0))
            .note(format!(
                "{applied} signed `sent`/`delivered` callbacks (recorded by the carrier during S2) \
                 posted by 64 clients in {:.1} s, each verified and parsed by the plugin and applied; \
                 the store took {reports} reports in {applies} applies (a message's reports \
                 coalesced) and {batches} batches",
                elapsed.as_secs_f64()
            )),
    ]
}

/// Runs Herald's dispatcher on a pre-filled queue until it is empty or `window` has passed;
/// returns how many messages left the queue and the time that took.
pub async fn dispatch_for(rig: &Rig, window: Duration) -> (usize, Duration) {
    let initial = rig::depth(rig.store()).await;
    let dispatcher = Dispatcher::start(rig);
    let start = Instant::now();
    let mut left = initial;
    while start.elapsed() < window {
        tokio::time::sleep(Duration::from_millis(50)).await;
        left = rig::depth(rig.store()).await;
        if left == 0 {
            break;
        }
    }
    let elapsed = start.elapsed();
    dispatcher.stop().await;
    ((initial - left) as usize, elapsed)
}

/// Posts the recorded callbacks from 64 clients for at most `window`; returns how many were
/// answered 2xx and the time that took.
async fn replay(recorded: Vec<RecordedCallback>, window: Duration) -> (usize, Duration) {
    let recorded = Arc::new(recorded);
    let client = rig::http_client();
    rig::closed_loop(CLIENTS, window, move |i| {
        let (recorded, client) = (Arc::clone(&recorded), client.clone());
        async move {
            let Some(callback) = recorded.get(i) else {
                return false;
            };
            let body = serde_urlencoded::to_string(&callback.params).expect("a form");
            let response = client
                .post(&callback.url)
                .header(
                    "Content-Type",
                    "application/x-www-form-urlencoded; charset=utf-8",
                )
                .header("X-Twilio-Signature", &callback.signature)
                .body(body)
                .send()
                .await
                .expect("post a callback");
            let status = response.status();
            response.bytes().await.expect("the callback's answer");
            assert!(status.is_success(), "callback {i} answered {status}");
            true
        }
    })
    .await
}

/// S4: enqueue → the carrier receives, sends paced at half of S2's rate, `Herald::serve`.
pub async fn s4(plan: &Plan, base: &Baselines) -> Vec<Figure> {
    let rate = (base.plugin / 2.0).max(50.0);
    let db = Database::new(Backend::Sqlite).await;
    let carrier = rig::carrier(Callbacks::Held).await;
    let rig = Rig::start(&db.url, carrier.base_url(), true, |_| {}).await;
    let client = rig::http_client();
    let total = (rate * plan.window.as_secs_f64()) as usize;
    let started: Arc<Mutex<Vec<Option<Instant>>>> = Arc::new(Mutex::new(vec![None; total]));
    let t0 = tokio::time::Instant::now();
    let mut tasks = Vec::with_capacity(total);
    for i in 0..total {
        tokio::time::sleep_until(t0 + Duration::from_secs_f64(i as f64 / rate)).await;
        let (client, base_url, started) =
            (client.clone(), rig.base_url.clone(), Arc::clone(&started));
        tasks.push(tokio::spawn(async move {
            started.lock().expect("a clean lock")[i] = Some(Instant::now());
            rig::post_send(&client, &base_url, i).await;
        }));
    }
    for task in tasks {
        bounded("a paced send", task)
            .await
            .expect("a paced send failed");
    }
    // The queue's count is cheap; the carrier's record of requests is copied whole on each read.
    bounded("the dispatcher sending every message", async {
        while rig::depth(rig.store()).await > 0 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    let started = started.lock().expect("a clean lock").clone();
    let mut latencies: Vec<f64> = carrier
        .requests()
        .iter()
        .filter_map(|r| {
            let i = rig::index_of(r.field("Body")?)?;
            let sent = started.get(i).copied().flatten()?;
            Some(r.at.saturating_duration_since(sent).as_secs_f64() * 1e3)
        })
        .collect();
    latencies.sort_by(f64::total_cmp);
    let at = |q: f64| latencies[((latencies.len() - 1) as f64 * q).round() as usize];
    let note = format!(
        "{} sends at {rate:.0}/s (half of S2) over {:.0} s; from the client's request (acceptance \
         included) to the carrier's receipt; Herald::serve, callbacks held back",
        latencies.len(),
        plan.window.as_secs_f64()
    );
    rig.stop().await;
    carrier.shutdown().await;
    assert_eq!(
        latencies.len(),
        total,
        "every paced send reached the carrier once"
    );
    vec![
        Figure::new("S4", "enqueue → carrier, p50", at(0.5), "ms")
            .target(Target::AtMost(5.0))
            .note(note),
        Figure::new("S4", "enqueue → carrier, p99", at(0.99), "ms").target(Target::AtMost(25.0)),
    ]
}
