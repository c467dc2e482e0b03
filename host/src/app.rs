//! Herald as a library: build it from a configuration, send through it, serve its HTTP API and
//! run its dispatcher, then stop it.
//!
//! ```no_run
//! # async fn demo(config: herald::config::Config) -> Result<(), Box<dyn std::error::Error>> {
//! use herald::{Herald, SendRequest, TenantId};
//! let herald = Herald::builder().config(config).build().await?;
//! let tenant = TenantId::default_tenant();
//! let to = "+14155552671".parse()?;
//! let sent = herald.send(&tenant, SendRequest::text(to, "Your table is ready")).await?;
//! let api = herald.router(); // nest it in your own axum app
//! # let _ = (sent, api);
//! herald.run(std::future::pending::<()>()).await; // the dispatcher and the reload triggers
//! # Ok(()) }
//! ```

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;

use crate::clock::{SharedClock, SystemClock};
use crate::config::{Config, ConfigSource};
use crate::domain::TenantId;
use crate::pipeline::read::MessageRecord;
use crate::pipeline::{
    Pipeline, PipelineError, SendRequest, Submitted, dispatch, events, reconcile, schedules,
};
use crate::plugin::{PluginError, Plugins};
use crate::store::{Store, StoreError, StoreOptions};
use crate::watch;

/// How long after a dispatcher panicked a new one starts (so a fault that recurs at once does
/// not spin).
const DISPATCHER_RESTART: Duration = Duration::from_secs(1);

/// How often recorded histogram samples are folded into their buckets.
const METRICS_UPKEEP: Duration = Duration::from_secs(5);
/// How often the event log is pruned to `storage.event_retention_ms`.
const EVENT_PRUNING: Duration = Duration::from_secs(300);
/// How long after start the event log is first pruned (not at once: a process that restarts
/// in a loop should not add a full sweep to each start).
const EVENT_PRUNING_FIRST: Duration = Duration::from_secs(60);

