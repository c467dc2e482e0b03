//! Group commit for the SQLite writer: one task takes every write waiting for it (enqueues,
//! attempt outcomes, status reports) and commits them together in one transaction.
//!
//! Why: SQLite has one writer connection, and a transaction per write paid, besides its own
//! statements, a pool acquire, `BEGIN` and `COMMIT` (each a round trip to sqlx's connection
//! thread), and held the connection while its task waited in tokio's run queue between
//! statements. The writer task runs the writes of a batch back to back, so those costs are paid
//! once per batch.
//!
//! - **Durability is unchanged.** A caller is answered only after the `COMMIT` that holds its
//!   write; if that `COMMIT` fails, every write of the batch fails (none is stored).
//! - **No added latency.** A batch is whatever is waiting when the writer takes the connection,
//!   up to [`MAX_BATCH`]: an idle writer runs a lone write at once.
//! - **A failing write fails alone.** In a batch of several, each write runs inside its own
//!   `SAVEPOINT`: an error rolls back to it, that caller gets its error, and the others commit.
//!   An error the savepoint cannot contain (the rollback itself failing) fails the batch.
//! - **Savepoints cost no round trip of their own** for the hot writes. Opening a write's
//!   savepoint (and releasing the one before it) is `RELEASE w; SAVEPOINT w`, which a write made
//!   with [`GroupWriter::write_scripted`] sends as the head of its first script
//!   ([`take_opening`]), in that script's round trip; the last one is released by the `COMMIT`.
//!   Other writes send it on its own before they run. Only a failing write costs one more round
//!   trip, its `ROLLBACK TO w`. (With a savepoint of its own around every statement, sqlx's
//!   nested transactions, each write cost two more round trips, `SAVEPOINT` and `RELEASE`.)
//!
//! Other writes (tenants, templates, bulk chunks, ...) keep their own transactions on the same
//! single-connection pool, between batches.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use sqlx::Connection as _;
use sqlx::sqlite::{SqliteConnection, SqlitePool};
use tokio::sync::{mpsc, oneshot};

use super::error::{Result, StoreError};

/// The most writes one transaction takes.
pub(super) const MAX_BATCH: usize = 256;
/// Writes that may wait for the writer before callers wait to hand theirs over.
const QUEUE: usize = 4_096;
/// The longest the writer keeps the connection over batches that follow each other ([`run`]).
const HOLD: Duration = Duration::from_millis(20);

/// Opens the batch's first savepoint.
const OPEN: &str = "SAVEPOINT herald_write";
/// Keeps what the write before did and opens this write's savepoint: the stack stays one deep.
const RELEASE_AND_OPEN: &str = "RELEASE herald_write; SAVEPOINT herald_write";
/// Undoes a failed write; its savepoint stays open, empty, until the next write's release.
const ROLLBACK: &str = "ROLLBACK TO herald_write";

/// Where a write's savepoint opening stands ([`Opening::state`]).
const NOT_TAKEN: u8 = 0;
const OPENED: u8 = 1;
const BROKEN: u8 = 2;

tokio::task_local! {
    /// The savepoint opening the running write's first script starts with.
    static OPENING: Opening;
}

/// A savepoint opening offered to a write's first script.
struct Opening {
    sql: &'static str,
    state: Arc<AtomicU8>,
}

/// A script's head: the statements that open the running write's savepoint, taken by the
/// write's first script (see the module's documentation).
pub(super) struct Head {
    /// The SQL to put before the script's own statements.
    pub(super) sql: &'static str,
    /// How many statements it has (they return no rows).
    pub(super) statements: usize,
    state: Arc<AtomicU8>,
}

impl Head {
    /// The head's statements failed: the savepoint may not be open, so the batch cannot
    /// contain the write's failure.
    pub(super) fn broken(&self) {
        self.state.store(BROKEN, Ordering::Release);
    }
}

