//! The aggregate routes over HTTP, each scenario on SQLite and on PostgreSQL: the cost summary
//! (totals and every grouping), the billing report in JSON and CSV agreeing with it to the micro,
//! the delivery metrics on a fixture whose answers are known (delivered, failed and unpriced
//! messages through the local carrier, which reports a price with each `delivered` callback),
//! and the refusals of bad periods, groupings and formats.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use chrono::{Duration, Utc};
use common::app::{API_KEY, Backend, TestApp};
use herald::pipeline::pricing::{PriceEntry, PriceTable};
use herald_testkit::carrier::ScriptedResponse;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

on_both_backends!(
    summary_report_and_metrics,
    templates_and_tenants,
    rollups_follow_every_path,
    bad_input_is_refused,
    a_large_backlog_of_deltas_is_folded_whole,
    folding_before_the_migrations_is_told_apart
);

/// What the local carrier charges per segment, in micros (its `-0.00830` USD).
const CARRIER_PRICE: i64 = 8_300;

/// The messages of the fixture, by id.
struct Fixture {
    delivered: Vec<Value>,
    failed: Value,
}

/// Sends the fixture: to the US a 1-segment and a 2-segment message (estimated at 5,000 micros a
/// segment, delivered at the carrier's 8,300), one the carrier refuses (estimated, never
/// charged), and one to France with no price entry (no estimate, delivered and charged).
async fn fixture(app: &TestApp) -> Fixture {
    let a = app
        .send(json!({"to_number": "+14155550101", "message": "hello"}))
        .await;
    let b = app
        .send(json!({"to_number": "+14155550102", "message": "a".repeat(161)}))
        .await;
    let d = app
        .send(json!({"to_number": "+33612345678", "message": "hello"}))
        .await;
    let mut delivered = Vec::new();
    for sent in [&a, &b, &d] {
        delivered.push(wait_priced(app, sent["id"].as_str().unwrap()).await);
    }
    app.carrier.script(ScriptedResponse::error(400, 21211));
    let c = app
        .send(json!({"to_number": "+14155550103", "message": "refused"}))
        .await;
    let failed = app.wait_for(c["id"].as_str().unwrap(), "failed").await;
    Fixture { delivered, failed }
}

/// The period from yesterday to tomorrow (UTC), as a query string.
fn period() -> String {
    let today = Utc::now().date_naive();
    format!(
        "start_date={}&end_date={}",
        today - Duration::days(1),
        today + Duration::days(1)
    )
}

/// Money figures in USD of `figures` (a summary total or group).
fn usd(figures: &Value) -> &Value {
    let costs = figures["costs"].as_array().unwrap();
    assert_eq!(costs.len(), 1, "{figures:#}");
    assert_eq!(costs[0]["currency"], "USD");
    &costs[0]
}

