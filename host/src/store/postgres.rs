//! The PostgreSQL backend, for several `herald` processes sharing one queue: claims take rows with
//! `FOR UPDATE SKIP LOCKED` so concurrent claimers never wait on or take each other's entries,
//! and after commits that queue messages or write events the [`publisher`] sends `NOTIFY
//! herald_queue` / `herald_events` so that idle dispatchers and event streams in every process
//! wake up.
//!
//! The notifications are sent after the commit, by one task, never inside the writing
//! transaction: PostgreSQL serialises the commits of every transaction that notified (each
//! holds a database-wide lock from its pre-commit to its end, WAL flush included), which held
//! single sends to about 800 a second here; a task that coalesces the wake-ups of every commit
//! that happened while its last `pg_notify` ran costs one small query per burst instead.
//!
//! Its [`Dialect`]: message rows read to be written are locked `FOR UPDATE`, so a status report
//! and a dispatcher outcome for one message take turns.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use sqlx::postgres::{PgListener, PgPoolOptions};
use sqlx::{PgPool, Postgres};
use tokio::sync::Notify;
use tokio::task::JoinHandle;

use super::StoreOptions;
use super::dialect::Dialect;
use super::error::Result;
use super::profiles::Profiles;

/// The channel enqueues notify and dispatchers listen on (also named in [`Dialect::NOTIFY`]).
const CHANNEL: &str = "herald_queue";
/// The channel notified after commits that wrote events, waking the event streams of every
/// process.
const EVENTS_CHANNEL: &str = "herald_events";

/// The channel notified after commits that changed a tenant's settings or budgets, emptying the
/// profile cache of every process (`profiles.rs`).
const PROFILES_CHANNEL: &str = "herald_profiles";

/// The wake-ups this process owes the others, sent by [`publisher`].
#[derive(Debug, Default)]
pub(super) struct Pending {
    queue: AtomicBool,
    events: AtomicBool,
    profiles: AtomicBool,
    ready: Notify,
}

impl Pending {
    /// A commit queued messages: wake the dispatchers of every process.
    pub(super) fn queue(&self) {
        self.queue.store(true, Ordering::Release);
        self.ready.notify_one();
    }

    /// A commit wrote events: wake the event streams of every process.
    pub(super) fn events(&self) {
        self.events.store(true, Ordering::Release);
        self.ready.notify_one();
    }

    /// A commit changed a tenant's settings or budgets: every process forgets its cached ones.
    pub(super) fn profiles(&self) {
        self.profiles.store(true, Ordering::Release);
        self.ready.notify_one();
    }
}

/// Sends the notifications `pending` asks for, one `pg_notify` query at a time, each covering
/// every commit since the last (a process that dies between a commit and its notification
/// leaves the others to find the work at their next poll).
pub(super) fn publisher(pool: PgPool, pending: Arc<Pending>) -> JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            pending.ready.notified().await;
            let owed = [
                (&pending.queue, CHANNEL),
                (&pending.events, EVENTS_CHANNEL),
                (&pending.profiles, PROFILES_CHANNEL),
            ];
            let notifies: Vec<String> = owed
                .into_iter()
                .filter(|(flag, _)| flag.swap(false, Ordering::AcqRel))
                .map(|(_, channel)| format!("pg_notify('{channel}', '')"))
                .collect();
            if notifies.is_empty() {
                continue;
            }
            let sql = sqlx::AssertSqlSafe(format!("SELECT {}", notifies.join(", ")));
            if let Err(error) = sqlx::query(sql).execute(&pool).await {
                if pool.is_closed() {
                    return;
                }
                tracing::warn!(%error, "notifying the other processes failed; they will poll");
            }
        }
    })
}

/// Opens the connection pool.
pub(super) async fn connect(url: &str, options: &StoreOptions) -> Result<PgPool> {
    let pool = PgPoolOptions::new()
        .max_connections(options.max_connections.max(1))
        .acquire_timeout(options.acquire_timeout)
        .connect(url)
        .await?;
    Ok(pool)
}

/// Applies the embedded PostgreSQL migrations (sqlx holds an advisory lock, so processes starting
/// together do not race).
pub(super) async fn migrate(pool: &PgPool) -> Result<()> {
    sqlx::migrate!("../migrations/postgres").run(pool).await?;
    Ok(())
}

