//! The durable store and queue, each scenario run on SQLite and on PostgreSQL
//! (`cargo test -p herald --test store`; PostgreSQL must be up on 127.0.0.1:5432).
#![allow(clippy::expect_used, clippy::unwrap_used)]

mod common;

use std::collections::HashSet;
use std::time::Duration;

use herald::segments::Encoding;
use herald::store::{
    Accepted, ClaimedJob, ErrorInfo, EventSource, InboundMessage, Keyword, LeaseOutcome, Message,
    MessageFilter, MessageLookup, MessageStatus, Money, NewMessage, NewTemplate, OptOutAction,
    OptOutChange, OptOutMethod, StatusUpdate, Store, StoreError, Tenant, new_id,
};
use herald::{Category, TenantId};

on_each_backend!(
    enqueue_stores_message_entry_and_event,
    idempotency_key_returns_existing_or_conflicts,
    concurrent_claims_take_each_entry_once,
    expired_lease_is_reclaimed,
    expired_leases_are_claimed_before_the_backlog,
    stale_lease_owner_cannot_record_an_outcome,
    reschedule_makes_the_entry_due_later,
    finish_ends_the_attempts,
    callback_for_an_interrupted_attempt_prevents_a_resend,
    status_reports_only_move_forward,
    provider_segment_counts_never_replace_heralds,
    opt_outs_are_category_aware_and_audited,
    inbound_retries_are_stored_once,
    template_names_are_unique_per_tenant,
    list_messages_filters_and_paginates,
    tenants_cannot_see_each_other,
    enqueue_wakes_a_waiting_dispatcher,
    provider_sender_fills_only_a_missing_sender,
    cached_settings_and_budgets_follow_this_process_writes,
    reports_handed_over_together_read_as_if_applied_in_turn,
);

/// An arbitrary fixed "now": 2023-11-14T22:13:20Z.
const T0: i64 = 1_700_000_000_000;
const LEASE: Duration = Duration::from_secs(30);

/// A tenant id from a literal.
fn tid(id: &str) -> TenantId {
    TenantId::new(id).unwrap()
}

fn message(tenant: &str, to: &str, now: i64) -> NewMessage {
    NewMessage {
        id: new_id("msg"),
        tenant_id: tid(tenant),
        to_number: to.to_owned(),
        sender: Some("Herald".to_owned()),
        body: "Your code is 123456".to_owned(),
        template_id: None,
        template_version: None,
        category: Category::transactional(),
        encoding: Encoding::Gsm7,
        segments: 1,
        units: 1,
        provider: "twilio".to_owned(),
        max_attempts: 3,
        customer_id: Some("cus_1".to_owned()),
        order_id: None,
        reservation_id: None,
        metadata: Some(serde_json::json!({"purpose": "login"})),
        idempotency_key: None,
        request_hash: None,
        due_at: None,
        bulk: false,
        batch_id: None,
        now,
        charge: None,
    }
}

async fn enqueue(store: &Store, new: &NewMessage) -> String {
    store
        .enqueue(new)
        .await
        .expect("enqueue")
        .message()
        .id
        .clone()
}

fn error(code: &str) -> ErrorInfo {
    ErrorInfo {
        code: Some(code.to_owned()),
        message: Some(format!("error {code}")),
    }
}

fn accepted(provider_id: &str) -> Accepted {
    Accepted {
        provider: "twilio".to_owned(),
        provider_message_id: provider_id.to_owned(),
        provider_status: Some("queued".to_owned()),
        segments: None,
        price: None,
        sender: None,
    }
}

fn report(provider_id: &str, status: MessageStatus, now: i64) -> StatusUpdate {
    let lookup = MessageLookup::Provider {
        provider: "twilio".to_owned(),
        provider_message_id: provider_id.to_owned(),
    };
    common::db::status_report(lookup, status, now)
}

/// Claims up to `limit` entries due at `now`.
async fn claim(store: &Store, now: i64, limit: u32) -> Vec<ClaimedJob> {
    store.claim("worker", now, LEASE, limit).await.unwrap()
}

/// Reads a message of the default tenant that must exist.
async fn get(store: &Store, id: &str) -> Message {
    store
        .get_message(&tid("default"), id)
        .await
        .unwrap()
        .unwrap()
}

async fn statuses(store: &Store, tenant: &str, id: &str) -> Vec<MessageStatus> {
    let events = store.message_events(&tid(tenant), id).await.unwrap();
    events.into_iter().map(|event| event.status).collect()
}

