//! The wasmtime engine: pooling allocation, epoch ticks, and the on-disk artifact cache.
//!
//! Compiling a component with Cranelift takes tens of milliseconds (close to a second in a debug
//! build), so compiled artifacts are cached on disk under a key made of the component's SHA-256
//! and the engine's compatibility hash: a restart, or a reload of an unchanged file, deserializes
//! in well under a millisecond instead of recompiling.
//!
//! A compiled artifact is native code that the host runs, so the cache is never trusted blindly:
//! each file starts with an HMAC-SHA256, keyed by a host secret kept outside the cache directory,
//! over the source's hash, the engine's compatibility hash and the artifact. A file whose MAC does
//! not verify (damaged, or another plugin's artifact copied under this name) is recompiled with a
//! warning; the cache directory is created `0700`, and one that others may write to is not used.

use std::collections::{HashMap, HashSet};
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};
use wasmtime::component::Component;
use wasmtime::{Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig};

use super::PluginError;
use super::bindings::{self, Contract};
use super::model::PluginKind;

/// How often the engine's epoch advances: a call's CPU budget is checked at least this often.
pub const EPOCH_TICK: Duration = Duration::from_millis(10);
/// Bytes of the MAC in front of every cached artifact (HMAC-SHA256).
const MAC_LEN: usize = 32;

/// Creates the cache directory `0700` if needed; `false` (with a warning) when it cannot be
/// used safely: not a directory, or writable by group or others.
fn cache_dir_usable(dir: &Path) -> bool {
    #[cfg(unix)]
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    builder.mode(0o700);
    if let Err(e) = builder.create(dir) {
        tracing::warn!(dir = %dir.display(), error = %e, "cannot create the plugin artifact cache; compiling without it");
        return false;
    }
    let Ok(meta) = std::fs::metadata(dir) else {
        return false;
    };
    #[cfg(unix)]
    if meta.permissions().mode() & 0o022 != 0 {
        tracing::warn!(dir = %dir.display(), "the plugin artifact cache is writable by others; not using it");
        return false;
    }
    meta.is_dir()
}

/// The host secret that authenticates cached artifacts, read from `path` or created there
/// (`0600`) with 32 random bytes. Without it (an unwritable path) a random key for this process
/// only is used: artifacts are then recompiled after a restart, never trusted.
pub fn artifact_key(path: &Path) -> Vec<u8> {
    if let Ok(key) = std::fs::read(path)
        && key.len() >= 32
    {
        return key;
    }
    let key: [u8; 32] = rand::random();
    let written = path
        .parent()
        .map_or(Ok(()), std::fs::create_dir_all)
        .and_then(|()| {
            let mut options = std::fs::OpenOptions::new();
            options.write(true).create_new(true);
            #[cfg(unix)]
            std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
            std::io::Write::write_all(&mut options.open(path)?, &key)
        });
    match written {
        Ok(()) => key.to_vec(),
        // Another process may have created it first: use theirs.
        Err(_) => match std::fs::read(path) {
            Ok(existing) if existing.len() >= 32 => existing,
            _ => {
                tracing::warn!(path = %path.display(), "cannot keep an artifact key; compiled plugins will not be reused across restarts");
                key.to_vec()
            }
        },
    }
}

/// The engine shared by all plugins of one runtime, and its artifact cache.
pub struct PluginEngine {
    engine: Engine,
    cache_dir: PathBuf,
    key: Vec<u8>,
    compat: String,
    compiled: Mutex<HashMap<String, Component>>,
    /// Hashes whose artifact this process wrote to the cache, so that [`PluginEngine::trim`]
    /// removes only files it made (another process may share the directory).
    written: Mutex<HashSet<String>>,
    _ticker: Arc<()>,
}

