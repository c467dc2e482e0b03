//! The SQLite backend: one database file in WAL mode, written through a single connection so that
//! writers queue in the pool instead of spinning on `SQLITE_BUSY`, and read through a small pool
//! that WAL lets run alongside the writer.
//!
//! Its [`Dialect`]: a write transaction takes the write lock at `BEGIN IMMEDIATE`; there are no row
//! locks, and none are needed, since the one writer connection runs one transaction at a time;
//! and there is no other process to wake.

use std::str::FromStr;

use sqlx::sqlite::{
    SqliteConnectOptions, SqliteConnection, SqliteJournalMode, SqlitePool, SqlitePoolOptions,
    SqliteSynchronous,
};
use sqlx::{Connection as _, Sqlite};

use super::StoreOptions;
use super::dialect::Dialect;
use super::error::{Result, StoreError};
use super::sqlite_lookup::Lookups;

/// Prepared statements the writer connection keeps (sqlx's default is 100).
const WRITER_STATEMENTS: usize = 512;

/// The writer (one connection), the reader pool, and the hot lookups when the database is a
/// file ([`Lookups`]).
pub(super) type Connected = (SqlitePool, SqlitePool, Option<Lookups>);

/// Opens the writer (one connection) and the reader pool on the database `url` names.
pub(super) async fn connect(url: &str, options: &StoreOptions) -> Result<Connected> {
    let file = if url.starts_with("sqlite:") {
        let options = SqliteConnectOptions::from_str(url)
            .map_err(|error| StoreError::Config(error.to_string()))?;
        // The embedded default creates its file on first start, unless the URL sets a mode.
        if url.contains("mode=") {
            options
        } else {
            options.create_if_missing(true)
        }
    } else {
        SqliteConnectOptions::new()
            .filename(url)
            .create_if_missing(true)
    };
    // NORMAL is durable against a crash of the process (WAL is synced at checkpoints); only a
    // power loss can roll back the last transactions.
    let file = file
        .journal_mode(SqliteJournalMode::Wal)
        .synchronous(SqliteSynchronous::Normal)
        .busy_timeout(options.busy_timeout)
        .foreign_keys(true);
    let writer = SqlitePoolOptions::new()
        .max_connections(1)
        .acquire_timeout(options.acquire_timeout)
        // A SQLite connection is a handle in this process, with no peer that could have hung
        // up: sqlx's ping before every acquire was a round trip to the connection's thread (two
        // thread wake-ups) that could find nothing. A broken handle fails its next statement.
        .test_before_acquire(false)
        .after_release(|conn, _| Box::pin(outside_transaction(conn)))
        // Every shape of the hot writes' scripts is a statement of its own, with and without
        // the group writer's savepoint head.
        //
        // Temporary storage in memory keeps each write's savepoint journal (the pages the write
        // changed, as they were) off the disk: with temporary files on disk SQLite spills a
        // savepoint journal past 64 KiB to a file, and a charged enqueue's pages passed that,
        // so the writer spent a fifth of its time in `pwrite` of journals it then discarded.
        // The writer's temporary data is bounded by one batch (measured: store-only enqueues
        // 8,752-8,841/s on disk, 10,898-10,904/s in memory).
        .connect_with(
            file.clone()
                .statement_cache_capacity(WRITER_STATEMENTS)
                .pragma("temp_store", "memory"),
        )
        .await?;
    // Readers connect on first use, after `migrate`: a connection opened before a migration
    // that rebuilds a table or adds a column keeps the old schema until its next statement,
    // which SQLite then recompiles to more columns than sqlx read when it prepared it.
    //
    // A reader is not pinged before it is lent (see the writer), and is not checked for a
    // transaction left open when it comes back: a read transaction cannot fail its `COMMIT` the
    // way a write's can ([`outside_transaction`]), and one dropped unfinished is rolled back by
    // sqlx's queued `ROLLBACK`, which the connection's thread runs before the next borrower's
    // first statement. sqlx still pings every connection it takes back (in a task of its own).
    let reader = SqlitePoolOptions::new()
        .max_connections(options.max_connections.max(1))
        .acquire_timeout(options.acquire_timeout)
        .test_before_acquire(false)
        .connect_lazy_with(file.clone());
    let in_memory = url.contains(":memory:") || url.contains("mode=memory");
    let lookups = (!in_memory).then(|| Lookups::new(file.get_filename()));
    Ok((writer, reader, lookups))
}

