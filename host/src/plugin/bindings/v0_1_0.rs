//! Bindings for `herald:plugin@0.1.0` (`wit/v0.1.0`, frozen): the host imports, the calls into
//! the exports, and conversions into host types.
//!
//! 0.1.0's `http-error` does not say whether a failed request was sent; the host's finer errors
//! are folded back into its cases (a request that never connected becomes `transport`).

use wasmtime::Store;

use super::Pairs;
use crate::plugin::bounds::MAX_NAMES;
use crate::plugin::host::HostState;
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

impl types::Host for HostState {}

impl http::Host for HostState {
    async fn send(
        &mut self,
        request: types::HttpRequest,
    ) -> Result<types::HttpResponse, types::HttpError> {
        let request = model::HttpRequest {
            method: request.method,
            url: request.url,
            headers: request.headers,
            body: request.body,
        };
        match self.http_send(request).await {
            Ok(r) => Ok(types::HttpResponse {
                status: r.status,
                headers: r.headers,
                body: r.body,
            }),
            Err(e) => Err(http_error(e)),
        }
    }
}

/// Folds the host's error into 0.1.0's cases, which keep no record of whether anything was sent.
fn http_error(e: model::HttpError) -> types::HttpError {
    use model::{HttpError, MaybeSent, NotSent};
    match e {
        HttpError::NotSent(NotSent::Denied(text)) => types::HttpError::Denied(text),
        HttpError::NotSent(NotSent::InvalidRequest(text)) => types::HttpError::InvalidRequest(text),
        HttpError::NotSent(NotSent::Unreachable(text))
        | HttpError::MaybeSent(MaybeSent::Transport(text)) => types::HttpError::Transport(text),
        HttpError::MaybeSent(MaybeSent::Timeout) => types::HttpError::Timeout,
        HttpError::MaybeSent(MaybeSent::ResponseTooLarge) => types::HttpError::ResponseTooLarge,
    }
}

impl log::Host for HostState {
    fn log(&mut self, level: log::Level, message: String) {
        let level = match level {
            log::Level::Trace => model::LogLevel::Trace,
            log::Level::Debug => model::LogLevel::Debug,
            log::Level::Info => model::LogLevel::Info,
            log::Level::Warn => model::LogLevel::Warn,
            log::Level::Error => model::LogLevel::Error,
        };
        HostState::log(self, level, message);
    }
}

/// Instantiates a provider and calls `describe`.
pub async fn describe_provider(
    pre: &provider::ProviderPre<HostState>,
    store: &mut Store<HostState>,
) -> wasmtime::Result<model::PluginInfo> {
    let i = pre.instantiate_async(&mut *store).await?;
    let info = i.herald_plugin_provider_api().call_describe(store).await?;
    Ok(info.into())
}

/// Instantiates a renderer and calls `describe`.
pub async fn describe_renderer(
    pre: &renderer::RendererPre<HostState>,
    store: &mut Store<HostState>,
) -> wasmtime::Result<model::PluginInfo> {
    let i = pre.instantiate_async(&mut *store).await?;
    let info = i.herald_plugin_renderer_api().call_describe(store).await?;
    Ok(info.into())
}

/// Instantiates a provider and calls `send`.
pub async fn send(
    pre: &provider::ProviderPre<HostState>,
    store: &mut Store<HostState>,
    config: &Pairs,
    message: &model::OutboundMessage,
) -> wasmtime::Result<model::SendOutcome> {
    let i = pre.instantiate_async(&mut *store).await?;
    let r = i
        .herald_plugin_provider_api()
        .call_send(store, config, &outbound(message))
        .await?;
    Ok(send_outcome(r))
}

/// Instantiates a provider once and calls `verify-webhook`, then `parse-webhook` if it passed.
pub async fn receive_webhook(
    pre: &provider::ProviderPre<HostState>,
    store: &mut Store<HostState>,
    config: &Pairs,
    request: &model::WebhookRequest,
) -> wasmtime::Result<Result<Vec<model::WebhookEvent>, model::WebhookRejection>> {
    let i = pre.instantiate_async(&mut *store).await?;
    let api = i.herald_plugin_provider_api();
    let wire = webhook_request(request);
    if let Err(rejection) = api.call_verify_webhook(&mut *store, config, &wire).await? {
        return Ok(Err(webhook_rejection(rejection)));
    }
    let r = api.call_parse_webhook(store, config, &wire).await?;
    Ok(r.map(webhook_events).map_err(webhook_rejection))
}

