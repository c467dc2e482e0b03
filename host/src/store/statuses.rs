//! Status reports applied in groups, the reports about one message coalesced.
//!
//! A carrier reports `sent` and `delivered` moments apart, a provider's webhook may carry several
//! reports, and the reconciler asks about many messages at once. Each report used to be a
//! transaction of its own: a lock, an update of the row per step, its events, and a commit.
//! Here one task takes every report waiting and:
//!
//! - **coalesces** the reports about one message, in the order they arrived, into one apply
//!   ([`Queries::apply_statuses_in`]): the row is read and locked once and updated once, and the
//!   history still gets one event per step, so it reads as if each had been applied alone;
//! - **commits** the batch together: on SQLite each message's apply is a write of the group
//!   writer's next batch (`group.rs`), in its own savepoint; on PostgreSQL the batch is one
//!   transaction, its messages locked in id order, as a claim locks them.
//!
//! Durability is unchanged: a caller is answered only after the commit that holds its report.
//! No latency is added: an idle task applies a lone report at once. A failing apply fails only
//! its own message's callers: on SQLite by its savepoint; on PostgreSQL the batch is rolled back
//! and each message is applied again in a transaction of its own.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use futures_util::future::join_all;
use sqlx::{Acquire as _, PgPool, Postgres, Sqlite};
use tokio::sync::{mpsc, oneshot};

use super::dialect::Queries;
use super::error::{Result, StoreError};
use super::group::{Failed, GroupWriter, copy};
use super::ledger::{BudgetAlert, log_alerts};
use super::model::{ApplyResult, MessageLookup, StatusUpdate};

/// The most handovers (a caller's reports) one batch takes.
const MAX_BATCH: usize = 512;
/// Handovers that may wait before callers wait to hand theirs over.
const QUEUE: usize = 4_096;

/// What a report's caller is answered: the message after it, `None` when no message matches.
type Answer = Result<Option<ApplyResult>>;

/// The reports one caller hands over together, each with its own answer: always taken into
/// the same batch, so those about one message are always coalesced.
struct Job {
    tenant: String,
    reports: Vec<(StatusUpdate, oneshot::Sender<Answer>)>,
}

/// Where the batches are written.
pub(super) enum Target {
    Sqlite(GroupWriter),
    Postgres(PgPool),
}

/// The handle reports go through; the task ends when the last handle is dropped.
#[derive(Clone)]
pub(super) struct StatusGroup {
    jobs: mpsc::Sender<Job>,
    counts: Arc<Counts>,
}

/// What the task has done, for tests and figures.
#[derive(Default)]
struct Counts {
    reports: AtomicU64,
    /// Applies: each is one message's reports, coalesced.
    applies: AtomicU64,
    batches: AtomicU64,
}

impl StatusGroup {
    /// Starts the task that applies reports on `target`.
    pub(super) fn start(target: Target) -> Self {
        let (jobs, queue) = mpsc::channel(QUEUE);
        let counts = Arc::new(Counts::default());
        tokio::spawn(run(target, queue, Arc::clone(&counts)));
        Self { jobs, counts }
    }

    /// Reports taken, applies run (each one message's reports) and batches committed so far.
    pub(super) fn counts(&self) -> (u64, u64, u64) {
        let load = |n: &AtomicU64| n.load(Ordering::Relaxed);
        (
            load(&self.counts.reports),
            load(&self.counts.applies),
            load(&self.counts.batches),
        )
    }

    /// Applies `updates` of `tenant`, in order, each in the next batch it fits; one answer per
    /// report, once the batch that holds it committed. Reports handed over together about the
    /// same message are coalesced.
    pub(super) async fn apply(&self, tenant: &str, updates: Vec<StatusUpdate>) -> Vec<Answer> {
        let (reports, answers): (Vec<_>, Vec<_>) = updates
            .into_iter()
            .map(|update| {
                let (reply, answer) = oneshot::channel();
                ((update, reply), answer)
            })
            .unzip();
        let job = Job {
            tenant: tenant.to_owned(),
            reports,
        };
        if self.jobs.send(job).await.is_err() {
            return answers.iter().map(|_| Err(closed())).collect();
        }
        let mut results = Vec::with_capacity(answers.len());
        for answer in answers {
            results.push(answer.await.unwrap_or_else(|_| Err(closed())));
        }
        results
    }
}

fn closed() -> StoreError {
    StoreError::Unavailable(sqlx::Error::PoolClosed)
}

/// One message's reports, in the order they arrived.
struct Coalesced {
    tenant: String,
    updates: Vec<StatusUpdate>,
    replies: Vec<oneshot::Sender<Answer>>,
}

impl Coalesced {
    /// Answers each caller with its own result.
    fn answer(self, results: Result<Vec<Option<ApplyResult>>>) {
        match results {
            Ok(results) => {
                for (reply, result) in self.replies.into_iter().zip(results) {
                    let _ = reply.send(Ok(result));
                }
            }
            Err(error) => self.fail(&error),
        }
    }

    fn fail(self, error: &StoreError) {
        for reply in self.replies {
            let _ = reply.send(Err(copy(error)));
        }
    }
}

