//! Hot reload: swapping a plugin under load loses no call; a broken version never replaces a good one.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use herald::config::{Config, ConfigSource};
use herald::plugin::Plugins;
use herald::plugin::model::SendOutcome;

async fn version_of(plugins: &Plugins) -> String {
    match plugins
        .provider()
        .unwrap()
        .send(&common::outbound("hello"))
        .await
    {
        SendOutcome::Accepted(a) => a.provider_message_id,
        other => panic!("call failed: {other:?}"),
    }
}

/// A probe plugin copied into its own directory, so the test can overwrite it.
fn setup() -> (tempfile::TempDir, std::path::PathBuf, Config) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("probe.wasm");
    std::fs::copy(common::plugin("probe"), &path).unwrap();
    let config = common::config(
        vec![("probe", common::plugin_config(path.clone()))],
        "probe",
        "",
    );
    (dir, path, config)
}

/// Replaces a file the way a deploy does: write aside, then rename over.
fn replace(path: &std::path::Path, with: &std::path::Path) {
    let tmp = path.with_extension("new");
    std::fs::copy(with, &tmp).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

/// Under a steady stream of calls, a swap to v2 fails no call and later calls use v2.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn swap_under_load_loses_nothing() {
    let (_dir, path, config) = setup();
    let plugins = Plugins::start(&config).await.unwrap();
    assert!(version_of(&plugins).await.starts_with("probe-1.0.0-"));

    let stop = Arc::new(AtomicBool::new(false));
    let failures = Arc::new(AtomicUsize::new(0));
    let calls = Arc::new(AtomicUsize::new(0));
    let mut workers = Vec::new();
    for _ in 0..4 {
        let (plugins, stop, failures, calls) = (
            plugins.clone(),
            stop.clone(),
            failures.clone(),
            calls.clone(),
        );
        workers.push(tokio::spawn(async move {
            while !stop.load(Ordering::SeqCst) {
                if !matches!(
                    plugins
                        .provider()
                        .unwrap()
                        .send(&common::outbound("hello"))
                        .await,
                    SendOutcome::Accepted(_)
                ) {
                    failures.fetch_add(1, Ordering::SeqCst);
                }
                calls.fetch_add(1, Ordering::SeqCst);
            }
        }));
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    replace(&path, &common::plugin("probe-v2"));
    let report = plugins.apply(&config).await;
    assert_eq!(report.loaded, ["probe"], "{report:?}");
    assert!(
        version_of(&plugins).await.starts_with("probe-2.0.0-"),
        "calls after the swap must use v2"
    );
    tokio::time::sleep(Duration::from_millis(100)).await;
    stop.store(true, Ordering::SeqCst);
    for w in workers {
        w.await.unwrap();
    }
    assert!(
        calls.load(Ordering::SeqCst) > 10,
        "the stream should have made many calls"
    );
    assert_eq!(
        failures.load(Ordering::SeqCst),
        0,
        "no call may fail during a swap"
    );
}

/// A call in flight during a swap finishes on the version it started with.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn call_in_flight_finishes_on_the_old_version() {
    let slow = axum::Router::new().route(
        "/slow",
        axum::routing::get(|| async {
            tokio::time::sleep(Duration::from_millis(400)).await;
            "done"
        }),
    );
    let base = common::serve(slow).await;
    let (_dir, path, mut config) = setup();
    config.plugins.get_mut("probe").unwrap().allowed_hosts =
        vec![base.trim_start_matches("http://").into()];
    let plugins = Plugins::start(&config).await.unwrap();
    let old = plugins.provider().unwrap();
    let in_flight = tokio::spawn(async move {
        old.send(&common::outbound(&format!("http:{base}/slow")))
            .await
    });
    tokio::time::sleep(Duration::from_millis(50)).await;
    replace(&path, &common::plugin("probe-v2"));
    assert_eq!(plugins.apply(&config).await.loaded, ["probe"]);
    assert!(version_of(&plugins).await.starts_with("probe-2.0.0-"));
    match in_flight.await.unwrap() {
        SendOutcome::Accepted(a) => assert_eq!(a.provider_message_id, "done"),
        other => panic!("the in-flight call must complete, got {other:?}"),
    }
}

