//! `POST /api/v1/sms/send`, `GET /api/v1/sms/messages/{id}` and `GET /api/v1/sms/messages`
//! (`POST /api/v1/sms/messages/{id}/cancel` is in [`scheduling`](super::scheduling)).
//!
//! The handlers parse the typed JSON ([`ApiJson`]) or query ([`ApiQuery`]), hand it to the
//! [`pipeline`](crate::pipeline) and shape its answer; every check of a message lives in the
//! pipeline, and the list's filters are checked here, where they are parsed.

use std::collections::BTreeMap;
use std::fmt;

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::de::{self, Deserializer, Visitor};
use serde::{Deserialize, Serialize};

use super::auth::Tenant;
use super::error::{ApiError, ApiResult};
use super::json::ApiJson;
use super::params::{ApiQuery, PathId};
use crate::domain::{ErrorCode, MessageStatus, PhoneNumber};
use crate::pipeline::accept::{self, Content, MAX_REFERENCE, References, SendRequest};
use crate::pipeline::{Pipeline, ledger, read};
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
    /// When to send it: RFC 3339 with its offset; a past time sends it now.
    pub send_at: Option<String>,
}

/// A reference the seed module sent as a string or as a number; kept as text.
#[derive(Debug, Clone, PartialEq)]
pub enum Reference {
    /// Text.
    Text(String),
    /// A number, kept as its decimal text.
    Number(serde_json::Number),
}

// By hand rather than `#[serde(untagged)]`, whose refusal ("data did not match any variant of
// untagged enum") says neither the field nor what it takes.
impl<'de> Deserialize<'de> for Reference {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct TextOrNumber;

        impl Visitor<'_> for TextOrNumber {
            type Value = Reference;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string or a number")
            }

            fn visit_str<E: de::Error>(self, text: &str) -> Result<Reference, E> {
                Ok(Reference::Text(text.to_owned()))
            }

            fn visit_string<E: de::Error>(self, text: String) -> Result<Reference, E> {
                Ok(Reference::Text(text))
            }

            fn visit_u64<E: de::Error>(self, n: u64) -> Result<Reference, E> {
                Ok(Reference::Number(n.into()))
            }

            fn visit_i64<E: de::Error>(self, n: i64) -> Result<Reference, E> {
                Ok(Reference::Number(n.into()))
            }

            fn visit_f64<E: de::Error>(self, n: f64) -> Result<Reference, E> {
                serde_json::Number::from_f64(n)
                    .map(Reference::Number)
                    .ok_or_else(|| E::invalid_value(de::Unexpected::Float(n), &self))
            }
        }

        deserializer.deserialize_any(TextOrNumber)
    }
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
            from: self
                .from_number
                .as_deref()
                .map(accept::sender)
                .transpose()?,
            category: self.category.as_deref().map(accept::category).transpose()?,
            references: References {
                customer_id: self.customer_id.map(String::from),
                order_id: self.order_id.map(String::from),
                reservation_id: self.reservation_id.map(String::from),
            },
            metadata: self.metadata,
            send_at: self.send_at.as_deref().map(accept::send_at).transpose()?,
            bulk: false,
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
    send_at_iso: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    history: Option<Vec<EventView>>,
    /// `cost` and `cost_unavailable`, in the answers about one message.
    #[serde(flatten, skip_serializing_if = "Option::is_none")]
    cost: Option<crate::pipeline::ledger::CostFields>,
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

/// A message as the API shows it, with its history when given.
pub(crate) fn view(message: Message, history: Option<Vec<StatusEvent>>) -> MessageView {
    MessageView {
        created_at_iso: iso(message.created_at),
        send_at_iso: message.send_at.map(iso),
        cost: None,
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
    ApiJson(body): ApiJson<SendBody>,
) -> ApiResult<Response> {
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
    let mut shown = view(submitted.message, None);
    shown.cost = Some(ledger::cost(&pipeline, &tenant, &shown.message.id).await?);
    let mut response = (StatusCode::ACCEPTED, Json(shown)).into_response();
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
    PathId(id): PathId,
) -> ApiResult<Json<MessageView>> {
    let record = pipeline.message(&tenant, &id).await?;
    let mut shown = view(record.message, Some(record.history));
    shown.cost = Some(ledger::cost(&pipeline, &tenant, &id).await?);
    Ok(Json(shown))
}

/// Query of `GET /api/v1/sms/messages`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    /// Only this status.
    pub status: Option<String>,
    /// Only to this number (E.164; `+` sent as `%2B`).
    pub phone_number: Option<String>,
    /// Only for this customer reference (1 to 255 bytes).
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
pub(crate) fn parse_date(name: &str, value: &str, end: bool) -> ApiResult<i64> {
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

/// The `phone_number` filter as stored (E.164). A `+` left unencoded in a URL arrives as a space,
/// and would silently match nothing, so the refusal says how to send it.
fn phone_filter(value: &str) -> ApiResult<String> {
    PhoneNumber::parse(value).map(String::from).map_err(|e| {
        let hint = if value.starts_with(' ') {
            "; a `+` in a URL reads as a space, send it as `%2B`"
        } else {
            "; send its `+` as `%2B`"
        };
        ApiError::new(
            ErrorCode::InvalidQuery,
            format!("`phone_number`: {e}{hint}"),
        )
    })
}

/// `GET /api/v1/sms/messages`: newest first, filtered, keyset-paginated.
pub async fn list(
    State(pipeline): State<Pipeline>,
    Tenant(tenant): Tenant,
    ApiQuery(q): ApiQuery<ListQuery>,
) -> ApiResult<Json<MessagePage>> {
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
    let to_number = q.phone_number.as_deref().map(phone_filter).transpose()?;
    if let Some(customer_id) = &q.customer_id
        && (customer_id.is_empty() || customer_id.len() > MAX_REFERENCE)
    {
        return Err(ApiError::new(
            ErrorCode::InvalidQuery,
            format!("`customer_id` must be 1 to {MAX_REFERENCE} bytes"),
        ));
    }
    let filter = MessageFilter {
        status,
        to_number,
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
