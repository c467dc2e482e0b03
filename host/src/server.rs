//! Serving an axum router on a TCP listener with the limits `axum::serve` does not expose:
//! hyper's HTTP/1 connections with a header-read timeout, a header-count limit above the API's
//! own header check, and a graceful shutdown with a bound.
//!
//! The request body's deadline is the API's ([`crate::api`]), so it answers in the API's JSON
//! error shape; this module owns the connections.

use std::future::Future;
use std::io;
use std::time::Duration;

use axum::extract::ConnectInfo;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinSet;
use tower::ServiceExt as _;

/// Hyper answers a bare `431` to a request with more header lines than this. The API refuses
/// headers over 32 KiB with its own JSON `431`; a client needs more than 1,024 lines averaging
/// under 32 bytes to see hyper's answer instead. (Hyper's default, 100, let a request with 101
/// ordinary headers see the bare one.) Above 100 hyper allocates the parse buffers per request,
/// 64 bytes a line, so the limit is not set higher.
pub const MAX_HEADER_LINES: usize = 1024;

/// How connections are served.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServeOptions {
    /// How long a client may take to send a request's headers (from the connection's start or
    /// the previous response) before the connection is closed.
    pub header_read_timeout: Duration,
    /// How long requests in progress may take to finish once shutdown begins; then their
    /// connections are dropped.
    pub shutdown_grace: Duration,
}

/// Serves `router` on `listener` until `shutdown` resolves; then stops accepting, lets each
/// connection finish the request it is on (idle ones close at once) for up to
/// [`ServeOptions::shutdown_grace`], and drops the connections still open.
pub async fn serve(
    listener: TcpListener,
    router: axum::Router,
    options: ServeOptions,
    shutdown: impl Future<Output = ()>,
) -> io::Result<()> {
    let mut http = http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(options.header_read_timeout)
        .max_headers(MAX_HEADER_LINES);
    let (closing, closing_seen) = watch::channel(false);
    let mut connections = JoinSet::new();
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => {
                let (stream, peer) = match accepted {
                    Ok(accepted) => accepted,
                    Err(error) => {
                        accept_failed(error).await;
                        continue;
                    }
                };
                // Responses are written whole; Nagle would only delay them.
                let _ = stream.set_nodelay(true);
                let connection = http.serve_connection(
                    TokioIo::new(stream),
                    // The peer's address, for handlers that ask (`/metrics` serves loopback).
                    TowerToHyperService::new(router.clone().map_request(
                        move |mut request: axum::extract::Request<hyper::body::Incoming>| {
                            request.extensions_mut().insert(ConnectInfo(peer));
                            request
                        },
                    )),
                );
                let mut closing = closing_seen.clone();
                connections.spawn(async move {
                    tokio::pin!(connection);
                    let result = tokio::select! {
                        result = connection.as_mut() => result,
                        () = async { let _ = closing.wait_for(|closing| *closing).await; } => {
                            connection.as_mut().graceful_shutdown();
                            connection.await
                        }
                    };
                    if let Err(error) = result {
                        // A client that hangs up or stalls is the client's business.
                        tracing::debug!(%error, "connection ended with an error");
                    }
                });
            }
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
    drop(listener);
    let _ = closing.send(true);
    let drained = tokio::time::timeout(options.shutdown_grace, async {
        while connections.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        tracing::warn!(
            connections = connections.len(),
            grace_ms = options.shutdown_grace.as_millis() as u64,
            "shutdown grace is over; dropping the connections still open"
        );
        connections.shutdown().await;
    }
    Ok(())
}

/// Handles a failed `accept`: a connection that died in the backlog is skipped; anything else
/// (out of file descriptors, most often) is logged and waited out for a second instead of
/// spinning.
async fn accept_failed(error: io::Error) {
    if matches!(
        error.kind(),
        io::ErrorKind::ConnectionRefused
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
    ) {
        return;
    }
    tracing::error!(%error, "accepting a connection failed; retrying in a second");
    tokio::time::sleep(Duration::from_secs(1)).await;
}
