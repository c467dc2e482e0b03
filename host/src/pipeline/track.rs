//! Step 8, track: a provider's webhook is verified and parsed by the provider plugin, then
//! each status report moves its message by the monotonic rule (late, duplicate and
//! out-of-order reports never move a message backwards) and each inbound message goes on to
//! [`inbound`](super::inbound).
//!
//! The plugin verifies the signature against the public URL the operator configured
//! (`server.public_url` plus the path and query as received), so verification works behind a
//! proxy. A forged or unsigned request changes nothing.
//!
//! The host does not take the plugin's word for which message a callback is about: a
//! `message_id` in the URL counts only with the host's token for that message and this provider
//! ([`callback`](super::callback)), checked before any plugin runs; a report without one is
//! looked up by provider message id within this provider. No report moves a `queued` message
//! ([`advance_reported`](crate::domain::advance_reported)).

use super::Pipeline;
use super::error::{ErrorCode, PipelineError, Result};
use super::tenants;
use crate::domain::{MessageStatus, Money, TenantId};
use crate::plugin::model::{
    DeliveryState, StatusUpdate, WebhookEvent, WebhookRejection, WebhookRequest,
};
use crate::plugin::{LoadedPlugin, PluginKind};
use crate::store::{self, ErrorInfo, EventSource, MessageLookup};

/// A webhook as it arrived.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Webhook {
    /// The path and query it was received on, e.g. `/api/v1/sms/webhooks/twilio/status?…`.
    pub path_and_query: String,
    /// Its headers.
    pub headers: Vec<(String, String)>,
    /// Its body.
    pub body: Vec<u8>,
}

/// What a webhook contained, so the caller can answer the provider in kind.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Receipt {
    /// Status reports applied (or acknowledged: a report for an unknown message is dropped).
    pub statuses: usize,
    /// Inbound messages received.
    pub inbound: usize,
}

/// Verifies and parses `webhook` with provider `provider`, then applies what it reports for
/// the tenant it belongs to.
///
/// Whose credentials signed it decides which tenant it belongs to, so the tenant is found first:
/// a status callback names its message (Herald put the id in the callback URL), and so its
/// tenant; an inbound message names the number it was sent to, which a tenant owns. The webhook
/// is then verified with that tenant's settings. An inbound message to a number no tenant owns
/// is verified with the operator's settings, acknowledged and logged, but not stored.
///
/// A webhook refused as not genuine (`invalid_signature`) is counted in the metrics, by
/// provider (only a loaded provider's name gets that far).
pub async fn receive_webhook(
    pipeline: &Pipeline,
    provider: &str,
    webhook: Webhook,
) -> Result<Receipt> {
    let received = receive(pipeline, provider, webhook).await;
    if let Err(e) = &received
        && e.code == ErrorCode::InvalidSignature
    {
        pipeline.metrics().webhook_verification_failed(provider);
    }
    received
}

/// [`receive_webhook`] before the metrics.
async fn receive(pipeline: &Pipeline, provider: &str, webhook: Webhook) -> Result<Receipt> {
    let base = pipeline
        .plugins()
        .get(provider)
        .filter(|p| p.kind() == PluginKind::Provider)
        .ok_or_else(|| {
            PipelineError::new(
                ErrorCode::UnknownProvider,
                format!("no provider plugin `{provider}`"),
            )
        })?;
    let request_id = super::inbound::request_digest(&webhook.path_and_query, &webhook.body);
    let request = WebhookRequest {
        method: "POST".into(),
        url: format!(
            "{}{}",
            pipeline.config().server.public_url.trim_end_matches('/'),
            webhook.path_and_query
        ),
        headers: webhook.headers,
        body: webhook.body,
    };
    let message_id = query_param(&webhook.path_and_query, "message_id");
    let owner = match &message_id {
        Some(id) => {
            let token = query_param(&webhook.path_and_query, "token");
            callback_owner(pipeline, provider, id, token.as_deref()).await?
        }
        None => inbound_owner(pipeline, &base, provider, &request).await?,
    };
    let tenant = owner.clone().unwrap_or_else(TenantId::default_tenant);
    let plugin = tenants::provider_named(pipeline, &tenant, provider)
        .await?
        .unwrap_or(base);
    let events = plugin
        .receive_webhook(&request)
        .await
        .map_err(|e| PipelineError::plugin(&e, ErrorCode::ProviderUnavailable))?
        .map_err(|rejection| {
            tracing::warn!(provider, tenant = %tenant, url = %request.url, "rejected webhook: {rejection}");
            match rejection {
                WebhookRejection::Malformed(m) => {
                    PipelineError::new(ErrorCode::MalformedWebhook, m)
                }
                other => PipelineError::new(ErrorCode::InvalidSignature, other.to_string()),
            }
        })?;
    let mut receipt = Receipt::default();
    let mut statuses = Vec::new();
    for event in events {
        match event {
            WebhookEvent::Status(update) => statuses.push(update),
            WebhookEvent::Inbound(message) => {
                receipt.inbound += 1;
                let to_owner = tenants::owner_of_number(pipeline, provider, &message.to).await?;
                match to_owner {
                    Some(owner) if owner == tenant => {
                        super::inbound::receive(pipeline, &tenant, provider, &request_id, message)
                            .await?;
                    }
                    _ => tracing::warn!(
                        provider,
                        to = %message.to,
                        "inbound message to a number no tenant owns; acknowledged, not stored"
                    ),
                }
            }
        }
    }
    // Handed over together, so that a webhook's reports about one message are coalesced.
    receipt.statuses = statuses.len();
    apply_statuses(pipeline, &tenant, provider, message_id.as_deref(), statuses).await?;
    Ok(receipt)
}