/// Lets a connection go back to its pool only outside any transaction; otherwise the pool
/// closes it and opens a fresh one.
///
/// Why: when a `COMMIT` fails with `SQLITE_FULL` (the WAL cannot grow on a full disk), SQLite
/// has already rolled the transaction back, but sqlx still counts it as open. The `ROLLBACK`
/// that dropping the `Transaction` queues then fails ("no transaction is active") and sqlx
/// keeps counting, so every later `begin_with("BEGIN IMMEDIATE")` on that connection failed
/// with "attempted to call begin_with at non-zero transaction depth" until a restart. The
/// ping runs after that queued `ROLLBACK` (the connection's worker takes commands in order),
/// so the count read after it is final.
async fn outside_transaction(
    conn: &mut SqliteConnection,
) -> std::result::Result<bool, sqlx::Error> {
    conn.ping().await?;
    let settled = !conn.is_in_transaction();
    if !settled {
        tracing::warn!("a SQLite connection was left inside a failed transaction; replacing it");
    }
    Ok(settled)
}

/// Applies the embedded SQLite migrations.
pub(super) async fn migrate(writer: &SqlitePool) -> Result<()> {
    sqlx::migrate!("../migrations/sqlite").run(writer).await?;
    Ok(())
}

impl Dialect for Sqlite {
    const BEGIN: &'static str = "BEGIN IMMEDIATE";
    const LOCK_ROWS: &'static str = "";
    // Expired leases first, oldest expiry first; then unleased entries by claim priority
    // (migration 0009: single sends before bulk rows, marketing last in each) and due time. Each
    // branch walks its own partial index range and takes at most `$4`; the one writer
    // connection makes the claim atomic.
    const CLAIM: &'static str = "
        UPDATE queue_entries
        SET lease_owner = $1, lease_until = $2, due_at = $2
        WHERE message_id IN (
            SELECT message_id FROM (
                SELECT * FROM (
                    SELECT message_id, -1 AS pass, lease_until AS at FROM queue_entries
                    WHERE lease_until IS NOT NULL AND lease_until <= $3
                      AND tenant_id NOT IN (SELECT id FROM tenants WHERE status = 'suspended')
                    ORDER BY lease_until
                    LIMIT $4
                )
                UNION ALL
                SELECT * FROM (
                    SELECT message_id, 0 AS pass, due_at AS at FROM queue_entries
                    WHERE priority = 0 AND lease_until IS NULL AND due_at <= $3
                      AND tenant_id NOT IN (SELECT id FROM tenants WHERE status = 'suspended')
                    ORDER BY due_at
                    LIMIT $4
                )
                UNION ALL
                SELECT * FROM (
                    SELECT message_id, 1 AS pass, due_at AS at FROM queue_entries
                    WHERE priority = 1 AND lease_until IS NULL AND due_at <= $3
                      AND tenant_id NOT IN (SELECT id FROM tenants WHERE status = 'suspended')
                    ORDER BY due_at
                    LIMIT $4
                )
                UNION ALL
                SELECT * FROM (
                    SELECT message_id, 2 AS pass, due_at AS at FROM queue_entries
                    WHERE priority = 2 AND lease_until IS NULL AND due_at <= $3
                      AND tenant_id NOT IN (SELECT id FROM tenants WHERE status = 'suspended')
                    ORDER BY due_at
                    LIMIT $4
                )
                UNION ALL
                SELECT * FROM (
                    SELECT message_id, 3 AS pass, due_at AS at FROM queue_entries
                    WHERE priority = 3 AND lease_until IS NULL AND due_at <= $3
                      AND tenant_id NOT IN (SELECT id FROM tenants WHERE status = 'suspended')
                    ORDER BY due_at
                    LIMIT $4
                )
            )
            ORDER BY pass, at
            LIMIT $4
        )
        RETURNING message_id, tenant_id";
    const JSON_OBJECT: &'static str = "json_object(";
    const JSON_END: &'static str = ")";
    const JSON_ROWS: &'static str = "json_each($1)";

    fn run_script<'c>(
        conn: &'c mut SqliteConnection,
        script: &'c super::script::Script,
    ) -> futures_util::future::BoxFuture<'c, Result<super::script::Rows<sqlx::sqlite::SqliteRow>>>
    {
        Box::pin(script.run_sqlite(conn))
    }
}
