//! Sending later: `POST /api/v1/sms/messages/{id}/cancel` and the recurring schedules,
//! `POST /api/v1/sms/schedules`, `GET /api/v1/sms/schedules`, `GET`, `PATCH` and `DELETE
//! /api/v1/sms/schedules/{id}`. (`send_at` itself is a field of `POST /send`.)
//!
//! The handlers parse the body or query and call [`schedules`] and [`cancel`]; every check
//! lives there.

use std::collections::BTreeMap;

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};

use super::auth::Tenant;
use super::error::{ApiError, ApiResult};
use super::json::ApiJson;
use super::messages::{MessageView, Reference, view};
use super::params::{ApiQuery, PathId};
use crate::domain::ErrorCode;
use crate::pipeline::schedules::{self, Audience, ScheduleChange, ScheduleRecord, ScheduleRequest};
use crate::pipeline::{Pipeline, accept, cancel};
use crate::store::Schedule;

/// The routes of this module, to merge into the API's router.
pub fn routes() -> Router<Pipeline> {
    Router::new()
        .route("/api/v1/sms/messages/{id}/cancel", post(cancel_message))
        .route("/api/v1/sms/schedules", post(create).get(list))
        .route(
            "/api/v1/sms/schedules/{id}",
            get(read).patch(update).delete(remove),
        )
}

/// `POST /api/v1/sms/messages/{id}/cancel`: `200` with the `canceled` message; `409
/// not_cancelable` once it was claimed for sending.
pub async fn cancel_message(
    State(pipeline): State<Pipeline>,
    Tenant(tenant): Tenant,
    PathId(id): PathId,
) -> ApiResult<Json<MessageView>> {
    let message = cancel::cancel(&pipeline, &tenant, &id).await?;
    Ok(Json(view(message, None)))
}

/// The body of `POST /api/v1/sms/schedules`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateSchedule {
    /// A name for people.
    pub name: String,
    /// A cron expression: 5 fields (minute hour day-of-month month day-of-week), or 6 to 7
    /// with seconds first and a year last; days of the week by name.
    pub cron: String,
    /// An IANA time zone name (default `UTC`).
    pub timezone: Option<String>,
    /// The text, when not using a template.
    pub message: Option<String>,
    /// The template to render.
    pub template_id: Option<Reference>,
    /// Values for the template's variables.
    #[serde(default)]
    pub template_variables: BTreeMap<String, serde_json::Value>,
    /// The recipients, E.164.
    pub recipients: Option<Vec<String>>,
    /// A bulk batch whose recipients to send to, instead of `recipients`.
    pub batch_id: Option<String>,
    /// The category of its messages (default: the template's, else `transactional`).
    pub category: Option<String>,
    /// Whether a fire time missed by downtime fires late, once (default `true`), or is skipped.
    pub catch_up: Option<bool>,
}

impl CreateSchedule {
    fn into_request(self) -> ApiResult<ScheduleRequest> {
        let audience = match (self.recipients, self.batch_id) {
            (Some(_), Some(_)) => {
                return Err(invalid("send either `recipients` or `batch_id`, not both"));
            }
            (None, None) => return Err(invalid("send `recipients` or `batch_id`")),
            (Some(numbers), None) => Audience::Recipients(
                numbers
                    .iter()
                    .enumerate()
                    .map(|(index, number)| {
                        accept::recipient(number).map_err(|e| {
                            ApiError::new(e.code, format!("recipients[{index}]: {}", e.message))
                        })
                    })
                    .collect::<ApiResult<_>>()?,
            ),
            (None, Some(batch)) => Audience::Batch(batch),
        };
        Ok(ScheduleRequest {
            name: self.name,
            cron: self.cron,
            timezone: self.timezone.unwrap_or_else(|| "UTC".to_owned()),
            content: accept::Content::from_parts(
                self.message,
                self.template_id.map(String::from),
                self.template_variables,
            )?,
            audience,
            category: self.category.as_deref().map(accept::category).transpose()?,
            catch_up: self.catch_up.unwrap_or(true),
        })
    }
}

