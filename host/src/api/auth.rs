//! API-key authentication: every `/api/v1/sms` route except provider webhooks needs a key.
//!
//! Keys come from `server.api_keys` and all belong to the default tenant for now; the key may be
//! sent as `Authorization: Bearer <key>` (the scheme in any case) or `X-API-Key: <key>`.

use axum::extract::FromRequestParts;
use axum::http::request::Parts;

use super::error::ApiError;
use crate::domain::{ErrorCode, TenantId};
use crate::pipeline::Pipeline;

/// The tenant a request acts for, established from its API key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tenant(pub TenantId);

impl FromRequestParts<Pipeline> for Tenant {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        pipeline: &Pipeline,
    ) -> Result<Self, Self::Rejection> {
        let key = super::bearer(&parts.headers)
            .or_else(|| parts.headers.get("x-api-key").and_then(|v| v.to_str().ok()))
            .ok_or_else(|| {
                ApiError::new(
                    ErrorCode::Unauthorized,
                    "send an API key as `Authorization: Bearer <key>`",
                )
            })?;
        let known = pipeline
            .config()
            .server
            .api_keys
            .iter()
            .any(|k| !k.is_empty() && super::constant_time_eq(k.as_bytes(), key.as_bytes()));
        if known {
            Ok(Tenant(TenantId::default_tenant()))
        } else {
            Err(ApiError::new(
                ErrorCode::Unauthorized,
                "the API key is not valid",
            ))
        }
    }
}
