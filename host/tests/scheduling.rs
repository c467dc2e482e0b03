//! Sending later and in order: `send_at` on `POST /send`, `POST /messages/{id}/cancel`, and the
//! claim order that keeps a batch from delaying a single send. Each scenario runs on SQLite and
//! on PostgreSQL (`cargo test -p herald --test scheduling`; PostgreSQL on 127.0.0.1:5432).
#![allow(clippy::expect_used, clippy::unwrap_used)]

mod common;

use std::collections::HashSet;
use std::time::Duration;

use common::app::{Backend, TestApp};
use herald::segments::Encoding;
use herald::store::{CancelOutcome, MessageStatus, NewMessage, Store, TenantStatus, new_id};
use herald::{Category, TenantId};
use reqwest::StatusCode;
use serde_json::{Value, json};

on_both_backends!(
    a_future_send_at_is_scheduled_until_canceled,
    a_past_send_at_sends_now,
    send_at_needs_an_offset_and_a_near_date,
    a_sent_message_cannot_be_canceled,
    a_single_send_overtakes_a_running_batch,
);

on_each_backend!(
    claims_take_single_sends_first_and_marketing_last,
    a_scheduled_entry_is_claimed_at_its_time_as_sending,
    cancel_and_claim_never_both_win,
);

const TO: &str = "+14155552671";
/// An arbitrary fixed "now": 2023-11-14T22:13:20Z.
const T0: i64 = 1_700_000_000_000;
const DAY_MS: i64 = 86_400_000;

/// `ms` from now as RFC 3339 in UTC.
fn rfc3339_in(ms: i64) -> String {
    let at = time::OffsetDateTime::now_utc() + time::Duration::milliseconds(ms);
    at.format(&time::format_description::well_known::Rfc3339)
        .unwrap()
}

async fn cancel(app: &TestApp, id: &str) -> (StatusCode, Value) {
    app.post(&format!("/api/v1/sms/messages/{id}/cancel"), &json!({}))
        .await
}

/// A message with a `send_at` an hour ahead waits as `scheduled` (listed under that status, the
/// carrier never called); canceling it makes it `canceled`, and a second cancel is a 409 that
/// names the status.
async fn a_future_send_at_is_scheduled_until_canceled(backend: Backend) {
    let app = TestApp::start(backend).await;
    let message = app
        .send(json!({"to_number": TO, "message": "later", "send_at": rfc3339_in(3_600_000)}))
        .await;
    let id = message["id"].as_str().unwrap();
    assert_eq!(message["status"], "scheduled", "{message:#}");
    assert!(message["send_at"].as_i64().unwrap() > message["created_at"].as_i64().unwrap());
    assert!(message["send_at_iso"].as_str().unwrap().ends_with('Z'));
    let (status, page) = app.get("/api/v1/sms/messages?status=scheduled").await;
    assert_eq!(status, StatusCode::OK, "{page}");
    assert_eq!(page["items"][0]["id"], id);

    let (status, canceled) = cancel(&app, id).await;
    assert_eq!(status, StatusCode::OK, "{canceled}");
    assert_eq!(canceled["status"], "canceled");
    let stored = app.message(id).await;
    assert_eq!(TestApp::history(&stored), ["scheduled", "canceled"]);
    assert_eq!(app.herald.store().count_queue().await.unwrap(), 0);

    let (status, again) = cancel(&app, id).await;
    assert_eq!(status, StatusCode::CONFLICT, "{again}");
    assert_eq!(again["error"]["code"], "not_cancelable");
    assert!(
        again["error"]["message"]
            .as_str()
            .unwrap()
            .contains("canceled"),
        "{again}"
    );
    let (status, missing) = cancel(&app, "msg_nope").await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{missing}");
    assert_eq!(missing["error"]["code"], "message_not_found");
    assert_eq!(app.carrier_requests_to(TO), 0);
    app.stop().await;
}

/// A `send_at` in the past (another offset than UTC, too) sends at once.
async fn a_past_send_at_sends_now(backend: Backend) {
    let app = TestApp::start(backend).await;
    let message = app
        .send(json!({"to_number": TO, "message": "now", "send_at": "2020-01-01T09:00:00-05:00"}))
        .await;
    assert_eq!(message["status"], "queued", "{message:#}");
    assert_eq!(message["send_at"], Value::Null);
    let id = message["id"].as_str().unwrap();
    app.wait_for(id, "delivered").await;
    assert_eq!(app.carrier_requests_to(TO), 1);
    app.stop().await;
}