/// The savepoint opening that the running write's first script must start with, once: `None`
/// outside a write made with [`GroupWriter::write_scripted`] in a batch of several, or after
/// its first script took it.
pub(super) fn take_opening() -> Option<Head> {
    OPENING
        .try_with(|opening| {
            let taken = opening.state.compare_exchange(
                NOT_TAKEN,
                OPENED,
                Ordering::AcqRel,
                Ordering::Acquire,
            );
            taken.is_ok().then(|| Head {
                sql: opening.sql,
                statements: opening.sql.split(';').count(),
                state: Arc::clone(&opening.state),
            })
        })
        .ok()
        .flatten()
}

/// A boxed future borrowing the connection.
pub(super) type ConnFuture<'c, T> = Pin<Box<dyn Future<Output = Result<T>> + Send + 'c>>;

/// A write as the writer task sees it: run it on the batch's connection, and get back what
/// answers its caller once the batch's fate is known.
trait Job: Send {
    fn run<'c>(
        self: Box<Self>,
        conn: &'c mut SqliteConnection,
    ) -> Pin<Box<dyn Future<Output = Box<dyn Answer>> + Send + 'c>>;

    /// Answers `error` without running: the batch failed before the write's turn.
    fn abandon(self: Box<Self>, error: StoreError);

    /// Whether the write changes nothing before its first script, which may then open its
    /// savepoint ([`GroupWriter::write_scripted`]).
    fn scripted(&self) -> bool;
}

/// A write's result, held until its batch commits.
trait Answer: Send {
    /// Whether the write itself failed (its savepoint is rolled back).
    fn failed(&self) -> bool;
    /// Sends the write's own result: its batch committed, or the write failed on its own.
    fn send(self: Box<Self>);
    /// Sends `error`: the batch failed, so the write is not stored.
    fn fail(self: Box<Self>, error: StoreError);
}

struct Write<T, F> {
    op: F,
    reply: oneshot::Sender<Result<T>>,
    scripted: bool,
}

impl<T, F> Job for Write<T, F>
where
    T: Send + 'static,
    F: for<'c> FnOnce(&'c mut SqliteConnection) -> ConnFuture<'c, T> + Send + 'static,
{
    fn run<'c>(
        self: Box<Self>,
        conn: &'c mut SqliteConnection,
    ) -> Pin<Box<dyn Future<Output = Box<dyn Answer>> + Send + 'c>> {
        let Write { op, reply, .. } = *self;
        Box::pin(async move {
            let result = op(conn).await;
            Box::new(Reply { result, reply }) as Box<dyn Answer>
        })
    }

    fn abandon(self: Box<Self>, error: StoreError) {
        let _ = self.reply.send(Err(error));
    }

    fn scripted(&self) -> bool {
        self.scripted
    }
}

struct Reply<T> {
    result: Result<T>,
    reply: oneshot::Sender<Result<T>>,
}

impl<T: Send> Answer for Reply<T> {
    fn failed(&self) -> bool {
        self.result.is_err()
    }

    fn send(self: Box<Self>) {
        // A caller that gave up (its request was dropped) no longer listens.
        let _ = self.reply.send(self.result);
    }

    fn fail(self: Box<Self>, error: StoreError) {
        let result = match self.result {
            // Its own error stands: it was rolled back before the batch failed.
            Err(own) => Err(own),
            Ok(_) => Err(error),
        };
        let _ = self.reply.send(result);
    }
}

/// The handle writes go through; the writer task ends when the last handle is dropped.
#[derive(Clone)]
pub(super) struct GroupWriter {
    jobs: mpsc::Sender<Box<dyn Job>>,
    /// Transactions committed (or attempted) so far, for tests and figures.
    batches: Arc<AtomicU64>,
}

impl GroupWriter {
    /// Starts the writer task on `pool` (the single writer connection).
    pub(super) fn start(pool: SqlitePool) -> Self {
        let (jobs, queue) = mpsc::channel(QUEUE);
        let batches = Arc::new(AtomicU64::new(0));
        tokio::spawn(run(pool, queue, Arc::clone(&batches)));
        Self { jobs, batches }
    }

    /// How many batches (transactions) the writer has run.
    pub(super) fn batches(&self) -> u64 {
        self.batches.load(Ordering::Relaxed)
    }

