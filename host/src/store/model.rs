//! The store's domain types: the rows it reads back and the arguments of its operations, plus the
//! message statuses and their monotonic rule (defined in `status`, re-exported here). Nothing here
//! touches a database.
//!
//! Times are UTC milliseconds since the Unix epoch (`i64`); money is integer micro-units plus an
//! ISO 4217 currency code. Ids are minted by callers with [`new_id`](super::new_id); the store
//! never invents an id, except the sequence numbers of event rows.

use serde::{Deserialize, Serialize};

pub use crate::domain::{
    Category, MessageStatus, Money, TenantId, TenantStatus, advance, advance_reported,
};
use crate::segments::Encoding;

/// Who caused a status change.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventSource {
    /// The HTTP API (or an embedder) accepting the message.
    Api,
    /// A dispatcher attempt.
    Dispatcher,
    /// A provider's delivery-status callback.
    Webhook,
    /// The reconciler, which asked the provider for a status whose callback never came.
    Reconcile,
}

/// A compliance keyword recognised in an inbound message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Keyword {
    /// Opt out (STOP, UNSUBSCRIBE, ...).
    Stop,
    /// Opt back in (START, UNSTOP, ...).
    Start,
    /// Ask for help (HELP, INFO).
    Help,
}

/// Whether an opt-out audit event added or removed an opt-out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OptOutAction {
    /// The number was opted out.
    OptOut,
    /// The number was opted back in.
    OptIn,
}

/// How an opt-out change was made: the `method` of the compliance export.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OptOutMethod {
    /// The number texted a keyword (STOP, START, …); the source message is the inbound one.
    Keyword,
    /// A caller of the API (or an embedder).
    Api,
    /// A CSV import (`POST /opt-outs/import`).
    Import,
    /// The provider refused a send because the number unsubscribed at its end; the source
    /// message is the refused outbound one.
    Provider,
}

impl OptOutMethod {
    /// Every method, in the order reports list them.
    pub const ALL: [Self; 4] = [Self::Keyword, Self::Api, Self::Import, Self::Provider];

    /// The method's name, as stored and as the API shows it.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Keyword => "keyword",
            Self::Api => "api",
            Self::Import => "import",
            Self::Provider => "provider",
        }
    }

    /// Parses a method name as [`OptOutMethod::as_str`] writes it.
    #[must_use]
    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|method| method.as_str() == name)
    }
}

/// An error a provider or the dispatcher reported for a message.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorInfo {
    /// A machine-readable code (the provider's own, or Herald's).
    pub code: Option<String>,
    /// A human-readable description.
    pub message: Option<String>,
}

/// Everything the API knows about a message when it accepts it.
#[derive(Debug, Clone)]
pub struct NewMessage {
    /// The message id (`msg_…`), minted by the caller.
    pub id: String,
    /// The owning tenant.
    pub tenant_id: TenantId,
    /// The recipient, E.164.
    pub to_number: String,
    /// The sender id or number, when not the provider's default.
    pub sender: Option<String>,
    /// The rendered body.
    pub body: String,
    /// The template the body was rendered from.
    pub template_id: Option<String>,
    /// The version of that template the body was rendered from.
    pub template_version: Option<i64>,
    /// The opt-out category (`transactional` by default; `compliance` for keyword replies, which
    /// are sent even to an opted-out number).
    pub category: Category,
    /// The encoding the body will be sent in.
    pub encoding: Encoding,
    /// The number of segments the body takes.
    pub segments: u32,
    /// The number of billable units.
    pub units: u32,
    /// The provider the first attempt goes to.
    pub provider: String,
    /// How many attempts the dispatcher may make.
    pub max_attempts: u32,
    /// The caller's customer reference.
    pub customer_id: Option<String>,
    /// The caller's order reference.
    pub order_id: Option<String>,
    /// The ledger reservation made for this message.
    pub reservation_id: Option<String>,
    /// Free-form caller metadata.
    pub metadata: Option<serde_json::Value>,
    /// The caller's `Idempotency-Key`.
    pub idempotency_key: Option<String>,
    /// A hash of the request, to tell a retry from a different request under the same key.
    pub request_hash: Option<String>,
    /// When the first attempt is due; `None` for now. A time after `now` stores the message
    /// as `scheduled` (and as its [`Message::send_at`]) instead of `queued`.
    pub due_at: Option<i64>,
    /// Whether the message is one row of a bulk send (a batch, a schedule's fire time): it is
    /// claimed after single sends of its class (see [`ClaimPriority`]).
    pub bulk: bool,
    /// The bulk batch the message belongs to, if any.
    pub batch_id: Option<String>,
    /// The time of acceptance.
    pub now: i64,
    /// The estimate and budget reservations written with it (see [`Charge`](super::Charge));
    /// `None` records no cost at accept.
    pub charge: Option<super::Charge>,
}

