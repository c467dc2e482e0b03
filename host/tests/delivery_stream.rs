//! The event log over HTTP, each scenario on SQLite and on PostgreSQL: the live
//! `GET /api/v1/sms/delivery/stream` (Server-Sent Events) sees a send's status changes in order,
//! inbound messages and opt-outs; `Last-Event-ID` resumes with exactly the missed events;
//! tenants see only their own; a client that stops reading is dropped while sends go on; and
//! `GET /api/v1/sms/delivery/real-time` lists the latest changes newest first; retention removes
//! old events, and a stream resumed from a removed id is told so. On PostgreSQL,
//! an event written by a second Herald on the same database reaches a stream served by the
//! first.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::app::{API_KEY, Backend, OUR_NUMBER, TestApp};
use herald::config::ConfigSource;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

on_both_backends!(
    a_stream_sees_status_changes_inbound_and_opt_outs,
    last_event_id_resumes_with_exactly_the_missed_events,
    tenants_see_only_their_own_events,
    a_client_that_stops_reading_is_dropped,
    real_time_lists_newest_first_and_checks_its_limit,
    shutdown_ends_open_streams,
    bulk_moves_are_logged_row_by_row,
    retention_removes_old_events_and_a_resume_is_told,
);

const STREAM: &str = "/api/v1/sms/delivery/stream";
const REAL_TIME: &str = "/api/v1/sms/delivery/real-time";
const TO: &str = "+14155552671";
const ALICE: &str = "+14155550131";

/// One Server-Sent Event as received.
#[derive(Debug, Clone)]
struct Sse {
    id: Option<i64>,
    event: String,
    data: Value,
}

/// A client reading a stream's events.
struct SseClient {
    response: reqwest::Response,
    buffer: String,
}

impl SseClient {
    /// Opens the stream of `base` with `key`, from `last_event_id` when given.
    async fn open(base: &str, key: &str, last_event_id: Option<i64>) -> Self {
        let mut request = reqwest::Client::new()
            .get(format!("{base}{STREAM}"))
            .bearer_auth(key);
        if let Some(id) = last_event_id {
            request = request.header("Last-Event-ID", id.to_string());
        }
        let response = request.send().await.unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(
            response.headers()["content-type"].to_str().unwrap(),
            "text/event-stream"
        );
        Self {
            response,
            buffer: String::new(),
        }
    }

    /// The next event (keep-alive comments skipped); panics after 10 s without one.
    async fn next(&mut self) -> Sse {
        loop {
            if let Some(end) = self.buffer.find("\n\n") {
                let block: String = self.buffer.drain(..end + 2).collect();
                if let Some(event) = parse(&block) {
                    return event;
                }
                continue;
            }
            let chunk = tokio::time::timeout(Duration::from_secs(10), self.response.chunk())
                .await
                .expect("no event within 10 s")
                .unwrap()
                .expect("the stream ended");
            self.buffer.push_str(std::str::from_utf8(&chunk).unwrap());
        }
    }

    /// Reads events until `done` holds for one; returns them all, that one included.
    async fn until(&mut self, done: impl Fn(&Sse) -> bool) -> Vec<Sse> {
        let mut seen = Vec::new();
        loop {
            let event = self.next().await;
            let last = done(&event);
            seen.push(event);
            if last {
                return seen;
            }
        }
    }
}

/// Parses one SSE block; `None` for a comment-only block (keep-alive).
fn parse(block: &str) -> Option<Sse> {
    let (mut id, mut event, mut data) = (None, None, String::new());
    for line in block.lines() {
        if let Some(value) = line.strip_prefix("id:") {
            id = Some(value.trim().parse().unwrap());
        } else if let Some(value) = line.strip_prefix("event:") {
            event = Some(value.trim().to_owned());
        } else if let Some(value) = line.strip_prefix("data:") {
            data.push_str(value.trim_start());
        }
    }
    Some(Sse {
        id,
        event: event?,
        data: serde_json::from_str(&data).unwrap(),
    })
}

