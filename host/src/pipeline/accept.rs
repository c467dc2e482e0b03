//! Step 1, accept: check a send request field by field and turn it into a [`Draft`], the
//! validated input of the steps that follow. Nothing is stored here.
//!
//! Requests come typed ([`SendRequest`]): the recipient is already a [`PhoneNumber`], the sender
//! a [`Sender`] and the category a [`Category`]. The parsers that callers holding plain text
//! need ([`recipient`], [`sender`], [`category`], [`Content::from_parts`]) live here too, so
//! every entry point refuses the same input with the same [`ErrorCode`].
//!
//! No text may contain a NUL character: PostgreSQL cannot store one, and no SMS needs one. The
//! API refuses it while parsing; [`accept`] refuses it again for embedders.

use std::collections::BTreeMap;

use serde::Serialize;
use sha2::{Digest, Sha256};

use super::error::{ErrorCode, PipelineError, Result};
use crate::domain::{Category, CategoryError, PhoneNumber, Sender, TenantId};
use crate::store::Message;

/// The longest `Idempotency-Key` accepted.
const MAX_IDEMPOTENCY_KEY: usize = 255;
/// The largest `metadata` object accepted, serialized.
const MAX_METADATA_BYTES: usize = 4096;
/// The largest `template_variables` object accepted, serialized: the renderer gets it whole.
pub const MAX_VARIABLES_BYTES: usize = 32 * 1024;
/// The deepest nesting of lists and objects accepted in `template_variables` (the object
/// itself is level 1), enough for sections over lists of records.
pub const MAX_VARIABLES_DEPTH: usize = 8;
/// The longest caller reference (`customer_id`, `order_id`, `reservation_id`) accepted, in
/// bytes.
pub const MAX_REFERENCE: usize = 255;

/// What a caller asks Herald to send: the API's JSON body, or an embedder's call.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SendRequest {
    /// The recipient.
    pub to: PhoneNumber,
    /// The text, or the template to render.
    pub content: Content,
    /// The sender, when not the provider's default.
    pub from: Option<Sender>,
    /// The category; `None` takes the template's, then `transactional`.
    pub category: Option<Category>,
    /// The caller's references.
    pub references: References,
    /// Free-form metadata, stored with the message.
    pub metadata: Option<serde_json::Map<String, serde_json::Value>>,
    /// When to send it, in UTC milliseconds ([`send_at`] parses the API's text); `None` or a
    /// time already past sends it now. Checked against `delivery.max_send_ahead_ms` by
    /// [`check_send_at`].
    // Left out of the request hash when absent, so that hashes of requests without it stay
    // what they were before it existed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub send_at: Option<i64>,
    /// Whether this is one row of a bulk send (a batch, a schedule's fire time), claimed after
    /// single sends (see [`ClaimPriority`](crate::store::ClaimPriority)). Not part of the
    /// request's hash.
    #[serde(skip)]
    pub bulk: bool,
    /// Makes a retried call return the first call's message instead of sending twice.
    #[serde(skip)]
    pub idempotency_key: Option<String>,
}

impl SendRequest {
    /// A request to send `text` to `to`, with nothing else set.
    #[must_use]
    pub fn text(to: PhoneNumber, text: impl Into<String>) -> Self {
        Self::new(to, Content::Text(text.into()))
    }

    /// A request to render the template `template` (its id or name) with `variables` and send it to `to`.
    #[must_use]
    pub fn template(
        to: PhoneNumber,
        template: impl Into<String>,
        variables: impl IntoIterator<Item = (String, serde_json::Value)>,
    ) -> Self {
        Self::new(
            to,
            Content::Template {
                template: template.into(),
                variables: variables.into_iter().collect(),
            },
        )
    }

    fn new(to: PhoneNumber, content: Content) -> Self {
        Self {
            to,
            content,
            from: None,
            category: None,
            references: References::default(),
            metadata: None,
            send_at: None,
            bulk: false,
            idempotency_key: None,
        }
    }
}

