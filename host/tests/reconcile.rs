//! Reconciliation of lost status callbacks: the carrier holds every callback back, and the
//! reconciler still brings each message to its final state by asking the provider; plus the
//! candidate query (age bounds, non-final only, spacing, per-provider limit) and the rate bound
//! on a manual clock. Every scenario runs on SQLite and on PostgreSQL.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::app::{Backend, TestApp};
use herald::clock::ManualClock;
use herald::config::ReconcileConfig;
use herald::pipeline::dispatch;
use herald::pipeline::reconcile::{Pass, Reconciler};
use herald::segments::Encoding;
use herald::store::{
    Accepted, ErrorInfo, EventSource, LeaseOutcome, MessageLookup, MessageStatus, NewMessage,
    ReconcileQuery, StatusUpdate, Store, new_id,
};
use herald::{Category, Herald, SendRequest, TenantId};
use serde_json::{Value, json};

on_both_backends!(
    lost_callbacks_are_reconciled,
    lookups_respect_the_age_and_the_rate,
    pooled_sender_is_filled_by_the_lookup
);
on_each_backend!(candidates_are_old_enough_young_enough_and_not_final);

/// Short enough for a test: a message is asked about 150 ms after it was sent.
fn quick() -> ReconcileConfig {
    ReconcileConfig {
        after_ms: 150,
        interval_ms: 25,
        per_provider_per_second: 100,
        max_age_ms: 60_000,
        ..ReconcileConfig::default()
    }
}

/// Sources of a message's history, in order.
fn sources(message: &Value) -> Vec<String> {
    message["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["source"].as_str().unwrap().to_owned())
        .collect()
}

/// With every callback lost, each message still reaches its final state — delivered,
/// undelivered, failed — with the carrier's error, price and segments, recorded as `reconcile`.
async fn lost_callbacks_are_reconciled(backend: Backend) {
    let app = TestApp::start_with(backend, |c| c.reconcile = quick()).await;
    app.carrier.lose_callbacks(true);
    let cases = [
        ("+14155552671", "delivered", None),
        ("+14155550030", "undelivered", Some("30003")),
        ("+14155550070", "failed", Some("30007")),
    ];
    let mut ids = Vec::new();
    for (to, _, _) in cases {
        let sent = app
            .send(json!({"to_number": to, "message": "Your table is ready"}))
            .await;
        ids.push(sent["id"].as_str().unwrap().to_owned());
    }
    for (id, (to, last, code)) in ids.iter().zip(cases) {
        let message = app.wait_for(id, last).await;
        let history = message["history"].as_array().unwrap();
        let final_event = history.last().unwrap();
        assert_eq!(final_event["source"], "reconcile", "{to}: {message:#}");
        assert_eq!(final_event["provider_status"], last);
        assert!(
            !sources(&message).contains(&"webhook".to_owned()),
            "{to}: no callback arrived, yet {message:#}"
        );
        assert_eq!(message["error"]["code"].as_str(), code, "{to}");
        assert_eq!(message["sender"], common::app::OUR_NUMBER);
        if last == "delivered" {
            // The carrier bills 0.0083 USD per segment, reported as "-0.00830".
            assert_eq!(
                message["price"],
                json!({"micros": 8_300, "currency": "USD"})
            );
            assert_eq!(message["provider_segments"], 1);
        }
    }
    assert!(app.carrier.callbacks().is_empty(), "no callback was posted");
    assert!(app.carrier.lost_callbacks().len() >= 5);
    let lookups = app
        .carrier
        .requests()
        .iter()
        .filter(|r| r.method == "GET" && r.path.contains("/Messages/SM"))
        .count();
    assert!(lookups >= 3, "{lookups} lookups");
    app.stop().await;
}

/// A Herald on a manual clock whose provider is the carrier's Twilio, with callbacks lost.
async fn manual_herald(
    backend: Backend,
    reconcile: ReconcileConfig,
) -> (
    Herald,
    std::sync::Arc<ManualClock>,
    herald_testkit::carrier::Carrier,
    tempfile::TempDir,
) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let carrier = herald_testkit::carrier::spawn(
        listener,
        herald_testkit::carrier::CarrierConfig {
            account_sid: common::app::ACCOUNT_SID.into(),
            auth_token: common::app::AUTH_TOKEN.into(),
            callback_delay: Duration::from_millis(5),
            inbound_url: None,
            accounts: Vec::new(),
        },
    )
    .await;
    carrier.lose_callbacks(true);
    let (storage, dir) = common::app::storage_url(backend).await;
    let mut config = common::app::config("http://127.0.0.1:9", carrier.base_url(), &storage);
    config.reconcile = reconcile;
    let clock = ManualClock::new(1_700_000_000_000);
    let herald = Herald::builder()
        .config(config)
        .clock(clock.clone())
        .build()
        .await
        .unwrap();
    (herald, clock, carrier, dir)
}

