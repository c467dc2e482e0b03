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
    /// Asking providers for statuses whose callbacks never came.
    pub reconcile: ReconcileConfig,
    /// The plugins, by name.
    pub plugins: BTreeMap<String, PluginConfig>,
    /// What the log looks like and how much of it there is.
    pub logging: LoggingConfig,
    /// `GET /metrics`: whether it is served and to whom.
    pub metrics: crate::metrics::MetricsConfig,
    /// The price per segment of each provider and destination (`[[pricing.prices]]`); the
    /// shipped Twilio US and CA entries are examples to override.
    pub pricing: crate::pipeline::pricing::PriceTable,
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
    /// How long a client may take to send a request's headers, in milliseconds, counted from
    /// the connection's start or the previous response; then the connection is closed.
    pub header_read_timeout_ms: u64,
    /// How long a client may take to send a whole request body, in milliseconds; then it is
    /// answered `408 request_timeout` and the connection is closed.
    pub body_read_timeout_ms: u64,
    /// On shutdown, how long requests in progress may take to finish, in milliseconds; then
    /// their connections are dropped. Provider calls in flight finish and are recorded anyway.
    pub shutdown_grace_ms: u64,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            public_url: "http://127.0.0.1:8080".into(),
            api_keys: Vec::new(),
            admin_key: String::new(),
            max_body_bytes: 64 * 1024,
            header_read_timeout_ms: 10_000,
            body_read_timeout_ms: 30_000,
            shutdown_grace_ms: 10_000,
        }
    }
}

/// Storage settings.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct StorageConfig {
    /// `sqlite://PATH` (the default, created when missing) or `postgres://…`.
    pub url: String,
    /// How long an operation waits for a database connection, in milliseconds, before it is
    /// answered `503 storage_unavailable`.
    pub acquire_timeout_ms: u64,
    /// How long the event log (what `/delivery/stream` and `/delivery/real-time` read) keeps an
    /// event, in milliseconds; older events are removed in the background, and a stream resumed
    /// from a removed id is told so. `0` keeps every event.
    pub event_retention_ms: u64,
}

impl Default for StorageConfig {
    fn default() -> Self {
        Self {
            url: "sqlite://herald.db".into(),
            acquire_timeout_ms: 5_000,
            event_retention_ms: 30 * 24 * 3_600_000,
        }
    }
}

/// Log settings; the `HERALD_LOG` variable (a `tracing` filter such as `debug` or
/// `herald=debug,sqlx=warn`) overrides `level`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct LoggingConfig {
    /// `text` (one line per event, for people) or `json` (one JSON object per line, for
    /// machines).
    pub format: LogFormat,
    /// The filter when `HERALD_LOG` is not set, e.g. `info` or `herald=debug,info`.
    pub level: String,
}

impl Default for LoggingConfig {
    fn default() -> Self {
        Self {
            format: LogFormat::Text,
            level: "info".into(),
        }
    }
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines (coloured only on a terminal).
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

/// Settings of the plugin runtime.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct RuntimeConfig {
    /// Where compiled plugin artifacts are cached, keyed by content hash and engine. Created
    /// `0700`; a directory others may write to is not used.
    pub cache_dir: PathBuf,
    /// The host secret that authenticates cached artifacts (created `0600` when missing). It
    /// must live outside `cache_dir`: whoever can write the cache must not be able to sign it.
    pub artifact_key_file: PathBuf,
    /// Where a plugin's `.wasm` is looked for when its `path` is not set: `DIR/NAME.wasm`.
    pub plugin_dir: PathBuf,
    /// How many plugin instances may be live at once: the pooling allocator's size at least.
    /// At start the pool grows to fit every configured plugin's `max_concurrency` +
    /// `webhook_concurrency` (plus one instance for validating reloads); a reload that would need
    /// more than the pool has is rejected.
    pub max_instances: u32,
    /// The largest linear memory any plugin may be granted, in MiB.
    pub max_memory_mb: u64,
    /// Watch plugin files and the config file, and reload on change.
    pub watch: bool,
    /// How often the watcher looks, in milliseconds.
    pub watch_interval_ms: u64,
    /// The largest plugin file accepted, in bytes (default 50 MiB). Only regular files are read.
    pub max_plugin_bytes: u64,
    /// How long compiling one plugin may take, in milliseconds, before its load is rejected.
    pub compile_timeout_ms: u64,
    /// Whether the dispatcher gives every send a fresh instance or lets one instance serve
    /// several sends of one tenant under one plugin version within a claimed batch.
    pub instance_reuse: InstanceReuse,
    /// With `per-batch`: the most sends one instance serves (N, at least 1).
    pub reuse_max_calls: u32,
    /// With `per-batch`: how long after its first send an instance may take another, in
    /// milliseconds (T, at least 1). A tenant's sends of the batch not started by then (or once
    /// one send has run 0.5 ms) go out concurrently on fresh instances.
    pub reuse_max_ms: u64,
}

