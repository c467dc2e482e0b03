//! The opt-out routes: the seed module's `POST /opt-out`, `GET /opt-out/check/{phone_number}` and
//! `POST /opt-out/opt-in` with its bodies, and the list's management: `GET /opt-outs` (with its
//! stats and streamed compliance export) and `POST /opt-outs/import` (CSV).
//!
//! The number in `/opt-out/check/{phone_number}` may be sent as `+14155552671` or
//! `%2B14155552671`: a path, unlike a query string, keeps a `+` as it is, and its percent-encoding
//! decodes to the same number. Every rule lives in [`pipeline::opt_outs`]; the handlers parse,
//! call it and shape the answer.

use std::time::Duration;

use axum::Json;
use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use futures_util::StreamExt;
use serde::{Deserialize, Serialize};

use super::auth::Tenant;
use super::error::{ApiError, ApiResult};
use super::json::ApiJson;
use super::layers;
use super::messages::{Reference, iso, parse_date};
use super::params::{ApiQuery, PathId};
use crate::domain::ErrorCode;
use crate::pipeline::opt_out_import::{Import, ImportReport};
use crate::pipeline::opt_outs::{self, Changed, NumberState, OptOutRequest, Stats};
use crate::pipeline::{Pipeline, PipelineError};
use crate::store::{OptOut, OptOutEvent, OptOutFilter, OptOutMethod};

/// The opt-out routes, under `/api/v1/sms`.
pub fn routes() -> Router<Pipeline> {
    Router::new()
        .route("/api/v1/sms/opt-out", post(opt_out))
        .route("/api/v1/sms/opt-out/check/{phone_number}", get(check))
        .route("/api/v1/sms/opt-out/opt-in", post(opt_in))
        .route("/api/v1/sms/opt-outs", get(list))
        .route("/api/v1/sms/opt-outs/stats", get(stats))
        .route("/api/v1/sms/opt-outs/export", get(export))
}

/// The opt-out import, which reads its body as it arrives (merged into [`super::router`]
/// outside the API's whole-body reader, like the batch uploads).
pub fn streamed_routes() -> Router<Pipeline> {
    Router::new()
        .route("/api/v1/sms/opt-outs/import", post(import))
        .layer(DefaultBodyLimit::disable())
}

/// The body of `POST /api/v1/sms/opt-out`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OptOutBody {
    /// The number, E.164.
    pub phone_number: String,
    /// Why (kept in the audit trail; at most 500 characters).
    pub opt_out_reason: Option<String>,
    /// The caller's customer reference (a string or a number).
    pub customer_id: Option<Reference>,
    /// What to opt out of; `all` (everything but compliance replies) when absent.
    pub category: Option<String>,
}

/// The body of `POST /api/v1/sms/opt-out/opt-in`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OptInBody {
    /// The number, E.164.
    pub phone_number: String,
    /// What to opt back into; `all` (lifting every opt-out) when absent.
    pub category: Option<String>,
}

/// `POST /api/v1/sms/opt-out`: `200` with `changed` and the number's state afterwards.
pub async fn opt_out(
    State(pipeline): State<Pipeline>,
    Tenant(tenant): Tenant,
    ApiJson(body): ApiJson<OptOutBody>,
) -> ApiResult<Json<Changed>> {
    let request = OptOutRequest {
        phone: opt_outs::phone(&body.phone_number)?,
        category: opt_outs::category(body.category.as_deref())?,
        reason: body.opt_out_reason,
        customer_id: body.customer_id.map(String::from),
    };
    Ok(Json(opt_outs::opt_out(&pipeline, &tenant, request).await?))
}

/// `POST /api/v1/sms/opt-out/opt-in`: `200` with `changed` and the number's state afterwards.
pub async fn opt_in(
    State(pipeline): State<Pipeline>,
    Tenant(tenant): Tenant,
    ApiJson(body): ApiJson<OptInBody>,
) -> ApiResult<Json<Changed>> {
    let phone = opt_outs::phone(&body.phone_number)?;
    let category = opt_outs::category(body.category.as_deref())?;
    Ok(Json(
        opt_outs::opt_in(&pipeline, &tenant, &phone, category).await?,
    ))
}

/// Query of `GET /api/v1/sms/opt-out/check/{phone_number}`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CheckQuery {
    /// A category to include in the answer even if the number has no record for it.
    pub category: Option<String>,
}

/// `GET /api/v1/sms/opt-out/check/{phone_number}`: each category's state (`all` first).
pub async fn check(
    State(pipeline): State<Pipeline>,
    Tenant(tenant): Tenant,
    PathId(number): PathId,
    ApiQuery(q): ApiQuery<CheckQuery>,
) -> ApiResult<Json<NumberState>> {
    let phone = opt_outs::phone(&number)?;
    let category = q
        .category
        .as_deref()
        .map(|name| query_category(Some(name)))
        .transpose()?;
    let state = opt_outs::state(&pipeline, &tenant, &phone, category.as_ref()).await?;
    Ok(Json(state))
}

