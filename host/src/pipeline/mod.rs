//! The path of one message, from a caller's request to the provider's last word, with no HTTP
//! types in sight. The API, the embedding API and provider webhooks all call these steps; none
//! of them re-implements one.
//!
//! The steps, in the order a message takes them:
//! 1. [`accept`]: validate the request → a [`accept::Draft`]; a reused idempotency key answers
//!    with the stored message right away ([`enqueue::replay`]);
//! 2. [`render`]: a template is rendered by the tenant's renderer plugin;
//! 3. [`count`]: the host computes encoding and segments exactly;
//! 4. [`check`]: opt-out (quiet hours and rate limits hook in here); then [`ledger`] prices
//!    the message and lists the [`budgets`] it reserves from;
//! 5. [`enqueue`]: message, queue entry, first event, estimate and budget reservations in one
//!    transaction (a hard-capped budget without room refuses it);
//! 6. [`dispatch`]: workers claim due entries under a lease and call the provider;
//! 7. [`classify`]: a pure function from the provider's outcome to what happens next;
//! 8. [`track`]: verified status callbacks move the message by the monotonic rule;
//! 9. [`inbound`]: inbound messages are stored; STOP / START / HELP act on the opt-out list and
//!    queue the confirmation;
//! 10. [`reconcile`]: messages left `sent` (or `unknown`) past `reconcile.after_ms` are looked up
//!     at their provider, a bounded number per second, and moved by the same monotonic rule, for
//!     status callbacks that were lost.
//!
//! Beside the steps: [`bulk`] (batches of many messages, each row through the same steps),
//! [`callback`] (the host-signed token of status-callback URLs), [`read`]
//! (messages as callers see them), [`templates`] (templates, their versions, previews and the
//! defaults every tenant starts with), [`cancel`] (withdrawing a message not yet
//! claimed), [`schedules`] (recurring sends through [`Pipeline::send`], fired by the scheduler;
//! [`recurrence`] computes their fire times), [`opt_outs`] and [`opt_out_import`] (the
//! opt-out list managed by callers: state, changes, counts, export, CSV import), [`estimate`]
//! (the dry run: render and count, explained, priced, nothing sent), [`events`] (the event log
//! read back: the latest status changes and live per-tenant feeds), [`pricing`] (the price
//! table), [`tenants`] (who
//! may send, with which keys, plugins and credentials) and [`error`] (the one error type, with
//! its stable codes).

// The steps, in order (one group each, so that formatting keeps the order).
pub mod accept;

pub mod render;

pub mod count;

pub mod check;

pub mod enqueue;

pub mod dispatch;

pub mod classify;

pub mod track;

pub mod inbound;

pub mod reconcile;

pub mod budgets;
pub mod bulk;
pub mod callback;
pub mod cancel;
pub mod delivery_metrics;
pub mod error;
pub mod estimate;
pub mod events;
pub mod ledger;
pub mod lines;
pub mod opt_out_import;
pub mod opt_outs;
pub mod pricing;
pub mod read;
pub mod recurrence;
pub mod reports;
pub mod schedules;
pub mod templates;
pub mod tenants;

use std::sync::Arc;

use arc_swap::ArcSwap;

use crate::clock::SharedClock;
use crate::config::{Config, ConfigSource};
use crate::domain::TenantId;
use crate::plugin::{Plugins, ReloadReport};
use crate::store::Store;
pub use accept::{Content, References, SendRequest, Submitted};
pub use error::{ErrorCode, PipelineError, Result};

/// Everything the steps need: storage, plugins, the live configuration and the clock. Cheap to
/// clone; clones share everything.
///
/// One `Arc` around all of it: every request clones the pipeline (as the router's state) and
/// drops it, and with a field-by-field clone that was five reference counts shared by every core,
/// and a copy of the config file's path (3 % of the samples of a send's profile).
#[derive(Clone)]
pub struct Pipeline {
    inner: Arc<Shared>,
}

/// What [`Pipeline`]'s clones share.
struct Shared {
    store: Store,
    plugins: Plugins,
    config: ArcSwap<Config>,
    source: ConfigSource,
    clock: SharedClock,
    /// Signs status-callback URLs; read from the host secret on first use.
    callback_key: std::sync::OnceLock<callback::CallbackKey>,
}

impl std::fmt::Debug for Pipeline {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pipeline")
            .field("store", &self.inner.store)
            .finish_non_exhaustive()
    }
}