/// Nobody is asked about before `after_ms`; then at most `per_provider_per_second` lookups a
/// second (the rest wait for the budget), each message is asked about once, and final messages
/// never again.
async fn lookups_respect_the_age_and_the_rate(backend: Backend) {
    let reconcile = ReconcileConfig {
        after_ms: 1_000,
        per_provider_per_second: 2,
        max_age_ms: 60_000,
        ..ReconcileConfig::default()
    };
    let (herald, clock, carrier, _dir) = manual_herald(backend, reconcile).await;
    let tenant = TenantId::default_tenant();
    let mut ids = Vec::new();
    for n in 0..5 {
        let to = format!("+1415555267{n}").parse().unwrap();
        let sent = herald
            .send(&tenant, SendRequest::text(to, "Hello"))
            .await
            .unwrap();
        ids.push(sent.message.id);
    }
    assert_eq!(dispatch::run_once(herald.pipeline(), "w").await.unwrap(), 5);
    // The carrier delivers them all; the callbacks saying so are lost.
    for message in carrier.messages() {
        let done = carrier
            .wait_for_status(&message.sid, "delivered", Duration::from_secs(10))
            .await;
        assert!(done.is_some(), "{}", message.sid);
    }
    let lookups = || {
        carrier
            .requests()
            .iter()
            .filter(|r| r.method == "GET")
            .count()
    };
    let mut reconciler = Reconciler::new();
    let pipeline = herald.pipeline();

    clock.advance(999);
    assert_eq!(reconciler.pass(pipeline).await.unwrap(), Pass::default());
    clock.advance(1);
    let first = reconciler.pass(pipeline).await.unwrap();
    assert_eq!((first.asked, first.moved, first.deferred), (2, 2, 3));
    let again = reconciler.pass(pipeline).await.unwrap();
    assert_eq!((again.asked, again.deferred), (0, 3), "the budget is spent");
    clock.advance(499);
    assert_eq!(reconciler.pass(pipeline).await.unwrap().asked, 0);
    clock.advance(1);
    assert_eq!(reconciler.pass(pipeline).await.unwrap().asked, 1);
    clock.advance(1_000);
    let last = reconciler.pass(pipeline).await.unwrap();
    assert_eq!((last.asked, last.moved, last.deferred), (2, 2, 0));
    assert_eq!(lookups(), 5, "one lookup per message");
    for id in &ids {
        let record = herald.message(&tenant, id).await.unwrap();
        assert_eq!(record.message.status, MessageStatus::Delivered);
        let final_event = record.history.last().unwrap();
        assert_eq!(final_event.source, EventSource::Reconcile);
        assert_eq!(final_event.occurred_at, record.message.updated_at);
    }
    clock.advance(30_000);
    assert_eq!(reconciler.pass(pipeline).await.unwrap(), Pass::default());
    assert_eq!(lookups(), 5, "final messages are never asked about");
    herald.close().await;
}

/// A Messaging Service send is accepted with no sender; the lookup that finds it delivered also
/// names the sender the pool picked, which is stored then.
async fn pooled_sender_is_filled_by_the_lookup(backend: Backend) {
    let reconcile = ReconcileConfig {
        after_ms: 1_000,
        max_age_ms: 60_000,
        ..ReconcileConfig::default()
    };
    let (herald, clock, carrier, _dir) = manual_herald(backend, reconcile).await;
    let service = "MG0123456789abcdef0123456789abcdef";
    let mut config = (*herald.pipeline().config()).clone();
    let twilio = config.plugins.get_mut("twilio").unwrap();
    twilio.config.remove("from");
    twilio
        .config
        .insert("messaging_service_sid".into(), service.into());
    let report = herald.plugins().apply(&config).await;
    assert_eq!(report.loaded, ["twilio"], "{report:?}");
    let tenant = TenantId::default_tenant();
    let to = "+14155552671".parse().unwrap();
    let id = herald
        .send(&tenant, SendRequest::text(to, "Hello"))
        .await
        .unwrap()
        .message
        .id;
    assert_eq!(dispatch::run_once(herald.pipeline(), "w").await.unwrap(), 1);
    let sent = herald.message(&tenant, &id).await.unwrap().message;
    assert_eq!((sent.status, sent.sender), (MessageStatus::Sent, None));
    let sid = sent.provider_message_id.unwrap();
    let carried = carrier
        .wait_for_status(&sid, "delivered", Duration::from_secs(10))
        .await
        .unwrap();
    assert_eq!(carried.messaging_service_sid.as_deref(), Some(service));
    clock.advance(1_000);
    let pass = Reconciler::new().pass(herald.pipeline()).await.unwrap();
    assert_eq!((pass.asked, pass.moved), (1, 1));
    let done = herald.message(&tenant, &id).await.unwrap().message;
    assert_eq!(done.status, MessageStatus::Delivered);
    assert_eq!(done.sender, carried.from);
    assert!(done.sender.is_some());
    herald.close().await;
}