/// Errors from starting or serving Herald.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The configuration is invalid.
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    /// A plugin could not be loaded.
    #[error(transparent)]
    Plugin(#[from] PluginError),
    /// Storage could not be opened or migrated.
    #[error("storage: {0}")]
    Store(#[from] StoreError),
    /// The server could not run.
    #[error("server: {0}")]
    Io(#[from] std::io::Error),
}

/// A running Herald: storage, plugins and the pipeline over them. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Herald {
    pipeline: Pipeline,
}

/// Builds a [`Herald`]; see [`Herald::builder`].
#[derive(Default)]
pub struct HeraldBuilder {
    config: Option<Config>,
    source: ConfigSource,
    clock: Option<SharedClock>,
}

impl HeraldBuilder {
    /// Uses `config` (otherwise the configuration is loaded from the source).
    #[must_use]
    pub fn config(mut self, config: Config) -> Self {
        self.config = Some(config);
        self
    }

    /// Where reloads (file watch, SIGHUP, the admin endpoint) read the configuration from.
    #[must_use]
    pub fn source(mut self, source: ConfigSource) -> Self {
        self.source = source;
        self
    }

    /// The clock every time-dependent step reads (the system clock by default).
    #[must_use]
    pub fn clock(mut self, clock: SharedClock) -> Self {
        self.clock = Some(clock);
        self
    }

    /// Opens (and migrates) storage, loads the plugins and gives the `default` tenant the
    /// default templates it does not have yet.
    pub async fn build(self) -> Result<Herald, StartError> {
        let config = match self.config {
            Some(config) => config,
            None => self.source.load()?,
        };
        let store = open_store(&config).await?;
        let plugins = Plugins::start(&config).await?;
        let clock = self.clock.unwrap_or_else(|| Arc::new(SystemClock));
        let pipeline = Pipeline::new(store, plugins, config, self.source, clock);
        crate::pipeline::templates::defaults::seed(&pipeline, &TenantId::default_tenant()).await?;
        Ok(Herald { pipeline })
    }
}

/// Opens the configured store and applies pending migrations. An error never shows the
/// storage URL's credentials, even when the driver quotes them.
pub async fn open_store(config: &Config) -> Result<Store, StoreError> {
    let options = StoreOptions {
        max_connections: (config.delivery.workers as u32).clamp(4, 32),
        acquire_timeout: Duration::from_millis(config.storage.acquire_timeout_ms),
        ..StoreOptions::default()
    };
    let url = &config.storage.url;
    let opened = async {
        let store = Store::connect(url, &options).await?;
        store.migrate().await?;
        Ok(store)
    };
    opened.await.map_err(|error: StoreError| {
        let text = error.to_string();
        let scrubbed = crate::config::scrub(&text, url);
        if scrubbed == text {
            error
        } else {
            StoreError::Config(scrubbed)
        }
    })
}

impl Herald {
    /// Starts building a Herald.
    #[must_use]
    pub fn builder() -> HeraldBuilder {
        HeraldBuilder::default()
    }

    /// Sends one message for `tenant`: it is validated, rendered, counted, checked and queued
    /// before this returns; the dispatcher ([`Herald::run`]) delivers it.
    pub async fn send(
        &self,
        tenant: &TenantId,
        request: SendRequest,
    ) -> Result<Submitted, PipelineError> {
        self.pipeline.send(tenant, request).await
    }

    /// The message `id` of `tenant`, with its status history.
    pub async fn message(
        &self,
        tenant: &TenantId,
        id: &str,
    ) -> Result<MessageRecord, PipelineError> {
        self.pipeline.message(tenant, id).await
    }

    /// The HTTP API as an axum router, to serve or to nest in a larger application.
    pub fn router(&self) -> axum::Router {
        crate::api::router(self.pipeline.clone())
    }

    /// The pipeline, for the steps the methods above do not cover.
    #[must_use]
    pub fn pipeline(&self) -> &Pipeline {
        &self.pipeline
    }

    /// The durable store and queue.
    #[must_use]
    pub fn store(&self) -> &Store {
        self.pipeline.store()
    }

    /// The plugin runtime.
    #[must_use]
    pub fn plugins(&self) -> &Plugins {
        self.pipeline.plugins()
    }

    /// Runs the dispatcher, the reconciler (when `reconcile.enabled`), the scheduler of recurring
    /// schedules and the reload triggers
    /// until `shutdown` resolves; then stops claiming messages and waits for the provider calls in
    /// flight to finish and be recorded. A dispatcher that panics is logged at once and replaced.
    pub async fn run(&self, shutdown: impl Future<Output = ()> + Send + 'static) {
        let config = self.pipeline.config();
        let mut background = Vec::new();
        if config.runtime.watch {
            background.push(watch::spawn_file_watch(
                self.pipeline.clone(),
                Duration::from_millis(config.runtime.watch_interval_ms),
            ));
        }
        #[cfg(unix)]
        match watch::spawn_sighup(self.pipeline.clone()) {
            Ok(task) => background.push(task),
            Err(e) => tracing::warn!(error = %e, "SIGHUP reloads are unavailable"),
        }
        background.push(tokio::spawn({
            // Histogram samples wait in memory until folded into buckets; fold them now and
            // then, so memory stays flat when nobody scrapes (see `crate::metrics`).
            let metrics = self.pipeline.metrics().clone();
            async move {
                let mut every = tokio::time::interval(METRICS_UPKEEP);
                loop {
                    every.tick().await;
                    metrics.upkeep();
                }
            }
        }));
        background.push(tokio::spawn({
            // The event log keeps `storage.event_retention_ms`; each process prunes it now and
            // then (several doing so at once only share the work).
            let pipeline = self.pipeline.clone();
            async move {
                let first = tokio::time::Instant::now() + EVENT_PRUNING_FIRST;
                let mut every = tokio::time::interval_at(first, EVENT_PRUNING);
                every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                loop {
                    every.tick().await;
                    match events::prune_expired(&pipeline).await {
                        Ok(0) => {}
                        Ok(removed) => tracing::info!(removed, "removed events past retention"),
                        Err(error) => tracing::warn!(%error, "pruning the event log failed"),
                    }
                }
            }
        }));
        let (stop, stopped) = tokio::sync::watch::channel(false);
        let reconciler = tokio::spawn(reconcile::run(self.pipeline.clone(), stopped.clone()));
        let scheduler = tokio::spawn(schedules::run(self.pipeline.clone(), stopped.clone()));
        let mut shutdown = std::pin::pin!(shutdown);
        loop {
            let mut dispatcher =
                tokio::spawn(dispatch::run(self.pipeline.clone(), stopped.clone()));
            tokio::select! {
                () = &mut shutdown => {
                    let _ = stop.send(true);
                    if let Err(e) = dispatcher.await {
                        tracing::error!(error = %e, "the dispatcher panicked");
                    }
                    break;
                }
                ended = &mut dispatcher => {
                    // `dispatch::run` returns only after a shutdown, so it panicked. Said now,
                    // not at shutdown, and a new dispatcher takes over the queue: the attempts
                    // it had in flight were dropped with it and are claimed again when their
                    // leases expire.
                    let error = ended.err().map(|e| e.to_string()).unwrap_or_default();
                    tracing::error!(%error, "the dispatcher stopped unexpectedly; restarting it");
                    tokio::select! {
                        () = tokio::time::sleep(DISPATCHER_RESTART) => {}
                        () = &mut shutdown => break,
                    }
                }
            }
        }
        let _ = stop.send(true);
        if let Err(e) = reconciler.await {
            tracing::error!(error = %e, "the reconciler panicked");
        }
        if let Err(e) = scheduler.await {
            tracing::error!(error = %e, "the scheduler panicked");
        }
        for task in background {
            task.abort();
        }
    }

    /// Serves the HTTP API on `listener` and runs the dispatcher until `shutdown` resolves; on
    /// shutdown it stops accepting requests and claiming messages, lets requests in progress
    /// finish for up to `server.shutdown_grace_ms` (then drops their connections), waits for
    /// provider calls in flight to finish and be recorded, and closes storage.
    pub async fn serve(
        &self,
        listener: TcpListener,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), StartError> {
        let server = self.pipeline.config().server.clone();
        let options = crate::server::ServeOptions {
            header_read_timeout: Duration::from_millis(server.header_read_timeout_ms),
            shutdown_grace: Duration::from_millis(server.shutdown_grace_ms),
        };
        let (stop, stopped) = tokio::sync::watch::channel(false);
        let running = {
            let herald = self.clone();
            let mut stopped = stopped;
            tokio::spawn(async move {
                herald
                    .run(async move {
                        let _ = stopped.wait_for(|stop| *stop).await;
                    })
                    .await;
            })
        };
        self.log_ready(&listener);
        let store = self.store().clone();
        let result = crate::server::serve(listener, self.router(), options, async move {
            shutdown.await;
            let _ = stop.send(true);
            // Event streams never finish on their own: end them, or they hold the shutdown up
            // for its whole grace.
            store.end_event_streams();
        })
        .await;
        // Should the server end on an error, `stop` is dropped with it and the dispatcher stops
        // all the same.
        if let Err(e) = running.await {
            tracing::error!(error = %e, "the dispatcher task panicked");
        }
        self.store().close().await;
        Ok(result?)
    }

    /// The one line that says Herald is serving: where, on which storage, with which plugins.
    fn log_ready(&self, listener: &TcpListener) {
        let listen = listener
            .local_addr()
            .map_or_else(|_| "unknown".to_owned(), |addr| addr.to_string());
        let plugins: Vec<String> = self
            .plugins()
            .list()
            .into_iter()
            .map(|plugin| {
                // `version` is the component's own "name version"; the configured name leads.
                let version = plugin.version.rsplit(' ').next().unwrap_or_default();
                format!("{} {version} (contract {})", plugin.name, plugin.contract)
            })
            .collect();
        tracing::info!(
            %listen,
            storage = self.store().backend_name(),
            plugins = %plugins.join(", "),
            "ready"
        );
    }

    /// Closes storage; operations after this fail.
    pub async fn close(&self) {
        self.store().close().await;
    }
}
