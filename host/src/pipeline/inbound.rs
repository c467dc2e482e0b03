//! Step 9, inbound: an inbound message is stored once (a provider's retry of the same message
//! changes nothing), and a compliance keyword acts on it.
//!
//! A keyword counts only when it is the whole message ([`keywords`](crate::keywords)):
//! - STOP and its synonyms opt the sender out of every category and queue one confirmation
//!   (CTIA: one per opt-out, not one per repeated STOP);
//! - START and its synonyms lift the opt-out and confirm;
//! - HELP and INFO get the help text.
//!
//! Confirmations go out in the `compliance` category, which reaches even a number that just
//! opted out, through the provider the keyword came in on.
//!
//! A keyword acts at most once per inbound message, and what counts as one message is the
//! host's call, not the plugin's. The action is keyed by [`action_key`]: a hash of the tenant,
//! the provider, the webhook request that carried the message (its path and body, which the
//! plugin verified and cannot change), the sender and the recipient. The provider's message id
//! is left out on purpose: a plugin chooses it, so it could mint a fresh id for each replay (or
//! for each copy it reports of one request) to trigger reply after reply, or reuse an earlier
//! id to suppress an opt-out. With the host's key, a provider's retry of a request acts once
//! whatever ids the plugin reports, and an id can only ever suppress the storing of a duplicate
//! row. The ids are still stored (bounded to [`MAX_ID_BYTES`]) so an honest provider's retry is
//! stored once.

use sha2::{Digest, Sha256};

use super::Pipeline;
use super::accept::References;
use super::count;
use super::enqueue::{self, Outgoing};
use super::error::{ErrorCode, PipelineError, Result};
use crate::domain::{Category, PhoneNumber, TenantId};
use crate::keywords::{self, Keyword};
use crate::plugin::model::InboundMessage;
use crate::store::{self, OptOutChange, OptOutMethod, new_id};

/// The longest provider message id stored; a longer one is refused (logged, not stored).
pub const MAX_ID_BYTES: usize = 128;

/// The identity of the webhook request that carried an inbound message: a SHA-256 of its path,
/// query and body, as received.
#[must_use]
pub fn request_digest(path_and_query: &str, body: &[u8]) -> [u8; 32] {
    let mut hash = Sha256::new();
    hash.update((path_and_query.len() as u64).to_be_bytes());
    hash.update(path_and_query.as_bytes());
    hash.update(body);
    hash.finalize().into()
}

/// The key a keyword's action is taken under, once: the tenant, the provider, the request that
/// carried the message ([`request_digest`]), the sender and the recipient, each length-prefixed.
#[must_use]
pub fn action_key(
    tenant: &TenantId,
    provider: &str,
    request: &[u8; 32],
    from: &str,
    to: &str,
) -> String {
    let mut hash = Sha256::new();
    for part in [
        tenant.as_str().as_bytes(),
        provider.as_bytes(),
        request.as_slice(),
        from.as_bytes(),
        to.as_bytes(),
    ] {
        hash.update((part.len() as u64).to_be_bytes());
        hash.update(part);
    }
    hex::encode(hash.finalize())
}

