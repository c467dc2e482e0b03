//! Operator endpoints under `/admin`, authenticated by the admin key.

use axum::Json;
use axum::extract::State;
use axum::http::HeaderMap;

use super::error::{ApiError, ApiResult};
use crate::domain::ErrorCode;
use crate::pipeline::Pipeline;
use crate::plugin::{PluginSummary, ReloadReport};

/// Checks `Authorization: Bearer <admin_key>`; admin routes are off when no key is configured.
fn authorize(pipeline: &Pipeline, headers: &HeaderMap) -> ApiResult<()> {
    let config = pipeline.config();
    let expected = &config.server.admin_key;
    if expected.is_empty() {
        return Err(ApiError::new(
            ErrorCode::AdminDisabled,
            "admin endpoints are disabled: set server.admin_key",
        ));
    }
    match super::bearer(headers) {
        Some(key) if super::constant_time_eq(key.as_bytes(), expected.as_bytes()) => Ok(()),
        Some(_) => Err(ApiError::new(
            ErrorCode::Unauthorized,
            "the admin key is not valid",
        )),
        None => Err(ApiError::new(
            ErrorCode::Unauthorized,
            "send the admin key as `Authorization: Bearer <key>`",
        )),
    }
}

/// `GET /admin/plugins`: the loaded plugins.
pub async fn list(
    State(pipeline): State<Pipeline>,
    headers: HeaderMap,
) -> ApiResult<Json<Vec<PluginSummary>>> {
    authorize(&pipeline, &headers)?;
    Ok(Json(pipeline.plugins().list()))
}

/// `POST /admin/plugins/reload`: re-reads the configuration and reloads changed plugins.
pub async fn reload(
    State(pipeline): State<Pipeline>,
    headers: HeaderMap,
) -> ApiResult<Json<ReloadReport>> {
    authorize(&pipeline, &headers)?;
    let report = pipeline
        .reload()
        .await
        .map_err(|e| ApiError::new(ErrorCode::InvalidConfiguration, e.to_string()))?;
    Ok(Json(report))
}
