//! One loaded, validated plugin version and the calls into it.
//!
//! Every call made here gets a fresh store and a fresh instance from the pooling allocator
//! (about 20 µs), so a trap, a limit hit or a cancelled call can never leave state behind for the
//! next one, and secrets handed to one call are gone when it ends. The dispatcher may instead
//! keep one instance for several sends of one tenant under one plugin version
//! ([`reuse`](super::reuse)); the per-call limits below are set anew for each of those calls too. Limits per call: linear memory (the store's
//! limiter), CPU (the time the call holds a runtime thread, host imports included: see
//! [`meter`](super::meter)), the bytes one host call may pass in (hostcall fuel), and a
//! wall-clock deadline that also covers host HTTP. Before any of that, a permit of the plugin's
//! concurrency [`gate`](super::gate).
//!
//! Every output is bounded and redacted here, as each call returns ([`super::bounds`]), so no
//! caller can store, log or answer with an unbounded or secret-bearing plugin string.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use serde::Serialize;
use wasmtime::{Engine, Store, Trap, UpdateDeadline};

use super::bindings::{ProviderPre, RendererPre};
use super::bounds::Sanitizer;
use super::gate::{Gate, Share};
use super::host::{HostState, HttpGrant, Redactor};
use super::meter::{Meter, Metered};
use super::model::*;

/// The instantiation handle of one component, by role (each knows its contract version).
#[derive(Clone)]
pub(crate) enum Pre {
    Provider(ProviderPre),
    Renderer(RendererPre),
}

/// Why a call into a plugin produced no result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, thiserror::Error)]
#[error("plugin `{plugin}` {kind}: {message}")]
pub struct CallFailure {
    /// The plugin's name.
    pub plugin: String,
    /// What stopped the call.
    pub kind: FailureKind,
    /// Details (redacted).
    pub message: String,
    /// Whether an outbound HTTP request the plugin made during the call may have reached its
    /// server; requests refused before sending, or that never connected, do not count.
    pub made_request: bool,
}

/// What stopped a plugin call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, thiserror::Error)]
#[serde(rename_all = "snake_case")]
pub enum FailureKind {
    /// The guest trapped (a panic, an unreachable, a bad memory access).
    #[error("trapped")]
    Trap,
    /// The guest used up its CPU budget.
    #[error("exceeded its CPU budget")]
    CpuLimit,
    /// The guest tried to grow its memory past its limit.
    #[error("exceeded its memory limit")]
    MemoryLimit,
    /// The call passed its wall-clock deadline.
    #[error("timed out")]
    Timeout,
    /// No instance could be created.
    #[error("could not be instantiated")]
    Instantiate,
    /// The plugin does not serve the role that was called.
    #[error("has the wrong role")]
    WrongKind,
    /// Every instance the plugin may use is busy and the wait for one ran out: back-pressure,
    /// not a fault of the plugin. Nothing ran.
    #[error("is busy")]
    Busy,
}

/// Resolved limits and grants of one plugin version.
#[derive(Debug, Clone)]
pub(crate) struct Limits {
    pub memory_bytes: usize,
    pub cpu: Duration,
    pub timeout: Duration,
}

/// The most bytes (roughly) one call from a plugin into the host may pass in: wasmtime's
/// hostcall fuel, so a guest cannot make the host allocate without bound for it (the default is
/// 128 MiB). Legitimate host calls pass a log line or an HTTP request of a few KiB.
pub(crate) const HOSTCALL_FUEL: usize = 4 << 20;

impl Limits {
    pub fn new(memory_mb: u64, cpu_ms: u64, timeout_ms: u64) -> Self {
        Self {
            memory_bytes: (memory_mb as usize) << 20,
            cpu: Duration::from_millis(cpu_ms.max(1)),
            timeout: Duration::from_millis(timeout_ms),
        }
    }
}

type CallFuture<'s, T> = Pin<Box<dyn Future<Output = wasmtime::Result<T>> + Send + 's>>;

