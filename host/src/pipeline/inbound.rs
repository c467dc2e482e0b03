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

use super::Pipeline;
use super::accept::References;
use super::count;
use super::enqueue::{self, Outgoing};
use super::error::Result;
use crate::domain::{Category, PhoneNumber, TenantId};
use crate::keywords::{self, Keyword};
use crate::plugin::model::InboundMessage;
use crate::store::{self, new_id};

/// Stores `message`, received by `provider` for `tenant`, and acts on its keyword.
pub async fn receive(
    pipeline: &Pipeline,
    tenant: &TenantId,
    provider: &str,
    message: InboundMessage,
) -> Result<()> {
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
    let fresh = pipeline.store().record_inbound(&inbound).await?;
    let Some(keyword) = keyword.filter(|_| fresh) else {
        return Ok(());
    };
    let store = pipeline.store();
    let compliance = pipeline.config().compliance.clone();
    let reply = match keyword {
        Keyword::Stop => {
            let changed = store
                .opt_out(
                    tenant,
                    &message.from,
                    &Category::All,
                    "inbound",
                    Some("opt-out keyword"),
                    now,
                )
                .await?;
            changed.then_some(compliance.stop_reply)
        }
        Keyword::Start => {
            store
                .opt_in(tenant, &message.from, &Category::All, "inbound", now)
                .await?;
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
        category: Category::Compliance,
        provider: provider.to_owned(),
        references: References::default(),
        metadata: None,
        idempotency: None,
    };
    enqueue::enqueue(pipeline, outgoing).await?;
    Ok(())
}
