//! The middleware every request passes besides the URL and header limits: one debug log line
//! per request, and the request body's deadline and size limit.

use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use http_body_util::{BodyExt, LengthLimitError, Limited};

use super::error::ApiError;
use crate::domain::ErrorCode;
use crate::pipeline::Pipeline;

/// Logs each request at debug level once it is answered: method, path (never the query, which
/// may carry references a log should not keep), status and latency.
pub async fn log_request(request: Request, next: Next) -> Response {
    let method = request.method().clone();
    let path = request.uri().path().to_owned();
    let started = Instant::now();
    let response = next.run(request).await;
    tracing::debug!(
        %method,
        path,
        status = response.status().as_u16(),
        latency_ms = started.elapsed().as_secs_f64() * 1000.0,
        "request"
    );
    response
}

/// Reads the whole request body before any handler runs: within `server.body_read_timeout_ms`
/// (else `408 request_timeout`, and the connection closes) and `server.max_body_bytes` (else
/// `413 payload_too_large`).
///
/// Why here and as a whole-body deadline: a client that sends its headers and then trickles
/// its body, or stops half-way, would otherwise hold a connection (and a graceful shutdown)
/// for as long as it likes; a per-read timeout would not stop a byte-a-second trickle.
/// Bodies are small (64 KiB by default) and every handler reads its body whole anyway, except
/// the bulk routes, which read theirs their own way ([`super::bulk`]).
pub async fn read_body(State(pipeline): State<Pipeline>, request: Request, next: Next) -> Response {
    let (max_bytes, timeout_ms) = {
        let config = pipeline.config();
        (
            config.server.max_body_bytes,
            config.server.body_read_timeout_ms,
        )
    };
    read_limited(max_bytes, timeout_ms, request, next).await
}

/// [`read_body`] with `max_bytes` and `timeout_ms` given, for a route whose bodies are larger
/// than `server.max_body_bytes` by design (`/send-bulk`).
pub async fn read_limited(
    max_bytes: usize,
    timeout_ms: u64,
    request: Request,
    next: Next,
) -> Response {
    let (parts, body) = request.into_parts();
    let read = Limited::new(body, max_bytes).collect();
    let bytes = match tokio::time::timeout(Duration::from_millis(timeout_ms), read).await {
        Ok(Ok(collected)) => collected.to_bytes(),
        Ok(Err(error)) if error.downcast_ref::<LengthLimitError>().is_some() => {
            return closing(ApiError::new(
                ErrorCode::PayloadTooLarge,
                format!("the request body is larger than {max_bytes} bytes"),
            ));
        }
        Ok(Err(error)) => {
            // The client hung up or sent a malformed chunked body; it may not read this.
            tracing::debug!(%error, "reading a request body failed");
            return closing(ApiError::new(
                ErrorCode::BadRequest,
                "the request body could not be read",
            ));
        }
        Err(_) => {
            return closing(ApiError::new(
                ErrorCode::RequestTimeout,
                format!("the request body did not arrive within {timeout_ms} ms"),
            ));
        }
    };
    next.run(Request::from_parts(parts, Body::from(bytes)))
        .await
}

/// The next data of a body read as it arrives (the streamed uploads), `None` at its end. Each
/// read has its own deadline, `idle`, not the whole body: a million lines take a while, but a
/// stalled client does not hold the connection longer than one deadline.
///
/// # Errors
///
/// `408 request_timeout` when nothing arrives within `idle`; `400 bad_request` when the body
/// cannot be read.
pub async fn next_data(
    body: &mut Body,
    idle: Duration,
) -> Result<Option<axum::body::Bytes>, ApiError> {
    loop {
        let frame = match tokio::time::timeout(idle, body.frame()).await {
            Err(_) => {
                return Err(ApiError::new(
                    ErrorCode::RequestTimeout,
                    format!("no part of the body arrived within {} ms", idle.as_millis()),
                ));
            }
            Ok(None) => return Ok(None),
            Ok(Some(Err(_))) => {
                return Err(ApiError::new(
                    ErrorCode::BadRequest,
                    "the request body could not be read",
                ));
            }
            Ok(Some(Ok(frame))) => frame,
        };
        // Trailers carry no data; read on.
        if let Ok(data) = frame.into_data() {
            return Ok(Some(data));
        }
    }
}

/// The response to a request whose body was left unread, with `Connection: close`: the rest of
/// that body is still on the connection, so the server closes it after answering, and a client
/// that sees the header opens a new connection for its next request instead of reusing this one
/// and finding it closed.
fn closing(error: ApiError) -> Response {
    let mut response = error.into_response();
    response.headers_mut().insert(
        axum::http::header::CONNECTION,
        axum::http::HeaderValue::from_static("close"),
    );
    response
}