/// A broken replacement is rejected with its reason and the old version keeps serving.
#[tokio::test]
async fn broken_replacement_is_rejected() {
    let (_dir, path, config) = setup();
    let plugins = Plugins::start(&config).await.unwrap();

    replace(&path, &common::plugin("probe-broken"));
    let report = plugins.apply(&config).await;
    assert!(
        report.rejected["probe"].contains("describe failed"),
        "{report:?}"
    );
    assert!(version_of(&plugins).await.starts_with("probe-1.0.0-"));

    std::fs::write(&path, b"\0asm garbage").unwrap();
    let report = plugins.apply(&config).await;
    assert!(report.rejected.contains_key("probe"), "{report:?}");
    assert!(version_of(&plugins).await.starts_with("probe-1.0.0-"));

    replace(&path, &common::plugin("probe-v2"));
    assert_eq!(plugins.apply(&config).await.loaded, ["probe"]);
    assert!(version_of(&plugins).await.starts_with("probe-2.0.0-"));
}

/// Routing to a different provider is a configuration change only.
#[tokio::test]
async fn routing_swaps_providers_by_config() {
    let (_dir, _path, mut config) = setup();
    config.plugins.insert(
        "probe2".into(),
        common::plugin_config(common::plugin("probe-v2")),
    );
    let plugins = Plugins::start(&config).await.unwrap();
    assert!(version_of(&plugins).await.starts_with("probe-1.0.0-"));
    config.routing.provider = "probe2".into();
    let report = plugins.apply(&config).await;
    assert!(report.rejected.is_empty(), "{report:?}");
    assert!(version_of(&plugins).await.starts_with("probe-2.0.0-"));
    config.routing.provider = "nope".into();
    assert!(
        plugins
            .apply(&config)
            .await
            .rejected
            .contains_key("routing")
    );
    assert!(
        version_of(&plugins).await.starts_with("probe-2.0.0-"),
        "a bad routing must not take effect"
    );
}

/// The file watcher picks up a changed config file and a changed plugin file on its own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn file_watch_reloads() {
    let (dir, path, _) = setup();
    let cache = common::root().join("target/herald-cache");
    let key = common::root().join("target/herald-artifact.key");
    let toml = format!(
        "[storage]\nurl = \"sqlite::memory:\"\n[runtime]\ncache_dir = {cache:?}\nartifact_key_file = {key:?}\nmax_instances = 16\nwatch_interval_ms = 50\n[routing]\nprovider = \"probe\"\nrenderer = \"\"\n[plugins.probe]\npath = {path:?}\n"
    );
    let file = dir.path().join("herald.toml");
    std::fs::write(&file, &toml).unwrap();
    let source = ConfigSource {
        file: Some(file.clone()),
        env: false,
    };
    let herald = herald::Herald::builder()
        .source(source)
        .build()
        .await
        .unwrap();
    let plugins = herald.plugins().clone();
    let watcher =
        herald::watch::spawn_file_watch(herald.pipeline().clone(), Duration::from_millis(50));

    replace(&path, &common::plugin("probe-v2"));
    wait_for(&plugins, "probe-2.0.0-").await;

    // A config-only change: route to a second plugin added to the file.
    let v1 = dir.path().join("probe-one.wasm");
    std::fs::copy(common::plugin("probe"), &v1).unwrap();
    let edited = toml.replace("provider = \"probe\"", "provider = \"other\"")
        + &format!("[plugins.other]\npath = {v1:?}\n");
    std::fs::write(&file, edited).unwrap();
    wait_for(&plugins, "probe-1.0.0-").await;
    watcher.abort();
}

async fn wait_for(plugins: &Plugins, prefix: &str) {
    // Compiling a plugin takes most of a second in a debug build, more on a loaded machine: the
    // bound is generous, and the loop ends as soon as the new version answers.
    for _ in 0..1200 {
        if version_of(plugins).await.starts_with(prefix) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("the watcher did not load {prefix} within 30 s");
}
