//! How many statements each step of a message's life sends to the database, counted from sqlx's
//! own query log (target `sqlx::query`, one event per query it runs), on both backends.
//!
//! The figures are exact: a change that adds a statement to the hot path fails here, and whoever
//! makes it updates the table on purpose. What sqlx logs is what crosses to the database as one
//! query: on SQLite a script (several statements joined into one text) is one round trip and one
//! event; SQLite's transaction control (`BEGIN`, savepoints, `COMMIT`) goes outside the log,
//! PostgreSQL's goes through it. The queries of background tasks (notifications, the rollup
//! folder) are left out.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use herald::store::{
    Accepted, Charge, Hold, MessageLookup, MessageStatus, NewMessage, StatusUpdate, Store,
    StoredBudget, now_millis,
};
use herald::{Money, TenantId};
use tracing::field::{Field, Visit};
use tracing_subscriber::layer::{Context, SubscriberExt as _};

/// Queries logged so far, and the last ones' texts for a failure's message.
static QUERIES: AtomicUsize = AtomicUsize::new(0);
static SEEN: Mutex<Vec<String>> = Mutex::new(Vec::new());
/// One test counts at a time: the counter is the process's.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

struct Counter;

#[derive(Default)]
struct Text(String);

impl Visit for Text {
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "summary" || (field.name() == "db.statement" && !value.is_empty()) {
            self.0.push_str(value);
        }
    }

    fn record_debug(&mut self, _: &Field, _: &dyn std::fmt::Debug) {}
}

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for Counter {
    fn on_event(&self, event: &tracing::Event<'_>, _: Context<'_, S>) {
        if event.metadata().target() != "sqlx::query" {
            return;
        }
        let mut text = Text::default();
        event.record(&mut text);
        // The notifier's and the rollup folder's own queries, from background tasks.
        if ["pg_notify", "_deltas", "VACUUM", "ANALYZE"]
            .iter()
            .any(|background| text.0.contains(background))
        {
            return;
        }
        QUERIES.fetch_add(1, Ordering::SeqCst);
        SEEN.lock().unwrap().push(text.0);
    }
}

/// Installs the counter as the process's subscriber (every thread: sqlx-sqlite logs from its
/// connection's own thread).
fn install() {
    static INSTALLED: OnceLock<()> = OnceLock::new();
    INSTALLED.get_or_init(|| {
        tracing::subscriber::set_global_default(tracing_subscriber::registry().with(Counter))
            .expect("install the counting subscriber");
    });
}

/// Runs `step` and returns how many queries it sent.
async fn count<T>(step: impl std::future::Future<Output = T>) -> (usize, T) {
    SEEN.lock().unwrap().clear();
    let before = QUERIES.load(Ordering::SeqCst);
    let out = step.await;
    (QUERIES.load(Ordering::SeqCst) - before, out)
}

fn seen() -> String {
    SEEN.lock().unwrap().join("\n---\n")
}

const T0: i64 = 1_767_225_600_000;

fn message(charge: Option<Charge>) -> NewMessage {
    NewMessage {
        now: T0,
        charge,
        ..common::db::new_message("default", "+14155550100")
    }
}

/// An estimate of 8,300 micros, reserved on the hard-capped budget `cap`.
fn charge() -> Charge {
    Charge {
        holds: vec![Hold {
            budget: "cap".to_owned(),
            period_start: T0,
            micros: 8_300,
            hard_cap: true,
            limit_micros: 1_000_000_000,
            thresholds: vec![],
        }],
        ..common::db::us_charge()
    }
}

/// The queries per step, as `(step, SQLite, PostgreSQL)`.
const EXPECTED: &[(&str, usize, usize)] = &[
    ("enqueue", 1, 1),
    ("enqueue with a cost and a reservation", 1, 1),
    ("claim of 10", 1, 1),
    ("accepted by the provider", 1, 1),
    ("delivered callback", 2, 5),
    ("sent and delivered callbacks, coalesced", 2, 8),
];

