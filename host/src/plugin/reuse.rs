//! Instance reuse: one provider instance serving several sends of one tenant under one plugin
//! version, within one dispatch batch.
//!
//! A fresh pooled instance per call costs about 20 µs before the guest runs, and more next to
//! real I/O (see BENCHMARKS.md, "Plugin runtime"). A [`Session`] keeps the instance of its last
//! send and gives it the next send when, and only when, that send is for the **same tenant** and
//! the **same plugin version**: the same load ([`LoadedPlugin::generation`], so a hot reload is a
//! new version even for an unchanged file) with the same effective settings (a tenant's own
//! settings included). Anything else drops the instance first and takes a fresh one, so no state
//! or secret a plugin keeps in its memory can reach another tenant or another version.
//!
//! An instance also ends after `reuse_max_calls` sends or `reuse_max_ms` after its first one,
//! and at once after a call that failed in any way (a trap, the deadline, the CPU budget, the
//! memory limit, or a full stderr): the next send gets a fresh one. Every call on a kept instance
//! runs under the per-call limits set anew ([`LoadedPlugin::call_in`]). The session holds the
//! instance's concurrency permit for as long as it keeps the instance, and it is one task's:
//! `&mut self` means an instance never serves two calls at once.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::OwnedSemaphorePermit;
use wasmtime::Store;

use super::LoadedPlugin;
use super::bindings::ProviderInstance;
use super::gate::Share;
use super::host::HostState;
use super::model::{OutboundMessage, SendOutcome};
use crate::config::{InstanceReuse, RuntimeConfig};

/// How long one send on a reused instance may run before the dispatcher stops making the
/// tenant's other sends of the batch wait for their turn. A send's own work in the sandbox takes
/// tens of microseconds; one that has run this long is waiting on I/O (any network round trip
/// takes longer), and then concurrency is worth more than the tens of microseconds an instance
/// saves. (At 5 ms, sends to a provider answering in about a millisecond took their turns one
/// by one, and the dispatcher ran at about 0.6 of its per-call rate; see BENCHMARKS.md.)
pub const SLOW_SEND: Duration = Duration::from_micros(500);

/// How far one instance may be reused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReuseLimits {
    /// The most sends one instance serves (at least 1).
    pub max_calls: u32,
    /// How long after its first send an instance may take another.
    pub max_age: Duration,
}

impl ReuseLimits {
    /// The longest a send may wait for its turn on a reused instance of the dispatcher:
    /// `max_age`, or [`SLOW_SEND`] for each send before it, whichever is less.
    #[must_use]
    pub fn longest_turn(&self) -> Duration {
        self.max_age
            .min(SLOW_SEND.saturating_mul(self.max_calls.saturating_sub(1)))
    }

    /// The limits `runtime` asks for; `None` when it asks for a fresh instance per call.
    #[must_use]
    pub fn of(runtime: &RuntimeConfig) -> Option<Self> {
        match runtime.instance_reuse {
            InstanceReuse::PerCall => None,
            InstanceReuse::PerBatch => Some(Self {
                max_calls: runtime.reuse_max_calls.max(1),
                max_age: Duration::from_millis(runtime.reuse_max_ms),
            }),
        }
    }
}

/// What an instance may serve: one tenant, one load of one plugin, one set of settings.
struct Key {
    tenant: String,
    plugin: Arc<str>,
    generation: u64,
    config: Arc<Vec<(String, String)>>,
}

impl Key {
    fn of(tenant: &str, plugin: &LoadedPlugin) -> Self {
        Self {
            tenant: tenant.to_string(),
            plugin: plugin.name.clone(),
            generation: plugin.generation,
            config: plugin.config.clone(),
        }
    }

    fn serves(&self, tenant: &str, plugin: &LoadedPlugin) -> bool {
        self.tenant == tenant
            && self.plugin == plugin.name
            && self.generation == plugin.generation
            && (Arc::ptr_eq(&self.config, &plugin.config) || self.config == plugin.config)
    }
}

/// The instance a session keeps between sends.
struct Live {
    key: Key,
    store: Store<HostState>,
    instance: ProviderInstance,
    calls: u32,
    born: Instant,
    /// The instance's place in the plugin's share; released when the instance is dropped.
    _permit: Option<OwnedSemaphorePermit>,
}

/// One task's sends in one dispatch batch, reusing an instance where [`ReuseLimits`] and the
/// isolation rules allow (see the module docs). Drop it at the end of the batch.
pub struct Session {
    limits: Option<ReuseLimits>,
    live: Option<Live>,
    instances: u64,
}

impl Session {
    /// A session under `limits`; `None` gives every send a fresh instance.
    #[must_use]
    pub fn new(limits: Option<ReuseLimits>) -> Self {
        Self {
            limits,
            live: None,
            instances: 0,
        }
    }

    /// How many instances this session has used: with reuse, those it instantiated; per call,
    /// one per send.
    #[must_use]
    pub fn instances(&self) -> u64 {
        self.instances
    }

    /// Sends `message` for `tenant` through `plugin` (the tenant's view of the provider, as
    /// [`crate::pipeline::tenants::provider`] returns it), on the kept instance when it may serve
    /// this send, else on a fresh one. Outcomes are classified and sanitized as
    /// [`LoadedPlugin::send`] does.
    pub async fn send(
        &mut self,
        tenant: &str,
        plugin: &LoadedPlugin,
        message: &OutboundMessage,
    ) -> SendOutcome {
        let Some(limits) = self.limits else {
            self.instances += 1;
            return plugin.send(message).await;
        };
        let started = Instant::now();
        let result = self.send_reusing(limits, tenant, plugin, message).await;
        plugin
            .metrics
            .plugin_call(&plugin.name, "send", started.elapsed());
        plugin.send_result(result)
    }

    async fn send_reusing(
        &mut self,
        limits: ReuseLimits,
        tenant: &str,
        plugin: &LoadedPlugin,
        message: &OutboundMessage,
    ) -> Result<SendOutcome, super::CallFailure> {
        let pre = plugin.provider_pre()?;
        let reusable = self.live.as_ref().is_some_and(|live| {
            live.key.serves(tenant, plugin)
                && live.calls < limits.max_calls
                && live.born.elapsed() < limits.max_age
        });
        if !reusable {
            // Dropped before a new one is taken: its pool slot and permit are free again.
            self.live = None;
        }
        let mut live = match self.live.take() {
            Some(live) => live,
            None => {
                let permit = plugin.enter(Share::Calls).await?;
                let mut store = plugin.new_store();
                let instance = plugin
                    .call_in(&mut store, move |store| {
                        Box::pin(async move { pre.instantiate(store).await })
                    })
                    .await?;
                self.instances += 1;
                Live {
                    key: Key::of(tenant, plugin),
                    store,
                    instance,
                    calls: 0,
                    born: Instant::now(),
                    _permit: permit,
                }
            }
        };
        live.calls += 1;
        let instance = live.instance.clone();
        let config = plugin.config.clone();
        let message = message.clone();
        let outcome = plugin
            .call_in(&mut live.store, move |store| {
                Box::pin(async move { instance.send(store, &config, &message).await })
            })
            .await?;
        // A failed call returned above and dropped the instance; so is one whose stderr is
        // full, since its next write would be refused.
        if !live.store.data().stderr_full() {
            self.live = Some(live);
        }
        Ok(outcome)
    }
}
