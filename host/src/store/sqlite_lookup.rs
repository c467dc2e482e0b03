//! The SQLite store's hottest reads, run on the caller's thread: a tenant by id, the tenant of
//! an API key, a recipient's opt-out and the owner of a status callback's message.
//!
//! Why: sqlx runs each SQLite connection on a thread of its own, so a read through its pool was a
//! hand-off there and back, and sqlx then checks the connection back in with a task of its own
//! and another round trip. On the two-core machine of `BENCHMARKS.md` those thread wake-ups were
//! the largest single cost of a send and a callback, while each of these reads is one step down an
//! index: a few microseconds of SQLite's own work. Here it runs where it is asked, on a
//! connection of [`rusqlite`] (the same bundled SQLite as sqlx's), and the task goes on.
//!
//! - **Only point reads by key** come here: their work is bounded by an index lookup, so the
//!   thread is held no longer than a lock would be.
//! - **The same snapshot rules as the reader pool**: each read is one statement outside any
//!   transaction, which sees everything committed before it began (WAL).
//! - **Connections** are opened on first use, read-only (`query_only`), and kept: at most one per
//!   thread that reads at the same moment, since a read never yields.
//! - **A lock is not waited for** on the caller's thread. A reader in WAL mode does not wait for
//!   the writer; should SQLite still answer busy (or anything else fail), the caller falls back
//!   to the reader pool for that read and the connection is dropped.
//! - **The same SQL as the pool's reads** (`tenants.rs`, `records.rs`): SQLite takes their `$1`,
//!   `$2`, ... as named parameters numbered in the order they first appear, which is their
//!   numeric order in each of these statements, so they are bound here by position.
//! - **An in-memory database** (`sqlite::memory:`) is one connection's own: it has no lane and
//!   every read goes through the pool.

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use rusqlite::{Connection, OpenFlags, OptionalExtension as _, Row};

use super::model::Tenant;
use super::records::OPTED_OUT;
use super::shared::tenant;
use super::tenants::{MESSAGE_OWNER, TENANT_BY_ID, TENANT_FOR_KEY};
use crate::domain::{TenantId, TenantStatus};

/// How long a lookup lets SQLite retry a busy lock before the pool takes the read over.
const BUSY: Duration = Duration::from_millis(20);

/// Lookups on the database file `path` (see the module's documentation).
#[derive(Debug)]
pub(super) struct Lookups {
    path: PathBuf,
    idle: Mutex<Vec<Connection>>,
    /// Set once a connection could not be opened (a read-only file, say): every read then goes
    /// through the pool, without trying to open one again for each.
    off: AtomicBool,
}

/// Why a lookup did not answer: the caller reads through the pool instead.
#[derive(Debug)]
pub(super) struct Declined;

type Answer<T> = std::result::Result<T, Declined>;

impl Lookups {
    /// Lookups on the file `path`.
    pub(super) fn new(path: &Path) -> Self {
        Self {
            path: path.to_owned(),
            idle: Mutex::new(Vec::new()),
            off: AtomicBool::new(false),
        }
    }

    /// Tenant `id`.
    pub(super) fn tenant(&self, id: &str) -> Answer<Option<Tenant>> {
        self.tenant_where(TENANT_BY_ID, id)
    }

    /// The tenant of the unrevoked API key whose hash is `key_hash`.
    pub(super) fn tenant_for_key(&self, key_hash: &str) -> Answer<Option<Tenant>> {
        self.tenant_where(TENANT_FOR_KEY, key_hash)
    }

    /// The tenant `sql` finds by its one parameter `key`.
    fn tenant_where(&self, sql: &str, key: &str) -> Answer<Option<Tenant>> {
        self.read(|conn| {
            conn.prepare_cached(sql)?
                .query_row([key], tenant_row)
                .optional()
        })?
        .map(checked)
        .transpose()
    }

    /// Whether `phone` is opted out of `category` (or of `all`) for `tenant`.
    pub(super) fn is_opted_out(&self, tenant: &str, phone: &str, category: &str) -> Answer<bool> {
        self.read(|conn| {
            conn.prepare_cached(OPTED_OUT)?
                .exists([tenant, phone, category])
        })
    }

    /// The tenant and provider of message `id`.
    pub(super) fn message_owner(&self, id: &str) -> Answer<Option<(TenantId, String)>> {
        let row = self.read(|conn| {
            conn.prepare_cached(MESSAGE_OWNER)?
                .query_row([id], |row| Ok((row.get::<_, String>(0)?, row.get(1)?)))
                .optional()
        })?;
        row.map(|(owner, provider)| Ok((tenant(owner).map_err(|_| Declined)?, provider)))
            .transpose()
    }