    /// Runs `op` in the next batch's transaction and returns its result once that transaction
    /// committed (or the error that kept it from committing).
    pub(super) async fn write<T, F>(&self, op: F) -> Result<T>
    where
        T: Send + 'static,
        F: for<'c> FnOnce(&'c mut SqliteConnection) -> ConnFuture<'c, T> + Send + 'static,
    {
        self.hand_over(op, false).await
    }

    /// [`write`](Self::write) for an `op` that changes nothing before it runs its first
    /// [`Script`](super::script::Script) (reads before it are fine): that script opens the
    /// write's savepoint in its own round trip. An `op` that wrote before its first script would
    /// have those changes kept when it fails, so only such writes may come this way.
    pub(super) async fn write_scripted<T, F>(&self, op: F) -> Result<T>
    where
        T: Send + 'static,
        F: for<'c> FnOnce(&'c mut SqliteConnection) -> ConnFuture<'c, T> + Send + 'static,
    {
        self.hand_over(op, true).await
    }

    async fn hand_over<T, F>(&self, op: F, scripted: bool) -> Result<T>
    where
        T: Send + 'static,
        F: for<'c> FnOnce(&'c mut SqliteConnection) -> ConnFuture<'c, T> + Send + 'static,
    {
        let (reply, answer) = oneshot::channel();
        let job: Box<dyn Job> = Box::new(Write {
            op,
            reply,
            scripted,
        });
        if self.jobs.send(job).await.is_err() {
            return Err(StoreError::Unavailable(sqlx::Error::PoolClosed));
        }
        answer
            .await
            .unwrap_or(Err(StoreError::Unavailable(sqlx::Error::PoolClosed)))
    }
}

/// Takes batches off `queue` until every handle is gone.
///
/// The writer keeps the connection for the batches that follow one another without a pause,
/// up to [`HOLD`]: taking it from the pool and giving it back cost three round trips to the
/// connection's thread (sqlx's check of a returned connection, ours, and the hand-back in a task
/// of its own), paid once per busy spell instead of once per batch. Other writers (tenants,
/// templates, ...) wait at most one spell; the pool hands the connection to them first, in the
/// order they asked. A batch whose `COMMIT` failed gives the connection back at once, so that
/// [`outside_transaction`](super::sqlite) checks it before it is used again.
async fn run(pool: SqlitePool, mut queue: mpsc::Receiver<Box<dyn Job>>, batches: Arc<AtomicU64>) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    while queue.recv_many(&mut batch, MAX_BATCH).await > 0 {
        let mut conn = match pool.acquire().await {
            Ok(conn) => conn,
            Err(error) => {
                let error = StoreError::from(error);
                for job in batch.drain(..) {
                    job.abandon(copy(&error));
                }
                batches.fetch_add(1, Ordering::Relaxed);
                continue;
            }
        };
        let since = Instant::now();
        loop {
            let committed = commit(&mut conn, std::mem::take(&mut batch)).await;
            batches.fetch_add(1, Ordering::Relaxed);
            if !committed || since.elapsed() >= HOLD {
                break;
            }
            // Whatever arrived while that batch ran; none: the spell is over.
            while batch.len() < MAX_BATCH {
                match queue.try_recv() {
                    Ok(job) => batch.push(job),
                    Err(_) => break,
                }
            }
            if batch.is_empty() {
                break;
            }
        }
    }
}

/// Why a PostgreSQL group's batch did not commit (`pg_group.rs`, `pg_outcome_group.rs`,
/// `statuses.rs`).
pub(super) enum Failed {
    /// Before the `COMMIT`: nothing of it is stored, so each write may run again alone.
    Statement(StoreError),
    /// At the `COMMIT` or before the transaction began: whether it is stored is unknown.
    Commit(StoreError),
}

impl Failed {
    /// A failure to begin or commit the batch's transaction.
    pub(super) fn commit(error: sqlx::Error) -> Self {
        Failed::Commit(StoreError::from(error))
    }
}

/// A copy of `error` for each caller of a failed batch, keeping whether it is worth retrying.
pub(super) fn copy(error: &StoreError) -> StoreError {
    let text = format!("the group commit failed: {error}");
    if error.is_unavailable() {
        StoreError::Unavailable(sqlx::Error::Io(std::io::Error::other(text)))
    } else {
        StoreError::Database(sqlx::Error::Protocol(text))
    }
}

