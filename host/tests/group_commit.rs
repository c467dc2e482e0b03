//! Durability with group commit: a `202` is never answered before the commit that stores its
//! message, and sends racing at a hard-capped budget each get their own answer while the
//! others in their transaction commit — on SQLite (where the writer batches) and PostgreSQL.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::app::{Backend, TestApp};
use reqwest::StatusCode;
use serde_json::json;
use sqlx::Connection as _;

on_both_backends!(a_202_waits_for_its_commit, racing_sends_fail_alone);

/// Another connection holds the database's write lock (SQLite: `BEGIN IMMEDIATE`; PostgreSQL:
/// an exclusive lock on `messages`), so no enqueue can commit. The send must not be answered
/// while the lock is held, and once it is answered `202`, the message is there for anyone.
async fn a_202_waits_for_its_commit(backend: Backend) {
    let app = TestApp::start(backend).await;
    // A first send, so that every statement the send path needs is prepared.
    app.send(json!({"to_number": "+14155550100", "message": "warm up"}))
        .await;

    let (release, released) = tokio::sync::oneshot::channel::<()>();
    let (locked, is_locked) = tokio::sync::oneshot::channel::<()>();
    let storage = app.storage.clone();
    let holder = tokio::spawn(async move {
        match backend {
            Backend::Sqlite => {
                let mut conn = sqlx::SqliteConnection::connect(&storage).await.unwrap();
                sqlx::query("BEGIN IMMEDIATE")
                    .execute(&mut conn)
                    .await
                    .unwrap();
                locked.send(()).unwrap();
                released.await.unwrap();
                sqlx::query("COMMIT").execute(&mut conn).await.unwrap();
            }
            Backend::Postgres => {
                let mut conn = sqlx::PgConnection::connect(&storage).await.unwrap();
                let mut tx = conn.begin().await.unwrap();
                sqlx::query("LOCK TABLE messages IN EXCLUSIVE MODE")
                    .execute(&mut *tx)
                    .await
                    .unwrap();
                locked.send(()).unwrap();
                released.await.unwrap();
                tx.commit().await.unwrap();
            }
        }
    });
    is_locked.await.unwrap();

    let client = app.client.clone();
    let url = format!("{}/api/v1/sms/send", app.base);
    let mut send = tokio::spawn(async move {
        let response = client
            .post(url)
            .bearer_auth(common::app::API_KEY)
            .json(&json!({"to_number": "+14155550101", "message": "held"}))
            .send()
            .await
            .unwrap();
        let status = response.status();
        (status, response.json::<serde_json::Value>().await.unwrap())
    });
    // Well inside SQLite's 5 s busy timeout: the send waits for the lock, it does not fail.
    let early = tokio::time::timeout(Duration::from_millis(1_500), &mut send).await;
    assert!(
        early.is_err(),
        "the send was answered while its commit could not happen"
    );

    release.send(()).unwrap();
    holder.await.unwrap();
    let (status, body) = send.await.unwrap();
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    let id = body["id"].as_str().unwrap().to_owned();

    // Committed: a connection of its own sees the message at once.
    let stored: i64 = match backend {
        Backend::Sqlite => {
            let mut conn = sqlx::SqliteConnection::connect(&app.storage).await.unwrap();
            sqlx::query_scalar("SELECT COUNT(*) FROM messages WHERE id = $1")
                .bind(&id)
                .fetch_one(&mut conn)
                .await
                .unwrap()
        }
        Backend::Postgres => {
            let mut conn = sqlx::PgConnection::connect(&app.storage).await.unwrap();
            sqlx::query_scalar("SELECT COUNT(*) FROM messages WHERE id = $1")
                .bind(&id)
                .fetch_one(&mut conn)
                .await
                .unwrap()
        }
    };
    assert_eq!(stored, 1);
    app.stop().await;
}