/// The tenant of the message a status-callback URL names, once the URL's token shows that the
/// host handed this URL to `provider` for that message ([`callback`](super::callback)) and the
/// message was sent through `provider`. Anything else is `invalid_signature`, before any plugin
/// sees the request: a provider's webhook cannot reach another provider's message.
///
/// An unknown (or erased) message has no tenant to check a token against and nothing a report
/// could change; the webhook is verified as the operator's and acknowledged.
async fn callback_owner(
    pipeline: &Pipeline,
    provider: &str,
    id: &str,
    token: Option<&str>,
) -> Result<Option<TenantId>> {
    let Some((tenant, sent_through)) = pipeline.store().message_owner(id).await? else {
        return Ok(None);
    };
    let refuse = |why: &str| {
        let shown: String = id.chars().take(64).collect();
        tracing::warn!(provider, tenant = %tenant, message_id = %shown, "refused status callback: {why}");
        Err(PipelineError::new(
            ErrorCode::InvalidSignature,
            why.to_owned(),
        ))
    };
    let Some(token) = token else {
        return refuse("the status-callback URL has no token");
    };
    if !pipeline.callback_key().verify(&tenant, id, provider, token) {
        return refuse("the status-callback token does not match this message and provider");
    }
    if sent_through != provider {
        return refuse("the message was not sent through this provider");
    }
    Ok(Some(tenant))
}

/// The tenant owning the number of the first inbound message in `request`, read without
/// verifying it (verification needs the owner's credentials; nothing is acted on until then).
async fn inbound_owner(
    pipeline: &Pipeline,
    base: &LoadedPlugin,
    provider: &str,
    request: &WebhookRequest,
) -> Result<Option<TenantId>> {
    let events = match base.parse_webhook(request).await {
        Ok(Ok(events)) => events,
        Err(f) if f.kind == crate::plugin::FailureKind::Busy => {
            return Err(PipelineError::plugin(&f, ErrorCode::ProviderUnavailable));
        }
        _ => return Ok(None),
    };
    for event in events {
        if let WebhookEvent::Inbound(message) = event {
            return tenants::owner_of_number(pipeline, provider, &message.to).await;
        }
    }
    Ok(None)
}

/// The query parameter `name` (`message_id`, `token`) that Herald puts in its status-callback
/// URLs, percent-decoded.
fn query_param(path_and_query: &str, name: &str) -> Option<String> {
    let (_, query) = path_and_query.split_once('?')?;
    serde_urlencoded::from_str::<Vec<(String, String)>>(query)
        .ok()?
        .into_iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v)
}

/// The host status a provider's delivery state means.
#[must_use]
pub fn status_of(state: DeliveryState) -> MessageStatus {
    match state {
        DeliveryState::Queued => MessageStatus::Queued,
        DeliveryState::Sending => MessageStatus::Sending,
        DeliveryState::Sent => MessageStatus::Sent,
        DeliveryState::Delivered => MessageStatus::Delivered,
        DeliveryState::Undelivered => MessageStatus::Undelivered,
        DeliveryState::Failed => MessageStatus::Failed,
        DeliveryState::Canceled => MessageStatus::Canceled,
        DeliveryState::Read => MessageStatus::Read,
    }
}