/// A stored message.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Message {
    /// The message id.
    pub id: String,
    /// The owning tenant.
    pub tenant_id: TenantId,
    /// The recipient, E.164.
    pub to_number: String,
    /// The sender id or number.
    pub sender: Option<String>,
    /// The rendered body.
    pub body: String,
    /// The template the body was rendered from.
    pub template_id: Option<String>,
    /// The version of that template the body was rendered from (versions are immutable).
    pub template_version: Option<i64>,
    /// The opt-out category.
    pub category: Category,
    /// The encoding.
    pub encoding: Encoding,
    /// Segments, as Herald counted them at acceptance (the encoding decides them exactly); a
    /// provider's count never replaces it.
    pub segments: u32,
    /// Segments as the provider last reported them (when it accepted the message or in a status
    /// report), kept beside [`segments`](Self::segments) to reconcile billing; `None` until a
    /// provider reports a count.
    pub provider_segments: Option<u32>,
    /// Billable units.
    pub units: u32,
    /// The current status.
    pub status: MessageStatus,
    /// The provider of the latest attempt (the one that accepted it, once sent).
    pub provider: String,
    /// The provider's id for the message, once it accepted it.
    pub provider_message_id: Option<String>,
    /// Attempts made so far.
    pub attempts: u32,
    /// Attempts allowed.
    pub max_attempts: u32,
    /// The caller's customer reference.
    pub customer_id: Option<String>,
    /// The caller's order reference.
    pub order_id: Option<String>,
    /// The ledger reservation.
    pub reservation_id: Option<String>,
    /// Free-form caller metadata.
    pub metadata: Option<serde_json::Value>,
    /// The caller's idempotency key.
    pub idempotency_key: Option<String>,
    /// The hash of the request that created the message.
    #[serde(skip)]
    pub request_hash: Option<String>,
    /// The price the provider reported.
    pub price: Option<Money>,
    /// The latest error.
    pub error: Option<ErrorInfo>,
    /// When the caller asked it to be sent (`send_at`), if that was later than its acceptance.
    pub send_at: Option<i64>,
    /// The bulk batch it belongs to, if any.
    pub batch_id: Option<String>,
    /// When it was accepted.
    pub created_at: i64,
    /// When it last changed.
    pub updated_at: i64,
}

/// The result of [`Store::enqueue`](super::Store::enqueue).
#[derive(Debug, Clone, PartialEq)]
pub enum Enqueued {
    /// A new message was stored and queued.
    Created(Message),
    /// The idempotency key was already used for the same request: this is that message.
    Existing(Message),
}

impl Enqueued {
    /// Returns the message, new or existing.
    #[must_use]
    pub fn message(&self) -> &Message {
        match self {
            Self::Created(message) | Self::Existing(message) => message,
        }
    }
}

/// One entry of a message's status history.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StatusEvent {
    /// The event's sequence number.
    pub id: i64,
    /// The owning tenant.
    pub tenant_id: TenantId,
    /// The message.
    pub message_id: String,
    /// The status the message moved to.
    pub status: MessageStatus,
    /// The provider's own status word, if the change came from a provider.
    pub provider_status: Option<String>,
    /// The error reported with the change.
    pub error: Option<ErrorInfo>,
    /// Who caused the change.
    pub source: EventSource,
    /// When it happened.
    pub occurred_at: i64,
}

/// A queue entry leased to one dispatcher attempt.
#[derive(Debug, Clone, PartialEq)]
pub struct ClaimedJob {
    /// The message, with `status = sending` and `attempts` already counting this attempt.
    pub message: Message,
    /// This attempt's number (1 for the first).
    pub attempt: u32,
    /// The lease token: unique to this claim, it fences every outcome of the attempt.
    pub lease_owner: String,
    /// The previous attempt's lease expired without an outcome (its process died mid-call), so
    /// the provider may already have the message.
    pub interrupted: bool,
}

