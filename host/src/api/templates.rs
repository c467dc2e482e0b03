//! `POST /api/v1/sms/templates` and `GET /api/v1/sms/templates/{id}`, and rendering a stored
//! template for a send. The renderer plugin validates a template when it is created and renders
//! it when it is used.

use std::collections::BTreeMap;

use axum::Json;
use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::Deserialize;

use super::auth::Tenant;
use super::error::{ApiError, ApiResult};
use crate::app::AppState;
use crate::plugin::model::RenderError;
use crate::store::{self, NewTemplate, StoreError, Template};

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

/// `POST /api/v1/sms/templates`: validates with the renderer plugin and stores the template.
pub async fn create(
    State(state): State<AppState>,
    Tenant(tenant): Tenant,
    payload: Result<Json<serde_json::Value>, JsonRejection>,
) -> ApiResult<(StatusCode, Json<Template>)> {
    let Json(raw) = payload?;
    let request: CreateTemplate = serde_json::from_value(raw)
        .map_err(|e| ApiError::validation("invalid_field", e.to_string()))?;
    let name = request.name.trim();
    if name.is_empty() || name.len() > 128 {
        return Err(ApiError::validation(
            "invalid_field",
            "name must be 1 to 128 characters",
        ));
    }
    if request.template_body.trim().is_empty() {
        return Err(ApiError::validation(
            "empty_template",
            "template_body is empty",
        ));
    }
    if request.template_body.chars().count() > super::messages::MAX_BODY_CHARS {
        return Err(ApiError::validation(
            "template_too_long",
            "template_body is longer than 1600 characters",
        ));
    }
    let renderer = state
        .plugins
        .renderer()
        .map_err(|e| ApiError::unavailable("renderer_unavailable", e.to_string()))?;
    let variables = match renderer.validate(&request.template_body).await {
        Ok(Ok(vars)) => vars,
        Ok(Err(e)) => {
            let at = e
                .position
                .map(|p| format!(" at line {}, column {}", p.line, p.column))
                .unwrap_or_default();
            return Err(ApiError::validation(
                "invalid_template",
                format!("{}{at}", e.message),
            ));
        }
        Err(failure) => {
            return Err(ApiError::unavailable(
                "renderer_unavailable",
                failure.to_string(),
            ));
        }
    };
    let now = store::now_millis();
    let new = NewTemplate {
        id: store::new_id("tpl"),
        tenant_id: tenant,
        name: name.to_string(),
        category: request.category,
        description: request.description,
        body: request.template_body,
        variables,
        is_active: request.is_active.unwrap_or(true),
        now,
    };
    match state.store.create_template(&new).await {
        Ok(t) => Ok((StatusCode::CREATED, Json(t))),
        Err(StoreError::Conflict(_)) => Err(ApiError::conflict(
            "template_exists",
            format!("a template named `{}` already exists", new.name),
        )),
        Err(e) => Err(ApiError::internal(e)),
    }
}

/// `GET /api/v1/sms/templates/{id}`.
pub async fn get(
    State(state): State<AppState>,
    Tenant(tenant): Tenant,
    Path(id): Path<String>,
) -> ApiResult<Json<Template>> {
    state
        .store
        .get_template(&tenant, &id)
        .await
        .map_err(ApiError::internal)?
        .map(Json)
        .ok_or_else(|| ApiError::not_found("template_not_found", format!("no template `{id}`")))
}

/// Renders the tenant's template `id` with `variables` through the renderer plugin.
pub async fn render(
    state: &AppState,
    tenant: &str,
    id: &str,
    variables: &BTreeMap<String, serde_json::Value>,
) -> ApiResult<String> {
    let template = state
        .store
        .get_template(tenant, id)
        .await
        .map_err(ApiError::internal)?
        .ok_or_else(|| ApiError::validation("unknown_template", format!("no template `{id}`")))?;
    if !template.is_active {
        return Err(ApiError::validation(
            "inactive_template",
            format!("template `{id}` is not active"),
        ));
    }
    let mut pairs = Vec::with_capacity(variables.len());
    for (name, value) in variables {
        let text = match value {
            serde_json::Value::String(s) => s.clone(),
            serde_json::Value::Number(n) => n.to_string(),
            serde_json::Value::Bool(b) => b.to_string(),
            serde_json::Value::Null => String::new(),
            _ => {
                return Err(ApiError::validation(
                    "invalid_template_variable",
                    format!("template variable `{name}` must be a string, number or boolean"),
                ));
            }
        };
        pairs.push((name.clone(), text));
    }
    let renderer = state
        .plugins
        .renderer()
        .map_err(|e| ApiError::unavailable("renderer_unavailable", e.to_string()))?;
    match renderer.render(&template.body, &pairs).await {
        Ok(Ok(text)) => Ok(text),
        Ok(Err(RenderError::MissingVariable(name))) => Err(ApiError::validation(
            "missing_template_variable",
            format!("template `{id}` needs the variable `{name}`"),
        )),
        Ok(Err(RenderError::InvalidTemplate(e))) => {
            Err(ApiError::validation("invalid_template", e.message))
        }
        Err(failure) => Err(ApiError::unavailable(
            "renderer_unavailable",
            failure.to_string(),
        )),
    }
}
