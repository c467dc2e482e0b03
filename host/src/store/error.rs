//! The store's one error type, with database errors mapped to what they mean for a caller.

/// A store operation's result.
pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// Why a store operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The idempotency key was already used by a request with a different hash.
    #[error("idempotency key {key:?} was already used for a different request")]
    IdempotencyConflict {
        /// The reused key.
        key: String,
    },
    /// A hard-capped budget has no room for the message's estimate in this period; nothing was
    /// stored.
    #[error("budget {budget:?} has no room for this message")]
    BudgetExceeded {
        /// The budget's name.
        budget: String,
    },
    /// A row with the same unique key exists (a template name, an id, ...).
    #[error("conflict: {0}")]
    Conflict(String),
    /// The row refers to a row that does not exist, usually an unknown tenant.
    #[error("missing reference: {0}")]
    MissingReference(String),
    /// A pagination cursor that this store did not produce.
    #[error("invalid pagination cursor")]
    InvalidCursor,
    /// A stored value could not be read back (an unknown status name, a negative count, ...).
    #[error("corrupt stored value: {0}")]
    Corrupt(String),
    /// The database URL or connect options cannot be used.
    #[error("invalid store configuration: {0}")]
    Config(String),
    /// Applying the embedded schema migrations failed.
    #[error("schema migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// The database cannot be reached or cannot write right now: no connection within the
    /// acquire timeout, a refused or lost connection, a server shutting down, a full disk, a
    /// busy lock or an I/O error. Nothing was changed; the same call may succeed later.
    #[error("storage unavailable: {0}")]
    Unavailable(#[source] sqlx::Error),
    /// Any other database failure: a fault in Herald or its schema rather than the database
    /// being out of reach.
    #[error("database error: {0}")]
    Database(#[source] sqlx::Error),
}

impl StoreError {
    /// Whether the database is out of reach or out of space rather than Herald at fault: such
    /// an error is answered `503 storage_unavailable` and is worth retrying.
    #[must_use]
    pub fn is_unavailable(&self) -> bool {
        matches!(self, Self::Unavailable(_))
    }

    /// Whether the database refused the query because a table it names does not exist, as
    /// before the migrations have run: SQLSTATE `42P01` on PostgreSQL, "no such table" on
    /// SQLite (whose error code for it is the generic `SQLITE_ERROR`).
    #[must_use]
    pub fn is_undefined_table(&self) -> bool {
        match self {
            Self::Database(sqlx::Error::Database(db)) => {
                db.code().as_deref() == Some("42P01") || db.message().starts_with("no such table")
            }
            _ => false,
        }
    }
}

/// Whether `error` means the database is unreachable, shutting down, full or busy — a state
/// that passes — rather than a fault in a query.
fn is_unavailable(error: &sqlx::Error) -> bool {
    match error {
        sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed => true,
        sqlx::Error::Database(db) => {
            let Some(code) = db.code() else {
                return false;
            };
            if db.try_downcast_ref::<sqlx::sqlite::SqliteError>().is_some() {
                // SQLite reports extended codes; the primary code is the low byte.
                code.parse::<i32>()
                    .is_ok_and(|code| SQLITE_UNAVAILABLE.contains(&(code & 0xff)))
            } else {
                POSTGRES_UNAVAILABLE
                    .iter()
                    .any(|prefix| code.starts_with(prefix))
            }
        }
        _ => false,
    }
}

/// SQLite primary result codes that mean "not now": BUSY (5), LOCKED (6), IOERR (10), FULL
/// (13), CANTOPEN (14).
const SQLITE_UNAVAILABLE: [i32; 5] = [5, 6, 10, 13, 14];

/// PostgreSQL SQLSTATEs (or classes) that mean "not now": connection exceptions (08),
/// insufficient resources (53: disk full, out of memory, too many connections), the server
/// shutting down or starting up (57P01–57P03) and system errors (58: I/O).
const POSTGRES_UNAVAILABLE: [&str; 6] = ["08", "53", "57P01", "57P02", "57P03", "58"];

impl From<sqlx::Error> for StoreError {
    fn from(error: sqlx::Error) -> Self {
        let meaning = match &error {
            sqlx::Error::Database(db) if db.is_unique_violation() => {
                Some(Self::Conflict(db.message().to_owned()))
            }
            sqlx::Error::Database(db) if db.is_foreign_key_violation() => {
                Some(Self::MissingReference(db.message().to_owned()))
            }
            sqlx::Error::ColumnDecode { .. } | sqlx::Error::ColumnNotFound(_) => {
                Some(Self::Corrupt(error.to_string()))
            }
            _ => None,
        };
        meaning.unwrap_or_else(|| {
            if is_unavailable(&error) {
                Self::Unavailable(error)
            } else {
                Self::Database(error)
            }
        })
    }
}
