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
    /// Any other database failure (connection lost, timeout, ...); usually worth retrying.
    #[error("database error: {0}")]
    Database(#[source] sqlx::Error),
}

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
        meaning.unwrap_or(Self::Database(error))
    }
}
