//! Herald as a library: start it from a configuration, serve it on a listener, stop it.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;

use crate::config::{Config, ConfigSource};
use crate::plugin::{PluginError, Plugins, watch};

/// Errors from starting Herald.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The configuration is invalid.
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    /// A plugin could not be loaded.
    #[error(transparent)]
    Plugin(#[from] PluginError),
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
}

impl AppState {
    /// Loads the plugins of `config`.
    pub async fn start(config: Config, source: ConfigSource) -> Result<Self, StartError> {
        let plugins = Plugins::start(&config).await?;
        Ok(Self {
            config: Arc::new(config),
            source,
            plugins,
        })
    }
}

/// Serves Herald on `listener` until `shutdown` resolves, with the reload triggers running.
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
    let router = crate::api::router(state);
    let result = axum::serve(listener, router)
        .with_graceful_shutdown(shutdown)
        .await;
    for task in background {
        task.abort();
    }
    Ok(result?)
}
