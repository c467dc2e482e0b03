//! The one list of error codes Herald answers with: stable identifiers a client can branch on.
//!
//! Every error the API returns, whatever layer it comes from, carries one of these codes; the
//! HTTP layer maps each to its status (an exhaustive `match`, so a new code cannot go without
//! one). The README lists them all.

use serde::Serialize;

/// A stable, machine-readable error code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    // 400: the request could not be read.
    /// The body is not valid JSON.
    MalformedJson,
    /// The request is malformed in some other way.
    BadRequest,
    /// A provider webhook's payload could not be parsed.
    MalformedWebhook,

    // 401 and 403: who is asking.
    /// No API key, or one Herald does not know.
    Unauthorized,
    /// A provider webhook's signature did not verify.
    InvalidSignature,
    /// Admin routes are disabled: no admin key is configured.
    AdminDisabled,
    /// The tenant is suspended: it may not send.
    TenantSuspended,

    // 404: no such thing.
    /// No such route.
    NotFound,
    /// No such message for this tenant.
    MessageNotFound,
    /// No such template for this tenant.
    TemplateNotFound,
    /// The template has no version of that number.
    TemplateVersionNotFound,
    /// No provider plugin of that name handles webhooks.
    UnknownProvider,
    /// No such tenant.
    TenantNotFound,
    /// No such API key for this tenant.
    ApiKeyNotFound,
    /// No such recurring schedule for this tenant.
    ScheduleNotFound,
    /// No such bulk batch for this tenant.
    BatchNotFound,

    /// 402: a hard-capped budget has no room for the message's estimate in this period (or the
    /// message has no estimate, or one in another currency, to charge it with).
    BudgetExceeded,

    /// 405: the route exists but not with that method.
    MethodNotAllowed,

    // 409: conflicts with what is stored.
    /// The recipient opted out of the message's category.
    RecipientOptedOut,
    /// The `Idempotency-Key` was used before with a different request.
    IdempotencyConflict,
    /// The tenant already has a template of that name.
    TemplateExists,
    /// The template is deleted: its history can be read, but it can no longer be sent from,
    /// previewed or changed.
    TemplateDeleted,
    /// A phone number in a tenant's settings belongs to another tenant.
    NumberTaken,
    /// The message was already claimed for sending (or is past it): it can no longer be
    /// canceled.
    NotCancelable,
    /// The batch is not a draft any more: it cannot take recipients or be sent again.
    BatchNotDraft,
    /// A bulk row names a number the batch already sends to (and duplicates are not allowed).
    DuplicateRecipient,

    // 408, 413, 414, 415, 431: limits and formats.
    /// The body is larger than `server.max_body_bytes`.
    PayloadTooLarge,
    /// A `/send-bulk` request lists more than 100,000 recipients.
    TooManyRecipients,
    /// The URL is too long.
    UriTooLong,
    /// The body is not JSON (`Content-Type` is wrong).
    UnsupportedMediaType,
    /// The request's headers are too large.
    HeadersTooLarge,
    /// 408: the client did not send the whole request body within `server.body_read_timeout_ms`.
    RequestTimeout,

    // 422: well-formed, but a value is not acceptable.
    /// A field has a wrong type or value.
    InvalidField,
    /// The recipient is not a valid E.164 phone number.
    InvalidPhoneNumber,
    /// `from_number` is neither an E.164 number, a short code nor an alphanumeric sender ID.
    InvalidSender,
    /// The category is malformed or reserved.
    InvalidCategory,
    /// The `Idempotency-Key` header is malformed.
    InvalidIdempotencyKey,
    /// The message body is empty (or only whitespace).
    EmptyMessage,
    /// The message body is longer than 1,600 characters.
    MessageTooLong,
    /// Neither `message` nor `template_id` was given.
    MissingBody,
    /// Both `message` and `template_id` were given.
    AmbiguousBody,
    /// `template_id` names no template of this tenant.
    UnknownTemplate,
    /// The template is deactivated.
    InactiveTemplate,
    /// The template needs a variable the request did not give.
    MissingTemplateVariable,
    /// A template variable's value cannot be used: too large or too deeply nested, or a list or
    /// an object for a renderer that takes text only.
    InvalidTemplateVariable,
    /// The renderer refused the template.
    InvalidTemplate,
    /// `template_body` is empty.
    EmptyTemplate,
    /// `template_body` is longer than 1,600 characters.
    TemplateTooLong,
    /// A query parameter is invalid.
    InvalidQuery,
    /// `send_at` is not an RFC 3339 time with an offset, or is too far ahead.
    InvalidSendAt,
    /// A schedule's `cron` expression does not parse, or never fires.
    InvalidCron,
    /// A schedule's `timezone` is not an IANA time zone name.
    InvalidTimezone,
    /// A CSV upload (an opt-out import) whose header or a row is not readable CSV of the
    /// expected columns.
    InvalidCsv,
    /// A batch to send now has no recipients.
    EmptyBatch,
    /// A line of an uploaded recipient list is not valid NDJSON or CSV.
    MalformedLine,
    /// A reloaded configuration is invalid; the old one keeps serving.
    InvalidConfiguration,
    /// A budget's name, period, limit, currency, category or thresholds are not acceptable.
    InvalidBudget,

    // 503: a dependency is not available right now.
    /// No renderer plugin is loaded, or it failed.
    RendererUnavailable,
    /// No provider plugin is loaded, or it failed.
    ProviderUnavailable,
    /// The database cannot be reached or cannot write right now (down, unreachable, full).
    StorageUnavailable,
    /// Every instance a plugin may use is busy: try again after `Retry-After`.
    PluginBusy,

    /// 500: a fault inside Herald; the detail is logged, never answered.
    Internal,
}

