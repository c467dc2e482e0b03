//! Recurring schedules: the routes over HTTP, and firing driven by a manual clock (no sleeps):
//! each fire time once, downtime caught up once or skipped, daylight-saving changes in New York,
//! and two Heralds racing on one database. Each scenario runs on SQLite and on PostgreSQL
//! (`cargo test -p herald --test schedules`; PostgreSQL on 127.0.0.1:5432).
#![allow(clippy::expect_used, clippy::unwrap_used)]

mod common;

use std::collections::HashSet;
use std::sync::Arc;

use common::app::{self, Backend, TestApp};
use herald::clock::ManualClock;
use herald::pipeline::accept::{self, Content};
use herald::pipeline::bulk::{self, BatchRequest, Recipient};
use herald::pipeline::schedules::{self, Audience, ScheduleRequest};
use herald::pipeline::templates::{self, TemplateDraft};
use herald::store::{Message, MessageFilter, ScheduleTiming};
use herald::{Herald, TenantId};
use reqwest::StatusCode;
use serde_json::{Value, json};

on_both_backends!(
    schedule_routes_create_read_list_pause_retime_and_delete,
    bad_schedules_are_refused,
    each_fire_time_creates_its_messages_once,
    downtime_fires_once_late_or_is_skipped,
    daylight_saving_changes_neither_repeat_nor_lose_a_firing,
    two_heralds_on_one_database_fire_once,
    a_batch_schedule_sends_to_the_batchs_recipients,
);

const RECIPIENTS: [&str; 2] = ["+14155550101", "+14155550102"];

/// UTC ms of a UTC wall time `YYYY-MM-DD HH:MM`.
fn utc(text: &str) -> i64 {
    let format = time::macros::format_description!("[year]-[month]-[day] [hour]:[minute]");
    time::PrimitiveDateTime::parse(text, &format)
        .unwrap()
        .assume_utc()
        .unix_timestamp()
        * 1_000
}

