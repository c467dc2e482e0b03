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
//! - **One budget is not a queue.** A message with one budget hold is written without its
//!   reservation; the lane then reserves the batch's sum per budget and period in one upsert, so
//!   the budget's row lock is held only from there to the commit, not for the whole batch.
//! - **A failing enqueue fails alone.** If a statement fails, or a batch's reservation finds no room for its sum, the batch is rolled
//!   back and each of its enqueues runs again on its own, so only the failing one gets the error
//!   and each message at a hard cap is refused or taken on its own. Enqueues with an idempotency
//!   key or more than one budget always run on their own.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use sqlx::postgres::PgConnection;
use sqlx::{Acquire as _, AssertSqlSafe, PgPool, Postgres, Row as _};
use tokio::sync::{Mutex, mpsc, oneshot};

use super::dialect::Queries;
use super::error::{Result, StoreError};
use super::group::{Failed, copy};
use super::ledger::{BudgetAlert, Crossing, Hold, reservation_upsert};
use super::model::{Enqueued, NewMessage};
use super::pg_enqueue::{Done, Form, batchable};

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
        if !batchable(new) {
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

/// The reservations a batch takes on one budget's period, once its messages are written.
struct Reservation<'a> {
    tenant: &'a str,
    hold: &'a Hold,
    /// The sum of its members' amounts.
    total: i64,
    /// Each member's index in the batch and amount, in the batch's order.
    members: Vec<(usize, i64)>,
}

/// The batch's statements in one transaction, in order; what each did once it committed.
///
/// A message with one budget hold is written without its reservation ([`Form::Deferred`]);
/// after all of them, one upsert per budget and period reserves their sum, so the budget's row
/// lock is held only from there to the commit and the lanes' statements run side by side. If a
/// hard cap has no room for the sum, the batch is rolled back and each message runs alone,
/// where each is refused or taken on its own.
async fn run_batch(pool: &PgPool, jobs: &[Job]) -> std::result::Result<Vec<Done>, Failed> {
    let mut conn = pool.acquire().await.map_err(Failed::commit)?;
    let mut tx = conn.begin().await.map_err(Failed::commit)?;
    let mut done = Vec::with_capacity(jobs.len());
    let mut reservations: Vec<Reservation<'_>> = Vec::new();
    for (at, job) in jobs.iter().enumerate() {
        let hold = job
            .new
            .charge
            .as_ref()
            .and_then(|charge| match charge.holds.as_slice() {
                [hold] => Some(hold),
                _ => None,
            });
        let form = if hold.is_some() {
            Form::Deferred
        } else {
            Form::Aborting
        };
        // Dropping the transaction on an error rolls it back.
        let one = Queries::<Postgres>::run_one(&mut tx, &job.new, form)
            .await
            .map_err(Failed::Statement)?;
        done.push(one);
        if let Some(hold) = hold {
            let tenant = job.new.tenant_id.as_str();
            let same = |r: &&mut Reservation<'_>| {
                r.tenant == tenant
                    && r.hold.budget == hold.budget
                    && r.hold.period_start == hold.period_start
            };
            match reservations.iter_mut().find(same) {
                Some(reservation) => {
                    reservation.total = reservation.total.saturating_add(hold.micros);
                    reservation.members.push((at, hold.micros));
                }
                None => reservations.push(Reservation {
                    tenant,
                    hold,
                    total: hold.micros,
                    members: vec![(at, hold.micros)],
                }),
            }
        }
    }
    for reservation in &reservations {
        let committed = reserve(&mut tx, reservation)
            .await
            .map_err(Failed::Statement)?;
        // Each member's share, in the batch's order, for the thresholds it crossed.
        let mut before = committed - reservation.total;
        for &(at, micros) in &reservation.members {
            let crossing = Crossing {
                budget: &reservation.hold.budget,
                period_start: reservation.hold.period_start,
                limit: reservation.hold.limit_micros,
                thresholds: &reservation.hold.thresholds,
                before,
                after: before + micros,
            };
            let mut fired = Vec::new();
            Queries::<Postgres>::fire_thresholds(
                &mut tx,
                reservation.tenant,
                &crossing,
                jobs[at].new.now,
                &mut fired,
            )
            .await
            .map_err(Failed::Statement)?;
            if let Some(Done::Created(_, alerts)) = done.get_mut(at) {
                alerts.extend(fired);
            }
            before += micros;
        }
    }
    tx.commit().await.map_err(Failed::commit)?;
    Ok(done)
}

/// Takes `reservation`'s sum on its budget's period in one upsert (creating the period's usage
/// row if need be); returns the period's committed amount after it, or
/// [`StoreError::BudgetExceeded`] when a hard cap has no room for the sum. The limit is read in
/// the statement, as in a message's own reservation.
async fn reserve(conn: &mut PgConnection, reservation: &Reservation<'_>) -> Result<i64> {
    let upsert = reservation_upsert(
        ["$1", "$2", "$3", "$4"],
        reservation.hold.hard_cap,
        " WHERE true",
    );
    let row = sqlx::query(AssertSqlSafe(upsert))
        .bind(reservation.tenant)
        .bind(reservation.hold.budget.as_str())
        .bind(reservation.hold.period_start)
        .bind(reservation.total)
        .fetch_optional(&mut *conn)
        .await?;
    match row {
        Some(row) => Ok(
            row.try_get::<i64, _>("spent_micros")? + row.try_get::<i64, _>("reserved_micros")?
        ),
        None => Err(StoreError::BudgetExceeded {
            budget: reservation.hold.budget.clone(),
        }),
    }
}
