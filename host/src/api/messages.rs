//! `POST /api/v1/sms/send`, `GET /api/v1/sms/messages/{id}` and `GET /api/v1/sms/messages`.
//!
//! The handlers parse the typed JSON, hand it to the [`pipeline`](crate::pipeline) and shape its
//! answer; every check lives in the pipeline.

use std::collections::BTreeMap;

use axum::Json;
use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};

use super::auth::Tenant;
use super::error::{ApiError, ApiResult};
use crate::domain::{ErrorCode, MessageStatus};
use crate::pipeline::accept::{self, Content, References, SendRequest};
use crate::pipeline::{Pipeline, read};
use crate::store::{Message, MessageFilter, StatusEvent};

/// The body of `POST /api/v1/sms/send`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SendBody {
    /// Recipient, E.164.
    pub to_number: String,
    /// The text, when not using a template.
    pub message: Option<String>,
    /// The template to render, instead of `message`.
    pub template_id: Option<Reference>,
    /// Values for the template's variables.
    #[serde(default)]
    pub template_variables: BTreeMap<String, serde_json::Value>,
    /// Sender number or ID, when not the provider's default.
    pub from_number: Option<String>,
    /// Opt-out category the message belongs to (default: the template's, else
    /// `transactional`).
    pub category: Option<String>,
    /// Caller's customer reference.
    pub customer_id: Option<Reference>,
    /// Caller's order reference.
    pub order_id: Option<Reference>,
    /// Caller's reservation reference.
    pub reservation_id: Option<Reference>,
    /// Free-form metadata (a JSON object).
    pub metadata: Option<serde_json::Map<String, serde_json::Value>>,
}

/// A reference the seed module sent as a string or as a number; kept as text.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum Reference {
    /// Text.
    Text(String),
    /// A number, kept as its decimal text.
    Number(serde_json::Number),
}

impl From<Reference> for String {
    fn from(reference: Reference) -> Self {
        match reference {
            Reference::Text(text) => text,
            Reference::Number(number) => number.to_string(),
        }
    }
}

impl SendBody {
    /// The pipeline's request for this body.
    fn into_request(self, idempotency_key: Option<String>) -> ApiResult<SendRequest> {
        Ok(SendRequest {
            to: accept::recipient(&self.to_number)?,
            content: Content::from_parts(
                self.message,
                self.template_id.map(String::from),
                self.template_variables,
            )?,
            from: self.from_number,
            category: self.category.as_deref().map(accept::category).transpose()?,
            references: References {
                customer_id: self.customer_id.map(String::from),
                order_id: self.order_id.map(String::from),
                reservation_id: self.reservation_id.map(String::from),
            },
            metadata: self.metadata,
            idempotency_key,
        })
    }
}

/// A message as the API shows it.
#[derive(Debug, Serialize)]
pub struct MessageView {
    #[serde(flatten)]
    message: Message,
    created_at_iso: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    history: Option<Vec<EventView>>,
}

/// One status change as the API shows it.
#[derive(Debug, Serialize)]
pub struct EventView {
    #[serde(flatten)]
    event: StatusEvent,
    occurred_at_iso: String,
}

/// A page of messages as the API shows it.
#[derive(Debug, Serialize)]
pub struct MessagePage {
    items: Vec<MessageView>,
    next_cursor: Option<String>,
}

/// Milliseconds since the epoch as RFC 3339.
#[must_use]
pub fn iso(ms: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_default()
}

fn view(message: Message, history: Option<Vec<StatusEvent>>) -> MessageView {
    MessageView {
        created_at_iso: iso(message.created_at),
        message,
        history: history.map(|h| {
            h.into_iter()
                .map(|event| EventView {
                    occurred_at_iso: iso(event.occurred_at),
                    event,
                })
                .collect()
        }),
    }
}

