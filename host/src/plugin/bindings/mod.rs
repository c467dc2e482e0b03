//! Host bindings, one module per supported WIT version of `herald:plugin`.
//!
//! `bindgen!` is invoked only inside these modules; each converts its generated types into the
//! version-independent types of [`super::model`] at its edge.

pub mod v0_1_0;

/// The WIT package name every plugin contract version shares.
pub const PACKAGE: &str = "herald:plugin";

/// The contract versions this host can load, oldest first.
pub const SUPPORTED_VERSIONS: &[&str] = &["0.1.0"];
