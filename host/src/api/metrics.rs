//! `GET /metrics`, the Prometheus exposition of this Herald ([`crate::metrics`]), behind the
//! `[metrics]` guard; and the middleware that times every request by its route template.
//!
//! The guard (`metrics.access`): `open` serves anyone; `admin` wants the admin key;
//! `loopback` (the default) serves a client whose address is a loopback address without a key
//! and wants the admin key from anyone else. The client's address is the connection's peer
//! ([`ConnectInfo`], set by [`crate::server`]); a router served without it (nested in an
//! embedder's app without connect info) sees no address, and so wants the key.

use std::net::SocketAddr;
use std::time::Instant;

use axum::Router;
use axum::extract::{ConnectInfo, MatchedPath, Request, State};
use axum::http::{HeaderValue, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use super::error::{ApiError, ApiResult};
use crate::domain::ErrorCode;
use crate::metrics::{MetricsAccess, UNMATCHED_ROUTE};
use crate::pipeline::Pipeline;

/// The content type of the Prometheus text format.
const TEXT_FORMAT: &str = "text/plain; version=0.0.4; charset=utf-8";

/// The metrics route.
pub fn routes() -> Router<Pipeline> {
    Router::new().route("/metrics", get(scrape))
}

/// `GET /metrics`: refreshes the queue gauges from storage and renders every metric.
///
/// Should storage not answer, the rest is still rendered (the queue gauges keep their last
/// values and the failure is logged): metrics matter most during an outage.
pub async fn scrape(State(pipeline): State<Pipeline>, request: Request) -> ApiResult<Response> {
    let peer = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ConnectInfo(addr)| *addr);
    authorize(&pipeline, request.headers(), peer)?;
    let metrics = pipeline.metrics();
    match pipeline.store().queue_gauges().await {
        Ok(queue) => {
            let age_ms = queue.oldest_due_age_ms(pipeline.now());
            metrics.queue(queue.depth, std::time::Duration::from_millis(age_ms));
        }
        Err(e) => tracing::warn!(error = %e, "metrics: could not read the queue gauges"),
    }
    if let Err(e) = crate::pipeline::budgets::record_metrics(&pipeline).await {
        tracing::warn!(error = %e.message, "metrics: could not read the budgets");
    }
    let mut response = metrics.render().into_response();
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(TEXT_FORMAT));
    Ok(response)
}

/// Whether a request from `peer` with `headers` may read the metrics under the current
/// `[metrics]` settings: `404 not_found` when they are off, `401 unauthorized` or
/// `403 admin_disabled` (as the admin routes answer) when the admin key is wanted and missing.
///
/// # Errors
///
/// The refusal, in the API's error shape.
pub fn authorize(
    pipeline: &Pipeline,
    headers: &axum::http::HeaderMap,
    peer: Option<SocketAddr>,
) -> ApiResult<()> {
    let settings = pipeline.config().metrics.clone();
    if !settings.enabled {
        return Err(ApiError::new(
            ErrorCode::NotFound,
            "metrics are disabled (metrics.enabled = false)",
        ));
    }
    let local = peer.is_some_and(|addr| addr.ip().to_canonical().is_loopback());
    match settings.access {
        MetricsAccess::Open => Ok(()),
        MetricsAccess::Loopback if local => Ok(()),
        MetricsAccess::Loopback | MetricsAccess::Admin => {
            super::admin::authorize(pipeline, headers)
        }
    }
}

/// Records each request's latency by method, route template and status. The template, not the
/// path, so ids in paths do not multiply the series; a request no route matched is
/// `route="unmatched"`. A streamed response counts until its headers are ready.
pub async fn observe(State(pipeline): State<Pipeline>, request: Request, next: Next) -> Response {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map(|path| path.as_str().to_owned());
    let method = request.method().clone();
    let started = Instant::now();
    let response = next.run(request).await;
    pipeline.metrics().http_request(
        method.as_str(),
        route.as_deref().unwrap_or(UNMATCHED_ROUTE),
        response.status().as_u16(),
        started.elapsed(),
    );
    response
}