impl ClaimedJob {
    /// Returns the reference that the attempt's outcome operations take.
    #[must_use]
    pub fn lease(&self) -> LeaseRef<'_> {
        LeaseRef {
            tenant_id: &self.message.tenant_id,
            message_id: &self.message.id,
            owner: &self.lease_owner,
        }
    }
}

/// Names a leased queue entry: an outcome is applied only while `owner` still holds the lease.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LeaseRef<'a> {
    /// The owning tenant.
    pub tenant_id: &'a TenantId,
    /// The message.
    pub message_id: &'a str,
    /// The lease token from [`ClaimedJob::lease_owner`].
    pub owner: &'a str,
}

/// Whether an attempt's outcome was recorded.
#[must_use]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LeaseOutcome {
    /// The lease was still held; the outcome is stored.
    Applied,
    /// The lease expired and another claim took the entry (or it is gone); nothing was changed.
    Lost,
}

/// What a provider said when it accepted a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Accepted {
    /// The provider that accepted it (after a failover, not necessarily the first one).
    pub provider: String,
    /// The provider's id for the message.
    pub provider_message_id: String,
    /// The provider's own status word.
    pub provider_status: Option<String>,
    /// Segments, if the provider counted them; stored as [`Message::provider_segments`].
    pub segments: Option<u32>,
    /// The price, if the provider reported it.
    pub price: Option<Money>,
    /// The number or sender id the provider sent from, if it said; stored as
    /// [`Message::sender`] when the message names none.
    pub sender: Option<String>,
}

/// How a status report names its message.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum MessageLookup {
    /// By Herald's message id.
    Id(String),
    /// By the provider's id for it.
    Provider {
        /// The provider name.
        provider: String,
        /// The provider's message id.
        provider_message_id: String,
    },
}

/// A status report to apply with the monotonic rule.
#[derive(Debug, Clone)]
pub struct StatusUpdate {
    /// The message the report is about.
    pub lookup: MessageLookup,
    /// The reported status.
    pub status: MessageStatus,
    /// The provider's own status word.
    pub provider_status: Option<String>,
    /// The provider's message id, stored if the message has none yet.
    pub provider_message_id: Option<String>,
    /// The reported error.
    pub error: Option<ErrorInfo>,
    /// Segments, if reported; always stored, as [`Message::provider_segments`].
    pub segments: Option<u32>,
    /// Price, if reported; always stored.
    pub price: Option<Money>,
    /// The sender the provider used, if reported; stored when the message names none.
    pub sender: Option<String>,
    /// Who reports it.
    pub source: EventSource,
    /// When it was received.
    pub now: i64,
}

/// Which messages [`Store::reconcile_candidates`](super::Store::reconcile_candidates) returns:
/// those still `sent` or `unknown` with a provider message id, and due to be asked about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReconcileQuery {
    /// The time now.
    pub now: i64,
    /// How long a message must have kept its status before it is asked about, in milliseconds;
    /// also the shortest time between two asks about one message.
    pub after_ms: i64,
    /// Messages created longer ago than this are no longer asked about, in milliseconds.
    pub max_age_ms: i64,
    /// The most candidates returned per provider.
    pub per_provider: u32,
}

/// A message the reconciler may ask its provider about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReconcileCandidate {
    /// The owning tenant.
    pub tenant_id: TenantId,
    /// The message id.
    pub id: String,
    /// The provider that accepted it.
    pub provider: String,
    /// The provider's id for it.
    pub provider_message_id: String,
    /// Its status: `sent` or `unknown`.
    pub status: MessageStatus,
    /// When its status last changed.
    pub updated_at: i64,
    /// When the reconciler last asked about it; `None` if it never did.
    pub reconciled_at: Option<i64>,
}

/// The result of applying a status report to a stored message.
#[derive(Debug, Clone, PartialEq)]
pub struct ApplyResult {
    /// The message after the report.
    pub message: Message,
    /// Its status before the report.
    pub previous: MessageStatus,
    /// Whether the status moved (a late or duplicate report leaves it alone).
    pub changed: bool,
}

