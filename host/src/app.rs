//! Herald as a library: start it from a configuration, serve it on a listener, stop it.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;

use crate::config::{Config, ConfigSource};
use crate::plugin::{PluginError, Plugins, watch};
use crate::store::{Store, StoreError, StoreOptions};

/// Errors from starting Herald.
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

/// Shared state of a running Herald, cheap to clone.
#[derive(Clone)]
pub struct AppState {
    /// The configuration it started with (plugins and routing may since have been reloaded).
    pub config: Arc<Config>,
    /// Where the configuration came from, for reloads.
    pub source: ConfigSource,
    /// The plugin runtime.
    pub plugins: Plugins,
    /// Durable storage and the send queue.
    pub store: Store,
}

impl AppState {
    /// Opens (and migrates) storage and loads the plugins of `config`.
    pub async fn start(config: Config, source: ConfigSource) -> Result<Self, StartError> {
        let store = open_store(&config).await?;
        let plugins = Plugins::start(&config).await?;
        Ok(Self {
            config: Arc::new(config),
            source,
            plugins,
            store,
        })
    }
}

/// Opens the configured store and applies pending migrations.
pub async fn open_store(config: &Config) -> Result<Store, StoreError> {
    let options = StoreOptions {
        max_connections: (config.delivery.workers as u32).clamp(4, 32),
        ..StoreOptions::default()
    };
    let store = Store::connect(&config.storage.url, &options).await?;
    store.migrate().await?;
    Ok(store)
}

/// Serves Herald on `listener` until `shutdown` resolves: the API, the dispatcher and the
/// reload triggers. On shutdown it stops accepting requests and claiming messages, and lets
/// calls in flight finish.
pub async fn serve(
    state: AppState,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), StartError> {
    let mut background = Vec::new();
    if state.config.runtime.watch {
        background.push(watch::spawn_file_watch(
            state.plugins.clone(),
            state.source.clone(),
            (*state.config).clone(),
            Duration::from_millis(state.config.runtime.watch_interval_ms),
        ));
    }
    #[cfg(unix)]
    background.push(watch::spawn_sighup(
        state.plugins.clone(),
        state.source.clone(),
    )?);
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let dispatcher = tokio::spawn(crate::dispatch::run(state.clone(), stopped));
    let router = crate::api::router(state.clone());
    let result = axum::serve(listener, router)
        .with_graceful_shutdown(async move {
            shutdown.await;
            let _ = stop.send(true);
        })
        .await;
    let _ = dispatcher.await;
    for task in background {
        task.abort();
    }
    state.store.close().await;
    Ok(result?)
}
