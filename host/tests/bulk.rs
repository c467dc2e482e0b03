//! Bulk batches against a running Herald on SQLite and on PostgreSQL: `/send-bulk` with its
//! per-row report, drafts sent later, NDJSON and CSV uploads, listing, and cancel mid-drain on a
//! manual clock.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::app::{Backend, TestApp};
use herald::clock::{Clock, ManualClock};
use herald::config::DeliveryConfig;
use herald::pipeline::bulk::{self, BatchRequest, Recipient};
use herald::pipeline::dispatch;
use herald::store::{OptOutChange, OptOutMethod};
use herald::{Herald, TenantId};
use herald_testkit::carrier::{self, CarrierConfig};
use reqwest::StatusCode;
use serde_json::{Value, json};

on_both_backends!(
    rows_are_checked_one_by_one,
    duplicates_are_sent_once_unless_allowed,
    batch_template_and_defaults,
    draft_is_sent_later,
    a_batch_due_later_waits_scheduled,
    ndjson_upload_reports_lines,
    csv_upload_reports_lines,
    bad_requests_get_their_codes,
    batches_are_listed_by_cursor,
    batches_belong_to_their_tenant,
    cancel_mid_drain_leaves_the_claimed_one,
);

/// `+1 415 555` numbers, distinct for distinct `i`.
fn number(i: usize) -> String {
    format!("+1415555{:04}", 1000 + i)
}

/// `POST /api/v1/sms/send-bulk`, returning status and answer.
async fn send_bulk(app: &TestApp, body: &Value) -> (StatusCode, Value) {
    app.post("/api/v1/sms/send-bulk", body).await
}

/// Posts `body` as `content_type` to the batch's recipients.
async fn upload(app: &TestApp, id: &str, content_type: &str, body: &str) -> (StatusCode, Value) {
    app.request(
        app.client
            .post(format!("{}/api/v1/sms/batches/{id}/recipients", app.base))
            .header("content-type", content_type)
            .body(body.to_owned()),
    )
    .await
}