/// 48 sends at once against a hard-capped budget with room for 12: on SQLite they share
/// transactions, and each refused send rolls back only its own writes. Exactly the 12 accepted
/// are stored, each refused one gets `402 budget_exceeded`, and the budget's reservation is
/// exactly 12 estimates.
async fn racing_sends_fail_alone(backend: Backend) {
    let app = TestApp::start(backend).await;
    // Twilio to the US: 8,300 micros a segment by the default price table.
    let (status, budget) = app
        .request(
            app.client
                .put(format!("{}/api/v1/sms/budgets/cap", app.base))
                .json(
                    &json!({"period": "daily", "limit": {"micros": 12 * 8_300, "currency": "USD"},
                    "hard_cap": true}),
                ),
        )
        .await;
    assert!(status.is_success(), "{budget}");
    let mut sends = Vec::new();
    for i in 0..48 {
        let client = app.client.clone();
        let url = format!("{}/api/v1/sms/send", app.base);
        sends.push(tokio::spawn(async move {
            let response = client
                .post(url)
                .bearer_auth(common::app::API_KEY)
                .json(&json!({"to_number": format!("+1415555{:04}", 1000 + i), "message": "race"}))
                .send()
                .await
                .unwrap();
            let status = response.status();
            (status, response.json::<serde_json::Value>().await.unwrap())
        }));
    }
    let mut accepted = Vec::new();
    let mut refused = 0;
    for send in sends {
        let (status, body) = send.await.unwrap();
        match status {
            StatusCode::ACCEPTED => accepted.push(body["id"].as_str().unwrap().to_owned()),
            StatusCode::PAYMENT_REQUIRED => {
                assert_eq!(body["error"]["code"], "budget_exceeded", "{body}");
                refused += 1;
            }
            other => panic!("unexpected {other}: {body}"),
        }
    }
    assert_eq!((accepted.len(), refused), (12, 36));
    for id in &accepted {
        let (status, message) = app.get(&format!("/api/v1/sms/messages/{id}")).await;
        assert_eq!(status, StatusCode::OK, "{message}");
    }
    assert_eq!(app.message_count().await, 12);
    let (_, budgets) = app.get("/api/v1/sms/budgets").await;
    let usage = &budgets["items"][0]["usage"];
    let committed =
        usage["spent"]["micros"].as_i64().unwrap() + usage["reserved"]["micros"].as_i64().unwrap();
    assert_eq!(committed, 12 * 8_300, "{budgets:#}");
    app.stop().await;
}

/// PostgreSQL's enqueue lanes: an enqueue whose statement fails inside a batch (its tenant does
/// not exist) fails alone; the others of its batch are stored and answered.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_a_failing_enqueue_in_a_batch_fails_alone() {
    use herald::store::{Enqueued, StoreError};

    let url = common::db::postgres_url().await;
    let store = migrated_store(&url).await;
    // While another transaction holds `messages`, the lanes' first enqueues wait, and every
    // enqueue after them queues up for the next batches.
    let mut holder = hold_messages(&url).await;
    let before = store.group_commits().unwrap();
    let enqueue = |tenant: &'static str, i: usize| {
        let store = store.clone();
        tokio::spawn(async move {
            let new = common::db::new_message(tenant, &format!("+1415555{:04}", 2000 + i));
            store.enqueue(&new).await
        })
    };
    let mut good = Vec::new();
    for i in 0..4 {
        good.push(enqueue("default", i));
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    for i in 4..24 {
        good.push(enqueue("default", i));
    }
    let bad = enqueue("no-such-tenant", 99);
    release_once_queued(&mut holder, &bad).await;

    let failed = bad.await.unwrap();
    assert!(
        matches!(failed, Err(StoreError::MissingReference(_))),
        "the bad enqueue gets its own error: {failed:?}"
    );
    for send in good {
        let stored = send.await.unwrap().expect("the good enqueues are stored");
        assert!(matches!(stored, Enqueued::Created(_)));
    }
    let batches = store.group_commits().unwrap() - before;
    assert!(
        batches < 25,
        "the 25 enqueues went in fewer transactions than one each ({batches})"
    );
    let stored: i64 = sqlx::query_scalar("SELECT count(*) FROM messages")
        .fetch_one(&mut holder)
        .await
        .unwrap();
    assert_eq!(stored, 24);
}