/// A queued message can be read back whole, with its queue entry and its first status event.
async fn enqueue_stores_message_entry_and_event(store: Store) {
    let new = message("default", "+14155550100", T0);
    let created = store.enqueue(&new).await.unwrap();
    assert!(matches!(created, herald::store::Enqueued::Created(_)));

    let stored = get(&store, &new.id).await;
    assert_eq!(&stored, created.message());
    assert_eq!(stored.status, MessageStatus::Queued);
    assert_eq!(stored.encoding, Encoding::Gsm7);
    assert_eq!(stored.attempts, 0);
    assert_eq!((stored.segments, stored.provider_segments), (1, None));
    assert_eq!(stored.metadata, new.metadata);
    assert_eq!((stored.created_at, stored.updated_at), (T0, T0));

    let events = store
        .message_events(&tid("default"), &new.id)
        .await
        .unwrap();
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].status, MessageStatus::Queued);
    assert_eq!(events[0].source, EventSource::Api);
    assert_eq!(events[0].occurred_at, T0);
    assert_eq!(store.count_queue().await.unwrap(), 1);
    assert_eq!(store.next_due_at().await.unwrap(), Some(T0));
}

/// A retried request under the same idempotency key returns the first message, while a different
/// request under that key is refused; either way only one row exists, and only the first request's
/// charge is recorded (the store writes a new message's cost row before the message itself).
async fn idempotency_key_returns_existing_or_conflicts(store: Store) {
    let mut first = message("default", "+14155550100", T0);
    first.idempotency_key = Some("key-1".to_owned());
    first.request_hash = Some("hash-a".to_owned());
    first.charge = Some(common::db::us_charge());
    let id = enqueue(&store, &first).await;

    let retry = NewMessage {
        id: new_id("msg"),
        ..first.clone()
    };
    match store.enqueue(&retry).await.unwrap() {
        herald::store::Enqueued::Existing(existing) => assert_eq!(existing.id, id),
        other => panic!("expected the existing message, got {other:?}"),
    }

    let different = NewMessage {
        id: new_id("msg"),
        request_hash: Some("hash-b".to_owned()),
        ..first.clone()
    };
    let refused = store.enqueue(&different).await;
    assert!(matches!(refused, Err(StoreError::IdempotencyConflict { key }) if key == "key-1"));

    let page = store
        .list_messages(&tid("default"), &MessageFilter::default())
        .await
        .unwrap();
    assert_eq!(page.items.len(), 1);
    assert_eq!(store.count_queue().await.unwrap(), 1);
    let cost = |id: String| {
        let store = store.clone();
        async move { store.message_cost(&tid("default"), &id).await.unwrap() }
    };
    let charged = cost(id).await.expect("the first request's cost row");
    assert_eq!(charged.estimate, Some(Money::new(8_300, "USD")));
    for other in [retry.id, different.id] {
        assert_eq!(cost(other).await, None, "a reused key charged nothing more");
    }
}

/// Two dispatchers claiming at the same moment each get a disjoint share of the due entries.
async fn concurrent_claims_take_each_entry_once(store: Store) {
    let mut ids = HashSet::new();
    for n in 0..40 {
        ids.insert(enqueue(&store, &message("default", &format!("+1415555{n:04}"), T0)).await);
    }
    let claimer = |worker: &'static str| {
        let store = store.clone();
        tokio::spawn(async move { store.claim(worker, T0, LEASE, 40).await.unwrap() })
    };
    let (a, b) = tokio::join!(claimer("worker-a"), claimer("worker-b"));
    let claimed: Vec<String> = a
        .unwrap()
        .into_iter()
        .chain(b.unwrap())
        .map(|job| job.message.id)
        .collect();
    assert_eq!(claimed.len(), 40, "every entry is claimed once");
    assert_eq!(claimed.into_iter().collect::<HashSet<_>>(), ids);
    assert!(claim(&store, T0, 40).await.is_empty());
}

/// An entry whose lease expired (its process died mid-attempt) is claimed again, counted as a new
/// attempt and flagged as interrupted.
async fn expired_lease_is_reclaimed(store: Store) {
    let id = enqueue(&store, &message("default", "+14155550100", T0)).await;
    let first = claim(&store, T0, 10).await;
    assert_eq!(first.len(), 1);
    assert_eq!((first[0].attempt, first[0].interrupted), (1, false));
    assert_eq!(first[0].message.status, MessageStatus::Sending);

    let during = claim(&store, T0 + 10_000, 10).await;
    assert!(during.is_empty(), "a live lease is not taken");

    let after = claim(&store, T0 + 31_000, 10).await;
    assert_eq!(after.len(), 1);
    assert_eq!(after[0].message.id, id);
    assert_eq!((after[0].attempt, after[0].interrupted), (2, true));
    assert_ne!(after[0].lease_owner, first[0].lease_owner);
    let stored = get(&store, &id).await;
    assert_eq!(stored.attempts, 2);
}

