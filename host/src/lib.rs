//! Herald: a notification platform, SMS first, whose delivery providers and template renderers
//! are sandboxed WebAssembly components.
//!
//! Embed it as a library:
//!
//! ```no_run
//! use herald::{Herald, SendRequest, TenantId};
//!
//! # async fn example() -> Result<(), Box<dyn std::error::Error>> {
//! let config = herald::config::ConfigSource { file: Some("herald.toml".into()), env: true }.load()?;
//! let herald = Herald::builder().config(config).build().await?;
//! let tenant = TenantId::default_tenant();
//! let submitted = herald
//!     .send(&tenant, SendRequest::text("+14155552671".parse()?, "Your order is ready!"))
//!     .await?;
//! let record = herald.message(&tenant, &submitted.message.id).await?;
//! assert_eq!(record.message.status, herald::MessageStatus::Queued);
//! let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
//! let running = tokio::spawn({
//!     let herald = herald.clone();
//!     async move { herald.run(async { let _ = stopped.await; }).await }
//! });
//! // ... serve `herald.router()` inside your own axum application ...
//! let _ = stop.send(());
//! running.await?;
//! # Ok(()) }
//! ```
//!
//! Layout, from the top down (dependencies only point down):
//! - [`Herald`] ([`app`]): build, send, serve, run.
//! - [`api`]: the HTTP API (axum) and its one error shape; [`server`]: serving it (timeouts,
//!   bounded graceful shutdown).
//! - [`pipeline`]: the path of one message, step by step, with no HTTP types.
//! - [`store`]: durable storage and the send queue, on SQLite or PostgreSQL.
//! - [`plugin`]: the WebAssembly plugin runtime (contract bindings, limits, hot reload).
//! - [`segments`]: GSM-7 / UCS-2 encoding and segment counting.
//! - [`keywords`]: STOP / START / HELP in inbound messages.
//! - [`metrics`]: the Prometheus metrics of one Herald (`GET /metrics`).
//! - [`watch`]: the reload triggers (file changes, SIGHUP).
//! - [`config`]: typed configuration (file, then environment).
//! - [`domain`]: the value types every layer shares; [`clock`]: time as a dependency.

pub mod api;
pub mod app;
pub mod clock;
pub mod config;
pub mod domain;
pub mod keywords;
pub mod metrics;
pub mod pipeline;
pub mod plugin;
pub mod segments;
pub mod server;
pub mod store;
pub mod watch;

pub use app::{Herald, HeraldBuilder, StartError};
pub use domain::{Category, ErrorCode, MessageStatus, Money, PhoneNumber, TenantId};
pub use pipeline::{Content, PipelineError, References, SendRequest, Submitted};
