//! Herald's typed configuration: one TOML file, then environment overrides.
//!
//! Sources are merged in this order, later ones winning:
//! 1. the config file (`herald.toml` or `--config PATH`);
//! 2. the original SMS module's variables (`TWILIO_ACCOUNT_SID`, `TWILIO_AUTH_TOKEN`,
//!    `TWILIO_PHONE_NUMBER`, `TWILIO_MESSAGING_SERVICE_SID`), mapped onto the `twilio` plugin;
//! 3. `HERALD_*` variables, nested with `__` (e.g. `HERALD_SERVER__LISTEN=0.0.0.0:8080`,
//!    `HERALD_PLUGINS__TWILIO__CONFIG__AUTH_TOKEN=...`).
//!
//! Plugin settings (`[plugins.NAME.config]`) are kept as strings: phone numbers such as `+1555…`
//! must survive untouched, so environment values for them are never parsed as numbers.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use serde::{Deserialize, Deserializer, Serialize};

/// Errors from loading configuration.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The sources could not be merged into a valid configuration.
    #[error("invalid configuration: {0}")]
    Invalid(#[from] Box<figment::Error>),
    /// The configuration parsed but is inconsistent.
    #[error("invalid configuration: {0}")]
    Inconsistent(String),
}

/// Result alias for configuration loading.
pub type Result<T, E = ConfigError> = std::result::Result<T, E>;

/// The whole configuration.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// The HTTP server.
    pub server: ServerConfig,
    /// Durable storage.
    pub storage: StorageConfig,
    /// The plugin runtime shared by every plugin.
    pub runtime: RuntimeConfig,
    /// Which plugin serves which role.
    pub routing: RoutingConfig,
    /// The delivery pipeline: retries and workers.
    pub delivery: DeliveryConfig,
    /// Replies to STOP / START / HELP keywords.
    pub compliance: ComplianceConfig,
    /// The plugins, by name.
    pub plugins: BTreeMap<String, PluginConfig>,
}

/// HTTP server settings.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    /// Address to listen on.
    pub listen: SocketAddr,
    /// The URL at which providers reach this server (scheme, host, optional port, no trailing
    /// slash). Webhook signatures are verified against it, so set it explicitly behind a proxy.
    pub public_url: String,
    /// API keys accepted on `/api/v1/sms` routes (for the default tenant).
    pub api_keys: Vec<String>,
    /// The key for `/admin` routes; admin routes are disabled when it is empty.
    pub admin_key: String,
    /// Largest accepted request body, in bytes.
    pub max_body_bytes: usize,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            public_url: "http://127.0.0.1:8080".into(),
            api_keys: Vec::new(),
            admin_key: String::new(),
            max_body_bytes: 64 * 1024,
        }
    }
}

/// Storage settings.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct StorageConfig {
    /// `sqlite://PATH` (the default, created when missing) or `postgres://…`.
    pub url: String,
}

impl Default for StorageConfig {
    fn default() -> Self {
        Self {
            url: "sqlite://herald.db".into(),
        }
    }
}

/// Settings of the plugin runtime.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct RuntimeConfig {
    /// Where compiled plugin artifacts are cached, keyed by content hash and engine.
    pub cache_dir: PathBuf,
    /// Where a plugin's `.wasm` is looked for when its `path` is not set: `DIR/NAME.wasm`.
    pub plugin_dir: PathBuf,
    /// How many plugin instances may be live at once (the pooling allocator's size).
    pub max_instances: u32,
    /// The largest linear memory any plugin may be granted, in MiB.
    pub max_memory_mb: u64,
    /// Watch plugin files and the config file, and reload on change.
    pub watch: bool,
    /// How often the watcher looks, in milliseconds.
    pub watch_interval_ms: u64,
}

impl Default for RuntimeConfig {
    fn default() -> Self {
        Self {
            cache_dir: PathBuf::from("target/herald-cache"),
            plugin_dir: PathBuf::from("target/plugins"),
            max_instances: 128,
            max_memory_mb: 64,
            watch: true,
            watch_interval_ms: 500,
        }
    }
}

