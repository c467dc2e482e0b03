//! The event log: one row per message status change, inbound message and opt-out change,
//! written by the store in the same transaction as the change (so the log never claims what did
//! not commit, nor misses what did), and read back by id for live streams and listings.
//!
//! Writing: the statements here are appended to the transactions of `messages.rs`, `queue.rs`,
//! `batches.rs` and `records.rs`; each is one extra `INSERT` whose JSON payload is built by the
//! database from the message row (set-based for bulk, `INSERT … SELECT`).
//!
//! Reading in order, with no gaps: on SQLite one writer connection commits in id order, so every
//! committed id is final. On PostgreSQL ids come from a sequence and may commit out of order (a
//! transaction holding id 10 can commit after the one holding 11), so readers only read up to a
//! *horizon*: the highest id below which every id is committed or rolled back. The horizon task
//! reads the highest committed id `m`, then the transactions in progress (`pg_stat_activity`'s
//! `backend_xid`); every id `<= m` was taken by a transaction that was already writing (events
//! follow the write they record, so the transaction had its xid first), so once none of those is
//! in progress any more, `m` is final. Writers never wait for it.

use std::collections::{BTreeSet, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use sqlx::{AssertSqlSafe, ColumnIndex, Decode, Executor, Pool, Row as _, Type};
use tokio::sync::{Notify, watch};

use super::dialect::{Dialect, Queries, Value};
use super::error::Result;
use super::model::{InboundMessage, OptOutAction, OptOutChange, TenantId};
use super::script::Statement;
use super::shared::{json, name_of, tenant};
use super::{Backend, Store};

/// The kind of a message's status change.
pub const MESSAGE_STATUS: &str = "message.status";
/// The kind of an inbound message stored.
pub const MESSAGE_INBOUND: &str = "message.inbound";
/// The kind of an opt-out or opt-in that changed the list.
pub const OPT_OUT_CHANGED: &str = "opt_out.changed";
/// The kind of a budget threshold crossed (once per threshold per period).
pub const BUDGET_THRESHOLD: &str = "budget.threshold";

/// How long the horizon task sleeps with nothing written on SQLite, where writes of this
/// process wake it and this poll catches those of other processes on the same file.
const IDLE_POLL: Duration = Duration::from_secs(1);
/// The same on PostgreSQL, where every process notifies the others after commits that wrote
/// events (and a lost listener connection wakes the task too), so this is only a safety net:
/// for a process that died between a commit and its notification.
const IDLE_POLL_NOTIFIED: Duration = Duration::from_secs(5);
/// How soon it looks again while ids are waiting for older transactions to end.
const SETTLE_POLL: Duration = Duration::from_millis(10);
/// The least time between two readings of the horizon.
const MIN_GAP: Duration = Duration::from_millis(5);
/// How long it waits after a failed read of the horizon.
const RETRY_AFTER: Duration = Duration::from_secs(1);

/// One row of the event log.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct LoggedEvent {
    /// The position in the log: increasing, and the SSE `id` a reader resumes after.
    pub id: i64,
    /// The owning tenant.
    pub tenant_id: TenantId,
    /// What happened: [`MESSAGE_STATUS`], [`MESSAGE_INBOUND`], [`OPT_OUT_CHANGED`] or
    /// [`BUDGET_THRESHOLD`].
    pub kind: String,
    /// The message concerned (outbound, inbound, or the source of an opt-out), if any.
    pub message_id: Option<String>,
    /// The JSON object a dashboard reads; its fields depend on the kind.
    pub payload: serde_json::Value,
    /// When it was written, UTC milliseconds.
    pub created_at: i64,
}

/// The JSON payload of a `message.status` event, over message row `m`: `status`, `previous`,
/// `provider_status`, `error_code`, `source` and `at` are SQL expressions.
pub(super) fn status_payload<DB: Dialect>(
    status: &str,
    previous: &str,
    provider_status: &str,
    error_code: &str,
    source: &str,
    at: &str,
) -> String {
    format!(
        "{open}'message_id', m.id, 'status', {status}, 'previous_status', {previous},
             'provider', m.provider, 'provider_status', {provider_status},
             'error_code', {error_code}, 'to', m.to_number, 'from', m.sender,
             'category', m.category, 'batch_id', m.batch_id, 'source', {source},
             'occurred_at', {at}{close}",
        open = DB::JSON_OBJECT,
        close = DB::JSON_END,
    )
}

