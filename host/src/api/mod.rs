//! The HTTP API (axum): routes, authentication and the one error shape. Handlers only
//! authenticate the tenant, parse typed JSON, call the [`pipeline`](crate::pipeline) and map the
//! result to a response. Bodies, queries and path ids are read through Herald's own extractors
//! ([`json`], [`params`]), which refuse what storage cannot hold in the same error shape.

pub mod admin;
pub mod auth;
pub mod budgets;
pub mod bulk;
pub mod delivery;
pub mod error;
pub mod estimate;
pub mod health;
pub mod inbound;
pub mod json;
pub mod layers;
pub mod messages;
pub mod metrics;
pub mod opt_outs;
pub mod params;
pub mod reports;
pub mod scheduling;
pub mod templates;
pub mod webhooks;

use axum::Router;
use axum::extract::Request;
use axum::http::HeaderMap;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, patch, post, put};

use crate::domain::ErrorCode;
use crate::pipeline::Pipeline;
pub use error::{ApiError, ApiResult};

/// The longest request target (path and query) accepted, in bytes.
const MAX_URI_BYTES: usize = 8 * 1024;
/// The most header bytes (names and values) a request may carry.
const MAX_HEADER_BYTES: usize = 32 * 1024;

/// The whole HTTP surface of Herald.
pub fn router(pipeline: Pipeline) -> Router {
    let max_body = pipeline.config().server.max_body_bytes;
    Router::new()
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz))
        .route("/api/v1/sms/send", post(messages::send))
        .route("/api/v1/sms/messages", get(messages::list))
        .route("/api/v1/sms/messages/{id}", get(messages::get))
        .merge(templates::routes())
        .route(
            "/api/v1/sms/webhooks/{provider}/status",
            post(webhooks::receive),
        )
        .route(
            "/api/v1/sms/webhooks/{provider}/inbound",
            post(webhooks::receive),
        )
        .merge(opt_outs::routes())
        .merge(inbound::routes())
        .merge(estimate::routes())
        .merge(delivery::routes())
        .merge(budgets::routes())
        .merge(reports::routes())
        .route("/admin/plugins", get(admin::list))
        .route("/admin/plugins/reload", post(admin::reload))
        .route(
            "/admin/tenants",
            post(admin::create_tenant).get(admin::list_tenants),
        )
        .route("/admin/tenants/{id}", patch(admin::update_tenant))
        .route(
            "/admin/tenants/{id}/api-keys",
            post(admin::create_api_key).get(admin::list_api_keys),
        )
        .route(
            "/admin/tenants/{id}/api-keys/{key_id}",
            delete(admin::revoke_api_key),
        )
        .route(
            "/admin/tenants/{id}/settings",
            put(admin::put_settings).get(admin::get_settings),
        )
        .merge(scheduling::routes())
        .merge(metrics::routes())
        .fallback(error::not_found)
        .method_not_allowed_fallback(error::method_not_allowed)
        .layer(axum::extract::DefaultBodyLimit::max(max_body))
        .layer(middleware::from_fn_with_state(
            pipeline.clone(),
            layers::read_body,
        ))
        // After the whole-body reader: the bulk routes read their bodies their own way.
        .merge(bulk::routes(&pipeline))
        .merge(opt_outs::streamed_routes())
        .layer(middleware::from_fn(request_limits))
        .layer(middleware::from_fn(layers::log_request))
        .layer(middleware::from_fn_with_state(
            pipeline.clone(),
            metrics::observe,
        ))
        .with_state(pipeline)
}

/// Refuses an overlong URL (414) or oversized headers (431) in the API's error shape, before
/// any handler runs.
async fn request_limits(request: Request, next: Next) -> Response {
    let uri_len = request
        .uri()
        .path_and_query()
        .map_or(0, |p| p.as_str().len());
    if uri_len > MAX_URI_BYTES {
        return ApiError::new(
            ErrorCode::UriTooLong,
            format!("the URL is longer than {MAX_URI_BYTES} bytes"),
        )
        .into_response();
    }
    let header_bytes: usize = request
        .headers()
        .iter()
        .map(|(name, value)| name.as_str().len() + value.len())
        .sum();
    if header_bytes > MAX_HEADER_BYTES {
        return ApiError::new(
            ErrorCode::HeadersTooLarge,
            format!("the request headers are larger than {MAX_HEADER_BYTES} bytes"),
        )
        .into_response();
    }
    next.run(request).await
}

/// The token of an `Authorization: Bearer` header (the scheme is case-insensitive).
pub(crate) fn bearer(headers: &HeaderMap) -> Option<&str> {
    let value = headers
        .get(axum::http::header::AUTHORIZATION)?
        .to_str()
        .ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}