/// Entries whose lease expired (their process died) are taken in the first claim batch, ahead
/// of a backlog that was due before those leases ended.
async fn expired_leases_are_claimed_before_the_backlog(store: Store) {
    let mut orphans = HashSet::new();
    for n in 0..3 {
        orphans.insert(enqueue(&store, &message("default", &format!("+1415555010{n}"), T0)).await);
    }
    let held = claim(&store, T0, 3).await;
    assert_eq!(held.len(), 3);
    // The backlog: due one by one while the orphans' leases (until T0 + 30 s) run.
    let mut backlog = Vec::new();
    for n in 0..20 {
        let due = T0 + 1_000 + n * 1_000;
        backlog.push(enqueue(&store, &message("default", "+14155550200", due)).await);
    }
    let expired = T0 + LEASE.as_millis() as i64 + 1;
    let batch = claim(&store, expired, 5).await;
    let taken: HashSet<String> = batch.iter().map(|job| job.message.id.clone()).collect();
    assert!(
        orphans.is_subset(&taken),
        "orphans {orphans:?}, first batch {taken:?}"
    );
    assert_eq!(batch.len(), 5);
    // The rest of the batch is the oldest of the backlog.
    assert_eq!(taken.difference(&orphans).count(), 2);
    assert!(
        taken.contains(&backlog[0]) && taken.contains(&backlog[1]),
        "{taken:?}"
    );
    for job in batch.iter().filter(|job| orphans.contains(&job.message.id)) {
        assert_eq!((job.attempt, job.interrupted), (2, true));
    }
}

/// A worker whose lease was taken over cannot complete, reschedule or finish the attempt.
async fn stale_lease_owner_cannot_record_an_outcome(store: Store) {
    let id = enqueue(&store, &message("default", "+14155550100", T0)).await;
    let stale = claim(&store, T0, 1).await.remove(0);
    let fresh = claim(&store, T0 + 31_000, 1).await.remove(0);

    let late = T0 + 32_000;
    let outcome = store
        .complete_accepted(stale.lease(), &accepted("SM1"), late)
        .await
        .unwrap();
    assert_eq!(outcome, LeaseOutcome::Lost);
    let outcome = store
        .reschedule(stale.lease(), late, &error("E1"), late)
        .await
        .unwrap();
    assert_eq!(outcome, LeaseOutcome::Lost);
    let outcome = store
        .finish(stale.lease(), MessageStatus::Failed, &error("E2"), late)
        .await
        .unwrap();
    assert_eq!(outcome, LeaseOutcome::Lost);
    let stored = get(&store, &id).await;
    assert_eq!(stored.status, MessageStatus::Sending);
    assert_eq!(stored.provider_message_id, None);

    let outcome = store
        .complete_accepted(fresh.lease(), &accepted("SM2"), late)
        .await
        .unwrap();
    assert_eq!(outcome, LeaseOutcome::Applied);
    let stored = get(&store, &id).await;
    assert_eq!(stored.status, MessageStatus::Sent);
    assert_eq!(stored.provider_message_id.as_deref(), Some("SM2"));
    assert_eq!(store.count_queue().await.unwrap(), 0);
    use MessageStatus::*;
    assert_eq!(
        statuses(&store, "default", &id).await,
        [Queued, Sending, Sending, Sent]
    );
}

/// A rescheduled attempt returns the message to the queue, with its error, until the new due time.
async fn reschedule_makes_the_entry_due_later(store: Store) {
    let id = enqueue(&store, &message("default", "+14155550100", T0)).await;
    let job = claim(&store, T0, 1).await.remove(0);
    let outcome = store
        .reschedule(job.lease(), T0 + 60_000, &error("429"), T0 + 1)
        .await
        .unwrap();
    assert_eq!(outcome, LeaseOutcome::Applied);

    let stored = get(&store, &id).await;
    assert_eq!(stored.status, MessageStatus::Queued);
    assert_eq!(stored.error, Some(error("429")));
    assert_eq!(store.next_due_at().await.unwrap(), Some(T0 + 60_000));
    assert!(claim(&store, T0 + 59_999, 1).await.is_empty());

    let again = claim(&store, T0 + 60_000, 1).await;
    assert_eq!(again.len(), 1);
    assert_eq!((again[0].attempt, again[0].interrupted), (2, false));
}

/// Finishing an attempt as failed removes the entry and records the failure.
async fn finish_ends_the_attempts(store: Store) {
    let id = enqueue(&store, &message("default", "+14155550100", T0)).await;
    let job = claim(&store, T0, 1).await.remove(0);
    let outcome = store
        .finish(job.lease(), MessageStatus::Failed, &error("21211"), T0 + 1)
        .await
        .unwrap();
    assert_eq!(outcome, LeaseOutcome::Applied);

    let stored = get(&store, &id).await;
    assert_eq!(stored.status, MessageStatus::Failed);
    assert_eq!(stored.error, Some(error("21211")));
    assert_eq!(store.count_queue().await.unwrap(), 0);
    let events = store.message_events(&tid("default"), &id).await.unwrap();
    let last = events.last().unwrap();
    assert_eq!(
        (last.status, last.source),
        (MessageStatus::Failed, EventSource::Dispatcher)
    );
    assert_eq!(last.error, Some(error("21211")));
}