const T0: i64 = 1_700_000_000_000;
const AFTER: i64 = 1_000;
const MAX_AGE: i64 = 100_000;

fn query(now: i64, per_provider: u32) -> ReconcileQuery {
    ReconcileQuery {
        now,
        after_ms: AFTER,
        max_age_ms: MAX_AGE,
        per_provider,
    }
}

/// A queued message to `to`, created at `T0`.
fn new_message(to: &str) -> NewMessage {
    NewMessage {
        id: new_id("msg"),
        tenant_id: TenantId::default_tenant(),
        to_number: to.to_owned(),
        sender: None,
        body: "Hello".to_owned(),
        template_id: None,
        template_version: None,
        category: Category::transactional(),
        encoding: Encoding::Gsm7,
        segments: 1,
        units: 1,
        provider: "twilio".to_owned(),
        max_attempts: 3,
        customer_id: None,
        order_id: None,
        reservation_id: None,
        metadata: None,
        idempotency_key: None,
        request_hash: None,
        due_at: None,
        bulk: false,
        batch_id: None,
        now: T0,
        charge: None,
    }
}

/// Enqueues one message, claims it and lets `provider` accept it as `sid` at `T0 + 1`.
async fn sent(store: &Store, to: &str, provider: &str, sid: &str) -> String {
    let id = store
        .enqueue(&new_message(to))
        .await
        .unwrap()
        .message()
        .id
        .clone();
    let job = store
        .claim("w", T0, Duration::from_secs(30), 1)
        .await
        .unwrap()
        .remove(0);
    let accepted = Accepted {
        provider: provider.to_owned(),
        provider_message_id: sid.to_owned(),
        provider_status: Some("queued".to_owned()),
        segments: None,
        price: None,
        sender: None,
    };
    let outcome = store
        .complete_accepted(job.lease(), &accepted, T0 + 1)
        .await
        .unwrap();
    assert_eq!(outcome, LeaseOutcome::Applied);
    id
}

/// A report about message `id` from a callback at `now`.
fn report(id: &str, sid: &str, status: MessageStatus, now: i64) -> StatusUpdate {
    StatusUpdate {
        lookup: MessageLookup::Id(id.to_owned()),
        status,
        provider_status: Some(status.as_str().to_owned()),
        provider_message_id: Some(sid.to_owned()),
        error: None,
        segments: None,
        price: None,
        sender: None,
        source: EventSource::Webhook,
        now,
    }
}

/// Whether message `id` is a candidate at `now`.
async fn is_candidate(store: &Store, now: i64, id: &str) -> bool {
    let due = store.reconcile_candidates(&query(now, 10)).await.unwrap();
    due.iter().any(|c| c.id == id)
}

