//! Retries on a manual clock: the dispatcher reads time only through the injected clock, so a
//! test moves time by hand and needs no sleeps.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::app::Backend;
use herald::clock::{Clock, ManualClock};
use herald::config::{DeliveryConfig, StorageConfig};
use herald::pipeline::dispatch;
use herald::{Herald, MessageStatus, SendRequest, TenantId};
use herald_testkit::carrier::{self, Carrier, CarrierConfig, ScriptedResponse};

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

/// A Herald on `backend` whose clock is `clock`, sending through the Twilio plugin to a local
/// carrier, with `delivery` as its retry settings; no HTTP server and no dispatcher run.
async fn on_a_manual_clock(
    backend: Backend,
    clock: std::sync::Arc<ManualClock>,
    delivery: DeliveryConfig,
) -> (Herald, Carrier, tempfile::TempDir) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let carrier = carrier::spawn(
        listener,
        CarrierConfig::new(common::app::ACCOUNT_SID, common::app::AUTH_TOKEN),
    )
    .await;
    let (storage, dir) = common::app::storage_url(backend).await;
    // Nothing listens on the public URL: the carrier's status callbacks go nowhere, which
    // leaves the message `sent`.
    let mut config = common::app::config("http://127.0.0.1:9", carrier.base_url(), &storage);
    config.delivery = delivery;
    let herald = Herald::builder()
        .config(config)
        .clock(clock)
        .build()
        .await
        .unwrap();
    (herald, carrier, dir)
}

/// Makes the attempt that is due, checks that nothing was due a millisecond earlier, and
/// returns the message's status and attempts afterwards.
async fn next_attempt(herald: &Herald, clock: &ManualClock, id: &str) -> (MessageStatus, u32) {
    let pipeline = herald.pipeline();
    let due = herald.store().next_due_at().await.unwrap().unwrap();
    clock.set(due - 1);
    assert_eq!(dispatch::run_once(pipeline, "w").await.unwrap(), 0);
    clock.set(due);
    assert_eq!(dispatch::run_once(pipeline, "w").await.unwrap(), 1);
    let message = herald
        .message(&TenantId::default_tenant(), id)
        .await
        .unwrap()
        .message;
    (message.status, message.attempts)
}

/// With the default retry settings a message rides out a carrier outage of several minutes
/// (a rate limit with Retry-After, then twelve 503s) and is sent once the carrier answers
/// again; the retry after the rate limit lands after the hint, not on it.
async fn outage_of_minutes_is_ridden_out(backend: Backend) {
    let start = 1_000_000;
    let clock = ManualClock::new(start);
    let (herald, carrier, _dir) =
        on_a_manual_clock(backend, clock.clone(), DeliveryConfig::default()).await;
    carrier.script(ScriptedResponse::rate_limited(Some(30)));
    for _ in 0..12 {
        carrier.script(ScriptedResponse::Status5xx(503));
    }
    let tenant = TenantId::default_tenant();
    let id = herald
        .send(
            &tenant,
            SendRequest::text("+14155552671".parse().unwrap(), "outage"),
        )
        .await
        .unwrap()
        .message
        .id;

    assert_eq!(dispatch::run_once(herald.pipeline(), "w").await.unwrap(), 1);
    let due = herald.store().next_due_at().await.unwrap().unwrap();
    // The extra on a 30 s hint is up to 3 s (10%, more than the 2 s floor).
    let after_hint = due - start;
    assert!(
        (30_001..=33_000).contains(&after_hint),
        "Retry-After: 30 s gave a retry {after_hint} ms later"
    );
    let mut attempts = 1;
    loop {
        let (status, made) = next_attempt(&herald, &clock, &id).await;
        attempts += 1;
        assert_eq!(made, attempts);
        if status == MessageStatus::Sent {
            break;
        }
        assert_eq!(status, MessageStatus::Queued, "attempt {attempts}");
        assert!(attempts < 20, "the outage should have ended");
    }
    assert_eq!(attempts, 14, "one rate limit, twelve 503s, then accepted");
    let outage = clock.now_millis() - start;
    assert!(
        (10 * 60_000..3_600_000).contains(&outage),
        "the outage lasted {outage} ms of clock time"
    );
    assert_eq!(carrier.requests().len(), 14);
    herald.close().await;
}

/// A carrier that never comes back: the message is retried for as long as its age limit
/// allows, with no attempt after it, and fails only then — not when a fixed number of
/// attempts runs out.
async fn endless_outage_fails_past_max_age(backend: Backend) {
    let start = 5_000_000;
    let clock = ManualClock::new(start);
    let delivery = DeliveryConfig {
        retry_max_ms: 60_000,
        max_age_ms: 600_000,
        ..DeliveryConfig::default()
    };
    let (herald, carrier, _dir) = on_a_manual_clock(backend, clock.clone(), delivery).await;
    for _ in 0..60 {
        carrier.script(ScriptedResponse::Status5xx(503));
    }
    let tenant = TenantId::default_tenant();
    let id = herald
        .send(
            &tenant,
            SendRequest::text("+14155552671".parse().unwrap(), "never"),
        )
        .await
        .unwrap()
        .message
        .id;
    assert_eq!(dispatch::run_once(herald.pipeline(), "w").await.unwrap(), 1);
    let deadline = start + 600_000;
    let mut attempts = 1;
    let last_attempt = loop {
        let (status, made) = next_attempt(&herald, &clock, &id).await;
        attempts += 1;
        assert_eq!(made, attempts);
        let now = clock.now_millis();
        assert!(
            now <= deadline,
            "attempt {attempts} at {now} is past the age limit"
        );
        if status == MessageStatus::Failed {
            break now;
        }
        assert_eq!(status, MessageStatus::Queued, "attempt {attempts}");
        assert!(attempts < 50, "the age limit should have ended the retries");
    };
    // The last attempt came less than one (capped) backoff before the limit: the retry it
    // would have needed falls after it.
    assert!(
        last_attempt > deadline - 60_000,
        "failed at {last_attempt}, well before the limit {deadline}"
    );
    assert!(attempts > 5, "only {attempts} attempts");
    assert_eq!(herald.store().next_due_at().await.unwrap(), None);
    let record = herald.message(&tenant, &id).await.unwrap();
    assert_eq!(
        record.message.error.and_then(|e| e.code).as_deref(),
        Some("20503")
    );
    assert_eq!(carrier.requests().len(), attempts as usize);
    herald.close().await;
}

on_both_backends!(
    outage_of_minutes_is_ridden_out,
    endless_outage_fails_past_max_age
);