impl ErrorCode {
    /// Every code, in the order above.
    pub const ALL: [Self; 62] = [
        Self::MalformedJson,
        Self::BadRequest,
        Self::MalformedWebhook,
        Self::Unauthorized,
        Self::InvalidSignature,
        Self::AdminDisabled,
        Self::TenantSuspended,
        Self::NotFound,
        Self::MessageNotFound,
        Self::TemplateNotFound,
        Self::TemplateVersionNotFound,
        Self::UnknownProvider,
        Self::TenantNotFound,
        Self::ApiKeyNotFound,
        Self::ScheduleNotFound,
        Self::BatchNotFound,
        Self::BudgetExceeded,
        Self::MethodNotAllowed,
        Self::RecipientOptedOut,
        Self::IdempotencyConflict,
        Self::TemplateExists,
        Self::TemplateDeleted,
        Self::NumberTaken,
        Self::NotCancelable,
        Self::BatchNotDraft,
        Self::DuplicateRecipient,
        Self::PayloadTooLarge,
        Self::TooManyRecipients,
        Self::UriTooLong,
        Self::UnsupportedMediaType,
        Self::HeadersTooLarge,
        Self::RequestTimeout,
        Self::InvalidField,
        Self::InvalidPhoneNumber,
        Self::InvalidSender,
        Self::InvalidCategory,
        Self::InvalidIdempotencyKey,
        Self::EmptyMessage,
        Self::MessageTooLong,
        Self::MissingBody,
        Self::AmbiguousBody,
        Self::UnknownTemplate,
        Self::InactiveTemplate,
        Self::MissingTemplateVariable,
        Self::InvalidTemplateVariable,
        Self::InvalidTemplate,
        Self::EmptyTemplate,
        Self::TemplateTooLong,
        Self::InvalidQuery,
        Self::InvalidSendAt,
        Self::InvalidCron,
        Self::InvalidTimezone,
        Self::InvalidCsv,
        Self::EmptyBatch,
        Self::MalformedLine,
        Self::InvalidConfiguration,
        Self::InvalidBudget,
        Self::RendererUnavailable,
        Self::ProviderUnavailable,
        Self::StorageUnavailable,
        Self::PluginBusy,
        Self::Internal,
    ];

