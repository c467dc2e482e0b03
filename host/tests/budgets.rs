//! Budgets over HTTP, each scenario on SQLite and on PostgreSQL: `PUT` and `GET` with usage
//! and the period's reset time, the hard cap under 64 concurrent clients (never overshot by a
//! single message), bulk rows past the cap rejected one by one, reservations released by a
//! failure before the provider and by a cancel, messages a capped budget cannot charge, and
//! thresholds that fire once per period.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::app::{Backend, TestApp};
use herald::TenantId;
use herald::pipeline::pricing::{PriceEntry, PriceTable};
use herald::store::BUDGET_THRESHOLD;
use reqwest::StatusCode;
use serde_json::{Value, json};

on_both_backends!(
    put_and_list_with_usage,
    bad_budgets_are_refused,
    hard_cap_holds_under_64_concurrent_clients,
    bulk_rows_past_the_cap_are_rejected,
    a_draft_is_charged_when_sent,
    failures_and_cancels_release,
    capped_budgets_refuse_what_they_cannot_charge,
    thresholds_fire_once_per_period,
);

const TO: &str = "+14155552671";
const BUDGETS: &str = "/api/v1/sms/budgets";
/// The price per segment configured for the US; equal to what the local carrier charges, so
/// an actual price settles a reservation without changing the committed amount.
const PRICE: i64 = 8_300;

/// Starts Herald pricing Twilio US messages at [`PRICE`] (and nothing else).
async fn start(backend: Backend) -> TestApp {
    TestApp::start_with(backend, |config| {
        config.pricing = PriceTable {
            prices: vec![PriceEntry {
                provider: "twilio".into(),
                country: "US".into(),
                encoding: None,
                micros_per_segment: PRICE,
                currency: "USD".into(),
            }],
        };
    })
    .await
}

/// `PUT /budgets/{name}` with `body`.
async fn put(app: &TestApp, name: &str, body: &Value) -> (StatusCode, Value) {
    app.request(
        app.client
            .put(format!("{}{BUDGETS}/{name}", app.base))
            .json(body),
    )
    .await
}

/// A daily USD budget of `micros`.
fn daily(micros: i64, hard_cap: bool) -> Value {
    json!({"period": "daily", "limit": {"micros": micros, "currency": "USD"},
        "alert_thresholds": [50, 80, 100], "hard_cap": hard_cap})
}

