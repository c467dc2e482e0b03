//! API-key authentication: every `/api/v1/sms` route except provider webhooks needs a key.
//!
//! Keys come from `server.api_keys` and all belong to the default tenant for now; the key may be
//! sent as `Authorization: Bearer <key>` or `X-API-Key: <key>`.

use axum::extract::FromRequestParts;
use axum::http::request::Parts;

use super::error::ApiError;
use crate::app::AppState;

/// The tenant a request acts for, established from its API key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tenant(pub String);

/// The tenant every configured API key belongs to, until tenant management exists.
pub const DEFAULT_TENANT: &str = "default";

impl FromRequestParts<AppState> for Tenant {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let key = super::bearer(&parts.headers)
            .or_else(|| parts.headers.get("x-api-key").and_then(|v| v.to_str().ok()))
            .ok_or_else(|| {
                ApiError::unauthorized("send an API key as `Authorization: Bearer <key>`")
            })?;
        let known = state
            .config
            .server
            .api_keys
            .iter()
            .any(|k| !k.is_empty() && super::constant_time_eq(k.as_bytes(), key.as_bytes()));
        if known {
            Ok(Tenant(DEFAULT_TENANT.into()))
        } else {
            Err(ApiError::unauthorized("the API key is not valid"))
        }
    }
}