/// The body of a message: literal text, or a template with its variables.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Content {
    /// Literal text.
    Text(String),
    /// A stored template, rendered by the tenant's renderer.
    Template {
        /// The template's id or name.
        template: String,
        /// Values for its variables: strings, numbers, booleans, null, and for sections lists
        /// and objects (bounded: [`MAX_VARIABLES_BYTES`], [`MAX_VARIABLES_DEPTH`]).
        variables: BTreeMap<String, serde_json::Value>,
    },
}

impl Content {
    /// The content of a request that names `message` or `template` (not both, not neither);
    /// `variables` only go with a template.
    pub fn from_parts(
        message: Option<String>,
        template: Option<String>,
        variables: BTreeMap<String, serde_json::Value>,
    ) -> Result<Self> {
        match (message, template) {
            (Some(_), Some(_)) => Err(PipelineError::new(
                ErrorCode::AmbiguousBody,
                "send either `message` or `template_id`, not both",
            )),
            (None, None) => Err(PipelineError::new(
                ErrorCode::MissingBody,
                "send `message` or `template_id`",
            )),
            (Some(_), None) if !variables.is_empty() => Err(PipelineError::new(
                ErrorCode::InvalidField,
                "template_variables are only used with template_id",
            )),
            (Some(text), None) => Ok(Self::Text(text)),
            (None, Some(template)) => Ok(Self::Template {
                template,
                variables,
            }),
        }
    }
}

/// The caller's own references, stored with the message for lookups and reports.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct References {
    /// The caller's customer.
    pub customer_id: Option<String>,
    /// The caller's order.
    pub order_id: Option<String>,
    /// The caller's reservation.
    pub reservation_id: Option<String>,
}

/// A request that passed every check of this step.
#[derive(Debug, Clone, PartialEq)]
pub struct Draft {
    /// The tenant sending it.
    pub tenant: TenantId,
    /// The request, checked.
    pub request: SendRequest,
    /// The idempotency key with the hash of the request it came with.
    pub idempotency: Option<Idempotency>,
}

/// An idempotency key and the hash of the request that used it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Idempotency {
    /// The caller's key.
    pub key: String,
    /// SHA-256 of the request (without the key), to tell a retry from a different request.
    pub request_hash: String,
}

/// What a send produced: the message, and whether an earlier call under the same idempotency
/// key had already created it.
#[derive(Debug, Clone, PartialEq)]
pub struct Submitted {
    /// The message, as stored.
    pub message: Message,
    /// `true` when this is an idempotent replay: nothing new was stored or sent.
    pub replayed: bool,
}

/// Parses a recipient number.
pub fn recipient(number: &str) -> Result<PhoneNumber> {
    PhoneNumber::parse(number)
        .map_err(|e| PipelineError::new(ErrorCode::InvalidPhoneNumber, format!("to_number {e}")))
}

/// Parses a sender (`from_number`).
pub fn sender(text: &str) -> Result<Sender> {
    Sender::parse(text)
        .map_err(|e| PipelineError::new(ErrorCode::InvalidSender, format!("from_number: {e}")))
}

/// Parses the category a caller chose for a message.
pub fn category(name: &str) -> Result<Category> {
    Category::for_message(name).map_err(|e| match e {
        CategoryError::Invalid(_) | CategoryError::Reserved(_) => {
            PipelineError::new(ErrorCode::InvalidCategory, e.to_string())
        }
    })
}

/// Parses a `send_at` time: RFC 3339 with its UTC offset (`2026-12-01T09:00:00Z`,
/// `2026-12-01T09:00:00-05:00`), to UTC milliseconds. A time without an offset is refused: which
/// zone it meant is unknowable.
pub fn send_at(text: &str) -> Result<i64> {
    let parsed = time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339)
        .map_err(|_| {
            PipelineError::new(
                ErrorCode::InvalidSendAt,
                "`send_at` must be an RFC 3339 time with its offset, such as \
                 2026-12-01T09:00:00Z or 2026-12-01T09:00:00-05:00",
            )
        })?;
    i64::try_from(parsed.unix_timestamp_nanos() / 1_000_000)
        .map_err(|_| PipelineError::new(ErrorCode::InvalidSendAt, "`send_at` is out of range"))
}

