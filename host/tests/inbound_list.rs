//! `GET /api/v1/sms/inbound` over HTTP, on SQLite and on PostgreSQL: the messages people texted
//! in, newest first, filtered by sender, keyword and date, one page at a time, and only the
//! tenant's own.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::app::{Backend, OUR_NUMBER, TestApp};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

on_both_backends!(
    filters_and_pages,
    bad_filters_are_refused,
    other_tenants_see_nothing
);

const ALICE: &str = "+14155550131";
const BOB: &str = "+14155550132";

/// Has the carrier text Herald `body` from `from`.
async fn text(app: &TestApp, from: &str, body: &str) {
    let status = app
        .carrier
        .send_inbound(from, OUR_NUMBER, body)
        .await
        .unwrap();
    assert_eq!(status, StatusCode::OK);
}

/// The bodies of a page, in order.
fn bodies(page: &Value) -> Vec<String> {
    page["items"]
        .as_array()
        .unwrap_or_else(|| panic!("{page}"))
        .iter()
        .map(|m| m["body"].as_str().unwrap().to_owned())
        .collect()
}

/// Every filter narrows the list, and the cursor walks it newest first without repeats.
async fn filters_and_pages(backend: Backend) {
    let app = TestApp::start(backend).await;
    text(&app, ALICE, "hello there").await;
    text(&app, BOB, "HELP").await;
    text(&app, ALICE, "STOP").await;

    let (status, all) = app.get("/api/v1/sms/inbound").await;
    assert_eq!(status, StatusCode::OK, "{all}");
    assert_eq!(bodies(&all), ["STOP", "HELP", "hello there"]);
    let newest = &all["items"][0];
    assert_eq!(newest["from_number"], ALICE);
    assert_eq!(newest["to_number"], OUR_NUMBER);
    assert_eq!(newest["keyword"], "stop");
    assert_eq!(newest["provider"], "twilio");
    assert!(newest["received_at_iso"].as_str().unwrap().ends_with('Z'));

    let (_, from_alice) = app.get("/api/v1/sms/inbound?from=%2B14155550131").await;
    assert_eq!(bodies(&from_alice), ["STOP", "hello there"]);
    let (_, help) = app.get("/api/v1/sms/inbound?keyword=HELP").await;
    assert_eq!(bodies(&help), ["HELP"]);
    let (_, none) = app
        .get("/api/v1/sms/inbound?from=%2B14155550132&keyword=stop")
        .await;
    assert!(bodies(&none).is_empty());
    let (_, today) = app
        .get("/api/v1/sms/inbound?start_date=2000-01-01&end_date=2999-12-31")
        .await;
    assert_eq!(bodies(&today).len(), 3);
    let (_, old) = app.get("/api/v1/sms/inbound?end_date=2001-01-01").await;
    assert!(bodies(&old).is_empty());

    let mut seen = Vec::new();
    let mut path = "/api/v1/sms/inbound?limit=2".to_owned();
    loop {
        let (status, page) = app.get(&path).await;
        assert_eq!(status, StatusCode::OK, "{page}");
        seen.extend(bodies(&page));
        match page["next_cursor"].as_str() {
            Some(cursor) => path = format!("/api/v1/sms/inbound?limit=2&cursor={cursor}"),
            None => break,
        }
    }
    assert_eq!(seen, ["STOP", "HELP", "hello there"]);
    app.stop().await;
}

/// Malformed filters are `422 invalid_query`, never a 500.
async fn bad_filters_are_refused(backend: Backend) {
    let app = TestApp::start(backend).await;
    for path in [
        "/api/v1/sms/inbound?keyword=maybe",
        "/api/v1/sms/inbound?from=+14155550131",
        "/api/v1/sms/inbound?start_date=tomorrow",
        "/api/v1/sms/inbound?start_date=2025-02-01&end_date=2025-01-01",
        "/api/v1/sms/inbound?limit=501",
        "/api/v1/sms/inbound?cursor=nothex",
        "/api/v1/sms/inbound?cursor=313a00",
        "/api/v1/sms/inbound?from=%00",
        "/api/v1/sms/inbound?sender=x",
    ] {
        let (status, error) = app.get(path).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{path}: {error}");
        assert_eq!(error["error"]["code"], "invalid_query", "{path}");
    }
    app.stop().await;
}

/// Another tenant's key lists none of the default tenant's inbound messages.
async fn other_tenants_see_nothing(backend: Backend) {
    let app = TestApp::start(backend).await;
    text(&app, ALICE, "hello").await;
    let (status, tenant) = app
        .admin(
            Method::POST,
            "/admin/tenants",
            Some(&json!({"name": "Acme"})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{tenant}");
    let id = tenant["id"].as_str().unwrap();
    let (status, key) = app
        .admin(Method::POST, &format!("/admin/tenants/{id}/api-keys"), None)
        .await;
    assert_eq!(status, StatusCode::CREATED, "{key}");
    let key = key["key"].as_str().unwrap();
    let (status, page) = app
        .request_as(
            key,
            app.client.get(format!("{}/api/v1/sms/inbound", app.base)),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{page}");
    assert!(bodies(&page).is_empty(), "{page}");
    let (_, own) = app.get("/api/v1/sms/inbound").await;
    assert_eq!(bodies(&own), ["hello"]);
    app.stop().await;
}