/// A plugin version that passed validation and can serve calls.
pub struct LoadedPlugin {
    pub(crate) name: Arc<str>,
    pub(crate) kind: PluginKind,
    pub(crate) info: PluginInfo,
    pub(crate) hash: String,
    pub(crate) fingerprint: String,
    /// Which load this version came from: unique in the process, so a reload (even of the same
    /// file and settings) is a new version that no reused instance of the old one may serve.
    pub(crate) generation: u64,
    pub(crate) config: Arc<Vec<(String, String)>>,
    pub(crate) grant: Option<Arc<HttpGrant>>,
    pub(crate) redactor: Arc<Redactor>,
    pub(crate) limits: Limits,
    /// Events kept from one webhook.
    pub(crate) max_webhook_events: usize,
    pub(crate) pre: Pre,
    pub(crate) engine: Engine,
    pub(crate) gate: Arc<Gate>,
    /// Where each call's latency is recorded.
    pub(crate) metrics: crate::metrics::Metrics,
}

/// The next [`LoadedPlugin::generation`].
pub(crate) fn next_generation() -> u64 {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
    NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
}

impl LoadedPlugin {
    /// The plugin's configured name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Its role.
    pub fn kind(&self) -> PluginKind {
        self.kind
    }

    /// What it said about itself.
    pub fn info(&self) -> &PluginInfo {
        &self.info
    }

    /// Which load of the plugin this version is (unique in the process; a reload makes a new
    /// one). A tenant's view of a version keeps the version's generation.
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// SHA-256 of its component.
    pub fn hash(&self) -> &str {
        &self.hash
    }