/// Refuses a `send_at` more than `max_ahead_ms` after `now` (`delivery.max_send_ahead_ms`, 35
/// days by default). A time in the past is accepted: the message is sent now.
pub fn check_send_at(send_at: Option<i64>, now: i64, max_ahead_ms: u64) -> Result<()> {
    let limit = now.saturating_add(i64::try_from(max_ahead_ms).unwrap_or(i64::MAX));
    match send_at {
        Some(at) if at > limit => {
            let days = max_ahead_ms as f64 / 86_400_000.0;
            Err(PipelineError::new(
                ErrorCode::InvalidSendAt,
                format!("`send_at` may be at most {days} days ahead"),
            ))
        }
        _ => Ok(()),
    }
}

/// Checks `request` for `tenant`: NUL characters, references, metadata and idempotency key.
pub fn accept(tenant: &TenantId, request: SendRequest) -> Result<Draft> {
    refuse_nul(&request)?;
    for (name, value) in [
        ("customer_id", &request.references.customer_id),
        ("order_id", &request.references.order_id),
        ("reservation_id", &request.references.reservation_id),
    ] {
        if value.as_ref().is_some_and(|v| v.len() > MAX_REFERENCE) {
            return Err(invalid(format!(
                "`{name}` must be at most {MAX_REFERENCE} bytes"
            )));
        }
    }
    if let Content::Template { variables, .. } = &request.content {
        template_variables(variables)?;
    }
    if let Some(metadata) = &request.metadata {
        let size = serde_json::to_vec(metadata).map_or(usize::MAX, |bytes| bytes.len());
        if size > MAX_METADATA_BYTES {
            return Err(invalid(format!(
                "metadata must be at most {MAX_METADATA_BYTES} bytes"
            )));
        }
    }
    let idempotency = match &request.idempotency_key {
        None => None,
        Some(key) => {
            let printable = key.bytes().all(|b| b.is_ascii_graphic() || b == b' ');
            if key.is_empty() || key.len() > MAX_IDEMPOTENCY_KEY || !printable {
                return Err(PipelineError::new(
                    ErrorCode::InvalidIdempotencyKey,
                    format!(
                        "Idempotency-Key must be 1 to {MAX_IDEMPOTENCY_KEY} printable ASCII characters"
                    ),
                ));
            }
            Some(Idempotency {
                key: key.clone(),
                request_hash: request_hash(&request),
            })
        }
    };
    Ok(Draft {
        tenant: tenant.clone(),
        request,
        idempotency,
    })
}

/// Checks the variables of a template render: at most [`MAX_VARIABLES_BYTES`] as JSON and at
/// most [`MAX_VARIABLES_DEPTH`] levels of lists and objects, so no request can hand the renderer
/// more than it should parse.
pub fn template_variables(variables: &BTreeMap<String, serde_json::Value>) -> Result<()> {
    fn depth(value: &serde_json::Value) -> usize {
        match value {
            serde_json::Value::Array(items) => 1 + items.iter().map(depth).max().unwrap_or(0),
            serde_json::Value::Object(map) => 1 + map.values().map(depth).max().unwrap_or(0),
            _ => 0,
        }
    }
    let size = serde_json::to_vec(variables).map_or(usize::MAX, |bytes| bytes.len());
    if size > MAX_VARIABLES_BYTES {
        return Err(PipelineError::new(
            ErrorCode::InvalidTemplateVariable,
            format!("template_variables must be at most {MAX_VARIABLES_BYTES} bytes as JSON"),
        ));
    }
    if 1 + variables.values().map(depth).max().unwrap_or(0) > MAX_VARIABLES_DEPTH {
        return Err(PipelineError::new(
            ErrorCode::InvalidTemplateVariable,
            format!(
                "template_variables may nest lists and objects at most {MAX_VARIABLES_DEPTH} levels deep"
            ),
        ));
    }
    Ok(())
}

