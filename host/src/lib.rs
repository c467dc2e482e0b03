//! Herald: a notification platform, SMS first, whose delivery providers and template renderers
//! are sandboxed WebAssembly components.
//!
//! Layout:
//! - [`app`]: start and serve Herald as a library.
//! - [`api`]: the HTTP API and its one error shape.
//! - [`config`]: typed configuration (file, then environment).
//! - [`dispatch`]: the workers that deliver queued messages through the provider plugin.
//! - [`keywords`]: STOP / START / HELP in inbound messages.
//! - [`phone`]: E.164 validation.
//! - [`plugin`]: the WebAssembly plugin runtime (contract bindings, limits, hot reload).
//! - [`segments`]: GSM-7 / UCS-2 encoding and segment counting.
//! - [`store`]: durable storage and the send queue, on SQLite or PostgreSQL.

pub mod api;
pub mod app;
pub mod config;
pub mod dispatch;
pub mod keywords;
pub mod phone;
pub mod plugin;
pub mod segments;
pub mod store;

pub use app::{AppState, serve};