    /// The contract version its component was built against, e.g. `0.2.0`.
    pub fn contract(&self) -> &'static str {
        match &self.pre {
            Pre::Provider(pre) => pre.contract().version(),
            Pre::Renderer(pre) => pre.contract().version(),
        }
    }

    /// The bounds and redaction applied to this plugin's output.
    fn sanitizer(&self) -> Sanitizer<'_> {
        Sanitizer::new(&self.name, &self.redactor, self.max_webhook_events)
    }

    /// A fresh store for one instance of this plugin, with its memory limiter and hostcall fuel;
    /// [`LoadedPlugin::call_in`] sets the per-call limits.
    pub(crate) fn new_store(&self) -> Store<HostState> {
        let state = HostState::new(
            self.name.clone(),
            self.limits.memory_bytes,
            self.grant.clone(),
            self.redactor.clone(),
            Arc::new(AtomicBool::new(false)),
        );
        let mut store = Store::new(&self.engine, state);
        store.limiter(|s| &mut s.limits);
        store
    }

    /// Runs one call of `function` in a fresh store under this plugin's limits, holding a
    /// permit of `share` for its whole length (refused as [`FailureKind::Busy`] when none comes
    /// free in time), and records its latency, the wait for a permit included: that wait is
    /// part of what a caller sees.
    pub(crate) async fn run<T: Send>(
        &self,
        function: &'static str,
        share: Share,
        call: impl for<'s> FnOnce(&'s mut Store<HostState>) -> CallFuture<'s, T>,
    ) -> Result<T, CallFailure> {
        let started = std::time::Instant::now();
        let result = self.run_unmeasured(share, call).await;
        self.metrics
            .plugin_call(&self.name, function, started.elapsed());
        result
    }

    async fn run_unmeasured<T: Send>(
        &self,
        share: Share,
        call: impl for<'s> FnOnce(&'s mut Store<HostState>) -> CallFuture<'s, T>,
    ) -> Result<T, CallFailure> {
        let _permit = self.enter(share).await?;
        let mut store = self.new_store();
        self.call_in(&mut store, call).await
    }

    /// A permit of `share` of this plugin's instances, or the busy failure.
    pub(crate) async fn enter(
        &self,
        share: Share,
    ) -> Result<Option<tokio::sync::OwnedSemaphorePermit>, CallFailure> {
        self.gate.enter(share).await.map_err(|busy| CallFailure {
            plugin: self.name.to_string(),
            kind: FailureKind::Busy,
            message: busy.0,
            made_request: false,
        })
    }

    /// Runs one call in `store` (fresh, or an instance kept for reuse) under this plugin's
    /// per-call limits, each set anew: a fresh CPU meter and epoch deadline, hostcall fuel, the
    /// wall-clock deadline and the log budget. Any `Err` leaves the store unfit for another call.
    pub(crate) async fn call_in<T: Send>(
        &self,
        store: &mut Store<HostState>,
        call: impl for<'s> FnOnce(&'s mut Store<HostState>) -> CallFuture<'s, T>,
    ) -> Result<T, CallFailure> {
        let meter = Meter::new();
        store.data_mut().begin_call();
        store.set_hostcall_fuel(HOSTCALL_FUEL);
        // The callback runs at least once per epoch tick while guest code executes: yielding
        // lets the wall-clock timeout fire, and the meter says how much CPU time the call has
        // had, host imports included.
        store.set_epoch_deadline(1);
        let budget = self.limits.cpu;
        let charged = meter.clone();
        store.epoch_deadline_callback(move |_| {
            Ok(if charged.used() > budget {
                UpdateDeadline::Interrupt
            } else {
                UpdateDeadline::Yield(1)
            })
        });
        let outcome =
            tokio::time::timeout(self.limits.timeout, Metered::new(call(store), meter)).await;
        let failure = |kind, message: String| CallFailure {
            plugin: self.name.to_string(),
            kind,
            message: self.sanitizer().text(&message),
            made_request: store.data().made_request(),
        };
        match outcome {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(error)) => {
                let (kind, mut message) = classify(&error);
                if store.data().stderr_full() {
                    // A write that does not fit is refused; a Rust guest then aborts, so the
                    // trap itself only says `unreachable`.
                    message = format!(
                        "{message}; its stderr reached the {} bytes the host keeps, and further writes were refused",
                        super::host::STDERR_CAPACITY
                    );
                }
                let stderr = store.data().stderr_text();
                if !stderr.is_empty() {
                    message = format!("{message}; plugin stderr: {stderr}");
                }
                Err(failure(kind, message))
            }
            Err(_) => Err(failure(
                FailureKind::Timeout,
                format!("no result within {:?}", self.limits.timeout),
            )),
        }
    }

    fn wrong_kind(&self, wanted: PluginKind) -> CallFailure {
        CallFailure {
            plugin: self.name.to_string(),
            kind: FailureKind::WrongKind,
            message: format!("is a {:?}, not a {wanted:?}", self.kind).to_lowercase(),
            made_request: false,
        }
    }

    pub(crate) fn provider_pre(&self) -> Result<ProviderPre, CallFailure> {
        match &self.pre {
            Pre::Provider(pre) => Ok(pre.clone()),
            Pre::Renderer(_) => Err(self.wrong_kind(PluginKind::Provider)),
        }
    }

    fn renderer_pre(&self) -> Result<RendererPre, CallFailure> {
        match &self.pre {
            Pre::Renderer(pre) => Ok(pre.clone()),
            Pre::Provider(_) => Err(self.wrong_kind(PluginKind::Renderer)),
        }
    }

    /// Calls `describe`, whatever the role.
    pub(crate) async fn describe(&self) -> Result<PluginInfo, CallFailure> {
        let pre = self.pre.clone();
        self.run("describe", Share::Validation, move |store| {
            Box::pin(async move {
                match pre {
                    Pre::Provider(pre) => pre.describe(store).await,
                    Pre::Renderer(pre) => pre.describe(store).await,
                }
            })
        })
        .await
        .map(|info| self.sanitizer().info(info))
    }

    /// Sends one message. A failure of the plugin itself is classified here: retryable when no
    /// outbound request of the call can have reached the provider, unknown when one may have.
    pub async fn send(&self, message: &OutboundMessage) -> SendOutcome {
        let pre = match self.provider_pre() {
            Ok(pre) => pre,
            Err(f) => {
                return SendOutcome::Refused(ProviderError {
                    code: None,
                    message: self.sanitizer().text(&f.to_string()),
                });
            }
        };
        let config = self.config.clone();
        let message = message.clone();
        let result = self
            .run("send", Share::Calls, move |store| {
                Box::pin(async move { pre.send(store, &config, &message).await })
            })
            .await;
        self.send_result(result)
    }

    /// A send's result as the pipeline sees it: bounded and redacted when the plugin answered;
    /// busy, unknown or retryable when the call itself failed (see [`LoadedPlugin::send`]).
    pub(crate) fn send_result(&self, result: Result<SendOutcome, CallFailure>) -> SendOutcome {
        match result {
            Ok(outcome) => self.sanitizer().send(outcome),
            Err(f) => {
                let error = ProviderError {
                    code: None,
                    message: self.sanitizer().text(&f.to_string()),
                };
                if f.kind == FailureKind::Busy {
                    SendOutcome::Busy(error)
                } else if f.made_request {
                    SendOutcome::Unknown(error)
                } else {
                    SendOutcome::Retryable {
                        error,
                        retry_after_ms: None,
                    }
                }
            }
        }
    }

    /// Whether the plugin can be asked for a message's status: a provider on contract 0.2.0 or
    /// later.
    pub fn supports_fetch_status(&self) -> bool {
        match &self.pre {
            Pre::Provider(pre) => pre.contract().has_fetch_status(),
            Pre::Renderer(_) => false,
        }
    }

    /// Asks the provider for the current status of the message it accepted as
    /// `provider_message_id`. A lookup changes nothing at the provider, so a failure of the
    /// plugin itself (a trap, a limit hit, the deadline) is retryable, whatever it sent.
    pub async fn fetch_status(&self, provider_message_id: &str) -> FetchOutcome {
        if !self.supports_fetch_status() {
            return FetchOutcome::Unsupported;
        }
        let Ok(pre) = self.provider_pre() else {
            return FetchOutcome::Unsupported;
        };
        let config = self.config.clone();
        let id = provider_message_id.to_string();
        let result = self
            .run("fetch_status", Share::Calls, move |store| {
                Box::pin(async move { pre.fetch_status(store, &config, &id).await })
            })
            .await;
        match result {
            Ok(outcome) => self.sanitizer().fetch(outcome),
            Err(f) => FetchOutcome::Retryable {
                error: ProviderError {
                    code: None,
                    message: self.sanitizer().text(&f.to_string()),
                },
                retry_after_ms: None,
            },
        }
    }

    /// Verifies a webhook and, when it is genuine, reads its events — both in one instance, so a
    /// webhook costs one instantiation instead of two.
    pub async fn receive_webhook(
        &self,
        request: &WebhookRequest,
    ) -> Result<Result<Vec<WebhookEvent>, WebhookRejection>, CallFailure> {
        let pre = self.provider_pre()?;
        let config = self.config.clone();
        let request = request.clone();
        self.run("receive_webhook", Share::Webhooks, move |store| {
            Box::pin(async move { pre.receive_webhook(store, &config, &request).await })
        })
        .await
        .map(|r| self.sanitizer().webhook(r, |e| self.sanitizer().events(e)))
    }

    /// Asks the plugin whether a webhook really comes from its provider.
    pub async fn verify_webhook(
        &self,
        request: &WebhookRequest,
    ) -> Result<Result<(), WebhookRejection>, CallFailure> {
        let pre = self.provider_pre()?;
        let config = self.config.clone();
        let request = request.clone();
        self.run("verify_webhook", Share::Webhooks, move |store| {
            Box::pin(async move { pre.verify_webhook(store, &config, &request).await })
        })
        .await
        .map(|r| self.sanitizer().webhook(r, |ok| ok))
    }

    /// Reads the events out of a verified webhook.
    pub async fn parse_webhook(
        &self,
        request: &WebhookRequest,
    ) -> Result<Result<Vec<WebhookEvent>, WebhookRejection>, CallFailure> {
        let pre = self.provider_pre()?;
        let config = self.config.clone();
        let request = request.clone();
        self.run("parse_webhook", Share::Webhooks, move |store| {
            Box::pin(async move { pre.parse_webhook(store, &config, &request).await })
        })
        .await
        .map(|r| self.sanitizer().webhook(r, |e| self.sanitizer().events(e)))
    }

    /// Validates a template, returning the variables it uses.
    pub async fn validate(
        &self,
        template: &str,
    ) -> Result<Result<Vec<String>, TemplateError>, CallFailure> {
        let pre = self.renderer_pre()?;
        let template = template.to_string();
        self.run("validate", Share::Calls, move |store| {
            Box::pin(async move { pre.validate(store, &template).await })
        })
        .await
        .map(|r| self.sanitizer().validated(r))
    }

    /// Renders a template with the given variables; `missing` says whether a variable the
    /// template prints without a value fails the render or is reported.
    pub async fn render(
        &self,
        template: &str,
        variables: &Variables,
        missing: MissingVariables,
    ) -> Result<Result<RenderedText, RenderError>, CallFailure> {
        let pre = self.renderer_pre()?;
        let template = template.to_string();
        let variables = variables.clone();
        self.run("render", Share::Calls, move |store| {
            Box::pin(async move { pre.render(store, &template, &variables, missing).await })
        })
        .await
        .map(|r| self.sanitizer().rendered(r))
    }
}