/// A `send_at` without its offset, not a time at all, or more than 35 days ahead is refused
/// with `invalid_send_at`; 34 days ahead is accepted.
async fn send_at_needs_an_offset_and_a_near_date(backend: Backend) {
    let app = TestApp::start(backend).await;
    for send_at in [
        json!("2030-01-01T09:00:00"),
        json!("next tuesday"),
        json!(rfc3339_in(36 * DAY_MS)),
    ] {
        let (status, body) = app
            .post(
                "/api/v1/sms/send",
                &json!({"to_number": TO, "message": "x", "send_at": send_at}),
            )
            .await;
        assert_eq!(
            status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{send_at}: {body}"
        );
        assert_eq!(body["error"]["code"], "invalid_send_at", "{body}");
    }
    let (status, body) = app
        .post(
            "/api/v1/sms/send",
            &json!({"to_number": TO, "message": "x", "send_at": 42}),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    let ok = app
        .send(json!({"to_number": TO, "message": "x", "send_at": rfc3339_in(34 * DAY_MS)}))
        .await;
    assert_eq!(ok["status"], "scheduled");
    assert_eq!(app.message_count().await, 1);
    app.stop().await;
}

/// Once a message was sent, cancel answers 409 `not_cancelable` naming its status, and changes
/// nothing.
async fn a_sent_message_cannot_be_canceled(backend: Backend) {
    let app = TestApp::start(backend).await;
    let message = app.send(json!({"to_number": TO, "message": "hi"})).await;
    let id = message["id"].as_str().unwrap();
    app.wait_for(id, "delivered").await;
    let (status, body) = cancel(&app, id).await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert_eq!(body["error"]["code"], "not_cancelable");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("delivered"),
        "{body}"
    );
    assert_eq!(app.message(id).await["status"], "delivered");
    app.stop().await;
}

