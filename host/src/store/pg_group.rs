//! Group commit of enqueues on PostgreSQL: a few lanes, each taking every enqueue waiting when it
//! is free and committing them in one transaction.
//!
//! Why: an enqueue is one statement ([`super::pg_enqueue`]), but each commit waits for its WAL
//! flush, and sends charged to one budget all update that budget's usage row: each waited for
//! the row lock, which the one before held until its flush. One transaction per batch pays the
//! flush once and takes the row lock once.
//!
//! - **Durability is unchanged.** A caller is answered only after the `COMMIT` that holds its
//!   message.
//! - **No added latency.** A lane takes whatever is waiting, up to [`MAX_BATCH`]; a lone enqueue
//!   runs at once as a statement that commits by itself.
//! - **A failing enqueue fails alone.** Statements in a batch take the quiet form: a reservation
//!   without room stores nothing and is no error. If a statement still fails (a database error),
//!   the batch is rolled back and each of its enqueues runs again on its own, so only the failing
//!   one gets the error. Enqueues that cannot take the quiet form (an idempotency key, or more
//!   than one budget) always run on their own.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use sqlx::{Acquire as _, PgPool, Postgres};
use tokio::sync::{Mutex, mpsc, oneshot};

use super::dialect::Queries;
use super::error::{Result, StoreError};
use super::ledger::BudgetAlert;
use super::model::{Enqueued, NewMessage};
use super::pg_enqueue::{Done, Form};

/// The most enqueues one transaction takes.
const MAX_BATCH: usize = 128;
/// Enqueues that may wait for a lane before callers wait to hand theirs over.
const QUEUE: usize = 4_096;

/// What an enqueue's caller is answered.
type Answer = Result<(Enqueued, Vec<BudgetAlert>)>;

struct Job {
    new: NewMessage,
    reply: oneshot::Sender<Answer>,
}

/// The handle enqueues go through; the lanes end when the last handle is dropped.
#[derive(Clone)]
pub(super) struct EnqueueGroup {
    jobs: mpsc::Sender<Job>,
    /// Transactions committed (or attempted) so far, for figures.
    batches: Arc<AtomicU64>,
}

impl EnqueueGroup {
    /// Starts `lanes` lanes on `pool`; each holds a connection only while it runs a batch.
    pub(super) fn start(pool: PgPool, lanes: usize) -> Self {
        let (jobs, queue) = mpsc::channel(QUEUE);
        let queue = Arc::new(Mutex::new(queue));
        let batches = Arc::new(AtomicU64::new(0));
        for _ in 0..lanes.max(1) {
            tokio::spawn(lane(pool.clone(), Arc::clone(&queue), Arc::clone(&batches)));
        }
        Self { jobs, batches }
    }

    /// How many batches the lanes have run.
    pub(super) fn batches(&self) -> u64 {
        self.batches.load(Ordering::Relaxed)
    }

    /// Enqueues `new` in the next batch and answers once that batch committed.
    pub(super) async fn enqueue(&self, pool: &PgPool, new: &NewMessage) -> Answer {
        if !Form::quiet_for(new) {
            return Queries::<Postgres>::enqueue_one(pool, new).await;
        }
        let (reply, answer) = oneshot::channel();
        let job = Job {
            new: new.clone(),
            reply,
        };
        if self.jobs.send(job).await.is_err() {
            return Err(StoreError::Unavailable(sqlx::Error::PoolClosed));
        }
        answer
            .await
            .unwrap_or(Err(StoreError::Unavailable(sqlx::Error::PoolClosed)))
    }
}

/// One lane: takes the enqueues waiting (one lane at a time), then commits them.
async fn lane(pool: PgPool, queue: Arc<Mutex<mpsc::Receiver<Job>>>, batches: Arc<AtomicU64>) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    loop {
        let taken = queue.lock().await.recv_many(&mut batch, MAX_BATCH).await;
        if taken == 0 {
            return;
        }
        let jobs = std::mem::take(&mut batch);
        if jobs.len() == 1 {
            for job in jobs {
                let answer = Queries::<Postgres>::enqueue_one(&pool, &job.new).await;
                let _ = job.reply.send(answer);
            }
        } else {
            commit(&pool, jobs).await;
        }
        batches.fetch_add(1, Ordering::Relaxed);
    }
}

/// Runs `jobs` in one transaction and answers each; if a statement fails, runs each again alone.
async fn commit(pool: &PgPool, jobs: Vec<Job>) {
    match run_batch(pool, &jobs).await {
        Ok(done) => {
            for (job, done) in jobs.into_iter().zip(done) {
                let answer = Queries::<Postgres>::answer(pool, &job.new, done).await;
                let _ = job.reply.send(answer);
            }
        }
        Err(Failed::Statement(error)) => {
            tracing::debug!(%error, writes = jobs.len(), "a grouped enqueue failed; each runs alone");
            for job in jobs {
                let answer = Queries::<Postgres>::enqueue_one(pool, &job.new).await;
                let _ = job.reply.send(answer);
            }
        }
        Err(Failed::Commit(error)) => {
            // Whether the server committed is unknown: running them again could store them
            // twice, so every caller gets the error.
            tracing::warn!(%error, writes = jobs.len(), "a group commit of enqueues failed");
            for job in jobs {
                let _ = job.reply.send(Err(copy(&error)));
            }
        }
    }
}

/// Why a batch did not commit.
enum Failed {
    /// Before the `COMMIT`: nothing of it is stored.
    Statement(StoreError),
    /// At the `COMMIT` or before the transaction began.
    Commit(StoreError),
}

/// The batch's statements in one transaction, in order; what each did once it committed.
async fn run_batch(pool: &PgPool, jobs: &[Job]) -> std::result::Result<Vec<Done>, Failed> {
    let commit_error = |error: sqlx::Error| Failed::Commit(StoreError::from(error));
    let mut conn = pool.acquire().await.map_err(commit_error)?;
    let mut tx = conn.begin().await.map_err(commit_error)?;
    let mut done = Vec::with_capacity(jobs.len());
    for job in jobs {
        match Queries::<Postgres>::run_one(&mut tx, &job.new, Form::Quiet).await {
            Ok(one) => done.push(one),
            // Dropping the transaction rolls it back.
            Err(error) => return Err(Failed::Statement(error)),
        }
    }
    tx.commit().await.map_err(commit_error)?;
    Ok(done)
}

/// A copy of `error` for each caller of a failed batch, keeping whether it is worth retrying.
fn copy(error: &StoreError) -> StoreError {
    let text = format!("the group commit failed: {error}");
    if error.is_unavailable() {
        StoreError::Unavailable(sqlx::Error::Io(std::io::Error::other(text)))
    } else {
        StoreError::Database(sqlx::Error::Protocol(text))
    }
}
