//! The cost ledger over HTTP, each scenario on SQLite and on PostgreSQL: estimates from the
//! operator's price table, from a tenant's own, from the running average of actual prices, and
//! none; the local carrier's actual price (Twilio's 0.0083 USD per segment, reported with the
//! `delivered` callback) replacing the estimate with the difference recorded; and the prices of
//! several attempts summed.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::app::{ACCOUNT_SID, AUTH_TOKEN, Backend, TestApp};
use herald::pipeline::pricing::{PriceEntry, PriceTable};
use herald_testkit::carrier::{ScriptedResponse, twilio_signature};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

on_both_backends!(
    estimate_from_config_is_reconciled,
    estimate_from_tenant_settings,
    estimate_from_running_average_or_none,
    every_attempt_counts,
    estimate_route_prices,
    bulk_rows_are_estimated,
);

const TO: &str = "+14155552671";
/// What the local carrier charges per segment, in micros (its `-0.00830` USD).
const CARRIER_PRICE: i64 = 8_300;

/// A price entry for the Twilio plugin.
fn twilio(country: &str, micros: i64) -> PriceEntry {
    PriceEntry {
        provider: "twilio".into(),
        country: country.into(),
        encoding: None,
        micros_per_segment: micros,
        currency: "USD".into(),
    }
}

/// Starts Herald with `prices` as the operator's price table.
async fn start(backend: Backend, prices: Vec<PriceEntry>) -> TestApp {
    TestApp::start_with(backend, |config| config.pricing = PriceTable { prices }).await
}

/// Sends `text` to `to` and returns the `/send` answer.
async fn send(app: &TestApp, to: &str, text: &str) -> Value {
    app.send(json!({"to_number": to, "message": text})).await
}

/// The estimate at accept comes from `[pricing]` (segments × price), is shown in the `/send`
/// answer, and once the carrier reports its price the actual replaces it and the difference is
/// recorded in the message view.
async fn estimate_from_config_is_reconciled(backend: Backend) {
    let app = start(backend, vec![twilio("*", 1_000), twilio("US", 5_000)]).await;
    let sent = send(&app, TO, "hello").await;
    assert_eq!(
        sent["cost"]["estimate"],
        json!({"micros": 5_000, "currency": "USD"})
    );
    assert_eq!(sent["cost"]["estimate_source"], "config");
    assert!(sent.get("cost_unavailable").is_none(), "{sent:#}");
    let id = sent["id"].as_str().unwrap();

    // 161 GSM characters: two segments, twice the price.
    let long = send(&app, TO, &"a".repeat(161)).await;
    assert_eq!(long["segments"], 2);
    assert_eq!(long["cost"]["estimate"]["micros"], 10_000);

    // A number in another country takes the provider's `*` entry.
    let gb = send(&app, "+447911123456", "hello").await;
    assert_eq!(gb["cost"]["estimate"]["micros"], 1_000);

    let delivered = wait_priced(&app, id).await;
    let cost = &delivered["cost"];
    assert_eq!(cost["estimate"]["micros"], 5_000);
    assert_eq!(
        cost["actual"],
        json!({"micros": CARRIER_PRICE, "currency": "USD"})
    );
    assert_eq!(cost["difference_micros"], CARRIER_PRICE - 5_000);
    app.stop().await;
}

