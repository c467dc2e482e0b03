//! Bulk batches over HTTP: `POST /api/v1/sms/send-bulk` and the `/api/v1/sms/batches` routes.
//!
//! Every check of a row lives in the [`pipeline`](crate::pipeline::bulk); the handlers parse,
//! call it and shape its answer. Two routes read their bodies differently from the rest of the
//! API: `/send-bulk` takes up to [`MAX_BULK_BODY_BYTES`] (100,000 recipients), and
//! `/batches/{id}/recipients` streams its NDJSON or CSV body into the pipeline as it arrives,
//! never holding it whole, with a deadline per read instead of one for the whole body.

use std::collections::BTreeMap;
use std::time::Duration;

use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};

use super::auth::Tenant;
use super::error::{ApiError, ApiResult};
use super::json::ApiJson;
use super::layers;
use super::messages::{MessageView, Reference, iso, view};
use super::params::{ApiQuery, PathId};
use crate::domain::ErrorCode;
use crate::pipeline::accept;
use crate::pipeline::bulk::{self, BatchRequest, BatchSummary, Recipient, Rejected, upload};
use crate::pipeline::{Pipeline, bulk::Staged};

/// The largest `/send-bulk` body: room for 100,000 recipients of about 640 bytes each.
pub const MAX_BULK_BODY_BYTES: usize = 64 * 1024 * 1024;

/// The bulk routes, each with the body handling it needs (merged into [`super::router`]
/// outside the API's whole-body reader).
pub fn routes(pipeline: &Pipeline) -> Router<Pipeline> {
    let send_bulk = Router::new()
        .route("/api/v1/sms/send-bulk", post(send_bulk))
        .layer(DefaultBodyLimit::max(MAX_BULK_BODY_BYTES))
        .layer(middleware::from_fn_with_state(
            pipeline.clone(),
            read_bulk_body,
        ));
    let batches = Router::new()
        .route("/api/v1/sms/batches", get(list))
        .route("/api/v1/sms/batches/{id}", get(get_batch))
        .route("/api/v1/sms/batches/{id}/send", post(send))
        .route("/api/v1/sms/batches/{id}/cancel", post(cancel))
        .route("/api/v1/sms/batches/{id}/messages", get(messages))
        .layer(middleware::from_fn_with_state(
            pipeline.clone(),
            layers::read_body,
        ));
    let recipients = Router::new()
        .route("/api/v1/sms/batches/{id}/recipients", post(recipients))
        .layer(DefaultBodyLimit::disable());
    send_bulk.merge(batches).merge(recipients)
}

/// Reads a `/send-bulk` body whole, up to [`MAX_BULK_BODY_BYTES`], within the usual deadline.
async fn read_bulk_body(
    State(pipeline): State<Pipeline>,
    request: Request,
    next: Next,
) -> Response {
    let timeout_ms = pipeline.config().server.body_read_timeout_ms;
    layers::read_limited(MAX_BULK_BODY_BYTES, timeout_ms, request, next).await
}

/// The body of `POST /api/v1/sms/send-bulk`: the seed's, plus batch-level defaults.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SendBulkBody {
    /// A name for people.
    pub batch_name: Option<String>,
    /// Send once validated (the default); `false` keeps a draft for `/batches/{id}/send`.
    #[serde(default = "yes")]
    pub send_immediately: bool,
    /// The rows, at most 100,000.
    #[serde(default)]
    pub recipients: Vec<Recipient>,
    /// The template of rows that bring neither `message` nor `template_id`.
    pub template_id: Option<Reference>,
    /// Values for the template's variables, under each row's own.
    #[serde(default)]
    pub template_variables: BTreeMap<String, serde_json::Value>,
    /// The category of rows that name none.
    pub category: Option<String>,
    /// When to send, RFC 3339 with an offset; a past time sends now.
    pub send_at: Option<String>,
    /// Send a number that appears twice twice (default: once).
    #[serde(default)]
    pub allow_duplicates: bool,
}

fn yes() -> bool {
    true
}

/// A batch as the API shows it.
#[derive(Debug, Serialize)]
pub struct BatchView {
    id: String,
    name: Option<String>,
    status: &'static str,
    category: Option<String>,
    template_id: Option<String>,
    allow_duplicates: bool,
    send_at: Option<i64>,
    total: u64,
    counts: BTreeMap<&'static str, u64>,
    progress: f64,
    created_at: i64,
    created_at_iso: String,
    started_at: Option<i64>,
    finished_at: Option<i64>,
    canceled_at: Option<i64>,
}