/// Waits until batch `id` reports `status`, then returns it.
async fn wait_for_batch(app: &TestApp, id: &str, status: &str) -> Value {
    let mut last = Value::Null;
    for _ in 0..400 {
        let (code, batch) = app.get(&format!("/api/v1/sms/batches/{id}")).await;
        assert_eq!(code, StatusCode::OK, "{batch}");
        if batch["status"] == status {
            return batch;
        }
        last = batch;
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("batch {id} did not reach `{status}` within 10 s: {last:#}");
}

/// The `(index or line, code)` pairs of a report's `rejected` list.
fn rejected(answer: &Value, key: &str) -> Vec<(u64, String)> {
    answer["rejected"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r[key].as_u64().unwrap(),
                r["code"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

/// Every bad row is reported by index with its own code and left out; the good rows are sent,
/// carry the batch id, and the batch ends `completed` with its counts.
async fn rows_are_checked_one_by_one(backend: Backend) {
    let app = TestApp::start(backend).await;
    app.herald
        .store()
        .opt_out(&OptOutChange::new(
            &TenantId::default_tenant(),
            &number(9),
            herald::Category::All,
            OptOutMethod::Api,
            0,
        ))
        .await
        .unwrap();
    let body = json!({
        "batch_name": "Lunch Promotion",
        "send_immediately": true,
        "recipients": [
            {"to_number": number(0), "message": "Hello one", "customer_id": 123},
            {"to_number": "+12", "message": "bad number"},
            {"to_number": number(1), "template_id": "no_such_template"},
            {"to_number": number(2), "message": " "},
            {"to_number": number(3)},
            {"to_number": number(9), "message": "opted out"},
            {"to_number": number(4), "message": "Hello two", "order_id": "ORD-1"},
        ],
    });
    let (status, answer) = send_bulk(&app, &body).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{answer}");
    assert_eq!(answer["accepted"], 2);
    assert_eq!(
        rejected(&answer, "index"),
        [
            (1, "invalid_phone_number".to_owned()),
            (2, "unknown_template".to_owned()),
            (3, "empty_message".to_owned()),
            (4, "missing_body".to_owned()),
            (5, "recipient_opted_out".to_owned()),
        ]
    );
    let id = answer["batch_id"].as_str().unwrap();
    assert!(id.starts_with("bat_"), "{id}");
    let batch = wait_for_batch(&app, id, "completed").await;
    assert_eq!(batch["name"], "Lunch Promotion");
    assert_eq!(batch["total"], 2);
    assert_eq!(
        batch["counts"]["sent"].as_u64().unwrap_or(0)
            + batch["counts"]["delivered"].as_u64().unwrap_or(0),
        2,
        "{batch}"
    );
    assert_eq!(batch["progress"], 1.0);
    assert!(batch["started_at"].as_i64().is_some());
    assert!(batch["finished_at"].as_i64().unwrap() >= batch["started_at"].as_i64().unwrap());

    let (status, page) = app.get(&format!("/api/v1/sms/batches/{id}/messages")).await;
    assert_eq!(status, StatusCode::OK, "{page}");
    let items = page["items"].as_array().unwrap();
    assert_eq!(items.len(), 2);
    assert!(items.iter().all(|m| m["batch_id"] == id));
    assert_eq!(items[0]["customer_id"], "123");
    assert_eq!(items[1]["order_id"], "ORD-1");
    assert_eq!(app.carrier_requests_to(&number(0)), 1);
    assert_eq!(app.carrier_requests_to(&number(9)), 0);
    app.stop().await;
}

/// A number listed twice is sent once (the later row is reported `duplicate_recipient`), unless
/// the batch allows duplicates.
async fn duplicates_are_sent_once_unless_allowed(backend: Backend) {
    let app = TestApp::start(backend).await;
    let rows = json!([
        {"to_number": number(0), "message": "first"},
        {"to_number": number(1), "message": "other"},
        {"to_number": number(0), "message": "again"},
    ]);
    let (status, once) = send_bulk(&app, &json!({"recipients": rows})).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{once}");
    assert_eq!(once["accepted"], 2);
    assert_eq!(
        rejected(&once, "index"),
        [(2, "duplicate_recipient".to_owned())]
    );
    wait_for_batch(&app, once["batch_id"].as_str().unwrap(), "completed").await;
    assert_eq!(app.carrier_requests_to(&number(0)), 1);

    let (status, twice) =
        send_bulk(&app, &json!({"recipients": rows, "allow_duplicates": true})).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{twice}");
    assert_eq!(twice["accepted"], 3);
    assert_eq!(twice["rejected"], json!([]));
    wait_for_batch(&app, twice["batch_id"].as_str().unwrap(), "completed").await;
    assert_eq!(app.carrier_requests_to(&number(0)), 3);
    app.stop().await;
}

/// The batch's template and variables apply to rows that name none; a row's own variables win,
/// and a row missing a variable is refused alone.
async fn batch_template_and_defaults(backend: Backend) {
    let app = TestApp::start(backend).await;
    let (status, template) = app
        .post(
            "/api/v1/sms/templates",
            &json!({"name": "lunch", "category": "marketing",
                    "template_body": "Hi {{name}}, {{discount}}% off today. Reply STOP to opt out"}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{template}");
    let body = json!({
        "template_id": template["id"],
        "template_variables": {"discount": "20"},
        "recipients": [
            {"to_number": number(0), "template_variables": {"name": "John"}},
            {"to_number": number(1), "template_variables": {"name": "Jane", "discount": 15}},
            {"to_number": number(2)},
            {"to_number": number(3), "message": "Plain text wins", "category": "transactional"},
        ],
    });
    let (status, answer) = send_bulk(&app, &body).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{answer}");
    assert_eq!(
        rejected(&answer, "index"),
        [(2, "missing_template_variable".to_owned())]
    );
    let id = answer["batch_id"].as_str().unwrap();
    let (_, page) = app.get(&format!("/api/v1/sms/batches/{id}/messages")).await;
    let bodies: Vec<(&str, &str)> = page["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| (m["body"].as_str().unwrap(), m["category"].as_str().unwrap()))
        .collect();
    assert_eq!(
        bodies,
        [
            ("Hi John, 20% off today. Reply STOP to opt out", "marketing"),
            ("Hi Jane, 15% off today. Reply STOP to opt out", "marketing"),
            ("Plain text wins", "transactional"),
        ]
    );
    app.stop().await;
}

/// A batch with a `send_at` an hour ahead is `scheduled` (not `completed`): its rows wait as
/// `scheduled` messages with their due time, none reaches the carrier, and a cancel withdraws them.
async fn a_batch_due_later_waits_scheduled(backend: Backend) {
    let app = TestApp::start(backend).await;
    let at = time::OffsetDateTime::now_utc() + time::Duration::hours(1);
    let send_at = at
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap();
    let body = json!({
        "send_at": send_at,
        "recipients": [
            {"to_number": number(0), "message": "later"},
            {"to_number": number(1), "message": "later"},
        ],
    });
    let (status, answer) = send_bulk(&app, &body).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{answer}");
    let id = answer["batch_id"].as_str().unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let (_, batch) = app.get(&format!("/api/v1/sms/batches/{id}")).await;
    assert_eq!(batch["status"], "scheduled", "{batch}");
    assert_eq!(batch["counts"], json!({"scheduled": 2}), "{batch}");
    assert_eq!(batch["progress"], 0.0, "{batch}");
    assert_eq!(batch["finished_at"], Value::Null, "{batch}");
    assert_eq!(app.carrier_requests_to(&number(0)), 0);
    let (_, listed) = app.get(&format!("/api/v1/sms/batches/{id}/messages")).await;
    for message in listed["items"].as_array().unwrap() {
        assert_eq!(message["status"], "scheduled", "{message}");
    }
    let (status, canceled) = app
        .post(&format!("/api/v1/sms/batches/{id}/cancel"), &json!({}))
        .await;
    assert_eq!(status, StatusCode::OK, "{canceled}");
    let (_, batch) = app.get(&format!("/api/v1/sms/batches/{id}")).await;
    assert_eq!(batch["counts"], json!({"canceled": 2}), "{batch}");
    assert_eq!(app.herald.store().count_queue().await.unwrap(), 0);
    app.stop().await;
}

/// A draft queues nothing until it is sent: its messages say `draft` (one can be canceled on
/// its own, and the send leaves it out), then `queued` with an event when the batch is sent.
/// Sending it twice is `batch_not_draft`, and an empty draft cannot be sent.
async fn draft_is_sent_later(backend: Backend) {
    let app = TestApp::start(backend).await;
    let body = json!({
        "send_immediately": false,
        "recipients": [
            {"to_number": number(0), "message": "later"},
            {"to_number": number(1), "message": "never"},
        ],
    });
    let (status, answer) = send_bulk(&app, &body).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{answer}");
    assert_eq!(answer["status"], "draft");
    let id = answer["batch_id"].as_str().unwrap();
    assert_eq!(app.herald.store().count_queue().await.unwrap(), 0);
    let (_, batch) = app.get(&format!("/api/v1/sms/batches/{id}")).await;
    assert_eq!(batch["counts"], json!({"draft": 2}), "{batch}");
    assert_eq!(batch["progress"], 0.0, "{batch}");
    let (_, listed) = app.get(&format!("/api/v1/sms/batches/{id}/messages")).await;
    let message_of = |to: &str| {
        listed["items"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["to_number"] == to)
            .unwrap()
            .clone()
    };
    let (kept, dropped) = (message_of(&number(0)), message_of(&number(1)));
    assert_eq!(
        (&kept["status"], &dropped["status"]),
        (&json!("draft"), &json!("draft"))
    );
    let dropped_id = dropped["id"].as_str().unwrap();
    let (status, canceled) = app
        .post(
            &format!("/api/v1/sms/messages/{dropped_id}/cancel"),
            &json!({}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{canceled}");
    assert_eq!(canceled["status"], "canceled");
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(app.carrier_requests_to(&number(0)), 0);

    let send = format!("/api/v1/sms/batches/{id}/send");
    let (status, sent) = app.post(&send, &json!({})).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{sent}");
    wait_for_batch(&app, id, "completed").await;
    assert_eq!(app.carrier_requests_to(&number(0)), 1);
    assert_eq!(
        app.carrier_requests_to(&number(1)),
        0,
        "a canceled draft stays out"
    );
    let kept = app.message(kept["id"].as_str().unwrap()).await;
    let statuses: Vec<&str> = kept["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["status"].as_str().unwrap())
        .take(3)
        .collect();
    assert_eq!(statuses, ["draft", "queued", "sending"], "{kept}");
    let (status, again) = app.post(&send, &json!({})).await;
    assert_eq!(status, StatusCode::CONFLICT, "{again}");
    assert_eq!(again["error"]["code"], "batch_not_draft");

    let (_, empty) = send_bulk(&app, &json!({"send_immediately": false})).await;
    let empty_id = empty["batch_id"].as_str().unwrap();
    let (status, refused) = app
        .post(&format!("/api/v1/sms/batches/{empty_id}/send"), &json!({}))
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{refused}");
    assert_eq!(refused["error"]["code"], "empty_batch");
    app.stop().await;
}

/// NDJSON lines are staged one by one: malformed lines, bad rows and duplicates (also of an
/// earlier upload) are reported by line number; the rest wait in the draft until it is sent.
async fn ndjson_upload_reports_lines(backend: Backend) {
    let app = TestApp::start(backend).await;
    let (_, draft) = send_bulk(
        &app,
        &json!({"send_immediately": false, "recipients": [{"to_number": number(0), "message": "a"}]}),
    )
    .await;
    let id = draft["batch_id"].as_str().unwrap();
    let lines = [
        json!({"to_number": number(1), "message": "b"}).to_string(),
        "{not json".to_owned(),
        json!({"to_number": number(2), "message": "c", "customer_id": 7}).to_string(),
        json!({"to_number": "+12", "message": "d"}).to_string(),
        String::new(),
        json!({"to_number": number(0), "message": "dup of the first upload"}).to_string(),
        json!({"to_number": number(3), "message": "e", "unknown": 1}).to_string(),
        json!({"to_number": number(4), "message": "no final newline"}).to_string(),
    ];
    let (status, answer) = upload(&app, id, "application/x-ndjson", &lines.join("\r\n")).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(answer["accepted"], 3);
    assert_eq!(
        rejected(&answer, "line"),
        [
            (2, "malformed_line".to_owned()),
            (4, "invalid_phone_number".to_owned()),
            (6, "duplicate_recipient".to_owned()),
            (7, "malformed_line".to_owned()),
        ]
    );
    assert_eq!(answer["rejected_count"], 4);
    assert_eq!(answer["batch"]["total"], 4);
    assert_eq!(answer["status"], "draft");

    let (status, wrong) = upload(&app, id, "application/json", "{}").await;
    assert_eq!(status, StatusCode::UNSUPPORTED_MEDIA_TYPE, "{wrong}");
    let (status, missing) = upload(&app, "bat_nope", "application/x-ndjson", "").await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{missing}");
    assert_eq!(missing["error"]["code"], "batch_not_found");

    let (status, _) = app
        .post(&format!("/api/v1/sms/batches/{id}/send"), &json!({}))
        .await;
    assert_eq!(status, StatusCode::ACCEPTED);
    wait_for_batch(&app, id, "completed").await;
    assert_eq!(app.carrier_requests_to(&number(4)), 1);
    let (status, late) = upload(&app, id, "application/x-ndjson", "").await;
    assert_eq!(status, StatusCode::CONFLICT, "{late}");
    assert_eq!(late["error"]["code"], "batch_not_draft");
    app.stop().await;
}

/// A CSV upload names its columns in a header; other columns are template variables; quoted
/// fields keep their commas; a record with the wrong number of fields is reported.
async fn csv_upload_reports_lines(backend: Backend) {
    let app = TestApp::start(backend).await;
    let (_, template) = app
        .post(
            "/api/v1/sms/templates",
            &json!({"name": "ready", "template_body": "Hi {{name}}, order {{order}} is ready"}),
        )
        .await;
    let (_, draft) = send_bulk(
        &app,
        &json!({"send_immediately": false, "template_id": template["id"]}),
    )
    .await;
    let id = draft["batch_id"].as_str().unwrap();
    let csv = format!(
        "to_number,message,name,order,customer_id\n\
         {},,Ann,A-1,42\n\
         {},\"Plain, with a comma\",,,\n\
         {},,Bob\n\
         {},,\"Cy \"\"C\"\"\",C-3,\n",
        number(0),
        number(1),
        number(2),
        number(3),
    );
    let (status, answer) = upload(&app, id, "text/csv; charset=utf-8", &csv).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(answer["accepted"], 3);
    assert_eq!(
        rejected(&answer, "line"),
        [(4, "malformed_line".to_owned())]
    );
    let (_, page) = app.get(&format!("/api/v1/sms/batches/{id}/messages")).await;
    let bodies: Vec<&str> = page["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["body"].as_str().unwrap())
        .collect();
    assert_eq!(
        bodies,
        [
            "Hi Ann, order A-1 is ready",
            "Plain, with a comma",
            "Hi Cy \"C\", order C-3 is ready"
        ]
    );
    assert_eq!(page["items"][0]["customer_id"], "42");

    let (status, headless) = upload(&app, id, "text/csv", "name,message\nx,y\n").await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{headless}");
    assert_eq!(headless["error"]["code"], "malformed_line");
    app.stop().await;
}

/// Refusals of a whole request: too many recipients, none at all, a bad `send_at`, an unknown
/// batch, a bad cursor.
async fn bad_requests_get_their_codes(backend: Backend) {
    let app = TestApp::start(backend).await;
    let too_many: Vec<Value> = (0..100_001)
        .map(|_| json!({"to_number": "+14155552671", "message": "x"}))
        .collect();
    let (status, refused) = send_bulk(&app, &json!({"recipients": too_many})).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{refused}");
    assert_eq!(refused["error"]["code"], "too_many_recipients");

    let (status, refused) = send_bulk(&app, &json!({"recipients": []})).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{refused}");
    assert_eq!(refused["error"]["code"], "empty_batch");

    let one = json!([{"to_number": number(0), "message": "x"}]);
    for send_at in ["tomorrow", "2030-01-01T10:00:00", "2999-01-01T00:00:00Z"] {
        let (status, refused) =
            send_bulk(&app, &json!({"recipients": one, "send_at": send_at})).await;
        assert_eq!(
            status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{send_at}: {refused}"
        );
        assert_eq!(refused["error"]["code"], "invalid_send_at");
    }
    // A past time sends now.
    let (status, past) = send_bulk(
        &app,
        &json!({"recipients": one, "send_at": "2020-01-01T10:00:00+02:00"}),
    )
    .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{past}");
    wait_for_batch(&app, past["batch_id"].as_str().unwrap(), "completed").await;

    for path in [
        "/api/v1/sms/batches/bat_nope",
        "/api/v1/sms/batches/bat_nope/messages",
    ] {
        let (status, missing) = app.get(path).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{missing}");
        assert_eq!(missing["error"]["code"], "batch_not_found");
    }
    let (status, missing) = app
        .post("/api/v1/sms/batches/bat_nope/cancel", &json!({}))
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{missing}");
    let (status, bad) = app.get("/api/v1/sms/batches?cursor=zz").await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{bad}");
    assert_eq!(bad["error"]["code"], "invalid_query");
    let (status, bad) = app.get("/api/v1/sms/batches?limit=0").await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{bad}");
    app.stop().await;
}

/// `GET /batches` pages newest first with a cursor; a batch's messages page too.
async fn batches_are_listed_by_cursor(backend: Backend) {
    let app = TestApp::start(backend).await;
    let mut ids = Vec::new();
    for i in 0..3 {
        let rows: Vec<Value> = (0..3)
            .map(|j| json!({"to_number": number(i * 10 + j), "message": "m"}))
            .collect();
        let (_, answer) = send_bulk(
            &app,
            &json!({"send_immediately": false, "batch_name": format!("b{i}"), "recipients": rows}),
        )
        .await;
        ids.push(answer["batch_id"].as_str().unwrap().to_owned());
    }
    let (status, first) = app.get("/api/v1/sms/batches?limit=2").await;
    assert_eq!(status, StatusCode::OK, "{first}");
    let cursor = first["next_cursor"].as_str().unwrap();
    let (_, second) = app
        .get(&format!("/api/v1/sms/batches?limit=2&cursor={cursor}"))
        .await;
    let listed: Vec<&str> = first["items"]
        .as_array()
        .unwrap()
        .iter()
        .chain(second["items"].as_array().unwrap())
        .map(|b| b["id"].as_str().unwrap())
        .collect();
    assert_eq!(listed, [ids[2].as_str(), ids[1].as_str(), ids[0].as_str()]);
    assert_eq!(second["next_cursor"], Value::Null);
    assert_eq!(first["items"][0]["counts"]["draft"], 3);

    let (_, page) = app
        .get(&format!("/api/v1/sms/batches/{}/messages?limit=2", ids[0]))
        .await;
    let cursor = page["next_cursor"].as_str().unwrap();
    let (_, rest) = app
        .get(&format!(
            "/api/v1/sms/batches/{}/messages?limit=2&cursor={cursor}",
            ids[0]
        ))
        .await;
    let numbers: Vec<&str> = page["items"]
        .as_array()
        .unwrap()
        .iter()
        .chain(rest["items"].as_array().unwrap())
        .map(|m| m["to_number"].as_str().unwrap())
        .collect();
    assert_eq!(numbers, [number(0), number(1), number(2)]);
    app.stop().await;
}

/// Another tenant sees none of a tenant's batches and cannot send or cancel them.
async fn batches_belong_to_their_tenant(backend: Backend) {
    let app = TestApp::start(backend).await;
    let (_, draft) = send_bulk(
        &app,
        &json!({"send_immediately": false, "recipients": [{"to_number": number(0), "message": "x"}]}),
    )
    .await;
    let id = draft["batch_id"].as_str().unwrap();
    let (status, tenant) = app
        .admin(
            reqwest::Method::POST,
            "/admin/tenants",
            Some(&json!({"name": "other"})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{tenant}");
    let (status, key) = app
        .admin(
            reqwest::Method::POST,
            &format!("/admin/tenants/{}/api-keys", tenant["id"].as_str().unwrap()),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{key}");
    let key = key["key"].as_str().unwrap();
    let url = |path: &str| format!("{}/api/v1/sms/batches/{id}{path}", app.base);
    for request in [
        app.client.get(url("")),
        app.client.get(url("/messages")),
        app.client.post(url("/send")),
        app.client.post(url("/cancel")),
    ] {
        let (status, answer) = app.request_as(key, request).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{answer}");
    }
    let (_, listed) = app
        .request_as(
            key,
            app.client.get(format!("{}/api/v1/sms/batches", app.base)),
        )
        .await;
    assert_eq!(listed["items"], json!([]));
    assert_eq!(app.herald.store().count_queue().await.unwrap(), 0);
    app.stop().await;
}

/// Canceled mid-drain, on a manual clock: the messages already sent stay sent, the one a
/// dispatcher holds finishes, and every other one is `canceled` with its queue entry gone.
async fn cancel_mid_drain_leaves_the_claimed_one(backend: Backend) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let carrier = carrier::spawn(
        listener,
        CarrierConfig::new(common::app::ACCOUNT_SID, common::app::AUTH_TOKEN),
    )
    .await;
    let (storage, _dir) = common::app::storage_url(backend).await;
    let mut config = common::app::config("http://127.0.0.1:9", carrier.base_url(), &storage);
    config.delivery = DeliveryConfig::default();
    let clock = ManualClock::new(1_000_000);
    let herald = Herald::builder()
        .config(config)
        .clock(clock.clone())
        .build()
        .await
        .unwrap();
    let pipeline = herald.pipeline();
    let tenant = TenantId::default_tenant();
    let rows = (0..100)
        .map(|i| Recipient {
            to_number: number(i),
            message: Some(format!("message {i}")),
            ..Recipient::default()
        })
        .collect();
    let request = BatchRequest {
        send_immediately: true,
        ..BatchRequest::default()
    };
    let created = bulk::create(pipeline, &tenant, request, rows)
        .await
        .unwrap();
    assert_eq!(created.staged.accepted, 100);
    let id = created.batch.batch.id;

    // One message is claimed and held (its attempt in flight); one dispatcher pass sends 64.
    let now = clock.now_millis();
    let mut held = herald
        .store()
        .claim("holder", now, Duration::from_secs(60), 1)
        .await
        .unwrap();
    assert_eq!(held.len(), 1);
    assert_eq!(dispatch::run_once(pipeline, "w").await.unwrap(), 64);

    let (summary, withdrawn) = bulk::cancel(pipeline, &tenant, &id).await.unwrap();
    assert_eq!(withdrawn, 35);
    assert_eq!(summary.status, "canceled");
    let count = |status: &str| {
        summary
            .counts
            .iter()
            .find(|(s, _)| s.as_str() == status)
            .map_or(0, |(_, n)| *n)
    };
    assert_eq!(
        (count("sent"), count("sending"), count("canceled")),
        (64, 1, 35)
    );
    assert_eq!(herald.store().count_queue().await.unwrap(), 1);
    assert_eq!(dispatch::run_once(pipeline, "w").await.unwrap(), 0);

    // The held attempt finishes normally.
    dispatch::attempt(pipeline, held.remove(0)).await;
    let done = bulk::summary(pipeline, &tenant, &id).await.unwrap();
    assert_eq!(done.total, 100);
    assert!(done.finished_at.is_some());
    assert_eq!(carrier.requests().len(), 65);
    // Canceling again withdraws nothing more.
    let (_, again) = bulk::cancel(pipeline, &tenant, &id).await.unwrap();
    assert_eq!(again, 0);
    herald.close().await;
}