/// Bulk rows without a budget are estimated a chunk at a time, each with its own price (its
/// segments, its country) or its reason when none fits, as a single send would be.
async fn bulk_rows_are_estimated(backend: Backend) {
    let app = start(backend, vec![twilio("US", 5_000)]).await;
    let (status, answer) = app
        .post(
            "/api/v1/sms/send-bulk",
            &json!({"recipients": [
                {"to_number": TO, "message": "hello"},
                {"to_number": "+14155550123", "message": "a".repeat(161)},
                {"to_number": "+447911123456", "message": "hello"},
            ]}),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{answer}");
    let id = answer["batch_id"].as_str().unwrap();
    let (_, listed) = app.get(&format!("/api/v1/sms/batches/{id}/messages")).await;
    let mut costs: Vec<(String, Value)> = Vec::new();
    for item in listed["items"].as_array().unwrap() {
        let message = app.message(item["id"].as_str().unwrap()).await;
        costs.push((
            message["to_number"].as_str().unwrap().to_owned(),
            message["cost"]["estimate"]["micros"].clone(),
        ));
    }
    costs.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(
        costs,
        [
            ("+14155550123".to_owned(), json!(10_000)),
            ("+14155552671".to_owned(), json!(5_000)),
            ("+447911123456".to_owned(), Value::Null),
        ]
    );
    app.stop().await;
}

/// A tenant's own price table (its settings' `pricing`) overrides the operator's, and a bad one
/// is refused.
async fn estimate_from_tenant_settings(backend: Backend) {
    let app = start(backend, vec![twilio("US", 5_000)]).await;
    let settings = "/admin/tenants/default/settings";
    let bad = json!({"pricing": {"prices": [{"provider": "twilio", "country": "usa",
        "micros_per_segment": 1, "currency": "USD"}]}});
    let (status, body) = app.admin(Method::PUT, settings, Some(&bad)).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(body["error"]["code"], "invalid_field");

    let own = json!({"pricing": {"prices": [{"provider": "twilio", "country": "US",
        "micros_per_segment": 7_000, "currency": "USD"}]}});
    let (status, body) = app.admin(Method::PUT, settings, Some(&own)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let sent = send(&app, TO, "hello").await;
    assert_eq!(sent["cost"]["estimate"]["micros"], 7_000, "{sent:#}");
    assert_eq!(sent["cost"]["estimate_source"], "tenant");
    let message = app.message(sent["id"].as_str().unwrap()).await;
    assert_eq!(message["cost"]["estimate"]["micros"], 7_000);
    app.stop().await;
}

/// With no price entry and no price seen, a message has no estimate and says why; once an actual
/// price was seen for the provider and country, the next message is estimated at its average.
async fn estimate_from_running_average_or_none(backend: Backend) {
    let app = start(backend, Vec::new()).await;
    let first = send(&app, TO, "hello").await;
    assert_eq!(first["cost"], Value::Null, "{first:#}");
    assert!(
        first["cost_unavailable"]
            .as_str()
            .unwrap()
            .contains("no price"),
        "{first:#}"
    );
    let id = first["id"].as_str().unwrap();
    let delivered = wait_priced(&app, id).await;
    assert_eq!(delivered["cost"]["estimate"], Value::Null);
    assert_eq!(delivered["cost"]["actual"]["micros"], CARRIER_PRICE);
    assert_eq!(delivered["cost"]["difference_micros"], Value::Null);
    assert!(delivered["cost_unavailable"].is_string());

    let second = send(&app, TO, "hello again").await;
    assert_eq!(
        second["cost"]["estimate"]["micros"], CARRIER_PRICE,
        "{second:#}"
    );
    assert_eq!(second["cost"]["estimate_source"], "average");
    // Another country has no average yet.
    let gb = send(&app, "+447911123456", "hello").await;
    assert_eq!(gb["cost"], Value::Null, "{gb:#}");
    app.stop().await;
}

/// A retried message is priced once for the attempt the provider took; a price reported for
/// another attempt of the same message adds to its cost, and the same report twice does not.
async fn every_attempt_counts(backend: Backend) {
    let app = start(backend, vec![twilio("US", CARRIER_PRICE)]).await;
    app.carrier.script(ScriptedResponse::rate_limited(None));
    let sent = send(&app, TO, "retry me").await;
    let id = sent["id"].as_str().unwrap();
    let delivered = wait_priced(&app, id).await;
    assert_eq!(delivered["attempts"], 2);
    assert_eq!(delivered["cost"]["actual"]["micros"], CARRIER_PRICE);
    assert_eq!(delivered["cost"]["difference_micros"], 0);

    // The provider bills another attempt of this message (its own id), twice over.
    for _ in 0..2 {
        let status =
            priced_callback(&app, id, "SMearlierattempt0000000000000000", "-0.00500").await;
        assert_eq!(status, StatusCode::OK);
    }
    let message = app.message(id).await;
    assert_eq!(
        message["cost"]["actual"]["micros"],
        CARRIER_PRICE + 5_000,
        "{message:#}"
    );
    assert_eq!(message["cost"]["difference_micros"], 5_000);
    // The price of the first attempt is corrected, not added again.
    let status = priced_callback(&app, id, "SMearlierattempt0000000000000000", "-0.00600").await;
    assert_eq!(status, StatusCode::OK);
    let message = app.message(id).await;
    assert_eq!(message["cost"]["actual"]["micros"], CARRIER_PRICE + 6_000);
    app.stop().await;
}

/// `POST /estimate` prices the message for the tenant's provider and the recipient's country,
/// and says why when it cannot.
async fn estimate_route_prices(backend: Backend) {
    let app = start(backend, vec![twilio("US", 5_000)]).await;
    let (status, priced) = app
        .post(
            "/api/v1/sms/estimate",
            &json!({"message": "a".repeat(161), "to_number": TO}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{priced}");
    assert_eq!(priced["cost"], json!({"micros": 10_000, "currency": "USD"}));
    assert!(priced.get("cost_unavailable").is_none());
    let (_, unpriced) = app
        .post("/api/v1/sms/estimate", &json!({"message": "hi"}))
        .await;
    assert_eq!(unpriced["cost"], Value::Null);
    assert!(unpriced["cost_unavailable"].is_string());
    assert_eq!(app.message_count().await, 0);
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

/// Posts a signed `delivered` callback for message `id` naming attempt `sid` and `price`.
async fn priced_callback(app: &TestApp, id: &str, sid: &str, price: &str) -> StatusCode {
    let token = app.herald.pipeline().callback_key().token(
        &herald::TenantId::default_tenant(),
        id,
        "twilio",
    );
    let url = format!(
        "{}/api/v1/sms/webhooks/twilio/status?message_id={id}&token={token}",
        app.base
    );
    let params: Vec<(String, String)> = [
        ("MessageSid", sid),
        ("MessageStatus", "delivered"),
        ("AccountSid", ACCOUNT_SID),
        ("Price", price),
        ("PriceUnit", "USD"),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    app.client
        .post(&url)
        .header(
            "X-Twilio-Signature",
            twilio_signature(AUTH_TOKEN, &url, &params),
        )
        .form(&params)
        .send()
        .await
        .unwrap()
        .status()
}
