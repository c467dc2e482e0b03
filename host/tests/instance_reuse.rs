//! Instance reuse: where one provider instance may serve several sends, and where it must not.
//!
//! The probe's `count` body keeps state in the instance: it answers `count-<n>-<first>`, `n`
//! being how many `count` sends the instance has served and `first` the `marker` setting of the
//! first of them. A fresh instance answers `count-1-…`; an instance that crossed a tenant or a
//! settings change would answer with the other's marker.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::app::Backend;
use herald::config::{Config, InstanceReuse, PluginConfig, StorageConfig};
use herald::pipeline::dispatch;
use herald::pipeline::tenants::{self, TenantSettings};
use herald::plugin::Plugins;
use herald::plugin::model::SendOutcome;
use herald::plugin::reuse::{ReuseLimits, Session};
use herald::{Herald, SendRequest, TenantId};

fn probe_settings(marker: &str) -> PluginConfig {
    let mut settings = common::plugin_config(common::plugin("probe"));
    settings.cpu_ms = 200;
    settings.timeout_ms = 2_000;
    settings.memory_mb = 16;
    settings.config = BTreeMap::from([("marker".to_string(), marker.to_string())]);
    settings
}

fn probe_config(marker: &str) -> Config {
    common::config(vec![("probe", probe_settings(marker))], "probe", "")
}

fn limits(max_calls: u32, max_ms: u64) -> Option<ReuseLimits> {
    Some(ReuseLimits {
        max_calls,
        max_age: Duration::from_millis(max_ms),
    })
}

/// The provider message id a send was accepted with, or a panic naming the outcome.
fn accepted_id(outcome: SendOutcome) -> String {
    match outcome {
        SendOutcome::Accepted(a) => a.provider_message_id,
        other => panic!("expected accepted, got {other:?}"),
    }
}

/// A `count` send for `tenant` through the current provider, on `session`.
async fn count(session: &mut Session, plugins: &Plugins, tenant: &str) -> String {
    let provider = plugins.provider().unwrap();
    accepted_id(
        session
            .send(tenant, &provider, &common::outbound("count"))
            .await,
    )
}

/// One instance serves a tenant's sends in turn, at most N of them; then a fresh one takes over.
#[tokio::test]
async fn at_most_n_calls_per_instance() {
    let plugins = Plugins::start(&probe_config("op")).await.unwrap();
    let mut session = Session::new(limits(3, 60_000));
    let mut ids = Vec::new();
    for _ in 0..7 {
        ids.push(count(&mut session, &plugins, "ten_a").await);
    }
    assert_eq!(
        ids,
        [
            "count-1-op",
            "count-2-op",
            "count-3-op",
            "count-1-op",
            "count-2-op",
            "count-3-op",
            "count-1-op"
        ]
    );
    assert_eq!(session.instances(), 3);
}

/// An instance is not reused after `reuse_max_ms` from its first send.
#[tokio::test]
async fn an_instance_ends_after_its_time() {
    let plugins = Plugins::start(&probe_config("op")).await.unwrap();
    let mut session = Session::new(limits(100, 100));
    assert_eq!(count(&mut session, &plugins, "ten_a").await, "count-1-op");
    assert_eq!(count(&mut session, &plugins, "ten_a").await, "count-2-op");
    tokio::time::sleep(Duration::from_millis(150)).await;
    assert_eq!(count(&mut session, &plugins, "ten_a").await, "count-1-op");
}

/// An instance never serves a second tenant, even with exactly the same plugin and settings,
/// and the first tenant's next send does not return to it either.
#[tokio::test]
async fn never_across_tenants() {
    let plugins = Plugins::start(&probe_config("op")).await.unwrap();
    let mut session = Session::new(limits(32, 60_000));
    assert_eq!(count(&mut session, &plugins, "ten_a").await, "count-1-op");
    assert_eq!(count(&mut session, &plugins, "ten_a").await, "count-2-op");
    assert_eq!(count(&mut session, &plugins, "ten_b").await, "count-1-op");
    assert_eq!(count(&mut session, &plugins, "ten_a").await, "count-1-op");
    assert_eq!(session.instances(), 3);

    // Each tenant with its own settings, as `tenants::provider` applies them.
    let base = plugins.provider().unwrap();
    let a = base.with_overrides(&BTreeMap::from([("marker".into(), "secret-a".into())]));
    let b = base.with_overrides(&BTreeMap::from([("marker".into(), "secret-b".into())]));
    let message = common::outbound("count");
    let mut session = Session::new(limits(32, 60_000));
    let a1 = accepted_id(session.send("ten_a", &a, &message).await);
    let b1 = accepted_id(session.send("ten_b", &b, &message).await);
    let a2 = accepted_id(session.send("ten_a", &a, &message).await);
    let a3 = accepted_id(session.send("ten_a", &a, &message).await);
    assert_eq!(
        [a1, b1, a2, a3],
        [
            "count-1-secret-a",
            "count-1-secret-b",
            "count-1-secret-a",
            "count-2-secret-a"
        ]
    );
}

