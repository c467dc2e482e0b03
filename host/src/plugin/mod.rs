//! The sandboxed plugin runtime: loading, validating, routing and hot-swapping plugins.
//!
//! Layout:
//! - [`bindings`]: one module per supported WIT version; the only place `bindgen!` runs.
//! - [`model`]: the contract in host terms.
//! - [`engine`]: the wasmtime engine, epoch ticks and the compiled-artifact cache.
//! - [`host`]: what a plugin can reach (logging, granted HTTP), per-call state.
//! - [`egress`]: the grants of outbound HTTP: scheme, host, port, resolved addresses, headers.
//! - [`loaded`]: one validated plugin version and the calls into it.
//! - [`bounds`]: caps and redaction applied to every plugin output as each call returns.
//! - [`declared`]: which settings each configured plugin declares secret, for `herald config`.
//! - [`redact`]: secret values, in every encoding, removed from plugin output.
//! - [`reuse`]: one instance kept for several sends of one tenant under one plugin version.
//!
//! A reload compiles and validates (instantiate + describe + required settings) every changed
//! plugin *before* it replaces the running version. Callers pin the version they loaded for the
//! whole call (`Arc`), so calls in flight finish on the old version while new calls see the new
//! one; the old version is freed when its last call ends. A version that fails validation is
//! rejected with a log line and the old one keeps serving.
//!
//! Each plugin has its own concurrency limits ([`gate`]): a share of instances for ordinary
//! calls and one for webhooks, each with a bounded wait. The pooling allocator is sized to fit
//! every plugin's shares, so one plugin's flood cannot take another's instances, and a full
//! share is back-pressure (busy), never a trap.
//!
//! A plugin's file must be a regular file within `runtime.max_plugin_bytes` ([`file`]), and
//! reading and compiling it are bounded by `runtime.compile_timeout_ms`, so a FIFO, a device or
//! a huge file cannot hang a reload or fill memory.

pub mod bindings;
pub mod bounds;
pub mod declared;
pub mod egress;
pub mod engine;
mod file;
mod gate;
pub mod host;
pub mod loaded;
mod meter;
pub mod model;
pub mod redact;
pub mod reuse;
mod scoped;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::Duration;

use arc_swap::ArcSwap;
use serde::Serialize;
use wasmtime::component::Linker;

pub use crate::config::looks_secret;
use crate::config::{Config, PluginConfig, RoutingConfig};
use bindings::{ProviderPre, RendererPre};
use engine::PluginEngine;
use gate::{Gate, GateLimits};
use host::{HostState, HttpGrant, Redactor};
pub use loaded::{CallFailure, FailureKind, LoadedPlugin};
use loaded::{Limits, Pre};
pub use model::PluginKind;

/// Errors from loading plugins.
#[derive(Debug, Clone, thiserror::Error)]
pub enum PluginError {
    /// The engine could not be created.
    #[error("plugin engine: {0}")]
    Engine(String),
    /// The plugin file could not be read.
    #[error("cannot read {path}: {message}")]
    Read {
        /// The file.
        path: String,
        /// Why.
        message: String,
    },
    /// The file is not a valid component.
    #[error("not a loadable component: {0}")]
    Compile(String),
    /// The component was built against a contract this host does not support.
    #[error("unsupported plugin contract: {0}")]
    UnsupportedContract(String),
    /// The component's imports cannot be satisfied or its exports do not match.
    #[error("cannot link: {0}")]
    Link(String),
    /// `describe` failed.
    #[error("describe failed: {0}")]
    Describe(String),
    /// A setting the plugin requires is missing, or a grant is invalid.
    #[error("{0}")]
    Settings(String),
    /// No plugin is configured under that name, or it has the wrong role.
    #[error("{0}")]
    NotAvailable(String),
}

/// What a reload did, plugin by plugin.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct ReloadReport {
    /// Plugins that now serve a new version.
    pub loaded: Vec<String>,
    /// Plugins whose file and settings did not change.
    pub unchanged: Vec<String>,
    /// Plugins no longer configured, removed.
    pub removed: Vec<String>,
    /// Plugins whose new version was rejected (the old one keeps serving), with the reason.
    pub rejected: BTreeMap<String, String>,
}

/// A plugin as listed by the admin API.
#[derive(Debug, Clone, Serialize)]
pub struct PluginSummary {
    /// Configured name.
    pub name: String,
    /// Role.
    pub kind: PluginKind,
    /// Its own name and version.
    pub version: String,
    /// SHA-256 of the component.
    pub sha256: String,
    /// The contract version the component was built against, e.g. `0.2.0`.
    pub contract: String,
    /// Set when the plugin's `describe` names itself other than the operator configured it:
    /// the plugin still serves under the configured name, but the listing does not let it pass
    /// for another plugin unnoticed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name_mismatch: Option<String>,
}