/// Applies a webhook's status reports through the monotonic rule, in order; reports about one
/// message are coalesced by the store. The first error is returned once every report was tried.
pub async fn apply_statuses(
    pipeline: &Pipeline,
    tenant: &TenantId,
    provider: &str,
    message_id: Option<&str>,
    updates: Vec<StatusUpdate>,
) -> Result<()> {
    if updates.is_empty() {
        return Ok(());
    }
    let now = pipeline.now();
    let changes: Vec<_> = updates
        .into_iter()
        .map(|update| {
            let lookup = match message_id {
                Some(id) => MessageLookup::Id(id.to_owned()),
                None => MessageLookup::Provider {
                    provider: provider.to_owned(),
                    provider_message_id: update.provider_message_id.clone(),
                },
            };
            store_update(lookup, update, EventSource::Webhook, now)
        })
        .collect();
    let results = pipeline
        .store()
        .apply_statuses(tenant, changes.clone())
        .await;
    let mut first_error = None;
    for (change, result) in changes.iter().zip(results) {
        match result {
            Ok(applied) => log_applied(pipeline, tenant, provider, change, applied),
            Err(error) => {
                first_error.get_or_insert(error);
            }
        }
    }
    match first_error {
        Some(error) => Err(error.into()),
        None => Ok(()),
    }
}

/// Counts and logs what one report did.
fn log_applied(
    pipeline: &Pipeline,
    tenant: &TenantId,
    provider: &str,
    change: &store::StatusUpdate,
    applied: Option<store::ApplyResult>,
) {
    match applied {
        Some(applied) if applied.changed => {
            if applied.message.status.is_final() && !applied.previous.is_final() {
                pipeline
                    .metrics()
                    .finished(tenant, provider, applied.message.status);
            }
            tracing::info!(
                tenant = %tenant,
                message_id = %applied.message.id,
                provider,
                status = %applied.message.status,
                previous = %applied.previous,
                "message status changed by the provider"
            );
        }
        Some(applied) => tracing::debug!(
            tenant = %tenant,
            message_id = %applied.message.id,
            provider,
            reported = %change.status,
            status = %applied.message.status,
            "late or repeated status report; the message stays"
        ),
        // Not ours (or already erased): acknowledge, so the provider does not retry forever.
        None => tracing::warn!(
            provider,
            lookup = ?change.lookup,
            "status report for an unknown message"
        ),
    }
}

/// The most segments a reported count may claim; a longer count is not believed.
pub const MAX_SEGMENTS: u32 = 100;

/// A provider's status report as the store applies it, from `source` at `now`. A negative
/// price or a segment count over [`MAX_SEGMENTS`] is dropped (and logged); the status stands.
#[must_use]
pub fn store_update(
    lookup: MessageLookup,
    update: StatusUpdate,
    source: EventSource,
    now: i64,
) -> store::StatusUpdate {
    store::StatusUpdate {
        lookup,
        status: status_of(update.state),
        provider_status: Some(update.provider_status),
        provider_message_id: Some(update.provider_message_id),
        error: update.error.map(|e| ErrorInfo {
            code: e.code,
            message: Some(e.message),
        }),
        segments: update.segments.filter(|&n| {
            let plausible = n <= MAX_SEGMENTS;
            if !plausible {
                tracing::warn!(
                    segments = n,
                    "dropped a reported segment count over {MAX_SEGMENTS}"
                );
            }
            plausible
        }),
        price: update
            .price
            .filter(|p| {
                let plausible = p.micros >= 0;
                if !plausible {
                    tracing::warn!(micros = p.micros, "dropped a negative reported price");
                }
                plausible
            })
            .map(|p| Money::new(p.micros, p.currency)),
        sender: update.sender,
        source,
        now,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A negative price and a segment count over 100 are dropped; the status stands.
    #[test]
    fn absurd_facts_are_dropped() {
        let report = |micros: i64, segments: u32| StatusUpdate {
            provider_message_id: "SM1".into(),
            state: DeliveryState::Delivered,
            provider_status: "delivered".into(),
            error: None,
            segments: Some(segments),
            price: Some(crate::plugin::model::Money {
                micros,
                currency: "USD".into(),
            }),
            sender: None,
        };
        let lookup = || MessageLookup::Id("msg_1".into());
        let absurd = store_update(lookup(), report(i64::MIN, 999), EventSource::Webhook, 0);
        assert_eq!((absurd.price, absurd.segments), (None, None));
        assert_eq!(absurd.status, MessageStatus::Delivered);
        let fine = store_update(lookup(), report(7_900, 100), EventSource::Webhook, 0);
        assert_eq!(fine.price.map(|p| p.micros), Some(7_900));
        assert_eq!(fine.segments, Some(100));
    }

    /// The message id comes from the query string, percent-decoded; other parameters are ignored.
    #[test]
    fn message_id_from_query() {
        assert_eq!(
            query_param("/x/status?a=1&message_id=msg_%41b", "message_id"),
            Some("msg_Ab".into())
        );
        assert_eq!(query_param("/x/status", "message_id"), None);
        assert_eq!(query_param("/x/status?other=1", "message_id"), None);
        assert_eq!(
            query_param("/x/status?message_id=m&token=ab", "token"),
            Some("ab".into())
        );
    }
}
