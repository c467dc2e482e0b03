//! `POST /api/v1/sms/send`, `GET /api/v1/sms/messages/{id}` and `GET /api/v1/sms/messages`.
//!
//! A send is validated completely — recipient, body or template, length, opt-out — before
//! anything is stored; then the message, its queue entry and its first status event are written
//! in one transaction and the answer is `202 Accepted`.

use std::collections::BTreeMap;

use axum::Json;
use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::auth::Tenant;
use super::error::{ApiError, ApiResult};
use crate::app::AppState;
use crate::phone::is_e164;
use crate::segments;
use crate::store::{
    self, Enqueued, Message, MessageFilter, MessageStatus, NewMessage, StatusEvent, StoreError,
};

/// Longest body accepted, in characters (Twilio's and SNS's limit).
pub const MAX_BODY_CHARS: usize = 1600;
/// Longest `Idempotency-Key` accepted.
const MAX_IDEMPOTENCY_KEY: usize = 255;
/// Largest `metadata` object accepted, serialized.
const MAX_METADATA_BYTES: usize = 4096;

/// The body of `POST /api/v1/sms/send`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SendRequest {
    /// Recipient, E.164.
    pub to_number: String,
    /// The text, when not using a template.
    pub message: Option<String>,
    /// The template to render, instead of `message`.
    pub template_id: Option<serde_json::Value>,
    /// Values for the template's variables.
    #[serde(default)]
    pub template_variables: BTreeMap<String, serde_json::Value>,
    /// Sender number or ID, when not the provider's default.
    pub from_number: Option<String>,
    /// Opt-out category the message belongs to (default `transactional`).
    pub category: Option<String>,
    /// Caller's customer reference.
    pub customer_id: Option<serde_json::Value>,
    /// Caller's order reference.
    pub order_id: Option<serde_json::Value>,
    /// Caller's reservation reference.
    pub reservation_id: Option<serde_json::Value>,
    /// Free-form metadata (a JSON object).
    pub metadata: Option<serde_json::Value>,
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

/// Milliseconds since the epoch as RFC 3339.
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

/// A reference field: a string or an integer, stored as text.
fn reference(name: &str, value: Option<serde_json::Value>) -> ApiResult<Option<String>> {
    match value {
        None | Some(serde_json::Value::Null) => Ok(None),
        Some(serde_json::Value::String(s)) if s.len() <= 255 => Ok(Some(s)),
        Some(serde_json::Value::Number(n)) => Ok(Some(n.to_string())),
        Some(_) => Err(ApiError::validation(
            "invalid_field",
            format!("`{name}` must be a string (≤ 255 bytes) or a number"),
        )),
    }
}

