//! `GET /api/v1/sms/delivery/real-time` (the tenant's latest status changes) and
//! `GET /api/v1/sms/delivery/stream` (Server-Sent Events: the tenant's event log, live).
//!
//! Each SSE event is one row of the log: `id:` its id, `event:` its kind, `data:` the JSON of
//! [`EventView`]. A client that reconnects with `Last-Event-ID` gets every event after that id
//! from the log, with no gap and no repeat; without it, a stream starts with what happens next.
//! A client that falls too far behind gets a last `event: dropped` (no id, so its
//! `Last-Event-ID` stays the last event it received) and the stream ends. A client resuming
//! from an id that the log's retention has since removed first gets `event: truncated` (no id),
//! with the highest id removed. See [`pipeline::events`](crate::pipeline::events).

use std::convert::Infallible;
use std::time::Duration;

use axum::Json;
use axum::Router;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::routing::get;
use futures_util::{Stream, StreamExt as _};
use serde::{Deserialize, Serialize};

use super::auth::Tenant;
use super::error::{ApiError, ApiResult};
use super::messages::iso;
use super::params::ApiQuery;
use crate::domain::ErrorCode;
use crate::pipeline::Pipeline;
use crate::pipeline::events::{self, Feed, FeedItem, MAX_LATEST};
use crate::store::LoggedEvent;

/// How often an idle stream sends a keep-alive comment, so proxies and clients keep it open.
const KEEP_ALIVE: Duration = Duration::from_secs(15);

/// The delivery routes, under `/api/v1/sms`.
pub fn routes() -> Router<Pipeline> {
    Router::new()
        .route("/api/v1/sms/delivery/real-time", get(real_time))
        .route("/api/v1/sms/delivery/stream", get(stream))
}

/// Query of `GET /api/v1/sms/delivery/real-time`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RealTimeQuery {
    /// How many changes (1–500, default 100).
    pub limit: Option<u32>,
}

/// Query of `GET /api/v1/sms/delivery/stream`: it takes none.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StreamQuery {}

/// One event of the log as the API shows it.
#[derive(Debug, Serialize)]
pub struct EventView {
    /// Its id in the log (the SSE `id`).
    pub id: i64,
    /// `message.status`, `message.inbound` or `opt_out.changed`.
    pub kind: String,
    /// The message concerned, if any.
    pub message_id: Option<String>,
    /// When it was recorded, UTC milliseconds.
    pub occurred_at: i64,
    /// The same, RFC 3339.
    pub occurred_at_iso: String,
    /// The kind's fields.
    pub payload: serde_json::Value,
}

impl From<LoggedEvent> for EventView {
    fn from(event: LoggedEvent) -> Self {
        Self {
            id: event.id,
            kind: event.kind,
            message_id: event.message_id,
            occurred_at: event.created_at,
            occurred_at_iso: iso(event.created_at),
            payload: event.payload,
        }
    }
}

/// The answer of `GET /api/v1/sms/delivery/real-time`.
#[derive(Debug, Serialize)]
pub struct RealTime {
    /// The latest status changes, newest first.
    pub items: Vec<EventView>,
}

/// `GET /api/v1/sms/delivery/real-time`: the tenant's latest status changes, newest first.
pub async fn real_time(
    State(pipeline): State<Pipeline>,
    Tenant(tenant): Tenant,
    ApiQuery(q): ApiQuery<RealTimeQuery>,
) -> ApiResult<Json<RealTime>> {
    let limit = q.limit.unwrap_or(100);
    if !(1..=MAX_LATEST).contains(&limit) {
        return Err(ApiError::new(
            ErrorCode::InvalidQuery,
            format!("limit must be between 1 and {MAX_LATEST}"),
        ));
    }
    let items = events::latest_status_changes(&pipeline, &tenant, limit).await?;
    Ok(Json(RealTime {
        items: items.into_iter().map(EventView::from).collect(),
    }))
}

/// `GET /api/v1/sms/delivery/stream`: the tenant's events as Server-Sent Events, from
/// `Last-Event-ID` when given, else from now.
pub async fn stream(
    State(pipeline): State<Pipeline>,
    Tenant(tenant): Tenant,
    ApiQuery(StreamQuery {}): ApiQuery<StreamQuery>,
    headers: HeaderMap,
) -> ApiResult<Sse<impl Stream<Item = Result<Event, Infallible>>>> {
    let (after, truncated) = match headers.get("last-event-id") {
        Some(value) => {
            let after = last_event_id(value.to_str().ok())?;
            events::resume_point(&pipeline, after).await?
        }
        None => (events::current_position(&pipeline).await?, None),
    };
    let feed = events::follow(&pipeline, &tenant, after);
    // Events retention removed since the client's last one: said before the rest, without an
    // `id`, so the client's `Last-Event-ID` moves on only with the next real event.
    let notice = truncated.map(|through| {
        Ok(Event::default()
            .event("truncated")
            .data(format!(r#"{{"removed_through":{through}}}"#)))
    });
    let feed_events = futures_util::stream::unfold(feed, |mut feed: Feed| async move {
        let event = match feed.next().await? {
            FeedItem::Event(event) => sse_event(event),
            FeedItem::Dropped => Event::default().event("dropped").data(
                r#"{"reason":"the client fell too far behind; reconnect with Last-Event-ID"}"#,
            ),
        };
        Some((Ok(event), feed))
    });
    let stream = futures_util::stream::iter(notice).chain(feed_events);
    Ok(Sse::new(stream).keep_alive(KeepAlive::new().interval(KEEP_ALIVE)))
}

/// Parses a `Last-Event-ID`: an event id this API sent, a non-negative integer.
fn last_event_id(value: Option<&str>) -> ApiResult<i64> {
    value
        .map(str::trim)
        .and_then(|text| text.parse::<i64>().ok())
        .filter(|id| *id >= 0)
        .ok_or_else(|| {
            ApiError::new(
                ErrorCode::BadRequest,
                "`Last-Event-ID` must be the id of an event this stream sent",
            )
        })
}

/// One log row as an SSE event.
fn sse_event(event: LoggedEvent) -> Event {
    let id = event.id.to_string();
    let kind = event.kind.clone();
    let data = serde_json::to_string(&EventView::from(event)).unwrap_or_else(|_| "{}".to_owned());
    Event::default().id(id).event(kind).data(data)
}
