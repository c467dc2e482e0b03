//! `GET /api/v1/sms/inbound`: the messages people sent to the tenant's numbers, newest first,
//! filtered by sender, keyword and date, keyset-paginated like the messages list.

use axum::Json;
use axum::Router;
use axum::extract::State;
use axum::routing::get;
use serde::{Deserialize, Serialize};

use super::auth::Tenant;
use super::error::{ApiError, ApiResult};
use super::messages::{iso, parse_date};
use super::params::ApiQuery;
use crate::domain::ErrorCode;
use crate::pipeline::{Pipeline, inbound};
use crate::store::{InboundFilter, InboundMessage, Keyword};

/// The inbound route, under `/api/v1/sms`.
pub fn routes() -> Router<Pipeline> {
    Router::new().route("/api/v1/sms/inbound", get(list))
}

/// Query of `GET /api/v1/sms/inbound`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InboundQuery {
    /// Only from this number (E.164; `+` sent as `%2B`).
    pub from: Option<String>,
    /// Only those that matched this keyword: `stop`, `start` or `help`.
    pub keyword: Option<String>,
    /// Received at or after (RFC 3339 or YYYY-MM-DD).
    pub start_date: Option<String>,
    /// Received before (RFC 3339, or YYYY-MM-DD meaning the end of that day).
    pub end_date: Option<String>,
    /// Page size (1–500, default 50).
    pub limit: Option<u32>,
    /// Cursor from the previous page.
    pub cursor: Option<String>,
}

/// An inbound message as the API shows it.
#[derive(Debug, Serialize)]
pub struct InboundView {
    #[serde(flatten)]
    message: InboundMessage,
    received_at_iso: String,
}

/// A page of inbound messages.
#[derive(Debug, Serialize)]
pub struct InboundPage {
    items: Vec<InboundView>,
    next_cursor: Option<String>,
}

/// `GET /api/v1/sms/inbound`: newest first, filtered, keyset-paginated.
pub async fn list(
    State(pipeline): State<Pipeline>,
    Tenant(tenant): Tenant,
    ApiQuery(q): ApiQuery<InboundQuery>,
) -> ApiResult<Json<InboundPage>> {
    let invalid = |message: &str| ApiError::new(ErrorCode::InvalidQuery, message);
    if let Some(limit) = q.limit
        && !(1..=500).contains(&limit)
    {
        return Err(invalid("limit must be between 1 and 500"));
    }
    // Senders are stored as the provider reported them, E.164 for phones; a `+` left unencoded
    // in the URL arrives as a space and would silently match nothing.
    if let Some(from) = &q.from
        && (from.is_empty() || from.len() > 64 || from.starts_with(' '))
    {
        return Err(invalid(
            "`from` must be the sender as received (E.164, with its `+` sent as `%2B`)",
        ));
    }
    let keyword = q
        .keyword
        .as_deref()
        .map(|name| match name.to_ascii_lowercase().as_str() {
            "stop" => Ok(Keyword::Stop),
            "start" => Ok(Keyword::Start),
            "help" => Ok(Keyword::Help),
            _ => Err(invalid("`keyword` must be `stop`, `start` or `help`")),
        })
        .transpose()?;
    let received_from = q
        .start_date
        .as_deref()
        .map(|d| parse_date("start_date", d, false))
        .transpose()?;
    let received_to = q
        .end_date
        .as_deref()
        .map(|d| parse_date("end_date", d, true))
        .transpose()?;
    if let (Some(start), Some(end)) = (received_from, received_to)
        && start >= end
    {
        return Err(invalid("`start_date` must be before `end_date`"));
    }
    let filter = InboundFilter {
        from_number: q.from,
        keyword,
        received_from,
        received_to,
        limit: q.limit,
        cursor: q.cursor,
    };
    let page = inbound::list(&pipeline, &tenant, &filter).await?;
    Ok(Json(InboundPage {
        items: page
            .items
            .into_iter()
            .map(|message| InboundView {
                received_at_iso: iso(message.received_at),
                message,
            })
            .collect(),
        next_cursor: page.next_cursor,
    }))
}
