//! Step 6, dispatch: workers claim due queue entries under a lease, re-check opt-out, call the
//! provider plugin and record what [`classify`](super::classify) decides.
//!
//! Each claim holds a lease; every outcome is fenced by it, so an attempt whose lease expired
//! (a stalled or killed process) can never overwrite the attempt that reclaimed the entry. A
//! process killed mid-dispatch loses nothing: its leases expire and another worker (or the same
//! process after a restart) takes the entries again. Such a resend is the one case where a
//! provider may see a message twice; the host message id travels with every attempt so
//! providers that deduplicate can.
//!
//! With `runtime.instance_reuse = "per-batch"`, a claimed batch is grouped by tenant, and each
//! group of at most `runtime.reuse_max_calls` jobs is sent in turn by one task through one
//! [`Session`], which keeps a provider instance for the tenant's next send while the plugin
//! version and settings stay the same. Groups still run concurrently. Taking turns pays only
//! while sends are quick: as soon as one attempt has run for 0.5 ms, or the group for
//! `runtime.reuse_max_ms`, the group's jobs not started yet are sent at once, concurrently, each
//! on a fresh instance. So a provider that answers slowly (a real HTTP round trip) keeps the
//! dispatcher's full concurrency, and a job waits at most `min(reuse_max_ms, 0.5 ms × (N − 1))`
//! for its turn.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use rand::Rng;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch};
use tokio::task::JoinSet;

use super::Pipeline;
use super::classify::{self, Attempt, Next};
use super::error::{ErrorCode, PipelineError};
use super::tenants;
use crate::domain::{Category, MessageStatus, TenantId};
use crate::plugin::model::{self as plugin_model, OutboundMessage};
use crate::plugin::reuse::{ReuseLimits, Session};
use crate::store::{self, ClaimedJob, ErrorInfo, LeaseOutcome, OptOutChange, OptOutMethod};

/// How long an idle worker waits before looking at the queue again without a wake-up.
const IDLE_POLL: Duration = Duration::from_millis(500);
/// How long one tenant's attempt on a reused instance may run before the rest of its group stops
/// waiting for their turn (see [`attempt_group`]).
const SLOW_SEND: Duration = crate::plugin::reuse::SLOW_SEND;
/// How long after a storage error an attempt is tried again.
const STORE_RETRY_MS: i64 = 5_000;

/// Runs the dispatch loop until `shutdown` becomes true, then waits for calls in flight.
pub async fn run(pipeline: Pipeline, mut shutdown: watch::Receiver<bool>) {
    let workers = pipeline.config().delivery.workers.max(1);
    let permits = Arc::new(Semaphore::new(workers));
    let worker_id = format!("{}-{}", hostname(), std::process::id());
    let mut in_flight = JoinSet::new();
    loop {
        if *shutdown.borrow() {
            break;
        }
        while let Some(done) = in_flight.try_join_next() {
            report_panic(done);
        }
        let free = permits.available_permits() as u32;
        if free == 0 {
            // Wait for a slot, but stay responsive to shutdown. A slot frees as soon as one
            // attempt ends, not when the task it ran in does: a tenant's group holds a slot per
            // job and gives each back as that job ends.
            tokio::select! {
                slot = permits.clone().acquire_owned() => drop(slot),
                _ = shutdown.changed() => {}
            }
            continue;
        }
        let jobs = match claim(&pipeline, &worker_id, free).await {
            Ok(jobs) => jobs,
            Err(e) => {
                if e.is_unavailable() {
                    tracing::warn!(error = %e, "storage unavailable; claiming again shortly");
                } else {
                    tracing::error!(error = %e, "claiming from the queue failed; retrying shortly");
                }
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                    _ = shutdown.changed() => {}
                }
                continue;
            }
        };
        if jobs.is_empty() {
            let wait = match pipeline.store().next_due_at().await {
                Ok(Some(due)) => Duration::from_millis(
                    (due - pipeline.now()).clamp(1, IDLE_POLL.as_millis() as i64) as u64,
                ),
                _ => IDLE_POLL,
            };
            tokio::select! {
                _ = pipeline.store().wait_for_work(wait) => {}
                _ = shutdown.changed() => {}
            }
            continue;
        }
        let mut batch = Vec::with_capacity(jobs.len());
        for job in jobs {
            let Ok(permit) = permits.clone().try_acquire_owned() else {
                break;
            };
            batch.push((job, permit));
        }
        match ReuseLimits::of(&pipeline.config().runtime) {
            None => {
                for (job, permit) in batch {
                    let pipeline = pipeline.clone();
                    in_flight.spawn(async move {
                        attempt(&pipeline, job).await;
                        drop(permit);
                    });
                }
            }
            Some(limits) => {
                for group in by_tenant(batch, |(job, _)| &job.message.tenant_id) {
                    for chunk in chunks(group, limits.max_calls) {
                        let pipeline = pipeline.clone();
                        in_flight
                            .spawn(async move { attempt_group(&pipeline, chunk, limits).await });
                    }
                }
            }
        }
    }
    // Graceful shutdown: no new claims; calls in flight finish and record their outcome.
    while let Some(done) = in_flight.join_next().await {
        report_panic(done);
    }
}