/// Which plugin serves which role; changing it swaps providers without a rebuild.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct RoutingConfig {
    /// The provider plugin that sends messages.
    pub provider: String,
    /// The renderer plugin for templates.
    pub renderer: String,
}

impl Default for RoutingConfig {
    fn default() -> Self {
        Self {
            provider: "twilio".into(),
            renderer: "mustache".into(),
        }
    }
}

/// Delivery pipeline settings.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct DeliveryConfig {
    /// The most attempts a message gets; a bound on top of `max_age_ms`, generous enough by
    /// default (50) that the age limit is what normally ends the retries.
    pub max_attempts: u32,
    /// First retry delay in milliseconds; doubled each attempt, with jitter.
    pub retry_base_ms: u64,
    /// Upper bound for one retry delay, in milliseconds (default 5 minutes).
    pub retry_max_ms: u64,
    /// How long after its creation a message may still be retried, in milliseconds (default
    /// one hour): a retry that would fall later fails the message instead.
    pub max_age_ms: u64,
    /// Concurrent dispatches per process.
    pub workers: usize,
    /// How long a claimed entry stays leased before another process may reclaim it, in ms.
    /// Must exceed every provider plugin's `timeout_ms`, or a slow call could be sent twice.
    pub lease_ms: u64,
    /// Apply Twilio-style Smart Encoding (look-alike characters replaced by GSM-7 ones) before
    /// counting and sending.
    pub smart_encoding: bool,
}

impl Default for DeliveryConfig {
    fn default() -> Self {
        Self {
            max_attempts: 50,
            retry_base_ms: 1000,
            retry_max_ms: 300_000,
            max_age_ms: 3_600_000,
            workers: 16,
            lease_ms: 30_000,
            smart_encoding: false,
        }
    }
}

/// The confirmation replies to compliance keywords (CTIA: one reply per opt-out, HELP names
/// the program and how to stop).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ComplianceConfig {
    /// Sent once after an opt-out keyword.
    pub stop_reply: String,
    /// Sent after an opt-in keyword.
    pub start_reply: String,
    /// Sent after a help keyword.
    pub help_reply: String,
}

impl Default for ComplianceConfig {
    fn default() -> Self {
        Self {
            stop_reply: "You have been unsubscribed and will receive no further messages. Reply START to resubscribe."
                .into(),
            start_reply: "You have been resubscribed. Reply STOP to unsubscribe.".into(),
            help_reply: "Herald notifications. Msg & data rates may apply. Reply STOP to unsubscribe.".into(),
        }
    }
}

/// One plugin: where its component is, what it may do and the settings it is given.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct PluginConfig {
    /// The component file; defaults to `runtime.plugin_dir/NAME.wasm`.
    pub path: Option<PathBuf>,
    /// Hosts this plugin may call, as `host` (any port) or `host:port`. Deny by default.
    pub allowed_hosts: Vec<String>,
    /// Linear memory limit per call, in MiB.
    pub memory_mb: u64,
    /// CPU budget per call, in milliseconds of guest execution (epoch ticks of 10 ms).
    pub cpu_ms: u64,
    /// Wall-clock deadline per call, host HTTP included, in milliseconds.
    pub timeout_ms: u64,
    /// Timeout of one outbound HTTP request, in milliseconds.
    pub http_timeout_ms: u64,
    /// Largest outbound HTTP response body accepted, in bytes.
    pub max_response_bytes: usize,
    /// Settings handed to the plugin on every call (secrets included; never logged).
    #[serde(deserialize_with = "scalar_map")]
    pub config: BTreeMap<String, String>,
}

impl Default for PluginConfig {
    fn default() -> Self {
        Self {
            path: None,
            allowed_hosts: Vec::new(),
            memory_mb: 32,
            cpu_ms: 500,
            timeout_ms: 15_000,
            http_timeout_ms: 10_000,
            max_response_bytes: 1 << 20,
            config: BTreeMap::new(),
        }
    }
}

impl PluginConfig {
    /// The component file for the plugin called `name`.
    pub fn resolved_path(&self, name: &str, runtime: &RuntimeConfig) -> PathBuf {
        self.path
            .clone()
            .unwrap_or_else(|| runtime.plugin_dir.join(format!("{name}.wasm")))
    }
}