/// How long a provider instance lives in the dispatcher.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum InstanceReuse {
    /// A fresh instance for every send.
    PerCall,
    /// One instance serves up to `reuse_max_calls` sends of one tenant under one plugin version
    /// (same file, same settings, same load) within one claimed batch and `reuse_max_ms`, then
    /// is dropped; a failed call drops it at once. It never serves two tenants or two versions.
    #[default]
    PerBatch,
}

impl Default for RuntimeConfig {
    fn default() -> Self {
        Self {
            cache_dir: user_dir("XDG_CACHE_HOME", ".cache").join("herald/artifacts"),
            artifact_key_file: user_dir("XDG_STATE_HOME", ".local/state")
                .join("herald/artifact.key"),
            plugin_dir: PathBuf::from("target/plugins"),
            max_instances: 128,
            max_memory_mb: 64,
            watch: true,
            watch_interval_ms: 500,
            max_plugin_bytes: 50 << 20,
            compile_timeout_ms: 60_000,
            instance_reuse: InstanceReuse::default(),
            reuse_max_calls: 32,
            reuse_max_ms: 1_000,
        }
    }
}

/// The user's directory named by the XDG variable `var`, else `$HOME/fallback`, else a folder
/// of the temporary directory: absolute in every case, so it does not depend on where Herald
/// starts.
fn user_dir(var: &str, fallback: &str) -> PathBuf {
    let from_env = |name: &str| {
        std::env::var_os(name)
            .map(PathBuf::from)
            .filter(|p| p.is_absolute())
    };
    from_env(var)
        .or_else(|| from_env("HOME").map(|home| home.join(fallback)))
        .unwrap_or_else(|| std::env::temp_dir().join("herald"))
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
    /// How far ahead a message's `send_at` may be, in milliseconds (default 35 days); a later
    /// time is refused with `invalid_send_at`.
    pub max_send_ahead_ms: u64,
    /// How often the scheduler looks for recurring schedules that are due, in milliseconds
    /// (default 1,000).
    pub schedule_poll_ms: u64,
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
            max_send_ahead_ms: 35 * 86_400_000,
            schedule_poll_ms: 1_000,
        }
    }
}

/// The reconciler: it asks the provider that sent a message for its status when the message has
/// stayed `sent` (or `unknown`, once a provider id is known) longer than expected, because a
/// status callback can be lost (Herald down when it came, a network fault).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ReconcileConfig {
    /// Whether the reconciler runs (default `true`).
    pub enabled: bool,
    /// How long a message must have kept its status before its provider is asked, in ms (default
    /// 600,000: ten minutes). After an ask the next one waits at least as long as the message had
    /// waited, so a message is asked about at ages `a`, `2a`, `4a`, ….
    pub after_ms: u64,
    /// How often the reconciler looks for such messages, in ms (default 30,000).
    pub interval_ms: u64,
    /// The most status lookups per second sent to one provider (default 5).
    pub per_provider_per_second: u32,
    /// Messages older than this are no longer asked about, in ms (default 259,200,000: three
    /// days).
    pub max_age_ms: u64,
    /// The most messages one pass looks at per provider (default 100).
    pub batch: u32,
}