/// An inbound message from a provider's webhook.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct InboundMessage {
    /// The id (`inb_…`), minted by the caller.
    pub id: String,
    /// The receiving tenant.
    pub tenant_id: TenantId,
    /// The provider that delivered it.
    pub provider: String,
    /// The provider's id for it (its retries repeat it).
    pub provider_message_id: String,
    /// The sender, E.164.
    pub from_number: String,
    /// The tenant's number it was sent to.
    pub to_number: String,
    /// The text.
    pub body: String,
    /// The compliance keyword it matched, if any.
    pub keyword: Option<Keyword>,
    /// When it was received.
    pub received_at: i64,
}

/// One change of the opt-out list, kept for audit.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct OptOutEvent {
    /// The event's sequence number.
    pub id: i64,
    /// The owning tenant.
    pub tenant_id: TenantId,
    /// The phone number, E.164.
    pub phone_number: String,
    /// The category (`all` for every category).
    pub category: Category,
    /// Whether the number was opted out or back in.
    pub action: OptOutAction,
    /// How the change was made.
    pub method: OptOutMethod,
    /// The message behind it: the inbound keyword message, or the outbound message whose
    /// provider reported the opt-out.
    pub source_message_id: Option<String>,
    /// Why, if known.
    pub reason: Option<String>,
    /// The caller's customer reference, when the API was given one.
    pub customer_id: Option<String>,
    /// When it happened.
    pub occurred_at: i64,
}

/// An opt-out or opt-in to record ([`Store::opt_out`](super::Store::opt_out),
/// [`Store::opt_in`](super::Store::opt_in)).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OptOutChange {
    /// The owning tenant.
    pub tenant_id: TenantId,
    /// The phone number, E.164.
    pub phone_number: String,
    /// The category (`all` for every category).
    pub category: Category,
    /// How the change is made.
    pub method: OptOutMethod,
    /// The message behind it (see [`OptOutEvent::source_message_id`]).
    pub source_message_id: Option<String>,
    /// Why, if known.
    pub reason: Option<String>,
    /// The caller's customer reference.
    pub customer_id: Option<String>,
    /// When it happens.
    pub occurred_at: i64,
}

impl OptOutChange {
    /// A change of `phone`'s `category` for `tenant` made by `method` at `now`, with no source
    /// message, reason or customer.
    #[must_use]
    pub fn new(
        tenant: &TenantId,
        phone: &str,
        category: Category,
        method: OptOutMethod,
        now: i64,
    ) -> Self {
        Self {
            tenant_id: tenant.clone(),
            phone_number: phone.to_owned(),
            category,
            method,
            source_message_id: None,
            reason: None,
            customer_id: None,
            occurred_at: now,
        }
    }

    /// The same change, caused by message `id`.
    #[must_use]
    pub fn caused_by(self, id: &str) -> Self {
        Self {
            source_message_id: Some(id.to_owned()),
            ..self
        }
    }

    /// The same change, for `reason`.
    #[must_use]
    pub fn because(self, reason: &str) -> Self {
        Self {
            reason: Some(reason.to_owned()),
            ..self
        }
    }
}

/// A template to create.
#[derive(Debug, Clone)]
pub struct NewTemplate {
    /// The id (`tpl_…`), minted by the caller.
    pub id: String,
    /// The owning tenant.
    pub tenant_id: TenantId,
    /// The name, unique per tenant.
    pub name: String,
    /// The opt-out category messages from it belong to.
    pub category: Option<Category>,
    /// A description for people.
    pub description: Option<String>,
    /// The template source.
    pub body: String,
    /// The variables the renderer found in it.
    pub variables: Vec<String>,
    /// Whether it may be used.
    pub is_active: bool,
    /// The time of creation.
    pub now: i64,
}

/// A stored template: its identity and state, with a copy of its current version.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Template {
    /// The id.
    pub id: String,
    /// The owning tenant.
    pub tenant_id: TenantId,
    /// The name, unique among the tenant's templates that are not deleted.
    pub name: String,
    /// The opt-out category (of the current version).
    pub category: Option<Category>,
    /// A description for people (of the current version).
    pub description: Option<String>,
    /// The template source (of the current version).
    pub body: String,
    /// The variables it uses (of the current version).
    pub variables: Vec<String>,
    /// Whether it may be used.
    pub is_active: bool,
    /// The current version: the one sends render, 1 for a new template.
    pub version: i64,
    /// When it was deleted; a deleted template stays readable but can no longer be used.
    pub deleted_at: Option<i64>,
    /// When it was created.
    pub created_at: i64,
    /// When it last changed.
    pub updated_at: i64,
}

