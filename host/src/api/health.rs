//! Liveness and readiness, for load balancers and orchestrators.
//!
//! - `GET /healthz` (liveness): `200 {"status": "ok"}` while the process runs, whatever its
//!   dependencies do, so a supervisor restarts only a process that is truly stuck.
//! - `GET /readyz` (readiness): whether this instance can take traffic now — storage answers a
//!   trivial query within [`STORAGE_CHECK`] and the routed provider and renderer are loaded.
//!   `200` when it can, `503` when it cannot, with the same report either way: readiness is a
//!   report, not an error, so it does not use the error shape.

use std::collections::BTreeMap;
use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use crate::pipeline::Pipeline;

/// The longest the storage check waits (less when `storage.acquire_timeout_ms` is shorter).
pub const STORAGE_CHECK: Duration = Duration::from_secs(1);

/// The body of `GET /readyz`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Readiness {
    /// `ready` or `not_ready`.
    pub status: &'static str,
    /// `ok` or `unavailable`.
    pub storage: &'static str,
    /// Each routed role (`provider`, `renderer`) with the plugin it names; a role routed to no
    /// plugin (an empty name) is left out.
    pub plugins: BTreeMap<&'static str, RoleState>,
}

/// Whether the plugin a role is routed to is loaded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RoleState {
    /// The plugin's name, as `routing` gives it.
    pub name: String,
    /// `loaded` or `missing`.
    pub status: &'static str,
}

/// `GET /healthz`.
pub async fn healthz() -> Json<serde_json::Value> {
    Json(serde_json::json!({ "status": "ok" }))
}

/// `GET /readyz`.
pub async fn readyz(State(pipeline): State<Pipeline>) -> Response {
    let config = pipeline.config();
    let wait = STORAGE_CHECK.min(Duration::from_millis(config.storage.acquire_timeout_ms));
    let storage_ok = match tokio::time::timeout(wait, pipeline.store().ping()).await {
        Ok(Ok(())) => true,
        Ok(Err(error)) => {
            tracing::debug!(%error, "readiness: storage does not answer");
            false
        }
        Err(_) => {
            tracing::debug!(
                wait_ms = wait.as_millis() as u64,
                "readiness: storage is slow"
            );
            false
        }
    };
    let plugins = pipeline.plugins();
    let roles = [
        (
            "provider",
            &config.routing.provider,
            plugins.provider().is_ok(),
        ),
        (
            "renderer",
            &config.routing.renderer,
            plugins.renderer().is_ok(),
        ),
    ];
    let plugins: BTreeMap<&'static str, RoleState> = roles
        .into_iter()
        .filter(|(_, name, _)| !name.is_empty())
        .map(|(role, name, loaded)| {
            let status = if loaded { "loaded" } else { "missing" };
            let state = RoleState {
                name: name.clone(),
                status,
            };
            (role, state)
        })
        .collect();
    let ready = storage_ok && plugins.values().all(|role| role.status == "loaded");
    let report = Readiness {
        status: if ready { "ready" } else { "not_ready" },
        storage: if storage_ok { "ok" } else { "unavailable" },
        plugins,
    };
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let mut response = (status, Json(report)).into_response();
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}