impl PluginEngine {
    /// Builds an engine with room for `max_instances` live instances of at most `max_memory` bytes.
    pub fn new(
        max_instances: u32,
        max_memory: usize,
        cache_dir: PathBuf,
        key: Vec<u8>,
    ) -> Result<Self, PluginError> {
        let mut config = Config::new();
        config.wasm_component_model(true);
        config.epoch_interruption(true);
        let mut pool = PoolingAllocationConfig::default();
        pool.total_component_instances(max_instances)
            .total_core_instances(max_instances * 4)
            .total_memories(max_instances * 2)
            .total_tables(max_instances * 4)
            .total_stacks(max_instances)
            .max_memory_size(max_memory)
            // Keeping the first pages of a reused slot resident (zeroed, not unmapped) saves the
            // page faults and munmap of a fresh instance: measured 116 → 92 µs per Twilio send.
            .linear_memory_keep_resident(4 << 20)
            .table_keep_resident(64 << 10);
        config.allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
        let engine = Engine::new(&config).map_err(|e| PluginError::Engine(format!("{e:#}")))?;

        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        engine.precompile_compatibility_hash().hash(&mut hasher);
        let compat = format!("{:016x}", hasher.finish());

        // One ticker thread per engine; it stops when the engine's owner is dropped.
        let ticker = Arc::new(());
        let weak: Weak<()> = Arc::downgrade(&ticker);
        let tick_engine = engine.clone();
        std::thread::Builder::new()
            .name("herald-epoch".into())
            .spawn(move || {
                while weak.upgrade().is_some() {
                    std::thread::sleep(EPOCH_TICK);
                    tick_engine.increment_epoch();
                }
            })
            .map_err(|e| PluginError::Engine(format!("cannot start the epoch thread: {e}")))?;

        Ok(Self {
            engine,
            cache_dir,
            key,
            compat,
            compiled: Mutex::new(HashMap::new()),
            written: Mutex::new(HashSet::new()),
            _ticker: ticker,
        })
    }