impl Pipeline {
    /// A pipeline over opened storage and started plugins.
    pub fn new(
        store: Store,
        plugins: Plugins,
        config: Config,
        source: ConfigSource,
        clock: SharedClock,
    ) -> Self {
        Self {
            inner: Arc::new(Shared {
                store,
                plugins,
                config: ArcSwap::from_pointee(config),
                source,
                clock,
                callback_key: std::sync::OnceLock::new(),
            }),
        }
    }

    /// The key that signs status-callback URLs, derived from the host secret
    /// `runtime.artifact_key_file` (see [`callback`]).
    #[must_use]
    pub fn callback_key(&self) -> &callback::CallbackKey {
        self.inner.callback_key.get_or_init(|| {
            let secret =
                crate::plugin::engine::artifact_key(&self.config().runtime.artifact_key_file);
            callback::CallbackKey::derive(&secret)
        })
    }

    /// The durable store and queue.
    #[must_use]
    pub fn store(&self) -> &Store {
        &self.inner.store
    }

    /// The plugin runtime.
    #[must_use]
    pub fn plugins(&self) -> &Plugins {
        &self.inner.plugins
    }

    /// This Herald's metrics (the recorder its plugin runtime records into; see
    /// [`crate::metrics`]).
    #[must_use]
    pub fn metrics(&self) -> &crate::metrics::Metrics {
        self.inner.plugins.metrics()
    }

    /// The configuration in force now (a reload may replace it between two calls).
    #[must_use]
    pub fn config(&self) -> Arc<Config> {
        self.inner.config.load_full()
    }

    /// Where the configuration came from.
    #[must_use]
    pub fn source(&self) -> &ConfigSource {
        &self.inner.source
    }

    /// The current time, in UTC milliseconds.
    #[must_use]
    pub fn now(&self) -> i64 {
        self.inner.clock.now_millis()
    }

    /// Sends one message for `tenant`: accept, render, count, check and enqueue. Returns once
    /// the message is stored and queued; the dispatcher takes it from there. A replayed
    /// idempotency key returns the stored message before any later step can refuse it.
    pub async fn send(&self, tenant: &TenantId, request: SendRequest) -> Result<Submitted> {
        tenants::ensure_active(self, tenant).await?;
        let draft = accept::accept(tenant, request)?;
        if let Some(replayed) = enqueue::replay(self, &draft).await? {
            return Ok(replayed);
        }
        let max_ahead = self.config().delivery.max_send_ahead_ms;
        accept::check_send_at(draft.request.send_at, self.now(), max_ahead)?;
        let rendered = render::render(self, &draft).await?;
        let counted = count::count(&rendered.body, self.config().delivery.smart_encoding)?;
        check::check(self, tenant, &draft.request.to, &rendered.category).await?;
        let outgoing = enqueue::outgoing(self, draft, rendered, counted).await?;
        let charge = ledger::charge(
            self,
            tenant,
            &outgoing.provider,
            &outgoing.to,
            &outgoing.category,
            &outgoing.body.count,
        )
        .await?;
        enqueue::enqueue_charged(self, outgoing, Some(charge)).await
    }

    /// The message `id` of `tenant`, with its status history.
    pub async fn message(&self, tenant: &TenantId, id: &str) -> Result<read::MessageRecord> {
        read::message(self, tenant, id).await
    }

    /// Re-reads the whole configuration and swaps it in: API keys, delivery settings, routing,
    /// plugin settings and compliance replies take effect for the next request or attempt, and
    /// plugins whose file or settings changed are reloaded. A configuration that does not load or
    /// validate is refused whole and the running one keeps serving. Settings that only a restart
    /// applies (the listen address, the storage URL, …) are named in the outcome.
    pub async fn reload(&self) -> std::result::Result<ReloadOutcome, crate::config::ConfigError> {
        let config = match self.inner.source.load() {
            Ok(config) => config,
            Err(e) => {
                self.metrics()
                    .reload(crate::metrics::ReloadOutcome::Refused);
                return Err(e);
            }
        };
        let restart_required = self.config().restart_required(&config);
        let plugins = self.inner.plugins.apply(&config).await;
        self.inner.config.store(Arc::new(config));
        self.metrics().reload(if plugins.rejected.is_empty() {
            crate::metrics::ReloadOutcome::Applied
        } else {
            crate::metrics::ReloadOutcome::Partial
        });
        Ok(ReloadOutcome {
            plugins,
            restart_required,
        })
    }
}

/// What a reload did.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct ReloadOutcome {
    /// What happened to each plugin.
    #[serde(flatten)]
    pub plugins: ReloadReport,
    /// Changed settings that take effect only after a restart (e.g. `server.listen`).
    pub restart_required: Vec<&'static str>,
}