/// `POST /api/v1/sms/send`.
pub async fn send(
    State(state): State<AppState>,
    Tenant(tenant): Tenant,
    headers: HeaderMap,
    payload: Result<Json<serde_json::Value>, JsonRejection>,
) -> ApiResult<Response> {
    let Json(raw) = payload?;
    let request_hash = hex::encode(Sha256::digest(raw.to_string().as_bytes()));
    let request: SendRequest = serde_json::from_value(raw)
        .map_err(|e| ApiError::validation("invalid_field", e.to_string()))?;
    let idempotency_key = match headers.get("idempotency-key") {
        None => None,
        Some(v) => {
            let key = v.to_str().map_err(|_| {
                ApiError::validation("invalid_idempotency_key", "Idempotency-Key must be ASCII")
            })?;
            if key.is_empty() || key.len() > MAX_IDEMPOTENCY_KEY {
                return Err(ApiError::validation(
                    "invalid_idempotency_key",
                    "Idempotency-Key must be 1 to 255 characters",
                ));
            }
            Some(key.to_string())
        }
    };

    if !is_e164(&request.to_number) {
        return Err(ApiError::validation(
            "invalid_phone_number",
            format!(
                "to_number `{}` is not an E.164 number such as +14155552671",
                request.to_number
            ),
        ));
    }
    if let Some(from) = &request.from_number
        && (from.is_empty() || from.len() > 32)
    {
        return Err(ApiError::validation(
            "invalid_field",
            "from_number must be 1 to 32 characters",
        ));
    }
    let category = request
        .category
        .clone()
        .unwrap_or_else(|| "transactional".into());
    if category.is_empty()
        || category.len() > 64
        || category == crate::dispatch::COMPLIANCE_CATEGORY
        || category == store::ALL_CATEGORIES
    {
        return Err(ApiError::validation(
            "invalid_category",
            format!("category `{category}` cannot be used"),
        ));
    }
    let metadata = match request.metadata {
        None | Some(serde_json::Value::Null) => None,
        Some(m @ serde_json::Value::Object(_)) if m.to_string().len() <= MAX_METADATA_BYTES => {
            Some(m)
        }
        Some(serde_json::Value::Object(_)) => {
            return Err(ApiError::validation(
                "invalid_field",
                format!("metadata must be at most {MAX_METADATA_BYTES} bytes"),
            ));
        }
        Some(_) => {
            return Err(ApiError::validation(
                "invalid_field",
                "metadata must be a JSON object",
            ));
        }
    };
    let customer_id = reference("customer_id", request.customer_id)?;
    let order_id = reference("order_id", request.order_id)?;
    let reservation_id = reference("reservation_id", request.reservation_id)?;

    let (body, template_id) = match (request.message, request.template_id) {
        (Some(_), Some(_)) => {
            return Err(ApiError::validation(
                "ambiguous_body",
                "send either `message` or `template_id`, not both",
            ));
        }
        (None, None) => {
            return Err(ApiError::validation(
                "missing_body",
                "send `message` or `template_id`",
            ));
        }
        (Some(text), None) => (text, None),
        (None, Some(id)) => {
            let id = match id {
                serde_json::Value::String(s) => s,
                serde_json::Value::Number(n) => n.to_string(),
                _ => {
                    return Err(ApiError::validation(
                        "invalid_field",
                        "template_id must be a string",
                    ));
                }
            };
            let body =
                super::templates::render(&state, &tenant, &id, &request.template_variables).await?;
            (body, Some(id))
        }
    };
    if !request.template_variables.is_empty() && template_id.is_none() {
        return Err(ApiError::validation(
            "invalid_field",
            "template_variables are only used with template_id",
        ));
    }
    if body.trim().is_empty() {
        return Err(ApiError::validation(
            "empty_message",
            "the message body is empty",
        ));
    }
    let chars = body.chars().count();
    if chars > MAX_BODY_CHARS {
        return Err(ApiError::validation(
            "message_too_long",
            format!("the message has {chars} characters; at most {MAX_BODY_CHARS} are allowed"),
        ));
    }
    let options = segments::Options {
        smart_encoding: state.config.delivery.smart_encoding,
    };
    let (text, count) = segments::encode_for_send(&body, options)
        .map_err(|e| ApiError::validation("empty_message", e.to_string()))?;

    let opted_out = state
        .store
        .is_opted_out(&tenant, &request.to_number, &category)
        .await
        .map_err(ApiError::internal)?;
    if opted_out {
        return Err(ApiError::conflict(
            "recipient_opted_out",
            format!(
                "{} has opted out of {category} messages; nothing was sent",
                request.to_number
            ),
        ));
    }

    let now = store::now_millis();
    let new = NewMessage {
        id: store::new_id("msg"),
        tenant_id: tenant.clone(),
        to_number: request.to_number,
        sender: request.from_number,
        body: text.into_owned(),
        template_id,
        category,
        encoding: count.encoding,
        segments: count.segments,
        units: count.units,
        provider: state
            .plugins
            .provider()
            .map(|p| p.name().to_string())
            .unwrap_or_default(),
        max_attempts: state.config.delivery.max_attempts,
        customer_id,
        order_id,
        reservation_id,
        metadata,
        request_hash: idempotency_key.as_ref().map(|_| request_hash),
        idempotency_key,
        due_at: None,
        now,
    };
    match state.store.enqueue(&new).await {
        Ok(Enqueued::Created(message)) => {
            Ok((StatusCode::ACCEPTED, Json(view(message, None))).into_response())
        }
        Ok(Enqueued::Existing(message)) => {
            let mut response = (StatusCode::ACCEPTED, Json(view(message, None))).into_response();
            response.headers_mut().insert(
                "idempotent-replayed",
                axum::http::HeaderValue::from_static("true"),
            );
            Ok(response)
        }
        Err(StoreError::IdempotencyConflict { .. }) => Err(ApiError::conflict(
            "idempotency_conflict",
            "this Idempotency-Key was already used with a different request body",
        )),
        Err(e) => Err(ApiError::internal(e)),
    }
}

/// `GET /api/v1/sms/messages/{id}`: the message with its status history.
pub async fn get(
    State(state): State<AppState>,
    Tenant(tenant): Tenant,
    Path(id): Path<String>,
) -> ApiResult<Json<MessageView>> {
    let message = state
        .store
        .get_message(&tenant, &id)
        .await
        .map_err(ApiError::internal)?
        .ok_or_else(|| ApiError::not_found("message_not_found", format!("no message `{id}`")))?;
    let history = state
        .store
        .message_events(&tenant, &id)
        .await
        .map_err(ApiError::internal)?;
    Ok(Json(view(message, Some(history))))
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
        ApiError::validation(
            "invalid_query",
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
    State(state): State<AppState>,
    Tenant(tenant): Tenant,
    query: Result<Query<ListQuery>, QueryRejection>,
) -> ApiResult<Json<serde_json::Value>> {
    let Query(q) = query?;
    let status = match q.status.as_deref() {
        None => None,
        Some(s) => Some(MessageStatus::parse(s).ok_or_else(|| {
            ApiError::validation("invalid_query", format!("unknown status `{s}`"))
        })?),
    };
    if let Some(limit) = q.limit
        && !(1..=500).contains(&limit)
    {
        return Err(ApiError::validation(
            "invalid_query",
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
    let page = match state.store.list_messages(&tenant, &filter).await {
        Ok(page) => page,
        Err(StoreError::InvalidCursor) => {
            return Err(ApiError::validation(
                "invalid_query",
                "the cursor is not valid",
            ));
        }
        Err(e) => return Err(ApiError::internal(e)),
    };
    let items: Vec<MessageView> = page.items.into_iter().map(|m| view(m, None)).collect();
    Ok(Json(
        serde_json::json!({ "items": items, "next_cursor": page.next_cursor }),
    ))
}