/// `POST /api/v1/sms/send`: `202` with the queued message (or, for an idempotent replay, the
/// message the first call created, marked `Idempotent-Replayed: true`).
pub async fn send(
    State(pipeline): State<Pipeline>,
    Tenant(tenant): Tenant,
    headers: HeaderMap,
    body: Result<Json<SendBody>, JsonRejection>,
) -> ApiResult<Response> {
    let Json(body) = body?;
    let idempotency_key = headers
        .get("idempotency-key")
        .map(|v| {
            v.to_str().map(str::to_owned).map_err(|_| {
                ApiError::new(
                    ErrorCode::InvalidIdempotencyKey,
                    "Idempotency-Key must be printable ASCII",
                )
            })
        })
        .transpose()?;
    let request = body.into_request(idempotency_key)?;
    let submitted = pipeline.send(&tenant, request).await?;
    let mut response = (StatusCode::ACCEPTED, Json(view(submitted.message, None))).into_response();
    if submitted.replayed {
        response
            .headers_mut()
            .insert("idempotent-replayed", HeaderValue::from_static("true"));
    }
    Ok(response)
}

/// `GET /api/v1/sms/messages/{id}`: the message with its status history.
pub async fn get(
    State(pipeline): State<Pipeline>,
    Tenant(tenant): Tenant,
    Path(id): Path<String>,
) -> ApiResult<Json<MessageView>> {
    let record = pipeline.message(&tenant, &id).await?;
    Ok(Json(view(record.message, Some(record.history))))
}

/// Query of `GET /api/v1/sms/messages`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    /// Only this status.
    pub status: Option<String>,
    /// Only to this number.
    pub phone_number: Option<String>,
    /// Only for this customer reference.
    pub customer_id: Option<String>,
    /// Created at or after (RFC 3339 or YYYY-MM-DD).
    pub start_date: Option<String>,
    /// Created before (RFC 3339, or YYYY-MM-DD meaning the end of that day).
    pub end_date: Option<String>,
    /// Page size (1–500, default 50).
    pub limit: Option<u32>,
    /// Cursor from the previous page.
    pub cursor: Option<String>,
}

/// Parses a date bound into epoch milliseconds; a bare date's end bound is the next midnight.
fn parse_date(name: &str, value: &str, end: bool) -> ApiResult<i64> {
    use time::format_description::well_known::Rfc3339;
    if let Ok(t) = time::OffsetDateTime::parse(value, &Rfc3339) {
        return Ok((t.unix_timestamp_nanos() / 1_000_000) as i64);
    }
    let format = time::macros::format_description!("[year]-[month]-[day]");
    let date = time::Date::parse(value, &format).map_err(|_| {
        ApiError::new(
            ErrorCode::InvalidQuery,
            format!("`{name}` must be a date (2025-01-31) or an RFC 3339 time"),
        )
    })?;
    let date = if end {
        date.next_day().unwrap_or(date)
    } else {
        date
    };
    Ok((date.midnight().assume_utc().unix_timestamp_nanos() / 1_000_000) as i64)
}

/// `GET /api/v1/sms/messages`: newest first, filtered, keyset-paginated.
pub async fn list(
    State(pipeline): State<Pipeline>,
    Tenant(tenant): Tenant,
    query: Result<Query<ListQuery>, QueryRejection>,
) -> ApiResult<Json<MessagePage>> {
    let Query(q) = query?;
    let status = q
        .status
        .as_deref()
        .map(|s| {
            MessageStatus::parse(s).ok_or_else(|| {
                ApiError::new(ErrorCode::InvalidQuery, format!("unknown status `{s}`"))
            })
        })
        .transpose()?;
    if let Some(limit) = q.limit
        && !(1..=500).contains(&limit)
    {
        return Err(ApiError::new(
            ErrorCode::InvalidQuery,
            "limit must be between 1 and 500",
        ));
    }
    let filter = MessageFilter {
        status,
        to_number: q.phone_number,
        customer_id: q.customer_id,
        created_from: q
            .start_date
            .as_deref()
            .map(|d| parse_date("start_date", d, false))
            .transpose()?,
        created_to: q
            .end_date
            .as_deref()
            .map(|d| parse_date("end_date", d, true))
            .transpose()?,
        limit: q.limit,
        cursor: q.cursor,
    };
    let page = read::messages(&pipeline, &tenant, &filter).await?;
    Ok(Json(MessagePage {
        items: page.items.into_iter().map(|m| view(m, None)).collect(),
        next_cursor: page.next_cursor,
    }))
}