/// Listens on the queue, event and profile channels on a connection of its own and wakes `wake`
/// for each queue notification, `events` for each event-log one, and empties `profiles` for
/// each profile one.
pub(super) async fn listen(
    url: &str,
    wake: Arc<Notify>,
    events: Arc<Notify>,
    profiles: Arc<Profiles>,
) -> Result<JoinHandle<()>> {
    let mut listener = PgListener::connect(url).await?;
    listener
        .listen_all([CHANNEL, EVENTS_CHANNEL, PROFILES_CHANNEL])
        .await?;
    Ok(tokio::spawn(async move {
        loop {
            match listener.try_recv().await {
                Ok(Some(notification)) if notification.channel() == EVENTS_CHANNEL => {
                    events.notify_one();
                }
                Ok(Some(notification)) if notification.channel() == PROFILES_CHANNEL => {
                    profiles.invalidate();
                }
                Ok(Some(_)) => wake.notify_one(),
                // `None` means the connection dropped and was re-established: notifications sent
                // in between are lost, so wake the dispatchers to look for work anyway, and
                // forget the profiles that may have changed.
                Ok(None) => {
                    wake.notify_one();
                    events.notify_one();
                    profiles.invalidate();
                }
                Err(error) => {
                    tracing::warn!(%error, "queue listener lost its connection; retrying");
                    wake.notify_one();
                    events.notify_one();
                    profiles.invalidate();
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }
        }
    }))
}

impl Dialect for Postgres {
    const BEGIN: &'static str = "BEGIN";
    const LOCK_ROWS: &'static str = " FOR UPDATE";
    // Expired leases first (entries a dead process held), oldest expiry first; the rest of the
    // batch from unleased entries by claim priority (migration 0009: single sends before bulk
    // rows, marketing last in each), then due time, so a backlog never delays a takeover and a
    // batch never delays a single send. Each step walks its own partial index range and locks
    // only what is left to take. MATERIALIZED keeps each locked selection a single evaluation,
    // whatever the planner prefers. The update finds its rows through the primary key with an
    // array of the picked ids: joined to `picked`, a generic plan made on statistics (where
    // `LIMIT $4` is guessed at a tenth of the table) hashed the whole queue for every claim
    // (measured: 9 of a claim's 10 ms on a 50,000-entry queue, and one process dispatched
    // 830/s instead of 1,410/s once the table was analysed).
    const CLAIM: &'static str = "
        WITH expired AS MATERIALIZED (
            SELECT message_id FROM queue_entries
            WHERE lease_until IS NOT NULL AND lease_until <= $3
              AND tenant_id NOT IN (SELECT id FROM tenants WHERE status = 'suspended')
            ORDER BY lease_until
            LIMIT $4
            FOR UPDATE SKIP LOCKED
        ), p0 AS MATERIALIZED (
            SELECT message_id FROM queue_entries
            WHERE priority = 0 AND lease_until IS NULL AND due_at <= $3
              AND tenant_id NOT IN (SELECT id FROM tenants WHERE status = 'suspended')
            ORDER BY due_at
            LIMIT GREATEST($4 - (SELECT COUNT(*) FROM expired), 0)
            FOR UPDATE SKIP LOCKED
        ), p1 AS MATERIALIZED (
            SELECT message_id FROM queue_entries
            WHERE priority = 1 AND lease_until IS NULL AND due_at <= $3
              AND tenant_id NOT IN (SELECT id FROM tenants WHERE status = 'suspended')
            ORDER BY due_at
            LIMIT GREATEST($4 - (SELECT COUNT(*) FROM expired) - (SELECT COUNT(*) FROM p0), 0)
            FOR UPDATE SKIP LOCKED
        ), p2 AS MATERIALIZED (
            SELECT message_id FROM queue_entries
            WHERE priority = 2 AND lease_until IS NULL AND due_at <= $3
              AND tenant_id NOT IN (SELECT id FROM tenants WHERE status = 'suspended')
            ORDER BY due_at
            LIMIT GREATEST($4 - (SELECT COUNT(*) FROM expired) - (SELECT COUNT(*) FROM p0)
                - (SELECT COUNT(*) FROM p1), 0)
            FOR UPDATE SKIP LOCKED
        ), p3 AS MATERIALIZED (
            SELECT message_id FROM queue_entries
            WHERE priority = 3 AND lease_until IS NULL AND due_at <= $3
              AND tenant_id NOT IN (SELECT id FROM tenants WHERE status = 'suspended')
            ORDER BY due_at
            LIMIT GREATEST($4 - (SELECT COUNT(*) FROM expired) - (SELECT COUNT(*) FROM p0)
                - (SELECT COUNT(*) FROM p1) - (SELECT COUNT(*) FROM p2), 0)
            FOR UPDATE SKIP LOCKED
        ), picked AS (
            SELECT message_id FROM expired
            UNION ALL SELECT message_id FROM p0
            UNION ALL SELECT message_id FROM p1
            UNION ALL SELECT message_id FROM p2
            UNION ALL SELECT message_id FROM p3
        )
        UPDATE queue_entries AS q
        SET lease_owner = $1, lease_until = $2, due_at = $2
        WHERE q.message_id = ANY (ARRAY(SELECT message_id FROM picked))
        RETURNING q.message_id, q.tenant_id";
    const JSON_OBJECT: &'static str = "json_build_object(";
    const JSON_END: &'static str = ")::text";
    const JSON_ROWS: &'static str = "jsonb_array_elements(CAST($1 AS jsonb)) AS rows(value)";

    fn run_script<'c>(
        conn: &'c mut sqlx::postgres::PgConnection,
        script: &'c super::script::Script,
    ) -> futures_util::future::BoxFuture<'c, Result<super::script::Rows<sqlx::postgres::PgRow>>>
    {
        Box::pin(script.run_postgres(conn))
    }
}
