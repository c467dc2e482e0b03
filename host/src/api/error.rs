//! The one error shape of the HTTP API: `{"error": {"code": "...", "message": "..."}}`.
//!
//! Codes are the stable [`ErrorCode`]s clients can branch on; messages are for humans. Each code
//! has exactly one HTTP status ([`status_of`]). Internal errors are logged with their detail
//! where they happen and answered with a generic message, never leaked.

use axum::Json;
use axum::extract::rejection::{BytesRejection, JsonRejection, QueryRejection};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::domain::ErrorCode;
use crate::pipeline::PipelineError;

/// An error answered to an API client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    /// Stable machine-readable code; it decides the HTTP status.
    pub code: ErrorCode,
    /// Human-readable explanation.
    pub message: String,
}

/// Result alias for handlers.
pub type ApiResult<T> = Result<T, ApiError>;

impl ApiError {
    /// An error with `code` and `message`.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
        }
    }

    /// The HTTP status this error is answered with.
    #[must_use]
    pub fn status(&self) -> StatusCode {
        status_of(self.code)
    }
}

/// The HTTP status of each error code.
#[must_use]
pub fn status_of(code: ErrorCode) -> StatusCode {
    use ErrorCode as C;
    match code {
        C::MalformedJson | C::BadRequest | C::MalformedWebhook => StatusCode::BAD_REQUEST,
        C::Unauthorized => StatusCode::UNAUTHORIZED,
        C::InvalidSignature | C::AdminDisabled | C::TenantSuspended => StatusCode::FORBIDDEN,
        C::NotFound
        | C::MessageNotFound
        | C::TemplateNotFound
        | C::TemplateVersionNotFound
        | C::UnknownProvider
        | C::TenantNotFound
        | C::ApiKeyNotFound
        | C::ScheduleNotFound
        | C::BatchNotFound => StatusCode::NOT_FOUND,
        C::BudgetExceeded => StatusCode::PAYMENT_REQUIRED,
        C::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
        C::RecipientOptedOut
        | C::IdempotencyConflict
        | C::TemplateExists
        | C::TemplateDeleted
        | C::NumberTaken
        | C::NotCancelable
        | C::BatchNotDraft
        | C::DuplicateRecipient => StatusCode::CONFLICT,
        C::PayloadTooLarge | C::TooManyRecipients => StatusCode::PAYLOAD_TOO_LARGE,
        C::UriTooLong => StatusCode::URI_TOO_LONG,
        C::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
        C::HeadersTooLarge => StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
        C::RequestTimeout => StatusCode::REQUEST_TIMEOUT,
        C::InvalidField
        | C::InvalidPhoneNumber
        | C::InvalidSender
        | C::InvalidCategory
        | C::InvalidIdempotencyKey
        | C::EmptyMessage
        | C::MessageTooLong
        | C::MissingBody
        | C::AmbiguousBody
        | C::UnknownTemplate
        | C::InactiveTemplate
        | C::MissingTemplateVariable
        | C::InvalidTemplateVariable
        | C::InvalidTemplate
        | C::EmptyTemplate
        | C::TemplateTooLong
        | C::InvalidQuery
        | C::InvalidSendAt
        | C::InvalidCron
        | C::InvalidTimezone
        | C::InvalidCsv
        | C::InvalidConfiguration
        | C::InvalidBudget
        | C::EmptyBatch
        | C::MalformedLine => StatusCode::UNPROCESSABLE_ENTITY,
        C::RendererUnavailable | C::ProviderUnavailable | C::StorageUnavailable | C::PluginBusy => {
            StatusCode::SERVICE_UNAVAILABLE
        }
        C::Internal => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        let body = json!({ "error": { "code": self.code, "message": self.message } });
        let mut response = (status, Json(body)).into_response();
        let headers = response.headers_mut();
        match status {
            StatusCode::UNAUTHORIZED => {
                headers.insert(
                    header::WWW_AUTHENTICATE,
                    HeaderValue::from_static("Bearer realm=\"herald\""),
                );
            }
            StatusCode::SERVICE_UNAVAILABLE => {
                headers.insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
            }
            // The rest of the body may still be on its way; the connection cannot be reused.
            StatusCode::REQUEST_TIMEOUT => {
                headers.insert(header::CONNECTION, HeaderValue::from_static("close"));
            }
            _ => {}
        }
        response
    }
}

impl From<PipelineError> for ApiError {
    fn from(error: PipelineError) -> Self {
        Self::new(error.code, error.message)
    }
}

impl From<JsonRejection> for ApiError {
    fn from(r: JsonRejection) -> Self {
        match r {
            JsonRejection::JsonDataError(e) => Self::new(ErrorCode::InvalidField, e.body_text()),
            JsonRejection::JsonSyntaxError(e) => Self::new(ErrorCode::MalformedJson, e.body_text()),
            JsonRejection::MissingJsonContentType(_) => Self::new(
                ErrorCode::UnsupportedMediaType,
                "expected Content-Type: application/json",
            ),
            JsonRejection::BytesRejection(e) => e.into(),
            other => Self::new(ErrorCode::BadRequest, other.body_text()),
        }
    }
}

impl From<BytesRejection> for ApiError {
    fn from(r: BytesRejection) -> Self {
        if r.status() == StatusCode::PAYLOAD_TOO_LARGE {
            Self::new(ErrorCode::PayloadTooLarge, "the request body is too large")
        } else {
            Self::new(ErrorCode::BadRequest, r.body_text())
        }
    }
}

impl From<QueryRejection> for ApiError {
    fn from(r: QueryRejection) -> Self {
        Self::new(ErrorCode::InvalidQuery, r.body_text())
    }
}

/// Answers unknown routes with the same shape.
pub async fn not_found() -> ApiError {
    ApiError::new(ErrorCode::NotFound, "no such endpoint")
}

/// Answers a known route called with the wrong method with the same shape.
pub async fn method_not_allowed() -> ApiError {
    ApiError::new(
        ErrorCode::MethodNotAllowed,
        "this endpoint does not accept that method",
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The README's error table lists every code, in the row of its status.
    #[test]
    fn readme_lists_every_code_under_its_status() {
        let readme = include_str!("../../../README.md");
        for code in ErrorCode::ALL {
            let row = format!("| {} |", status_of(code).as_u16());
            let listed = readme
                .lines()
                .filter(|line| line.starts_with(&row))
                .any(|line| line.contains(&format!("`{code}`")));
            assert!(listed, "README: `{code}` is missing from the {row} row");
        }
    }

    /// Every code has a status in the range its meaning implies.
    #[test]
    fn every_code_has_a_status() {
        for code in ErrorCode::ALL {
            let status = status_of(code);
            let expected_server_side = matches!(
                code,
                ErrorCode::Internal
                    | ErrorCode::RendererUnavailable
                    | ErrorCode::ProviderUnavailable
                    | ErrorCode::StorageUnavailable
                    | ErrorCode::PluginBusy
            );
            assert_eq!(status.is_server_error(), expected_server_side, "{code}");
            assert!(
                status.is_client_error() || status.is_server_error(),
                "{code}"
            );
        }
    }
}