/// Claims up to `limit` due entries for `worker`, each under a lease of `delivery.lease_ms`.
pub async fn claim(
    pipeline: &Pipeline,
    worker: &str,
    limit: u32,
) -> store::Result<Vec<ClaimedJob>> {
    let lease = Duration::from_millis(pipeline.config().delivery.lease_ms);
    pipeline
        .store()
        .claim(worker, pipeline.now(), lease, limit)
        .await
}

/// Claims every due entry and makes its attempt, one after another; returns how many it made.
/// The dispatcher's loop without the loop: for embedders that drive the queue themselves, and
/// for tests that move a manual clock.
///
/// With per-batch instance reuse, a tenant's jobs are taken together (in their claimed order)
/// so its sends can share an instance.
pub async fn run_once(pipeline: &Pipeline, worker: &str) -> store::Result<usize> {
    let jobs = claim(pipeline, worker, 64).await?;
    let made = jobs.len();
    match ReuseLimits::of(&pipeline.config().runtime) {
        None => {
            for job in jobs {
                attempt(pipeline, job).await;
            }
        }
        Some(limits) => {
            for group in by_tenant(jobs, |job| &job.message.tenant_id) {
                let mut session = Session::new(Some(limits));
                for job in group {
                    attempt_in(pipeline, job, &mut session).await;
                }
            }
        }
    }
    Ok(made)
}

/// `items` grouped by tenant: groups in the order of their tenant's first item, items in their
/// own order within a group.
fn by_tenant<T>(items: Vec<T>, tenant: impl Fn(&T) -> &TenantId) -> Vec<Vec<T>> {
    let mut index: BTreeMap<TenantId, usize> = BTreeMap::new();
    let mut groups: Vec<Vec<T>> = Vec::new();
    for item in items {
        let next = groups.len();
        let at = *index.entry(tenant(&item).clone()).or_insert(next);
        if at == next {
            groups.push(Vec::new());
        }
        groups[at].push(item);
    }
    groups
}

/// `items` cut into runs of at most `size` (at least 1), in order.
fn chunks<T>(items: Vec<T>, size: u32) -> Vec<Vec<T>> {
    let size = (size as usize).max(1);
    let mut out = Vec::with_capacity(items.len().div_ceil(size));
    let mut items = items.into_iter().peekable();
    while items.peek().is_some() {
        out.push(items.by_ref().take(size).collect());
    }
    out
}

/// Sends one tenant's jobs in turn through one [`Session`], so they can share an instance.
/// Taking turns only pays while sends are quick: once the current attempt has run for
/// [`SLOW_SEND`] or the group for `limits.max_age`, the jobs not started yet are sent at once,
/// concurrently, each on a fresh instance, while the current one finishes. Each job's worker
/// permit is released as its attempt ends.
async fn attempt_group(
    pipeline: &Pipeline,
    jobs: Vec<(ClaimedJob, OwnedSemaphorePermit)>,
    limits: ReuseLimits,
) {
    let deadline = tokio::time::Instant::now() + limits.max_age;
    let mut queue = VecDeque::from(jobs);
    let mut session = Session::new(Some(limits));
    let mut spilled = Vec::new();
    while let Some((job, permit)) = queue.pop_front() {
        let current = attempt_in(pipeline, job, &mut session);
        tokio::pin!(current);
        if queue.is_empty() {
            current.await;
        } else {
            let spill_at = deadline.min(tokio::time::Instant::now() + SLOW_SEND);
            tokio::select! {
                () = &mut current => {}
                () = tokio::time::sleep_until(spill_at) => {
                    for (job, permit) in queue.drain(..) {
                        let pipeline = pipeline.clone();
                        spilled.push(tokio::spawn(async move {
                            attempt(&pipeline, job).await;
                            drop(permit);
                        }));
                    }
                    current.await;
                }
            }
        }
        drop(permit);
    }
    // The kept instance and its permit go before the wait: the spilled attempts may need them.
    drop(session);
    for handle in spilled {
        report_panic(handle.await);
    }
}

fn report_panic(done: Result<(), tokio::task::JoinError>) {
    if let Err(e) = done
        && e.is_panic()
    {
        tracing::error!(error = %e, "a delivery attempt panicked; its lease will expire and it will be retried");
    }
}

