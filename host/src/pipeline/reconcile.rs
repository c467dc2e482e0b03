//! Step 10, reconcile: a status callback can be lost (Herald was down when it came, a network
//! fault), which would leave a message `sent` forever even when the carrier reported it failed.
//! The reconciler finds messages that have kept a non-final status longer than expected and asks
//! the provider that sent them (`fetch-status`), then applies the answer by the same monotonic
//! rule as a callback, recorded with source `reconcile`.
//!
//! - Candidates are `sent` messages and `unknown` ones whose provider id is known (a callback
//!   brought it): the provider may have them, and asking is exactly how to find out. Each has
//!   kept its status for `reconcile.after_ms`; after an ask, the next waits at least as long as
//!   the message had waited, and messages older than `reconcile.max_age_ms` are left alone (see
//!   `Store::reconcile_candidates`).
//! - Each ask is claimed in storage first, so processes sharing a database do not ask twice.
//! - Lookups per provider are bounded by a token bucket of `reconcile.per_provider_per_second`
//!   (one second's worth of burst) on the pipeline's clock; candidates over the budget wait for a
//!   later pass.
//! - A *retryable* answer pauses that provider for the rest of the pass (and for its retry-after);
//!   a *permanent* one stops the asking about that message; a provider on contract 0.1.0 has no
//!   `fetch-status` and is skipped.

use std::collections::HashMap;
use std::time::Duration;

use tokio::sync::watch;

use super::Pipeline;
use super::tenants;
use super::track;
use crate::config::ReconcileConfig;
use crate::plugin::model::FetchOutcome;
use crate::store::{self, EventSource, MessageLookup, ReconcileCandidate, ReconcileQuery};

/// What one pass did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Pass {
    /// Messages whose provider was asked.
    pub asked: usize,
    /// Messages whose status moved on the answer.
    pub moved: usize,
    /// Messages left for a later pass: their provider's budget was spent, or it asked for a pause.
    pub deferred: usize,
    /// Messages whose provider cannot be asked: not loaded, or on contract 0.1.0.
    pub unsupported: usize,
}

/// The reconciler's memory between passes: each provider's lookup budget.
#[derive(Debug, Default)]
pub struct Reconciler {
    budgets: HashMap<String, Budget>,
}

impl Reconciler {
    /// A reconciler whose providers all start with a full budget.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// Looks for candidates once and asks their providers, within each provider's budget.
    pub async fn pass(&mut self, pipeline: &Pipeline) -> store::Result<Pass> {
        let config = pipeline.config().reconcile.clone();
        let query = ReconcileQuery {
            now: pipeline.now(),
            after_ms: millis(config.after_ms),
            max_age_ms: millis(config.max_age_ms),
            per_provider: config.batch,
        };
        let candidates = pipeline.store().reconcile_candidates(&query).await?;
        let mut pass = Pass::default();
        for group in candidates.chunk_by(|a, b| a.provider == b.provider) {
            let budget = self
                .budgets
                .entry(group[0].provider.clone())
                .or_insert_with(|| Budget::full(config.per_provider_per_second, query.now));
            ask_provider(pipeline, &config, budget, group, &mut pass).await?;
        }
        Ok(pass)
    }
}

/// Asks one provider about its candidates, oldest first, until its budget runs out.
async fn ask_provider(
    pipeline: &Pipeline,
    config: &ReconcileConfig,
    budget: &mut Budget,
    candidates: &[ReconcileCandidate],
    pass: &mut Pass,
) -> store::Result<()> {
    let provider = &candidates[0].provider;
    let Some(plugin) = pipeline
        .plugins()
        .get(provider)
        .filter(|p| p.supports_fetch_status())
    else {
        tracing::debug!(%provider, count = candidates.len(), "provider cannot be asked for statuses; skipping");
        pass.unsupported += candidates.len();
        return Ok(());
    };
    for (index, candidate) in candidates.iter().enumerate() {
        let now = pipeline.now();
        if !budget.take(config.per_provider_per_second, now) {
            pass.deferred += candidates.len() - index;
            return Ok(());
        }
        if !pipeline.store().claim_reconcile(candidate, now).await? {
            // Asked by another process, or its status moved since the query: nothing to do.
            budget.refund();
            continue;
        }
        pass.asked += 1;
        // The lookup goes out with the credentials of the tenant that sent the message.
        let scoped = match tenants::provider_named(pipeline, &candidate.tenant_id, provider).await {
            Ok(Some(scoped)) => scoped,
            Ok(None) | Err(_) => plugin.clone(),
        };
        match scoped.fetch_status(&candidate.provider_message_id).await {
            FetchOutcome::Status(update) => {
                let change = track::store_update(
                    MessageLookup::Id(candidate.id.clone()),
                    update,
                    EventSource::Reconcile,
                    pipeline.now(),
                );
                let applied = pipeline
                    .store()
                    .apply_status(&candidate.tenant_id, &change)
                    .await?;
                if let Some(applied) = applied.filter(|a| a.changed) {
                    if applied.message.status.is_final() && !applied.previous.is_final() {
                        pipeline.metrics().finished(
                            &candidate.tenant_id,
                            provider,
                            applied.message.status,
                        );
                    }
                    tracing::info!(message_id = %candidate.id, %provider, from = %applied.previous, to = %applied.message.status, "reconciled a status whose callback was lost");
                    pass.moved += 1;
                }
            }
            FetchOutcome::Retryable {
                error,
                retry_after_ms,
            } => {
                // Most such failures are the provider's (an outage, a rate limit, credentials):
                // the other candidates would fail alike, so they wait for a later pass.
                tracing::warn!(%provider, message_id = %candidate.id, error = %error.message, "status lookup failed; pausing this provider's lookups");
                // The hint is the plugin's word: clamped like a send's retry-after.
                let hint = retry_after_ms
                    .unwrap_or(0)
                    .min(pipeline.config().delivery.retry_max_ms);
                budget.pause_until(now.saturating_add(millis(hint)));
                pass.deferred += candidates.len() - index - 1;
                return Ok(());
            }
            FetchOutcome::Permanent(error) => {
                tracing::warn!(%provider, message_id = %candidate.id, error = %error.message, "the provider will never report this message; no longer asking");
                pipeline
                    .store()
                    .stop_reconciling(&candidate.tenant_id, &candidate.id, &error.message)
                    .await?;
            }
            // The plugin was replaced by a 0.1.0 build between the check and the call.
            FetchOutcome::Unsupported => {
                pass.unsupported += candidates.len() - index;
                return Ok(());
            }
        }
    }
    Ok(())
}