/// A delivery report for an attempt whose process died stops the entry from being sent again.
async fn callback_for_an_interrupted_attempt_prevents_a_resend(store: Store) {
    let id = enqueue(&store, &message("default", "+14155550100", T0)).await;
    claim(&store, T0, 1).await;
    let delivered = StatusUpdate {
        lookup: MessageLookup::Id(id.clone()),
        provider_message_id: Some("SM1".to_owned()),
        ..report("SM1", MessageStatus::Delivered, T0 + 5_000)
    };
    store
        .apply_status(&tid("default"), &delivered)
        .await
        .unwrap();

    assert!(claim(&store, T0 + 31_000, 1).await.is_empty());
    assert_eq!(store.count_queue().await.unwrap(), 0);
    assert_eq!(get(&store, &id).await.status, MessageStatus::Delivered);
}

/// Late, duplicate and out-of-order status reports never move a message backwards, yet the price
/// and segment count they report are stored.
async fn status_reports_only_move_forward(store: Store) {
    let id = enqueue(&store, &message("default", "+14155550100", T0)).await;
    let job = claim(&store, T0, 1).await.remove(0);

    // The delivery callback outruns the dispatcher's own record of the acceptance.
    let delivered = store
        .apply_status(
            &tid("default"),
            &report("SM1", MessageStatus::Delivered, T0 + 2),
        )
        .await
        .unwrap();
    assert!(delivered.is_none(), "the provider id is not known yet");
    let by_id = StatusUpdate {
        lookup: MessageLookup::Id(id.clone()),
        provider_message_id: Some("SM1".to_owned()),
        ..report("SM1", MessageStatus::Delivered, T0 + 2)
    };
    let applied = store
        .apply_status(&tid("default"), &by_id)
        .await
        .unwrap()
        .unwrap();
    assert!(applied.changed);
    assert_eq!(applied.previous, MessageStatus::Sending);
    assert_eq!(applied.message.provider_message_id.as_deref(), Some("SM1"));

    let outcome = store
        .complete_accepted(job.lease(), &accepted("SM1"), T0 + 3)
        .await
        .unwrap();
    assert_eq!(outcome, LeaseOutcome::Applied);
    let late_sent = store
        .apply_status(&tid("default"), &report("SM1", MessageStatus::Sent, T0 + 4))
        .await
        .unwrap()
        .unwrap();
    assert!(!late_sent.changed);
    assert_eq!(late_sent.message.status, MessageStatus::Delivered);

    let priced = StatusUpdate {
        price: Some(Money {
            micros: 7_900,
            currency: "USD".to_owned(),
        }),
        segments: Some(2),
        ..report("SM1", MessageStatus::Delivered, T0 + 5)
    };
    let duplicate = store
        .apply_status(&tid("default"), &priced)
        .await
        .unwrap()
        .unwrap();
    assert!(!duplicate.changed);
    assert_eq!(
        duplicate.message.price.as_ref().map(|price| price.micros),
        Some(7_900)
    );
    assert_eq!(duplicate.message.provider_segments, Some(2));
    assert_eq!(duplicate.message.segments, 1, "Herald's own count stays");

    let read = store
        .apply_status(&tid("default"), &report("SM1", MessageStatus::Read, T0 + 6))
        .await
        .unwrap()
        .unwrap();
    assert!(read.changed);
    use MessageStatus::*;
    assert_eq!(
        statuses(&store, "default", &id).await,
        [Queued, Sending, Delivered, Read]
    );
}

/// The segment counts a provider reports, on acceptance and in a later callback, are kept as
/// `provider_segments`, while `segments` stays the count Herald made at acceptance.
async fn provider_segment_counts_never_replace_heralds(store: Store) {
    let id = enqueue(&store, &message("default", "+14155550100", T0)).await;
    let job = claim(&store, T0, 1).await.remove(0);
    let answer = Accepted {
        segments: Some(3),
        ..accepted("SM1")
    };
    let outcome = store
        .complete_accepted(job.lease(), &answer, T0 + 1)
        .await
        .unwrap();
    assert_eq!(outcome, LeaseOutcome::Applied);
    let stored = get(&store, &id).await;
    assert_eq!((stored.segments, stored.provider_segments), (1, Some(3)));

    let callback = StatusUpdate {
        segments: Some(4),
        ..report("SM1", MessageStatus::Delivered, T0 + 2)
    };
    let applied = store
        .apply_status(&tid("default"), &callback)
        .await
        .unwrap()
        .unwrap();
    assert!(applied.changed);
    let after = (applied.message.segments, applied.message.provider_segments);
    assert_eq!(after, (1, Some(4)));
    assert_eq!(get(&store, &id).await, applied.message);

    let silent = store
        .apply_status(
            &tid("default"),
            &report("SM1", MessageStatus::Delivered, T0 + 3),
        )
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        silent.message.provider_segments,
        Some(4),
        "a report without a count keeps the last one"
    );
}