impl From<BatchSummary> for BatchView {
    fn from(summary: BatchSummary) -> Self {
        let batch = summary.batch;
        Self {
            created_at_iso: iso(batch.created_at),
            id: batch.id,
            name: batch.name,
            status: summary.status,
            category: batch.category.map(|c| c.as_str().to_owned()),
            template_id: batch.template_id,
            allow_duplicates: batch.allow_duplicates,
            send_at: batch.send_at,
            total: summary.total,
            counts: summary
                .counts
                .into_iter()
                .map(|(status, n)| (status.as_str(), n))
                .collect(),
            progress: summary.progress,
            created_at: batch.created_at,
            started_at: batch.started_at,
            finished_at: summary.finished_at,
            canceled_at: batch.canceled_at,
        }
    }
}

/// A refused row of a `/send-bulk` list, by its index (from 0).
#[derive(Debug, Serialize)]
pub struct RejectedRow {
    index: u64,
    code: ErrorCode,
    message: String,
}

/// A refused line of an upload, by its number (from 1).
#[derive(Debug, Serialize)]
pub struct RejectedLine {
    line: u64,
    code: ErrorCode,
    message: String,
}

/// The answer of `/send-bulk`.
#[derive(Debug, Serialize)]
pub struct BulkAnswer {
    batch_id: String,
    status: &'static str,
    accepted: u64,
    rejected: Vec<RejectedRow>,
    batch: BatchView,
}

/// The answer of an upload.
#[derive(Debug, Serialize)]
pub struct UploadAnswer {
    batch_id: String,
    status: &'static str,
    accepted: u64,
    rejected: Vec<RejectedLine>,
    rejected_count: u64,
    batch: BatchView,
}

/// A page of batches.
#[derive(Debug, Serialize)]
pub struct BatchPage {
    items: Vec<BatchView>,
    next_cursor: Option<String>,
}

/// A page of a batch's messages.
#[derive(Debug, Serialize)]
pub struct BatchMessagePage {
    items: Vec<MessageView>,
    next_cursor: Option<String>,
}

/// The answer of a cancel.
#[derive(Debug, Serialize)]
pub struct CanceledAnswer {
    /// Messages withdrawn by this call.
    canceled: u64,
    #[serde(flatten)]
    batch: BatchView,
}

/// Query of the list routes.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PageQuery {
    /// Page size (1–500, default 50).
    pub limit: Option<u32>,
    /// Cursor from the previous page.
    pub cursor: Option<String>,
}

impl PageQuery {
    fn checked(self) -> ApiResult<Self> {
        if let Some(limit) = self.limit
            && !(1..=500).contains(&limit)
        {
            return Err(ApiError::new(
                ErrorCode::InvalidQuery,
                "limit must be between 1 and 500",
            ));
        }
        if self.cursor.as_deref().is_some_and(|c| c.contains('\0')) {
            return Err(ApiError::new(
                ErrorCode::InvalidQuery,
                "the cursor is not valid",
            ));
        }
        Ok(self)
    }
}

/// `POST /api/v1/sms/send-bulk`: `202 {batch_id, status, accepted, rejected}`.
pub async fn send_bulk(
    State(pipeline): State<Pipeline>,
    Tenant(tenant): Tenant,
    ApiJson(body): ApiJson<SendBulkBody>,
) -> ApiResult<(StatusCode, Json<BulkAnswer>)> {
    let request = BatchRequest {
        name: body.batch_name,
        send_immediately: body.send_immediately,
        template: body.template_id.map(String::from),
        template_variables: body.template_variables,
        category: body.category.as_deref().map(accept::category).transpose()?,
        send_at: body
            .send_at
            .as_deref()
            .map(|at| bulk::send_at(&pipeline, at))
            .transpose()?,
        allow_duplicates: body.allow_duplicates,
    };
    let created = bulk::create(&pipeline, &tenant, request, body.recipients).await?;
    let Staged {
        accepted, rejected, ..
    } = created.staged;
    let batch = BatchView::from(created.batch);
    Ok((
        StatusCode::ACCEPTED,
        Json(BulkAnswer {
            batch_id: batch.id.clone(),
            status: batch.status,
            accepted,
            rejected: rejected.into_iter().map(row).collect(),
            batch,
        }),
    ))
}

fn row(rejected: Rejected) -> RejectedRow {
    RejectedRow {
        index: rejected.position,
        code: rejected.code,
        message: rejected.message,
    }
}

