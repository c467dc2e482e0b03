//! Step 5, enqueue: the message row, its queue entry and its first status event are written in
//! one transaction; the caller's answer (`202 Accepted`) comes only after it commits, so an
//! accepted message survives a crash.
//!
//! A reused `Idempotency-Key` is looked up before any other step ([`replay`]): a replay answers
//! with the stored message whatever changed since (the number opted out, the template was
//! deactivated, the provider was unloaded). The same check inside the enqueue transaction
//! settles the race of two first calls with one key.

use super::Pipeline;
use super::accept::{Draft, References, Submitted};
use super::count::Counted;
use super::error::{ErrorCode, PipelineError, Result};
use super::render::Rendered;
use crate::domain::{Category, PhoneNumber, TenantId};
use crate::store::{Enqueued, NewMessage, StoreError, new_id};

/// Everything a new message row needs, from a send or from Herald itself (keyword replies).
#[derive(Debug, Clone)]
pub struct Outgoing {
    /// The owning tenant.
    pub tenant: TenantId,
    /// The recipient.
    pub to: PhoneNumber,
    /// The sender, when not the provider's default.
    pub from: Option<String>,
    /// The body, counted.
    pub body: Counted,
    /// The template it was rendered from.
    pub template_id: Option<String>,
    /// The version of that template it was rendered from.
    pub template_version: Option<i64>,
    /// Its category.
    pub category: Category,
    /// The provider the first attempt goes to.
    pub provider: String,
    /// The caller's references.
    pub references: References,
    /// Free-form caller metadata.
    pub metadata: Option<serde_json::Value>,
    /// The idempotency key and request hash.
    pub idempotency: Option<(String, String)>,
    /// When to send it (UTC ms); `None` or a past time for now.
    pub send_at: Option<i64>,
    /// Whether it is one row of a bulk send (claimed after single sends).
    pub bulk: bool,
}

/// The stored message of a draft whose idempotency key was used before: `Some` replay when the
/// request is the same, an `idempotency_conflict` when it differs, `None` for a new key.
pub async fn replay(pipeline: &Pipeline, draft: &Draft) -> Result<Option<Submitted>> {
    let Some(idempotency) = &draft.idempotency else {
        return Ok(None);
    };
    let stored = pipeline
        .store()
        .message_by_idempotency_key(&draft.tenant, &idempotency.key)
        .await?;
    match stored {
        None => Ok(None),
        Some(message) if message.request_hash.as_deref() == Some(&idempotency.request_hash) => {
            Ok(Some(Submitted {
                message,
                replayed: true,
            }))
        }
        Some(_) => Err(conflict()),
    }
}

/// Builds the outgoing message of a draft that passed every step before this one, routed to
/// the tenant's provider.
pub async fn outgoing(
    pipeline: &Pipeline,
    draft: Draft,
    rendered: Rendered,
    body: Counted,
) -> Result<Outgoing> {
    let provider = super::tenants::provider(pipeline, &draft.tenant).await?;
    Ok(routed(draft, rendered, body, provider.name()))
}

/// Builds the outgoing message of a draft, routed to `provider` (looked up once by a caller
/// that builds many).
#[must_use]
pub fn routed(draft: Draft, rendered: Rendered, body: Counted, provider: &str) -> Outgoing {
    let request = draft.request;
    Outgoing {
        tenant: draft.tenant,
        to: request.to,
        from: request.from.map(String::from),
        body,
        template_id: rendered.template_id,
        template_version: rendered.template_version,
        category: rendered.category,
        provider: provider.to_owned(),
        references: request.references,
        metadata: request.metadata.map(serde_json::Value::Object),
        idempotency: draft.idempotency.map(|i| (i.key, i.request_hash)),
        send_at: request.send_at,
        bulk: request.bulk,
    }
}

/// The message row of `outgoing`, accepted now, with a new id.
#[must_use]
pub fn new_message(pipeline: &Pipeline, outgoing: Outgoing) -> NewMessage {
    let (idempotency_key, request_hash) = outgoing.idempotency.unzip();
    NewMessage {
        id: new_id("msg"),
        tenant_id: outgoing.tenant,
        to_number: outgoing.to.to_string(),
        sender: outgoing.from,
        body: outgoing.body.text,
        template_id: outgoing.template_id,
        template_version: outgoing.template_version,
        category: outgoing.category,
        encoding: outgoing.body.count.encoding,
        segments: outgoing.body.count.segments,
        units: outgoing.body.count.units,
        provider: outgoing.provider,
        max_attempts: pipeline.config().delivery.max_attempts,
        customer_id: outgoing.references.customer_id,
        order_id: outgoing.references.order_id,
        reservation_id: outgoing.references.reservation_id,
        metadata: outgoing.metadata,
        idempotency_key,
        request_hash,
        due_at: outgoing.send_at,
        bulk: outgoing.bulk,
        batch_id: None,
        now: pipeline.now(),
        charge: None,
    }
}

/// Stores and queues `outgoing` in one transaction. A reused idempotency key returns the
/// message it created the first time, or a conflict when the request differs.
pub async fn enqueue(pipeline: &Pipeline, outgoing: Outgoing) -> Result<Submitted> {
    enqueue_charged(pipeline, outgoing, None).await
}

/// Like [`enqueue`], and writes `charge` (the estimate and budget reservations, see
/// [`super::ledger`]) in the same transaction: a hard-capped budget without room refuses the
/// message with `budget_exceeded` and nothing is stored.
pub async fn enqueue_charged(
    pipeline: &Pipeline,
    outgoing: Outgoing,
    charge: Option<crate::store::Charge>,
) -> Result<Submitted> {
    let mut new = new_message(pipeline, outgoing);
    new.charge = charge;
    match pipeline.store().enqueue(&new).await {
        Ok(Enqueued::Created(message)) => {
            pipeline
                .metrics()
                .accepted(&message.tenant_id, &message.provider, message.status);
            tracing::info!(
                tenant = %message.tenant_id,
                message_id = %message.id,
                provider = %message.provider,
                status = %message.status,
                "message queued"
            );
            Ok(Submitted {
                message,
                replayed: false,
            })
        }
        Ok(Enqueued::Existing(message)) => Ok(Submitted {
            message,
            replayed: true,
        }),
        Err(StoreError::IdempotencyConflict { .. }) => Err(conflict()),
        Err(e) => Err(e.into()),
    }
}

fn conflict() -> PipelineError {
    PipelineError::new(
        ErrorCode::IdempotencyConflict,
        "this Idempotency-Key was already used with a different request body",
    )
}
