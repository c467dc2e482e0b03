//! API-key authentication: every `/api/v1/sms` route except provider webhooks needs a key.
//!
//! A key is one a tenant was issued through the admin API, or one of the operator's bootstrap
//! keys (`server.api_keys`, the default tenant's); it may be sent as `Authorization: Bearer
//! <key>` (the scheme in any case) or `X-API-Key: <key>`. Keys are looked up on every request,
//! so a revoked key, or a bootstrap key removed by a configuration reload, stops working at once.

use axum::extract::FromRequestParts;
use axum::http::request::Parts;

use super::error::ApiError;
use crate::domain::{ErrorCode, TenantId};
use crate::pipeline::{Pipeline, tenants};

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
        match tenants::authenticate(pipeline, key).await? {
            Some(tenant) => Ok(Tenant(tenant.id)),
            None => Err(ApiError::new(
                ErrorCode::Unauthorized,
                "the API key is not valid",
            )),
        }
    }
}