/// A hot reload mid-batch is a new version: the kept instance of the old one serves no send of
/// the new one, whether the settings or only the load changed; a send still pinned to the old
/// version (in flight when the reload landed) is not served by the new version's instance.
#[tokio::test]
async fn never_across_config_versions() {
    let plugins = Plugins::start(&probe_config("v1")).await.unwrap();
    let mut session = Session::new(limits(32, 60_000));
    let old = plugins.provider().unwrap();
    assert_eq!(count(&mut session, &plugins, "ten_a").await, "count-1-v1");
    assert_eq!(count(&mut session, &plugins, "ten_a").await, "count-2-v1");

    let report = plugins.apply(&probe_config("v2")).await;
    assert_eq!(report.loaded, ["probe"], "{report:?}");
    assert_ne!(plugins.provider().unwrap().generation(), old.generation());
    assert_eq!(count(&mut session, &plugins, "ten_a").await, "count-1-v2");
    assert_eq!(count(&mut session, &plugins, "ten_a").await, "count-2-v2");
    let pinned = accepted_id(
        session
            .send("ten_a", &old, &common::outbound("count"))
            .await,
    );
    assert_eq!(pinned, "count-1-v1");

    // An unchanged configuration is not a new version: reuse goes on.
    assert_eq!(count(&mut session, &plugins, "ten_a").await, "count-1-v2");
    let report = plugins.apply(&probe_config("v2")).await;
    assert_eq!(report.unchanged, ["probe"], "{report:?}");
    assert_eq!(count(&mut session, &plugins, "ten_a").await, "count-2-v2");

    // A new build of the plugin under the same settings is a new version.
    let mut v2_build = probe_settings("v2");
    v2_build.path = Some(common::plugin("probe-v2"));
    let report = plugins
        .apply(&common::config(vec![("probe", v2_build)], "probe", ""))
        .await;
    assert_eq!(report.loaded, ["probe"], "{report:?}");
    assert_eq!(count(&mut session, &plugins, "ten_a").await, "count-1-v2");

    // A tenant's settings changing between two sends is a new version too.
    let base = plugins.provider().unwrap();
    let before = base.with_overrides(&BTreeMap::from([("marker".into(), "before".into())]));
    let after = base.with_overrides(&BTreeMap::from([("marker".into(), "after".into())]));
    let message = common::outbound("count");
    let mut session = Session::new(limits(32, 60_000));
    assert_eq!(
        accepted_id(session.send("ten_a", &before, &message).await),
        "count-1-before"
    );
    assert_eq!(
        accepted_id(session.send("ten_a", &after, &message).await),
        "count-1-after"
    );
}

/// With `per-call`, every send gets a fresh instance.
#[tokio::test]
async fn per_call_gives_a_fresh_instance_every_time() {
    let mut config = probe_config("op");
    config.runtime.instance_reuse = InstanceReuse::PerCall;
    assert_eq!(ReuseLimits::of(&config.runtime), None);
    let plugins = Plugins::start(&config).await.unwrap();
    let mut session = Session::new(ReuseLimits::of(&config.runtime));
    for _ in 0..4 {
        assert_eq!(count(&mut session, &plugins, "ten_a").await, "count-1-op");
    }
    assert_eq!(session.instances(), 4);
}

/// A trap, the CPU budget, the memory limit and the deadline each end the instance: the next
/// send gets a fresh one, and it is not charged for what the failed call used.
#[tokio::test]
async fn a_failed_call_drops_the_instance() {
    let mut settings = probe_settings("op");
    settings.timeout_ms = 300;
    let plugins = Plugins::start(&common::config(vec![("probe", settings)], "probe", ""))
        .await
        .unwrap();
    let mut session = Session::new(limits(32, 60_000));
    for (body, says) in [
        ("trap", "trapped"),
        ("spin", "CPU budget"),
        ("alloc", "memory limit"),
    ] {
        assert_eq!(count(&mut session, &plugins, "ten_a").await, "count-1-op");
        assert_eq!(count(&mut session, &plugins, "ten_a").await, "count-2-op");
        let provider = plugins.provider().unwrap();
        match session
            .send("ten_a", &provider, &common::outbound(body))
            .await
        {
            SendOutcome::Retryable { error, .. } => {
                assert!(error.message.contains(says), "{body}: {error:?}")
            }
            other => panic!("{body}: expected retryable, got {other:?}"),
        }
        assert_eq!(count(&mut session, &plugins, "ten_a").await, "count-1-op");
        // Start the next round on a fresh instance too.
        session = Session::new(limits(32, 60_000));
    }
}

