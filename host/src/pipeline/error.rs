//! The pipeline's one error type: a stable [`ErrorCode`] and a message for people.
//!
//! Errors caused by the caller (bad input, an unknown template, an opted-out recipient) carry a
//! code that says so; a fault inside Herald is [`ErrorCode::Internal`], whose detail is logged
//! where it happens and never shown to the caller. Storage that is out of reach or full is
//! [`ErrorCode::StorageUnavailable`]: not a fault, logged as a warning.

pub use crate::domain::ErrorCode;

/// Why the pipeline refused or could not finish a step.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{code}: {message}")]
pub struct PipelineError {
    /// The stable code.
    pub code: ErrorCode,
    /// What happened, for people.
    pub message: String,
}

/// Result alias for pipeline steps.
pub type Result<T, E = PipelineError> = std::result::Result<T, E>;

impl PipelineError {
    /// An error with `code` and `message`.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
        }
    }

    /// A fault inside Herald: logs `detail` and returns an error that does not reveal it.
    pub fn internal(detail: impl std::fmt::Display) -> Self {
        tracing::error!(error = %detail, "internal error");
        Self::new(
            ErrorCode::Internal,
            "an internal error occurred; it has been logged",
        )
    }
}

impl PipelineError {
    /// A plugin call that produced no result: [`ErrorCode::PluginBusy`] when the plugin had no
    /// instance free (back-pressure, the caller may retry), `otherwise` when it failed.
    pub fn plugin(failure: &crate::plugin::CallFailure, otherwise: ErrorCode) -> Self {
        let code = if failure.kind == crate::plugin::FailureKind::Busy {
            ErrorCode::PluginBusy
        } else {
            otherwise
        };
        Self::new(code, failure.to_string())
    }
}

impl From<crate::store::StoreError> for PipelineError {
    fn from(error: crate::store::StoreError) -> Self {
        if let crate::store::StoreError::BudgetExceeded { budget } = &error {
            return Self::new(
                ErrorCode::BudgetExceeded,
                format!("budget `{budget}` has no room for this message's estimate in this period"),
            );
        }
        if error.is_unavailable() {
            // The database's state, not a fault in Herald: the caller may retry.
            tracing::warn!(%error, "storage unavailable");
            return Self::new(
                ErrorCode::StorageUnavailable,
                "storage is unavailable right now; retry later",
            );
        }
        Self::internal(error)
    }
}