async fn statements_per_step(store: Store, postgres: bool) {
    let now = now_millis();
    store
        .put_budget(&StoredBudget {
            tenant: TenantId::default_tenant(),
            name: "cap".to_owned(),
            period: "monthly".to_owned(),
            limit: Money::new(1_000_000_000, "USD"),
            category: None,
            alert_thresholds: vec![],
            hard_cap: true,
            created_at: now,
            updated_at: now,
        })
        .await
        .unwrap();
    // A first round of every step, so that every statement is prepared and cached.
    store.enqueue(&message(None)).await.unwrap();
    store.enqueue(&message(Some(charge()))).await.unwrap();

    let mut counted = Vec::new();
    let (n, _) = count(store.enqueue(&message(None))).await;
    counted.push(("enqueue", n, seen()));
    let (n, _) = count(store.enqueue(&message(Some(charge())))).await;
    counted.push(("enqueue with a cost and a reservation", n, seen()));
    for _ in 0..6 {
        store.enqueue(&message(None)).await.unwrap();
    }
    let (n, jobs) = count(store.claim("w", T0 + 1, Duration::from_secs(30), 10)).await;
    let jobs = jobs.unwrap();
    assert_eq!(jobs.len(), 10);
    counted.push(("claim of 10", n, seen()));
    let accepted = Accepted {
        provider: "twilio".to_owned(),
        provider_message_id: "SM1".to_owned(),
        provider_status: Some("queued".to_owned()),
        segments: None,
        price: None,
        sender: None,
    };
    let (n, _) = count(store.complete_accepted(jobs[0].lease(), &accepted, T0 + 2)).await;
    counted.push(("accepted by the provider", n, seen()));
    let delivered = common::db::status_report(
        MessageLookup::Provider {
            provider: "twilio".to_owned(),
            provider_message_id: "SM1".to_owned(),
        },
        MessageStatus::Delivered,
        T0 + 3,
    );
    let (n, applied) = count(store.apply_status(&TenantId::default_tenant(), &delivered)).await;
    assert!(applied.unwrap().is_some(), "the callback found its message");
    counted.push(("delivered callback", n, seen()));
    // A carrier's two reports about one message, handed over together: one apply.
    let report = |status: MessageStatus, at: i64| StatusUpdate {
        provider_message_id: Some("SM2".to_owned()),
        ..common::db::status_report(MessageLookup::Id(jobs[1].message.id.clone()), status, at)
    };
    let both = vec![
        report(MessageStatus::Sent, T0 + 4),
        report(MessageStatus::Delivered, T0 + 5),
    ];
    let (n, applied) = count(store.apply_statuses(&TenantId::default_tenant(), both)).await;
    assert!(
        applied
            .iter()
            .all(|a| a.as_ref().unwrap().as_ref().unwrap().changed),
        "both reports moved the message"
    );
    counted.push(("sent and delivered callbacks, coalesced", n, seen()));

    let mut report = String::new();
    let mut wrong = false;
    for ((step, n, text), (expected_step, sqlite, pg)) in counted.iter().zip(EXPECTED) {
        assert_eq!(step, expected_step);
        let expected = if postgres { *pg } else { *sqlite };
        report.push_str(&format!("{step}: {n} (expected {expected})\n"));
        if *n != expected {
            wrong = true;
            report.push_str(&format!("{text}\n===\n"));
        }
    }
    assert!(!wrong, "statements per step changed:\n{report}");
}

mod statements_per_step {
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn sqlite() {
        let _one = super::ONE_AT_A_TIME.lock().await;
        super::install();
        let (store, _dir) = crate::common::db::sqlite().await;
        super::statements_per_step(store, false).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn postgres() {
        let _one = super::ONE_AT_A_TIME.lock().await;
        super::install();
        super::statements_per_step(crate::common::db::postgres().await, true).await;
    }
}