/// Accepts strings, numbers and booleans as plugin settings and keeps them as text.
fn scalar_map<'de, D: Deserializer<'de>>(
    d: D,
) -> std::result::Result<BTreeMap<String, String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Scalar {
        Text(String),
        Int(i64),
        Float(f64),
        Bool(bool),
    }
    let raw = BTreeMap::<String, Scalar>::deserialize(d)?;
    Ok(raw
        .into_iter()
        .map(|(k, v)| {
            let text = match v {
                Scalar::Text(s) => s,
                Scalar::Int(i) => i.to_string(),
                Scalar::Float(f) => f.to_string(),
                Scalar::Bool(b) => b.to_string(),
            };
            (k, text)
        })
        .collect())
}

/// Where configuration comes from, kept so that a reload reads the same sources again.
#[derive(Debug, Clone, Default)]
pub struct ConfigSource {
    /// The config file, if any.
    pub file: Option<PathBuf>,
    /// Whether to read environment variables.
    pub env: bool,
}

impl ConfigSource {
    /// Reads the file (when set) and the environment (when enabled) into a [`Config`].
    pub fn load(&self) -> Result<Config> {
        let mut figment = Figment::from(Serialized::defaults(Config::default()));
        if let Some(file) = &self.file {
            figment = figment.merge(Toml::file_exact(file));
        }
        if self.env {
            figment = figment
                .merge(Serialized::defaults(legacy_twilio_env()))
                .merge(
                    Env::prefixed("HERALD_")
                        .split("__")
                        .filter(|key| is_setting(key.as_str()) && !is_plugin_setting(key.as_str())),
                )
                .merge(Serialized::defaults(herald_plugin_settings_env()));
        }
        let config: Config = figment.extract().map_err(Box::new)?;
        config.check()?;
        Ok(config)
    }

    /// The config file's path, if any.
    pub fn file(&self) -> Option<&Path> {
        self.file.as_deref()
    }
}

impl Config {
    /// Checks what serde cannot: values that must agree with each other.
    pub fn check(&self) -> Result<()> {
        for (name, plugin) in &self.plugins {
            if plugin.memory_mb > self.runtime.max_memory_mb {
                return Err(ConfigError::Inconsistent(format!(
                    "plugins.{name}.memory_mb = {} exceeds runtime.max_memory_mb = {}",
                    plugin.memory_mb, self.runtime.max_memory_mb
                )));
            }
        }
        for (name, plugin) in &self.plugins {
            if !plugin.allowed_hosts.is_empty() && plugin.timeout_ms >= self.delivery.lease_ms {
                return Err(ConfigError::Inconsistent(format!(
                    "plugins.{name}.timeout_ms = {} must be below delivery.lease_ms = {}, or a slow send could be repeated",
                    plugin.timeout_ms, self.delivery.lease_ms
                )));
            }
        }
        if self.delivery.max_attempts == 0 {
            return Err(ConfigError::Inconsistent(
                "delivery.max_attempts must be at least 1".into(),
            ));
        }
        Ok(())
    }
}

/// Only nested names are settings (`HERALD_SERVER__LISTEN`): single words such as `HERALD_LOG`
/// belong to other parts of Herald.
fn is_setting(key: &str) -> bool {
    key.contains('.')
}

/// What `value` shows when it is a secret.
const REDACTED: &str = "[redacted]";

/// Setting names that are secret whatever a plugin declares (`*token*`, `*secret*`,
/// `*password*`, in any case). Lives here, not in `plugin`, so `config` depends on nothing else
/// in Herald; the plugin runtime uses it too.
pub fn looks_secret(key: &str) -> bool {
    let key = key.to_ascii_lowercase();
    ["token", "secret", "password"]
        .iter()
        .any(|w| key.contains(w))
}