/// Instantiates a provider and calls `verify-webhook`.
pub async fn verify_webhook(
    pre: &provider::ProviderPre<HostState>,
    store: &mut Store<HostState>,
    config: &Pairs,
    request: &model::WebhookRequest,
) -> wasmtime::Result<Result<(), model::WebhookRejection>> {
    let i = pre.instantiate_async(&mut *store).await?;
    let r = i
        .herald_plugin_provider_api()
        .call_verify_webhook(store, config, &webhook_request(request))
        .await?;
    Ok(r.map_err(webhook_rejection))
}

/// Instantiates a provider and calls `parse-webhook`.
pub async fn parse_webhook(
    pre: &provider::ProviderPre<HostState>,
    store: &mut Store<HostState>,
    config: &Pairs,
    request: &model::WebhookRequest,
) -> wasmtime::Result<Result<Vec<model::WebhookEvent>, model::WebhookRejection>> {
    let i = pre.instantiate_async(&mut *store).await?;
    let r = i
        .herald_plugin_provider_api()
        .call_parse_webhook(store, config, &webhook_request(request))
        .await?;
    Ok(r.map(webhook_events).map_err(webhook_rejection))
}

/// Instantiates a renderer and calls `validate`.
pub async fn validate(
    pre: &renderer::RendererPre<HostState>,
    store: &mut Store<HostState>,
    template: &str,
) -> wasmtime::Result<Result<Vec<String>, model::TemplateError>> {
    let i = pre.instantiate_async(&mut *store).await?;
    let r = i
        .herald_plugin_renderer_api()
        .call_validate(store, template)
        .await?;
    Ok(validate_result(r))
}

/// Instantiates a renderer and calls `render`. This contract takes text values only, so a list
/// or an object is refused before the call; and its renderers refuse a missing variable, so a
/// report of missing ones is made by supplying the names `validate` finds as empty text.
pub async fn render(
    pre: &renderer::RendererPre<HostState>,
    store: &mut Store<HostState>,
    template: &str,
    variables: &model::Variables,
    missing: model::MissingVariables,
) -> wasmtime::Result<Result<model::RenderedText, model::RenderError>> {
    let mut pairs: Pairs = Vec::with_capacity(variables.len());
    for (name, value) in variables {
        let text = match value {
            serde_json::Value::String(s) => s.clone(),
            serde_json::Value::Number(n) => n.to_string(),
            serde_json::Value::Bool(b) => b.to_string(),
            serde_json::Value::Null => String::new(),
            serde_json::Value::Array(_) | serde_json::Value::Object(_) => {
                return Ok(Err(model::RenderError::UnsupportedValue(name.clone())));
            }
        };
        pairs.push((name.clone(), text));
    }
    // One instance for both calls: a call may not instantiate twice (its store holds one
    // instance's memory).
    let i = pre.instantiate_async(&mut *store).await?;
    let api = i.herald_plugin_renderer_api();
    let mut absent = Vec::new();
    if missing == model::MissingVariables::Report {
        let named = api.call_validate(&mut *store, template).await?;
        // The names are the plugin's: no more are taken than the host keeps from a validation.
        for name in named.unwrap_or_default().into_iter().take(MAX_NAMES) {
            if !variables.contains_key(&name) && !absent.contains(&name) {
                pairs.push((name.clone(), String::new()));
                absent.push(name);
            }
        }
    }
    let r = api.call_render(store, template, &pairs).await?;
    Ok(render_result(r).map(|text| model::RenderedText {
        text,
        missing: absent,
    }))
}

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
            // 0.1.0's `accepted` does not name the sender.
            sender: None,
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
                sender: None,
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

#[cfg(test)]
mod tests {
    use super::*;
    use model::{HttpError, MaybeSent, NotSent};

    /// 0.1.0 plugins see the errors they always saw: a request that never connected is
    /// `transport`, like one that failed after it was sent.
    #[test]
    fn http_errors_fold_into_the_0_1_0_shape() {
        let cases = [
            (
                HttpError::NotSent(NotSent::Denied("d".into())),
                types::HttpError::Denied("d".into()),
            ),
            (
                HttpError::NotSent(NotSent::InvalidRequest("i".into())),
                types::HttpError::InvalidRequest("i".into()),
            ),
            (
                HttpError::NotSent(NotSent::Unreachable("refused".into())),
                types::HttpError::Transport("refused".into()),
            ),
            (
                HttpError::MaybeSent(MaybeSent::Transport("reset".into())),
                types::HttpError::Transport("reset".into()),
            ),
            (
                HttpError::MaybeSent(MaybeSent::Timeout),
                types::HttpError::Timeout,
            ),
            (
                HttpError::MaybeSent(MaybeSent::ResponseTooLarge),
                types::HttpError::ResponseTooLarge,
            ),
        ];
        for (host, expected) in cases {
            assert_eq!(format!("{:?}", http_error(host)), format!("{expected:?}"));
        }
    }
}