/// Opt-outs block their own category, `all` blocks every category, and each change is audited.
async fn opt_outs_are_category_aware_and_audited(store: Store) {
    let (phone, other) = ("+14155550100", "+14155550199");
    assert!(!blocked(&store, phone, "marketing").await);
    assert!(opt_out(&store, phone, "marketing", T0).await);
    assert!(
        !opt_out(&store, phone, "marketing", T0 + 1).await,
        "already opted out"
    );
    assert!(blocked(&store, phone, "marketing").await);
    assert!(!blocked(&store, phone, "alerts").await);

    assert!(opt_out(&store, phone, "all", T0 + 2).await);
    assert!(blocked(&store, phone, "alerts").await);
    assert!(!blocked(&store, other, "alerts").await);

    let lifted = store.opt_in(&opt_in(phone, T0 + 3)).await;
    assert!(lifted.unwrap());
    assert!(!blocked(&store, phone, "marketing").await);
    let again = store.opt_in(&opt_in(phone, T0 + 4)).await;
    assert!(!again.unwrap(), "nothing left to lift");

    let audit = store.opt_out_events(&tid("default"), phone).await.unwrap();
    let trail: Vec<(&str, OptOutAction)> = audit
        .iter()
        .map(|event| (event.category.as_str(), event.action))
        .collect();
    assert_eq!(
        trail,
        [
            ("marketing", OptOutAction::OptOut),
            ("all", OptOutAction::OptOut),
            ("all", OptOutAction::OptIn),
        ]
    );
    assert_eq!(audit[0].reason.as_deref(), Some("asked"));
    assert_eq!(audit[2].method, OptOutMethod::Keyword);
}

async fn opt_out(store: &Store, phone: &str, category: &str, now: i64) -> bool {
    let category = Category::parse(category).unwrap();
    let change = OptOutChange::new(&tid("default"), phone, category, OptOutMethod::Api, now);
    store.opt_out(&change.because("asked")).await.unwrap()
}

fn opt_in(phone: &str, now: i64) -> OptOutChange {
    OptOutChange::new(
        &tid("default"),
        phone,
        Category::All,
        OptOutMethod::Keyword,
        now,
    )
}

async fn blocked(store: &Store, phone: &str, category: &str) -> bool {
    store
        .is_opted_out(&tid("default"), phone, &Category::parse(category).unwrap())
        .await
        .unwrap()
}

/// A provider's retried inbound webhook is stored once.
async fn inbound_retries_are_stored_once(store: Store) {
    let inbound = InboundMessage {
        id: new_id("inb"),
        tenant_id: tid("default"),
        provider: "twilio".to_owned(),
        provider_message_id: "SM-in-1".to_owned(),
        from_number: "+14155550100".to_owned(),
        to_number: "+14155550999".to_owned(),
        body: "STOP".to_owned(),
        keyword: Some(Keyword::Stop),
        received_at: T0,
    };
    assert!(store.record_inbound(&inbound).await.unwrap());
    let retry = InboundMessage {
        id: new_id("inb"),
        ..inbound.clone()
    };
    assert!(!store.record_inbound(&retry).await.unwrap());
    let other = InboundMessage {
        id: new_id("inb"),
        provider_message_id: "SM-in-2".to_owned(),
        keyword: None,
        ..inbound
    };
    assert!(store.record_inbound(&other).await.unwrap());
}

/// A template name is unique within a tenant, and free in another.
async fn template_names_are_unique_per_tenant(store: Store) {
    add_tenant(&store, "acme").await;
    let template = |tenant: &str| NewTemplate {
        id: new_id("tpl"),
        tenant_id: tid(tenant),
        name: "welcome".to_owned(),
        category: Some(Category::parse("onboarding").unwrap()),
        description: None,
        body: "Hello {{name}}".to_owned(),
        variables: vec!["name".to_owned()],
        is_active: true,
        now: T0,
    };
    let created = store.create_template(&template("default")).await.unwrap();
    assert_eq!(created.variables, ["name"]);
    let read = store
        .get_template(&tid("default"), &created.id)
        .await
        .unwrap();
    assert_eq!(read.as_ref(), Some(&created));

    let duplicate = store.create_template(&template("default")).await;
    assert!(
        matches!(duplicate, Err(StoreError::Conflict(_))),
        "{duplicate:?}"
    );
    store.create_template(&template("acme")).await.unwrap();
    let page = store
        .list_templates(&tid("default"), &Default::default())
        .await
        .unwrap();
    assert_eq!(page.items.len(), 1);
}

