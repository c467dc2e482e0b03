//! `POST /api/v1/sms/templates` and `GET /api/v1/sms/templates/{id}`. The renderer plugin
//! validates a template when it is created (see [`render`](crate::pipeline::render)).

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::Deserialize;

use super::auth::Tenant;
use super::error::ApiResult;
use super::json::ApiJson;
use super::params::PathId;
use crate::pipeline::render::{self, TemplateDraft};
use crate::pipeline::{Pipeline, accept, read};
use crate::store::Template;

/// The body of `POST /api/v1/sms/templates`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateTemplate {
    /// Unique name per tenant.
    pub name: String,
    /// Opt-out category of messages sent from it.
    pub category: Option<String>,
    /// Description for people.
    pub description: Option<String>,
    /// The template text, e.g. `Hi {{customer_name}}`.
    pub template_body: String,
    /// Whether it may be used (default true).
    pub is_active: Option<bool>,
}

/// `POST /api/v1/sms/templates`: `201` with the stored template and its variables.
pub async fn create(
    State(pipeline): State<Pipeline>,
    Tenant(tenant): Tenant,
    ApiJson(body): ApiJson<CreateTemplate>,
) -> ApiResult<(StatusCode, Json<Template>)> {
    let draft = TemplateDraft {
        name: body.name,
        category: body.category.as_deref().map(accept::category).transpose()?,
        description: body.description,
        body: body.template_body,
        is_active: body.is_active.unwrap_or(true),
    };
    let template = render::create_template(&pipeline, &tenant, draft).await?;
    Ok((StatusCode::CREATED, Json(template)))
}

/// `GET /api/v1/sms/templates/{id}`.
pub async fn get(
    State(pipeline): State<Pipeline>,
    Tenant(tenant): Tenant,
    PathId(id): PathId,
) -> ApiResult<Json<Template>> {
    Ok(Json(read::template(&pipeline, &tenant, &id).await?))
}