/// PostgreSQL's enqueue lanes reserve a batch's sum on a budget at once: with room, every message
/// is reserved and each threshold fires once; without room for the whole batch, each message
/// runs alone and the hard cap is never overshot.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_a_batch_reserves_its_sum_and_never_overshoots_a_cap() {
    use herald::Money;
    use herald::store::{Charge, Enqueued, Hold, StoreError, StoredBudget, TenantId};

    const PRICE: i64 = 8_300;
    const PERIOD: i64 = 1_764_547_200_000;
    let url = common::db::postgres_url().await;
    let store = migrated_store(&url).await;
    let tenant = TenantId::default_tenant();
    let now = herald::store::now_millis();
    store
        .put_budget(&StoredBudget {
            tenant: tenant.clone(),
            name: "cap".to_owned(),
            period: "monthly".to_owned(),
            limit: Money::new(30 * PRICE, "USD"),
            category: None,
            alert_thresholds: vec![50],
            hard_cap: true,
            created_at: now,
            updated_at: now,
        })
        .await
        .unwrap();
    let charged = |i: usize| {
        let mut new = common::db::new_message("default", &format!("+1415555{:04}", 3000 + i));
        new.charge = Some(Charge {
            provider: "twilio".to_owned(),
            country: Some("US".to_owned()),
            segments: 1,
            estimate: Some(Money::new(PRICE, "USD")),
            source: Some("config".to_owned()),
            reason: None,
            holds: vec![Hold {
                budget: "cap".to_owned(),
                period_start: PERIOD,
                micros: PRICE,
                hard_cap: true,
                limit_micros: 30 * PRICE,
                thresholds: vec![50],
            }],
        });
        new
    };
    // Sends while `messages` is held, so that all but the lanes' first ones queue into batches.
    let held_round = |range: std::ops::Range<usize>| {
        let (store, url) = (store.clone(), url.clone());
        let charged = &charged;
        let news: Vec<_> = range.map(charged).collect();
        async move {
            let mut holder = hold_messages(&url).await;
            let before = store.group_commits().unwrap();
            let sends: Vec<_> = news
                .into_iter()
                .map(|new| {
                    let store = store.clone();
                    tokio::spawn(async move { store.enqueue(&new).await })
                })
                .collect();
            tokio::time::sleep(Duration::from_millis(400)).await;
            release(&mut holder).await;
            let mut results = Vec::new();
            for send in sends {
                results.push(send.await.unwrap());
            }
            (results, store.group_commits().unwrap() - before)
        }
    };

    // 24 messages, room for 30: all reserved, in fewer transactions than messages.
    let (results, batches) = held_round(0..24).await;
    assert!(
        results
            .iter()
            .all(|result| matches!(result, Ok(Enqueued::Created(_)))),
        "{results:?}"
    );
    assert!(batches < 24, "the messages went in batches ({batches})");
    let usage = store.budget_usage(&tenant, "cap", PERIOD).await.unwrap();
    assert_eq!(usage.reserved_micros, 24 * PRICE);
    let alerts = store.budget_alerts(&tenant, "cap", PERIOD).await.unwrap();
    assert_eq!(alerts.len(), 1, "the 50 % threshold fired once: {alerts:?}");

    // 10 more, room for 6: the batch does not fit, each runs alone, exactly 6 are taken.
    let (results, _) = held_round(24..34).await;
    let taken = results
        .iter()
        .filter(|result| matches!(result, Ok(Enqueued::Created(_))))
        .count();
    let refused = results
        .iter()
        .filter(|result| matches!(result, Err(StoreError::BudgetExceeded { .. })))
        .count();
    assert_eq!((taken, refused), (6, 4), "{results:?}");
    let usage = store.budget_usage(&tenant, "cap", PERIOD).await.unwrap();
    assert_eq!(
        usage.reserved_micros,
        30 * PRICE,
        "the cap is reached, not passed"
    );
    let stored: i64 = sqlx::query_scalar("SELECT count(*) FROM messages")
        .fetch_one(&mut sqlx::PgConnection::connect(&url).await.unwrap())
        .await
        .unwrap();
    assert_eq!(stored, 30, "a refused message stores nothing");
}