/// Every call on a kept instance gets its own deadline and CPU budget: an instance that lives
/// longer than one call's deadline keeps serving.
#[tokio::test]
async fn per_call_limits_are_set_anew_on_a_kept_instance() {
    let mut settings = probe_settings("op");
    settings.timeout_ms = 150;
    settings.cpu_ms = 50;
    let plugins = Plugins::start(&common::config(vec![("probe", settings)], "probe", ""))
        .await
        .unwrap();
    let mut session = Session::new(limits(32, 60_000));
    for n in 1..=4 {
        assert_eq!(
            count(&mut session, &plugins, "ten_a").await,
            format!("count-{n}-op")
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The reuse settings are checked: N and T at least 1, and the wait for a turn counts against
/// the lease of a plugin with network access.
#[test]
fn reuse_settings_are_checked() {
    let mut config = probe_config("op");
    assert!(config.check().is_ok());
    config.runtime.reuse_max_calls = 0;
    let refused = config.check().unwrap_err().to_string();
    assert!(refused.contains("runtime.reuse_max_calls"), "{refused}");
    config.runtime.reuse_max_calls = 32;
    config.runtime.reuse_max_ms = 0;
    assert!(config.check().is_err());

    // 31 turns of at most 0.5 ms, under a 1 s bound: 15.5 ms more under the lease.
    config.runtime.reuse_max_ms = 1_000;
    let limits = ReuseLimits::of(&config.runtime).unwrap();
    assert_eq!(limits.longest_turn(), Duration::from_micros(15_500));
    let probe = config.plugins.get_mut("probe").unwrap();
    probe.allowed_hosts = vec!["127.0.0.1:9".into()];
    probe.timeout_ms = 1_000;
    probe.max_wait_ms = 200;
    // 1,000 + 200 + 16 ms held (the turn rounded up): a lease of 1,210 ms is too short with reuse, enough without.
    config.delivery.lease_ms = 1_210;
    assert!(config.check().unwrap_err().to_string().contains("lease_ms"));
    config.runtime.instance_reuse = InstanceReuse::PerCall;
    assert!(config.check().is_ok());
}

/// The dispatcher reuses an instance for one tenant's jobs of a claimed batch, never gives
/// another tenant's job to it, and takes a fresh one after `reuse_max_calls`.
async fn the_dispatcher_reuses_within_a_tenant(backend: Backend) {
    let (storage, _dir) = common::app::storage_url(backend).await;
    let mut config = probe_config("operator");
    config.storage = StorageConfig {
        url: storage,
        ..StorageConfig::default()
    };
    config.runtime.instance_reuse = InstanceReuse::PerBatch;
    config.runtime.reuse_max_calls = 2;
    let herald = Herald::builder().config(config).build().await.unwrap();
    let pipeline = herald.pipeline();
    let a = TenantId::default_tenant();
    let b = tenants::create_tenant(pipeline, "Tenant B")
        .await
        .unwrap()
        .id;
    tenants::put_settings(
        pipeline,
        &b,
        TenantSettings {
            plugins: BTreeMap::from([(
                "probe".to_string(),
                BTreeMap::from([("marker".to_string(), "tenant-b".to_string())]),
            )]),
            ..TenantSettings::default()
        },
    )
    .await
    .unwrap();

    let to: herald::PhoneNumber = "+14155552671".parse().unwrap();
    let mut sent = Vec::new();
    for tenant in [&a, &b, &a, &b, &a] {
        let id = herald
            .send(tenant, SendRequest::text(to.clone(), "count"))
            .await
            .unwrap()
            .message
            .id;
        sent.push((tenant.clone(), id));
    }
    assert_eq!(dispatch::run_once(pipeline, "w").await.unwrap(), 5);
    let mut ids = BTreeMap::new();
    for (tenant, id) in &sent {
        let record = herald.message(tenant, id).await.unwrap();
        ids.entry(tenant.to_string())
            .or_insert_with(Vec::new)
            .push(record.message.provider_message_id.unwrap());
    }
    let mut a_ids = ids.remove(a.as_str()).unwrap();
    let mut b_ids = ids.remove(b.as_str()).unwrap();
    a_ids.sort();
    b_ids.sort();
    assert_eq!(
        a_ids,
        ["count-1-operator", "count-1-operator", "count-2-operator"]
    );
    assert_eq!(b_ids, ["count-1-tenant-b", "count-2-tenant-b"]);
}

/// A Herald on `backend` with `workers` dispatch workers and per-batch reuse whose only bound
/// on a turn is the slow-send rule (`reuse_max_ms` is 5 s), its probe allowed to reach a local
/// server where `GET /slow` answers after `delay`; with that server's base URL, and the
/// storage's directory to keep.
async fn slow_provider(
    backend: Backend,
    delay: Duration,
    workers: usize,
) -> (Herald, String, tempfile::TempDir) {
    let slow = axum::Router::new().route(
        "/slow",
        axum::routing::get(move || async move {
            tokio::time::sleep(delay).await;
            "slow"
        }),
    );
    let base = common::serve(slow).await;
    let (storage, dir) = common::app::storage_url(backend).await;
    let mut settings = probe_settings("operator");
    settings.allowed_hosts = vec![base.trim_start_matches("http://").to_string()];
    let mut config = common::config(vec![("probe", settings)], "probe", "");
    config.storage = StorageConfig {
        url: storage,
        ..StorageConfig::default()
    };
    config.runtime.instance_reuse = InstanceReuse::PerBatch;
    config.runtime.reuse_max_ms = 5_000;
    config.delivery.workers = workers;
    let herald = Herald::builder().config(config).build().await.unwrap();
    (herald, base, dir)
}

/// Waits until every message of `ids` is `sent`, at most 10 s after `started`.
async fn all_sent(herald: &Herald, tenant: &TenantId, ids: &[String], started: std::time::Instant) {
    for id in ids {
        loop {
            let record = herald.message(tenant, id).await.unwrap();
            if record.message.status == herald::MessageStatus::Sent {
                break;
            }
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "{id} still {:?}",
                record.message.status
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

/// A provider that answers slowly keeps the dispatcher's concurrency under per-batch reuse:
/// one tenant's jobs of a batch do not wait for each other's HTTP round trips.
async fn slow_sends_keep_their_concurrency(backend: Backend) {
    let (herald, base, _dir) = slow_provider(backend, Duration::from_millis(400), 6).await;
    let tenant = TenantId::default_tenant();
    let to: herald::PhoneNumber = "+14155552671".parse().unwrap();
    let mut ids = Vec::new();
    for _ in 0..6 {
        let body = format!("sleep-http:{base}/slow");
        let submitted = herald
            .send(&tenant, SendRequest::text(to.clone(), body))
            .await
            .unwrap();
        ids.push(submitted.message.id);
    }
    let (stop, shutdown) = tokio::sync::watch::channel(false);
    let started = std::time::Instant::now();
    let dispatcher = tokio::spawn(dispatch::run(herald.pipeline().clone(), shutdown));
    all_sent(&herald, &tenant, &ids, started).await;
    let took = started.elapsed();
    stop.send(true).unwrap();
    dispatcher.await.unwrap();
    // In turn, six sends would take 2.4 s; concurrently about one round trip.
    assert!(took < Duration::from_millis(1_200), "{took:?}");
}

/// A worker slot is taken again as soon as its attempt ends, not when the tenant group it ran
/// in does: behind one slow send, the tenant's next messages go out on the freed slot.
async fn a_freed_slot_is_taken_again_while_its_group_runs(backend: Backend) {
    // The slow send and one quick one fill both slots as one group of the tenant.
    let (herald, base, _dir) = slow_provider(backend, Duration::from_millis(1_500), 2).await;
    let tenant = TenantId::default_tenant();
    let to: herald::PhoneNumber = "+14155552671".parse().unwrap();
    let send = |body: String| {
        let (herald, tenant, to) = (&herald, &tenant, to.clone());
        async move {
            herald
                .send(tenant, SendRequest::text(to, body))
                .await
                .unwrap()
                .message
                .id
        }
    };
    let slow_id = send(format!("sleep-http:{base}/slow")).await;
    // Due later than the slow one, so that the first claim takes it.
    tokio::time::sleep(Duration::from_millis(20)).await;
    let mut quick = Vec::new();
    for _ in 0..3 {
        quick.push(send("count".to_string()).await);
    }
    let (stop, shutdown) = tokio::sync::watch::channel(false);
    let dispatcher = tokio::spawn(dispatch::run(herald.pipeline().clone(), shutdown));
    let started = std::time::Instant::now();
    all_sent(&herald, &tenant, &quick, started).await;
    // The third quick message could only go on a slot the group gave back.
    let slow = herald.message(&tenant, &slow_id).await.unwrap();
    assert_eq!(
        slow.message.status,
        herald::MessageStatus::Sending,
        "the quick messages waited for the slow send ({:?})",
        started.elapsed()
    );
    stop.send(true).unwrap();
    dispatcher.await.unwrap();
}

on_both_backends!(
    the_dispatcher_reuses_within_a_tenant,
    slow_sends_keep_their_concurrency,
    a_freed_slot_is_taken_again_while_its_group_runs
);