impl Default for ReconcileConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            after_ms: 600_000,
            interval_ms: 30_000,
            per_provider_per_second: 5,
            max_age_ms: 259_200_000,
            batch: 100,
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
    /// Where this plugin may send HTTP, deny by default: `scheme://host[:port]` (a missing port is
    /// the scheme's default). Without a scheme a host name means `https` and an IP literal `http`
    /// or `https`. A host name may only resolve to public addresses unless the entry ends in
    /// ` allow_private`. See [`crate::plugin::egress`].
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
    /// Events the host keeps from one webhook; further events the plugin returns are dropped,
    /// with a warning.
    pub max_webhook_events: usize,
    /// How many ordinary calls (sends, lookups, renders) of this plugin may run at once.
    pub max_concurrency: u32,
    /// How many webhook calls of this plugin may run at once: a share of its own, so a flood
    /// of webhooks cannot starve sends.
    pub webhook_concurrency: u32,
    /// How many callers may wait in line for a full share; more are refused as busy at once.
    pub max_waiting: u32,
    /// How long a caller waits in line for an instance, in milliseconds, before it is refused
    /// as busy (a message is put back without counting an attempt; the API answers 503).
    pub max_wait_ms: u64,
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
            max_webhook_events: 100,
            max_concurrency: 16,
            webhook_concurrency: 8,
            max_waiting: 64,
            max_wait_ms: 2_000,
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
        let mut config: Config = figment.extract().map_err(Box::new)?;
        if let Some(file) = &self.file {
            config.resolve_paths(&figment, file);
        }
        config.check()?;
        Ok(config)
    }

    /// The config file's path, if any.
    pub fn file(&self) -> Option<&Path> {
        self.file.as_deref()
    }
}

/// Whether the value at `key` was set by the config file (not a default or the environment).
fn from_file(figment: &Figment, key: &str) -> bool {
    figment
        .find_metadata(key)
        .and_then(|m| m.source.as_ref())
        .is_some_and(|source| matches!(source, figment::Source::File(_)))
}

/// `path` resolved against `dir` when it is relative.
fn resolved(dir: &Path, path: &Path) -> PathBuf {
    if path.is_relative() {
        dir.join(path)
    } else {
        path.to_path_buf()
    }
}

impl Config {
    /// Resolves the relative paths that `file` set against the file's folder, so a config file
    /// means the same wherever Herald is started from.
    fn resolve_paths(&mut self, figment: &Figment, file: &Path) {
        let dir = file.parent().unwrap_or(Path::new("."));
        if from_file(figment, "runtime.cache_dir") {
            self.runtime.cache_dir = resolved(dir, &self.runtime.cache_dir);
        }
        if from_file(figment, "runtime.artifact_key_file") {
            self.runtime.artifact_key_file = resolved(dir, &self.runtime.artifact_key_file);
        }
        if from_file(figment, "runtime.plugin_dir") {
            self.runtime.plugin_dir = resolved(dir, &self.runtime.plugin_dir);
        }
        for (name, plugin) in &mut self.plugins {
            if let Some(path) = &plugin.path
                && from_file(figment, &format!("plugins.{name}.path"))
            {
                plugin.path = Some(resolved(dir, path));
            }
        }
        if from_file(figment, "storage.url") {
            self.storage.url = sqlite_resolved(dir, &self.storage.url);
        }
    }

