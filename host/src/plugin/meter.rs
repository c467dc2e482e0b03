//! The CPU budget of one call: the time the call holds a runtime thread.
//!
//! Counting epoch ticks only while guest code runs misses the host's own work for the guest: a
//! host import (a log line to lift, redact and write, a big request to copy) runs between two
//! epoch checks and was charged one tick however long it took. So the budget counts instead
//! the time spent inside the call future's `poll`, the one place where every piece of the
//! call's work happens — guest code, lifting and lowering of values, and the synchronous part of
//! every host import — while time spent waiting (an HTTP response, a timer, a turn on a busy
//! runtime) is not charged. The epoch callback, which runs at least once per tick of guest
//! code, compares the total with the budget and interrupts the call past it.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

/// Time one call has spent on a runtime thread.
#[derive(Debug)]
pub(crate) struct Meter {
    origin: Instant,
    /// Nanoseconds of the polls that have ended.
    spent: AtomicU64,
    /// When the current poll started, in nanoseconds after `origin` plus one; 0 between polls.
    polling_since: AtomicU64,
}

impl Meter {
    pub fn new() -> Arc<Self> {
        Arc::new(Self {
            origin: Instant::now(),
            spent: AtomicU64::new(0),
            polling_since: AtomicU64::new(0),
        })
    }

    fn now(&self) -> u64 {
        u64::try_from(self.origin.elapsed().as_nanos())
            .unwrap_or(u64::MAX)
            .saturating_add(1)
    }

    /// The time charged so far, the poll under way included.
    pub fn used(&self) -> Duration {
        let since = self.polling_since.load(Ordering::SeqCst);
        let current = if since == 0 {
            0
        } else {
            self.now().saturating_sub(since)
        };
        Duration::from_nanos(self.spent.load(Ordering::SeqCst).saturating_add(current))
    }
}

/// A future whose polls are charged to a [`Meter`].
pub(crate) struct Metered<F> {
    inner: Pin<Box<F>>,
    meter: Arc<Meter>,
}

impl<F> Metered<F> {
    pub fn new(inner: F, meter: Arc<Meter>) -> Self {
        Self {
            inner: Box::pin(inner),
            meter,
        }
    }
}

impl<F: Future> Future for Metered<F> {
    type Output = F::Output;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let meter = self.meter.clone();
        let started = meter.now();
        meter.polling_since.store(started, Ordering::SeqCst);
        let result = self.inner.as_mut().poll(cx);
        let took = meter.now().saturating_sub(started);
        meter.polling_since.store(0, Ordering::SeqCst);
        meter.spent.fetch_add(took, Ordering::SeqCst);
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Work inside a poll is charged; waiting between polls is not.
    #[tokio::test]
    async fn charges_polls_not_waits() {
        let meter = Meter::new();
        Metered::new(
            async {
                std::thread::sleep(Duration::from_millis(30));
                tokio::time::sleep(Duration::from_millis(100)).await;
            },
            meter.clone(),
        )
        .await;
        let used = meter.used();
        assert!(used >= Duration::from_millis(30), "{used:?}");
        assert!(used < Duration::from_millis(100), "{used:?}");
    }
}