/// Listing filters by status, recipient, customer and creation time, and pages newest first
/// without gaps or repeats.
async fn list_messages_filters_and_paginates(store: Store) {
    let mut ids = Vec::new();
    for n in 0..5 {
        let mut new = message("default", "+14155550100", T0 + n);
        if n == 4 {
            new.to_number = "+14155550111".to_owned();
            new.customer_id = Some("cus_2".to_owned());
        }
        ids.push(enqueue(&store, &new).await);
    }
    // Two messages share a timestamp: the id breaks the tie.
    ids.push(enqueue(&store, &message("default", "+14155550100", T0 + 4)).await);
    claim(&store, T0 + 10, 1).await;

    let list = |filter: MessageFilter| {
        let store = store.clone();
        async move { store.list_messages(&tid("default"), &filter).await.unwrap() }
    };
    let mut seen = Vec::new();
    let mut cursor = None;
    loop {
        let page = list(MessageFilter {
            limit: Some(2),
            cursor: cursor.clone(),
            ..MessageFilter::default()
        })
        .await;
        seen.extend(page.items.into_iter().map(|message| message.id));
        cursor = page.next_cursor;
        if cursor.is_none() {
            break;
        }
    }
    let newest_first: Vec<String> = ids.iter().rev().cloned().collect();
    assert_eq!(seen, newest_first);

    let to = list(MessageFilter {
        to_number: Some("+14155550111".to_owned()),
        ..MessageFilter::default()
    });
    assert_eq!(to.await.items.len(), 1);
    let customer = list(MessageFilter {
        customer_id: Some("cus_1".to_owned()),
        ..MessageFilter::default()
    });
    assert_eq!(customer.await.items.len(), 5);
    let sending = list(MessageFilter {
        status: Some(MessageStatus::Sending),
        ..MessageFilter::default()
    });
    assert_eq!(
        sending.await.items[0].id,
        ids[0],
        "the oldest due entry is claimed first"
    );
    let window = list(MessageFilter {
        created_from: Some(T0 + 1),
        created_to: Some(T0 + 3),
        ..MessageFilter::default()
    });
    assert_eq!(window.await.items.len(), 2);

    let bad = MessageFilter {
        cursor: Some("not-a-cursor".to_owned()),
        ..MessageFilter::default()
    };
    let refused = store.list_messages(&tid("default"), &bad).await;
    assert!(matches!(refused, Err(StoreError::InvalidCursor)));
}

/// One tenant can neither read nor update another tenant's messages, and an unknown tenant owns
/// nothing.
async fn tenants_cannot_see_each_other(store: Store) {
    add_tenant(&store, "acme").await;
    let id = enqueue(&store, &message("default", "+14155550100", T0)).await;
    let job = claim(&store, T0, 1).await.remove(0);
    let outcome = store
        .complete_accepted(job.lease(), &accepted("SM1"), T0 + 1)
        .await
        .unwrap();
    assert_eq!(outcome, LeaseOutcome::Applied);

    assert_eq!(store.get_message(&tid("acme"), &id).await.unwrap(), None);
    assert!(
        store
            .message_events(&tid("acme"), &id)
            .await
            .unwrap()
            .is_empty()
    );
    let page = store
        .list_messages(&tid("acme"), &MessageFilter::default())
        .await;
    assert!(page.unwrap().items.is_empty());
    let delivered = report("SM1", MessageStatus::Delivered, T0 + 2);
    assert_eq!(
        store.apply_status(&tid("acme"), &delivered).await.unwrap(),
        None
    );
    let stored = get(&store, &id).await;
    assert_eq!(stored.status, MessageStatus::Sent);

    let stray = store.enqueue(&message("nobody", "+14155550100", T0)).await;
    assert!(
        matches!(stray, Err(StoreError::MissingReference(_))),
        "{stray:?}"
    );
    let again = store.create_tenant(&tenant("acme")).await;
    assert!(matches!(again, Err(StoreError::Conflict(_))), "{again:?}");
}

/// A dispatcher waiting for work wakes as soon as another task enqueues.
async fn enqueue_wakes_a_waiting_dispatcher(store: Store) {
    let waiter = {
        let store = store.clone();
        tokio::spawn(async move { store.wait_for_work(Duration::from_secs(20)).await })
    };
    tokio::time::sleep(Duration::from_millis(50)).await;
    enqueue(&store, &message("default", "+14155550100", T0)).await;
    let woken = tokio::time::timeout(Duration::from_secs(10), waiter).await;
    assert!(woken.expect("woken well before the timeout").unwrap());
}

/// A plain file path opens a SQLite store in WAL mode, creating the file.
#[tokio::test]
async fn sqlite_opens_a_plain_path_in_wal_mode() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("plain.db");
    let options = herald::store::StoreOptions::default();
    let store = Store::connect(path.to_str().unwrap(), &options)
        .await
        .unwrap();
    store.migrate().await.unwrap();
    assert_eq!(store.backend_name(), "sqlite");
    enqueue(&store, &message("default", "+14155550100", T0)).await;
    assert!(dir.path().join("plain.db-wal").exists());
    store.close().await;
}