    /// The settings that differ between `self` (running) and `new` and that only a restart
    /// applies: the listener, storage, the plugin engine and the dispatcher's size.
    #[must_use]
    pub fn restart_required(&self, new: &Config) -> Vec<&'static str> {
        let mut changed = Vec::new();
        let mut check = |name, differs: bool| {
            if differs {
                changed.push(name);
            }
        };
        check("server.listen", self.server.listen != new.server.listen);
        check(
            "server.max_body_bytes",
            self.server.max_body_bytes != new.server.max_body_bytes,
        );
        check("storage.url", self.storage.url != new.storage.url);
        check(
            "runtime.cache_dir",
            self.runtime.cache_dir != new.runtime.cache_dir,
        );
        check(
            "runtime.max_instances",
            self.runtime.max_instances != new.runtime.max_instances,
        );
        check(
            "runtime.max_memory_mb",
            self.runtime.max_memory_mb != new.runtime.max_memory_mb,
        );
        check("runtime.watch", self.runtime.watch != new.runtime.watch);
        check(
            "runtime.watch_interval_ms",
            self.runtime.watch_interval_ms != new.runtime.watch_interval_ms,
        );
        check(
            "delivery.workers",
            self.delivery.workers != new.delivery.workers,
        );
        changed
    }

    /// Checks what serde cannot: values that must agree with each other.
    pub fn check(&self) -> Result<()> {
        self.pricing
            .check()
            .map_err(|e| ConfigError::Inconsistent(format!("pricing.{e}")))?;
        check_public_url(&self.server.public_url)?;
        if self
            .runtime
            .artifact_key_file
            .starts_with(&self.runtime.cache_dir)
        {
            return Err(ConfigError::Inconsistent(
                "runtime.artifact_key_file must be outside runtime.cache_dir".into(),
            ));
        }
        check_storage_url(&self.storage.url)?;
        for (name, plugin) in &self.plugins {
            if plugin.memory_mb > self.runtime.max_memory_mb {
                return Err(ConfigError::Inconsistent(format!(
                    "plugins.{name}.memory_mb = {} exceeds runtime.max_memory_mb = {}",
                    plugin.memory_mb, self.runtime.max_memory_mb
                )));
            }
        }
        for (name, plugin) in &self.plugins {
            crate::plugin::egress::Egress::parse(&plugin.allowed_hosts).map_err(|why| {
                ConfigError::Inconsistent(format!("plugins.{name}.allowed_hosts: {why}"))
            })?;
            // A send may wait `max_wait_ms` for an instance, then run `timeout_ms`, all under
            // its lease.
            let mut held = plugin.timeout_ms.saturating_add(plugin.max_wait_ms);
            if let Some(reuse) = crate::plugin::reuse::ReuseLimits::of(&self.runtime) {
                // A send may also wait for its turn on a reused instance.
                let turn = u64::try_from(reuse.longest_turn().as_micros().div_ceil(1_000))
                    .unwrap_or(u64::MAX);
                held = held.saturating_add(turn);
            }
            if !plugin.allowed_hosts.is_empty() && held >= self.delivery.lease_ms {
                return Err(ConfigError::Inconsistent(format!(
                    "plugins.{name}.timeout_ms + max_wait_ms (+ the wait for a turn on a reused instance: min(reuse_max_ms, 0.5 ms × (reuse_max_calls − 1))) = {held} must be below delivery.lease_ms = {}, or a slow send could be repeated",
                    self.delivery.lease_ms
                )));
            }
        }
        if self.runtime.reuse_max_calls == 0 || self.runtime.reuse_max_ms == 0 {
            return Err(ConfigError::Inconsistent(
                "runtime.reuse_max_calls and runtime.reuse_max_ms must be at least 1".into(),
            ));
        }
        if self.delivery.max_attempts == 0 {
            return Err(ConfigError::Inconsistent(
                "delivery.max_attempts must be at least 1".into(),
            ));
        }
        self.reconcile.check()?;
        let timeouts = [
            (
                "server.header_read_timeout_ms",
                self.server.header_read_timeout_ms,
            ),
            (
                "server.body_read_timeout_ms",
                self.server.body_read_timeout_ms,
            ),
            (
                "storage.acquire_timeout_ms",
                self.storage.acquire_timeout_ms,
            ),
        ];
        if let Some((name, _)) = timeouts.iter().find(|(_, ms)| *ms == 0) {
            return Err(ConfigError::Inconsistent(format!(
                "{name} must be at least 1"
            )));
        }
        if let Err(error) = tracing_subscriber::EnvFilter::try_new(&self.logging.level) {
            return Err(ConfigError::Inconsistent(format!(
                "logging.level = {:?} is not a log filter: {error}",
                self.logging.level
            )));
        }
        Ok(())
    }
}