/// The summary's totals and groups, the report (JSON and CSV) and the delivery metrics of the
/// fixture have the known values, and the report's totals equal the summary's to the micro.
async fn summary_report_and_metrics(backend: Backend) {
    let app = TestApp::start_with(backend, |config| {
        config.pricing = PriceTable {
            prices: vec![PriceEntry {
                provider: "twilio".into(),
                country: "US".into(),
                encoding: None,
                micros_per_segment: 5_000,
                currency: "USD".into(),
            }],
        }
    })
    .await;
    let fixture = fixture(&app).await;
    let today = Utc::now().date_naive().to_string();

    let (status, summary) = app
        .get(&format!("/api/v1/sms/costs/summary?{}", period()))
        .await;
    assert_eq!(status, StatusCode::OK, "{summary}");
    let totals = &summary["totals"];
    assert_eq!(totals["messages"], 4, "{summary:#}");
    assert_eq!(totals["segments"], 5);
    assert_eq!(totals["delivered"], 3);
    assert_eq!(totals["delivery_rate"], 0.75);
    assert_eq!(totals["unpriced_messages"], 0);
    let money = usd(totals);
    assert_eq!(money["messages"], 4);
    assert_eq!(money["estimated_micros"], 5_000 + 10_000 + 5_000);
    assert_eq!(money["actual_micros"], 4 * CARRIER_PRICE);
    // Reconciled where both are known: (8,300 - 5,000) + (16,600 - 10,000).
    assert_eq!(money["difference_micros"], 3_300 + 6_600);
    // The refused message released its estimate: it costs nothing.
    assert_eq!(money["cost_micros"], 4 * CARRIER_PRICE);
    assert_eq!(money["cost_per_message_micros"], CARRIER_PRICE);
    assert_eq!(money["cost_per_delivered_micros"], 4 * CARRIER_PRICE / 3);
    assert_eq!(summary["groups"], json!([]));

    // Grouped by country: the priced destination of each message.
    let (_, by_country) = app
        .get(&format!(
            "/api/v1/sms/costs/summary?{}&group_by=country",
            period()
        ))
        .await;
    let groups = by_country["groups"].as_array().unwrap();
    let keys: Vec<&Value> = groups.iter().map(|g| &g["key"]).collect();
    assert_eq!(keys, [&json!("FR"), &json!("US")], "{by_country:#}");
    assert_eq!(groups[0]["messages"], 1);
    assert_eq!(usd(&groups[0])["estimated_micros"], 0);
    assert_eq!(usd(&groups[0])["actual_micros"], CARRIER_PRICE);
    assert_eq!(groups[1]["messages"], 3);
    assert_eq!(groups[1]["delivery_rate"], 2.0 / 3.0);
    assert_eq!(usd(&groups[1])["actual_micros"], 3 * CARRIER_PRICE);
    assert_eq!(usd(&groups[1])["difference_micros"], 9_900);

    // Every other grouping has one group here, equal to the totals.
    for (group_by, key) in [
        ("provider", json!("twilio")),
        ("category", json!("transactional")),
        ("day", json!(today)),
        ("template", Value::Null),
    ] {
        let (status, grouped) = app
            .get(&format!(
                "/api/v1/sms/costs/summary?{}&group_by={group_by}",
                period()
            ))
            .await;
        assert_eq!(status, StatusCode::OK, "{grouped}");
        let groups = grouped["groups"].as_array().unwrap();
        assert_eq!(groups.len(), 1, "{grouped:#}");
        assert_eq!(groups[0]["key"], key);
        let mut group = groups[0].clone();
        group.as_object_mut().unwrap().remove("key");
        assert_eq!(&group, totals, "group_by={group_by}");
    }

    // The report: one line (today, twilio, transactional, USD), its totals those of the summary.
    let (status, report) = app
        .get(&format!("/api/v1/sms/costs/report?{}", period()))
        .await;
    assert_eq!(status, StatusCode::OK, "{report}");
    let items = report["items"].as_array().unwrap();
    assert_eq!(items.len(), 1, "{report:#}");
    assert_eq!(items[0]["date"], today);
    assert_eq!(items[0]["provider"], "twilio");
    assert_eq!(items[0]["category"], "transactional");
    assert_eq!(report["totals"]["messages"], totals["messages"]);
    assert_eq!(report["totals"]["segments"], totals["segments"]);
    let report_money = &report["totals"]["costs"][0];
    for column in [
        "currency",
        "messages",
        "estimated_micros",
        "actual_micros",
        "difference_micros",
        "cost_micros",
    ] {
        assert_eq!(report_money[column], money[column], "{column}");
        assert_eq!(items[0][column], money[column], "{column}");
    }

    // The CSV: a header, one row, the same sums.
    let csv = app
        .client
        .get(format!(
            "{}/api/v1/sms/costs/report?{}&format=csv",
            app.base,
            period()
        ))
        .bearer_auth(API_KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(csv.status(), StatusCode::OK);
    assert!(
        csv.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/csv")
    );
    let text = csv.text().await.unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(
        lines[0],
        "date,provider,category,currency,messages,segments,estimated_micros,actual_micros,\
         difference_micros,cost_micros"
    );
    assert_eq!(
        lines[1..],
        [format!(
            "{today},twilio,transactional,USD,4,5,{},{},{},{}",
            money["estimated_micros"],
            money["actual_micros"],
            money["difference_micros"],
            money["cost_micros"]
        )]
    );

    // Delivery metrics: timings from each message's own history.
    let (status, metrics) = app
        .get(&format!(
            "/api/v1/sms/delivery/metrics?{}&group_by=provider",
            period()
        ))
        .await;
    assert_eq!(status, StatusCode::OK, "{metrics}");
    let figures = &metrics["totals"];
    assert_eq!(figures["messages"], 4, "{metrics:#}");
    assert_eq!(figures["delivered"], 3);
    assert_eq!(figures["failed"], 1);
    assert_eq!(figures["delivery_rate"], 0.75);
    let code = fixture.failed["error"]["code"].as_str().unwrap();
    assert_eq!(
        figures["failure_reasons"],
        json!([{"error_code": code, "count": 1}])
    );
    let mut to_sent: Vec<i64> = fixture.delivered.iter().map(|m| first(m, "sent")).collect();
    let mut to_delivered: Vec<i64> = fixture
        .delivered
        .iter()
        .map(|m| first(m, "delivered"))
        .collect();
    to_sent.sort_unstable();
    to_delivered.sort_unstable();
    for (name, values) in [
        ("time_to_sent", &to_sent),
        ("time_to_delivered", &to_delivered),
    ] {
        let timing = &figures[name];
        assert_eq!(timing["count"], 3, "{name}: {timing}");
        assert_eq!(timing["mean_ms"], values.iter().sum::<i64>() / 3, "{name}");
        // Percentiles come from histogram buckets: never below the exact value, at most
        // 9.1 % (an eighth of an octave) above it.
        for (field, exact) in [("p50_ms", values[1]), ("p95_ms", values[2])] {
            let read = timing[field].as_i64().unwrap();
            assert!(
                read >= exact && read <= exact + exact * 91 / 1000 + 1,
                "{name} {field}: {read} for {exact}"
            );
        }
    }
    assert_eq!(
        figures["cost_per_message"],
        json!([{"currency": "USD", "messages": 4, "cost_micros": 4 * CARRIER_PRICE,
            "cost_per_message_micros": CARRIER_PRICE}])
    );
    let groups = metrics["groups"].as_array().unwrap();
    assert_eq!(groups.len(), 1);
    assert_eq!(groups[0]["key"], "twilio");
    assert_eq!(groups[0]["delivery_rate"], 0.75);
    assert_eq!(metrics["opt_outs"]["numbers_opted_out"], 0);
    assert_eq!(metrics["opt_outs"]["messages"], 4);
    assert_eq!(metrics["opt_outs"]["opt_out_rate"], 0.0);
    assert_rollups_match(&app, backend).await;
    assert_eq!(metrics["templates"], json!([]));

    // An empty period has zero totals and no money.
    let (_, empty) = app
        .get("/api/v1/sms/costs/summary?start_date=2020-01-01&end_date=2020-01-31")
        .await;
    assert_eq!(empty["totals"]["messages"], 0, "{empty:#}");
    assert_eq!(empty["totals"]["costs"], json!([]));
    app.stop().await;
}

/// Template usage and the `template` grouping count the messages sent from each template, and
/// another tenant's messages appear in none of the tenant's figures.
async fn templates_and_tenants(backend: Backend) {
    let app = TestApp::start(backend).await;
    let (status, template) = app
        .post(
            "/api/v1/sms/templates",
            &json!({"name": "welcome", "template_body": "Hi {{name}}"}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{template}");
    let template = template["id"].as_str().unwrap().to_owned();
    let mut ids = Vec::new();
    for (to, name) in [("+14155550111", "Ann"), ("+14155550112", "Bob")] {
        let sent = app
            .send(json!({"to_number": to, "template_id": template,
                "template_variables": {"name": name}}))
            .await;
        ids.push(sent["id"].as_str().unwrap().to_owned());
    }
    let text = app
        .send(json!({"to_number": "+14155550113", "message": "plain"}))
        .await;
    ids.push(text["id"].as_str().unwrap().to_owned());
    for id in &ids {
        app.wait_for(id, "delivered").await;
    }

    // Another tenant's message.
    let (status, other) = app
        .admin(
            Method::POST,
            "/admin/tenants",
            Some(&json!({"name": "other"})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{other}");
    let other_id = other["id"].as_str().unwrap();
    let (status, key) = app
        .admin(
            Method::POST,
            &format!("/admin/tenants/{other_id}/api-keys"),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{key}");
    let other_key = key["key"].as_str().unwrap();
    let builder = app
        .client
        .post(format!("{}/api/v1/sms/send", app.base))
        .json(&json!({"to_number": "+14155550114", "message": "elsewhere"}));
    let (status, sent) = app.request_as(other_key, builder).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{sent}");
    // Delivered before the rollups are compared: a message still moving adds deltas after the
    // fold, and the rollup tables alone would lag the recomputation.
    let other_message = sent["id"].as_str().unwrap().to_owned();
    let mut delivered = false;
    for _ in 0..400 {
        let builder = app
            .client
            .get(format!("{}/api/v1/sms/messages/{other_message}", app.base));
        let (_, message) = app.request_as(other_key, builder).await;
        if message["status"] == "delivered" {
            delivered = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
    assert!(delivered, "the other tenant's message was delivered");

    let (status, metrics) = app
        .get(&format!("/api/v1/sms/delivery/metrics?{}", period()))
        .await;
    assert_eq!(status, StatusCode::OK, "{metrics}");
    assert_eq!(metrics["totals"]["messages"], 3, "{metrics:#}");
    assert_eq!(
        metrics["templates"],
        json!([{"template_id": template, "messages": 2, "delivered": 2, "delivery_rate": 1.0}])
    );
    let (_, grouped) = app
        .get(&format!(
            "/api/v1/sms/costs/summary?{}&group_by=template",
            period()
        ))
        .await;
    let groups = grouped["groups"].as_array().unwrap();
    let counts: Vec<(&Value, &Value)> =
        groups.iter().map(|g| (&g["key"], &g["messages"])).collect();
    assert_eq!(
        counts,
        [(&Value::Null, &json!(1)), (&json!(template), &json!(2))],
        "{grouped:#}"
    );

    // The other tenant sees only its own message.
    let builder = app.client.get(format!(
        "{}/api/v1/sms/costs/summary?{}",
        app.base,
        period()
    ));
    let (status, theirs) = app.request_as(other_key, builder).await;
    assert_eq!(status, StatusCode::OK, "{theirs}");
    assert_eq!(theirs["totals"]["messages"], 1, "{theirs:#}");
    assert_rollups_match(&app, backend).await;
    app.stop().await;
}

/// The rollups equal the same figures computed anew from the messages after bulk sends, a draft
/// batch sent, a canceled draft, a draft left unsent and bulk rows a hard-capped budget refuses;
/// and the summary's groups by country add up to its totals.
async fn rollups_follow_every_path(backend: Backend) {
    let app = TestApp::start_with(backend, |config| {
        config.pricing = PriceTable {
            prices: vec![PriceEntry {
                provider: "twilio".into(),
                country: "US".into(),
                encoding: None,
                micros_per_segment: 5_000,
                currency: "USD".into(),
            }],
        }
    })
    .await;
    let bulk = |recipients: Value, immediately: bool| json!({"recipients": recipients, "send_immediately": immediately});
    let (status, sent) = app
        .post(
            "/api/v1/sms/send-bulk",
            &bulk(
                json!([
                    {"to_number": "+14155550121", "message": "one"},
                    {"to_number": "+14155550122", "message": "a".repeat(200)},
                    {"to_number": "+33612345678", "message": "three"},
                ]),
                true,
            ),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{sent}");

    // A draft batch, then sent.
    let (status, draft) = app
        .post(
            "/api/v1/sms/send-bulk",
            &bulk(
                json!([
                    {"to_number": "+14155550123", "message": "draft one"},
                    {"to_number": "+14155550124", "message": "draft two"},
                ]),
                false,
            ),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{draft}");
    let batch = draft["batch_id"].as_str().unwrap();
    let (status, body) = app
        .post(&format!("/api/v1/sms/batches/{batch}/send"), &json!({}))
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");

    // A draft batch left a draft, one of its messages canceled.
    let (status, kept) = app
        .post(
            "/api/v1/sms/send-bulk",
            &bulk(
                json!([
                    {"to_number": "+14155550125", "message": "kept"},
                    {"to_number": "+14155550126", "message": "canceled"},
                ]),
                false,
            ),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{kept}");
    let kept = kept["batch_id"].as_str().unwrap();
    let (_, listed) = app
        .get(&format!("/api/v1/sms/batches/{kept}/messages"))
        .await;
    let canceled = listed["items"][1]["id"].as_str().unwrap();
    let (status, body) = app
        .post(
            &format!("/api/v1/sms/messages/{canceled}/cancel"),
            &json!({}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");

    // Wait for the five sent messages to be delivered and priced.
    let mut settled = Value::Null;
    for _ in 0..400 {
        let (_, summary) = app
            .get(&format!("/api/v1/sms/costs/summary?{}", period()))
            .await;
        if summary["totals"]["delivered"] == 5
            && usd(&summary["totals"])["actual_micros"] == 6 * CARRIER_PRICE
        {
            settled = summary;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
    assert!(
        !settled.is_null(),
        "the sent messages were not all delivered and priced"
    );

    // A hard-capped budget far below one message refuses the rows of a bulk send.
    let (status, budget) = app
        .request(
            app.client
                .put(format!("{}/api/v1/sms/budgets/tiny", app.base))
                .json(
                    &json!({"period": "daily", "limit": {"micros": 1, "currency": "USD"},
                    "hard_cap": true}),
                ),
        )
        .await;
    assert!(status.is_success(), "{budget}");
    let (_, refused) = app
        .post(
            "/api/v1/sms/send-bulk",
            &bulk(
                json!([
                    {"to_number": "+14155550127", "message": "over"},
                    {"to_number": "+14155550128", "message": "over too"},
                ]),
                true,
            ),
        )
        .await;
    assert_eq!(refused["accepted"], 0, "{refused}");

    let (_, rolled) = app
        .get(&format!("/api/v1/sms/costs/summary?{}", period()))
        .await;
    let (_, scanned) = app
        .get(&format!(
            "/api/v1/sms/costs/summary?{}&group_by=country",
            period()
        ))
        .await;
    assert_eq!(
        rolled["totals"], scanned["totals"],
        "{rolled:#}\n{scanned:#}"
    );
    let countries: Vec<(&Value, &Value)> = scanned["groups"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| (&g["key"], &g["messages"]))
        .collect();
    assert!(
        countries.contains(&(&json!("FR"), &json!(1))),
        "{scanned:#}"
    );
    assert_rollups_match(&app, backend).await;
    // Five sent and one canceled; the draft is not counted.
    assert_eq!(rolled["totals"]["messages"], 6, "{rolled:#}");
    assert_eq!(rolled["totals"], settled["totals"]);
    app.stop().await;
}

/// Milliseconds from a message's acceptance to its first `status`.
fn first(message: &Value, status: &str) -> i64 {
    let at = message["history"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["status"] == status)
        .unwrap()["occurred_at"]
        .as_i64()
        .unwrap();
    at - message["created_at"].as_i64().unwrap()
}

/// Reversed, malformed or overlong periods, an unknown `group_by` or `format`, unknown or
/// missing parameters are each `422 invalid_query` on all three routes.
async fn bad_input_is_refused(backend: Backend) {
    let app = TestApp::start(backend).await;
    let routes = [
        "/api/v1/sms/costs/summary",
        "/api/v1/sms/costs/report",
        "/api/v1/sms/delivery/metrics",
    ];
    let bad = [
        "start_date=2026-02-02&end_date=2026-02-01",
        "start_date=2026-02-30&end_date=2026-03-01",
        "start_date=2026-2-1&end_date=2026-03-01",
        "start_date=yesterday&end_date=2026-03-01",
        "start_date=2024-01-01&end_date=2026-01-01",
        "end_date=2026-03-01",
        "start_date=2026-02-01&end_date=2026-03-01&limit=-1",
    ];
    for route in routes {
        for query in bad {
            let (status, body) = app.get(&format!("{route}?{query}")).await;
            assert_eq!(
                status,
                StatusCode::UNPROCESSABLE_ENTITY,
                "{route}?{query}: {body}"
            );
            assert_eq!(body["error"]["code"], "invalid_query", "{route}?{query}");
        }
    }
    for (route, query) in [
        (routes[0], "group_by=week"),
        (routes[2], "group_by=status"),
        (routes[1], "format=xml"),
        (routes[1], "group_by=day"),
    ] {
        let url = format!("{route}?start_date=2026-02-01&end_date=2026-02-02&{query}");
        let (status, body) = app.get(&url).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{url}: {body}");
        assert_eq!(body["error"]["code"], "invalid_query", "{url}");
    }
    app.stop().await;
}

/// Waits until message `id` is delivered and its actual price is recorded.
async fn wait_priced(app: &TestApp, id: &str) -> Value {
    let mut last = Value::Null;
    for _ in 0..400 {
        last = app.message(id).await;
        if last["status"] == "delivered" && !last["cost"]["actual"].is_null() {
            return last;
        }
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
    panic!("message {id} was not priced within 10 s: {last:#}");
}

/// Every message's contribution to the rollups, computed anew from the messages and their costs
/// by the definition migration 0014 states: what the triggers must have kept (as the sum of the
/// deltas they append).
const CONTRIBUTIONS: &str = "
    SELECT m.tenant_id AS tenant_id, m.created_at / 86400000 AS day, m.provider AS provider,
        m.category AS category, COALESCE(m.template_id, '') AS template_id,
        COALESCE(c.country, '') AS country, m.status AS status,
        CASE WHEN m.status IN ('failed', 'undelivered') THEN COALESCE(m.error_code, '')
             ELSE '' END AS error_code,
        COALESCE(c.actual_currency, c.currency, '') AS currency,
        1 AS messages, m.segments AS segments,
        CASE WHEN c.actual_currency IS NULL OR c.actual_currency = c.currency
             THEN COALESCE(c.estimate_micros, 0) ELSE 0 END AS estimated_micros,
        COALESCE(c.actual_micros, 0) AS actual_micros,
        COALESCE(c.difference_micros, 0) AS difference_micros,
        COALESCE(c.actual_micros, CASE WHEN m.status IN ('failed', 'canceled') THEN 0
                 ELSE COALESCE(c.estimate_micros, 0) END) AS cost_micros
    FROM messages m
    LEFT JOIN message_costs c ON c.tenant_id = m.tenant_id AND c.message_id = m.id";

/// The narrow rollup tables, each with its key; each is read through its view `{table}_now` (on
/// top of the deltas not folded yet) and, after a fold, alone.
const NARROW: [(&str, &str); 3] = [
    (
        "cost_rollups",
        "tenant_id, day, provider, category, status, currency",
    ),
    (
        "template_rollups",
        "tenant_id, day, category, template_id, status, currency",
    ),
    (
        "country_rollups",
        "tenant_id, day, category, country, status, currency",
    ),
];

/// The sums of a narrow rollup over `{source}` by `{key}`, keys whose messages all moved
/// elsewhere left out.
const NARROW_SUMS: &str = "
    SELECT {key}, SUM(messages), SUM(segments), SUM(estimated_micros), SUM(actual_micros),
           SUM(difference_micros), SUM(cost_micros)
    FROM {source}
    GROUP BY {key}
    HAVING SUM(messages) <> 0 OR SUM(segments) <> 0 OR SUM(estimated_micros) <> 0
        OR SUM(actual_micros) <> 0 OR SUM(difference_micros) <> 0 OR SUM(cost_micros) <> 0";

/// The failure counts computed anew, per dimension and value.
const FAILURES_FROM_MESSAGES: &str = "
    SELECT w.tenant_id, dims.name, w.day,
        CASE dims.name WHEN 'provider' THEN w.provider WHEN 'category' THEN w.category
            WHEN 'template' THEN w.template_id WHEN 'country' THEN w.country ELSE '' END,
        w.error_code, SUM(w.messages)
    FROM ({contributions}) AS w
    CROSS JOIN (SELECT 'all' AS name UNION ALL SELECT 'provider' UNION ALL
                SELECT 'category' UNION ALL SELECT 'template' UNION ALL SELECT 'country') AS dims
    WHERE w.status IN ('failed', 'undelivered')
    GROUP BY 1, 2, 3, 4, 5";

/// The failure counts as stored in `{table}`.
const FAILURES_KEPT: &str = "
    SELECT tenant_id, dimension, day, value, error_code, SUM(messages)
    FROM {table}
    GROUP BY tenant_id, dimension, day, value, error_code
    HAVING SUM(messages) <> 0";

/// The latency histograms computed anew from each message's first `sent` and `delivered`.
const LATENCY_FROM_HISTORY: &str = "
    SELECT tenant_id, name, day, value, kind, bucket, COUNT(*) AS messages,
           SUM(duration) AS total_ms
    FROM (
        SELECT m.tenant_id AS tenant_id, dims.name AS name, m.created_at / 86400000 AS day,
            CASE dims.name WHEN 'provider' THEN m.provider WHEN 'category' THEN m.category
                WHEN 'template' THEN COALESCE(m.template_id, '')
                WHEN 'country' THEN COALESCE(c.country, '') ELSE '' END AS value,
            f.status AS kind,
            (SELECT MAX(b.lower_ms) FROM latency_buckets b
              WHERE b.lower_ms <= CASE WHEN f.occurred_at > m.created_at
                                       THEN f.occurred_at - m.created_at ELSE 0 END) AS bucket,
            CASE WHEN f.occurred_at > m.created_at THEN f.occurred_at - m.created_at
                 ELSE 0 END AS duration
        FROM messages m
        LEFT JOIN message_costs c ON c.tenant_id = m.tenant_id AND c.message_id = m.id
        CROSS JOIN (SELECT 'all' AS name UNION ALL SELECT 'provider' UNION ALL
                    SELECT 'category' UNION ALL SELECT 'template' UNION ALL SELECT 'country') AS dims
        JOIN status_events f ON f.tenant_id = m.tenant_id AND f.message_id = m.id
        WHERE f.status IN ('sent', 'delivered')
          AND f.id = (SELECT MIN(e.id) FROM status_events e
                      WHERE e.tenant_id = f.tenant_id AND e.message_id = f.message_id
                        AND e.status = f.status)
    ) AS d
    GROUP BY tenant_id, name, day, value, kind, bucket";

/// The latency histograms as readers see them (`latency_now`, or after a fold the table).
const LATENCY_KEPT: &str = "
    SELECT tenant_id, dimension, day, value, kind, bucket_ms, SUM(messages), SUM(total_ms)
    FROM {table}
    GROUP BY tenant_id, dimension, day, value, kind, bucket_ms";

/// Asserts that the stored rollups, failure counts and latency histograms equal the same figures
/// computed anew from the messages, their costs and their histories: as readers see them (with
/// the deltas not folded yet), then after a fold in the rollup tables alone.
async fn assert_rollups_match(app: &TestApp, backend: Backend) {
    compare_rollups(app, backend, "_now", "latency_now").await;
    app.herald.store().fold_rollups().await.unwrap();
    compare_rollups(app, backend, "", "latency_rollups").await;
}

/// One comparison of [`assert_rollups_match`], reading the rollup tables with `suffix` (`_now`
/// for the views) and the latency histograms from `latency`.
async fn compare_rollups(app: &TestApp, backend: Backend, suffix: &str, latency: &str) {
    let contributions = format!("({CONTRIBUTIONS}) AS w");
    let mut pairs: Vec<(String, String, String, bool)> = NARROW
        .iter()
        .map(|(table, key)| {
            let sums = NARROW_SUMS.replace("{key}", key);
            (
                format!("{table}{suffix}"),
                sums.replace("{source}", &contributions),
                sums.replace("{source}", &format!("{table}{suffix}")),
                true,
            )
        })
        .collect();
    pairs.push((
        format!("failure_rollups{suffix}"),
        FAILURES_FROM_MESSAGES.replace("{contributions}", CONTRIBUTIONS),
        FAILURES_KEPT.replace("{table}", &format!("failure_rollups{suffix}")),
        // Not every scenario fails a message (`summary_report_and_metrics` does).
        false,
    ));
    pairs.push((
        latency.to_owned(),
        LATENCY_FROM_HISTORY.to_owned(),
        LATENCY_KEPT.replace("{table}", latency),
        true,
    ));
    for (name, computed, kept, must_have_rows) in pairs {
        let (computed, kept) = (computed.as_str(), kept.as_str());
        let all = format!("SELECT COUNT(*) FROM ({computed}) AS every");
        let differences = [(computed, kept), (kept, computed)]
            .map(|(a, b)| format!("SELECT COUNT(*) FROM ({a} EXCEPT {b}) AS difference"));
        for (i, sql) in std::iter::once(all).chain(differences).enumerate() {
            let count: i64 = match backend {
                Backend::Sqlite => {
                    let pool = sqlx::SqlitePool::connect(&app.storage).await.unwrap();
                    sqlx::query_scalar(sqlx::AssertSqlSafe(sql))
                        .fetch_one(&pool)
                        .await
                        .unwrap()
                }
                Backend::Postgres => {
                    let pool = sqlx::PgPool::connect(&app.storage).await.unwrap();
                    sqlx::query_scalar(sqlx::AssertSqlSafe(sql))
                        .fetch_one(&pool)
                        .await
                        .unwrap()
                }
            };
            if i == 0 {
                assert!(count > 0 || !must_have_rows, "{name}: nothing to compare");
            } else {
                assert_eq!(count, 0, "{name}: rows in one and not the other");
            }
        }
    }
}

/// On PostgreSQL the store vacuums the delta tables it deletes from every second and analyses
/// the rollups, so neither depends on autovacuum (which a server can have off).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_rollup_tables_are_tidied() {
    let app = TestApp::start(Backend::Postgres).await;
    let sent = app
        .send(json!({"to_number": "+14155550101", "message": "tidy"}))
        .await;
    app.wait_for(sent["id"].as_str().unwrap(), "delivered")
        .await;
    app.herald.store().fold_rollups().await.unwrap();
    app.herald.store().tidy_rollups().await.unwrap();
    let pool = sqlx::PgPool::connect(&app.storage).await.unwrap();
    // The statistics collector reports asynchronously: poll briefly.
    let mut tidied: Vec<String> = Vec::new();
    for _ in 0..100 {
        tidied = sqlx::query_scalar(
            "SELECT relname::text FROM pg_stat_user_tables
             WHERE (relname IN ('rollup_deltas', 'latency_deltas') AND last_vacuum IS NOT NULL)
                OR (relname IN ('cost_rollups', 'latency_rollups') AND last_analyze IS NOT NULL)
             ORDER BY relname",
        )
        .fetch_all(&pool)
        .await
        .unwrap();
        if tidied.len() == 4 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(
        tidied,
        [
            "cost_rollups",
            "latency_deltas",
            "latency_rollups",
            "rollup_deltas"
        ]
    );
    app.stop().await;
}

/// On PostgreSQL the store analyses a table whose rows changed by more than a tenth since its
/// last analysis, so the plans of its prepared lookups follow the data where autovacuum is off
/// (as on the test server). Without statistics, the generic plan of a message lookup by tenant
/// and id on a new table scanned `messages_batch` (tenant first, the id fourth): every lookup
/// read all of the tenant's messages.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_lookups_are_planned_on_statistics() {
    let app = TestApp::start(Backend::Postgres).await;
    let mut last = Value::Null;
    for i in 0..200 {
        last = app
            .send(json!({"to_number": format!("+1415555{i:04}"), "message": "plan"}))
            .await;
    }
    app.wait_for(last["id"].as_str().unwrap(), "delivered")
        .await;
    let pool = sqlx::PgPool::connect(&app.storage).await.unwrap();
    let analysed = |pool: sqlx::PgPool| async move {
        sqlx::query_scalar::<_, bool>(
            "SELECT last_analyze IS NOT NULL OR last_autoanalyze IS NOT NULL
             FROM pg_stat_user_tables WHERE relname = 'messages'",
        )
        .fetch_one(&pool)
        .await
        .unwrap()
    };
    // The statistics collector reports asynchronously: analyse until `messages` is done.
    for _ in 0..100 {
        app.herald.store().analyze_changed().await.unwrap();
        if analysed(pool.clone()).await {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert!(analysed(pool.clone()).await, "messages was analysed");

    let mut conn = pool.acquire().await.unwrap();
    sqlx::raw_sql(
        "SET plan_cache_mode = force_generic_plan;
         PREPARE lookup (text, text) AS SELECT * FROM messages WHERE tenant_id = $1 AND id = $2",
    )
    .execute(&mut *conn)
    .await
    .unwrap();
    let plan: Vec<String> = sqlx::query_scalar("EXPLAIN EXECUTE lookup ('default', 'msg_x')")
        .fetch_all(&mut *conn)
        .await
        .unwrap();
    let plan = plan.join("\n");
    assert!(plan.contains("messages_pkey"), "{plan}");
    drop(conn);
    app.stop().await;
}

/// A backlog of deltas larger than one SQLite fold chunk (20,000) is folded whole, over several
/// transactions: the reports read the same figures before the fold (views over the deltas) and
/// after it (the tables alone), and no delta is left.
async fn a_large_backlog_of_deltas_is_folded_whole(backend: Backend) {
    use herald::store::{Dimension, Store, StoreOptions};

    let (url, _dir) = common::app::storage_url(backend).await;
    let store = Store::connect(&url, &StoreOptions::default())
        .await
        .unwrap();
    store.migrate().await.unwrap();
    // 50,000 deltas of 3 days (+1 messages each; every 10th one a -1 that moves it back out),
    // and as many latency deltas; written in one statement, as a bulk batch's triggers do.
    let rows = "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 50000)";
    let sign = "CASE WHEN i % 10 = 0 THEN -1 ELSE 1 END";
    let statements = [
        format!(
            "{rows} INSERT INTO rollup_deltas (tenant_id, day, provider, category, template_id,
                 country, status, error_code, currency, messages, segments, estimated_micros,
                 actual_micros, difference_micros, cost_micros)
             SELECT 'default', i % 3, 'twilio', 'transactional', '', 'US', 'delivered', '',
                 'USD', {sign}, 2 * {sign}, 10 * {sign}, 0, 0, 10 * {sign}
             FROM n"
        ),
        format!(
            "{rows} INSERT INTO latency_deltas (tenant_id, dimension, day, value, kind,
                 bucket_ms, messages, total_ms)
             SELECT 'default', 'all', i % 3, '', 'sent', 0, {sign}, 0 FROM n"
        ),
    ];
    for sql in &statements {
        match backend {
            Backend::Sqlite => {
                let pool = sqlx::SqlitePool::connect(&url).await.unwrap();
                sqlx::query(sqlx::AssertSqlSafe(sql.as_str()))
                    .execute(&pool)
                    .await
                    .unwrap();
            }
            Backend::Postgres => {
                let pool = sqlx::PgPool::connect(&url).await.unwrap();
                sqlx::query(sqlx::AssertSqlSafe(sql.as_str()))
                    .execute(&pool)
                    .await
                    .unwrap();
            }
        }
    }
    let tenant = herald::TenantId::default_tenant();
    let read = || async {
        let mut facts = store
            .rollup_facts(&tenant, (0, 3), &[Dimension::Day])
            .await
            .unwrap();
        facts.sort_by_key(|fact| fact.day);
        facts
            .iter()
            .map(|fact| (fact.day, fact.messages, fact.segments, fact.cost_micros))
            .collect::<Vec<_>>()
    };
    // Of each day's 16,666 or 16,667 deltas, a tenth are -1: 40,000 messages in all.
    let expected: Vec<(i64, i64, i64, i64)> = (0..3)
        .map(|day| {
            let (ones, minus) =
                (1..=50_000_i64)
                    .filter(|i| i % 3 == day)
                    .fold((0, 0), |(ones, minus), i| {
                        if i % 10 == 0 {
                            (ones, minus + 1)
                        } else {
                            (ones + 1, minus)
                        }
                    });
            let messages = ones - minus;
            (day, messages, 2 * messages, 10 * messages)
        })
        .collect();
    assert_eq!(expected.iter().map(|e| e.1).sum::<i64>(), 40_000);
    assert_eq!(read().await, expected, "through the views, before the fold");
    // The store's own folder may have begun meanwhile: either way nothing is left after this.
    store.fold_rollups().await.unwrap();
    assert_eq!(read().await, expected, "after the fold");
    let latency = store.latency_facts(&tenant, (0, 3), None).await.unwrap();
    assert_eq!(
        latency.iter().map(|fact| fact.messages).sum::<i64>(),
        40_000
    );
    let left = match backend {
        Backend::Sqlite => {
            let pool = sqlx::SqlitePool::connect(&url).await.unwrap();
            sqlx::query_scalar::<_, i64>(
                "SELECT (SELECT COUNT(*) FROM rollup_deltas) + (SELECT COUNT(*) FROM latency_deltas)",
            )
            .fetch_one(&pool)
            .await
            .unwrap()
        }
        Backend::Postgres => {
            let pool = sqlx::PgPool::connect(&url).await.unwrap();
            sqlx::query_scalar::<_, i64>(
                "SELECT (SELECT COUNT(*) FROM rollup_deltas) + (SELECT COUNT(*) FROM latency_deltas)",
            )
            .fetch_one(&pool)
            .await
            .unwrap()
        }
    };
    assert_eq!(left, 0, "deltas left after the fold");
    store.close().await;
}

/// A fold before the migrations have run fails as a missing table, which the store's folder
/// tells apart from a real failure (it then logs at debug, not as a warning every second).
async fn folding_before_the_migrations_is_told_apart(backend: Backend) {
    use herald::store::{Store, StoreOptions};

    let (url, _dir) = common::app::storage_url(backend).await;
    let store = Store::connect(&url, &StoreOptions::default())
        .await
        .unwrap();
    let error = store.fold_rollups().await.unwrap_err();
    assert!(error.is_undefined_table(), "{error:?}");
    store.migrate().await.unwrap();
    store.fold_rollups().await.unwrap();
    store.close().await;
}