/// Runs `batch` in one transaction on `conn` and answers every caller; `false` when the batch
/// failed as a whole.
async fn commit(conn: &mut SqliteConnection, batch: Vec<Box<dyn Job>>) -> bool {
    let mut answers: Vec<Box<dyn Answer>> = Vec::with_capacity(batch.len());
    let outcome = run_batch(conn, batch, &mut answers).await;
    match outcome {
        Ok(()) => {
            answers.into_iter().for_each(|answer| answer.send());
            true
        }
        Err(error) => {
            tracing::warn!(%error, writes = answers.len(), "a group commit failed");
            for answer in answers {
                answer.fail(copy(&error));
            }
            false
        }
    }
}

/// Runs the jobs, each under a savepoint when there are several, and commits; on `Err`,
/// nothing of the batch is stored. Jobs that could not run (the batch failed first) are answered
/// here with that error.
async fn run_batch(
    conn: &mut SqliteConnection,
    batch: Vec<Box<dyn Job>>,
    answers: &mut Vec<Box<dyn Answer>>,
) -> Result<()> {
    let mut jobs = batch.into_iter();
    let failed_all = |jobs: std::vec::IntoIter<Box<dyn Job>>, error: &StoreError| {
        for job in jobs {
            job.abandon(copy(error));
        }
    };
    let mut tx = match conn.begin_with("BEGIN IMMEDIATE").await {
        Ok(tx) => tx,
        Err(error) => {
            let error = StoreError::from(error);
            failed_all(jobs, &error);
            return Err(error);
        }
    };
    let alone = jobs.len() == 1;
    // Whether the savepoint is on the stack (holding the last write that opened one).
    let mut open = false;
    while let Some(job) = jobs.next() {
        if alone {
            let answer = job.run(&mut tx).await;
            if answer.failed() {
                // Its own failure: roll back, and answer it with its own error. The rollback is
                // awaited, since the connection may run the next batch at once; if it fails, the
                // batch counts as failed so that the connection is given back and checked.
                let rolled_back = tx.rollback().await;
                answer.send();
                return rolled_back.map_err(StoreError::from);
            }
            answers.push(answer);
            continue;
        }
        let opening = if open { RELEASE_AND_OPEN } else { OPEN };
        let (answer, opened) = if job.scripted() {
            let state = Arc::new(AtomicU8::new(NOT_TAKEN));
            let offered = Opening {
                sql: opening,
                state: Arc::clone(&state),
            };
            let answer = OPENING.scope(offered, job.run(&mut tx)).await;
            match state.load(Ordering::Acquire) {
                OPENED => (answer, true),
                // It ran no script, and so (by its contract) changed nothing.
                NOT_TAKEN => (answer, false),
                _ => {
                    let error = StoreError::Database(sqlx::Error::Protocol(
                        "a write's savepoint could not be opened".into(),
                    ));
                    answers.push(answer);
                    failed_all(jobs, &error);
                    return Err(error);
                }
            }
        } else {
            if let Err(error) = sqlx::query(opening).execute(&mut *tx).await {
                let error = StoreError::from(error);
                job.abandon(copy(&error));
                failed_all(jobs, &error);
                return Err(error);
            }
            (job.run(&mut tx).await, true)
        };
        open |= opened;
        let settled = if answer.failed() && opened {
            sqlx::query(ROLLBACK).execute(&mut *tx).await.map(drop)
        } else {
            Ok(())
        };
        answers.push(answer);
        if let Err(error) = settled {
            let error = StoreError::from(error);
            failed_all(jobs, &error);
            return Err(error);
        }
    }
    // The `COMMIT` also releases the last savepoint.
    tx.commit().await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use sqlx::sqlite::SqlitePoolOptions;

    use super::*;

    /// A single-connection pool on a fresh file with a table `t (v)`; keep the directory.
    async fn pool_with_table() -> (tempfile::TempDir, SqlitePool) {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}?mode=rwc", dir.path().join("g.db").display());
        let pool = SqlitePoolOptions::new()
            .max_connections(1)
            .connect(&url)
            .await
            .unwrap();
        sqlx::query("CREATE TABLE t (v INTEGER NOT NULL)")
            .execute(&pool)
            .await
            .unwrap();
        (dir, pool)
    }

    /// A job that inserts `value` and then, when `fail`, runs a statement that fails.
    fn insert(
        value: i64,
        fail: bool,
    ) -> impl for<'c> FnOnce(&'c mut SqliteConnection) -> ConnFuture<'c, i64> + Send + 'static {
        move |conn| {
            Box::pin(async move {
                sqlx::query("INSERT INTO t (v) VALUES ($1)")
                    .bind(value)
                    .execute(&mut *conn)
                    .await?;
                if fail {
                    sqlx::query("INSERT INTO missing_table VALUES (1)")
                        .execute(&mut *conn)
                        .await?;
                }
                Ok(value)
            })
        }
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_failing_write_fails_alone_and_the_batch_commits_once() {
        let (_dir, pool) = pool_with_table().await;
        let writer = GroupWriter::start(pool.clone());
        // Hold the only connection so that the writes queue up and go as one batch.
        let held = pool.acquire().await.unwrap();
        let writes: Vec<_> = [(1, false), (2, true), (3, false), (4, false)]
            .into_iter()
            .map(|(value, fail)| {
                let writer = writer.clone();
                tokio::spawn(async move { writer.write(insert(value, fail)).await })
            })
            .collect();
        // On this single-threaded runtime the four writes are all queued before the writer task
        // runs again and takes them; it then waits for the connection.
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        assert_eq!(
            writer.batches(),
            0,
            "nothing can run while the connection is held"
        );
        drop(held);
        let mut results = Vec::new();
        for write in writes {
            results.push(write.await.unwrap());
        }
        assert_eq!(results[0].as_ref().ok(), Some(&1));
        assert!(results[1].is_err(), "the failing write gets its own error");
        assert_eq!(results[2].as_ref().ok(), Some(&3));
        assert_eq!(results[3].as_ref().ok(), Some(&4));
        assert_eq!(
            writer.batches(),
            1,
            "the four writes went as one transaction"
        );
        let stored: Vec<i64> = sqlx::query_scalar("SELECT v FROM t ORDER BY v")
            .fetch_all(&pool)
            .await
            .unwrap();
        // The failing write's own insert was rolled back with its savepoint.
        assert_eq!(stored, [1, 3, 4]);
    }

    /// Batches that follow each other share the connection; one whose lone write failed is
    /// rolled back before the next begins on it, and the other writers of the pool get their
    /// turn between spells.
    #[tokio::test(flavor = "current_thread")]
    async fn the_writer_keeps_the_connection_over_following_batches() {
        let (_dir, pool) = pool_with_table().await;
        let writer = GroupWriter::start(pool.clone());
        // A lone write that fails after it inserted, slowly, so that the next write arrives
        // while it runs and goes in the next batch of the same spell.
        let slow_failure = {
            let writer = writer.clone();
            tokio::spawn(async move {
                writer
                    .write(|conn| {
                        Box::pin(async move {
                            insert(1, false)(&mut *conn).await?;
                            tokio::time::sleep(Duration::from_millis(5)).await;
                            insert(2, true)(conn).await
                        })
                    })
                    .await
            })
        };
        tokio::time::sleep(Duration::from_millis(1)).await;
        assert_eq!(writer.batches(), 0, "the first batch is still running");
        let next = writer.write(insert(3, false)).await;
        assert!(slow_failure.await.unwrap().is_err());
        assert_eq!(
            next.ok(),
            Some(3),
            "the next batch began on a clean connection"
        );
        assert_eq!(writer.batches(), 2);
        // Between spells the pool lends the connection to anyone else.
        let mut other = pool.acquire().await.unwrap();
        let stored: Vec<i64> = sqlx::query_scalar("SELECT v FROM t ORDER BY v")
            .fetch_all(&mut *other)
            .await
            .unwrap();
        assert_eq!(stored, [3], "the failed write left nothing");
    }

    /// A scripted write: each of `scripts` is one script inserting its values; `fail_at` makes
    /// that script end with a failing statement (`Some(0)` with no scripts: an error before any
    /// SQL).
    fn scripted(
        scripts: Vec<Vec<i64>>,
        fail_at: Option<usize>,
    ) -> impl for<'c> FnOnce(&'c mut SqliteConnection) -> ConnFuture<'c, i64> + Send + 'static {
        use super::super::script::{Script, Statement};
        move |conn| {
            Box::pin(async move {
                if scripts.is_empty() && fail_at.is_some() {
                    return Err(StoreError::Config("refused before any SQL".into()));
                }
                for (at, values) in scripts.iter().enumerate() {
                    let mut script = Script::default();
                    for value in values {
                        script.push(Statement::new("INSERT INTO t (v) VALUES ($1)").bind(*value));
                    }
                    if fail_at == Some(at) {
                        script.push(Statement::new("INSERT INTO missing_table VALUES (1)"));
                    }
                    script.run_sqlite(conn).await?;
                }
                Ok(scripts.iter().flatten().sum())
            })
        }
    }

    #[tokio::test(flavor = "current_thread")]
    async fn scripted_and_plain_writes_each_roll_back_alone_in_one_batch() {
        let (_dir, pool) = pool_with_table().await;
        let writer = GroupWriter::start(pool.clone());
        let held = pool.acquire().await.unwrap();
        type Pending = Pin<Box<dyn Future<Output = Result<i64>> + Send>>;
        let jobs: Vec<Box<dyn FnOnce(GroupWriter) -> Pending>> = vec![
            // The batch's first write opens the savepoint with its script.
            Box::new(|w| {
                Box::pin(async move { w.write_scripted(scripted(vec![vec![1]], None)).await })
            }),
            // Fails in its script, after its own insert ran: that insert is undone.
            Box::new(|w| {
                Box::pin(async move { w.write_scripted(scripted(vec![vec![2]], Some(0))).await })
            }),
            Box::new(|w| Box::pin(async move { w.write(insert(3, false)).await })),
            // Fails before any SQL: nothing to undo, and 3 must stay.
            Box::new(|w| {
                Box::pin(async move { w.write_scripted(scripted(Vec::new(), Some(0))).await })
            }),
            Box::new(|w| Box::pin(async move { w.write(insert(5, true)).await })),
            // Two scripts: the savepoint opens with the first only.
            Box::new(|w| {
                Box::pin(async move {
                    w.write_scripted(scripted(vec![vec![6], vec![7]], None))
                        .await
                })
            }),
            // Its second script fails: its first one's insert is undone too.
            Box::new(|w| {
                Box::pin(async move {
                    w.write_scripted(scripted(vec![vec![8], vec![10]], Some(1)))
                        .await
                })
            }),
            Box::new(|w| {
                Box::pin(async move { w.write_scripted(scripted(vec![vec![9]], None)).await })
            }),
        ];
        // Spawned in order, so queued in order: one batch once the connection is free.
        let writes: Vec<_> = jobs
            .into_iter()
            .map(|job| tokio::spawn(job(writer.clone())))
            .collect();
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        assert_eq!(writer.batches(), 0);
        drop(held);
        let mut ok = Vec::new();
        for write in writes {
            ok.push(write.await.unwrap().ok());
        }
        assert_eq!(
            ok,
            [Some(1), None, Some(3), None, None, Some(13), None, Some(9)]
        );
        assert_eq!(
            writer.batches(),
            1,
            "the eight writes went as one transaction"
        );
        let stored: Vec<i64> = sqlx::query_scalar("SELECT v FROM t ORDER BY v")
            .fetch_all(&pool)
            .await
            .unwrap();
        assert_eq!(stored, [1, 3, 6, 7, 9]);
    }

    #[tokio::test]
    async fn a_lone_failing_write_is_rolled_back() {
        let (_dir, pool) = pool_with_table().await;
        let writer = GroupWriter::start(pool.clone());
        assert!(writer.write(insert(7, true)).await.is_err());
        assert_eq!(writer.write(insert(8, false)).await.unwrap(), 8);
        let stored: Vec<i64> = sqlx::query_scalar("SELECT v FROM t ORDER BY v")
            .fetch_all(&pool)
            .await
            .unwrap();
        assert_eq!(stored, [8]);
    }
}