/// Stores `message`, received by `provider` for `tenant` in the webhook request whose digest is
/// `request`, and acts on its keyword unless that message was already acted on.
pub async fn receive(
    pipeline: &Pipeline,
    tenant: &TenantId,
    provider: &str,
    request: &[u8; 32],
    message: InboundMessage,
) -> Result<()> {
    if message.provider_message_id.len() > MAX_ID_BYTES {
        tracing::warn!(
            provider,
            tenant = %tenant,
            bytes = message.provider_message_id.len(),
            "inbound message with a provider id over {MAX_ID_BYTES} bytes; refused, not stored"
        );
        return Ok(());
    }
    let now = pipeline.now();
    let keyword = keywords::classify(&message.body);
    let inbound = store::InboundMessage {
        id: new_id("inb"),
        tenant_id: tenant.clone(),
        provider: provider.to_owned(),
        provider_message_id: message.provider_message_id,
        from_number: message.from.clone(),
        to_number: message.to.clone(),
        body: message.body,
        keyword,
        received_at: now,
    };
    // The row is stored once per provider id (an honest provider's retry repeats it); whether
    // the keyword acts is decided by the host's key alone.
    pipeline.store().record_inbound(&inbound).await?;
    let Some(keyword) = keyword else {
        return Ok(());
    };
    let key = action_key(tenant, provider, request, &message.from, &message.to);
    if !pipeline
        .store()
        .claim_inbound_action(tenant, &key, &inbound.id, now)
        .await?
    {
        tracing::info!(provider, tenant = %tenant, "keyword already acted on for this message; no second action");
        return Ok(());
    }
    let store = pipeline.store();
    let compliance = pipeline.config().compliance.clone();
    // The audit trail names the inbound message and the word the number texted.
    let change = |category| {
        OptOutChange::new(tenant, &message.from, category, OptOutMethod::Keyword, now)
            .caused_by(&inbound.id)
            .because(&format!("texted {}", inbound.body.trim()))
    };
    let reply = match keyword {
        Keyword::Stop => {
            let changed = store.opt_out(&change(Category::All)).await?;
            changed.then_some(compliance.stop_reply)
        }
        Keyword::Start => {
            store.opt_in(&change(Category::All)).await?;
            Some(compliance.start_reply)
        }
        Keyword::Help => Some(compliance.help_reply),
    };
    let Some(reply) = reply.filter(|r| !r.is_empty()) else {
        return Ok(());
    };
    // A sender that is not a phone number (a short code's relay, an alphanumeric id) cannot be
    // answered by SMS.
    let Ok(to) = PhoneNumber::parse(&message.from) else {
        return Ok(());
    };
    let body = count::count(&reply, false)?;
    let outgoing = Outgoing {
        tenant: tenant.clone(),
        to,
        from: Some(message.to),
        body,
        template_id: None,
        template_version: None,
        category: Category::Compliance,
        provider: provider.to_owned(),
        references: References::default(),
        metadata: None,
        idempotency: None,
        send_at: None,
        bulk: false,
    };
    enqueue::enqueue(pipeline, outgoing).await?;
    Ok(())
}

/// One page of `tenant`'s inbound messages, newest first (`GET /api/v1/sms/inbound`).
pub async fn list(
    pipeline: &Pipeline,
    tenant: &TenantId,
    filter: &store::InboundFilter,
) -> Result<store::Page<store::InboundMessage>> {
    let invalid_cursor = || PipelineError::new(ErrorCode::InvalidQuery, "the cursor is not valid");
    if filter.cursor.as_deref().is_some_and(|c| c.contains('\0')) {
        return Err(invalid_cursor());
    }
    match pipeline.store().list_inbound(tenant, filter).await {
        Err(store::StoreError::InvalidCursor) => Err(invalid_cursor()),
        other => Ok(other?),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The action key depends on the request, sender and recipient, and on nothing a plugin
    /// chooses beyond them: the same request always gives the same key.
    #[test]
    fn action_key_is_the_hosts() {
        let tenant = TenantId::default_tenant();
        let request = request_digest("/api/v1/sms/webhooks/twilio/inbound", b"Body=STOP");
        let key = action_key(&tenant, "twilio", &request, "+14155550101", "+15005550006");
        assert_eq!(
            key,
            action_key(&tenant, "twilio", &request, "+14155550101", "+15005550006")
        );
        let other = request_digest("/api/v1/sms/webhooks/twilio/inbound", b"Body=STOP&x=1");
        for different in [
            action_key(&tenant, "twilio", &other, "+14155550101", "+15005550006"),
            action_key(&tenant, "evil", &request, "+14155550101", "+15005550006"),
            action_key(&tenant, "twilio", &request, "+14155550102", "+15005550006"),
            action_key(&tenant, "twilio", &request, "+14155550101", "+15005550007"),
        ] {
            assert_ne!(key, different);
        }
    }
}