/// `POST /api/v1/sms/batches/{id}/recipients`: adds an NDJSON (`application/x-ndjson`) or CSV
/// (`text/csv`) list to a draft, read as it arrives; `200` with the lines' outcome.
pub async fn recipients(
    State(pipeline): State<Pipeline>,
    Tenant(tenant): Tenant,
    PathId(id): PathId,
    headers: HeaderMap,
    request: Request,
) -> ApiResult<Json<UploadAnswer>> {
    let format = upload_format(&headers)?;
    let idle = Duration::from_millis(pipeline.config().server.body_read_timeout_ms);
    let mut upload = upload::start(&pipeline, &tenant, &id, format).await?;
    let mut body = request.into_body();
    while let Some(data) = layers::next_data(&mut body, idle).await? {
        upload.feed(&data).await?;
    }
    let staged = upload.finish().await?;
    let batch = BatchView::from(bulk::summary(&pipeline, &tenant, &id).await?);
    Ok(Json(UploadAnswer {
        batch_id: batch.id.clone(),
        status: batch.status,
        accepted: staged.accepted,
        rejected: staged
            .rejected
            .into_iter()
            .map(|r| RejectedLine {
                line: r.position,
                code: r.code,
                message: r.message,
            })
            .collect(),
        rejected_count: staged.rejected_count,
        batch,
    }))
}

/// The upload's format from its `Content-Type`.
fn upload_format(headers: &HeaderMap) -> ApiResult<upload::Format> {
    let essence = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .map(|v| v.trim().to_ascii_lowercase())
        .unwrap_or_default();
    match essence.as_str() {
        "application/x-ndjson" | "application/ndjson" | "application/jsonl" => {
            Ok(upload::Format::Ndjson)
        }
        "text/csv" => Ok(upload::Format::Csv),
        _ => Err(ApiError::new(
            ErrorCode::UnsupportedMediaType,
            "expected Content-Type: application/x-ndjson or text/csv",
        )),
    }
}

/// `POST /api/v1/sms/batches/{id}/send`: queues a draft; `202` with the batch.
pub async fn send(
    State(pipeline): State<Pipeline>,
    Tenant(tenant): Tenant,
    PathId(id): PathId,
) -> ApiResult<(StatusCode, Json<BatchView>)> {
    let summary = bulk::send(&pipeline, &tenant, &id).await?;
    Ok((StatusCode::ACCEPTED, Json(summary.into())))
}

/// `POST /api/v1/sms/batches/{id}/cancel`: withdraws every message not yet claimed.
pub async fn cancel(
    State(pipeline): State<Pipeline>,
    Tenant(tenant): Tenant,
    PathId(id): PathId,
) -> ApiResult<Json<CanceledAnswer>> {
    let (summary, canceled) = bulk::cancel(&pipeline, &tenant, &id).await?;
    Ok(Json(CanceledAnswer {
        canceled,
        batch: summary.into(),
    }))
}

/// `GET /api/v1/sms/batches/{id}`: counts by status, progress, start and finish times.
pub async fn get_batch(
    State(pipeline): State<Pipeline>,
    Tenant(tenant): Tenant,
    PathId(id): PathId,
) -> ApiResult<Json<BatchView>> {
    Ok(Json(bulk::summary(&pipeline, &tenant, &id).await?.into()))
}

/// `GET /api/v1/sms/batches`: newest first, keyset-paginated.
pub async fn list(
    State(pipeline): State<Pipeline>,
    Tenant(tenant): Tenant,
    ApiQuery(q): ApiQuery<PageQuery>,
) -> ApiResult<Json<BatchPage>> {
    let q = q.checked()?;
    let page = bulk::list(&pipeline, &tenant, q.limit, q.cursor.as_deref()).await?;
    Ok(Json(BatchPage {
        items: page.items.into_iter().map(BatchView::from).collect(),
        next_cursor: page.next_cursor,
    }))
}

/// `GET /api/v1/sms/batches/{id}/messages`: in the order accepted, keyset-paginated.
pub async fn messages(
    State(pipeline): State<Pipeline>,
    Tenant(tenant): Tenant,
    PathId(id): PathId,
    ApiQuery(q): ApiQuery<PageQuery>,
) -> ApiResult<Json<BatchMessagePage>> {
    let q = q.checked()?;
    let page = bulk::messages(&pipeline, &tenant, &id, q.limit, q.cursor.as_deref()).await?;
    Ok(Json(BatchMessagePage {
        items: page.items.into_iter().map(|m| view(m, None)).collect(),
        next_cursor: page.next_cursor,
    }))
}