/// The latest recorded status of message row `m`, read before its new event is recorded.
pub(super) const PREVIOUS_STATUS: &str = "(SELECT e.status FROM status_events e
     WHERE e.tenant_id = m.tenant_id AND e.message_id = m.id
     ORDER BY e.occurred_at DESC, e.id DESC LIMIT 1)";

/// Logs a `message.status` event for every message row `m` that `filter` (a `FROM messages m
/// WHERE …` tail, its parameters the caller's) selects. Only constants of this crate go in.
pub(super) fn log_status_sql<DB: Dialect>(
    payload: &str,
    at: &str,
    filter: &str,
) -> AssertSqlSafe<String> {
    AssertSqlSafe(format!(
        "INSERT INTO events (tenant_id, kind, message_id, payload, created_at)
         SELECT m.tenant_id, '{MESSAGE_STATUS}', m.id, {payload}, {at} {filter}"
    ))
}

impl<DB: Dialect> Queries<DB>
where
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
    for<'a> &'a str: Value<'a, DB> + ColumnIndex<DB::Row>,
    for<'a> Option<&'a str>: Value<'a, DB>,
    String: for<'a> Decode<'a, DB> + Type<DB>,
    i64: for<'a> Value<'a, DB>,
{
    fn logged_from_row(row: &DB::Row) -> Result<LoggedEvent> {
        let payload: String = row.try_get("payload")?;
        Ok(LoggedEvent {
            id: row.try_get("id")?,
            tenant_id: tenant(row.try_get("tenant_id")?)?,
            kind: row.try_get("kind")?,
            message_id: row.try_get("message_id")?,
            payload: json(&payload, "payload")?,
            created_at: row.try_get("created_at")?,
        })
    }

    /// Logs an inbound message as `message.inbound`.
    pub(super) async fn log_inbound(
        conn: &mut DB::Connection,
        inbound: &InboundMessage,
    ) -> Result<()> {
        let sql = AssertSqlSafe(format!(
            "INSERT INTO events (tenant_id, kind, message_id, payload, created_at)
             VALUES ($1, '{MESSAGE_INBOUND}', $2, {open}'message_id', $2, 'from', $3, 'to', $4,
                 'provider', $5, 'keyword', $6, 'body', $7, 'received_at', $8{close}, $8)",
            open = DB::JSON_OBJECT,
            close = DB::JSON_END,
        ));
        sqlx::query(sql)
            .bind(inbound.tenant_id.as_str())
            .bind(inbound.id.as_str())
            .bind(inbound.from_number.as_str())
            .bind(inbound.to_number.as_str())
            .bind(inbound.provider.as_str())
            .bind(inbound.keyword.as_ref().map(name_of).as_deref())
            .bind(inbound.body.as_str())
            .bind(inbound.received_at)
            .execute(&mut *conn)
            .await?;
        Ok(())
    }

    /// Logs an opt-out or opt-in that changed the list as `opt_out.changed`.
    pub(super) async fn log_opt_out(
        conn: &mut DB::Connection,
        change: &OptOutChange,
        action: OptOutAction,
    ) -> Result<()> {
        let sql = AssertSqlSafe(format!(
            "INSERT INTO events (tenant_id, kind, message_id, payload, created_at)
             VALUES ($1, '{OPT_OUT_CHANGED}', $2, {open}'phone_number', $3, 'category', $4,
                 'action', $5, 'method', $6, 'source_message_id', $2, 'reason', $7,
                 'occurred_at', $8{close}, $8)",
            open = DB::JSON_OBJECT,
            close = DB::JSON_END,
        ));
        sqlx::query(sql)
            .bind(change.tenant_id.as_str())
            .bind(change.source_message_id.as_deref())
            .bind(change.phone_number.as_str())
            .bind(change.category.as_str())
            .bind(name_of(&action).as_str())
            .bind(change.method.as_str())
            .bind(change.reason.as_deref())
            .bind(change.occurred_at)
            .execute(&mut *conn)
            .await?;
        Ok(())
    }

    /// A tenant's events with `after < id <= upto`, oldest first, at most `limit`.
    async fn events_after(
        pool: &Pool<DB>,
        tenant: &str,
        after: i64,
        upto: i64,
        limit: u32,
    ) -> Result<Vec<LoggedEvent>> {
        let rows = sqlx::query(
            "SELECT * FROM events WHERE tenant_id = $1 AND id > $2 AND id <= $3
             ORDER BY id LIMIT $4",
        )
        .bind(tenant)
        .bind(after)
        .bind(upto)
        .bind(i64::from(limit))
        .fetch_all(pool)
        .await?;
        rows.iter().map(Self::logged_from_row).collect()
    }

    /// A tenant's latest events of `kind` up to `upto`, newest first, at most `limit`.
    async fn latest_events(
        pool: &Pool<DB>,
        tenant: &str,
        kind: &str,
        upto: i64,
        limit: u32,
    ) -> Result<Vec<LoggedEvent>> {
        let rows = sqlx::query(
            "SELECT * FROM events WHERE tenant_id = $1 AND kind = $2 AND id <= $3
             ORDER BY id DESC LIMIT $4",
        )
        .bind(tenant)
        .bind(kind)
        .bind(upto)
        .bind(i64::from(limit))
        .fetch_all(pool)
        .await?;
        rows.iter().map(Self::logged_from_row).collect()
    }

    /// Removes the events among the `limit` oldest that were written before `before` (UTC ms),
    /// never the newest event (the horizon reads the highest id), and raises the pruned-through
    /// mark to the highest id removed. Returns how many it removed.
    async fn prune_events(pool: &Pool<DB>, before: i64, limit: u32) -> Result<u64> {
        let mut tx = pool.begin().await?;
        let rows = sqlx::query(
            "DELETE FROM events
             WHERE id IN (SELECT id FROM events ORDER BY id LIMIT $2)
               AND created_at < $1
               AND id < (SELECT MAX(id) FROM events)
             RETURNING id",
        )
        .bind(before)
        .bind(i64::from(limit))
        .fetch_all(&mut *tx)
        .await?;
        let removed = rows
            .iter()
            .map(|row| row.try_get::<i64, _>("id"))
            .collect::<std::result::Result<Vec<i64>, _>>()?;
        if let Some(through) = removed.iter().max() {
            sqlx::query("UPDATE event_log_pruned SET through = $1 WHERE through < $1")
                .bind(*through)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(removed.len() as u64)
    }

    /// The highest event id retention has removed (0: none).
    async fn pruned_through(pool: &Pool<DB>) -> Result<i64> {
        let row = sqlx::query("SELECT through FROM event_log_pruned WHERE singleton = 1")
            .fetch_optional(pool)
            .await?;
        Ok(match row {
            Some(row) => row.try_get("through")?,
            None => 0,
        })
    }

    /// The highest committed event id (0 for an empty log).
    async fn max_event_id(pool: &Pool<DB>) -> Result<i64> {
        let row = sqlx::query("SELECT COALESCE(MAX(id), 0) AS top FROM events")
            .fetch_one(pool)
            .await?;
        Ok(row.try_get("top")?)
    }
}

/// The transactions in progress on PostgreSQL, by top-level transaction id.
///
/// Read from `pg_stat_activity`, which takes each backend's id from the process array itself: a
/// snapshot's `xip` would not do, as it lists only ids below the snapshot's `xmax` (one past the
/// latest *completed* transaction), so a transaction that took its id after the last one to
/// complete, and is still running, is missing from it. (Found by `benches/live_feed.rs`: an id
/// held by such a transaction was skipped.) Only this database's backends can write its events,
/// so transactions of other databases on the server do not hold the horizon back. The role must
/// see the backends that write events, which it does when they are its own (or it has
/// `pg_read_all_stats`).
async fn in_progress(pool: &sqlx::PgPool) -> Result<BTreeSet<i64>> {
    let xids: Vec<i64> = sqlx::query_scalar(
        "SELECT backend_xid::text::bigint FROM pg_stat_activity
         WHERE backend_xid IS NOT NULL AND datname = current_database()",
    )
    .fetch_all(pool)
    .await?;
    Ok(xids.into_iter().collect())
}

/// The horizon as the store publishes it, and the task that moves it.
pub(super) struct Horizon {
    /// Wakes the task: a write of this process committed, or (PostgreSQL) a `herald_events`
    /// notification arrived from any process.
    pub(super) written: Arc<Notify>,
    /// Set when the process shuts down: streams end (their clients resume elsewhere with
    /// `Last-Event-ID`) and the task stops.
    ended: watch::Sender<bool>,
    started: std::sync::OnceLock<(watch::Receiver<i64>, tokio::task::JoinHandle<()>)>,
}

impl Horizon {
    /// A horizon whose task starts with the first reader.
    pub(super) fn new() -> Self {
        Self {
            written: Arc::new(Notify::new()),
            ended: watch::Sender::new(false),
            started: std::sync::OnceLock::new(),
        }
    }
}

impl Drop for Horizon {
    fn drop(&mut self) {
        if let Some((_, task)) = self.started.get() {
            task.abort();
        }
    }
}

/// The pools the horizon task reads with (cheap clones; the task holds no [`Store`], so it
/// never keeps one alive).
enum Reader {
    Sqlite(sqlx::SqlitePool),
    Postgres(sqlx::PgPool),
}

/// Moves the horizon forward until the streams end (or the store is dropped).
async fn track(
    reader: Reader,
    written: Arc<Notify>,
    mut ended: watch::Receiver<bool>,
    horizon: watch::Sender<i64>,
) {
    // PostgreSQL: (highest committed id, transactions in progress just after it was read).
    let mut waiting: VecDeque<(i64, BTreeSet<i64>)> = VecDeque::new();
    loop {
        let pause = match &reader {
            _ if !waiting.is_empty() => SETTLE_POLL,
            Reader::Sqlite(_) => IDLE_POLL,
            Reader::Postgres(_) => IDLE_POLL_NOTIFIED,
        };
        tokio::select! {
            _ = tokio::time::timeout(pause, written.notified()) => {}
            _ = ended.wait_for(|ended| *ended) => return,
        }
        let next = match &reader {
            Reader::Sqlite(pool) => Queries::max_event_id(pool).await.map(Some),
            Reader::Postgres(pool) => settle(pool, &mut waiting).await,
        };
        match next {
            Ok(None) => {}
            Ok(Some(top)) => {
                horizon.send_if_modified(|current| {
                    let moved = top > *current;
                    if moved {
                        *current = top;
                    }
                    moved
                });
            }
            Err(error) => {
                tracing::warn!(%error, "reading the event log's horizon failed; retrying");
                tokio::time::sleep(RETRY_AFTER).await;
            }
        }
        // Under a steady stream of commits, read at most once per pause: streams lose a few
        // milliseconds, the database is spared a query pair per commit.
        tokio::time::sleep(MIN_GAP).await;
    }
}

/// One PostgreSQL step: the highest id now known final, if this step learnt one.
async fn settle(
    pool: &sqlx::PgPool,
    waiting: &mut VecDeque<(i64, BTreeSet<i64>)>,
) -> Result<Option<i64>> {
    // The order matters: the id first, the transactions in progress after it.
    let top = Queries::max_event_id(pool).await?;
    let running = in_progress(pool).await?;
    let mut settled = None;
    while let Some((id, writers)) = waiting.front() {
        if writers.is_disjoint(&running) {
            settled = Some(*id);
            waiting.pop_front();
        } else {
            break;
        }
    }
    if running.is_empty() {
        waiting.clear();
        return Ok(Some(top));
    }
    if waiting.back().is_none_or(|(id, _)| *id < top) {
        waiting.push_back((top, running));
    }
    Ok(settled)
}

impl Store {
    /// The event log's horizon: every event with an id up to it is committed (or rolled back)
    /// and readable, and it changes as events commit in any process; `-1` until the task that
    /// moves it (started on first use) has read it once.
    pub fn event_horizon(&self) -> watch::Receiver<i64> {
        let horizon = &self.inner.horizon;
        let (receiver, _) = horizon.started.get_or_init(|| {
            let (sender, receiver) = watch::channel(-1);
            let reader = match &self.inner.backend {
                Backend::Sqlite { reader, .. } => Reader::Sqlite(reader.clone()),
                Backend::Postgres(pool) => Reader::Postgres(pool.clone()),
            };
            let written = Arc::clone(&horizon.written);
            // Look at once rather than after the first idle pause.
            written.notify_one();
            let ended = horizon.ended.subscribe();
            (
                receiver,
                tokio::spawn(track(reader, written, ended, sender)),
            )
        });
        receiver.clone()
    }

    /// Ends every event stream of this process (at shutdown, so that their clients resume
    /// elsewhere with `Last-Event-ID` instead of holding the shutdown up) and stops the horizon
    /// task; streams started later end at once.
    pub fn end_event_streams(&self) {
        self.inner.horizon.ended.send_replace(true);
    }

    /// Becomes `true` when [`Store::end_event_streams`] is called.
    #[must_use]
    pub fn event_streams_ended(&self) -> watch::Receiver<bool> {
        self.inner.horizon.ended.subscribe()
    }

    /// Wakes the horizon task after a commit that may have written events, so readers in this
    /// process see them at once, and (PostgreSQL) those of other processes through the
    /// publisher. SQLite has no cross-process notification: other processes poll.
    pub(super) fn events_written(&self) {
        self.inner.horizon.written.notify_one();
        if let Some((pending, _)) = &self.inner.publisher {
            pending.events();
        }
    }

    /// A tenant's events with `after < id <= upto`, oldest first, at most `limit`.
    pub async fn events_after(
        &self,
        tenant: &TenantId,
        after: i64,
        upto: i64,
        limit: u32,
    ) -> Result<Vec<LoggedEvent>> {
        let tenant = tenant.as_str();
        match &self.inner.backend {
            Backend::Sqlite { reader, .. } => {
                Queries::events_after(reader, tenant, after, upto, limit).await
            }
            Backend::Postgres(pool) => {
                Queries::events_after(pool, tenant, after, upto, limit).await
            }
        }
    }

    /// A tenant's latest events of `kind` with ids up to `upto`, newest first, at most `limit`.
    pub async fn latest_events(
        &self,
        tenant: &TenantId,
        kind: &str,
        upto: i64,
        limit: u32,
    ) -> Result<Vec<LoggedEvent>> {
        let tenant = tenant.as_str();
        match &self.inner.backend {
            Backend::Sqlite { reader, .. } => {
                Queries::latest_events(reader, tenant, kind, upto, limit).await
            }
            Backend::Postgres(pool) => {
                Queries::latest_events(pool, tenant, kind, upto, limit).await
            }
        }
    }

    /// Removes the events among the `limit` oldest of the log that were written before
    /// `before` (UTC milliseconds), never the newest one, and records the highest id removed
    /// (see [`Store::events_pruned_through`]). Returns how many it removed: fewer than `limit`
    /// means no older event is left.
    pub async fn prune_events(&self, before: i64, limit: u32) -> Result<u64> {
        match &self.inner.backend {
            Backend::Sqlite { writer, .. } => Queries::prune_events(writer, before, limit).await,
            Backend::Postgres(pool) => Queries::prune_events(pool, before, limit).await,
        }
    }

    /// The highest event id that retention has removed (0: none yet): a reader resuming after
    /// a lower id has lost the events in between.
    pub async fn events_pruned_through(&self) -> Result<i64> {
        match &self.inner.backend {
            Backend::Sqlite { reader, .. } => Queries::pruned_through(reader).await,
            Backend::Postgres(pool) => Queries::pruned_through(pool).await,
        }
    }
}

/// Logs the status change of one message (its row already updated), binding `$1` tenant,
/// `$2` message id, `$3` status, `$4` provider status, `$5` error code, `$6` source and `$7`
/// the time. Run before the change's `status_events` row, whose previous one it reads.
pub(super) fn log_status_statement<DB: Dialect>(
    tenant: &str,
    id: &str,
    change: &super::shared::Change<'_>,
) -> Statement {
    let payload = status_payload::<DB>("$3", PREVIOUS_STATUS, "$4", "$5", "$6", "$7");
    let sql = log_status_sql::<DB>(
        &payload,
        "$7",
        "FROM messages m WHERE m.tenant_id = $1 AND m.id = $2",
    );
    Statement::new(sql.0)
        .bind(tenant)
        .bind(id)
        .bind(change.status.as_str())
        .bind(change.provider_status)
        .bind(change.error.and_then(|error| error.code.as_deref()))
        .bind(name_of(&change.source).as_str())
        .bind(change.now)
}
