//! The HTTP API (axum): routes, authentication helpers and the error shape.

pub mod admin;
pub mod auth;
pub mod error;
pub mod messages;
pub mod templates;
pub mod webhooks;

use axum::Router;
use axum::http::HeaderMap;
use axum::routing::{get, post};

use crate::app::AppState;
pub use error::{ApiError, ApiResult};

/// The whole HTTP surface of Herald.
pub fn router(state: AppState) -> Router {
    let max_body = state.config.server.max_body_bytes;
    Router::new()
        .route("/healthz", get(healthz))
        .route("/api/v1/sms/send", post(messages::send))
        .route("/api/v1/sms/messages", get(messages::list))
        .route("/api/v1/sms/messages/{id}", get(messages::get))
        .route("/api/v1/sms/templates", post(templates::create))
        .route("/api/v1/sms/templates/{id}", get(templates::get))
        .route(
            "/api/v1/sms/webhooks/{provider}/status",
            post(webhooks::receive),
        )
        .route(
            "/api/v1/sms/webhooks/{provider}/inbound",
            post(webhooks::receive),
        )
        .route("/admin/plugins", get(admin::list))
        .route("/admin/plugins/reload", post(admin::reload))
        .fallback(error::not_found)
        .method_not_allowed_fallback(error::method_not_allowed)
        .layer(axum::extract::DefaultBodyLimit::max(max_body))
        .with_state(state)
}

async fn healthz() -> axum::Json<serde_json::Value> {
    axum::Json(serde_json::json!({ "status": "ok" }))
}

/// The token of an `Authorization: Bearer` header.
pub(crate) fn bearer(headers: &HeaderMap) -> Option<&str> {
    let value = headers
        .get(axum::http::header::AUTHORIZATION)?
        .to_str()
        .ok()?;
    value.strip_prefix("Bearer ").map(str::trim)
}

/// Compares secrets without leaking where they differ through timing.
pub(crate) fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}