    /// Runs `read` on an idle connection (or a new one) and keeps the connection unless the read
    /// failed.
    fn read<T>(&self, read: impl FnOnce(&Connection) -> rusqlite::Result<T>) -> Answer<T> {
        if self.off.load(Ordering::Relaxed) {
            return Err(Declined);
        }
        let idle = self.idle.lock().ok().and_then(|mut idle| idle.pop());
        let conn = match idle {
            Some(conn) => conn,
            None => self.open().map_err(|error| {
                tracing::info!(%error, "SQLite lookups go through the reader pool: a connection of their own could not be opened");
                self.off.store(true, Ordering::Relaxed);
                Declined
            })?,
        };
        match read(&conn) {
            Ok(value) => {
                if let Ok(mut idle) = self.idle.lock() {
                    idle.push(conn);
                }
                Ok(value)
            }
            Err(error) => {
                tracing::debug!(%error, "a SQLite lookup failed; reading through the pool");
                Err(Declined)
            }
        }
    }

    fn open(&self) -> rusqlite::Result<Connection> {
        let conn = Connection::open_with_flags(
            &self.path,
            OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )?;
        conn.busy_timeout(BUSY)?;
        conn.pragma_update(None, "query_only", true)?;
        Ok(conn)
    }
}

/// A tenant row as read, its values not yet checked.
type TenantRow = (String, String, String, i64);

fn tenant_row(row: &Row<'_>) -> rusqlite::Result<TenantRow> {
    Ok((row.get(0)?, row.get(1)?, row.get(2)?, row.get(3)?))
}

/// The tenant of a row; a value the store cannot read is left to the pool's read to report.
fn checked((id, name, status, created_at): TenantRow) -> Answer<Tenant> {
    Ok(Tenant {
        id: tenant(id).map_err(|_| Declined)?,
        name,
        status: TenantStatus::parse(&status).ok_or(Declined)?,
        created_at,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{Store, StoreOptions};

    /// A migrated database file, with `acme` holding the key hash `h1`, and a writer on it.
    async fn database() -> (tempfile::TempDir, PathBuf, Store, Connection) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("lookups.db");
        let store = Store::connect(path.to_str().unwrap(), &StoreOptions::default())
            .await
            .unwrap();
        store.migrate().await.unwrap();
        let writer = Connection::open(&path).unwrap();
        writer
            .execute_batch(
                "INSERT INTO tenants (id, name, status, created_at) VALUES ('acme', 'Acme', 'active', 7);
                 INSERT INTO api_keys (id, tenant_id, prefix, key_hash, created_at)
                 VALUES ('key_1', 'acme', 'hk_1', 'h1', 8);",
            )
            .unwrap();
        (dir, path, store, writer)
    }

    /// Each lookup answers from the file as it is now, and agrees with the store's own read.
    #[tokio::test]
    async fn lookups_read_what_is_committed_now() {
        let (_dir, path, store, writer) = database().await;
        let lookups = Lookups::new(&path);

        let acme = lookups.tenant("acme").unwrap().expect("acme");
        assert_eq!((acme.id.as_str(), acme.name.as_str()), ("acme", "Acme"));
        assert_eq!(acme.status, TenantStatus::Active);
        assert_eq!(acme.created_at, 7);
        assert_eq!(
            store.get_tenant(&acme.id).await.unwrap(),
            Some(acme.clone())
        );
        assert!(lookups.tenant("nobody").unwrap().is_none());

        assert_eq!(lookups.tenant_for_key("h1").unwrap(), Some(acme.clone()));
        assert!(lookups.tenant_for_key("h2").unwrap().is_none());
        // A revocation counts from the next read on.
        writer
            .execute("UPDATE api_keys SET revoked_at = 9 WHERE id = 'key_1'", [])
            .unwrap();
        assert!(lookups.tenant_for_key("h1").unwrap().is_none());
        writer
            .execute(
                "UPDATE tenants SET status = 'suspended' WHERE id = 'acme'",
                [],
            )
            .unwrap();
        assert_eq!(
            lookups.tenant("acme").unwrap().unwrap().status,
            TenantStatus::Suspended
        );

        assert!(
            !lookups
                .is_opted_out("acme", "+14155550100", "marketing")
                .unwrap()
        );
        writer
            .execute(
                "INSERT INTO opt_outs (tenant_id, phone_number, category, created_at)
                 VALUES ('acme', '+14155550100', 'all', 1)",
                [],
            )
            .unwrap();
        assert!(
            lookups
                .is_opted_out("acme", "+14155550100", "marketing")
                .unwrap()
        );
        assert!(
            !lookups
                .is_opted_out("default", "+14155550100", "marketing")
                .unwrap()
        );

        assert!(lookups.message_owner("msg_none").unwrap().is_none());
        // One connection served every read, one at a time.
        assert_eq!(lookups.idle.lock().unwrap().len(), 1);
        // Lookups never write.
        let refused = lookups.read(|conn| conn.execute("DELETE FROM api_keys", []));
        assert!(refused.is_err());
        assert!(!lookups.off.load(Ordering::Relaxed));
    }

    /// A file that cannot be opened turns the lookups off: every read goes through the pool.
    #[tokio::test]
    async fn an_unopenable_file_sends_reads_to_the_pool() {
        let dir = tempfile::tempdir().unwrap();
        let lookups = Lookups::new(&dir.path().join("missing").join("x.db"));
        assert!(lookups.tenant("default").is_err());
        assert!(lookups.off.load(Ordering::Relaxed));
        assert!(lookups.is_opted_out("default", "+1", "all").is_err());
    }
}
