//! The template routes under `/api/v1/sms/templates`: create, list, read, change (a new
//! version), soft-delete, versions, roll back, preview. Each handler parses with Herald's
//! extractors, calls [`pipeline::templates`](crate::pipeline::templates) and shapes the answer;
//! a template is answered with its source as `template_body`, the field it is sent in.
//!
//! `{id}` in a path is a template's id or its name, as `template_id` is in a send.

use std::collections::BTreeMap;

use axum::extract::{FromRequestParts, Path, State};
use axum::http::StatusCode;
use axum::http::request::Parts;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};

use super::auth::Tenant;
use super::error::{ApiError, ApiResult};
use super::json::ApiJson;
use super::params::{ApiQuery, PathId};
use crate::domain::{Category, ErrorCode};
use crate::pipeline::templates::preview::{self, Preview};
use crate::pipeline::templates::{self, TemplateDraft, TemplateEdit};
use crate::pipeline::{Pipeline, accept};
use crate::segments::explain::{CharAt, Replacement};
use crate::store::{Template, TemplateFilter, TemplateVersion};

/// The template routes.
pub fn routes() -> Router<Pipeline> {
    Router::new()
        .route("/api/v1/sms/templates", post(create).get(list))
        .route(
            "/api/v1/sms/templates/{id}",
            get(read).patch(update).delete(delete),
        )
        .route("/api/v1/sms/templates/{id}/versions", get(versions))
        .route(
            "/api/v1/sms/templates/{id}/versions/{version}/activate",
            post(activate),
        )
        .route("/api/v1/sms/templates/{id}/preview", post(preview))
}

/// The body of `POST /api/v1/sms/templates`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateTemplate {
    /// Unique name per tenant (among templates not deleted).
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

/// The body of `PATCH /api/v1/sms/templates/{id}`: every field optional.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpdateTemplate {
    /// A new text (a new version).
    pub template_body: Option<String>,
    /// A new description (a new version); `null` removes it.
    #[serde(default, deserialize_with = "present")]
    pub description: Option<Option<String>>,
    /// A new category (a new version); `null` removes it (messages then take the send's own
    /// category, `transactional` by default).
    #[serde(default, deserialize_with = "present")]
    pub category: Option<Option<String>>,
    /// Activates or deactivates it (no new version).
    pub is_active: Option<bool>,
}

/// A page size outside 1–500 is `invalid_query`.
fn check_limit(limit: Option<u32>) -> ApiResult<()> {
    match limit {
        Some(limit) if !(1..=500).contains(&limit) => Err(ApiError::new(
            ErrorCode::InvalidQuery,
            "limit must be between 1 and 500",
        )),
        _ => Ok(()),
    }
}

/// Reads a field that is present (so `null` becomes `Some(None)`, "remove it", while an absent
/// field stays `None` through `#[serde(default)]`, "leave it").
fn present<'de, D, T>(deserializer: D) -> Result<Option<Option<T>>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(deserializer).map(Some)
}

/// Query of `GET /api/v1/sms/templates`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    /// Only this category.
    pub category: Option<String>,
    /// Only active (`true`) or inactive (`false`) ones.
    pub is_active: Option<bool>,
    /// Only the one of this name.
    pub name: Option<String>,
    /// Deleted templates too (default false).
    pub include_deleted: Option<bool>,
    /// Page size (1–500, default 50).
    pub limit: Option<u32>,
    /// Cursor from the previous page.
    pub cursor: Option<String>,
}

/// A template as the API shows it.
#[derive(Debug, Serialize)]
pub struct TemplateView {
    id: String,
    name: String,
    category: Option<Category>,
    description: Option<String>,
    template_body: String,
    variables: Vec<String>,
    is_active: bool,
    version: i64,
    deleted: bool,
    deleted_at: Option<i64>,
    created_at: i64,
    updated_at: i64,
}

impl From<Template> for TemplateView {
    fn from(t: Template) -> Self {
        Self {
            id: t.id,
            name: t.name,
            category: t.category,
            description: t.description,
            template_body: t.body,
            variables: t.variables,
            is_active: t.is_active,
            version: t.version,
            deleted: t.deleted_at.is_some(),
            deleted_at: t.deleted_at,
            created_at: t.created_at,
            updated_at: t.updated_at,
        }
    }
}

/// A page of templates as the API shows it.
#[derive(Debug, Serialize)]
pub struct TemplatePage {
    items: Vec<TemplateView>,
    next_cursor: Option<String>,
}

