//! Group commit of attempt outcomes on PostgreSQL: one lane takes every outcome waiting (the
//! provider accepted, try again later, give up) and records them in one transaction.
//!
//! Why: a dispatch batch's attempts end within moments of each other, and each outcome was a
//! transaction of its own, paying a commit and its WAL flush. SQLite's writer batches them
//! already (`group.rs`); this is the same for PostgreSQL.
//!
//! - **Durability is unchanged.** A caller is answered only after the `COMMIT` that holds its
//!   outcome.
//! - **No added latency.** The lane takes whatever is waiting, up to [`MAX_BATCH`]; a lone
//!   outcome is recorded at once in a transaction of its own.
//! - **A failing outcome fails alone.** If a statement fails, the batch is rolled back and each
//!   outcome is recorded again on its own, so only the failing one gets the error.
//! - **No lock cycles.** Each outcome locks only its own message (its lease fences it), and a
//!   price's budget rows are taken by one lane; a batch's messages are recorded in id order.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use sqlx::postgres::PgConnection;
use sqlx::{Acquire as _, PgPool, Postgres};
use tokio::sync::{mpsc, oneshot};

use super::dialect::Queries;
use super::error::{Result, StoreError};
use super::group::{Failed, copy};
use super::ledger::{BudgetAlert, log_alerts};
use super::model::{Accepted, ErrorInfo, LeaseOutcome, MessageStatus};
use super::queue::OwnedLease;

/// The most outcomes one transaction takes.
const MAX_BATCH: usize = 128;
/// Outcomes that may wait for the lane before callers wait to hand theirs over.
const QUEUE: usize = 4_096;

/// How an attempt ended, as the store records it.
pub(super) enum Outcome {
    /// The provider accepted it.
    Accepted { accepted: Accepted },
    /// Due again at `due_at`; `give_back` uncounts the claimed attempt.
    Release {
        due_at: i64,
        error: ErrorInfo,
        give_back: bool,
    },
    /// Its last status.
    Finish {
        status: MessageStatus,
        error: ErrorInfo,
    },
}

/// An outcome of the attempt that holds `lease`, at `now`.
pub(super) struct Recorded {
    pub(super) lease: OwnedLease,
    pub(super) outcome: Outcome,
    pub(super) now: i64,
}

impl Recorded {
    /// Records it in the caller's transaction; also returns the budget alerts to log once it
    /// commits.
    async fn run_in(&self, conn: &mut PgConnection) -> Result<(LeaseOutcome, Vec<BudgetAlert>)> {
        let (lease, now) = (self.lease.as_ref(), self.now);
        match &self.outcome {
            Outcome::Accepted { accepted } if accepted.price.is_none() => {
                Queries::complete_accepted_unpriced(conn, lease, accepted, now)
                    .await
                    .map(|outcome| (outcome, Vec::new()))
            }
            Outcome::Accepted { accepted } => {
                Queries::<Postgres>::complete_accepted_in(conn, lease, accepted, now).await
            }
            Outcome::Release {
                due_at,
                error,
                give_back,
            } => Queries::<Postgres>::release_in(conn, lease, *due_at, error, now, *give_back)
                .await
                .map(|outcome| (outcome, Vec::new())),
            Outcome::Finish { status, error } => {
                Queries::<Postgres>::finish_in(conn, lease, *status, error, now)
                    .await
                    .map(|outcome| (outcome, Vec::new()))
            }
        }
    }

    /// Records it in a transaction of its own.
    pub(super) async fn run_alone(&self, pool: &PgPool) -> Result<LeaseOutcome> {
        let (lease, now) = (self.lease.as_ref(), self.now);
        match &self.outcome {
            Outcome::Accepted { accepted } => {
                Queries::<Postgres>::complete_accepted_one(pool, lease, accepted, now).await
            }
            Outcome::Release {
                due_at,
                error,
                give_back: false,
            } => Queries::<Postgres>::reschedule(pool, lease, *due_at, error, now).await,
            Outcome::Release {
                due_at,
                error,
                give_back: true,
            } => Queries::<Postgres>::defer(pool, lease, *due_at, error, now).await,
            Outcome::Finish { status, error } => {
                Queries::<Postgres>::finish(pool, lease, *status, error, now).await
            }
        }
    }
}

