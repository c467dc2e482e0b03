//! Per-plugin concurrency: how many instances of one plugin may run at once, and how long a
//! caller may wait for one.
//!
//! Each plugin has two shares of instances, each a semaphore with a bounded wait queue: one for
//! its ordinary calls (`send`, `fetch-status`, `render`, `validate`, `describe`) and one for its
//! webhooks (`verify-webhook`, `parse-webhook`, `receive`). A flood of slow webhooks can use up
//! the webhook share only; sends keep theirs. A caller that finds the share full waits in line
//! for at most `max_wait_ms`, and only while fewer than `max_waiting` others wait; otherwise the
//! call is refused as *busy* at once. Busy is back-pressure, not a fault: the dispatcher puts
//! the message back without counting an attempt, and the API answers 503 with `Retry-After`.
//!
//! The shares of every plugin together never exceed the pooling allocator's size (see
//! [`Plugins::start`](super::Plugins::start)), so instantiation itself cannot run out.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::config::PluginConfig;

/// Which share of a plugin's instances a call draws from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Share {
    /// Sends, lookups, renders and template validation.
    Calls,
    /// `verify-webhook`, `parse-webhook` and their combination.
    Webhooks,
    /// `describe` while a version is validated: it takes no permit but the pool's one instance
    /// kept for validation (reloads run one at a time), so a busy plugin can still be reloaded.
    Validation,
}

/// The limits a gate enforces, from the plugin's settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct GateLimits {
    pub calls: usize,
    pub webhooks: usize,
    pub max_waiting: usize,
    pub max_wait: Duration,
}

impl GateLimits {
    /// The limits `settings` ask for (each share at least one instance).
    pub fn of(settings: &PluginConfig) -> Self {
        Self {
            calls: settings.max_concurrency.max(1) as usize,
            webhooks: settings.webhook_concurrency.max(1) as usize,
            max_waiting: settings.max_waiting as usize,
            max_wait: Duration::from_millis(settings.max_wait_ms),
        }
    }

    /// How many instances the plugin may hold at once, both shares together.
    pub fn instances(&self) -> usize {
        self.calls + self.webhooks
    }
}

/// A plugin's two shares. Kept per plugin name across reloads, so calls on an old version and
/// calls on the new one count against the same limit.
pub(crate) struct Gate {
    limits: GateLimits,
    calls: Queue,
    webhooks: Queue,
}

/// Why a call could not get an instance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Busy(pub String);

impl Gate {
    /// A gate enforcing `limits`.
    pub fn new(limits: GateLimits) -> Self {
        Self {
            limits,
            calls: Queue::new(limits.calls),
            webhooks: Queue::new(limits.webhooks),
        }
    }

    /// The limits this gate enforces.
    pub fn limits(&self) -> GateLimits {
        self.limits
    }

    /// Takes a permit of `share` (none for [`Share::Validation`]), waiting in line within the
    /// limits, or says why not.
    pub async fn enter(&self, share: Share) -> Result<Option<OwnedSemaphorePermit>, Busy> {
        let (queue, size, what) = match share {
            Share::Calls => (&self.calls, self.limits.calls, "calls"),
            Share::Webhooks => (&self.webhooks, self.limits.webhooks, "webhook calls"),
            Share::Validation => return Ok(None),
        };
        if let Ok(permit) = queue.permits.clone().try_acquire_owned() {
            return Ok(Some(permit));
        }
        let ahead = queue.waiting.fetch_add(1, Ordering::SeqCst);
        let _in_line = InLine(&queue.waiting);
        let busy = || {
            Busy(format!(
                "all {size} instances for {what} are in use and {} callers wait",
                ahead
            ))
        };
        if ahead >= self.limits.max_waiting {
            return Err(busy());
        }
        match tokio::time::timeout(self.limits.max_wait, queue.permits.clone().acquire_owned())
            .await
        {
            Ok(Ok(permit)) => Ok(Some(permit)),
            _ => Err(Busy(format!(
                "no instance for {what} came free within {:?} (all {size} in use)",
                self.limits.max_wait
            ))),
        }
    }
}

/// One share: its permits and how many callers wait for one.
struct Queue {
    permits: Arc<Semaphore>,
    waiting: AtomicUsize,
}

impl Queue {
    fn new(size: usize) -> Self {
        Self {
            permits: Arc::new(Semaphore::new(size)),
            waiting: AtomicUsize::new(0),
        }
    }
}

/// Leaves the line when the caller stops waiting, whether it got a permit, gave up or was
/// cancelled.
struct InLine<'a>(&'a AtomicUsize);

impl Drop for InLine<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(max_waiting: usize) -> GateLimits {
        GateLimits {
            calls: 1,
            webhooks: 1,
            max_waiting,
            max_wait: Duration::from_millis(50),
        }
    }

    /// A full share refuses at once when its line is full, after the wait otherwise; the other
    /// share is not affected, and a freed permit goes to the caller in line.
    #[tokio::test]
    async fn a_full_share_is_busy_and_the_other_share_is_not() {
        let gate = Gate::new(limits(0));
        let held = gate.enter(Share::Webhooks).await.unwrap();
        assert!(gate.enter(Share::Webhooks).await.is_err());
        let call = gate.enter(Share::Calls).await.unwrap();
        drop((held, call));

        let gate = Arc::new(Gate::new(limits(1)));
        let held = gate.enter(Share::Calls).await.unwrap();
        let started = std::time::Instant::now();
        assert!(gate.enter(Share::Calls).await.is_err());
        assert!(started.elapsed() >= Duration::from_millis(50));
        let waiter = {
            let gate = gate.clone();
            tokio::spawn(async move { gate.enter(Share::Calls).await.is_ok() })
        };
        tokio::time::sleep(Duration::from_millis(10)).await;
        drop(held);
        assert!(waiter.await.unwrap());
    }
}
