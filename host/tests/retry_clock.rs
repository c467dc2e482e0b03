//! Retries on a manual clock: the dispatcher reads time only through the injected clock, so a
//! test moves time by hand and needs no sleeps.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use herald::clock::ManualClock;
use herald::config::{DeliveryConfig, StorageConfig};
use herald::pipeline::dispatch;
use herald::{Herald, MessageStatus, SendRequest, TenantId};

/// A retryable failure (the probe traps) is retried only once the backoff has passed on the
/// clock, and the message fails when its attempts are used up.
#[tokio::test]
async fn retries_follow_the_clock() {
    let clock = ManualClock::new(1_000_000);
    let mut config = common::config(
        vec![("probe", common::plugin_config(common::plugin("probe")))],
        "probe",
        "",
    );
    config.storage = StorageConfig {
        url: "sqlite::memory:".into(),
        ..StorageConfig::default()
    };
    config.delivery = DeliveryConfig {
        max_attempts: 3,
        retry_base_ms: 1_000,
        retry_max_ms: 60_000,
        ..DeliveryConfig::default()
    };
    let herald = Herald::builder()
        .config(config)
        .clock(clock.clone())
        .build()
        .await
        .unwrap();
    let tenant = TenantId::default_tenant();
    let to = "+14155552671".parse().unwrap();
    let id = herald
        .send(&tenant, SendRequest::text(to, "trap"))
        .await
        .unwrap()
        .message
        .id;
    let pipeline = herald.pipeline();
    let status = |record: herald::pipeline::read::MessageRecord| {
        (record.message.status, record.message.attempts)
    };

    assert_eq!(dispatch::run_once(pipeline, "w").await.unwrap(), 1);
    let after_first = status(herald.message(&tenant, &id).await.unwrap());
    assert_eq!(after_first, (MessageStatus::Queued, 1));
    // The first backoff is 500–1,000 ms (jittered): nothing is due before that.
    clock.advance(499);
    assert_eq!(dispatch::run_once(pipeline, "w").await.unwrap(), 0);
    clock.advance(501);
    assert_eq!(dispatch::run_once(pipeline, "w").await.unwrap(), 1);
    assert_eq!(
        status(herald.message(&tenant, &id).await.unwrap()),
        (MessageStatus::Queued, 2)
    );
    // The second backoff is 1,000–2,000 ms.
    clock.advance(999);
    assert_eq!(dispatch::run_once(pipeline, "w").await.unwrap(), 0);
    clock.advance(1_001);
    assert_eq!(dispatch::run_once(pipeline, "w").await.unwrap(), 1);
    let last = herald.message(&tenant, &id).await.unwrap();
    assert_eq!(status(last.clone()), (MessageStatus::Failed, 3));
    let times: Vec<i64> = last.history.iter().map(|e| e.occurred_at).collect();
    assert!(
        times.iter().all(|t| *t >= 1_000_000 && *t <= 1_003_000),
        "{times:?}"
    );
    herald.close().await;
}