impl ReconcileConfig {
    /// Checks that the reconciler can make progress and stays bounded.
    fn check(&self) -> Result<()> {
        let positive = [
            ("after_ms", self.after_ms),
            ("interval_ms", self.interval_ms),
            (
                "per_provider_per_second",
                u64::from(self.per_provider_per_second),
            ),
            ("batch", u64::from(self.batch)),
        ];
        if let Some((name, _)) = positive.iter().find(|(_, value)| *value == 0) {
            return Err(ConfigError::Inconsistent(format!(
                "reconcile.{name} must be at least 1"
            )));
        }
        if self.max_age_ms <= self.after_ms {
            return Err(ConfigError::Inconsistent(format!(
                "reconcile.max_age_ms = {} must exceed reconcile.after_ms = {}, or no message is ever asked about",
                self.max_age_ms, self.after_ms
            )));
        }
        Ok(())
    }
}

/// A SQLite URL or path that names a relative file, resolved against `dir`; other URLs as
/// they are.
fn sqlite_resolved(dir: &Path, url: &str) -> String {
    let (prefix, rest) = if let Some(rest) = url.strip_prefix("sqlite://") {
        ("sqlite://", rest)
    } else if let Some(rest) = url.strip_prefix("sqlite:") {
        ("sqlite:", rest)
    } else if url.contains("://") {
        return url.to_owned();
    } else {
        ("", url)
    };
    let (file, query) = rest
        .split_once('?')
        .map_or((rest, None), |(f, q)| (f, Some(q)));
    if file.is_empty()
        || file.starts_with(':')
        || file.starts_with("file:")
        || Path::new(file).is_absolute()
    {
        return url.to_owned();
    }
    let joined = dir.join(file).display().to_string();
    match query {
        Some(query) => format!("{prefix}{joined}?{query}"),
        None => format!("{prefix}{joined}"),
    }
}

/// `server.public_url` must be an absolute http(s) URL without query or fragment, with a host
/// that has no `_` (providers sign the URL they call; one they cannot call signs nothing).
fn check_public_url(public_url: &str) -> Result<()> {
    let bad = |why: &str| {
        Err(ConfigError::Inconsistent(format!(
            "server.public_url = {public_url:?} {why}"
        )))
    };
    let Ok(url) = url::Url::parse(public_url) else {
        return bad("is not an absolute URL such as https://sms.example.com");
    };
    if !matches!(url.scheme(), "http" | "https") {
        return bad("must use http or https");
    }
    if url.query().is_some() || url.fragment().is_some() {
        return bad("must have no query or fragment");
    }
    match url.host_str() {
        None | Some("") => bad("has no host"),
        Some(host) if host.contains('_') => bad("has a `_` in its host name"),
        Some(_) => Ok(()),
    }
}