/// One version as the API shows it.
#[derive(Debug, Serialize)]
pub struct VersionView {
    version: i64,
    current: bool,
    category: Option<Category>,
    description: Option<String>,
    template_body: String,
    variables: Vec<String>,
    created_at: i64,
}

/// A template's versions as the API shows them.
#[derive(Debug, Serialize)]
pub struct VersionsView {
    template_id: String,
    current_version: i64,
    deleted: bool,
    versions: Vec<VersionView>,
    /// Cursor of the next page, `null` on the last.
    next_cursor: Option<String>,
}

/// Query of `GET /api/v1/sms/templates/{id}/versions`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VersionsQuery {
    /// Page size (1–500, default 50).
    pub limit: Option<u32>,
    /// Cursor from the previous page.
    pub cursor: Option<String>,
}

/// A preview as the API shows it.
#[derive(Debug, Serialize)]
pub struct PreviewView {
    template_id: String,
    version: i64,
    rendered_text: String,
    /// `null` when the rendered text is empty (all its variables missing).
    encoding: Option<&'static str>,
    segments: Option<u32>,
    units: Option<u32>,
    characters: Option<u32>,
    ucs2_characters: Vec<CharAt>,
    /// `null` when Smart Encoding would change nothing.
    smart_encoding: Option<SmartView>,
    missing_variables: Vec<String>,
    unused_variables: Vec<String>,
}

/// What Smart Encoding would change, as the API shows it.
#[derive(Debug, Serialize)]
pub struct SmartView {
    /// Whether `delivery.smart_encoding` is on, so sends apply it.
    enabled: bool,
    /// Whether it would apply (only when the replaced text is entirely GSM).
    applies: bool,
    replacements: Vec<Replacement>,
    /// The text Smart Encoding would send.
    text: String,
    encoding: &'static str,
    segments: u32,
    units: u32,
}

impl From<Preview> for PreviewView {
    fn from(p: Preview) -> Self {
        let (count, ucs2_characters, smart) = match p.explanation {
            Some(e) => (Some(e.count), e.ucs2_characters, e.smart_encoding),
            None => (None, Vec::new(), None),
        };
        let count = count.as_ref();
        Self {
            template_id: p.template.id,
            version: p.template.version,
            rendered_text: p.text,
            encoding: count.map(|c| c.encoding.as_str()),
            segments: count.map(|c| c.segments),
            units: count.map(|c| c.units),
            characters: count.map(|c| c.characters),
            ucs2_characters,
            smart_encoding: smart.map(|smart| SmartView {
                enabled: p.smart_encoding_enabled,
                applies: smart.applies,
                encoding: smart.count.encoding.as_str(),
                segments: smart.count.segments,
                units: smart.count.units,
                text: smart.text,
                replacements: smart.replacements,
            }),
            missing_variables: p.missing_variables,
            unused_variables: p.unused_variables,
        }
    }
}

/// `POST /api/v1/sms/templates`: `201` with the stored template (version 1) and its variables.
pub async fn create(
    State(pipeline): State<Pipeline>,
    Tenant(tenant): Tenant,
    ApiJson(body): ApiJson<CreateTemplate>,
) -> ApiResult<(StatusCode, Json<TemplateView>)> {
    let draft = TemplateDraft {
        name: body.name,
        category: body.category.as_deref().map(accept::category).transpose()?,
        description: body.description,
        body: body.template_body,
        is_active: body.is_active.unwrap_or(true),
    };
    let template = templates::create(&pipeline, &tenant, draft).await?;
    Ok((StatusCode::CREATED, Json(template.into())))
}

/// `GET /api/v1/sms/templates`: newest first, filtered, keyset-paginated.
pub async fn list(
    State(pipeline): State<Pipeline>,
    Tenant(tenant): Tenant,
    ApiQuery(q): ApiQuery<ListQuery>,
) -> ApiResult<Json<TemplatePage>> {
    check_limit(q.limit)?;
    let category = q
        .category
        .as_deref()
        .map(|c| {
            Category::parse(c).map_err(|e| ApiError::new(ErrorCode::InvalidQuery, e.to_string()))
        })
        .transpose()?;
    let filter = TemplateFilter {
        category,
        is_active: q.is_active,
        name: q.name,
        include_deleted: q.include_deleted.unwrap_or(false),
        limit: q.limit,
        cursor: q.cursor,
    };
    let page = templates::list(&pipeline, &tenant, &filter).await?;
    Ok(Json(TemplatePage {
        items: page.items.into_iter().map(TemplateView::from).collect(),
        next_cursor: page.next_cursor,
    }))
}

