//! Helpers of the template tests: creating a template, asserting a refusal.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use reqwest::StatusCode;
use serde_json::Value;

use super::app::TestApp;

/// The templates collection.
pub const TEMPLATES: &str = "/api/v1/sms/templates";

/// Creates a template, asserting `201`.
pub async fn create(app: &TestApp, body: Value) -> Value {
    let (status, template) = app.post(TEMPLATES, &body).await;
    assert_eq!(status, StatusCode::CREATED, "{template}");
    template
}

/// Asserts an error answer with `status` and `code`.
#[track_caller]
pub fn refused(answer: (StatusCode, Value), status: StatusCode, code: &str) -> Value {
    assert_eq!(answer.0, status, "{}", answer.1);
    assert_eq!(answer.1["error"]["code"], code, "{}", answer.1);
    answer.1
}