fn hostname() -> String {
    std::env::var("HOSTNAME")
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "herald".into())
}

/// Makes one delivery attempt for a claimed job, on a fresh provider instance, and records its
/// outcome.
pub async fn attempt(pipeline: &Pipeline, job: ClaimedJob) {
    attempt_in(pipeline, job, &mut Session::new(None)).await;
}

/// [`attempt`], sending through `session` (which may reuse its instance for this tenant).
pub async fn attempt_in(pipeline: &Pipeline, job: ClaimedJob, session: &mut Session) {
    let message = &job.message;
    if job.interrupted {
        tracing::warn!(message_id = %message.id, attempt = job.attempt, "previous attempt was interrupted; sending again");
    }
    let compliance = message.category.ignores_opt_out();
    if !compliance {
        match pipeline
            .store()
            .is_opted_out(&message.tenant_id, &message.to_number, &message.category)
            .await
        {
            Ok(false) => {}
            Ok(true) => {
                let error = herald_error(
                    "recipient_opted_out",
                    "the recipient opted out after the message was accepted",
                );
                finish(pipeline, &job, MessageStatus::Failed, &error).await;
                return;
            }
            Err(e) => {
                tracing::error!(message_id = %message.id, error = %e, "opt-out check failed; retrying later");
                let error = herald_error("store_unavailable", &e.to_string());
                let now = pipeline.now();
                let result = pipeline
                    .store()
                    .reschedule(job.lease(), now + STORE_RETRY_MS, &error, now)
                    .await;
                record(
                    pipeline,
                    result,
                    &job,
                    MessageStatus::Queued,
                    &message.provider,
                );
                return;
            }
        }
    }
    // Keyword confirmations answer through the provider the keyword came in on.
    let routed = if compliance {
        tenants::provider_named(pipeline, &message.tenant_id, &message.provider)
            .await
            .and_then(|p| {
                p.ok_or_else(|| {
                    PipelineError::new(
                        ErrorCode::ProviderUnavailable,
                        format!("no provider plugin `{}` is loaded", message.provider),
                    )
                })
            })
    } else {
        tenants::provider(pipeline, &message.tenant_id).await
    };
    let provider = match routed {
        Ok(p) => p,
        Err(e) => {
            let error = herald_error("provider_unavailable", &e.to_string());
            let next =
                classify::retry(error, None, attempt_at(pipeline, &job), &delivery(pipeline));
            apply(pipeline, &job, next).await;
            return;
        }
    };
    let outbound = OutboundMessage {
        message_id: message.id.clone(),
        to: message.to_number.clone(),
        sender: message.sender.clone().map(plugin_model::Sender::From),
        body: message.body.clone(),
        encoding: match message.encoding {
            crate::segments::Encoding::Gsm7 => plugin_model::Encoding::Gsm7,
            crate::segments::Encoding::Ucs2 => plugin_model::Encoding::Ucs2,
        },
        segments: message.segments,
        status_callback: Some(status_callback_url(
            &pipeline.config().server.public_url,
            provider.name(),
            &message.id,
            &pipeline
                .callback_key()
                .token(&message.tenant_id, &message.id, provider.name()),
        )),
        attempt: job.attempt,
    };
    tracing::info!(
        tenant = %message.tenant_id,
        message_id = %message.id,
        provider = provider.name(),
        attempt = job.attempt,
        status = %MessageStatus::Sending,
        "message sending"
    );
    let outcome = session
        .send(message.tenant_id.as_str(), &provider, &outbound)
        .await;
    let next = classify::classify(
        outcome,
        provider.name(),
        attempt_at(pipeline, &job),
        &delivery(pipeline),
    );
    apply(pipeline, &job, next).await;
}

fn delivery(pipeline: &Pipeline) -> crate::config::DeliveryConfig {
    pipeline.config().delivery.clone()
}

fn attempt_at(pipeline: &Pipeline, job: &ClaimedJob) -> Attempt {
    Attempt {
        number: job.attempt,
        max: job.message.max_attempts,
        // A scheduled message's age counts from the time it was asked to go.
        created_at: job.message.send_at.unwrap_or(job.message.created_at),
        now: pipeline.now(),
        jitter: rand::rng().random_range(0.5..=1.0),
    }
}