impl Config {
    /// A copy safe to print: API and admin keys, database passwords and plugin settings whose
    /// names mark them secret (`*token*`, `*secret*`, `*password*`) are replaced.
    pub fn redacted(&self) -> Config {
        let mut copy = self.clone();
        copy.server.api_keys = copy
            .server
            .api_keys
            .iter()
            .map(|_| REDACTED.to_string())
            .collect();
        if !copy.server.admin_key.is_empty() {
            copy.server.admin_key = REDACTED.into();
        }
        if let Ok(mut url) = url::Url::parse(&copy.storage.url)
            && url.password().is_some()
            && url.set_password(Some(REDACTED)).is_ok()
        {
            copy.storage.url = url.to_string();
        }
        for plugin in copy.plugins.values_mut() {
            for (key, value) in plugin.config.iter_mut() {
                if looks_secret(key) {
                    *value = REDACTED.into();
                }
            }
        }
        copy
    }
}

/// `HERALD_PLUGINS__<NAME>__CONFIG__<KEY>` lower-cased: a plugin setting, read as raw text.
fn is_plugin_setting(key: &str) -> bool {
    let parts: Vec<&str> = key.split('.').collect();
    parts.len() == 4
        && parts[0].eq_ignore_ascii_case("plugins")
        && parts[2].eq_ignore_ascii_case("config")
}

fn herald_plugin_settings_env() -> serde_json::Value {
    let mut plugins = serde_json::Map::new();
    for (key, value) in std::env::vars() {
        let Some(rest) = key.strip_prefix("HERALD_PLUGINS__") else {
            continue;
        };
        let parts: Vec<&str> = rest.split("__").collect();
        if let [name, section, setting] = parts.as_slice()
            && section.eq_ignore_ascii_case("config")
        {
            insert_setting(
                &mut plugins,
                &name.to_lowercase(),
                &setting.to_lowercase(),
                value,
            );
        }
    }
    serde_json::json!({ "plugins": plugins })
}

/// The original module's environment names, kept so existing deployments work unchanged.
fn legacy_twilio_env() -> serde_json::Value {
    const NAMES: [(&str, &str); 4] = [
        ("TWILIO_ACCOUNT_SID", "account_sid"),
        ("TWILIO_AUTH_TOKEN", "auth_token"),
        ("TWILIO_PHONE_NUMBER", "from"),
        ("TWILIO_MESSAGING_SERVICE_SID", "messaging_service_sid"),
    ];
    let mut plugins = serde_json::Map::new();
    for (var, setting) in NAMES {
        if let Ok(value) = std::env::var(var)
            && !value.is_empty()
        {
            insert_setting(&mut plugins, "twilio", setting, value);
        }
    }
    serde_json::json!({ "plugins": plugins })
}

fn insert_setting(
    plugins: &mut serde_json::Map<String, serde_json::Value>,
    plugin: &str,
    key: &str,
    value: String,
) {
    let entry = plugins
        .entry(plugin.to_string())
        .or_insert_with(|| serde_json::json!({ "config": {} }));
    if let Some(config) = entry.get_mut("config").and_then(|c| c.as_object_mut()) {
        config.insert(key.to_string(), serde_json::Value::String(value));
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    /// A minimal file fills in defaults and keeps plugin settings as text.
    #[test]
    fn file_with_defaults() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("herald.toml");
        std::fs::write(
            &path,
            "[plugins.twilio]\nallowed_hosts = [\"api.twilio.com\"]\n[plugins.twilio.config]\naccount_sid = \"AC1\"\nport = 5\n",
        )
        .unwrap();
        let config = ConfigSource {
            file: Some(path),
            env: false,
        }
        .load()
        .unwrap();
        let twilio = &config.plugins["twilio"];
        assert_eq!(twilio.config["account_sid"], "AC1");
        assert_eq!(twilio.config["port"], "5");
        assert_eq!(twilio.memory_mb, 32);
        assert_eq!(config.routing.provider, "twilio");
    }

    /// An unknown key is an error that names it.
    #[test]
    fn unknown_key_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("herald.toml");
        std::fs::write(&path, "[server]\nlisten_on = \"x\"\n").unwrap();
        let err = ConfigSource {
            file: Some(path),
            env: false,
        }
        .load()
        .unwrap_err();
        assert!(err.to_string().contains("listen_on"), "{err}");
    }
}
