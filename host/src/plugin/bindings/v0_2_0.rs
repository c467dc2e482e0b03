//! Bindings for `herald:plugin@0.2.0` (`wit/v0.2.0`, unreleased): the host imports, the calls
//! into the exports, and conversions into host types.
//!
//! New in 0.2.0: `http-error` says whether a failed request can have reached the server
//! (`not-sent` / `maybe-sent`), so a provider can retry a request that never left the host;
//! `fetch-status` reads a message's current status back from the provider; `accepted` and
//! `status-update` name the sender the provider used; `render` takes the variables as one JSON
//! object (so sections can iterate lists) and can report missing variables instead of failing.

use wasmtime::Store;

use super::Pairs;
use crate::plugin::host::HostState;
use crate::plugin::model;

/// The `provider` world: imports `http` and `log`, exports `provider-api`.
#[allow(missing_docs)]
pub mod provider {
    wasmtime::component::bindgen!({
        world: "provider",
        path: "../wit/v0.2.0",
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
        path: "../wit/v0.2.0",
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
pub const PROVIDER_EXPORT: &str = "herald:plugin/provider-api@0.2.0";
/// The export name a renderer of this version has.
pub const RENDERER_EXPORT: &str = "herald:plugin/renderer-api@0.2.0";

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

/// The host's error in 0.2.0's terms: the same split, case for case.
fn http_error(e: model::HttpError) -> types::HttpError {
    use model::{HttpError, MaybeSent, NotSent};
    match e {
        HttpError::NotSent(reason) => types::HttpError::NotSent(match reason {
            NotSent::Denied(text) => types::NotSentReason::Denied(text),
            NotSent::InvalidRequest(text) => types::NotSentReason::InvalidRequest(text),
            NotSent::Unreachable(text) => types::NotSentReason::Unreachable(text),
        }),
        HttpError::MaybeSent(reason) => types::HttpError::MaybeSent(match reason {
            MaybeSent::Timeout => types::MaybeSentReason::Timeout,
            MaybeSent::Transport(text) => types::MaybeSentReason::Transport(text),
            MaybeSent::ResponseTooLarge => types::MaybeSentReason::ResponseTooLarge,
        }),
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

/// Instantiates a provider and calls `fetch-status`.
pub async fn fetch_status(
    pre: &provider::ProviderPre<HostState>,
    store: &mut Store<HostState>,
    config: &Pairs,
    provider_message_id: &str,
) -> wasmtime::Result<model::FetchOutcome> {
    let i = pre.instantiate_async(&mut *store).await?;
    let r = i
        .herald_plugin_provider_api()
        .call_fetch_status(store, config, provider_message_id)
        .await?;
    Ok(fetch_outcome(r))
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

/// Instantiates a renderer and calls `render`, handing it the variables as one JSON object.
pub async fn render(
    pre: &renderer::RendererPre<HostState>,
    store: &mut Store<HostState>,
    template: &str,
    variables: &model::Variables,
    missing: model::MissingVariables,
) -> wasmtime::Result<Result<model::RenderedText, model::RenderError>> {
    let variables = serde_json::to_string(variables)?;
    let missing = match missing {
        model::MissingVariables::Refuse => r::MissingVariables::Refuse,
        model::MissingVariables::Report => r::MissingVariables::Report,
    };
    let i = pre.instantiate_async(&mut *store).await?;
    let r = i
        .herald_plugin_renderer_api()
        .call_render(store, template, &variables, missing)
        .await?;
    Ok(render_result(r))
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
            sender: a.sender,
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

fn status_update(s: p::StatusUpdate) -> model::StatusUpdate {
    model::StatusUpdate {
        provider_message_id: s.provider_message_id,
        state: delivery_state(s.state),
        provider_status: s.provider_status,
        error: s.error.map(provider_error),
        segments: s.segments,
        price: s.price.map(money),
        sender: s.sender,
    }
}

/// Converts this version's `fetch-status` result.
pub fn fetch_outcome(r: Result<p::StatusUpdate, p::FetchStatusError>) -> model::FetchOutcome {
    match r {
        Ok(s) => model::FetchOutcome::Status(status_update(s)),
        Err(p::FetchStatusError::Retryable(r)) => model::FetchOutcome::Retryable {
            error: provider_error(r.error),
            retry_after_ms: r.retry_after_ms,
        },
        Err(p::FetchStatusError::Permanent(e)) => model::FetchOutcome::Permanent(provider_error(e)),
    }
}

/// Converts this version's webhook events.
pub fn webhook_events(events: Vec<p::WebhookEvent>) -> Vec<model::WebhookEvent> {
    events
        .into_iter()
        .map(|e| match e {
            p::WebhookEvent::Status(s) => model::WebhookEvent::Status(status_update(s)),
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
pub fn render_result(
    r: Result<r::Rendered, r::RenderError>,
) -> Result<model::RenderedText, model::RenderError> {
    r.map(|rendered| model::RenderedText {
        text: rendered.text,
        missing: rendered.missing,
    })
    .map_err(|e| match e {
        r::RenderError::MissingVariable(name) => model::RenderError::MissingVariable(name),
        r::RenderError::InvalidTemplate(t) => {
            model::RenderError::InvalidTemplate(template_error(t))
        }
    })
}