/// Names what stopped a call from wasmtime's error, in words an operator can act on: a CPU or
/// memory limit, a stack overflow, a call to WASI `exit`, the stderr cap, or the trap itself.
fn classify(error: &wasmtime::Error) -> (FailureKind, String) {
    if error.downcast_ref::<Trap>() == Some(&Trap::Interrupt) {
        return (
            FailureKind::CpuLimit,
            "interrupted after using its CPU budget".into(),
        );
    }
    if error.downcast_ref::<Trap>() == Some(&Trap::StackOverflow) {
        return (
            FailureKind::Trap,
            "overflowed its call stack (wasm trap: call stack exhausted)".into(),
        );
    }
    if let Some(exit) = error.downcast_ref::<wasmtime_wasi::I32Exit>() {
        return (
            FailureKind::Trap,
            format!("called exit with status {} instead of returning", exit.0),
        );
    }
    let chain = format!("{error:#}");
    if chain.contains("growing memory")
        || chain.contains("memory growth")
        || chain.contains("Memory maximum size")
    {
        return (
            FailureKind::MemoryLimit,
            "tried to grow its linear memory past the limit".into(),
        );
    }
    if chain.contains("write beyond capacity of MemoryOutputPipe") {
        return (
            FailureKind::Trap,
            format!(
                "wrote more than the {} bytes of stderr the host keeps",
                super::host::STDERR_CAPACITY
            ),
        );
    }
    if error.downcast_ref::<Trap>() == Some(&Trap::MemoryOutOfBounds) {
        return (
            FailureKind::Trap,
            "accessed memory out of bounds (a Rust guest's shadow-stack overflow ends so too)"
                .into(),
        );
    }
    let first = chain.lines().next().unwrap_or("unknown error").to_string();
    // The pooling allocator is full: the gates should prevent it, but if it happens it is
    // back-pressure like a full gate, not a fault of the plugin.
    if chain.contains("maximum concurrent") {
        return (FailureKind::Busy, first);
    }
    if chain.contains("instantiat") && !chain.contains("wasm trap") {
        return (FailureKind::Instantiate, first);
    }
    (FailureKind::Trap, first)
}
