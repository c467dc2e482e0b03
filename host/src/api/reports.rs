//! The aggregate routes: `GET /api/v1/sms/costs/summary`, `GET /api/v1/sms/costs/report`
//! (JSON or CSV) and `GET /api/v1/sms/delivery/metrics`, each over a period of whole UTC days
//! (`start_date` to `end_date`, inclusive); the figures are computed in
//! [`pipeline::reports`](crate::pipeline::reports) and
//! [`pipeline::delivery_metrics`](crate::pipeline::delivery_metrics).

use axum::Json;
use axum::Router;
use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::Deserialize;

use super::auth::Tenant;
use super::error::ApiResult;
use super::params::ApiQuery;
use crate::pipeline::Pipeline;
use crate::pipeline::delivery_metrics::{self, DeliveryMetrics};
use crate::pipeline::reports::{self, GroupBy, Period, Report, Summary};

/// The report routes, under `/api/v1/sms`.
pub fn routes() -> Router<Pipeline> {
    Router::new()
        .route("/api/v1/sms/costs/summary", get(summary))
        .route("/api/v1/sms/costs/report", get(report))
        .route("/api/v1/sms/delivery/metrics", get(metrics))
}

/// Query of `GET /costs/summary` and `GET /delivery/metrics`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GroupedQuery {
    /// The first day, `YYYY-MM-DD` (UTC).
    pub start_date: String,
    /// The last day, inclusive.
    pub end_date: String,
    /// The dimension of the groups; none: totals only.
    pub group_by: Option<GroupBy>,
}

/// The formats of `GET /costs/report`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    /// JSON (the default).
    #[default]
    Json,
    /// CSV with a header row.
    Csv,
}

/// Query of `GET /costs/report`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReportQuery {
    /// The first day, `YYYY-MM-DD` (UTC).
    pub start_date: String,
    /// The last day, inclusive.
    pub end_date: String,
    /// `json` (default) or `csv`.
    pub format: Option<Format>,
}

/// `GET /api/v1/sms/costs/summary`: totals and groups of the period's messages and costs.
pub async fn summary(
    State(pipeline): State<Pipeline>,
    Tenant(tenant): Tenant,
    ApiQuery(q): ApiQuery<GroupedQuery>,
) -> ApiResult<Json<Summary>> {
    let period = Period::parse(&q.start_date, &q.end_date)?;
    Ok(Json(
        reports::summary(&pipeline, &tenant, period, q.group_by).await?,
    ))
}

/// `GET /api/v1/sms/costs/report`: billing line items per day × provider × category (and
/// currency), as JSON or CSV.
pub async fn report(
    State(pipeline): State<Pipeline>,
    Tenant(tenant): Tenant,
    ApiQuery(q): ApiQuery<ReportQuery>,
) -> ApiResult<Response> {
    let period = Period::parse(&q.start_date, &q.end_date)?;
    let report = reports::report(&pipeline, &tenant, period).await?;
    Ok(match q.format.unwrap_or_default() {
        Format::Json => Json(report).into_response(),
        Format::Csv => (
            [
                (header::CONTENT_TYPE, "text/csv; charset=utf-8"),
                (
                    header::CONTENT_DISPOSITION,
                    "attachment; filename=\"herald-costs.csv\"",
                ),
            ],
            csv(&report),
        )
            .into_response(),
    })
}

/// `GET /api/v1/sms/delivery/metrics`: delivery rate, timings, failure reasons, cost per
/// message, opt-out rate and template usage of the period.
pub async fn metrics(
    State(pipeline): State<Pipeline>,
    Tenant(tenant): Tenant,
    ApiQuery(q): ApiQuery<GroupedQuery>,
) -> ApiResult<Json<DeliveryMetrics>> {
    let period = Period::parse(&q.start_date, &q.end_date)?;
    Ok(Json(
        delivery_metrics::delivery_metrics(&pipeline, &tenant, period, q.group_by).await?,
    ))
}

/// The CSV of a report: a header row, then one row per line item. The report is at most one
/// line per day, provider, category and currency, so it is built whole.
fn csv(report: &Report) -> String {
    let mut out = String::from(
        "date,provider,category,currency,messages,segments,estimated_micros,actual_micros,\
         difference_micros,cost_micros\n",
    );
    for item in &report.items {
        let fields = [
            field(&item.date),
            field(&item.provider),
            field(&item.category),
            field(item.currency.as_deref().unwrap_or_default()),
            item.messages.to_string(),
            item.segments.to_string(),
            item.estimated_micros.to_string(),
            item.actual_micros.to_string(),
            item.difference_micros.to_string(),
            item.cost_micros.to_string(),
        ];
        out.push_str(&fields.join(","));
        out.push('\n');
    }
    out
}

/// A CSV field, quoted when it holds a comma, a quote or a line break.
fn field(text: &str) -> String {
    if text.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", text.replace('"', "\"\""))
    } else {
        text.to_owned()
    }
}