/// PostgreSQL's status batches: a report whose statements fail inside a batch (its provider
/// status holds a NUL, which PostgreSQL's text cannot store) fails alone; the other reports of
/// its batch are applied and answered, and the bad one's message is left as it was.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_a_failing_status_report_in_a_batch_fails_alone() {
    use herald::TenantId;
    use herald::store::{MessageLookup, MessageStatus, StatusUpdate};

    let url = common::db::postgres_url().await;
    let store = migrated_store(&url).await;
    let mut ids = Vec::new();
    for i in 0..12 {
        let new = common::db::new_message("default", &format!("+1415555{:04}", 3000 + i));
        ids.push(new.id.clone());
        store.enqueue(&new).await.unwrap();
    }
    let now = herald::store::now_millis();
    let claimed = store
        .claim("w", now, Duration::from_secs(30), 12)
        .await
        .unwrap();
    assert_eq!(claimed.len(), 12);

    let report = |id: &str, provider_status: &str| StatusUpdate {
        provider_status: Some(provider_status.to_owned()),
        ..common::db::status_report(
            MessageLookup::Id(id.to_owned()),
            MessageStatus::Sent,
            now + 1,
        )
    };
    let apply = |update: StatusUpdate| {
        let store = store.clone();
        tokio::spawn(async move {
            store
                .apply_status(&TenantId::default_tenant(), &update)
                .await
        })
    };
    // While another transaction holds `messages`, the first report waits for its row lock and
    // the others queue up for the next batch.
    let mut holder = hold_messages(&url).await;
    let (_, _, batches_before) = store.status_applies();
    let mut good = vec![apply(report(&ids[0], "sent"))];
    tokio::time::sleep(Duration::from_millis(200)).await;
    for id in &ids[1..11] {
        good.push(apply(report(id, "sent")));
    }
    let bad = apply(report(&ids[11], "sent\0"));
    release_once_queued(&mut holder, &bad).await;

    let failed = bad.await.unwrap();
    assert!(failed.is_err(), "the bad report gets its own error");
    for apply in good {
        let applied = apply.await.unwrap().expect("the good reports are applied");
        assert!(applied.expect("its message is found").changed);
    }
    let (_, _, batches_after) = store.status_applies();
    assert!(
        batches_after - batches_before < 12,
        "the 12 reports went in fewer batches than one each"
    );
    let sent: i64 = sqlx::query_scalar("SELECT count(*) FROM messages WHERE status = 'sent'")
        .fetch_one(&mut holder)
        .await
        .unwrap();
    assert_eq!(sent, 11);
    let bad_status: String = sqlx::query_scalar("SELECT status FROM messages WHERE id = $1")
        .bind(&ids[11])
        .fetch_one(&mut holder)
        .await
        .unwrap();
    assert_eq!(bad_status, "sending");
}

/// A PostgreSQL connection of its own whose open transaction holds `messages` in `EXCLUSIVE`
/// mode: nothing that writes or row-locks a message goes on until [`release`].
async fn hold_messages(url: &str) -> sqlx::PgConnection {
    let mut holder = sqlx::PgConnection::connect(url).await.unwrap();
    sqlx::raw_sql("BEGIN; LOCK TABLE messages IN EXCLUSIVE MODE")
        .execute(&mut holder)
        .await
        .unwrap();
    holder
}

