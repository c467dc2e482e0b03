//! Host bindings, one module per supported WIT version of `herald:plugin`.
//!
//! `bindgen!` is invoked only inside the version modules; each implements the host imports for
//! its version, calls the exports, and converts between its generated types and the
//! version-independent types of [`super::model`] at its edge. This module is the one place that
//! lists the versions: a component's version is read from its exports ([`Contract`]), and
//! [`ProviderPre`] / [`RendererPre`] hold its instantiation handle and route each call to the
//! matching module. Adding a version means one new module and one new arm per match here.

pub mod v0_1_0;
pub mod v0_2_0;

use wasmtime::component::{Component, HasSelf, Linker};
use wasmtime::{Engine, Store};

use super::host::HostState;
use super::model;

/// The WIT package name every plugin contract version shares.
pub const PACKAGE: &str = "herald:plugin";

/// Name/value pairs as WIT's `pairs` (settings; a 0.1.0 renderer's variables); the generated
/// calls take `&Vec`.
pub type Pairs = Vec<(String, String)>;

/// The contract versions this host can load, oldest first.
pub const SUPPORTED_VERSIONS: &[&str] = &["0.1.0", "0.2.0"];

/// A version of the plugin contract this host implements.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Contract {
    /// `herald:plugin@0.1.0` (`wit/v0.1.0`), frozen.
    V0_1_0,
    /// `herald:plugin@0.2.0` (`wit/v0.2.0`): HTTP errors say whether anything was sent; providers
    /// export `fetch-status` and name the sender they used; renderers take JSON variables.
    V0_2_0,
}

impl Contract {
    /// Every supported version, oldest first (matches [`SUPPORTED_VERSIONS`]).
    pub const ALL: [Contract; 2] = [Contract::V0_1_0, Contract::V0_2_0];

    /// The version number, e.g. `0.2.0`.
    pub fn version(self) -> &'static str {
        match self {
            Contract::V0_1_0 => "0.1.0",
            Contract::V0_2_0 => "0.2.0",
        }
    }

    /// The export a provider built against this version has.
    pub fn provider_export(self) -> &'static str {
        match self {
            Contract::V0_1_0 => v0_1_0::PROVIDER_EXPORT,
            Contract::V0_2_0 => v0_2_0::PROVIDER_EXPORT,
        }
    }

    /// Whether a provider of this version exports `fetch-status` (0.2.0 and later).
    pub fn has_fetch_status(self) -> bool {
        match self {
            Contract::V0_1_0 => false,
            Contract::V0_2_0 => true,
        }
    }

    /// The export a renderer built against this version has.
    pub fn renderer_export(self) -> &'static str {
        match self {
            Contract::V0_1_0 => v0_1_0::RENDERER_EXPORT,
            Contract::V0_2_0 => v0_2_0::RENDERER_EXPORT,
        }
    }
}

/// A linker with WASI (empty context) and the provider world of every supported version.
pub fn provider_linker(engine: &Engine) -> wasmtime::Result<Linker<HostState>> {
    let mut linker = Linker::new(engine);
    wasmtime_wasi::p2::add_to_linker_async(&mut linker)?;
    v0_1_0::provider::Provider::add_to_linker::<_, HasSelf<_>>(&mut linker, |s| s)?;
    v0_2_0::provider::Provider::add_to_linker::<_, HasSelf<_>>(&mut linker, |s| s)?;
    Ok(linker)
}

/// A linker with WASI (empty context) and the renderer world of every supported version: no
/// `http`, so a renderer that imports it does not link.
pub fn renderer_linker(engine: &Engine) -> wasmtime::Result<Linker<HostState>> {
    let mut linker = Linker::new(engine);
    wasmtime_wasi::p2::add_to_linker_async(&mut linker)?;
    v0_1_0::renderer::Renderer::add_to_linker::<_, HasSelf<_>>(&mut linker, |s| s)?;
    v0_2_0::renderer::Renderer::add_to_linker::<_, HasSelf<_>>(&mut linker, |s| s)?;
    Ok(linker)
}

/// A provider component ready to instantiate, with the contract version it was built against.
#[derive(Clone)]
pub enum ProviderPre {
    /// Built against `herald:plugin@0.1.0`.
    V0_1_0(v0_1_0::provider::ProviderPre<HostState>),
    /// Built against `herald:plugin@0.2.0`.
    V0_2_0(v0_2_0::provider::ProviderPre<HostState>),
}

