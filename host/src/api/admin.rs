//! Operator endpoints under `/admin`, authenticated by the admin key: plugins and their reload,
//! tenants, their API keys and their settings.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use serde::Deserialize;
use subtle::ConstantTimeEq;

use super::error::{ApiError, ApiResult};
use super::json::ApiJson;
use super::params::PathId;
use crate::domain::{ErrorCode, TenantStatus};
use crate::pipeline::Pipeline;
use crate::pipeline::ReloadOutcome;
use crate::pipeline::tenants::{self, IssuedKey, TenantSettings};
use crate::plugin::PluginSummary;
use crate::store::{ApiKey, Tenant};

/// Checks `Authorization: Bearer <admin_key>`; admin routes are off when no key is configured.
pub(crate) fn authorize(pipeline: &Pipeline, headers: &HeaderMap) -> ApiResult<()> {
    let config = pipeline.config();
    let expected = &config.server.admin_key;
    if expected.is_empty() {
        return Err(ApiError::new(
            ErrorCode::AdminDisabled,
            "admin endpoints are disabled: set server.admin_key",
        ));
    }
    match super::bearer(headers) {
        Some(key) if bool::from(key.as_bytes().ct_eq(expected.as_bytes())) => Ok(()),
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
) -> ApiResult<Json<ReloadOutcome>> {
    authorize(&pipeline, &headers)?;
    let report = pipeline
        .reload()
        .await
        .map_err(|e| ApiError::new(ErrorCode::InvalidConfiguration, e.to_string()))?;
    Ok(Json(report))
}

/// The body of `POST /admin/tenants`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateTenant {
    /// A display name.
    pub name: String,
}

/// The body of `PATCH /admin/tenants/{id}`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpdateTenant {
    /// `active` or `suspended`.
    pub status: TenantStatus,
}

/// `POST /admin/tenants`: `201` with the new tenant.
pub async fn create_tenant(
    State(pipeline): State<Pipeline>,
    headers: HeaderMap,
    ApiJson(body): ApiJson<CreateTenant>,
) -> ApiResult<(StatusCode, Json<Tenant>)> {
    authorize(&pipeline, &headers)?;
    let tenant = tenants::create_tenant(&pipeline, &body.name).await?;
    Ok((StatusCode::CREATED, Json(tenant)))
}

/// `GET /admin/tenants`: every tenant.
pub async fn list_tenants(
    State(pipeline): State<Pipeline>,
    headers: HeaderMap,
) -> ApiResult<Json<Vec<Tenant>>> {
    authorize(&pipeline, &headers)?;
    Ok(Json(tenants::list_tenants(&pipeline).await?))
}

/// `PATCH /admin/tenants/{id}`: suspend or reactivate a tenant.
pub async fn update_tenant(
    State(pipeline): State<Pipeline>,
    headers: HeaderMap,
    PathId(id): PathId,
    ApiJson(body): ApiJson<UpdateTenant>,
) -> ApiResult<Json<Tenant>> {
    authorize(&pipeline, &headers)?;
    let id = tenants::tenant_id(&id)?;
    Ok(Json(
        tenants::set_status(&pipeline, &id, body.status).await?,
    ))
}

/// `POST /admin/tenants/{id}/api-keys`: `201` with the new key, shown this once.
pub async fn create_api_key(
    State(pipeline): State<Pipeline>,
    headers: HeaderMap,
    PathId(id): PathId,
) -> ApiResult<(StatusCode, Json<IssuedKey>)> {
    authorize(&pipeline, &headers)?;
    let id = tenants::tenant_id(&id)?;
    let key = tenants::create_api_key(&pipeline, &id).await?;
    Ok((StatusCode::CREATED, Json(key)))
}

/// `GET /admin/tenants/{id}/api-keys`: key ids and prefixes, never keys.
pub async fn list_api_keys(
    State(pipeline): State<Pipeline>,
    headers: HeaderMap,
    PathId(id): PathId,
) -> ApiResult<Json<Vec<ApiKey>>> {
    authorize(&pipeline, &headers)?;
    let id = tenants::tenant_id(&id)?;
    Ok(Json(tenants::api_keys(&pipeline, &id).await?))
}

/// `DELETE /admin/tenants/{id}/api-keys/{key_id}`: revokes the key at once (`204`).
pub async fn revoke_api_key(
    State(pipeline): State<Pipeline>,
    headers: HeaderMap,
    path: Result<Path<(String, String)>, axum::extract::rejection::PathRejection>,
) -> ApiResult<StatusCode> {
    authorize(&pipeline, &headers)?;
    let Path((id, key_id)) = path.map_err(|_| {
        ApiError::new(
            ErrorCode::InvalidField,
            "the ids in the URL are not valid UTF-8 text",
        )
    })?;
    let id = tenants::tenant_id(&id)?;
    tenants::revoke_api_key(&pipeline, &id, &key_id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `GET /admin/tenants/{id}/settings`: the tenant's settings, secrets redacted.
pub async fn get_settings(
    State(pipeline): State<Pipeline>,
    headers: HeaderMap,
    PathId(id): PathId,
) -> ApiResult<Json<TenantSettings>> {
    authorize(&pipeline, &headers)?;
    let id = tenants::tenant_id(&id)?;
    Ok(Json(tenants::redacted_settings(&pipeline, &id).await?))
}

/// `PUT /admin/tenants/{id}/settings`: replaces the tenant's settings; answers them redacted.
pub async fn put_settings(
    State(pipeline): State<Pipeline>,
    headers: HeaderMap,
    PathId(id): PathId,
    ApiJson(settings): ApiJson<TenantSettings>,
) -> ApiResult<Json<TenantSettings>> {
    authorize(&pipeline, &headers)?;
    let id = tenants::tenant_id(&id)?;
    Ok(Json(tenants::put_settings(&pipeline, &id, settings).await?))
}