/// On PostgreSQL an enqueue in one process wakes a dispatcher waiting in another.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_enqueue_wakes_other_processes() {
    let url = common::db::postgres_url().await;
    let options = herald::store::StoreOptions::default();
    let producer = Store::connect(&url, &options).await.unwrap();
    producer.migrate().await.unwrap();
    let consumer = Store::connect(&url, &options).await.unwrap();
    let waiter = tokio::spawn(async move { consumer.wait_for_work(Duration::from_secs(20)).await });
    tokio::time::sleep(Duration::from_millis(200)).await;
    enqueue(&producer, &message("default", "+14155550100", T0)).await;
    let woken = tokio::time::timeout(Duration::from_secs(10), waiter).await;
    assert!(woken.expect("woken well before the timeout").unwrap());
}

async fn add_tenant(store: &Store, id: &str) {
    store.create_tenant(&tenant(id)).await.unwrap();
    assert_eq!(store.get_tenant(&tid(id)).await.unwrap(), Some(tenant(id)));
}

fn tenant(id: &str) -> Tenant {
    Tenant {
        id: tid(id),
        name: format!("Tenant {id}"),
        status: herald::domain::TenantStatus::Active,
        created_at: T0,
    }
}

/// The sender a provider reports on acceptance or in a later report is stored when the message
/// names none, and never replaces the sender the message was queued with.
async fn provider_sender_fills_only_a_missing_sender(store: Store) {
    let named = enqueue(&store, &message("default", "+14155550100", T0)).await;
    let pooled = enqueue(
        &store,
        &NewMessage {
            sender: None,
            ..message("default", "+14155550101", T0)
        },
    )
    .await;
    let mut jobs = claim(&store, T0, 2).await;
    jobs.sort_by_key(|job| job.message.id != named);
    let reported = |id: &str| Accepted {
        sender: Some("+15005550006".to_owned()),
        ..accepted(id)
    };
    for (job, sid) in jobs.iter().zip(["SM1", "SM2"]) {
        let outcome = store
            .complete_accepted(job.lease(), &reported(sid), T0 + 1)
            .await
            .unwrap();
        assert_eq!(outcome, LeaseOutcome::Applied);
    }
    assert_eq!(get(&store, &named).await.sender.as_deref(), Some("Herald"));
    assert_eq!(
        get(&store, &pooled).await.sender.as_deref(),
        Some("+15005550006")
    );

    // A pool picks its sender after acceptance: a later report fills it in, once.
    let late = enqueue(
        &store,
        &NewMessage {
            sender: None,
            ..message("default", "+14155550102", T0)
        },
    )
    .await;
    let job = claim(&store, T0 + 2, 1).await.remove(0);
    let outcome = store
        .complete_accepted(job.lease(), &accepted("SM3"), T0 + 3)
        .await
        .unwrap();
    assert_eq!(outcome, LeaseOutcome::Applied);
    assert_eq!(get(&store, &late).await.sender, None);
    for (sender, now) in [("+15005550007", T0 + 4), ("+15005550008", T0 + 5)] {
        let update = StatusUpdate {
            sender: Some(sender.to_owned()),
            ..report("SM3", MessageStatus::Sent, now)
        };
        store.apply_status(&tid("default"), &update).await.unwrap();
    }
    assert_eq!(
        get(&store, &late).await.sender.as_deref(),
        Some("+15005550007")
    );
}

fn budget(name: &str, limit: i64) -> herald::store::StoredBudget {
    herald::store::StoredBudget {
        tenant: tid("default"),
        name: name.to_owned(),
        period: "monthly".to_owned(),
        limit: Money::new(limit, "USD"),
        category: None,
        alert_thresholds: vec![],
        hard_cap: true,
        created_at: T0,
        updated_at: T0,
    }
}