/// Runs passes every `reconcile.interval_ms` (read afresh each time, so a reload applies) until
/// `shutdown` becomes true; a pass in progress is abandoned at shutdown, which is safe because
/// every write it makes is a transaction of its own.
pub async fn run(pipeline: Pipeline, mut shutdown: watch::Receiver<bool>) {
    let mut reconciler = Reconciler::new();
    loop {
        if *shutdown.borrow() {
            break;
        }
        let config = pipeline.config().reconcile.clone();
        if config.enabled {
            tokio::select! {
                done = reconciler.pass(&pipeline) => match done {
                    Ok(pass) if pass != Pass::default() => tracing::debug!(?pass, "reconcile pass"),
                    Ok(_) => {}
                    Err(e) => tracing::error!(error = %e, "reconcile pass failed; trying again next interval"),
                },
                _ = shutdown.changed() => break,
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(config.interval_ms.max(1))) => {}
            // A dropped sender can never say "stop" again: stop now rather than spin.
            changed = shutdown.changed() => if changed.is_err() { break },
        }
    }
}

fn millis(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

/// A token bucket on the pipeline's clock, in thousandths of a lookup so that refills stay exact
/// integers: `rate` lookups per second, at most one second's worth saved up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Budget {
    milli_tokens: i64,
    at: i64,
    paused_until: i64,
}

const MILLI: i64 = 1_000;

impl Budget {
    fn full(rate: u32, now: i64) -> Self {
        Self {
            milli_tokens: i64::from(rate) * MILLI,
            at: now,
            paused_until: i64::MIN,
        }
    }

    /// Takes one lookup at `now` if the budget has one and no pause is in force.
    fn take(&mut self, rate: u32, now: i64) -> bool {
        let capacity = i64::from(rate) * MILLI;
        // A clock set backwards refills nothing rather than draining the budget.
        let elapsed = now.saturating_sub(self.at).max(0);
        self.milli_tokens = self
            .milli_tokens
            .saturating_add(elapsed.saturating_mul(i64::from(rate)))
            .min(capacity);
        self.at = self.at.max(now);
        if now < self.paused_until || self.milli_tokens < MILLI {
            return false;
        }
        self.milli_tokens -= MILLI;
        true
    }

    /// Gives back the lookup just taken, which was not made.
    fn refund(&mut self) {
        self.milli_tokens += MILLI;
    }

    /// Makes no lookup before `until`.
    fn pause_until(&mut self, until: i64) {
        self.paused_until = self.paused_until.max(until);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A full budget allows `rate` lookups at once, then refills at `rate` per second, never
    /// beyond one second's worth.
    #[test]
    fn budget_bounds_the_rate() {
        let mut budget = Budget::full(2, 1_000);
        assert!(budget.take(2, 1_000));
        assert!(budget.take(2, 1_000));
        assert!(!budget.take(2, 1_000));
        assert!(!budget.take(2, 1_499));
        assert!(budget.take(2, 1_500));
        assert!(!budget.take(2, 1_500));
        // A long idle time saves up one second's worth, not more.
        let taken = (0..10).filter(|_| budget.take(2, 60_000)).count();
        assert_eq!(taken, 2);
    }

    /// A refund gives back a lookup; a pause blocks lookups until it ends; a clock moved back
    /// refills nothing.
    #[test]
    fn refund_pause_and_clock_moved_back() {
        let mut budget = Budget::full(1, 0);
        assert!(budget.take(1, 0));
        budget.refund();
        assert!(budget.take(1, 0));
        budget.pause_until(5_000);
        assert!(!budget.take(1, 4_999));
        assert!(budget.take(1, 5_000));
        assert!(!budget.take(1, 1_000));
        assert!(!budget.take(1, 5_999));
        assert!(budget.take(1, 6_000));
    }
}
