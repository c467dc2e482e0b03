//! Provider webhooks: `POST /api/v1/sms/webhooks/{provider}/status` and `.../inbound`.
//!
//! Webhooks are authenticated by the provider's signature, not an API key: the provider plugin
//! verifies the request against the public URL the operator configured (`server.public_url`
//! plus the path and query as received), so verification works behind a proxy. A forged or
//! unsigned request is a 403 and changes nothing. Verified status reports go through the store's
//! monotonic rule; inbound messages are stored once and their keywords acted on.

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{OriginalUri, Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};

use super::auth::DEFAULT_TENANT;
use super::error::{ApiError, ApiResult};
use crate::app::AppState;
use crate::dispatch::COMPLIANCE_CATEGORY;
use crate::keywords::{self, Keyword};
use crate::plugin::PluginKind;
use crate::plugin::model::{
    DeliveryState, InboundMessage, StatusUpdate, WebhookEvent, WebhookRejection, WebhookRequest,
};
use crate::store::{self, ErrorInfo, EventSource, MessageLookup, MessageStatus, NewMessage};

/// An empty TwiML answer: "received, nothing to reply" (replies go through the queue).
const EMPTY_TWIML: &str = "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Response></Response>";

/// `POST /api/v1/sms/webhooks/{provider}/status` and `.../inbound`: one handler, since the
/// provider plugin tells status reports and inbound messages apart.
pub async fn receive(
    State(state): State<AppState>,
    Path(provider): Path<String>,
    OriginalUri(uri): OriginalUri,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult<Response> {
    handle(&state, &provider, &uri, &headers, body?).await
}

async fn handle(
    state: &AppState,
    provider: &str,
    uri: &axum::http::Uri,
    headers: &HeaderMap,
    body: Bytes,
) -> ApiResult<Response> {
    let plugin = state
        .plugins
        .get(provider)
        .filter(|p| p.kind() == PluginKind::Provider)
        .ok_or_else(|| {
            ApiError::not_found(
                "unknown_provider",
                format!("no provider plugin `{provider}`"),
            )
        })?;
    let path_and_query = uri.path_and_query().map(|p| p.as_str()).unwrap_or("/");
    let request = WebhookRequest {
        method: "POST".into(),
        url: format!(
            "{}{path_and_query}",
            state.config.server.public_url.trim_end_matches('/')
        ),
        headers: headers
            .iter()
            .map(|(k, v)| {
                (
                    k.as_str().to_string(),
                    String::from_utf8_lossy(v.as_bytes()).into_owned(),
                )
            })
            .collect(),
        body: body.to_vec(),
    };
    let unavailable = |e: crate::plugin::CallFailure| {
        ApiError::unavailable("provider_unavailable", e.to_string())
    };
    let rejected = |r: WebhookRejection| match r {
        WebhookRejection::Malformed(m) => ApiError::bad_request("malformed_webhook", m),
        other => ApiError::forbidden("invalid_signature", other.to_string()),
    };
    let events = plugin
        .receive_webhook(&request)
        .await
        .map_err(unavailable)?
        .map_err(|r| {
            tracing::warn!(provider, url = %request.url, "rejected webhook: {r}");
            rejected(r)
        })?;
    let message_id = uri.query().and_then(|q| {
        serde_urlencoded::from_str::<Vec<(String, String)>>(q)
            .ok()?
            .into_iter()
            .find(|(k, _)| k == "message_id")
            .map(|(_, v)| v)
    });
    let mut replies = false;
    for event in events {
        match event {
            WebhookEvent::Status(update) => {
                apply_status(state, provider, message_id.as_deref(), update).await?
            }
            WebhookEvent::Inbound(message) => {
                store_inbound(state, provider, message).await?;
                replies = true;
            }
        }
    }
    Ok(if replies {
        ([(header::CONTENT_TYPE, "text/xml")], EMPTY_TWIML).into_response()
    } else {
        StatusCode::OK.into_response()
    })
}

fn status_of(state: DeliveryState) -> MessageStatus {
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

async fn apply_status(
    state: &AppState,
    provider: &str,
    message_id: Option<&str>,
    update: StatusUpdate,
) -> ApiResult<()> {
    let lookup = match message_id {
        Some(id) => MessageLookup::Id(id.to_string()),
        None => MessageLookup::Provider {
            provider: provider.to_string(),
            provider_message_id: update.provider_message_id.clone(),
        },
    };
    let change = store::StatusUpdate {
        lookup,
        status: status_of(update.state),
        provider_status: Some(update.provider_status),
        provider_message_id: Some(update.provider_message_id.clone()),
        error: update.error.map(|e| ErrorInfo {
            code: e.code,
            message: Some(e.message),
        }),
        segments: update.segments,
        price: update.price.map(|p| store::Money {
            micros: p.micros,
            currency: p.currency,
        }),
        source: EventSource::Webhook,
        now: store::now_millis(),
    };
    match state.store.apply_status(DEFAULT_TENANT, &change).await {
        Ok(Some(_)) => Ok(()),
        Ok(None) => {
            // Not ours (or already erased): acknowledge, so the provider does not retry forever.
            tracing::warn!(provider, provider_message_id = %update.provider_message_id, "status report for an unknown message");
            Ok(())
        }
        Err(e) => Err(ApiError::internal(e)),
    }
}

async fn store_inbound(state: &AppState, provider: &str, message: InboundMessage) -> ApiResult<()> {
    let now = store::now_millis();
    let keyword = keywords::classify(&message.body);
    let inbound = store::InboundMessage {
        id: store::new_id("inb"),
        tenant_id: DEFAULT_TENANT.into(),
        provider: provider.to_string(),
        provider_message_id: message.provider_message_id,
        from_number: message.from.clone(),
        to_number: message.to.clone(),
        body: message.body,
        keyword,
        received_at: now,
    };
    let fresh = state
        .store
        .record_inbound(&inbound)
        .await
        .map_err(ApiError::internal)?;
    let Some(keyword) = keyword.filter(|_| fresh) else {
        return Ok(());
    };
    let compliance = &state.config.compliance;
    let tenant = DEFAULT_TENANT;
    let reply = match keyword {
        Keyword::Stop => {
            let changed = state
                .store
                .opt_out(
                    tenant,
                    &message.from,
                    store::ALL_CATEGORIES,
                    "inbound",
                    Some("opt-out keyword"),
                    now,
                )
                .await
                .map_err(ApiError::internal)?;
            // CTIA: one confirmation per opt-out, not one per repeated STOP.
            changed.then(|| compliance.stop_reply.clone())
        }
        Keyword::Start => {
            state
                .store
                .opt_in(tenant, &message.from, store::ALL_CATEGORIES, "inbound", now)
                .await
                .map_err(ApiError::internal)?;
            Some(compliance.start_reply.clone())
        }
        Keyword::Help => Some(compliance.help_reply.clone()),
    };
    let Some(body) = reply.filter(|r| !r.is_empty()) else {
        return Ok(());
    };
    if !crate::phone::is_e164(&message.from) {
        return Ok(());
    }
    let count = crate::segments::count(&body, crate::segments::Options::default())
        .map_err(|e| ApiError::internal(format!("reply text: {e}")))?;
    let reply = NewMessage {
        id: store::new_id("msg"),
        tenant_id: tenant.into(),
        to_number: message.from,
        sender: Some(message.to),
        body,
        template_id: None,
        category: COMPLIANCE_CATEGORY.into(),
        encoding: count.encoding,
        segments: count.segments,
        units: count.units,
        provider: provider.to_string(),
        max_attempts: state.config.delivery.max_attempts,
        customer_id: None,
        order_id: None,
        reservation_id: None,
        metadata: None,
        idempotency_key: None,
        request_hash: None,
        due_at: None,
        now,
    };
    state
        .store
        .enqueue(&reply)
        .await
        .map_err(ApiError::internal)?;
    Ok(())
}