/// Whether `event` is message `id` reaching `status`.
fn is_status(event: &Sse, id: &str, status: &str) -> bool {
    event.event == "message.status"
        && event.data["message_id"] == id
        && event.data["payload"]["status"] == status
}

/// The statuses `events` report for message `id`, in order.
fn statuses_of(events: &[Sse], id: &str) -> Vec<String> {
    events
        .iter()
        .filter(|e| e.event == "message.status" && e.data["message_id"] == id)
        .map(|e| e.data["payload"]["status"].as_str().unwrap().to_owned())
        .collect()
}

/// Sends a text to `to` and returns the message id.
async fn send(app: &TestApp, to: &str, text: &str) -> String {
    let message = app.send(json!({"to_number": to, "message": text})).await;
    message["id"].as_str().unwrap().to_owned()
}

/// A tenant made through the admin API; returns its key.
async fn tenant(app: &TestApp, name: &str) -> String {
    let (status, tenant) = app
        .admin(Method::POST, "/admin/tenants", Some(&json!({"name": name})))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{tenant}");
    let id = tenant["id"].as_str().unwrap();
    let (status, key) = app
        .admin(Method::POST, &format!("/admin/tenants/{id}/api-keys"), None)
        .await;
    assert_eq!(status, StatusCode::CREATED, "{key}");
    key["key"].as_str().unwrap().to_owned()
}

