//! Templates rendered by renderers other than the bundled one, each scenario on SQLite and on
//! PostgreSQL: a renderer built against the frozen 0.1.0 contract (text pairs, no sections)
//! keeps working, and a hostile renderer's list of missing variables reaches a client bounded.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::app::{Backend, TestApp};
use reqwest::StatusCode;
use serde_json::json;

on_both_backends!(
    renderer_0_1_0_keeps_working,
    hostile_missing_variables_are_bounded
);

const TEMPLATES: &str = "/api/v1/sms/templates";
const TO: &str = "+14155552671";

/// Starts Herald with `renderer` (a plugin in `target/plugins`) as the renderer.
async fn with_renderer(backend: Backend, renderer: &'static str) -> TestApp {
    TestApp::start_with(backend, |config| {
        config.plugins.insert(
            renderer.to_owned(),
            common::plugin_config(common::plugin(renderer)),
        );
        config.routing.renderer = renderer.to_owned();
    })
    .await
}

/// A 0.1.0 renderer gets the variables as text (numbers and booleans written out), refuses a
/// missing one, previews with the missing ones reported, and a list it cannot take is a 422.
async fn renderer_0_1_0_keeps_working(backend: Backend) {
    let app = with_renderer(backend, "renderer-0.1.0").await;
    let (status, template) = app
        .post(
            TEMPLATES,
            &json!({"name": "code", "template_body": "Hi {{name}}, {{code}} {{ok}}"}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{template}");
    assert_eq!(template["variables"], json!(["name", "code", "ok"]));
    let sent = app
        .send(json!({"to_number": TO, "template_id": "code", "template_variables": {"name": "Ann", "code": 42, "ok": true}}))
        .await;
    assert_eq!(sent["body"], "Hi Ann, 42 true");
    assert_eq!(sent["template_version"], 1);

    let (status, error) = app
        .post("/api/v1/sms/send", &json!({"to_number": TO, "template_id": "code", "template_variables": {"name": "Ann", "ok": 1}}))
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{error}");
    assert_eq!(error["error"]["code"], "missing_template_variable");
    let (status, error) = app
        .post("/api/v1/sms/send", &json!({"to_number": TO, "template_id": "code", "template_variables": {"name": ["A"], "code": 1, "ok": 1}}))
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{error}");
    assert_eq!(error["error"]["code"], "invalid_template_variable");

    let (status, preview) = app
        .post(&format!("{TEMPLATES}/code/preview"), &json!({"ok": "yes"}))
        .await;
    assert_eq!(status, StatusCode::OK, "{preview}");
    assert_eq!(preview["rendered_text"], "Hi ,  yes");
    assert_eq!(preview["missing_variables"], json!(["name", "code"]));
    app.stop().await;
}

/// A renderer that reports 10,000 long missing names: the preview answers at most 256 of them,
/// each cut to an id's length.
async fn hostile_missing_variables_are_bounded(backend: Backend) {
    let app = with_renderer(backend, "hostile-renderer").await;
    let (status, template) = app
        .post(
            TEMPLATES,
            &json!({"name": "many-missing", "template_body": "many-missing"}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{template}");
    let (status, preview) = app
        .post(&format!("{TEMPLATES}/many-missing/preview"), &json!({}))
        .await;
    assert_eq!(status, StatusCode::OK, "{preview}");
    let missing = preview["missing_variables"].as_array().unwrap();
    assert_eq!(missing.len(), 256);
    assert!(
        missing
            .iter()
            .all(|name| name.as_str().unwrap().len() <= 128)
    );
    app.stop().await;
}
