//! The settings each configured plugin declares, for printing a configuration safely.
//!
//! `herald config` must hide every value a plugin declares `secret`, whatever its name (an
//! `api_key` does not look secret to the name heuristic). Only the plugin knows, through
//! `describe`, so each configured plugin whose file exists is loaded on its own — one failing
//! plugin must not hide what the others declare — and asked.

use std::collections::BTreeMap;

use super::Plugins;
use crate::config::{Config, RoutingConfig};

/// Setting name → whether the plugin declares it secret, per plugin that could be loaded and
/// described. A plugin missing from the map could not be (no file, a broken component, a missing
/// required setting); its settings are unknown and should be treated as secret.
pub async fn declared_secrets(config: &Config) -> BTreeMap<String, BTreeMap<String, bool>> {
    let mut declared = BTreeMap::new();
    for (name, settings) in &config.plugins {
        if !settings.resolved_path(name, &config.runtime).is_file() {
            continue;
        }
        let alone = Config {
            plugins: BTreeMap::from([(name.clone(), settings.clone())]),
            routing: RoutingConfig {
                provider: String::new(),
                renderer: String::new(),
            },
            ..config.clone()
        };
        let Ok(plugins) = Plugins::start(&alone).await else {
            continue;
        };
        if let Some(plugin) = plugins.get(name) {
            let keys = plugin
                .info()
                .config_keys
                .iter()
                .map(|k| (k.name.clone(), k.secret))
                .collect();
            declared.insert(name.clone(), keys);
        }
    }
    declared
}