/// `storage.url` must name a backend Herald has: `sqlite:` (or a plain file path), `postgres://`
/// or `postgresql://`.
fn check_storage_url(url: &str) -> Result<()> {
    let scheme = url.split_once("://").map(|(scheme, _)| scheme).or_else(|| {
        url.split_once(':')
            .map(|(scheme, _)| scheme)
            .filter(|s| s.len() > 1 && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'+'))
    });
    match scheme {
        None | Some("sqlite" | "postgres" | "postgresql") => Ok(()),
        Some(other) => Err(ConfigError::Inconsistent(format!(
            "storage.url: unsupported storage URL scheme `{other}` (use sqlite://PATH or postgres://…)"
        ))),
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
    /// A copy safe to print when what plugins declare is known: as [`Config::redacted`], and
    /// a plugin setting also stays visible only when its plugin is in `declared` (setting name →
    /// declared secret) and declares it not secret. A setting of a plugin that could not be
    /// described, or one its plugin does not declare, is hidden: it may be a secret.
    pub fn redacted_declared(&self, declared: &BTreeMap<String, BTreeMap<String, bool>>) -> Config {
        let mut copy = self.redacted();
        for (name, plugin) in copy.plugins.iter_mut() {
            let keys = declared.get(name);
            for (key, value) in plugin.config.iter_mut() {
                let public = keys.and_then(|k| k.get(key)) == Some(&false);
                if !public {
                    *value = REDACTED.into();
                }
            }
        }
        copy
    }

    /// A copy safe to print: API and admin keys, database passwords and plugin settings whose
    /// names mark them secret (`*token*`, `*secret*`, `*password*`) are replaced. Plugins may
    /// declare other settings secret: [`Config::redacted_declared`] hides those too.
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
        copy.storage.url = redact_url(&copy.storage.url);
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

/// `url` (a storage URL) safe to log: the password of its userinfo and the values of query
/// parameters that look secret (`password=`, `sslpassword=`, …) are replaced.
#[must_use]
pub fn redact_url(url: &str) -> String {
    let Ok(mut parsed) = url::Url::parse(url) else {
        return scrub(url, url);
    };
    if parsed.password().is_some() && parsed.set_password(Some(REDACTED)).is_err() {
        return scrub(url, url);
    }
    if parsed.query_pairs().any(|(key, _)| looks_secret(&key)) {
        let pairs: Vec<(String, String)> = parsed
            .query_pairs()
            .map(|(key, value)| {
                let value = if looks_secret(&key) {
                    REDACTED.to_owned()
                } else {
                    value.into_owned()
                };
                (key.into_owned(), value)
            })
            .collect();
        parsed.query_pairs_mut().clear().extend_pairs(pairs);
    }
    parsed.to_string()
}

/// `text` with every credential of the storage URL `url` in it replaced: for error messages
/// from a database driver, which may quote the URL or parts of it.
#[must_use]
pub fn scrub(text: &str, url: &str) -> String {
    let mut secrets = Vec::new();
    if let Ok(parsed) = url::Url::parse(url) {
        if let Some(password) = parsed.password() {
            secrets.push(password.to_owned());
        }
        for (key, value) in parsed.query_pairs() {
            if looks_secret(&key) {
                secrets.push(value.into_owned());
            }
        }
    } else if let Some((_, rest)) = url.split_once("://")
        && let Some((userinfo, _)) = rest.rsplit_once('@')
        && let Some((_, password)) = userinfo.split_once(':')
    {
        // Not a URL the parser accepts, but it still carries `user:password@`.
        secrets.push(password.to_owned());
    }
    // Percent-decoded forms too: a driver may print either.
    let decoded: Vec<String> = secrets
        .iter()
        .filter_map(|s| {
            let pair = format!("x={s}");
            let (_, value) = url::form_urlencoded::parse(pair.as_bytes()).next()?;
            Some(value.into_owned())
        })
        .collect();
    secrets.extend(decoded);
    secrets.retain(|s| !s.is_empty() && s != REDACTED);
    // Longest first, so a secret that contains another is replaced whole.
    secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
    let mut text = text.to_owned();
    for secret in secrets {
        text = text.replace(&secret, REDACTED);
    }
    text
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

    /// The `[reconcile]` section has documented defaults, refuses unknown keys and bounds its
    /// values.
    #[test]
    fn reconcile_section() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("herald.toml");
        let load = |text: &str| {
            std::fs::write(&path, text).unwrap();
            ConfigSource {
                file: Some(path.clone()),
                env: false,
            }
            .load()
        };
        let config = load("").unwrap();
        assert_eq!(config.reconcile, ReconcileConfig::default());
        assert!(config.reconcile.enabled);
        let config = load("[reconcile]\nafter_ms = 100\ninterval_ms = 50\nbatch = 7\n").unwrap();
        assert_eq!(
            (config.reconcile.after_ms, config.reconcile.interval_ms),
            (100, 50)
        );
        assert_eq!(config.reconcile.batch, 7);
        let err = load("[reconcile]\nevery_ms = 5\n").unwrap_err();
        assert!(err.to_string().contains("every_ms"), "{err}");
        let err = load("[reconcile]\nper_provider_per_second = 0\n").unwrap_err();
        assert!(err.to_string().contains("per_provider_per_second"), "{err}");
        let err = load("[reconcile]\nafter_ms = 10\nmax_age_ms = 10\n").unwrap_err();
        assert!(err.to_string().contains("max_age_ms"), "{err}");
    }

    /// A storage URL loses its userinfo password and secret query values, and nothing else.
    #[test]
    fn storage_url_redaction() {
        let url = "postgres://herald:s3cret%21pw@db:5432/herald?sslmode=require&password=other-pw";
        let redacted = redact_url(url);
        assert!(!redacted.contains("s3cret"), "{redacted}");
        assert!(!redacted.contains("other-pw"), "{redacted}");
        assert!(
            redacted.starts_with("postgres://herald:%5Bredacted%5D@db:5432/herald?"),
            "{redacted}"
        );
        assert!(redacted.contains("sslmode=require"), "{redacted}");
        assert_eq!(
            redact_url("sqlite://herald.db?mode=rwc"),
            "sqlite://herald.db?mode=rwc"
        );
        assert_eq!(redact_url("herald.db"), "herald.db");
        let message = "connecting to postgres://herald:s3cret!pw@db failed (password s3cret%21pw)";
        let scrubbed = scrub(message, url);
        assert!(!scrubbed.contains("s3cret"), "{scrubbed}");
        assert!(scrubbed.contains("herald:[redacted]@db"), "{scrubbed}");
        let odd = "postgres://u:p a ss@host/db";
        assert!(!scrub(odd, odd).contains("p a ss"));
    }

    /// A zero timeout and a log level that is not a filter are refused with the setting's name.
    #[test]
    fn timeouts_and_log_level_are_checked() {
        let mut config = Config::default();
        assert!(config.check().is_ok());
        config.server.body_read_timeout_ms = 0;
        let err = config.check().unwrap_err();
        assert!(
            err.to_string().contains("server.body_read_timeout_ms"),
            "{err}"
        );
        let mut config = Config::default();
        config.logging.level = "herald=loud".into();
        let err = config.check().unwrap_err();
        assert!(err.to_string().contains("logging.level"), "{err}");
    }

    /// `[logging] format = "json"` and the server and storage timeouts load from a file.
    #[test]
    fn logging_and_timeouts_from_a_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("herald.toml");
        std::fs::write(
            &path,
            "[server]\nshutdown_grace_ms = 250\n[storage]\nacquire_timeout_ms = 750\n[logging]\nformat = \"json\"\n",
        )
        .unwrap();
        let config = ConfigSource {
            file: Some(path),
            env: false,
        }
        .load()
        .unwrap();
        assert_eq!(config.logging.format, LogFormat::Json);
        assert_eq!(config.logging.level, "info");
        assert_eq!(config.server.shutdown_grace_ms, 250);
        assert_eq!(config.server.header_read_timeout_ms, 10_000);
        assert_eq!(config.storage.acquire_timeout_ms, 750);
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