type Slot = Arc<ArcSwap<LoadedPlugin>>;

struct Inner {
    engine: PluginEngine,
    provider_linker: Linker<HostState>,
    renderer_linker: Linker<HostState>,
    slots: RwLock<BTreeMap<String, Slot>>,
    routing: ArcSwap<RoutingConfig>,
    reloading: tokio::sync::Mutex<()>,
    /// Each plugin's concurrency gate, by name: kept across reloads while its limits stay.
    gates: Mutex<BTreeMap<String, Arc<Gate>>>,
    /// How many instances the pooling allocator holds.
    pool: usize,
    /// Where plugin call latencies are recorded.
    metrics: crate::metrics::Metrics,
}

impl Inner {
    /// The plugin slots, to read. A lock poisoned by a panic elsewhere is recovered rather than
    /// read as "no plugins": every change under it is one insert or remove of a whole, valid
    /// slot, so the map is consistent at any point a panic could interrupt it.
    fn slots(&self) -> RwLockReadGuard<'_, BTreeMap<String, Slot>> {
        self.slots.read().unwrap_or_else(PoisonError::into_inner)
    }

    /// The plugin slots, to change; a poisoned lock is recovered as in [`Inner::slots`], so an
    /// install is never skipped while the reload reports it done.
    fn slots_mut(&self) -> RwLockWriteGuard<'_, BTreeMap<String, Slot>> {
        self.slots.write().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The plugin runtime: every configured plugin, hot-swappable, and which one serves each role.
#[derive(Clone)]
pub struct Plugins {
    inner: Arc<Inner>,
}

impl Plugins {
    /// Starts the runtime and loads every configured plugin; any failure is an error.
    ///
    /// The pool holds `runtime.max_instances` instances, or more when the configured plugins'
    /// shares need more (plus one instance to validate a reload).
    pub async fn start(config: &Config) -> Result<Self, PluginError> {
        Self::start_with_metrics(config, crate::metrics::Metrics::new()).await
    }

    /// [`Plugins::start`], recording each plugin call's latency into `metrics`.
    pub async fn start_with_metrics(
        config: &Config,
        metrics: crate::metrics::Metrics,
    ) -> Result<Self, PluginError> {
        let rt = &config.runtime;
        let pool = Self::wanted(config)
            .values()
            .map(|settings| GateLimits::of(settings).instances())
            .sum::<usize>()
            .saturating_add(1)
            .max(rt.max_instances as usize);
        let engine = PluginEngine::new(
            u32::try_from(pool).unwrap_or(u32::MAX),
            (rt.max_memory_mb as usize) << 20,
            rt.cache_dir.clone(),
            engine::artifact_key(&rt.artifact_key_file),
        )?;
        let link = |e: wasmtime::Error| PluginError::Engine(format!("{e:#}"));
        let provider_linker = bindings::provider_linker(engine.engine()).map_err(link)?;
        let renderer_linker = bindings::renderer_linker(engine.engine()).map_err(link)?;
        let plugins = Self {
            inner: Arc::new(Inner {
                engine,
                provider_linker,
                renderer_linker,
                slots: RwLock::new(BTreeMap::new()),
                routing: ArcSwap::from_pointee(config.routing.clone()),
                reloading: tokio::sync::Mutex::new(()),
                gates: Mutex::new(BTreeMap::new()),
                pool,
                metrics,
            }),
        };
        let mut report = plugins.apply(config).await;
        // A plugin's own failure explains a routing failure that follows from it: report it
        // first. Only a routed plugin (one the host needs to serve a role) stops the start; a
        // broken plugin nothing routes to was logged by `apply` and the host serves without it.
        let routing = report.rejected.remove("routing");
        let routed = [&config.routing.provider, &config.routing.renderer];
        if let Some((name, why)) = report
            .rejected
            .into_iter()
            .find(|(name, _)| routed.contains(&name))
        {
            return Err(PluginError::NotAvailable(format!("plugin `{name}`: {why}")));
        }
        if let Some(why) = routing {
            return Err(PluginError::NotAvailable(format!("routing: {why}")));
        }
        Ok(plugins)
    }