    /// The code's snake_case name, as answered.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::MalformedJson => "malformed_json",
            Self::BadRequest => "bad_request",
            Self::MalformedWebhook => "malformed_webhook",
            Self::Unauthorized => "unauthorized",
            Self::InvalidSignature => "invalid_signature",
            Self::AdminDisabled => "admin_disabled",
            Self::TenantSuspended => "tenant_suspended",
            Self::NotFound => "not_found",
            Self::MessageNotFound => "message_not_found",
            Self::TemplateNotFound => "template_not_found",
            Self::TemplateVersionNotFound => "template_version_not_found",
            Self::UnknownProvider => "unknown_provider",
            Self::TenantNotFound => "tenant_not_found",
            Self::ApiKeyNotFound => "api_key_not_found",
            Self::ScheduleNotFound => "schedule_not_found",
            Self::BatchNotFound => "batch_not_found",
            Self::BudgetExceeded => "budget_exceeded",
            Self::MethodNotAllowed => "method_not_allowed",
            Self::RecipientOptedOut => "recipient_opted_out",
            Self::IdempotencyConflict => "idempotency_conflict",
            Self::TemplateExists => "template_exists",
            Self::TemplateDeleted => "template_deleted",
            Self::NumberTaken => "number_taken",
            Self::NotCancelable => "not_cancelable",
            Self::BatchNotDraft => "batch_not_draft",
            Self::DuplicateRecipient => "duplicate_recipient",
            Self::PayloadTooLarge => "payload_too_large",
            Self::TooManyRecipients => "too_many_recipients",
            Self::UriTooLong => "uri_too_long",
            Self::UnsupportedMediaType => "unsupported_media_type",
            Self::HeadersTooLarge => "headers_too_large",
            Self::RequestTimeout => "request_timeout",
            Self::InvalidField => "invalid_field",
            Self::InvalidPhoneNumber => "invalid_phone_number",
            Self::InvalidSender => "invalid_sender",
            Self::InvalidCategory => "invalid_category",
            Self::InvalidIdempotencyKey => "invalid_idempotency_key",
            Self::EmptyMessage => "empty_message",
            Self::MessageTooLong => "message_too_long",
            Self::MissingBody => "missing_body",
            Self::AmbiguousBody => "ambiguous_body",
            Self::UnknownTemplate => "unknown_template",
            Self::InactiveTemplate => "inactive_template",
            Self::MissingTemplateVariable => "missing_template_variable",
            Self::InvalidTemplateVariable => "invalid_template_variable",
            Self::InvalidTemplate => "invalid_template",
            Self::EmptyTemplate => "empty_template",
            Self::TemplateTooLong => "template_too_long",
            Self::InvalidQuery => "invalid_query",
            Self::InvalidSendAt => "invalid_send_at",
            Self::InvalidCron => "invalid_cron",
            Self::InvalidTimezone => "invalid_timezone",
            Self::InvalidCsv => "invalid_csv",
            Self::EmptyBatch => "empty_batch",
            Self::MalformedLine => "malformed_line",
            Self::InvalidConfiguration => "invalid_configuration",
            Self::InvalidBudget => "invalid_budget",
            Self::RendererUnavailable => "renderer_unavailable",
            Self::ProviderUnavailable => "provider_unavailable",
            Self::StorageUnavailable => "storage_unavailable",
            Self::PluginBusy => "plugin_busy",
            Self::Internal => "internal",
        }
    }
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The name a code answers with is the name serde gives it, and names are unique.
    #[test]
    fn names_match_serde_and_are_unique() {
        let mut seen = std::collections::BTreeSet::new();
        for code in ErrorCode::ALL {
            let serde = serde_json::to_value(code).unwrap();
            assert_eq!(serde, serde_json::Value::String(code.as_str().into()));
            assert!(seen.insert(code.as_str()), "{code} twice");
        }
    }
}