/// Query of `GET /api/v1/sms/opt-outs`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    /// Only of this category (`all` included).
    pub category: Option<String>,
    /// Only made this way: `keyword`, `api`, `import` or `provider` (also accepted as `method`).
    #[serde(alias = "method")]
    pub source: Option<String>,
    /// Only made at or after (RFC 3339 or YYYY-MM-DD).
    pub since: Option<String>,
    /// Page size (1–500, default 50).
    pub limit: Option<u32>,
    /// Cursor from the previous page.
    pub cursor: Option<String>,
}

/// An opt-out in force as the API shows it.
#[derive(Debug, Serialize)]
pub struct OptOutView {
    #[serde(flatten)]
    opt_out: OptOut,
    created_at_iso: String,
}

/// A page of opt-outs.
#[derive(Debug, Serialize)]
pub struct OptOutPage {
    items: Vec<OptOutView>,
    next_cursor: Option<String>,
}

/// `GET /api/v1/sms/opt-outs`: the opt-outs in force, newest first, keyset-paginated.
pub async fn list(
    State(pipeline): State<Pipeline>,
    Tenant(tenant): Tenant,
    ApiQuery(q): ApiQuery<ListQuery>,
) -> ApiResult<Json<OptOutPage>> {
    if let Some(limit) = q.limit
        && !(1..=500).contains(&limit)
    {
        return Err(ApiError::new(
            ErrorCode::InvalidQuery,
            "limit must be between 1 and 500",
        ));
    }
    let method = q
        .source
        .as_deref()
        .map(|name| {
            OptOutMethod::parse(name).ok_or_else(|| {
                ApiError::new(
                    ErrorCode::InvalidQuery,
                    "`source` must be `keyword`, `api`, `import` or `provider`",
                )
            })
        })
        .transpose()?;
    let filter = OptOutFilter {
        category: q
            .category
            .as_deref()
            .map(|name| query_category(Some(name)))
            .transpose()?,
        method,
        since: q
            .since
            .as_deref()
            .map(|d| parse_date("since", d, false))
            .transpose()?,
        limit: q.limit,
        cursor: q.cursor,
    };
    let page = opt_outs::list(&pipeline, &tenant, &filter).await?;
    Ok(Json(OptOutPage {
        items: page
            .items
            .into_iter()
            .map(|opt_out| OptOutView {
                created_at_iso: iso(opt_out.created_at),
                opt_out,
            })
            .collect(),
        next_cursor: page.next_cursor,
    }))
}

/// A period given as `start_date` / `end_date` (RFC 3339, or YYYY-MM-DD: a bare end date
/// includes its whole day).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PeriodQuery {
    /// Start, inclusive.
    pub start_date: Option<String>,
    /// End, exclusive.
    pub end_date: Option<String>,
}

impl PeriodQuery {
    /// The period in UTC milliseconds; an inverted one is refused.
    fn window(&self) -> ApiResult<(Option<i64>, Option<i64>)> {
        let start = self
            .start_date
            .as_deref()
            .map(|d| parse_date("start_date", d, false))
            .transpose()?;
        let end = self
            .end_date
            .as_deref()
            .map(|d| parse_date("end_date", d, true))
            .transpose()?;
        if let (Some(start), Some(end)) = (start, end)
            && start >= end
        {
            return Err(ApiError::new(
                ErrorCode::InvalidQuery,
                "`start_date` must be before `end_date`",
            ));
        }
        Ok((start, end))
    }
}

/// `GET /api/v1/sms/opt-outs/stats`: the opt-outs in force by category and source, and the
/// opt-out rate over the period (default: the last 30 days).
pub async fn stats(
    State(pipeline): State<Pipeline>,
    Tenant(tenant): Tenant,
    ApiQuery(q): ApiQuery<PeriodQuery>,
) -> ApiResult<Json<Stats>> {
    let (start, end) = q.window()?;
    Ok(Json(opt_outs::stats(&pipeline, &tenant, start, end).await?))
}

/// Query of `GET /api/v1/sms/opt-outs/export`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExportQuery {
    /// `csv` (the default) or `json`.
    pub format: Option<String>,
    /// Only events at or after.
    pub start_date: Option<String>,
    /// Only events before.
    pub end_date: Option<String>,
}

/// One audit event as the JSON export shows it.
#[derive(Debug, Serialize)]
struct ExportRow<'a> {
    #[serde(flatten)]
    event: &'a OptOutEvent,
    occurred_at_iso: String,
}

/// The columns of the CSV export, in order.
const CSV_HEADER: &str = "occurred_at,phone_number,category,action,method,source_message_id,\
                          reason,customer_id,event_id\r\n";