    /// The plugins a configuration asks for: those listed, plus any role target not listed
    /// (with default settings, so `routing.renderer = "mustache"` alone is enough).
    fn wanted(config: &Config) -> BTreeMap<String, PluginConfig> {
        let mut wanted = config.plugins.clone();
        for name in [&config.routing.provider, &config.routing.renderer] {
            if !name.is_empty() && !wanted.contains_key(name) {
                wanted.insert(name.clone(), PluginConfig::default());
            }
        }
        wanted
    }

    /// Applies a (new) configuration: loads changed plugins, removes dropped ones, re-routes.
    pub async fn apply(&self, config: &Config) -> ReloadReport {
        let _one_at_a_time = self.inner.reloading.lock().await;
        let mut report = ReloadReport::default();
        let wanted = Self::wanted(config);
        // One instance stays free to validate reloads.
        let mut room = self.inner.pool.saturating_sub(1);
        for (name, settings) in &wanted {
            let path = settings.resolved_path(name, &config.runtime);
            let current = self.get(name);
            let needs = GateLimits::of(settings).instances();
            let loaded = if needs > room {
                Err(PluginError::Settings(format!(
                    "plugin `{name}` needs {needs} instances (max_concurrency + webhook_concurrency) \
                     but only {room} of the pool's {} are left; raise runtime.max_instances \
                     (takes effect on restart) or lower the plugins' shares",
                    self.inner.pool
                )))
            } else {
                room -= needs;
                self.load(name, settings, &path, &config.runtime, current.as_deref())
                    .await
            };
            match loaded {
                Ok(None) => report.unchanged.push(name.clone()),
                Ok(Some(plugin)) => {
                    tracing::info!(plugin = %name, version = %plugin.info.version, contract = plugin.contract(), sha256 = %&plugin.hash[..12], "plugin loaded");
                    self.install(name, plugin);
                    report.loaded.push(name.clone());
                }
                Err(e) => {
                    let keeps = if current.is_some() {
                        "; the previous version keeps serving"
                    } else {
                        ""
                    };
                    tracing::error!(plugin = %name, path = %path.display(), error = %e, "rejected plugin{keeps}");
                    report.rejected.insert(name.clone(), e.to_string());
                }
            }
        }
        {
            let mut slots = self.inner.slots_mut();
            let gone: Vec<String> = slots
                .keys()
                .filter(|k| !wanted.contains_key(*k))
                .cloned()
                .collect();
            let mut gates = self
                .inner
                .gates
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            gates.retain(|name, _| wanted.contains_key(name));
            for name in gone {
                slots.remove(&name);
                tracing::info!(plugin = %name, "plugin removed");
                report.removed.push(name);
            }
        }
        let in_use = self
            .inner
            .slots()
            .values()
            .map(|slot| slot.load().hash.clone())
            .collect();
        self.inner.engine.trim(&in_use);
        match self.check_routing(&config.routing) {
            Ok(()) => self.inner.routing.store(Arc::new(config.routing.clone())),
            Err(e) => {
                tracing::error!(error = %e, "rejected routing change; the previous routing stays");
                report.rejected.insert("routing".into(), e.to_string());
            }
        }
        report
    }

    fn install(&self, name: &str, plugin: LoadedPlugin) {
        let plugin = Arc::new(plugin);
        let mut slots = self.inner.slots_mut();
        match slots.get(name) {
            Some(slot) => slot.store(plugin),
            None => {
                slots.insert(name.to_string(), Arc::new(ArcSwap::new(plugin)));
            }
        }
    }

    fn check_routing(&self, routing: &RoutingConfig) -> Result<(), PluginError> {
        for (name, kind) in [
            (&routing.provider, PluginKind::Provider),
            (&routing.renderer, PluginKind::Renderer),
        ] {
            if name.is_empty() {
                continue;
            }
            match self.get(name) {
                Some(p) if p.kind == kind => {}
                Some(p) => {
                    return Err(PluginError::NotAvailable(format!(
                        "plugin `{name}` is a {:?}, it cannot serve as {kind:?}",
                        p.kind
                    )));
                }
                None => {
                    return Err(PluginError::NotAvailable(format!(
                        "no plugin `{name}` is loaded"
                    )));
                }
            }
        }
        Ok(())
    }

