//! Operator endpoints under `/admin`, authenticated by the admin key.

use axum::Json;
use axum::extract::State;
use axum::http::HeaderMap;

use super::error::{ApiError, ApiResult};
use crate::app::AppState;
use crate::plugin::{PluginSummary, ReloadReport, watch};

/// Checks `Authorization: Bearer <admin_key>`; admin routes are off when no key is configured.
fn authorize(state: &AppState, headers: &HeaderMap) -> ApiResult<()> {
    let expected = &state.config.server.admin_key;
    if expected.is_empty() {
        return Err(ApiError::forbidden(
            "admin_disabled",
            "admin endpoints are disabled: set server.admin_key",
        ));
    }
    match super::bearer(headers) {
        Some(key) if super::constant_time_eq(key.as_bytes(), expected.as_bytes()) => Ok(()),
        Some(_) => Err(ApiError::unauthorized("the admin key is not valid")),
        None => Err(ApiError::unauthorized(
            "send the admin key as `Authorization: Bearer <key>`",
        )),
    }
}

/// `GET /admin/plugins`: the loaded plugins.
pub async fn list(
    State(state): State<AppState>,
    headers: HeaderMap,
) -> ApiResult<Json<Vec<PluginSummary>>> {
    authorize(&state, &headers)?;
    Ok(Json(state.plugins.list()))
}

/// `POST /admin/plugins/reload`: re-reads the configuration and reloads changed plugins.
pub async fn reload(
    State(state): State<AppState>,
    headers: HeaderMap,
) -> ApiResult<Json<ReloadReport>> {
    authorize(&state, &headers)?;
    let report = watch::reload(&state.plugins, &state.source)
        .await
        .map_err(|e| ApiError::validation("invalid_configuration", e.to_string()))?;
    Ok(Json(report))
}
