//! The plugin contract in the host's own terms, independent of any WIT version.
//!
//! Versioned bindings convert to and from these types at their edge, so the rest of Herald never
//! sees generated code.

use serde::Serialize;

/// Which role a plugin's component can serve, read from its exports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum PluginKind {
    /// Exports the provider interface: sends messages, reads webhooks.
    Provider,
    /// Exports the renderer interface: validates and renders templates.
    Renderer,
}

/// A setting a plugin reads.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ConfigKey {
    /// The key.
    pub name: String,
    /// One sentence for operators.
    pub description: String,
    /// Whether the plugin cannot work without it.
    pub required: bool,
    /// Whether the value is a secret.
    pub secret: bool,
}

/// What a plugin says about itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PluginInfo {
    /// Short stable name.
    pub name: String,
    /// The plugin's version.
    pub version: String,
    /// One sentence for operators.
    pub description: String,
    /// Settings it reads.
    pub config_keys: Vec<ConfigKey>,
    /// Hosts it expects to call by default.
    pub outbound_hosts: Vec<String>,
}

/// Money in millionths of a unit.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Money {
    /// Millionths of one unit.
    pub micros: i64,
    /// ISO 4217 code.
    pub currency: String,
}

/// The encoding the host computed for a body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    /// GSM 03.38 7-bit.
    Gsm7,
    /// UCS-2.
    Ucs2,
}

/// Who a message is sent from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Sender {
    /// A number, short code or alphanumeric ID.
    From(String),
    /// A provider-side sender pool.
    Pool(String),
}

/// One message handed to a provider plugin.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboundMessage {
    /// Host message id, stable across attempts.
    pub message_id: String,
    /// Recipient, E.164.
    pub to: String,
    /// Sender, or the plugin's default.
    pub sender: Option<Sender>,
    /// The text.
    pub body: String,
    /// Encoding computed by the host.
    pub encoding: Encoding,
    /// Segments computed by the host.
    pub segments: u32,
    /// Status callback URL.
    pub status_callback: Option<String>,
    /// Attempt number, from 1.
    pub attempt: u32,
}

/// A provider's explanation of an error.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ProviderError {
    /// The provider's code, e.g. `21211`.
    pub code: Option<String>,
    /// What happened.
    pub message: String,
}

/// The provider accepted a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Accepted {
    /// The provider's id for it.
    pub provider_message_id: String,
    /// The provider's status word.
    pub provider_status: String,
    /// Segments reported by the provider.
    pub segments: Option<u32>,
    /// Price reported by the provider.
    pub price: Option<Money>,
    /// The number or sender id the provider sent from, when it says (contract 0.2.0 and later).
    pub sender: Option<String>,
}

/// How one send attempt ended, classified so the host knows what is safe to do next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SendOutcome {
    /// Accepted by the provider.
    Accepted(Accepted),
    /// Not accepted; a later attempt may succeed.
    Retryable {
        /// Why.
        error: ProviderError,
        /// The provider's delay hint.
        retry_after_ms: Option<u64>,
    },
    /// Definitively not accepted; another provider may be tried.
    Refused(ProviderError),
    /// May have reached the provider: never resend blindly.
    Unknown(ProviderError),
    /// The recipient opted out at the provider.
    OptedOut(ProviderError),
    /// The recipient is not a valid number.
    InvalidRecipient(ProviderError),
    /// Set by the host, never by a plugin: every instance the plugin may use was busy, so the
    /// plugin was not called. Back-pressure: try again soon, without counting an attempt.
    Busy(ProviderError),
}

/// A message state reported by a provider.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DeliveryState {
    /// Accepted by the provider.
    Queued,
    /// Being handed to the carrier.
    Sending,
    /// Accepted by the carrier.
    Sent,
    /// Delivered (final).
    Delivered,
    /// Not delivered (final).
    Undelivered,
    /// Could not be sent (final).
    Failed,
    /// Canceled (final).
    Canceled,
    /// Read by the recipient.
    Read,
}

/// A status callback about one message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusUpdate {
    /// The provider's message id.
    pub provider_message_id: String,
    /// The reported state.
    pub state: DeliveryState,
    /// The provider's status word.
    pub provider_status: String,
    /// The provider's error, for failures.
    pub error: Option<ProviderError>,
    /// Segments, when reported.
    pub segments: Option<u32>,
    /// Price, when reported.
    pub price: Option<Money>,
    /// The number or sender id the message went out from, when reported (contract 0.2.0 and
    /// later).
    pub sender: Option<String>,
}

/// What a provider answered when asked for a message's current status (`fetch-status`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FetchOutcome {
    /// The message's status as the provider reports it now.
    Status(StatusUpdate),
    /// No status now; asking later may succeed.
    Retryable {
        /// Why.
        error: ProviderError,
        /// The provider's delay hint.
        retry_after_ms: Option<u64>,
    },
    /// The provider will never report a status for this id: asking again cannot help.
    Permanent(ProviderError),
    /// The plugin cannot be asked: its contract (0.1.0) has no `fetch-status`, or it is not a
    /// provider.
    Unsupported,
}