/// `GET /api/v1/sms/templates/{id}`: one template, deleted or not.
pub async fn read(
    State(pipeline): State<Pipeline>,
    Tenant(tenant): Tenant,
    PathId(id): PathId,
) -> ApiResult<Json<TemplateView>> {
    Ok(Json(templates::get(&pipeline, &tenant, &id).await?.into()))
}

/// `PATCH /api/v1/sms/templates/{id}`: a changed text, description or category is a new
/// version; `is_active` (de)activates.
pub async fn update(
    State(pipeline): State<Pipeline>,
    Tenant(tenant): Tenant,
    PathId(id): PathId,
    ApiJson(body): ApiJson<UpdateTemplate>,
) -> ApiResult<Json<TemplateView>> {
    let edit = TemplateEdit {
        body: body.template_body,
        description: body.description,
        category: body
            .category
            .map(|category| category.as_deref().map(accept::category).transpose())
            .transpose()?,
        is_active: body.is_active,
    };
    Ok(Json(
        templates::update(&pipeline, &tenant, &id, edit)
            .await?
            .into(),
    ))
}

/// `DELETE /api/v1/sms/templates/{id}`: soft delete; answers the template, marked deleted.
pub async fn delete(
    State(pipeline): State<Pipeline>,
    Tenant(tenant): Tenant,
    PathId(id): PathId,
) -> ApiResult<Json<TemplateView>> {
    Ok(Json(
        templates::delete(&pipeline, &tenant, &id).await?.into(),
    ))
}

/// `GET /api/v1/sms/templates/{id}/versions`: its versions, oldest first, a page at a time.
pub async fn versions(
    State(pipeline): State<Pipeline>,
    Tenant(tenant): Tenant,
    PathId(id): PathId,
    ApiQuery(q): ApiQuery<VersionsQuery>,
) -> ApiResult<Json<VersionsView>> {
    check_limit(q.limit)?;
    let (template, page) =
        templates::versions(&pipeline, &tenant, &id, q.limit, q.cursor.as_deref()).await?;
    let view = |v: TemplateVersion| VersionView {
        current: v.version == template.version,
        version: v.version,
        category: v.category,
        description: v.description,
        template_body: v.body,
        variables: v.variables,
        created_at: v.created_at,
    };
    Ok(Json(VersionsView {
        versions: page.items.into_iter().map(view).collect(),
        next_cursor: page.next_cursor,
        template_id: template.id.clone(),
        current_version: template.version,
        deleted: template.deleted_at.is_some(),
    }))
}

/// `POST /api/v1/sms/templates/{id}/versions/{version}/activate`: makes that version current.
pub async fn activate(
    State(pipeline): State<Pipeline>,
    Tenant(tenant): Tenant,
    VersionPath { id, version }: VersionPath,
) -> ApiResult<Json<TemplateView>> {
    Ok(Json(
        templates::activate(&pipeline, &tenant, &id, version)
            .await?
            .into(),
    ))
}

/// `POST /api/v1/sms/templates/{id}/preview`: the body is the variables, as a flat JSON object
/// (lists and objects allowed for sections).
pub async fn preview(
    State(pipeline): State<Pipeline>,
    Tenant(tenant): Tenant,
    PathId(id): PathId,
    ApiJson(variables): ApiJson<BTreeMap<String, serde_json::Value>>,
) -> ApiResult<Json<PreviewView>> {
    let preview = preview::preview(&pipeline, &tenant, &id, &variables).await?;
    Ok(Json(preview.into()))
}

/// The template id (or name) and version number of `/templates/{id}/versions/{version}/…`; a
/// version that is not a whole number from 1 is `422 invalid_field`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VersionPath {
    /// The template's id or name.
    pub id: String,
    /// The version number.
    pub version: i64,
}

impl<S: Send + Sync> FromRequestParts<S> for VersionPath {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let invalid = |message: &str| ApiError::new(ErrorCode::InvalidField, message);
        let Path((id, version)) = Path::<(String, String)>::from_request_parts(parts, state)
            .await
            .map_err(|_| invalid("the path is not valid UTF-8 text"))?;
        if id.contains('\0') {
            return Err(invalid("the id in the URL contains a NUL character (%00)"));
        }
        let version = version
            .parse::<i64>()
            .ok()
            .filter(|v| *v >= 1)
            .ok_or_else(|| invalid("the version in the URL must be a whole number from 1"))?;
        Ok(Self { id, version })
    }
}