/// With 3,000 bulk marketing rows due ahead of it, a single `/send` of the same tenant is
/// claimed within a second, long before the batch has drained.
async fn a_single_send_overtakes_a_running_batch(backend: Backend) {
    let app = TestApp::start_with(backend, |config| config.delivery.workers = 4).await;
    let store = app.herald.store();
    let tenant = TenantId::default_tenant();
    // The batch is written while the tenant is suspended (its entries held), so that it
    // starts draining at once, just before the single send arrives.
    store
        .set_tenant_status(&tenant, TenantStatus::Suspended)
        .await
        .unwrap();
    let now = app.herald.pipeline().now();
    for i in 0..3_000 {
        let mut row = new_message(&format!("+1415555{:04}", i), now - 1_000);
        row.bulk = true;
        row.category = Category::for_message("marketing").unwrap();
        store.enqueue(&row).await.unwrap();
    }
    store
        .set_tenant_status(&tenant, TenantStatus::Active)
        .await
        .unwrap();
    let started = std::time::Instant::now();
    let single = app
        .send(
            json!({"to_number": TO, "message": "your code is 1234", "category": "authentication"}),
        )
        .await;
    let id = single["id"].as_str().unwrap();
    let mut claimed = None;
    for _ in 0..400 {
        if app.message(id).await["status"] != "queued" {
            claimed = Some(started.elapsed());
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let claimed = claimed.expect("the single send was never claimed");
    let left = store.count_queue().await.unwrap();
    eprintln!("single send claimed after {claimed:?}; {left} of 3000 bulk rows still queued");
    assert!(
        claimed < Duration::from_secs(1),
        "claimed after {claimed:?}"
    );
    assert!(left > 1_000, "the batch had drained first: {left} left");
    app.stop().await;
}

fn new_message(to: &str, now: i64) -> NewMessage {
    NewMessage {
        id: new_id("msg"),
        tenant_id: TenantId::default_tenant(),
        to_number: to.to_owned(),
        sender: None,
        body: "hello".to_owned(),
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
        now,
        charge: None,
    }
}

/// Enqueues a message of `category`, alone or in bulk, accepted at `now`; returns its id.
async fn enqueue(store: &Store, category: &str, bulk: bool, now: i64) -> String {
    let mut new = new_message(TO, now);
    new.category = Category::for_message(category).unwrap();
    new.bulk = bulk;
    store.enqueue(&new).await.unwrap().message().id.clone()
}

async fn claim(store: &Store, now: i64, limit: u32) -> Vec<String> {
    store
        .claim("worker", now, Duration::from_secs(30), limit)
        .await
        .unwrap()
        .into_iter()
        .map(|job| job.message.id)
        .collect()
}

/// Bulk rows queued first wait behind single sends; within each, authentication and
/// transactional go before marketing; an expired lease still goes before everything.
async fn claims_take_single_sends_first_and_marketing_last(store: Store) {
    let mut bulk = Vec::new();
    for i in 0..5 {
        bulk.push(enqueue(&store, "transactional", true, T0 - 10_000 + i).await);
    }
    let bulk_marketing = enqueue(&store, "marketing", true, T0 - 20_000).await;
    let single_marketing = enqueue(&store, "marketing", false, T0 - 5_000).await;
    let auth = enqueue(&store, "authentication", false, T0).await;
    let transactional = enqueue(&store, "transactional", false, T0 - 1).await;

    let first = claim(&store, T0, 2).await;
    assert_eq!(
        first.iter().collect::<HashSet<_>>(),
        [&auth, &transactional].into_iter().collect::<HashSet<_>>()
    );
    assert_eq!(claim(&store, T0, 1).await, [single_marketing]);
    assert_eq!(claim(&store, T0, 3).await.len(), 3);
    let rest = claim(&store, T0, 10).await;
    assert_eq!(rest.len(), 3);
    assert!(rest.contains(&bulk_marketing), "{rest:?}");
    assert!(rest.contains(&bulk[4]), "{rest:?}");

    // A lease that expired (its process died) is taken before a new single send.
    let fresh = enqueue(&store, "authentication", false, T0 + 1).await;
    let later = T0 + 31_000;
    let taken = claim(&store, later, 1).await;
    assert_ne!(
        taken,
        std::slice::from_ref(&fresh),
        "an expired lease should go first"
    );
    assert_eq!(claim(&store, T0 + 1, 100).await, [fresh]);
}

/// A message due later is stored `scheduled`, is not claimed before its time, and is claimed
/// as `sending` at it.
async fn a_scheduled_entry_is_claimed_at_its_time_as_sending(store: Store) {
    let mut new = new_message(TO, T0);
    new.due_at = Some(T0 + 60_000);
    let message = store.enqueue(&new).await.unwrap().message().clone();
    assert_eq!(message.status, MessageStatus::Scheduled);
    assert_eq!(message.send_at, Some(T0 + 60_000));
    assert!(claim(&store, T0 + 59_999, 10).await.is_empty());
    assert_eq!(store.next_due_at().await.unwrap(), Some(T0 + 60_000));
    let jobs = store
        .claim("worker", T0 + 60_000, Duration::from_secs(30), 10)
        .await
        .unwrap();
    assert_eq!(jobs.len(), 1);
    assert_eq!(jobs[0].message.status, MessageStatus::Sending);
    let tenant = TenantId::default_tenant();
    let history: Vec<MessageStatus> = store
        .message_events(&tenant, &message.id)
        .await
        .unwrap()
        .into_iter()
        .map(|event| event.status)
        .collect();
    assert_eq!(history, [MessageStatus::Scheduled, MessageStatus::Sending]);
    let past = NewMessage {
        due_at: Some(T0 - 1),
        ..new_message(TO, T0)
    };
    let past = store.enqueue(&past).await.unwrap().message().clone();
    assert_eq!(past.status, MessageStatus::Queued);
    assert_eq!(past.send_at, None);
}

/// Cancels racing a claim over the same 40 messages: every message ends either claimed
/// (`sending`, its cancel refused) or canceled (never claimed), never both.
async fn cancel_and_claim_never_both_win(store: Store) {
    let tenant = TenantId::default_tenant();
    let mut ids = Vec::new();
    for _ in 0..40 {
        ids.push(enqueue(&store, "transactional", false, T0).await);
    }
    let claimer = {
        let store = store.clone();
        tokio::spawn(async move {
            let mut claimed = Vec::new();
            for _ in 0..8 {
                claimed.extend(claim(&store, T0, 5).await);
            }
            claimed
        })
    };
    let mut cancels = Vec::new();
    for id in ids.iter().rev() {
        let (store, tenant, id) = (store.clone(), tenant.clone(), id.clone());
        cancels.push(tokio::spawn(async move {
            (
                id.clone(),
                store.cancel_message(&tenant, &id, T0).await.unwrap(),
            )
        }));
    }
    let claimed: HashSet<String> = claimer.await.unwrap().into_iter().collect();
    let mut canceled = HashSet::new();
    for cancel in cancels {
        match cancel.await.unwrap() {
            (id, CancelOutcome::Canceled(message)) => {
                assert_eq!(message.status, MessageStatus::Canceled);
                canceled.insert(id);
            }
            (id, CancelOutcome::NotCancelable(message)) => {
                assert_eq!(message.status, MessageStatus::Sending, "{id}");
                assert!(claimed.contains(&id), "{id} refused but not claimed");
            }
            (id, CancelOutcome::NotFound) => panic!("{id} not found"),
        }
    }
    assert!(claimed.is_disjoint(&canceled), "claimed and canceled");
    assert_eq!(claimed.len() + canceled.len(), ids.len());
    assert!(claim(&store, T0, 100).await.is_empty());
}