/// One immutable version of a template: what a message rendered from it used.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TemplateVersion {
    /// The template.
    pub template_id: String,
    /// The version number, from 1.
    pub version: i64,
    /// The opt-out category.
    pub category: Option<Category>,
    /// A description for people.
    pub description: Option<String>,
    /// The template source.
    pub body: String,
    /// The variables it uses.
    pub variables: Vec<String>,
    /// When it was written.
    pub created_at: i64,
}

/// A change to a template; `None` leaves a field as it is. A change of the source, description
/// or category writes a new version; `is_active` alone does not.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TemplateChange {
    /// The new source, with the variables the renderer found in it.
    pub body: Option<(String, Vec<String>)>,
    /// The new description (`Some(None)` removes it; `None` keeps it).
    pub description: Option<Option<String>>,
    /// The new category (`Some(None)` removes it; `None` keeps it).
    pub category: Option<Option<Category>>,
    /// Activates or deactivates the template.
    pub is_active: Option<bool>,
    /// The time of the change.
    pub now: i64,
}

/// The result of a write to one template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TemplateWrite {
    /// Written; the template as it is now.
    Done(Template),
    /// The tenant has no template of that id.
    NotFound,
    /// The template is deleted: it can be read, never changed.
    Deleted(Template),
    /// The template has no such version.
    NoSuchVersion,
}

/// Which templates [`Store::list_templates`](super::Store::list_templates) returns.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TemplateFilter {
    /// Only this category.
    pub category: Option<Category>,
    /// Only active (`true`) or inactive (`false`) ones.
    pub is_active: Option<bool>,
    /// Only the template of this name (or those of this name, deleted ones included).
    pub name: Option<String>,
    /// Deleted templates too (hidden by default).
    pub include_deleted: bool,
    /// Page size: 50 when `None`, at most 500.
    pub limit: Option<u32>,
    /// The `next_cursor` of the previous page.
    pub cursor: Option<String>,
}

/// A tenant.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Tenant {
    /// The id (the migration creates `default`).
    pub id: TenantId,
    /// A display name.
    pub name: String,
    /// Whether it may send.
    pub status: TenantStatus,
    /// When it was created.
    pub created_at: i64,
}

/// An API key as stored: its hash and a short prefix, never the key itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ApiKey {
    /// The key's id (`key_…`).
    pub id: String,
    /// The tenant it authenticates as.
    #[serde(skip)]
    pub tenant_id: TenantId,
    /// The first characters of the key, to tell keys apart.
    pub prefix: String,
    /// When it was created.
    pub created_at: i64,
    /// When it was revoked, if it was.
    pub revoked_at: Option<i64>,
}

/// A new API key to store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewApiKey {
    /// The key's id.
    pub id: String,
    /// The tenant it authenticates as.
    pub tenant_id: TenantId,
    /// Its visible prefix.
    pub prefix: String,
    /// SHA-256 of the key, hex.
    pub key_hash: String,
    /// The time of creation.
    pub now: i64,
}

/// A tenant's settings document as stored (JSON), with when it last changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredSettings {
    /// The settings, as JSON text.
    pub settings: String,
    /// When they were last written.
    pub updated_at: i64,
}

/// Which messages [`Store::list_messages`](super::Store::list_messages) returns.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MessageFilter {
    /// Only this status.
    pub status: Option<MessageStatus>,
    /// Only to this number.
    pub to_number: Option<String>,
    /// Only for this customer reference.
    pub customer_id: Option<String>,
    /// Only created at or after this time.
    pub created_from: Option<i64>,
    /// Only created before this time.
    pub created_to: Option<i64>,
    /// Page size: 50 when `None`, at most 500.
    pub limit: Option<u32>,
    /// The `next_cursor` of the previous page.
    pub cursor: Option<String>,
}

/// One page of a listing, newest first.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Page<T> {
    /// The items.
    pub items: Vec<T>,
    /// An opaque cursor for the next page; `None` on the last page.
    pub next_cursor: Option<String>,
}