/// A message received from a recipient.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InboundMessage {
    /// The provider's id.
    pub provider_message_id: String,
    /// The sender.
    pub from: String,
    /// Our number that received it.
    pub to: String,
    /// The text.
    pub body: String,
    /// Segments, when reported.
    pub segments: Option<u32>,
}

/// One event read from a webhook.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WebhookEvent {
    /// A status callback.
    Status(StatusUpdate),
    /// An inbound message.
    Inbound(InboundMessage),
}

/// An HTTP request received by the host, handed to a plugin to verify and parse.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebhookRequest {
    /// Upper-case method.
    pub method: String,
    /// The public URL the provider called, query included.
    pub url: String,
    /// Headers as received.
    pub headers: Vec<(String, String)>,
    /// Raw body.
    pub body: Vec<u8>,
}

/// Why a webhook was rejected by the plugin.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WebhookRejection {
    /// No signature.
    #[error("the request is not signed")]
    Unsigned,
    /// The signature does not match.
    #[error("the signature does not match")]
    BadSignature,
    /// Not a request this provider sends.
    #[error("malformed webhook: {0}")]
    Malformed(String),
}

/// A place in a template.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Position {
    /// Line, from 1.
    pub line: u32,
    /// Column, from 1.
    pub column: u32,
}

/// Why a template is invalid.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, thiserror::Error)]
#[error("{message}")]
pub struct TemplateError {
    /// What is wrong.
    pub message: String,
    /// Where.
    pub position: Option<Position>,
}

/// Why rendering failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RenderError {
    /// A variable was not supplied.
    #[error("missing template variable `{0}`")]
    MissingVariable(String),
    /// The template is invalid.
    #[error("invalid template: {0}")]
    InvalidTemplate(TemplateError),
    /// The renderer's contract cannot carry this variable's value: a list or an object given to
    /// a 0.1.0 renderer, which takes text only. Said by the host, never by a plugin.
    #[error("template variable `{0}` must be a string, number, boolean or null for this renderer")]
    UnsupportedValue(String),
}

/// The variables of one render: names to JSON values (strings, numbers, booleans, null, and
/// for sections lists and objects), bounded by the caller.
pub type Variables = std::collections::BTreeMap<String, serde_json::Value>;

/// What a render does with a variable the template prints and the data does not have.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MissingVariables {
    /// Fail with [`RenderError::MissingVariable`]: messages are never sent with a hole in them.
    Refuse,
    /// Print nothing there and list the variable in [`RenderedText::missing`] (previews).
    Report,
}

/// A rendered text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RenderedText {
    /// The text.
    pub text: String,
    /// The variables printed without a value, in first-use order (with
    /// [`MissingVariables::Report`] only).
    pub missing: Vec<String>,
}

/// An HTTP request a provider plugin asks the host to perform.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpRequest {
    /// Upper-case method.
    pub method: String,
    /// Absolute URL, query included.
    pub url: String,
    /// Headers, in the plugin's order.
    pub headers: Vec<(String, String)>,
    /// Raw body.
    pub body: Vec<u8>,
}

/// The response to an [`HttpRequest`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpResponse {
    /// Status code.
    pub status: u16,
    /// Header names (lower case) and values.
    pub headers: Vec<(String, String)>,
    /// Raw body, within the host's size cap.
    pub body: Vec<u8>,
}

/// Why the host's outbound HTTP produced no response, split by whether the server can have seen
/// the request: that decides whether a retry or a failover is safe.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HttpError {
    /// Nothing left the host.
    #[error("not sent: {0}")]
    NotSent(NotSent),
    /// The request may have reached the server.
    #[error("may have been sent: {0}")]
    MaybeSent(MaybeSent),
}

/// Why the host sent nothing.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NotSent {
    /// The request's host is not granted to the plugin.
    #[error("denied: {0}")]
    Denied(String),
    /// The URL, method or a header could not be used.
    #[error("invalid request: {0}")]
    InvalidRequest(String),
    /// No connection: DNS failure, connection refused, TLS handshake failure.
    #[error("unreachable: {0}")]
    Unreachable(String),
}

/// What went wrong with a request that may have reached the server.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MaybeSent {
    /// No complete response within the deadline.
    #[error("timed out")]
    Timeout,
    /// The connection failed once the request was on its way.
    #[error("transport: {0}")]
    Transport(String),
    /// The response body exceeded the host's cap.
    #[error("response too large")]
    ResponseTooLarge,
}

/// How important a plugin's log line is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogLevel {
    /// Very detailed tracing.
    Trace,
    /// Diagnostic detail.
    Debug,
    /// Normal operation.
    Info,
    /// Something unexpected the plugin recovered from.
    Warn,
    /// Something failed.
    Error,
}