async fn create_template(app: &TestApp) -> String {
    let (status, template) = app
        .post(
            "/api/v1/sms/templates",
            &json!({"name": "reminder", "template_body": "Hi {{name}}, see you soon"}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{template}");
    template["id"].as_str().unwrap().to_owned()
}

/// Every route: create (201, next fire times on New York's clock), read, list with a cursor,
/// pause (no fire times), resume with a new expression, delete (204, then 404).
async fn schedule_routes_create_read_list_pause_retime_and_delete(backend: Backend) {
    let app = TestApp::start(backend).await;
    let template = create_template(&app).await;
    let body = json!({
        "name": "morning reminder",
        "cron": "0 9 * * *",
        "timezone": "America/New_York",
        "template_id": template,
        "template_variables": {"name": "Ada"},
        "recipients": RECIPIENTS,
        "category": "transactional",
    });
    let (status, created) = app.post("/api/v1/sms/schedules", &body).await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let id = created["id"].as_str().unwrap().to_owned();
    assert!(id.starts_with("sch_"), "{id}");
    assert_eq!(created["paused"], false);
    assert_eq!(created["catch_up"], true);
    let times = created["next_fire_times"].as_array().unwrap();
    assert_eq!(times.len(), 5, "{created}");
    for time in times {
        let time = time.as_str().unwrap();
        assert!(time.contains("T09:00:00-0"), "{time}");
    }

    let (status, read) = app.get(&format!("/api/v1/sms/schedules/{id}")).await;
    assert_eq!(status, StatusCode::OK, "{read}");
    assert_eq!(read["next_fire_times"], created["next_fire_times"]);
    assert_eq!(read["recipients"], json!(RECIPIENTS));

    let (status, _) = app
        .post(
            "/api/v1/sms/schedules",
            &json!({"name": "second", "cron": "*/5 * * * *", "message": "ping", "recipients": [RECIPIENTS[0]]}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);
    let (status, first_page) = app.get("/api/v1/sms/schedules?limit=1").await;
    assert_eq!(status, StatusCode::OK, "{first_page}");
    assert_eq!(first_page["items"][0]["name"], "second");
    let cursor = first_page["next_cursor"].as_str().unwrap();
    let (_, second_page) = app
        .get(&format!("/api/v1/sms/schedules?limit=1&cursor={cursor}"))
        .await;
    assert_eq!(second_page["items"][0]["id"], id.as_str());
    assert_eq!(second_page["next_cursor"], Value::Null);

    let path = format!("/api/v1/sms/schedules/{id}");
    let patch =
        |body: Value| app.request(app.client.patch(format!("{}{path}", app.base)).json(&body));
    let (status, paused) = patch(json!({"paused": true})).await;
    assert_eq!(status, StatusCode::OK, "{paused}");
    assert_eq!(paused["paused"], true);
    assert_eq!(paused["next_fire_times"], json!([]));
    assert_eq!(paused["next_fire_at"], Value::Null);
    let (status, resumed) = patch(json!({"paused": false, "cron": "30 8 * * MON-FRI"})).await;
    assert_eq!(status, StatusCode::OK, "{resumed}");
    assert_eq!(resumed["cron"], "30 8 * * MON-FRI");
    for time in resumed["next_fire_times"].as_array().unwrap() {
        assert!(time.as_str().unwrap().contains("T08:30:00-0"), "{time}");
    }
    let (status, refused) = patch(json!({"timezone": "Mars/Olympus_Mons"})).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{refused}");
    assert_eq!(refused["error"]["code"], "invalid_timezone");
    let (status, refused) = patch(json!({})).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{refused}");

    let delete = || app.request(app.client.delete(format!("{}{path}", app.base)));
    let (status, _) = delete().await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, gone) = app.get(&path).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{gone}");
    assert_eq!(gone["error"]["code"], "schedule_not_found");
    let (status, _) = delete().await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, missing) = patch(json!({"paused": true})).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{missing}");
    app.stop().await;
}

/// A bad cron, a numeric day of the week, an unknown time zone, a bad recipient, no audience
/// or two, a batch (not available yet), an unknown template, a missing variable, an unknown
/// field and a bad cursor are each refused with their own code, and nothing is stored.
async fn bad_schedules_are_refused(backend: Backend) {
    let app = TestApp::start(backend).await;
    let template = create_template(&app).await;
    let base = json!({
        "name": "n", "cron": "0 9 * * *", "timezone": "UTC",
        "template_id": template, "template_variables": {"name": "Ada"},
        "recipients": RECIPIENTS,
    });
    let with = |changes: Value| {
        let mut body = base.clone();
        for (key, value) in changes.as_object().unwrap() {
            if value.is_null() {
                body.as_object_mut().unwrap().remove(key);
            } else {
                body[key] = value.clone();
            }
        }
        body
    };
    let cases = [
        (json!({"cron": "every morning"}), "invalid_cron"),
        (json!({"cron": "0 9 * * 1-5"}), "invalid_cron"),
        (json!({"cron": "0 0 9 * * * 2020"}), "invalid_cron"),
        (json!({"timezone": "America/Gotham"}), "invalid_timezone"),
        (
            json!({"recipients": ["+14155550101", "555"]}),
            "invalid_phone_number",
        ),
        (json!({"recipients": []}), "invalid_field"),
        (json!({"recipients": null}), "invalid_field"),
        (json!({"batch_id": "bat_1"}), "invalid_field"),
        (json!({"template_id": "tpl_nope"}), "unknown_template"),
        (
            json!({"template_variables": {}}),
            "missing_template_variable",
        ),
        (json!({"surprise": 1}), "invalid_field"),
        (json!({"name": ""}), "invalid_field"),
    ];
    for (changes, code) in cases {
        let (status, body) = app
            .post("/api/v1/sms/schedules", &with(changes.clone()))
            .await;
        assert_eq!(
            status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{changes}: {body}"
        );
        assert_eq!(body["error"]["code"], code, "{changes}: {body}");
    }
    // A batch that is not the tenant's is not found.
    let (status, body) = app
        .post(
            "/api/v1/sms/schedules",
            &with(json!({"recipients": null, "batch_id": "bat_nope"})),
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    assert_eq!(body["error"]["code"], "batch_not_found");
    let (_, body) = app
        .post(
            "/api/v1/sms/schedules",
            &with(json!({"recipients": ["+14155550101", "555"]})),
        )
        .await;
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .starts_with("recipients[1]"),
        "{body}"
    );
    let (status, body) = app.get("/api/v1/sms/schedules?cursor=garbage").await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(body["error"]["code"], "invalid_query");
    let (status, list) = app.get("/api/v1/sms/schedules").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(list["items"], json!([]));
    app.stop().await;
}

/// A Herald on `backend` whose time is `clock`, with no dispatcher running (nothing is sent;
/// messages stay queued for inspection), and the storage URL a second Herald may share.
struct Manual {
    herald: Herald,
    clock: Arc<ManualClock>,
    storage: String,
    _dir: tempfile::TempDir,
}

impl Manual {
    async fn start(backend: Backend, now: i64) -> Self {
        let (storage, dir) = app::storage_url(backend).await;
        let clock = ManualClock::new(now);
        let herald = Self::herald(&storage, &clock).await;
        Self {
            herald,
            clock,
            storage,
            _dir: dir,
        }
    }

    async fn herald(storage: &str, clock: &Arc<ManualClock>) -> Herald {
        // The carrier is never called: nothing dispatches.
        let config = app::config("http://127.0.0.1:9", "http://127.0.0.1:9", storage);
        Herald::builder()
            .config(config)
            .clock(clock.clone())
            .build()
            .await
            .unwrap()
    }

    /// Creates a schedule of the default tenant sending a template to `RECIPIENTS`.
    async fn schedule(&self, cron: &str, timezone: &str, catch_up: bool) -> String {
        let pipeline = self.herald.pipeline();
        let tenant = TenantId::default_tenant();
        let template = match templates::get(pipeline, &tenant, "reminder").await {
            Ok(template) => template,
            Err(_) => templates::create(
                pipeline,
                &tenant,
                TemplateDraft {
                    name: "reminder".into(),
                    category: None,
                    description: None,
                    body: "Hi {{name}}".into(),
                    is_active: true,
                },
            )
            .await
            .unwrap(),
        };
        let request = ScheduleRequest {
            name: format!("{cron} in {timezone}"),
            cron: cron.into(),
            timezone: timezone.into(),
            content: Content::Template {
                template: template.id,
                variables: [("name".to_string(), json!("Ada"))].into_iter().collect(),
            },
            audience: Audience::Recipients(
                RECIPIENTS
                    .iter()
                    .map(|n| accept::recipient(n).unwrap())
                    .collect(),
            ),
            category: None,
            catch_up,
        };
        schedules::create(pipeline, &tenant, request)
            .await
            .unwrap()
            .schedule
            .id
    }

    /// Runs one scheduler pass at `now`.
    async fn fire_at(&self, now: i64) -> schedules::Pass {
        self.clock.set(now);
        schedules::fire_due(self.herald.pipeline(), "test")
            .await
            .unwrap()
    }

    async fn messages(&self) -> Vec<Message> {
        let filter = MessageFilter {
            limit: Some(500),
            ..MessageFilter::default()
        };
        self.herald
            .store()
            .list_messages(&TenantId::default_tenant(), &filter)
            .await
            .unwrap()
            .items
    }
}

/// The fire times (UTC ms) the messages were created for, in order, each once per recipient.
fn fire_times(messages: &[Message]) -> Vec<i64> {
    let mut times: Vec<i64> = messages
        .iter()
        .map(|m| m.metadata.as_ref().unwrap()["fire_at"].as_i64().unwrap())
        .collect();
    times.sort_unstable();
    times.dedup();
    for time in &times {
        let count = messages
            .iter()
            .filter(|m| m.metadata.as_ref().unwrap()["fire_at"] == *time)
            .count();
        assert_eq!(count, RECIPIENTS.len(), "fire time {time}");
    }
    times
}

/// A fire time creates one message per recipient (bulk, keyed by schedule, time and
/// recipient); passes before it and after it create nothing, and a fire time repeated as if the
/// process had died before moving on replays the same messages instead of creating new ones.
async fn each_fire_time_creates_its_messages_once(backend: Backend) {
    let manual = Manual::start(backend, utc("2026-01-10 13:00")).await;
    let id = manual.schedule("0 9 * * *", "America/New_York", true).await;
    assert_eq!(manual.fire_at(utc("2026-01-10 13:59")).await.fired, 0);
    let pass = manual.fire_at(utc("2026-01-10 14:00") + 500).await;
    assert_eq!((pass.fired, pass.messages), (1, 2), "{pass:?}");
    assert_eq!(manual.fire_at(utc("2026-01-10 14:01")).await.fired, 0);
    let messages = manual.messages().await;
    assert_eq!(messages.len(), 2);
    let keys: HashSet<String> = messages
        .iter()
        .map(|m| m.idempotency_key.clone().unwrap())
        .collect();
    let due = utc("2026-01-10 14:00");
    for index in 0..2 {
        assert!(
            keys.contains(&schedules::fire_key(&id, due, index)),
            "{keys:?}"
        );
    }
    assert_eq!(messages[0].body, "Hi Ada");

    // As if the process died after creating the messages and before moving on.
    let tenant = TenantId::default_tenant();
    let store = manual.herald.store();
    let schedule = store.get_schedule(&tenant, &id).await.unwrap().unwrap();
    assert_eq!(schedule.last_fired_at, Some(due));
    assert_eq!(schedule.next_fire_at, Some(utc("2026-01-11 14:00")));
    let timing = ScheduleTiming {
        cron: schedule.cron.clone(),
        timezone: schedule.timezone.clone(),
        paused: false,
        next_fire_at: Some(due),
    };
    store
        .update_schedule_timing(&tenant, &id, &timing, due)
        .await
        .unwrap();
    let pass = manual.fire_at(utc("2026-01-10 14:02")).await;
    assert_eq!((pass.fired, pass.messages), (1, 0), "{pass:?}");
    assert_eq!(manual.messages().await.len(), 2);
    assert_eq!(fire_times(&manual.messages().await), [due]);
}

/// After five hours down, an hourly schedule fires once, late, and then on time again; with
/// `catch_up: false` the missed hour is skipped.
async fn downtime_fires_once_late_or_is_skipped(backend: Backend) {
    let manual = Manual::start(backend, utc("2026-02-01 09:30")).await;
    manual.schedule("0 * * * *", "UTC", true).await;
    let skipping = manual.schedule("0 * * * *", "UTC", false).await;
    let pass = manual.fire_at(utc("2026-02-01 15:20")).await;
    assert_eq!(
        (pass.fired, pass.skipped, pass.messages),
        (1, 1, 2),
        "{pass:?}"
    );
    let pass = manual.fire_at(utc("2026-02-01 16:00") + 10).await;
    assert_eq!(
        (pass.fired, pass.skipped, pass.messages),
        (2, 0, 4),
        "{pass:?}"
    );
    let messages = manual.messages().await;
    assert_eq!(messages.len(), 6);
    let skipped: Vec<&Message> = messages
        .iter()
        .filter(|m| m.metadata.as_ref().unwrap()["schedule_id"] == skipping.as_str())
        .collect();
    assert_eq!(skipped.len(), 2);
    assert!(
        skipped
            .iter()
            .all(|m| m.metadata.as_ref().unwrap()["fire_at"] == utc("2026-02-01 16:00"))
    );
}

/// Stepping the clock five minutes at a time across both of New York's 2026 changes: a daily
/// 02:30 fires on the spring-forward night (at 03:00 EDT) and a daily 01:30 fires once on the
/// fall-back night, at its first occurrence.
async fn daylight_saving_changes_neither_repeat_nor_lose_a_firing(backend: Backend) {
    let manual = Manual::start(backend, utc("2026-03-07 00:00")).await;
    manual
        .schedule("30 2 * * *", "America/New_York", true)
        .await;
    let mut now = utc("2026-03-07 00:00");
    while now < utc("2026-03-10 12:00") {
        now += 300_000;
        manual.fire_at(now).await;
    }
    assert_eq!(
        fire_times(&manual.messages().await),
        [
            utc("2026-03-07 07:30"), // 02:30 EST
            utc("2026-03-08 07:00"), // 03:00 EDT: 02:30 does not exist that night
            utc("2026-03-09 06:30"), // 02:30 EDT
            utc("2026-03-10 06:30"),
        ]
    );

    let manual = Manual::start(backend, utc("2026-10-31 00:00")).await;
    manual
        .schedule("30 1 * * *", "America/New_York", true)
        .await;
    let mut now = utc("2026-10-31 00:00");
    while now < utc("2026-11-02 12:00") {
        now += 300_000;
        manual.fire_at(now).await;
    }
    assert_eq!(
        fire_times(&manual.messages().await),
        [
            utc("2026-10-31 05:30"), // 01:30 EDT
            utc("2026-11-01 05:30"), // 01:30 EDT, the first of the two 01:30s
            utc("2026-11-02 06:30"), // 01:30 EST
        ]
    );
}

/// Two Heralds over one database (two processes' worth of pipelines and pools), each running
/// scheduler passes at the same moments: every fire time's messages exist once.
async fn two_heralds_on_one_database_fire_once(backend: Backend) {
    let manual = Manual::start(backend, utc("2026-05-01 11:00")).await;
    let other = Manual::herald(&manual.storage, &manual.clock).await;
    manual.schedule("*/10 * * * *", "Europe/Paris", true).await;
    manual.schedule("5 * * * *", "UTC", false).await;
    let mut now = utc("2026-05-01 11:00");
    while now < utc("2026-05-01 13:00") {
        now += 60_000;
        manual.clock.set(now);
        let (a, b, c) = tokio::join!(
            schedules::fire_due(manual.herald.pipeline(), "a"),
            schedules::fire_due(other.pipeline(), "b"),
            schedules::fire_due(manual.herald.pipeline(), "c"),
        );
        let fired = a.unwrap().fired + b.unwrap().fired + c.unwrap().fired;
        assert!(fired <= 2, "{fired} fires at {now}");
    }
    let messages = manual.messages().await;
    // Twelve ten-minute marks and two :05 marks, two recipients each.
    assert_eq!(messages.len(), (12 + 2) * RECIPIENTS.len());
    let keys: HashSet<&str> = messages
        .iter()
        .map(|m| m.idempotency_key.as_deref().unwrap())
        .collect();
    assert_eq!(keys.len(), messages.len());
}

/// A schedule naming a bulk batch sends its content to the batch's recipients at each fire
/// time, once each (keyed by their place in the batch), and a repeated pass creates nothing;
/// an empty batch cannot be scheduled.
async fn a_batch_schedule_sends_to_the_batchs_recipients(backend: Backend) {
    let manual = Manual::start(backend, utc("2026-03-02 08:00")).await;
    let pipeline = manual.herald.pipeline();
    let tenant = TenantId::default_tenant();
    let draft = |send_immediately| BatchRequest {
        name: Some("weekly list".into()),
        send_immediately,
        template: None,
        template_variables: Default::default(),
        category: None,
        send_at: None,
        allow_duplicates: false,
    };
    let rows: Vec<Recipient> = ["+14155550111", "+14155550112", "+14155550113"]
        .iter()
        .map(|number| Recipient {
            to_number: (*number).into(),
            message: Some("list entry".into()),
            ..Recipient::default()
        })
        .collect();
    let batch = bulk::create(pipeline, &tenant, draft(false), rows)
        .await
        .unwrap()
        .batch;
    let request = |batch_id: String| ScheduleRequest {
        name: "weekly".into(),
        cron: "0 9 * * MON".into(),
        timezone: "UTC".into(),
        content: Content::Text("Weekly hello".into()),
        audience: Audience::Batch(batch_id),
        category: None,
        catch_up: true,
    };
    let id = schedules::create(pipeline, &tenant, request(batch.batch.id.clone()))
        .await
        .unwrap()
        .schedule
        .id;
    let pass = manual.fire_at(utc("2026-03-02 09:00")).await;
    assert_eq!((pass.fired, pass.messages), (1, 3), "{pass:?}");
    let sent: Vec<Message> = manual
        .messages()
        .await
        .into_iter()
        .filter(|m| m.body == "Weekly hello")
        .collect();
    let mut numbers: Vec<&str> = sent.iter().map(|m| m.to_number.as_str()).collect();
    numbers.sort_unstable();
    assert_eq!(numbers, ["+14155550111", "+14155550112", "+14155550113"]);
    let due = utc("2026-03-02 09:00");
    let keys: HashSet<String> = sent
        .iter()
        .map(|m| m.idempotency_key.clone().unwrap())
        .collect();
    let expected: HashSet<String> = (0..3).map(|i| schedules::fire_key(&id, due, i)).collect();
    assert_eq!(keys, expected);
    assert_eq!(manual.fire_at(utc("2026-03-02 09:05")).await.messages, 0);

    let empty = bulk::create(pipeline, &tenant, draft(false), Vec::new())
        .await
        .unwrap()
        .batch;
    let refused = schedules::create(pipeline, &tenant, request(empty.batch.id))
        .await
        .unwrap_err();
    assert_eq!(refused.code, herald::ErrorCode::EmptyBatch);
}