/// Takes the reports waiting, coalesces them by message and applies them, until the last
/// handle is dropped.
async fn run(target: Target, mut queue: mpsc::Receiver<Job>, counts: Arc<Counts>) {
    let mut jobs = Vec::with_capacity(MAX_BATCH);
    loop {
        let taken = queue.recv_many(&mut jobs, MAX_BATCH).await;
        if taken == 0 {
            return;
        }
        let reports: usize = jobs.iter().map(|job| job.reports.len()).sum();
        let groups = coalesce(jobs.drain(..));
        counts.reports.fetch_add(reports as u64, Ordering::Relaxed);
        counts
            .applies
            .fetch_add(groups.len() as u64, Ordering::Relaxed);
        counts.batches.fetch_add(1, Ordering::Relaxed);
        match &target {
            Target::Sqlite(writer) => apply_sqlite(writer, groups).await,
            Target::Postgres(pool) => apply_postgres(pool, groups).await,
        }
    }
}

/// Groups `jobs` by tenant and message lookup, keeping their order within each group; the
/// groups are sorted by tenant and lookup, so that concurrent batches lock rows in one order.
fn coalesce(jobs: impl Iterator<Item = Job>) -> Vec<Coalesced> {
    let mut groups: Vec<Coalesced> = Vec::new();
    // Each message's group, by tenant and lookup: a batch holds up to hundreds of messages.
    let mut index: HashMap<(String, MessageLookup), usize> = HashMap::new();
    for job in jobs {
        for (update, reply) in job.reports {
            let key = (job.tenant.clone(), update.lookup.clone());
            match index.get(&key) {
                Some(&at) => {
                    groups[at].updates.push(update);
                    groups[at].replies.push(reply);
                }
                None => {
                    index.insert(key, groups.len());
                    groups.push(Coalesced {
                        tenant: job.tenant.clone(),
                        updates: vec![update],
                        replies: vec![reply],
                    });
                }
            }
        }
    }
    groups.sort_by(|a, b| order_key(a).cmp(&order_key(b)));
    groups
}

/// Messages by id first, in id order (a claim's order), then by provider id.
fn order_key(group: &Coalesced) -> (u8, &str, &str, &str) {
    match &group.updates[0].lookup {
        MessageLookup::Id(id) => (0, id.as_str(), "", group.tenant.as_str()),
        MessageLookup::Provider {
            provider,
            provider_message_id,
        } => (
            1,
            provider.as_str(),
            provider_message_id.as_str(),
            group.tenant.as_str(),
        ),
    }
}

/// Each message's apply is one write of the group writer, handed over together so that they
/// share its next batch; each runs in its own savepoint there.
async fn apply_sqlite(writer: &GroupWriter, groups: Vec<Coalesced>) {
    let writes = groups.iter().map(|group| {
        let (tenant, updates) = (group.tenant.clone(), group.updates.clone());
        // Its first change is a script (the message is only read before it).
        writer.write_scripted(move |conn| {
            Box::pin(
                async move { Queries::<Sqlite>::apply_statuses_in(conn, &tenant, &updates).await },
            )
        })
    });
    let results = join_all(writes).await;
    for (group, result) in groups.into_iter().zip(results) {
        group.answer(result.map(logged));
    }
}

/// The whole batch in one transaction; if an apply fails, the batch is rolled back and each
/// message is applied in a transaction of its own.
async fn apply_postgres(pool: &PgPool, groups: Vec<Coalesced>) {
    let mut groups = groups;
    if groups.len() == 1 {
        // Alone: its own transaction, without a batch to roll back.
        if let Some(group) = groups.pop() {
            let result =
                Queries::<Postgres>::apply_statuses(pool, &group.tenant, &group.updates).await;
            group.answer(result);
        }
        return;
    }
    match batch_postgres(pool, &groups).await {
        Ok(results) => {
            for (group, result) in groups.into_iter().zip(results) {
                group.answer(Ok(result));
            }
        }
        Err(Failed::Statement(error)) => {
            tracing::debug!(%error, messages = groups.len(), "a grouped status apply failed; each message runs alone");
            for group in groups {
                let result =
                    Queries::<Postgres>::apply_statuses(pool, &group.tenant, &group.updates).await;
                group.answer(result);
            }
        }
        Err(Failed::Commit(error)) => {
            // Whether the server committed is unknown; a report applied twice changes nothing
            // (the monotonic rule), but the callers must hear that this one did not surely land.
            tracing::warn!(%error, messages = groups.len(), "a group commit of status reports failed");
            for group in groups {
                group.fail(&error);
            }
        }
    }
}

async fn batch_postgres(
    pool: &PgPool,
    groups: &[Coalesced],
) -> std::result::Result<Vec<Vec<Option<ApplyResult>>>, Failed> {
    let mut conn = pool.acquire().await.map_err(Failed::commit)?;
    let mut tx = conn.begin().await.map_err(Failed::commit)?;
    let mut results = Vec::with_capacity(groups.len());
    let mut alerts = Vec::new();
    for group in groups {
        // Dropping the transaction on an error rolls it back.
        let (result, more) =
            Queries::<Postgres>::apply_statuses_in(&mut tx, &group.tenant, &group.updates)
                .await
                .map_err(Failed::Statement)?;
        results.push(result);
        alerts.extend(more);
    }
    tx.commit().await.map_err(Failed::commit)?;
    log_alerts(&alerts);
    Ok(results)
}

/// Logs an apply's budget alerts once it committed, and keeps its results.
fn logged(
    (results, alerts): (Vec<Option<ApplyResult>>, Vec<BudgetAlert>),
) -> Vec<Option<ApplyResult>> {
    log_alerts(&alerts);
    results
}