/// The SHA-256 of the request's canonical JSON (keys sorted, idempotency key left out), so the
/// same request hashes the same however its JSON was laid out.
fn request_hash(request: &SendRequest) -> String {
    let canonical = serde_json::to_value(request)
        .and_then(|value| serde_json::to_vec(&value))
        .unwrap_or_default();
    hex::encode(Sha256::digest(&canonical))
}

/// Refuses a NUL character in any text of `request` (the sender and recipient are already
/// validated and cannot hold one).
fn refuse_nul(request: &SendRequest) -> Result<()> {
    let nul_in = |name: &str, text: &str| {
        if text.contains('\0') {
            Err(invalid(format!("`{name}` contains a NUL character")))
        } else {
            Ok(())
        }
    };
    match &request.content {
        Content::Text(text) => nul_in("message", text)?,
        Content::Template {
            template,
            variables,
        } => {
            nul_in("template_id", template)?;
            for (name, value) in variables {
                nul_in("template_variables", name)?;
                if json_has_nul(value) {
                    return Err(invalid(format!(
                        "template variable `{}` contains a NUL character",
                        name.chars().take(64).collect::<String>()
                    )));
                }
            }
        }
    }
    for (name, value) in [
        ("customer_id", &request.references.customer_id),
        ("order_id", &request.references.order_id),
        ("reservation_id", &request.references.reservation_id),
    ] {
        nul_in(name, value.as_deref().unwrap_or_default())?;
    }
    if let Some(metadata) = &request.metadata
        && metadata
            .iter()
            .any(|(k, v)| k.contains('\0') || json_has_nul(v))
    {
        return Err(invalid("`metadata` contains a NUL character".into()));
    }
    Ok(())
}

/// Whether any string or key in `value` holds a NUL character.
fn json_has_nul(value: &serde_json::Value) -> bool {
    match value {
        serde_json::Value::String(s) => s.contains('\0'),
        serde_json::Value::Array(items) => items.iter().any(json_has_nul),
        serde_json::Value::Object(map) => {
            map.iter().any(|(k, v)| k.contains('\0') || json_has_nul(v))
        }
        _ => false,
    }
}