/// Opts `phone` out through the API with `key`.
async fn opt_out(app: &TestApp, key: &str, phone: &str) {
    let (status, body) = app
        .request_as(
            key,
            app.client
                .post(format!("{}/api/v1/sms/opt-out", app.base))
                .json(&json!({"phone_number": phone, "opt_out_reason": "asked"})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
}

/// A live stream sees a send go `queued` → … → `delivered` in the order of the message's
/// history (each event naming the previous status), then an inbound text and an opt-out.
async fn a_stream_sees_status_changes_inbound_and_opt_outs(backend: Backend) {
    let app = TestApp::start(backend).await;
    let mut stream = SseClient::open(&app.base, API_KEY, None).await;
    let id = send(&app, TO, "Your table is ready").await;
    let events = stream.until(|e| is_status(e, &id, "delivered")).await;
    let message = app.wait_for(&id, "delivered").await;
    let history = TestApp::history(&message);
    assert_eq!(statuses_of(&events, &id), history);
    assert_eq!(history.first().map(String::as_str), Some("queued"));
    // Ids increase, and each change names the one before it.
    let mine: Vec<&Sse> = events
        .iter()
        .filter(|e| e.data["message_id"] == id.as_str())
        .collect();
    assert!(mine.windows(2).all(|w| w[0].id < w[1].id));
    assert_eq!(mine[0].data["payload"]["previous_status"], Value::Null);
    for pair in mine.windows(2) {
        assert_eq!(
            pair[1].data["payload"]["previous_status"],
            pair[0].data["payload"]["status"]
        );
    }
    let delivered = mine.last().unwrap();
    assert_eq!(delivered.data["payload"]["to"], TO);
    assert_eq!(delivered.data["payload"]["provider"], "twilio");
    assert_eq!(delivered.id, Some(delivered.data["id"].as_i64().unwrap()));

    let status = app
        .carrier
        .send_inbound(ALICE, OUR_NUMBER, "hello there")
        .await
        .unwrap();
    assert_eq!(status, StatusCode::OK);
    let inbound = stream.until(|e| e.event == "message.inbound").await;
    let inbound = inbound.last().unwrap();
    assert_eq!(inbound.data["payload"]["from"], ALICE);
    assert_eq!(inbound.data["payload"]["to"], OUR_NUMBER);
    assert_eq!(inbound.data["payload"]["body"], "hello there");

    opt_out(&app, API_KEY, ALICE).await;
    let changed = stream.until(|e| e.event == "opt_out.changed").await;
    let changed = changed.last().unwrap();
    assert_eq!(changed.data["payload"]["phone_number"], ALICE);
    assert_eq!(changed.data["payload"]["action"], "opt_out");
    assert_eq!(changed.data["payload"]["category"], "all");
    assert_eq!(changed.data["payload"]["method"], "api");
    app.stop().await;
}

/// A client that disconnects after a few events and comes back with `Last-Event-ID` gets
/// exactly the events after that id, in order, none twice, though more happened meanwhile.
async fn last_event_id_resumes_with_exactly_the_missed_events(backend: Backend) {
    let app = TestApp::start(backend).await;
    let mut stream = SseClient::open(&app.base, API_KEY, None).await;
    let first = send(&app, TO, "first").await;
    let seen = stream.until(|e| is_status(e, &first, "sending")).await;
    let last = seen.last().unwrap().id.unwrap();
    drop(stream);

    app.wait_for(&first, "delivered").await;
    let second = send(&app, "+14155552672", "second").await;
    app.wait_for(&second, "delivered").await;
    opt_out(&app, API_KEY, ALICE).await;

    // What the log holds after `last`: every status change of both messages since, and the
    // opt-out.
    let (status, latest) = app.get(&format!("{REAL_TIME}?limit=500")).await;
    assert_eq!(status, StatusCode::OK, "{latest}");
    let mut expected: Vec<i64> = latest["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["id"].as_i64().unwrap())
        .filter(|id| *id > last)
        .collect();
    expected.reverse();

    let mut resumed = SseClient::open(&app.base, API_KEY, Some(last)).await;
    let events = resumed.until(|e| e.event == "opt_out.changed").await;
    let status_ids: Vec<i64> = events
        .iter()
        .filter(|e| e.event == "message.status")
        .map(|e| e.id.unwrap())
        .collect();
    assert_eq!(status_ids, expected);
    let all: Vec<i64> = events.iter().map(|e| e.id.unwrap()).collect();
    assert!(all.windows(2).all(|w| w[0] < w[1]), "{all:?}");
    assert!(all[0] > last);
    let history = TestApp::history(&app.message(&first).await);
    let after_sending = history.iter().position(|s| s == "sending").unwrap() + 1;
    assert_eq!(
        statuses_of(&events, &first),
        history[after_sending..],
        "the first message's changes after `sending`"
    );
    assert_eq!(
        statuses_of(&events, &second),
        TestApp::history(&app.message(&second).await)
    );
    app.stop().await;
}

/// Two tenants' streams and listings each show only that tenant's events.
async fn tenants_see_only_their_own_events(backend: Backend) {
    let app = TestApp::start(backend).await;
    let other = tenant(&app, "Acme").await;
    let mut ours = SseClient::open(&app.base, API_KEY, None).await;
    let mut theirs = SseClient::open(&app.base, &other, None).await;

    opt_out(&app, &other, ALICE).await;
    let id = send(&app, TO, "only ours").await;
    opt_out(&app, API_KEY, "+14155550199").await;

    let seen = ours.until(|e| e.event == "opt_out.changed").await;
    assert!(
        seen.iter()
            .all(|e| e.data["payload"]["phone_number"] != ALICE),
        "{seen:?}"
    );
    assert_eq!(
        seen.last().unwrap().data["payload"]["phone_number"],
        "+14155550199"
    );
    let theirs_seen = theirs.next().await;
    assert_eq!(theirs_seen.event, "opt_out.changed");
    assert_eq!(theirs_seen.data["payload"]["phone_number"], ALICE);
    app.wait_for(&id, "delivered").await;
    // Nothing of ours reaches them: the next thing they see is their own next event.
    opt_out(&app, &other, "+14155550177").await;
    let next = theirs.next().await;
    assert_eq!(next.data["payload"]["phone_number"], "+14155550177");

    let (status, listing) = app
        .request_as(&other, app.client.get(format!("{}{REAL_TIME}", app.base)))
        .await;
    assert_eq!(status, StatusCode::OK, "{listing}");
    assert_eq!(listing["items"], json!([]));
    let (_, own) = app.get(REAL_TIME).await;
    assert!(
        own["items"]
            .as_array()
            .unwrap()
            .iter()
            .all(|e| e["message_id"] == id.as_str())
    );
    app.stop().await;
}

/// A client that stops reading is dropped once it falls behind, while sends keep being
/// accepted; reading on, it gets an unbroken run of events and then `event: dropped`, and
/// `Last-Event-ID` picks up from its last event.
async fn a_client_that_stops_reading_is_dropped(backend: Backend) {
    let app = TestApp::start(backend).await;
    // A raw connection with a small receive buffer that reads nothing after the request.
    let address = app.base.trim_start_matches("http://").parse().unwrap();
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let mut slow = socket.connect(address).await.unwrap();
    slow.write_all(
        format!("GET {STREAM} HTTP/1.1\r\nHost: herald\r\nAuthorization: Bearer {API_KEY}\r\n\r\n")
            .as_bytes(),
    )
    .await
    .unwrap();
    // Its stream starts from now: make sure the handler ran before the flood.
    tokio::time::sleep(Duration::from_millis(500)).await;

    // Floods of events, each more than the feed's buffer (1,024), until the server drops the
    // stream. How much the kernel's send buffer takes first depends on its autotuning (up to
    // `tcp_wmem`'s 4 MiB here), so one flood is usually enough but not always: the
    // `herald_event_streams_dropped_total` counter says when it happened.
    let mut last_id = String::new();
    for flood in 1..=MAX_FLOODS {
        let recipients: Vec<Value> = (0..2_500)
            .map(|i| json!({"to_number": format!("+1415555{i:04}"), "message": "flood"}))
            .collect();
        // Every step is bounded, so that a stall fails here, naming the step, instead of hanging.
        let (status, batch) = within(
            "a flood's /send-bulk",
            app.post(
                "/api/v1/sms/send-bulk",
                &json!({"batch_name": format!("flood {flood}"), "recipients": recipients}),
            ),
        )
        .await;
        assert_eq!(status, StatusCode::ACCEPTED, "{batch}");
        // The pipeline does not wait for the stalled client.
        let started = std::time::Instant::now();
        last_id = within("the /send after a flood", send(&app, TO, "still accepted")).await;
        assert!(started.elapsed() < Duration::from_secs(5));
        if within("waiting for the drop", dropped_once(&app)).await {
            break;
        }
        assert!(
            flood < MAX_FLOODS,
            "{MAX_FLOODS} floods and the stream was never dropped"
        );
    }

    // Now read everything the server wrote: a run of events, then `dropped`.
    let text = within("reading up to `event: dropped`", async {
        let mut raw = Vec::new();
        let mut chunk = vec![0_u8; 64 * 1024];
        loop {
            let n = slow.read(&mut chunk).await.unwrap();
            assert!(n > 0, "the connection closed without `event: dropped`");
            raw.extend_from_slice(&chunk[..n]);
            let text = String::from_utf8_lossy(&raw).into_owned();
            if text.contains("event: dropped") {
                break text;
            }
        }
    })
    .await;
    let ids: Vec<i64> = text
        .lines()
        .filter_map(|line| line.strip_prefix("id: "))
        .map(|id| id.trim().parse().unwrap())
        .collect();
    assert!(ids.len() > 100, "only {} events before the drop", ids.len());
    assert!(ids.windows(2).all(|w| w[0] < w[1]));

    // The feed resumes after its last event, with the next ones.
    let last = *ids.last().unwrap();
    let mut resumed = within(
        "opening the resumed stream",
        SseClient::open(&app.base, API_KEY, Some(last)),
    )
    .await;
    let next = resumed.next().await;
    assert!(next.id.unwrap() > last);
    app.wait_for(&last_id, "delivered").await;
    within("the shutdown", app.stop()).await;
}

/// How many floods [`a_client_that_stops_reading_is_dropped`] sends at most.
const MAX_FLOODS: usize = 6;

/// Whether the server has dropped a stream within 10 s, from its
/// `herald_event_streams_dropped_total`.
async fn dropped_once(app: &TestApp) -> bool {
    for _ in 0..100 {
        let text = app
            .client
            .get(format!("{}/metrics", app.base))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        let dropped = text
            .lines()
            .filter(|line| line.starts_with("herald_event_streams_dropped_total{"))
            .filter_map(|line| line.rsplit_once(' ')?.1.parse::<f64>().ok())
            .sum::<f64>();
        if dropped >= 1.0 {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    false
}

/// Awaits `step` for at most a minute, panicking with its name after that.
async fn within<T>(what: &str, step: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(60), step)
        .await
        .unwrap_or_else(|_| panic!("{what} did not finish within 60 s"))
}

/// `/delivery/real-time` lists status changes newest first, `limit` of them (default 100), and
/// refuses a bad limit or parameter with `422 invalid_query`; the stream refuses a bad
/// `Last-Event-ID`.
async fn real_time_lists_newest_first_and_checks_its_limit(backend: Backend) {
    let app = TestApp::start(backend).await;
    let mut ids = Vec::new();
    for i in 0..3 {
        ids.push(send(&app, TO, &format!("number {i}")).await);
    }
    for id in &ids {
        app.wait_for(id, "delivered").await;
    }
    let (status, all) = app.get(REAL_TIME).await;
    assert_eq!(status, StatusCode::OK, "{all}");
    let items = all["items"].as_array().unwrap();
    let changes: usize = {
        let mut total = 0;
        for id in &ids {
            total += TestApp::history(&app.message(id).await).len();
        }
        total
    };
    assert_eq!(items.len(), changes);
    let listed: Vec<i64> = items.iter().map(|e| e["id"].as_i64().unwrap()).collect();
    assert!(listed.windows(2).all(|w| w[0] > w[1]), "{listed:?}");
    assert!(items.iter().all(|e| e["kind"] == "message.status"));
    // The newest change is the last delivery, of whichever message the carrier finished last.
    assert_eq!(items[0]["payload"]["status"], "delivered");
    let newest = items[0]["message_id"].as_str().unwrap();
    assert!(ids.iter().any(|id| id == newest), "{newest} not in {ids:?}");

    let (status, two) = app.get(&format!("{REAL_TIME}?limit=2")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(two["items"].as_array().unwrap().as_slice(), &items[..2]);

    for query in [
        "limit=0",
        "limit=501",
        "limit=-1",
        "limit=ten",
        "limit=",
        "since=1",
        "limit=5&limit=6",
    ] {
        let (status, body) = app.get(&format!("{REAL_TIME}?{query}")).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{query}: {body}");
        assert_eq!(body["error"]["code"], "invalid_query", "{query}: {body}");
    }
    let (status, body) = app.get(&format!("{STREAM}?from=1")).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(body["error"]["code"], "invalid_query");
    for bad in ["abc", "-1", "1.5"] {
        let (status, body) = app
            .request(
                app.client
                    .get(format!("{}{STREAM}", app.base))
                    .header("Last-Event-ID", bad),
            )
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}: {body}");
        assert_eq!(body["error"]["code"], "bad_request");
    }
    let (status, body) = app
        .request_as("wrong-key", app.client.get(format!("{}{STREAM}", app.base)))
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    app.stop().await;
}

/// A bulk batch's set-based moves are logged one event per message: its drafts, their queuing
/// (as `scheduled`, due tomorrow) and a cancel, each change naming the previous status.
async fn bulk_moves_are_logged_row_by_row(backend: Backend) {
    let app = TestApp::start(backend).await;
    let mut stream = SseClient::open(&app.base, API_KEY, None).await;
    let numbers = ["+14155550101", "+14155550102", "+14155550103"];
    let recipients: Vec<Value> = numbers
        .iter()
        .map(|to| json!({"to_number": to, "message": "bulk"}))
        .collect();
    // Due tomorrow: staged as drafts, then queued (as `scheduled`) in one statement.
    let send_at = (time::OffsetDateTime::now_utc() + time::Duration::days(1))
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap();
    let (status, batch) = app
        .post(
            "/api/v1/sms/send-bulk",
            &json!({"batch_name": "later", "send_at": send_at, "recipients": recipients}),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{batch}");
    let id = batch["batch_id"].as_str().unwrap().to_owned();
    let (status, body) = app
        .post(&format!("/api/v1/sms/batches/{id}/cancel"), &json!({}))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");

    let mut seen = Vec::new();
    while seen.len() < 9 {
        let event = stream.next().await;
        assert_eq!(event.event, "message.status");
        assert_eq!(event.data["payload"]["batch_id"], id.as_str());
        seen.push(event);
    }
    let moves: Vec<(String, Value)> = seen
        .iter()
        .map(|e| {
            (
                e.data["payload"]["status"].as_str().unwrap().to_owned(),
                e.data["payload"]["previous_status"].clone(),
            )
        })
        .collect();
    let expected: Vec<(String, Value)> = [
        ("draft", Value::Null),
        ("scheduled", json!("draft")),
        ("canceled", json!("scheduled")),
    ]
    .iter()
    .flat_map(|(status, previous)| (0..3).map(|_| ((*status).to_owned(), previous.clone())))
    .collect();
    assert_eq!(moves, expected);
    let mut tos: Vec<&str> = seen[..3]
        .iter()
        .map(|e| e.data["payload"]["to"].as_str().unwrap())
        .collect();
    tos.sort_unstable();
    assert_eq!(tos, numbers);
    app.stop().await;
}

/// Retention removes every event older than `storage.event_retention_ms` but the newest, oldest
/// first; a stream resumed from a removed id first gets `event: truncated` with the highest id
/// removed, then the events after it; one resumed from a kept id gets no such notice.
async fn retention_removes_old_events_and_a_resume_is_told(backend: Backend) {
    let app = TestApp::start_with(backend, |config| {
        config.storage.event_retention_ms = 1;
    })
    .await;
    let first = send(&app, TO, "first").await;
    app.wait_for(&first, "delivered").await;
    let second = send(&app, "+14155552672", "second").await;
    app.wait_for(&second, "delivered").await;
    let (_, before) = app.get(&format!("{REAL_TIME}?limit=500")).await;
    let ids: Vec<i64> = before["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["id"].as_i64().unwrap())
        .collect();
    let newest = ids[0];
    assert!(ids.len() >= 6, "{before}");

    tokio::time::sleep(Duration::from_millis(5)).await;
    let pipeline = app.herald.pipeline();
    let removed = herald::pipeline::events::prune_expired(pipeline)
        .await
        .unwrap();
    assert_eq!(removed, ids.len() as u64 - 1, "all but the newest");
    let through = app.herald.store().events_pruned_through().await.unwrap();
    assert_eq!(through, ids[1], "the highest id removed");
    let (_, after) = app.get(&format!("{REAL_TIME}?limit=500")).await;
    assert_eq!(after["items"].as_array().unwrap().len(), 1, "{after}");
    assert_eq!(after["items"][0]["id"], newest);
    assert_eq!(
        herald::pipeline::events::prune_expired(pipeline)
            .await
            .unwrap(),
        0,
        "the newest event stays"
    );

    // Resumed from before the removed ids: told first, then the kept event and what follows.
    let mut resumed = SseClient::open(&app.base, API_KEY, Some(ids[ids.len() - 1] - 1)).await;
    let notice = resumed.next().await;
    assert_eq!(notice.event, "truncated");
    assert_eq!(notice.id, None);
    assert_eq!(notice.data, json!({ "removed_through": through }));
    assert_eq!(resumed.next().await.id, Some(newest));
    opt_out(&app, API_KEY, ALICE).await;
    let next = resumed.next().await;
    assert_eq!(next.event, "opt_out.changed");
    assert!(next.id.unwrap() > newest);

    // Resumed from a kept id: no notice.
    let mut kept = SseClient::open(&app.base, API_KEY, Some(newest)).await;
    assert_eq!(kept.next().await.id, next.id);
    app.stop().await;
}

/// Shutting Herald down ends its open streams at once (their clients resume elsewhere with
/// `Last-Event-ID`) rather than holding the shutdown for its whole grace (here a minute).
async fn shutdown_ends_open_streams(backend: Backend) {
    let mut app = TestApp::start_with(backend, |config| {
        config.server.shutdown_grace_ms = 60_000;
    })
    .await;
    let mut stream = SseClient::open(&app.base, API_KEY, None).await;
    opt_out(&app, API_KEY, ALICE).await;
    assert_eq!(stream.next().await.event, "opt_out.changed");
    tokio::time::timeout(Duration::from_secs(20), app.shutdown())
        .await
        .expect("an open stream held the shutdown up");
    let end = tokio::time::timeout(Duration::from_secs(5), stream.response.chunk())
        .await
        .expect("the stream did not end");
    assert!(matches!(end, Ok(None)), "{end:?}");
}

/// On PostgreSQL, a stream served by a Herald that writes nothing itself (its router only: no
/// dispatcher) sees a message sent and delivered through another Herald on the same database,
/// every status change of it, woken by `LISTEN/NOTIFY`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_from_another_instance_reaches_the_stream() {
    let app = TestApp::start(Backend::Postgres).await;
    let config = common::app::config("http://127.0.0.1:9", app.carrier.base_url(), &app.storage);
    let observer = herald::Herald::builder()
        .config(config)
        .source(ConfigSource::default())
        .build()
        .await
        .unwrap();
    let observer_base = common::serve(observer.router()).await;

    let mut stream = SseClient::open(&observer_base, API_KEY, None).await;
    let id = send(&app, TO, "from the other one").await;
    let events = stream.until(|e| is_status(e, &id, "delivered")).await;
    let message = app.wait_for(&id, "delivered").await;
    assert_eq!(statuses_of(&events, &id), TestApp::history(&message));
    app.stop().await;
}

/// On PostgreSQL, an event whose transaction took its id first but commits last is not skipped:
/// the stream holds back the later id until the earlier one commits, then sends both in order.
/// The held transaction's xid is the newer one, so no snapshot's `xip` lists it while it runs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_id_that_commits_late_is_not_skipped() {
    let app = TestApp::start(Backend::Postgres).await;
    let pool = sqlx::PgPool::connect(&app.storage).await.unwrap();
    let mut stream = SseClient::open(&app.base, API_KEY, None).await;
    let insert = |kind: &'static str| {
        sqlx::query_scalar::<_, i64>(sqlx::AssertSqlSafe(format!(
            "INSERT INTO events (tenant_id, kind, payload, created_at)
             VALUES ('default', '{kind}', '{{}}', 0) RETURNING id"
        )))
    };
    // Two writers, each writing first (as the store's do, so each has its xid): the older
    // xid will take the later id and commit first.
    let mut quick = pool.begin().await.unwrap();
    sqlx::query("SELECT pg_current_xact_id()")
        .execute(&mut *quick)
        .await
        .unwrap();
    let mut slow = pool.begin().await.unwrap();
    sqlx::query("SELECT pg_current_xact_id()")
        .execute(&mut *slow)
        .await
        .unwrap();
    let early = insert("test.early").fetch_one(&mut *slow).await.unwrap();
    let late = insert("test.late").fetch_one(&mut *quick).await.unwrap();
    assert!(late > early);
    quick.commit().await.unwrap();
    // An opt-out through the API commits after both ids were taken.
    opt_out(&app, API_KEY, ALICE).await;
    let held = tokio::time::timeout(Duration::from_secs(1), stream.next()).await;
    assert!(
        held.is_err(),
        "an event passed the uncommitted id: {held:?}"
    );
    slow.commit().await.unwrap();
    let first = stream.next().await;
    assert_eq!(
        (first.id, first.event.as_str()),
        (Some(early), "test.early")
    );
    let second = stream.next().await;
    assert_eq!(
        (second.id, second.event.as_str()),
        (Some(late), "test.late")
    );
    let third = stream.next().await;
    assert_eq!(third.event, "opt_out.changed");
    pool.close().await;
    app.stop().await;
}
