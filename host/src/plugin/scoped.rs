//! A plugin version seen through one tenant's settings: the operator's settings with the
//! tenant's overrides on top, and a redactor that also knows the tenant's secrets.
//!
//! The result is a [`LoadedPlugin`] like any other (it shares the compiled component and the
//! instance pool), so every call path — send, webhooks, fetches — takes tenant settings without
//! a second set of methods. Nothing of one tenant's settings is kept in the plugin between calls
//! of different tenants: a call gets a fresh instance, or one that served only this tenant under
//! this version and these settings ([`reuse`](super::reuse)).

use std::collections::BTreeMap;
use std::sync::Arc;

use super::LoadedPlugin;
use super::host::Redactor;

impl LoadedPlugin {
    /// Whether the plugin declares `key` secret (or its name looks like a secret's).
    #[must_use]
    pub fn is_secret(&self, key: &str) -> bool {
        self.info
            .config_keys
            .iter()
            .any(|k| k.secret && k.name == key)
            || crate::config::looks_secret(key)
    }

    /// Whether the plugin declares a setting called `key`.
    #[must_use]
    pub fn declares(&self, key: &str) -> bool {
        self.info.config_keys.iter().any(|k| k.name == key)
    }

    /// This plugin with `overrides` replacing the operator's values of the same settings.
    #[must_use]
    pub fn with_overrides(&self, overrides: &BTreeMap<String, String>) -> LoadedPlugin {
        let mut config: BTreeMap<String, String> = self.config.iter().cloned().collect();
        for (key, value) in overrides {
            config.insert(key.clone(), value.clone());
        }
        let secrets: Vec<String> = config
            .iter()
            .filter(|(key, _)| self.is_secret(key))
            .map(|(_, value)| value.clone())
            .collect();
        LoadedPlugin {
            name: self.name.clone(),
            kind: self.kind,
            info: self.info.clone(),
            hash: self.hash.clone(),
            fingerprint: self.fingerprint.clone(),
            generation: self.generation,
            config: Arc::new(config.into_iter().collect()),
            grant: self.grant.clone(),
            redactor: Arc::new(Redactor::new(secrets)),
            limits: self.limits.clone(),
            max_webhook_events: self.max_webhook_events,
            pre: self.pre.clone(),
            engine: self.engine.clone(),
            // Every tenant's calls count against the plugin's one set of limits.
            gate: self.gate.clone(),
            metrics: self.metrics.clone(),
        }
    }
}