    /// Loads and validates one plugin; `Ok(None)` when `current` already is exactly this.
    async fn load(
        &self,
        name: &str,
        settings: &PluginConfig,
        path: &std::path::Path,
        runtime: &crate::config::RuntimeConfig,
        current: Option<&LoadedPlugin>,
    ) -> Result<Option<LoadedPlugin>, PluginError> {
        let fingerprint = settings_fingerprint(settings);
        let inner = self.inner.clone();
        let file = path.to_path_buf();
        let max_bytes = runtime.max_plugin_bytes;
        // Reading and compiling run on a blocking thread under a time bound: a file that never
        // ends or a compile that never finishes is abandoned there, and the reload goes on.
        let bound = Duration::from_millis(runtime.compile_timeout_ms);
        let work = tokio::task::spawn_blocking(move || {
            let wasm = file::read(&file, max_bytes)?;
            inner.engine.component(&wasm)
        });
        let (component, hash) = tokio::time::timeout(bound, work)
            .await
            .map_err(|_| {
                PluginError::Compile(format!(
                    "reading and compiling took longer than runtime.compile_timeout_ms ({} ms)",
                    bound.as_millis()
                ))
            })?
            .map_err(|e| PluginError::Engine(e.to_string()))??;
        if let Some(current) = current
            && current.hash == hash
            && current.fingerprint == fingerprint
        {
            return Ok(None);
        }
        let (kind, contract) = self.inner.engine.identify(&component)?;
        let link = |e: wasmtime::Error| PluginError::Link(format!("{e:#}"));
        let pre = match kind {
            PluginKind::Provider => Pre::Provider(
                ProviderPre::new(contract, &self.inner.provider_linker, &component)
                    .map_err(link)?,
            ),
            PluginKind::Renderer => Pre::Renderer(
                RendererPre::new(contract, &self.inner.renderer_linker, &component)
                    .map_err(link)?,
            ),
        };
        let grant = match kind {
            PluginKind::Renderer if !settings.allowed_hosts.is_empty() => {
                return Err(PluginError::Settings(format!(
                    "plugin `{name}` is a renderer; renderers get no network, remove its allowed_hosts"
                )));
            }
            PluginKind::Renderer => None,
            PluginKind::Provider => {
                // One client per plugin: its resolver checks addresses against this plugin's grants.
                let rules = egress::Egress::parse(&settings.allowed_hosts)
                    .map_err(PluginError::Settings)?;
                Some(Arc::new(HttpGrant {
                    client: rules.client().map_err(PluginError::Engine)?,
                    rules,
                    timeout: std::time::Duration::from_millis(settings.http_timeout_ms),
                    max_response_bytes: settings.max_response_bytes,
                }))
            }
        };
        // Until describe says which settings are secret, treat every value as one.
        let mut plugin = LoadedPlugin {
            name: Arc::from(name),
            kind,
            info: model::PluginInfo {
                name: name.to_string(),
                version: String::new(),
                description: String::new(),
                config_keys: Vec::new(),
                outbound_hosts: Vec::new(),
            },
            hash,
            fingerprint,
            generation: loaded::next_generation(),
            config: Arc::new(
                settings
                    .config
                    .iter()
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect(),
            ),
            grant,
            redactor: Arc::new(Redactor::new(settings.config.values().cloned())),
            limits: Limits::new(settings.memory_mb, settings.cpu_ms, settings.timeout_ms),
            max_webhook_events: settings.max_webhook_events,
            pre,
            engine: self.inner.engine.engine().clone(),
            gate: self.gate(name, GateLimits::of(settings)),
            metrics: self.inner.metrics.clone(),
        };
        let info = plugin
            .describe()
            .await
            .map_err(|e| PluginError::Describe(e.to_string()))?;
        let missing: Vec<&str> = info
            .config_keys
            .iter()
            .filter(|k| k.required && settings.config.get(&k.name).is_none_or(|v| v.is_empty()))
            .map(|k| k.name.as_str())
            .collect();
        if !missing.is_empty() {
            return Err(PluginError::Settings(format!(
                "plugin `{name}` requires plugins.{name}.config.{} (missing)",
                missing.join(", plugins.{name}.config.")
            )));
        }
        let secret = |key: &str| {
            info.config_keys.iter().any(|k| k.secret && k.name == key) || looks_secret(key)
        };
        if info.name != name {
            tracing::warn!(plugin = %name, described_as = %info.name, "plugin describes itself under another name; it serves under the configured name, and the admin listing shows the mismatch");
        }
        plugin.redactor = Arc::new(Redactor::new(
            settings
                .config
                .iter()
                .filter(|(k, _)| secret(k))
                .map(|(_, v)| v.clone()),
        ));
        plugin.info = info;
        Ok(Some(plugin))
    }