struct Job {
    recorded: Recorded,
    reply: oneshot::Sender<Result<LeaseOutcome>>,
}

/// The handle outcomes go through; the lane ends when the last handle is dropped.
#[derive(Clone)]
pub(super) struct OutcomeGroup {
    jobs: mpsc::Sender<Job>,
    /// Transactions committed (or attempted) so far, for tests and figures.
    batches: Arc<AtomicU64>,
}

impl OutcomeGroup {
    /// Starts the lane on `pool`; it holds a connection only while it records a batch.
    pub(super) fn start(pool: PgPool) -> Self {
        let (jobs, queue) = mpsc::channel(QUEUE);
        let batches = Arc::new(AtomicU64::new(0));
        tokio::spawn(lane(pool, queue, Arc::clone(&batches)));
        Self { jobs, batches }
    }

    /// How many transactions the lane has run.
    pub(super) fn batches(&self) -> u64 {
        self.batches.load(Ordering::Relaxed)
    }

    /// Records `recorded` in the next batch and answers once that batch committed.
    pub(super) async fn record(&self, recorded: Recorded) -> Result<LeaseOutcome> {
        let closed = || StoreError::Unavailable(sqlx::Error::PoolClosed);
        let (reply, answer) = oneshot::channel();
        if self.jobs.send(Job { recorded, reply }).await.is_err() {
            return Err(closed());
        }
        answer.await.unwrap_or_else(|_| Err(closed()))
    }
}

/// Takes the outcomes waiting, then records them, until the last handle is dropped.
async fn lane(pool: PgPool, mut queue: mpsc::Receiver<Job>, batches: Arc<AtomicU64>) {
    let mut jobs = Vec::with_capacity(MAX_BATCH);
    loop {
        if queue.recv_many(&mut jobs, MAX_BATCH).await == 0 {
            return;
        }
        let mut batch = std::mem::take(&mut jobs);
        batches.fetch_add(1, Ordering::Relaxed);
        if batch.len() == 1 {
            for job in batch {
                let answer = job.recorded.run_alone(&pool).await;
                let _ = job.reply.send(answer);
            }
            continue;
        }
        batch.sort_by(|a, b| {
            let (a, b) = (a.recorded.lease.as_ref(), b.recorded.lease.as_ref());
            a.message_id.cmp(b.message_id)
        });
        match run_batch(&pool, &batch).await {
            Ok(outcomes) => {
                for (job, outcome) in batch.into_iter().zip(outcomes) {
                    let _ = job.reply.send(Ok(outcome));
                }
            }
            Err(Failed::Statement(error)) => {
                tracing::debug!(%error, outcomes = batch.len(), "a grouped outcome failed; each runs alone");
                for job in batch {
                    let answer = job.recorded.run_alone(&pool).await;
                    let _ = job.reply.send(answer);
                }
            }
            Err(Failed::Commit(error)) => {
                // Whether the server committed is unknown: every caller gets the error, as a
                // lone outcome's caller would (its lease then expires and the entry is retried).
                tracing::warn!(%error, outcomes = batch.len(), "a group commit of outcomes failed");
                for job in batch {
                    let _ = job.reply.send(Err(copy(&error)));
                }
            }
        }
    }
}

/// The batch's outcomes in one transaction, in order.
async fn run_batch(pool: &PgPool, jobs: &[Job]) -> std::result::Result<Vec<LeaseOutcome>, Failed> {
    let mut conn = pool.acquire().await.map_err(Failed::commit)?;
    let mut tx = conn.begin().await.map_err(Failed::commit)?;
    let mut outcomes = Vec::with_capacity(jobs.len());
    let mut alerts = Vec::new();
    for job in jobs {
        // Dropping the transaction on an error rolls it back.
        let (outcome, more) = job
            .recorded
            .run_in(&mut tx)
            .await
            .map_err(Failed::Statement)?;
        outcomes.push(outcome);
        alerts.extend(more);
    }
    tx.commit().await.map_err(Failed::commit)?;
    log_alerts(&alerts);
    Ok(outcomes)
}
