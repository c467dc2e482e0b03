//! Reload triggers: file changes (polled) and SIGHUP.
//!
//! Polling modification time and size every few hundred milliseconds is enough for config files
//! and plugin artifacts, costs nothing measurable and behaves the same on every filesystem. A
//! half-written file simply fails validation and is retried on the next change.

use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use tokio::task::JoinHandle;

use super::{Plugins, ReloadReport};
use crate::config::{Config, ConfigSource};

/// Reloads the configuration from `source` and applies it to the plugins.
pub async fn reload(
    plugins: &Plugins,
    source: &ConfigSource,
) -> Result<ReloadReport, crate::config::ConfigError> {
    let config = source.load()?;
    Ok(plugins.apply(&config).await)
}

fn watched_files(config: &Config, source: &ConfigSource) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = source.file().map(|f| f.to_path_buf()).into_iter().collect();
    for (name, plugin) in &config.plugins {
        files.push(plugin.resolved_path(name, &config.runtime));
    }
    for name in [&config.routing.provider, &config.routing.renderer] {
        if !name.is_empty() && !config.plugins.contains_key(name) {
            files.push(config.runtime.plugin_dir.join(format!("{name}.wasm")));
        }
    }
    files
}

fn stamp(files: &[PathBuf]) -> Vec<Option<(SystemTime, u64)>> {
    files
        .iter()
        .map(|f| {
            std::fs::metadata(f)
                .ok()
                .and_then(|m| Some((m.modified().ok()?, m.len())))
        })
        .collect()
}

/// Watches the config file and every plugin file, reloading when one changes.
pub fn spawn_file_watch(
    plugins: Plugins,
    source: ConfigSource,
    initial: Config,
    every: Duration,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut files = watched_files(&initial, &source);
        let mut last = stamp(&files);
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let now = stamp(&files);
            if now == last {
                continue;
            }
            tracing::info!("configuration or plugin file changed; reloading");
            match source.load() {
                Ok(config) => {
                    plugins.apply(&config).await;
                    files = watched_files(&config, &source);
                }
                Err(e) => {
                    tracing::error!(error = %e, "rejected configuration change; the running configuration stays")
                }
            }
            last = stamp(&files);
        }
    })
}

/// Reloads on every SIGHUP.
#[cfg(unix)]
pub fn spawn_sighup(plugins: Plugins, source: ConfigSource) -> std::io::Result<JoinHandle<()>> {
    let mut hup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())?;
    Ok(tokio::spawn(async move {
        while hup.recv().await.is_some() {
            tracing::info!("SIGHUP received; reloading");
            if let Err(e) = reload(&plugins, &source).await {
                tracing::error!(error = %e, "rejected configuration change; the running configuration stays");
            }
        }
    }))
}