    /// The wasmtime engine.
    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// Compiles `wasm` (or loads its cached artifact) and returns the component with its hash.
    ///
    /// Blocking: call it from `spawn_blocking`.
    pub fn component(&self, wasm: &[u8]) -> Result<(Component, String), PluginError> {
        let hash = hex::encode(Sha256::digest(wasm));
        if let Some(c) = self
            .compiled
            .lock()
            .map_err(|_| PluginError::Engine("cache lock poisoned".into()))?
            .get(&hash)
        {
            return Ok((c.clone(), hash));
        }
        let artifact = self.cache_dir.join(format!("{hash}-{}.cwasm", self.compat));
        let usable = cache_dir_usable(&self.cache_dir);
        let component = match usable
            .then(|| self.load_artifact(&artifact, &hash))
            .flatten()
        {
            Some(c) => c,
            None => {
                let c = Component::new(&self.engine, wasm)
                    .map_err(|e| PluginError::Compile(format!("{e:#}")))?;
                if usable && self.store_artifact(&artifact, &hash, &c) {
                    self.written
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner)
                        .insert(hash.clone());
                }
                c
            }
        };
        if let Ok(mut map) = self.compiled.lock() {
            map.insert(hash.clone(), component.clone());
        }
        Ok((component, hash))
    }

    /// The MAC of `artifact` compiled from the source with SHA-256 `hash`.
    fn mac(&self, hash: &str, artifact: &[u8]) -> Option<Hmac<Sha256>> {
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.key).ok()?;
        mac.update(hash.as_bytes());
        mac.update(b"\0");
        mac.update(self.compat.as_bytes());
        mac.update(b"\0");
        mac.update(artifact);
        Some(mac)
    }

    #[allow(unsafe_code)]
    fn load_artifact(&self, path: &Path, hash: &str) -> Option<Component> {
        let bytes = std::fs::read(path).ok()?;
        let (tag, artifact) = bytes.split_at_checked(MAC_LEN)?;
        let genuine = self
            .mac(hash, artifact)
            .is_some_and(|mac| mac.verify_slice(tag).is_ok());
        if !genuine {
            tracing::warn!(path = %path.display(), "cached plugin artifact failed authentication; recompiling");
            return None;
        }
        // SAFETY: the bytes are exactly the ones this host serialized for this source and this
        // engine: their MAC, keyed by a secret kept outside the cache, verified above, and they
        // are not read again after the check. wasmtime also checks the header against the engine.
        match unsafe { Component::deserialize(&self.engine, artifact) } {
            Ok(c) => Some(c),
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "ignoring unusable cached plugin artifact");
                None
            }
        }
    }

    /// Forgets compiled versions no longer in use: drops them from memory, and deletes the
    /// cached artifacts this process wrote for them (a rejected reload leaves nothing behind).
    pub fn trim(&self, in_use: &HashSet<String>) {
        if let Ok(mut map) = self.compiled.lock() {
            map.retain(|hash, _| in_use.contains(hash));
        }
        let mut written = self
            .written
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        written.retain(|hash| {
            if in_use.contains(hash) {
                return true;
            }
            let path = self.cache_dir.join(format!("{hash}-{}.cwasm", self.compat));
            if let Err(e) = std::fs::remove_file(&path)
                && e.kind() != std::io::ErrorKind::NotFound
            {
                tracing::warn!(path = %path.display(), error = %e, "could not remove an unused plugin artifact");
            }
            false
        });
    }

    /// Writes the artifact with its MAC; whether it was written.
    fn store_artifact(&self, path: &Path, hash: &str, component: &Component) -> bool {
        let result = component
            .serialize()
            .map_err(|e| e.to_string())
            .and_then(|artifact| {
                let tag = self
                    .mac(hash, &artifact)
                    .ok_or("no artifact key")?
                    .finalize()
                    .into_bytes();
                let mut bytes = Vec::with_capacity(MAC_LEN + artifact.len());
                bytes.extend_from_slice(&tag);
                bytes.extend_from_slice(&artifact);
                // Write then rename, so a concurrent reader never sees half an artifact.
                let tmp = path.with_extension(format!("tmp{}", std::process::id()));
                std::fs::write(&tmp, bytes).map_err(|e| e.to_string())?;
                std::fs::rename(&tmp, path).map_err(|e| e.to_string())
            });
        if let Err(e) = &result {
            tracing::warn!(path = %path.display(), error = %e, "could not cache compiled plugin");
        }
        result.is_ok()
    }

    /// Reads which role `component` serves and which contract version it was built against,
    /// refusing versions this host does not know.
    pub fn identify(&self, component: &Component) -> Result<(PluginKind, Contract), PluginError> {
        let ty = component.component_type();
        let prefix = format!("{}/", bindings::PACKAGE);
        let supported = bindings::SUPPORTED_VERSIONS.join(", ");
        for (name, _) in ty.imports(&self.engine) {
            if let Some(version) = herald_version(name, &prefix)
                && !bindings::SUPPORTED_VERSIONS.contains(&version)
            {
                return Err(PluginError::UnsupportedContract(format!(
                    "imports `{name}`: herald:plugin@{version} is not supported by this host (supported: {supported})"
                )));
            }
        }
        let exports: Vec<&str> = ty.exports(&self.engine).map(|(name, _)| name).collect();
        for contract in Contract::ALL {
            if exports.contains(&contract.provider_export()) {
                return Ok((PluginKind::Provider, contract));
            }
            if exports.contains(&contract.renderer_export()) {
                return Ok((PluginKind::Renderer, contract));
            }
        }
        let herald: Vec<&str> = exports
            .iter()
            .copied()
            .filter(|e| e.starts_with(&prefix))
            .collect();
        Err(PluginError::UnsupportedContract(if herald.is_empty() {
            format!(
                "exports no {}/provider-api or {}/renderer-api (supported versions: {supported})",
                bindings::PACKAGE,
                bindings::PACKAGE
            )
        } else {
            format!(
                "exports {}, a herald:plugin version this host does not support (supported: {supported})",
                herald.join(", "),
            )
        }))
    }
}

/// `herald:plugin/http@0.1.0` → `Some("0.1.0")`.
fn herald_version<'a>(name: &'a str, prefix: &str) -> Option<&'a str> {
    let rest = name.strip_prefix(prefix)?;
    Some(rest.split_once('@').map(|(_, v)| v).unwrap_or(""))
}