/// Candidates are `sent` (or `unknown` with a provider id), kept so for `after_ms`, younger than
/// the maximum age, not stopped, spaced after each ask, and limited per provider.
async fn candidates_are_old_enough_young_enough_and_not_final(store: Store) {
    let tenant = TenantId::default_tenant();
    let a = sent(&store, "+14155550101", "twilio", "SM-a").await;
    let b = sent(&store, "+14155550102", "twilio", "SM-b").await;
    let other = sent(&store, "+14155550103", "other", "SM-o").await;
    let delivered = sent(&store, "+14155550104", "twilio", "SM-d").await;
    let report_delivered = report(&delivered, "SM-d", MessageStatus::Delivered, T0 + 2);
    store
        .apply_status(&tenant, &report_delivered)
        .await
        .unwrap();
    // Unknown without a provider id: nothing to ask with. Unknown once a callback named it: asked.
    for (to, sid) in [("+14155550105", None), ("+14155550106", Some("SM-u"))] {
        let id = store
            .enqueue(&new_message(to))
            .await
            .unwrap()
            .message()
            .id
            .clone();
        let job = store
            .claim("w", T0, Duration::from_secs(30), 1)
            .await
            .unwrap()
            .remove(0);
        let error = ErrorInfo::default();
        let outcome = store
            .finish(job.lease(), MessageStatus::Unknown, &error, T0 + 1)
            .await
            .unwrap();
        assert_eq!(outcome, LeaseOutcome::Applied);
        if let Some(sid) = sid {
            let late = report(&id, sid, MessageStatus::Sent, T0 + 1);
            let applied = store.apply_status(&tenant, &late).await.unwrap().unwrap();
            assert!(!applied.changed, "unknown never moves back to sent");
        }
    }
    store.enqueue(&new_message("+14155550107")).await.unwrap();

    let ids = |candidates: &[herald::store::ReconcileCandidate]| -> Vec<(String, String)> {
        candidates
            .iter()
            .map(|c| (c.provider.clone(), c.provider_message_id.clone()))
            .collect()
    };
    let pairs = |list: &[(&str, &str)]| -> Vec<(String, String)> {
        list.iter()
            .map(|(p, s)| (p.to_string(), s.to_string()))
            .collect()
    };
    // Not yet: they have been sent for AFTER - 1 ms.
    let early = store
        .reconcile_candidates(&query(T0 + AFTER, 10))
        .await
        .unwrap();
    assert!(early.is_empty(), "{early:?}");
    let now = T0 + 1 + AFTER;
    let due = store.reconcile_candidates(&query(now, 10)).await.unwrap();
    assert_eq!(
        ids(&due),
        pairs(&[
            ("other", "SM-o"),
            ("twilio", "SM-a"),
            ("twilio", "SM-b"),
            ("twilio", "SM-u")
        ])
    );
    assert!(due.iter().all(|c| c.reconciled_at.is_none()));
    let unknown = due
        .iter()
        .find(|c| c.provider_message_id == "SM-u")
        .unwrap();
    assert_eq!(unknown.status, MessageStatus::Unknown);
    let limited = store.reconcile_candidates(&query(now, 1)).await.unwrap();
    assert_eq!(
        ids(&limited),
        pairs(&[("other", "SM-o"), ("twilio", "SM-a")])
    );

    // One claim wins; a stale copy of the candidate does not claim it again.
    let first = due.iter().find(|c| c.id == a).unwrap();
    assert!(store.claim_reconcile(first, now).await.unwrap());
    assert!(!store.claim_reconcile(first, now).await.unwrap());
    let claimed = herald::store::ReconcileCandidate {
        reconciled_at: Some(now),
        ..first.clone()
    };
    // It waited AFTER ms before the ask, so the next ask waits AFTER ms more.
    let waiting = store
        .reconcile_candidates(&query(now + AFTER - 1, 10))
        .await
        .unwrap();
    assert!(!waiting.iter().any(|c| c.id == a), "{waiting:?}");
    let next = store
        .reconcile_candidates(&query(now + AFTER, 10))
        .await
        .unwrap();
    let again = next.iter().find(|c| c.id == a).unwrap();
    assert_eq!(again.reconciled_at, Some(now));
    // Asked again at 2·AFTER, the one after waits 2·AFTER: the spacing doubles.
    let later = now + AFTER;
    assert!(store.claim_reconcile(&claimed, later).await.unwrap());
    assert!(!is_candidate(&store, later + 2 * AFTER - 1, &a).await);
    assert!(is_candidate(&store, later + 2 * AFTER, &a).await);

    // A message whose provider can never report it is no longer asked about.
    store
        .stop_reconciling(&tenant, &b, "not found")
        .await
        .unwrap();
    let after_stop = store.reconcile_candidates(&query(now, 10)).await.unwrap();
    assert!(!after_stop.iter().any(|c| c.id == b));
    // A final status ends the asking too, and a claim on a stale candidate fails.
    let stale = due.iter().find(|c| c.id == other).unwrap();
    let final_report = report(&other, "SM-o", MessageStatus::Failed, now);
    store.apply_status(&tenant, &final_report).await.unwrap();
    assert!(!store.claim_reconcile(stale, now).await.unwrap());
    // Past the maximum age nothing is asked about.
    let old = store
        .reconcile_candidates(&query(T0 + MAX_AGE + 1, 10))
        .await
        .unwrap();
    assert!(old.is_empty(), "{old:?}");
    assert!(
        !store
            .reconcile_candidates(&query(T0 + MAX_AGE, 10))
            .await
            .unwrap()
            .is_empty()
    );
}