/// The body of `PATCH /api/v1/sms/schedules/{id}`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpdateSchedule {
    /// Pause (`true`) or resume (`false`).
    pub paused: Option<bool>,
    /// A new cron expression.
    pub cron: Option<String>,
    /// A new IANA time zone.
    pub timezone: Option<String>,
}

/// Query of `GET /api/v1/sms/schedules`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    /// Page size (1–500, default 50).
    pub limit: Option<u32>,
    /// Cursor from the previous page.
    pub cursor: Option<String>,
}

/// A schedule as the API shows it: the stored schedule and its next fire times.
#[derive(Debug, Serialize)]
pub struct ScheduleView {
    #[serde(flatten)]
    schedule: Schedule,
    /// The next fire times, RFC 3339 on the schedule zone's clock (with its offset).
    next_fire_times: Vec<String>,
}

impl From<ScheduleRecord> for ScheduleView {
    fn from(record: ScheduleRecord) -> Self {
        Self {
            schedule: record.schedule,
            next_fire_times: record.next_fire_times_local,
        }
    }
}

/// A page of schedules.
#[derive(Debug, Serialize)]
pub struct SchedulePage {
    items: Vec<ScheduleView>,
    next_cursor: Option<String>,
}

/// `POST /api/v1/sms/schedules`: `201` with the schedule and its next fire times.
pub async fn create(
    State(pipeline): State<Pipeline>,
    Tenant(tenant): Tenant,
    ApiJson(body): ApiJson<CreateSchedule>,
) -> ApiResult<(StatusCode, Json<ScheduleView>)> {
    let record = schedules::create(&pipeline, &tenant, body.into_request()?).await?;
    Ok((StatusCode::CREATED, Json(record.into())))
}

/// `GET /api/v1/sms/schedules`: newest first, keyset-paginated.
pub async fn list(
    State(pipeline): State<Pipeline>,
    Tenant(tenant): Tenant,
    ApiQuery(q): ApiQuery<ListQuery>,
) -> ApiResult<Json<SchedulePage>> {
    if let Some(limit) = q.limit
        && !(1..=500).contains(&limit)
    {
        return Err(ApiError::new(
            ErrorCode::InvalidQuery,
            "limit must be between 1 and 500",
        ));
    }
    let page = schedules::list(&pipeline, &tenant, q.limit, q.cursor.as_deref()).await?;
    Ok(Json(SchedulePage {
        items: page.items.into_iter().map(Into::into).collect(),
        next_cursor: page.next_cursor,
    }))
}

/// `GET /api/v1/sms/schedules/{id}`.
pub async fn read(
    State(pipeline): State<Pipeline>,
    Tenant(tenant): Tenant,
    PathId(id): PathId,
) -> ApiResult<Json<ScheduleView>> {
    Ok(Json(schedules::get(&pipeline, &tenant, &id).await?.into()))
}

/// `PATCH /api/v1/sms/schedules/{id}`: pause, resume, or a new `cron` / `timezone`.
pub async fn update(
    State(pipeline): State<Pipeline>,
    Tenant(tenant): Tenant,
    PathId(id): PathId,
    ApiJson(body): ApiJson<UpdateSchedule>,
) -> ApiResult<Json<ScheduleView>> {
    let change = ScheduleChange {
        paused: body.paused,
        cron: body.cron,
        timezone: body.timezone,
    };
    Ok(Json(
        schedules::update(&pipeline, &tenant, &id, change)
            .await?
            .into(),
    ))
}

/// `DELETE /api/v1/sms/schedules/{id}`: `204`; the messages it created stay.
pub async fn remove(
    State(pipeline): State<Pipeline>,
    Tenant(tenant): Tenant,
    PathId(id): PathId,
) -> ApiResult<StatusCode> {
    schedules::delete(&pipeline, &tenant, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}

fn invalid(message: &str) -> ApiError {
    ApiError::new(ErrorCode::InvalidField, message)
}