/// Records what `classify` decided.
async fn apply(pipeline: &Pipeline, job: &ClaimedJob, next: Next) {
    let store = pipeline.store();
    let lease = job.lease();
    let now = pipeline.now();
    match next {
        Next::Sent(accepted) => {
            record(
                pipeline,
                store.complete_accepted(lease, &accepted, now).await,
                job,
                MessageStatus::Sent,
                &accepted.provider,
            );
        }
        Next::RetryAt { due_at, error } => {
            record(
                pipeline,
                store.reschedule(lease, due_at, &error, now).await,
                job,
                MessageStatus::Queued,
                &job.message.provider,
            );
        }
        Next::Defer { due_at, error } => {
            tracing::info!(message_id = %job.message.id, due_at, "provider busy; message deferred without counting the attempt");
            record(
                pipeline,
                store.defer(lease, due_at, &error, now).await,
                job,
                MessageStatus::Queued,
                &job.message.provider,
            );
        }
        // One provider per route today: nothing to fail over to.
        Next::FailOver(error) => finish(pipeline, job, MessageStatus::Failed, &error).await,
        Next::Stop {
            status,
            error,
            opted_out,
        } => {
            if opted_out {
                let reason = format!(
                    "provider reported opt-out ({})",
                    error.code.as_deref().unwrap_or("no code")
                );
                let message = &job.message;
                let change = OptOutChange::new(
                    &message.tenant_id,
                    &message.to_number,
                    Category::All,
                    OptOutMethod::Provider,
                    now,
                )
                .caused_by(&message.id)
                .because(&reason);
                if let Err(e) = store.opt_out(&change).await {
                    tracing::error!(message_id = %message.id, error = %e, "could not record the provider's opt-out");
                }
            }
            finish(pipeline, job, status, &error).await;
        }
    }
}

/// Ends the job's attempts with a final `status`.
async fn finish(pipeline: &Pipeline, job: &ClaimedJob, status: MessageStatus, error: &ErrorInfo) {
    let result = pipeline
        .store()
        .finish(job.lease(), status, error, pipeline.now())
        .await;
    record(pipeline, result, job, status, &job.message.provider);
}

/// An error Herald itself reports for an attempt.
fn herald_error(code: &str, message: &str) -> ErrorInfo {
    ErrorInfo {
        code: Some(code.to_owned()),
        message: Some(message.to_owned()),
    }
}

/// Logs what became of an attempt's outcome: on success one info line per status change
/// (`status` is the status the attempt left the message in), counted in the metrics.
fn record(
    pipeline: &Pipeline,
    result: store::Result<LeaseOutcome>,
    job: &ClaimedJob,
    status: MessageStatus,
    provider: &str,
) {
    let message_id = &job.message.id;
    match result {
        Ok(LeaseOutcome::Applied) => {
            pipeline
                .metrics()
                .dispatched(&job.message.tenant_id, provider, status);
            tracing::info!(
                tenant = %job.message.tenant_id,
                %message_id,
                provider,
                attempt = job.attempt,
                %status,
                "message attempt recorded"
            );
        }
        Ok(LeaseOutcome::Lost) => {
            tracing::warn!(%message_id, "lease lost before the outcome was recorded; another attempt owns it")
        }
        Err(e) => {
            tracing::error!(%message_id, error = %e, "could not record the attempt's outcome; the lease will expire and it will be retried")
        }
    }
}

/// The status-callback URL for a message: the provider's webhook, with the message id so the
/// callback finds its message even before the provider's id is recorded, and the host's `token`
/// for that message and provider ([`callback`](super::callback)), without which the id is not
/// trusted.
#[must_use]
pub fn status_callback_url(
    public_url: &str,
    provider: &str,
    message_id: &str,
    token: &str,
) -> String {
    format!(
        "{}/api/v1/sms/webhooks/{provider}/status?message_id={message_id}&token={token}",
        public_url.trim_end_matches('/')
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A batch is grouped by tenant in the order of each tenant's first job, keeping the jobs'
    /// own order within a group; groups are cut into runs of at most N.
    #[test]
    fn batches_group_by_tenant_then_cut_at_n() {
        let a = TenantId::new("ten_a").unwrap();
        let b = TenantId::new("ten_b").unwrap();
        let batch = vec![(&b, 1), (&a, 2), (&b, 3), (&b, 4), (&a, 5), (&b, 6)];
        let groups = by_tenant(batch, |(tenant, _)| tenant);
        let numbers: Vec<Vec<i32>> = groups
            .iter()
            .map(|g| g.iter().map(|(_, n)| *n).collect())
            .collect();
        assert_eq!(numbers, [vec![1, 3, 4, 6], vec![2, 5]]);
        assert!(groups[0].iter().all(|(t, _)| *t == &b));
        assert_eq!(chunks(vec![1, 3, 4, 6], 3), [vec![1, 3, 4], vec![6]]);
        assert_eq!(chunks(vec![1, 2], 0), [vec![1], vec![2]]);
        assert!(chunks(Vec::<i32>::new(), 3).is_empty());
    }
}