/// The settings and budgets a send reads are cached, and this process's writes show at once.
async fn cached_settings_and_budgets_follow_this_process_writes(store: Store) {
    let tenant = tid("default");
    assert!(store.list_budgets(&tenant).await.unwrap().is_empty());
    assert_eq!(store.get_tenant_settings(&tenant).await.unwrap(), None);
    store.put_budget(&budget("cap", 1_000)).await.unwrap();
    let budgets = store.list_budgets(&tenant).await.unwrap();
    assert_eq!(budgets.len(), 1, "a new budget is seen at once");
    store.put_budget(&budget("cap", 2_000)).await.unwrap();
    let budgets = store.list_budgets(&tenant).await.unwrap();
    assert_eq!(
        budgets[0].limit.micros, 2_000,
        "a replaced budget is seen at once"
    );
    store
        .put_tenant_settings(&tenant, r#"{"pricing":null}"#, &[], T0)
        .await
        .unwrap();
    let settings = store.get_tenant_settings(&tenant).await.unwrap().unwrap();
    assert_eq!(settings.settings, r#"{"pricing":null}"#);
}

/// PostgreSQL: another process's budget write reaches this process's cache through its
/// notification, well within the cache's 5-second bound.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_other_processes_writes_empty_the_cache() {
    let url = common::db::postgres_url().await;
    let options = herald::store::StoreOptions::default();
    let here = Store::connect(&url, &options).await.unwrap();
    here.migrate().await.unwrap();
    let there = Store::connect(&url, &options).await.unwrap();
    let tenant = tid("default");
    assert!(
        here.list_budgets(&tenant).await.unwrap().is_empty(),
        "cached: none"
    );
    there.put_budget(&budget("cap", 1_000)).await.unwrap();
    let started = std::time::Instant::now();
    loop {
        if here.list_budgets(&tenant).await.unwrap().len() == 1 {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "the other process's budget did not reach this cache within 2 s"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A message's reports handed over together are coalesced into one apply, yet everything they
/// leave behind (each report's answer, the message, its history, its `message.status` events,
/// its cost) equals what the same reports leave when applied one after another.
async fn reports_handed_over_together_read_as_if_applied_in_turn(store: Store) {
    let tenant = tid("default");
    let together = enqueue(&store, &message("default", "+14155550100", T0)).await;
    let in_turn = enqueue(&store, &message("default", "+14155550101", T0)).await;
    claim(&store, T0, 2).await;
    let reports = |id: &str, provider_id: &str| {
        let by_id = |status, at| StatusUpdate {
            lookup: MessageLookup::Id(id.to_owned()),
            provider_message_id: Some(provider_id.to_owned()),
            ..report(provider_id, status, at)
        };
        vec![
            by_id(MessageStatus::Sent, T0 + 10),
            StatusUpdate {
                price: Some(Money {
                    micros: 7_900,
                    currency: "USD".to_owned(),
                }),
                segments: Some(2),
                sender: Some("+15005550006".to_owned()),
                ..by_id(MessageStatus::Delivered, T0 + 20)
            },
            // Late and repeated: it changes nothing.
            by_id(MessageStatus::Sent, T0 + 30),
        ]
    };
    let (reports_before, applies_before, _) = store.status_applies();
    let coalesced: Vec<_> = store
        .apply_statuses(&tenant, reports(&together, "SM1"))
        .await
        .into_iter()
        .map(|r| r.unwrap().unwrap())
        .collect();
    let (reports_after, applies_after, _) = store.status_applies();
    assert_eq!(reports_after - reports_before, 3);
    assert_eq!(
        applies_after - applies_before,
        1,
        "three reports, one apply"
    );
    let mut one_by_one = Vec::new();
    for update in reports(&in_turn, "SM2") {
        one_by_one.push(store.apply_status(&tenant, &update).await.unwrap().unwrap());
    }

    let steps = |results: &[herald::store::ApplyResult]| -> Vec<_> {
        results
            .iter()
            .map(|r| (r.previous, r.message.status, r.changed))
            .collect()
    };
    use MessageStatus::*;
    assert_eq!(
        steps(&coalesced),
        [
            (Sending, Sent, true),
            (Sent, Delivered, true),
            (Delivered, Delivered, false)
        ]
    );
    assert_eq!(steps(&coalesced), steps(&one_by_one));

    let (a, b) = (get(&store, &together).await, get(&store, &in_turn).await);
    assert_eq!(a.status, Delivered);
    assert_eq!(
        (
            &a.status,
            &a.price,
            a.provider_segments,
            &a.sender,
            &a.error
        ),
        (
            &b.status,
            &b.price,
            b.provider_segments,
            &b.sender,
            &b.error
        )
    );
    assert_eq!(a.provider_message_id.as_deref(), Some("SM1"));
    assert_eq!(a.updated_at, b.updated_at);

    let history = |events: Vec<herald::store::StatusEvent>| -> Vec<_> {
        events
            .into_iter()
            .map(|e| (e.status, e.provider_status, e.source, e.occurred_at))
            .collect()
    };
    let a_history = history(store.message_events(&tenant, &together).await.unwrap());
    assert_eq!(
        a_history,
        history(store.message_events(&tenant, &in_turn).await.unwrap())
    );
    assert_eq!(a_history.len(), 4, "queued, sending, sent, delivered");

    let logged = store
        .events_after(&tenant, 0, i64::MAX, 1_000)
        .await
        .unwrap();
    let log_of = |id: &str| -> Vec<_> {
        logged
            .iter()
            .filter(|e| e.message_id.as_deref() == Some(id))
            .map(|e| {
                let mut payload = e.payload.clone();
                if let Some(fields) = payload.as_object_mut() {
                    fields.remove("message_id");
                    fields.remove("to");
                }
                (e.kind.clone(), payload)
            })
            .collect()
    };
    assert_eq!(log_of(&together), log_of(&in_turn));
    assert_eq!(log_of(&together).len(), 4);

    let cost = |id: String| {
        let store = store.clone();
        let tenant = tenant.clone();
        async move {
            let cost = store.message_cost(&tenant, &id).await.unwrap().unwrap();
            (cost.actual, cost.difference_micros)
        }
    };
    assert_eq!(cost(together.clone()).await, cost(in_turn.clone()).await);
}