impl ProviderPre {
    /// Links `component`, a provider built against `contract`, with `linker`.
    pub fn new(
        contract: Contract,
        linker: &Linker<HostState>,
        component: &Component,
    ) -> wasmtime::Result<Self> {
        let pre = linker.instantiate_pre(component)?;
        Ok(match contract {
            Contract::V0_1_0 => Self::V0_1_0(v0_1_0::provider::ProviderPre::new(pre)?),
            Contract::V0_2_0 => Self::V0_2_0(v0_2_0::provider::ProviderPre::new(pre)?),
        })
    }

    /// The contract version the component was built against.
    pub fn contract(&self) -> Contract {
        match self {
            Self::V0_1_0(_) => Contract::V0_1_0,
            Self::V0_2_0(_) => Contract::V0_2_0,
        }
    }

    /// Instantiates in `store` and calls `describe`.
    pub async fn describe(
        &self,
        store: &mut Store<HostState>,
    ) -> wasmtime::Result<model::PluginInfo> {
        match self {
            Self::V0_1_0(pre) => v0_1_0::describe_provider(pre, store).await,
            Self::V0_2_0(pre) => v0_2_0::describe_provider(pre, store).await,
        }
    }

    /// Instantiates in `store` and calls `send`.
    pub async fn send(
        &self,
        store: &mut Store<HostState>,
        config: &Pairs,
        message: &model::OutboundMessage,
    ) -> wasmtime::Result<model::SendOutcome> {
        match self {
            Self::V0_1_0(pre) => v0_1_0::send(pre, store, config, message).await,
            Self::V0_2_0(pre) => v0_2_0::send(pre, store, config, message).await,
        }
    }

    /// Instantiates in `store`, calls `verify-webhook` and, when it passes, `parse-webhook`.
    pub async fn receive_webhook(
        &self,
        store: &mut Store<HostState>,
        config: &Pairs,
        request: &model::WebhookRequest,
    ) -> wasmtime::Result<Result<Vec<model::WebhookEvent>, model::WebhookRejection>> {
        match self {
            Self::V0_1_0(pre) => v0_1_0::receive_webhook(pre, store, config, request).await,
            Self::V0_2_0(pre) => v0_2_0::receive_webhook(pre, store, config, request).await,
        }
    }

    /// Instantiates in `store` and calls `fetch-status`; a 0.1.0 component has no such export,
    /// so it is [`model::FetchOutcome::Unsupported`] without being instantiated.
    pub async fn fetch_status(
        &self,
        store: &mut Store<HostState>,
        config: &Pairs,
        provider_message_id: &str,
    ) -> wasmtime::Result<model::FetchOutcome> {
        match self {
            Self::V0_1_0(_) => Ok(model::FetchOutcome::Unsupported),
            Self::V0_2_0(pre) => {
                v0_2_0::fetch_status(pre, store, config, provider_message_id).await
            }
        }
    }

    /// Instantiates in `store` and calls `verify-webhook`.
    pub async fn verify_webhook(
        &self,
        store: &mut Store<HostState>,
        config: &Pairs,
        request: &model::WebhookRequest,
    ) -> wasmtime::Result<Result<(), model::WebhookRejection>> {
        match self {
            Self::V0_1_0(pre) => v0_1_0::verify_webhook(pre, store, config, request).await,
            Self::V0_2_0(pre) => v0_2_0::verify_webhook(pre, store, config, request).await,
        }
    }

    /// Instantiates in `store` and calls `parse-webhook`.
    pub async fn parse_webhook(
        &self,
        store: &mut Store<HostState>,
        config: &Pairs,
        request: &model::WebhookRequest,
    ) -> wasmtime::Result<Result<Vec<model::WebhookEvent>, model::WebhookRejection>> {
        match self {
            Self::V0_1_0(pre) => v0_1_0::parse_webhook(pre, store, config, request).await,
            Self::V0_2_0(pre) => v0_2_0::parse_webhook(pre, store, config, request).await,
        }
    }
}