/// Commits the holder's transaction, letting the writes waiting on `messages` go on.
async fn release(holder: &mut sqlx::PgConnection) {
    sqlx::raw_sql("COMMIT").execute(holder).await.unwrap();
}

/// Gives the writes started while `messages` is held time to queue up behind the first ones,
/// checks that `bad` (the last of them) is still waiting, then releases them.
async fn release_once_queued<T>(holder: &mut sqlx::PgConnection, bad: &tokio::task::JoinHandle<T>) {
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        !bad.is_finished(),
        "nothing commits while the table is held"
    );
    release(holder).await;
}

/// PostgreSQL's outcome lane: the outcomes of a dispatch batch are recorded in shared
/// transactions, and one whose statements fail (its error message holds a NUL, which
/// PostgreSQL's text cannot store) fails alone while the others of its batch are recorded.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_a_failing_outcome_in_a_batch_fails_alone() {
    use herald::store::{Accepted, ErrorInfo, LeaseOutcome, MessageStatus};

    let url = common::db::postgres_url().await;
    let store = migrated_store(&url).await;
    for i in 0..12 {
        let new = common::db::new_message("default", &format!("+1415555{:04}", 4000 + i));
        store.enqueue(&new).await.unwrap();
    }
    let now = herald::store::now_millis();
    let mut jobs = store
        .claim("w", now, Duration::from_secs(30), 12)
        .await
        .unwrap();
    assert_eq!(jobs.len(), 12);
    let bad_job = jobs.pop().unwrap();
    let bad_id = bad_job.message.id.clone();
    let accept = |job: herald::store::ClaimedJob| {
        let store = store.clone();
        tokio::spawn(async move {
            let accepted = Accepted {
                provider: "twilio".to_owned(),
                provider_message_id: format!("SM{}", job.message.id),
                provider_status: Some("queued".to_owned()),
                segments: None,
                price: None,
                sender: None,
            };
            store
                .complete_accepted(job.lease(), &accepted, now + 1)
                .await
        })
    };

    let mut holder = hold_messages(&url).await;
    let before = store.outcome_commits().unwrap();
    let mut good = vec![accept(jobs.remove(0))];
    tokio::time::sleep(Duration::from_millis(200)).await;
    good.extend(jobs.into_iter().map(accept));
    let bad = {
        let store = store.clone();
        tokio::spawn(async move {
            let error = ErrorInfo {
                code: Some("30003".to_owned()),
                message: Some("unreachable\0".to_owned()),
            };
            store
                .finish(bad_job.lease(), MessageStatus::Failed, &error, now + 1)
                .await
        })
    };
    release_once_queued(&mut holder, &bad).await;

    assert!(
        bad.await.unwrap().is_err(),
        "the bad outcome gets its own error"
    );
    for accept in good {
        let outcome = accept
            .await
            .unwrap()
            .expect("the good outcomes are recorded");
        assert_eq!(outcome, LeaseOutcome::Applied);
    }
    let commits = store.outcome_commits().unwrap() - before;
    assert!(
        commits < 12,
        "the 12 outcomes went in fewer transactions than one each ({commits})"
    );
    let sent: i64 = sqlx::query_scalar("SELECT count(*) FROM messages WHERE status = 'sent'")
        .fetch_one(&mut holder)
        .await
        .unwrap();
    assert_eq!(sent, 11);
    let (status, queued): (String, i64) = sqlx::query_as(
        "SELECT status, (SELECT count(*) FROM queue_entries WHERE message_id = $1)
         FROM messages WHERE id = $1",
    )
    .bind(&bad_id)
    .fetch_one(&mut holder)
    .await
    .unwrap();
    assert_eq!(
        (status.as_str(), queued),
        ("sending", 1),
        "the bad one is left as it was"
    );
}

/// A store of its own on `url`, migrated.
async fn migrated_store(url: &str) -> herald::store::Store {
    let options = herald::store::StoreOptions::default();
    let store = herald::store::Store::connect(url, &options).await.unwrap();
    store.migrate().await.unwrap();
    store
}
