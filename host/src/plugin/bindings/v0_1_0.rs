//! Bindings for `herald:plugin@0.1.0` (`wit/v0.1.0`) and conversions into host types.

use crate::plugin::model;

/// The `provider` world: imports `http` and `log`, exports `provider-api`.
#[allow(missing_docs)]
pub mod provider {
    wasmtime::component::bindgen!({
        world: "provider",
        path: "../wit/v0.1.0",
        imports: { "herald:plugin/http.send": async },
        exports: { default: async },
    });
}

/// The `renderer` world: imports `log`, exports `renderer-api`. Shares the `types` and `log`
/// interfaces with the provider world so one host implementation serves both.
#[allow(missing_docs)]
pub mod renderer {
    wasmtime::component::bindgen!({
        world: "renderer",
        path: "../wit/v0.1.0",
        exports: { default: async },
        with: {
            "herald:plugin/types": super::provider::herald::plugin::types,
            "herald:plugin/log": super::provider::herald::plugin::log,
        },
    });
}

use provider::exports::herald::plugin::provider_api as p;
pub use provider::herald::plugin::{http, log, types};
use renderer::exports::herald::plugin::renderer_api as r;

/// The export name a provider of this version has.
pub const PROVIDER_EXPORT: &str = "herald:plugin/provider-api@0.1.0";
/// The export name a renderer of this version has.
pub const RENDERER_EXPORT: &str = "herald:plugin/renderer-api@0.1.0";

impl From<types::PluginInfo> for model::PluginInfo {
    fn from(i: types::PluginInfo) -> Self {
        Self {
            name: i.name,
            version: i.version,
            description: i.description,
            config_keys: i
                .config_keys
                .into_iter()
                .map(|k| model::ConfigKey {
                    name: k.name,
                    description: k.description,
                    required: k.required,
                    secret: k.secret,
                })
                .collect(),
            outbound_hosts: i.outbound_hosts,
        }
    }
}

fn money(m: types::Money) -> model::Money {
    model::Money {
        micros: m.micros,
        currency: m.currency,
    }
}

fn provider_error(e: p::ProviderError) -> model::ProviderError {
    model::ProviderError {
        code: e.code,
        message: e.message,
    }
}

/// Converts a host message into this version's record.
pub fn outbound(m: &model::OutboundMessage) -> p::OutboundMessage {
    p::OutboundMessage {
        message_id: m.message_id.clone(),
        to: m.to.clone(),
        sender: m.sender.as_ref().map(|s| match s {
            model::Sender::From(v) => p::Sender::From(v.clone()),
            model::Sender::Pool(v) => p::Sender::Pool(v.clone()),
        }),
        body: m.body.clone(),
        encoding: match m.encoding {
            model::Encoding::Gsm7 => p::Encoding::Gsm7,
            model::Encoding::Ucs2 => p::Encoding::Ucs2,
        },
        segments: m.segments,
        status_callback: m.status_callback.clone(),
        attempt: m.attempt,
    }
}

/// Converts this version's send result into the host's outcome.
pub fn send_outcome(r: Result<p::Accepted, p::SendError>) -> model::SendOutcome {
    match r {
        Ok(a) => model::SendOutcome::Accepted(model::Accepted {
            provider_message_id: a.provider_message_id,
            provider_status: a.provider_status,
            segments: a.segments,
            price: a.price.map(money),
        }),
        Err(p::SendError::Retryable(r)) => model::SendOutcome::Retryable {
            error: provider_error(r.error),
            retry_after_ms: r.retry_after_ms,
        },
        Err(p::SendError::Refused(e)) => model::SendOutcome::Refused(provider_error(e)),
        Err(p::SendError::Unknown(e)) => model::SendOutcome::Unknown(provider_error(e)),
        Err(p::SendError::OptedOut(e)) => model::SendOutcome::OptedOut(provider_error(e)),
        Err(p::SendError::InvalidRecipient(e)) => {
            model::SendOutcome::InvalidRecipient(provider_error(e))
        }
    }
}

/// Converts a received webhook into this version's request record.
pub fn webhook_request(w: &model::WebhookRequest) -> types::HttpRequest {
    types::HttpRequest {
        method: w.method.clone(),
        url: w.url.clone(),
        headers: w.headers.clone(),
        body: w.body.clone(),
    }
}

/// Converts this version's webhook error.
pub fn webhook_rejection(e: p::WebhookError) -> model::WebhookRejection {
    match e {
        p::WebhookError::Unsigned => model::WebhookRejection::Unsigned,
        p::WebhookError::BadSignature => model::WebhookRejection::BadSignature,
        p::WebhookError::Malformed(m) => model::WebhookRejection::Malformed(m),
    }
}

fn delivery_state(s: p::DeliveryState) -> model::DeliveryState {
    match s {
        p::DeliveryState::Queued => model::DeliveryState::Queued,
        p::DeliveryState::Sending => model::DeliveryState::Sending,
        p::DeliveryState::Sent => model::DeliveryState::Sent,
        p::DeliveryState::Delivered => model::DeliveryState::Delivered,
        p::DeliveryState::Undelivered => model::DeliveryState::Undelivered,
        p::DeliveryState::Failed => model::DeliveryState::Failed,
        p::DeliveryState::Canceled => model::DeliveryState::Canceled,
        p::DeliveryState::Read => model::DeliveryState::Read,
    }
}

/// Converts this version's webhook events.
pub fn webhook_events(events: Vec<p::WebhookEvent>) -> Vec<model::WebhookEvent> {
    events
        .into_iter()
        .map(|e| match e {
            p::WebhookEvent::Status(s) => model::WebhookEvent::Status(model::StatusUpdate {
                provider_message_id: s.provider_message_id,
                state: delivery_state(s.state),
                provider_status: s.provider_status,
                error: s.error.map(provider_error),
                segments: s.segments,
                price: s.price.map(money),
            }),
            p::WebhookEvent::Inbound(i) => model::WebhookEvent::Inbound(model::InboundMessage {
                provider_message_id: i.provider_message_id,
                from: i.from,
                to: i.to,
                body: i.body,
                segments: i.segments,
            }),
        })
        .collect()
}

fn template_error(e: r::TemplateError) -> model::TemplateError {
    model::TemplateError {
        message: e.message,
        position: e.position.map(|p| model::Position {
            line: p.line,
            column: p.column,
        }),
    }
}

/// Converts this version's validate result.
pub fn validate_result(
    r: Result<Vec<String>, r::TemplateError>,
) -> Result<Vec<String>, model::TemplateError> {
    r.map_err(template_error)
}

/// Converts this version's render result.
pub fn render_result(r: Result<String, r::RenderError>) -> Result<String, model::RenderError> {
    r.map_err(|e| match e {
        r::RenderError::MissingVariable(name) => model::RenderError::MissingVariable(name),
        r::RenderError::InvalidTemplate(t) => {
            model::RenderError::InvalidTemplate(template_error(t))
        }
    })
}