impl ProviderPre {
    /// Instantiates in `store` and keeps the instance, for several calls in the same store
    /// (instance reuse, [`crate::plugin::reuse`]).
    pub async fn instantiate(
        &self,
        store: &mut Store<HostState>,
    ) -> wasmtime::Result<ProviderInstance> {
        Ok(match self {
            Self::V0_1_0(pre) => ProviderInstance::V0_1_0(
                pre.instantiate_async(&mut *store)
                    .await?
                    .herald_plugin_provider_api()
                    .clone(),
            ),
            Self::V0_2_0(pre) => ProviderInstance::V0_2_0(
                pre.instantiate_async(&mut *store)
                    .await?
                    .herald_plugin_provider_api()
                    .clone(),
            ),
        })
    }
}

/// The exports of one live provider instance, to call again in the store it was made in.
/// Cloning copies the function handles, not the instance.
#[derive(Clone)]
pub enum ProviderInstance {
    /// Built against `herald:plugin@0.1.0`.
    V0_1_0(v0_1_0::provider::exports::herald::plugin::provider_api::Guest),
    /// Built against `herald:plugin@0.2.0`.
    V0_2_0(v0_2_0::provider::exports::herald::plugin::provider_api::Guest),
}

impl ProviderInstance {
    /// Calls `send` on this instance, in the `store` it lives in.
    pub async fn send(
        &self,
        store: &mut Store<HostState>,
        config: &Pairs,
        message: &model::OutboundMessage,
    ) -> wasmtime::Result<model::SendOutcome> {
        Ok(match self {
            Self::V0_1_0(api) => v0_1_0::send_outcome(
                api.call_send(store, config, &v0_1_0::outbound(message))
                    .await?,
            ),
            Self::V0_2_0(api) => v0_2_0::send_outcome(
                api.call_send(store, config, &v0_2_0::outbound(message))
                    .await?,
            ),
        })
    }
}

/// A renderer component ready to instantiate, with the contract version it was built against.
#[derive(Clone)]
pub enum RendererPre {
    /// Built against `herald:plugin@0.1.0`.
    V0_1_0(v0_1_0::renderer::RendererPre<HostState>),
    /// Built against `herald:plugin@0.2.0`.
    V0_2_0(v0_2_0::renderer::RendererPre<HostState>),
}

impl RendererPre {
    /// Links `component`, a renderer built against `contract`, with `linker`.
    pub fn new(
        contract: Contract,
        linker: &Linker<HostState>,
        component: &Component,
    ) -> wasmtime::Result<Self> {
        let pre = linker.instantiate_pre(component)?;
        Ok(match contract {
            Contract::V0_1_0 => Self::V0_1_0(v0_1_0::renderer::RendererPre::new(pre)?),
            Contract::V0_2_0 => Self::V0_2_0(v0_2_0::renderer::RendererPre::new(pre)?),
        })
    }

    /// The contract version the component was built against.
    pub fn contract(&self) -> Contract {
        match self {
            Self::V0_1_0(_) => Contract::V0_1_0,
            Self::V0_2_0(_) => Contract::V0_2_0,
        }
    }

    /// Instantiates in `store` and calls `describe`.
    pub async fn describe(
        &self,
        store: &mut Store<HostState>,
    ) -> wasmtime::Result<model::PluginInfo> {
        match self {
            Self::V0_1_0(pre) => v0_1_0::describe_renderer(pre, store).await,
            Self::V0_2_0(pre) => v0_2_0::describe_renderer(pre, store).await,
        }
    }

    /// Instantiates in `store` and calls `validate`.
    pub async fn validate(
        &self,
        store: &mut Store<HostState>,
        template: &str,
    ) -> wasmtime::Result<Result<Vec<String>, model::TemplateError>> {
        match self {
            Self::V0_1_0(pre) => v0_1_0::validate(pre, store, template).await,
            Self::V0_2_0(pre) => v0_2_0::validate(pre, store, template).await,
        }
    }

    /// Instantiates in `store` and calls `render`.
    pub async fn render(
        &self,
        store: &mut Store<HostState>,
        template: &str,
        variables: &model::Variables,
        missing: model::MissingVariables,
    ) -> wasmtime::Result<Result<model::RenderedText, model::RenderError>> {
        match self {
            Self::V0_1_0(pre) => v0_1_0::render(pre, store, template, variables, missing).await,
            Self::V0_2_0(pre) => v0_2_0::render(pre, store, template, variables, missing).await,
        }
    }
}