fn invalid(message: String) -> PipelineError {
    PipelineError::new(ErrorCode::InvalidField, message)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request() -> SendRequest {
        SendRequest::text(recipient("+14155552671").unwrap(), "hello")
    }

    /// The same request hashes the same; a different body hashes differently.
    #[test]
    fn request_hash_is_canonical() {
        let mut a = request();
        a.idempotency_key = Some("k1".into());
        let mut b = request();
        b.idempotency_key = Some("k2".into());
        assert_eq!(request_hash(&a), request_hash(&b));
        let c = SendRequest::text(recipient("+14155552671").unwrap(), "other");
        assert_ne!(request_hash(&a), request_hash(&c));
    }

    /// Message and template are exclusive, one is required, variables need a template.
    #[test]
    fn content_from_parts() {
        let none = BTreeMap::new();
        let code = |r: Result<Content>| r.unwrap_err().code;
        assert_eq!(
            code(Content::from_parts(
                Some("a".into()),
                Some("t".into()),
                none.clone()
            )),
            ErrorCode::AmbiguousBody
        );
        assert_eq!(
            code(Content::from_parts(None, None, none.clone())),
            ErrorCode::MissingBody
        );
        let vars = BTreeMap::from([("x".to_string(), serde_json::json!(1))]);
        assert_eq!(
            code(Content::from_parts(Some("a".into()), None, vars)),
            ErrorCode::InvalidField
        );
        assert_eq!(
            Content::from_parts(Some("a".into()), None, none),
            Ok(Content::Text("a".into()))
        );
    }

    /// Oversized fields and malformed keys are refused with their codes.
    #[test]
    fn accept_checks_fields() {
        let tenant = TenantId::default_tenant();
        assert_eq!(
            sender("x".repeat(12).as_str()).unwrap_err().code,
            ErrorCode::InvalidSender
        );
        assert_eq!(sender("ACME").unwrap().as_str(), "ACME");
        let mut long_reference = request();
        long_reference.references.order_id = Some("x".repeat(MAX_REFERENCE + 1));
        assert_eq!(
            accept(&tenant, long_reference).unwrap_err().code,
            ErrorCode::InvalidField
        );
        let mut bad_key = request();
        bad_key.idempotency_key = Some("line\nbreak".into());
        assert_eq!(
            accept(&tenant, bad_key).unwrap_err().code,
            ErrorCode::InvalidIdempotencyKey
        );
        let mut keyed = request();
        keyed.idempotency_key = Some("abc".into());
        let draft = accept(&tenant, keyed).unwrap();
        assert_eq!(draft.idempotency.unwrap().key, "abc");
        assert_eq!(
            recipient("+12").unwrap_err().code,
            ErrorCode::InvalidPhoneNumber
        );
        assert_eq!(
            category("all").unwrap_err().code,
            ErrorCode::InvalidCategory
        );
    }

    /// `send_at` needs an offset; it may be in the past, not beyond the horizon.
    #[test]
    fn send_at_needs_an_offset_and_a_horizon() {
        assert_eq!(send_at("1970-01-01T00:00:01Z").unwrap(), 1_000);
        assert_eq!(send_at("1970-01-01T01:00:00+01:00").unwrap(), 0);
        for bad in ["2026-12-01T09:00:00", "2026-12-01", "tomorrow", ""] {
            assert_eq!(
                send_at(bad).unwrap_err().code,
                ErrorCode::InvalidSendAt,
                "{bad}"
            );
        }
        let (day, horizon) = (86_400_000_i64, 86_400_000_u64);
        assert!(check_send_at(None, 0, horizon).is_ok());
        assert!(check_send_at(Some(-5 * day), 0, horizon).is_ok());
        assert!(check_send_at(Some(day), 0, horizon).is_ok());
        let refused = check_send_at(Some(day + 1), 0, horizon).unwrap_err();
        assert_eq!(refused.code, ErrorCode::InvalidSendAt);
        assert!(refused.message.contains("1 days"), "{}", refused.message);
    }

    /// A NUL character anywhere in an embedder's request is refused, naming where it is.
    #[test]
    fn nul_is_refused_everywhere() {
        let tenant = TenantId::default_tenant();
        let to = || recipient("+14155552671").unwrap();
        let mut requests = vec![SendRequest::text(to(), "a\0b")];
        requests.push(SendRequest::template(to(), "tpl\0", std::iter::empty()));
        requests.push(SendRequest::template(
            to(),
            "tpl",
            [("name".to_string(), serde_json::json!("x\u{0}"))],
        ));
        requests.push(SendRequest::template(
            to(),
            "tpl",
            [("na\0me".to_string(), serde_json::json!("x"))],
        ));
        let mut reference = request();
        reference.references.customer_id = Some("c\0".into());
        requests.push(reference);
        let mut metadata = request();
        metadata.metadata = serde_json::json!({"deep": [{"k": "v\u{0}"}]})
            .as_object()
            .cloned();
        requests.push(metadata);
        for request in requests {
            let refused = accept(&tenant, request.clone()).unwrap_err();
            assert_eq!(refused.code, ErrorCode::InvalidField, "{request:?}");
            assert!(refused.message.contains("NUL"), "{}", refused.message);
        }
        assert!(accept(&tenant, request()).is_ok());
    }
}