/// The budget `name` as `GET /budgets` lists it.
async fn budget(app: &TestApp, name: &str) -> Value {
    let (status, list) = app.get(BUDGETS).await;
    assert_eq!(status, StatusCode::OK, "{list}");
    list["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|b| b["name"] == name)
        .cloned()
        .unwrap_or_else(|| panic!("no budget {name} in {list:#}"))
}

/// Spent and reserved micros of budget `name`.
async fn usage(app: &TestApp, name: &str) -> (i64, i64) {
    let usage = &budget(app, name).await["usage"];
    (
        usage["spent"]["micros"].as_i64().unwrap(),
        usage["reserved"]["micros"].as_i64().unwrap(),
    )
}

/// Polls until budget `name` has `spent` and `reserved`.
async fn wait_usage(app: &TestApp, name: &str, spent: i64, reserved: i64) {
    let mut last = (0, 0);
    for _ in 0..400 {
        last = usage(app, name).await;
        if last == (spent, reserved) {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
    panic!("budget {name} is at {last:?}, not ({spent}, {reserved})");
}

/// UTC midnight after today, and the first of next month, as RFC 3339.
fn resets() -> (String, String) {
    let today = time::OffsetDateTime::now_utc().date();
    let tomorrow = today.next_day().unwrap();
    let (year, month) = match today.month() {
        time::Month::December => (today.year() + 1, time::Month::January),
        month => (today.year(), month.next()),
    };
    let next_month = time::Date::from_calendar_date(year, month, 1).unwrap();
    let at = |d: time::Date| format!("{d}T00:00:00Z");
    (at(tomorrow), at(next_month))
}

/// `PUT` creates (201) then replaces (200); `GET` lists each budget with spent, reserved,
/// remaining and its period's reset time; a category budget counts only its category.
async fn put_and_list_with_usage(backend: Backend) {
    let app = start(backend).await;
    let (status, created) = put(&app, "main", &daily(100_000, false)).await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    assert_eq!(created["usage"]["remaining"]["micros"], 100_000);
    let (status, replaced) = put(&app, "main", &daily(200_000, false)).await;
    assert_eq!(status, StatusCode::OK, "{replaced}");
    assert_eq!(
        replaced["limit"],
        json!({"micros": 200_000, "currency": "USD"})
    );
    let monthly = json!({"period": "monthly", "limit": {"micros": 50_000, "currency": "USD"},
        "category": "marketing", "hard_cap": true});
    let (status, body) = put(&app, "promos", &monthly).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");

    let (tomorrow, next_month) = resets();
    let main = budget(&app, "main").await;
    assert_eq!(main["usage"]["resets_at"], tomorrow.as_str(), "{main:#}");
    assert_eq!(main["alert_thresholds"], json!([50, 80, 100]));
    let promos = budget(&app, "promos").await;
    assert_eq!(
        promos["usage"]["resets_at"],
        next_month.as_str(),
        "{promos:#}"
    );
    assert_eq!(promos["category"], "marketing");

    let id = app.send(json!({"to_number": TO, "message": "hello"})).await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    app.wait_for(&id, "delivered").await;
    wait_usage(&app, "main", PRICE, 0).await;
    let main = budget(&app, "main").await;
    assert_eq!(main["usage"]["remaining"]["micros"], 200_000 - PRICE);
    // A transactional message is not the marketing budget's.
    assert_eq!(usage(&app, "promos").await, (0, 0));
    app.stop().await;
}

/// Bad budgets are 422 with stable codes, never a 500.
async fn bad_budgets_are_refused(backend: Backend) {
    let app = start(backend).await;
    let cases = [
        (
            "main",
            json!({"period": "weekly", "limit": {"micros": 1, "currency": "USD"}}),
            "invalid_budget",
        ),
        (
            "main",
            json!({"period": "daily", "limit": {"micros": -1, "currency": "USD"}}),
            "invalid_budget",
        ),
        (
            "main",
            json!({"period": "daily", "limit": {"micros": i64::MAX, "currency": "USD"}}),
            "invalid_budget",
        ),
        (
            "main",
            json!({"period": "daily", "limit": {"micros": 1, "currency": "dollars"}}),
            "invalid_budget",
        ),
        (
            "main",
            json!({"period": "daily", "limit": {"micros": 1, "currency": "USD"},
            "alert_thresholds": [0]}),
            "invalid_budget",
        ),
        (
            "main",
            json!({"period": "daily", "limit": {"micros": 1, "currency": "USD"},
            "category": "all"}),
            "invalid_budget",
        ),
        ("a%20b", daily(1, true), "invalid_budget"),
        (
            "main",
            json!({"period": "daily", "limit": {"micros": 1, "currency": "USD"},
            "extra": 1}),
            "invalid_field",
        ),
        ("main", json!({"period": "daily"}), "invalid_field"),
        (
            "main",
            json!({"period": "daily", "limit": {"micros": 1.5, "currency": "USD"}}),
            "invalid_field",
        ),
    ];
    for (name, body, code) in cases {
        let (status, answer) = put(&app, name, &body).await;
        assert_eq!(
            status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{body} → {answer}"
        );
        assert_eq!(answer["error"]["code"], code, "{body} → {answer}");
    }
    let (status, answer) = app.get(&format!("{BUDGETS}?period=daily")).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{answer}");
    assert_eq!(answer["error"]["code"], "invalid_query");
    let (_, list) = app.get(BUDGETS).await;
    assert_eq!(list["items"], json!([]));
    app.stop().await;
}

/// 64 clients send at once against a hard cap with room for exactly 10 messages: exactly 10
/// are accepted, 54 are refused with 402 `budget_exceeded`, and spent + reserved never passes
/// the limit.
async fn hard_cap_holds_under_64_concurrent_clients(backend: Backend) {
    let app = start(backend).await;
    let (status, body) = put(&app, "cap", &daily(10 * PRICE, true)).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let url = format!("{}/api/v1/sms/send", app.base);
    let mut clients = tokio::task::JoinSet::new();
    for i in 0..64 {
        let request = app
            .client
            .post(&url)
            .bearer_auth(common::app::API_KEY)
            .json(&json!({"to_number": TO, "message": format!("race {i}")}));
        clients.spawn(async move {
            let response = request.send().await.unwrap();
            let status = response.status();
            (status, response.json::<Value>().await.unwrap())
        });
    }
    let (mut accepted, mut refused) = (0, 0);
    while let Some(outcome) = clients.join_next().await {
        let (status, body) = outcome.unwrap();
        match status {
            StatusCode::ACCEPTED => accepted += 1,
            StatusCode::PAYMENT_REQUIRED => {
                assert_eq!(body["error"]["code"], "budget_exceeded", "{body}");
                refused += 1;
            }
            other => panic!("unexpected {other}: {body}"),
        }
    }
    assert_eq!((accepted, refused), (10, 54));
    assert_eq!(app.message_count().await, 10);
    let (spent, reserved) = usage(&app, "cap").await;
    assert_eq!(spent + reserved, 10 * PRICE);
    // Once every price is in, all of it is spent and nothing is left.
    wait_usage(&app, "cap", 10 * PRICE, 0).await;
    assert_eq!(budget(&app, "cap").await["usage"]["remaining"]["micros"], 0);
    let (status, _) = app
        .post(
            "/api/v1/sms/send",
            &json!({"to_number": TO, "message": "one more"}),
        )
        .await;
    assert_eq!(status, StatusCode::PAYMENT_REQUIRED);
    app.stop().await;
}

/// A bulk send under a hard cap with room for 3 rows: the first three valid rows are accepted, every later row is
/// rejected with `budget_exceeded` by its index, and a row the cap never saw (an invalid number)
/// keeps its own code.
async fn bulk_rows_past_the_cap_are_rejected(backend: Backend) {
    let app = start(backend).await;
    let (status, body) = put(&app, "cap", &daily(3 * PRICE, true)).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let mut recipients: Vec<Value> = (0..6)
        .map(|i| json!({"to_number": format!("+1415555{:04}", 2671 + i), "message": "bulk"}))
        .collect();
    recipients.insert(1, json!({"to_number": "+12", "message": "bad number"}));
    let (status, answer) = app
        .post(
            "/api/v1/sms/send-bulk",
            &json!({"batch_name": "capped", "recipients": recipients}),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{answer}");
    assert_eq!(answer["accepted"], 3, "{answer:#}");
    let rejected: Vec<(u64, String)> = answer["rejected"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["index"].as_u64().unwrap(),
                r["code"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert_eq!(
        rejected,
        [
            (1, "invalid_phone_number".to_owned()),
            (4, "budget_exceeded".to_owned()),
            (5, "budget_exceeded".to_owned()),
            (6, "budget_exceeded".to_owned()),
        ]
    );
    let (spent, reserved) = usage(&app, "cap").await;
    assert_eq!(spent + reserved, 3 * PRICE);
    assert_eq!(app.message_count().await, 3);
    app.stop().await;
}

/// A draft batch holds nothing while it is kept; sent under a hard cap with room for 3 of its 5
/// messages, the first 3 are queued and the last 2 end `failed` with `budget_exceeded`.
async fn a_draft_is_charged_when_sent(backend: Backend) {
    let app = start(backend).await;
    let recipients: Vec<Value> = (0..5)
        .map(|i| json!({"to_number": format!("+1415555{:04}", 2671 + i), "message": "draft"}))
        .collect();
    let (status, created) = app
        .post(
            "/api/v1/sms/send-bulk",
            &json!({"batch_name": "kept", "send_immediately": false, "recipients": recipients}),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{created}");
    let id = created["batch_id"].as_str().unwrap();
    put(&app, "cap", &daily(3 * PRICE, true)).await;
    assert_eq!(usage(&app, "cap").await, (0, 0));

    let (status, sent) = app
        .post(&format!("/api/v1/sms/batches/{id}/send"), &json!({}))
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{sent}");
    let (_, page) = app.get(&format!("/api/v1/sms/batches/{id}/messages")).await;
    let outcomes: Vec<(String, Value)> = page["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            (
                m["to_number"].as_str().unwrap().to_owned(),
                m["error"]["code"].clone(),
            )
        })
        .collect();
    assert_eq!(outcomes.len(), 5, "{page:#}");
    for (i, (to, code)) in outcomes.iter().enumerate() {
        assert_eq!(to, &format!("+1415555{:04}", 2671 + i));
        let expected = if i < 3 {
            Value::Null
        } else {
            json!("budget_exceeded")
        };
        assert_eq!(code, &expected, "{page:#}");
    }
    let (spent, reserved) = usage(&app, "cap").await;
    assert_eq!(spent + reserved, 3 * PRICE);
    app.stop().await;
}

/// A message the provider refuses before taking it (Twilio's invalid test number) and a
/// scheduled message that is canceled both give their reservation back; their estimate stays
/// and no actual price is recorded.
async fn failures_and_cancels_release(backend: Backend) {
    let app = start(backend).await;
    put(&app, "cap", &daily(100_000, true)).await;
    let failed = app
        .send(json!({"to_number": "+15005550001", "message": "no such number"}))
        .await;
    assert_eq!(failed["cost"]["estimate"]["micros"], PRICE, "{failed:#}");
    let failed_id = failed["id"].as_str().unwrap();
    let message = app.wait_for(failed_id, "failed").await;
    assert_eq!(message["cost"]["actual"], Value::Null);
    wait_usage(&app, "cap", 0, 0).await;

    let later = time::OffsetDateTime::now_utc() + time::Duration::hours(1);
    let send_at = later
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap();
    let scheduled = app
        .send(json!({"to_number": TO, "message": "later", "send_at": send_at}))
        .await;
    assert_eq!(scheduled["status"], "scheduled");
    assert_eq!(usage(&app, "cap").await, (0, PRICE));
    let id = scheduled["id"].as_str().unwrap();
    let (status, canceled) = app
        .post(&format!("/api/v1/sms/messages/{id}/cancel"), &json!({}))
        .await;
    assert_eq!(status, StatusCode::OK, "{canceled}");
    assert_eq!(usage(&app, "cap").await, (0, 0));
    app.stop().await;
}

/// Under a hard cap, a message without an estimate (no price for its country) and one whose
/// estimate is in another currency are refused; a budget without a cap lets both through.
async fn capped_budgets_refuse_what_they_cannot_charge(backend: Backend) {
    let app = start(backend).await;
    put(&app, "cap", &daily(1_000_000, true)).await;
    let (status, refused) = app
        .post(
            "/api/v1/sms/send",
            &json!({"to_number": "+447911123456", "message": "unpriced"}),
        )
        .await;
    assert_eq!(status, StatusCode::PAYMENT_REQUIRED, "{refused}");
    assert_eq!(refused["error"]["code"], "budget_exceeded");
    assert!(
        refused["error"]["message"]
            .as_str()
            .unwrap()
            .contains("no cost estimate"),
        "{refused}"
    );
    let euros = json!({"period": "daily", "limit": {"micros": 1_000_000, "currency": "EUR"},
        "hard_cap": true});
    put(&app, "cap", &euros).await;
    let (status, refused) = app
        .post(
            "/api/v1/sms/send",
            &json!({"to_number": TO, "message": "dollars"}),
        )
        .await;
    assert_eq!(status, StatusCode::PAYMENT_REQUIRED, "{refused}");
    assert!(
        refused["error"]["message"]
            .as_str()
            .unwrap()
            .contains("EUR")
    );

    let mut soft = euros.clone();
    soft["hard_cap"] = json!(false);
    put(&app, "cap", &soft).await;
    let dollars = app
        .send(json!({"to_number": TO, "message": "dollars"}))
        .await;
    app.send(json!({"to_number": "+447911123456", "message": "unpriced"}))
        .await;
    assert_eq!(app.message_count().await, 2);
    // Its USD price cannot be charged to a EUR budget: nothing is spent or left reserved.
    app.wait_for(dollars["id"].as_str().unwrap(), "delivered")
        .await;
    assert_eq!(usage(&app, "cap").await, (0, 0));
    app.stop().await;
}

/// Thresholds fire the first time spent + reserved reaches them in a period, and never again in
/// that period: falling back under one (a cancel) and crossing it again keeps the first firing.
async fn thresholds_fire_once_per_period(backend: Backend) {
    let app = start(backend).await;
    let budget_body = json!({"period": "monthly", "limit": {"micros": 20_000, "currency": "USD"},
        "alert_thresholds": [40, 80], "hard_cap": false});
    put(&app, "alerts", &budget_body).await;
    let later = time::OffsetDateTime::now_utc() + time::Duration::hours(1);
    let send_at = later
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap();
    let schedule = |text: &str| json!({"to_number": TO, "message": text, "send_at": send_at});
    let fired = |budget: Value| -> Vec<(u64, String)> {
        budget["usage"]["alerts"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| {
                (
                    a["threshold"].as_u64().unwrap(),
                    a["fired_at"].as_str().unwrap().to_owned(),
                )
            })
            .collect()
    };

    let first = app.send(schedule("one")).await;
    let after_one = fired(budget(&app, "alerts").await);
    assert_eq!(after_one.len(), 1, "{after_one:?}");
    assert_eq!(after_one[0].0, 40);
    app.send(schedule("two")).await;
    let after_two = fired(budget(&app, "alerts").await);
    assert_eq!(after_two.iter().map(|a| a.0).collect::<Vec<_>>(), [40, 80]);

    // Back under 80 % (41.5 %), then over it again: 80 does not fire a second time.
    let id = first["id"].as_str().unwrap();
    let (status, _) = app
        .post(&format!("/api/v1/sms/messages/{id}/cancel"), &json!({}))
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(usage(&app, "alerts").await, (0, PRICE));
    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    app.send(schedule("three")).await;
    assert_eq!(usage(&app, "alerts").await, (0, 2 * PRICE));
    assert_eq!(fired(budget(&app, "alerts").await), after_two);
    // Each firing is in the event log once, for the live stream (and later webhooks).
    let logged = app
        .herald
        .store()
        .latest_events(&TenantId::default_tenant(), BUDGET_THRESHOLD, i64::MAX, 10)
        .await
        .unwrap();
    let mut thresholds: Vec<i64> = logged
        .iter()
        .map(|e| e.payload["threshold"].as_i64().unwrap())
        .collect();
    thresholds.sort_unstable();
    assert_eq!(thresholds, [40, 80], "{logged:?}");
    assert_eq!(logged[0].payload["budget"], "alerts");
    // The metrics read the same state: two reservations outstanding, each threshold fired once.
    let response = app
        .client
        .get(format!("{}/metrics", app.base))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let text = response.text().await.unwrap();
    for line in [
        format!(
            "herald_budget_reserved_micros{{tenant=\"default\",budget=\"alerts\",currency=\"USD\"}} {}",
            2 * PRICE
        ),
        "herald_budget_spent_micros{tenant=\"default\",budget=\"alerts\",currency=\"USD\"} 0"
            .to_owned(),
        "herald_budget_alerts_total{tenant=\"default\",budget=\"alerts\",threshold=\"40\"} 1"
            .to_owned(),
        "herald_budget_alerts_total{tenant=\"default\",budget=\"alerts\",threshold=\"80\"} 1"
            .to_owned(),
    ] {
        assert!(text.contains(&line), "{line} in {text}");
    }
    app.stop().await;
}