    /// The gate of the plugin called `name`: its current one while the limits are the same,
    /// so calls on the old and the new version share it; a new one when they changed.
    fn gate(&self, name: &str, limits: GateLimits) -> Arc<Gate> {
        let mut gates = self
            .inner
            .gates
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        match gates.get(name) {
            Some(gate) if gate.limits() == limits => gate.clone(),
            _ => {
                let gate = Arc::new(Gate::new(limits));
                gates.insert(name.to_string(), gate.clone());
                gate
            }
        }
    }

    /// Where this runtime records plugin call latencies.
    #[must_use]
    pub fn metrics(&self) -> &crate::metrics::Metrics {
        &self.inner.metrics
    }

    /// The current version of the plugin called `name`.
    pub fn get(&self, name: &str) -> Option<Arc<LoadedPlugin>> {
        self.inner.slots().get(name).map(|slot| slot.load_full())
    }

    /// The plugin currently routed as the provider, pinned for the caller's use.
    pub fn provider(&self) -> Result<Arc<LoadedPlugin>, PluginError> {
        let name = self.inner.routing.load().provider.clone();
        self.get(&name).ok_or_else(|| {
            PluginError::NotAvailable(format!("no provider plugin `{name}` is loaded"))
        })
    }

    /// The plugin currently routed as the renderer, pinned for the caller's use.
    pub fn renderer(&self) -> Result<Arc<LoadedPlugin>, PluginError> {
        let name = self.inner.routing.load().renderer.clone();
        self.get(&name).ok_or_else(|| {
            PluginError::NotAvailable(format!("no renderer plugin `{name}` is loaded"))
        })
    }

    /// Every loaded plugin.
    pub fn list(&self) -> Vec<PluginSummary> {
        self.inner
            .slots()
            .iter()
            .map(|(name, slot)| {
                let p = slot.load();
                PluginSummary {
                    name: name.clone(),
                    kind: p.kind,
                    version: format!("{} {}", p.info.name, p.info.version),
                    sha256: p.hash.clone(),
                    contract: p.contract().to_string(),
                    name_mismatch: (p.info.name != *name).then(|| {
                        format!(
                            "configured as `{name}`, describes itself as `{}`",
                            p.info.name
                        )
                    }),
                }
            })
            .collect()
    }
}

/// A digest of everything in a plugin's settings except its file, to detect config-only changes.
fn settings_fingerprint(settings: &PluginConfig) -> String {
    use sha2::{Digest, Sha256};
    let text = serde_json::to_string(settings).unwrap_or_default();
    hex::encode(Sha256::digest(text.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A lock poisoned by a panic while it was held neither hides the loaded plugins nor makes
    /// a reload report a plugin loaded that it did not install.
    #[tokio::test]
    async fn a_poisoned_lock_is_recovered() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .parent()
            .unwrap()
            .to_path_buf();
        let probe = root.join("target/plugins/probe.wasm");
        assert!(
            probe.exists(),
            "{} is missing: build the plugins with `cargo xtask build-plugins`",
            probe.display()
        );
        let cache = tempfile::tempdir().unwrap();
        let mut config = Config::default();
        config.runtime.cache_dir = cache.path().to_path_buf();
        config.runtime.max_instances = 4;
        config.routing = RoutingConfig {
            provider: String::new(),
            renderer: String::new(),
        };
        let plugins = Plugins::start(&config).await.unwrap();
        let poisoner = plugins.clone();
        let panicked = std::thread::spawn(move || {
            let _held = poisoner.inner.slots.write().unwrap();
            panic!("a panic while the plugin slots are held");
        })
        .join();
        assert!(panicked.is_err());
        assert!(plugins.inner.slots.is_poisoned());

        config.plugins.insert(
            "probe".into(),
            PluginConfig {
                path: Some(probe),
                // The pool was sized at start for no plugins: 4 instances, one kept for reloads.
                max_concurrency: 2,
                webhook_concurrency: 1,
                ..PluginConfig::default()
            },
        );
        config.routing.provider = "probe".into();
        let report = plugins.apply(&config).await;
        assert_eq!(report.loaded, ["probe"], "{report:?}");
        assert!(report.rejected.is_empty(), "{report:?}");
        assert!(plugins.get("probe").is_some());
        assert!(plugins.provider().is_ok());
        let listed: Vec<String> = plugins.list().into_iter().map(|p| p.name).collect();
        assert_eq!(listed, ["probe"]);

        config.plugins.clear();
        config.routing.provider = String::new();
        let report = plugins.apply(&config).await;
        assert_eq!(report.removed, ["probe"], "{report:?}");
        assert!(plugins.list().is_empty());
    }
}