/// `GET /api/v1/sms/opt-outs/export?format=csv|json`: every opt-out and opt-in, oldest first,
/// streamed page by page. A storage failure mid-way aborts the response, so a cut-off export
/// never looks complete.
pub async fn export(
    State(pipeline): State<Pipeline>,
    Tenant(tenant): Tenant,
    ApiQuery(q): ApiQuery<ExportQuery>,
) -> ApiResult<Response> {
    let json = match q.format.as_deref() {
        None | Some("csv") => false,
        Some("json") => true,
        Some(_) => {
            return Err(ApiError::new(
                ErrorCode::InvalidQuery,
                "`format` must be `csv` or `json`",
            ));
        }
    };
    let window = PeriodQuery {
        start_date: q.start_date,
        end_date: q.end_date,
    }
    .window()?;
    let pages = opt_outs::export(&pipeline, &tenant, window);
    let mut first = true;
    let chunks = pages.map(move |page| {
        page.map(|events| {
            let mut chunk = String::new();
            for event in &events {
                if json {
                    chunk.push_str(if first { "\n" } else { ",\n" });
                    let row = ExportRow {
                        event,
                        occurred_at_iso: iso(event.occurred_at),
                    };
                    chunk.push_str(&serde_json::to_string(&row).unwrap_or_default());
                } else {
                    csv_row(&mut chunk, event);
                }
                first = false;
            }
            Bytes::from(chunk)
        })
    });
    let (open, close, content_type, file) = if json {
        ("[", "\n]\n", "application/json", "opt-outs.json")
    } else {
        (CSV_HEADER, "", "text/csv; charset=utf-8", "opt-outs.csv")
    };
    let body = futures_util::stream::once(async move { Ok::<_, PipelineError>(Bytes::from(open)) })
        .chain(chunks)
        .chain(futures_util::stream::once(
            async move { Ok(Bytes::from(close)) },
        ));
    let mut response = Body::from_stream(body).into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    if let Ok(disposition) = HeaderValue::from_str(&format!("attachment; filename=\"{file}\"")) {
        headers.insert(header::CONTENT_DISPOSITION, disposition);
    }
    Ok(response)
}

/// Appends `event` as one CSV line.
fn csv_row(out: &mut String, event: &OptOutEvent) {
    let fields = [
        iso(event.occurred_at),
        event.phone_number.clone(),
        event.category.as_str().to_owned(),
        match event.action {
            crate::store::OptOutAction::OptOut => "opt_out".to_owned(),
            crate::store::OptOutAction::OptIn => "opt_in".to_owned(),
        },
        event.method.as_str().to_owned(),
        event.source_message_id.clone().unwrap_or_default(),
        spreadsheet_safe(event.reason.as_deref().unwrap_or_default()),
        spreadsheet_safe(event.customer_id.as_deref().unwrap_or_default()),
        event.id.to_string(),
    ];
    for (index, field) in fields.iter().enumerate() {
        if index > 0 {
            out.push(',');
        }
        if field.contains([',', '"', '\r', '\n']) {
            out.push('"');
            out.push_str(&field.replace('"', "\"\""));
            out.push('"');
        } else {
            out.push_str(field);
        }
    }
    out.push_str("\r\n");
}

/// Free text a caller wrote (a reason, a customer reference) that a spreadsheet would run as a
/// formula (`=`, `+`, `-`, `@`, tab, CR first) is prefixed with `'`, as OWASP advises for CSV
/// files opened in spreadsheets; the JSON export keeps it exact.
fn spreadsheet_safe(text: &str) -> String {
    if text.starts_with(['=', '+', '-', '@', '\t', '\r']) {
        format!("'{text}")
    } else {
        text.to_owned()
    }
}

/// `POST /api/v1/sms/opt-outs/import`: a CSV (`text/csv`) with the header
/// `phone_number,category[,reason]`, of any length, applied as it arrives; `200` with the
/// per-row report.
pub async fn import(
    State(pipeline): State<Pipeline>,
    Tenant(tenant): Tenant,
    headers: HeaderMap,
    request: Request,
) -> ApiResult<Json<ImportReport>> {
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("text/csv");
    let essence = content_type
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    if !matches!(
        essence.as_str(),
        "text/csv" | "application/csv" | "text/plain"
    ) {
        return Err(ApiError::new(
            ErrorCode::UnsupportedMediaType,
            "send the import as Content-Type: text/csv",
        ));
    }
    crate::pipeline::tenants::ensure_active(&pipeline, &tenant).await?;
    let idle = Duration::from_millis(pipeline.config().server.body_read_timeout_ms);
    let mut import = Import::start(&pipeline, &tenant);
    let mut body = request.into_body();
    while let Some(data) = layers::next_data(&mut body, idle).await? {
        import.feed(&data).await?;
    }
    Ok(Json(import.finish().await?))
}

/// A category named in a query string, refused as an invalid query.
fn query_category(name: Option<&str>) -> ApiResult<crate::domain::Category> {
    opt_outs::category(name).map_err(|e| ApiError::new(ErrorCode::InvalidQuery, e.message))
}
