//! Reload triggers: file changes (polled) and SIGHUP. Both call [`Pipeline::reload`], which
//! re-reads the whole configuration — API keys, delivery settings, routing, plugin settings,
//! compliance replies, plugins — validates it whole and swaps it in at once, or keeps the running
//! one and logs why.
//!
//! Polling modification time and size every few hundred milliseconds is enough for config files
//! and plugin artifacts, costs nothing measurable and behaves the same on every filesystem. A
//! half-written file simply fails validation and is retried on the next change.

use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use tokio::task::JoinHandle;

use crate::config::{Config, ConfigSource};
use crate::pipeline::Pipeline;

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

/// Reloads and logs the outcome; `why` names the trigger.
async fn reload_logged(pipeline: &Pipeline, why: &str) {
    tracing::info!("{why}; reloading");
    match pipeline.reload().await {
        Ok(outcome) => {
            if !outcome.restart_required.is_empty() {
                tracing::warn!(
                    settings = %outcome.restart_required.join(", "),
                    "changed settings take effect only after a restart"
                );
            }
        }
        Err(e) => {
            tracing::error!(error = %e, "rejected configuration change; the running configuration stays")
        }
    }
}

/// Watches the config file and every plugin file, reloading when one changes.
pub fn spawn_file_watch(pipeline: Pipeline, every: Duration) -> JoinHandle<()> {
    // The first stamp is taken before this returns: a change made right after the watch starts
    // must count as a change, not as the starting state.
    let mut files = watched_files(&pipeline.config(), pipeline.source());
    let mut last = stamp(&files);
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let seen = stamp(&files);
            if seen == last {
                continue;
            }
            reload_logged(&pipeline, "configuration or plugin file changed").await;
            // What was watched before keeps the stamp it had when the reload began, so a file
            // written while the reload ran counts as changed at the next tick, not as the
            // starting state; a newly watched file starts from its stamp now.
            let next = watched_files(&pipeline.config(), pipeline.source());
            last = next
                .iter()
                .map(|file| match files.iter().position(|old| old == file) {
                    Some(at) => seen[at],
                    None => stamp(std::slice::from_ref(file))[0],
                })
                .collect();
            files = next;
        }
    })
}

/// Reloads on every SIGHUP.
#[cfg(unix)]
pub fn spawn_sighup(pipeline: Pipeline) -> std::io::Result<JoinHandle<()>> {
    let mut hup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())?;
    Ok(tokio::spawn(async move {
        while hup.recv().await.is_some() {
            reload_logged(&pipeline, "SIGHUP received").await;
        }
    }))
}
