//! The queue as the metrics see it at scrape time: how many entries it holds and since when
//! the oldest unclaimed entry has been due. Two cheap statements: a count over the queue (an
//! index-only scan: the queue holds only messages still to be attempted, not the history) and
//! the first unleased entry in due order, read off the `due_at` index.

use sqlx::{Executor, Pool, Row as _};

use super::dialect::{Dialect, Queries};
use super::error::Result;
use super::{Backend, Store};

/// The queue at one moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueueGauges {
    /// Entries in the queue: due, scheduled for later or leased by a dispatcher.
    pub depth: u64,
    /// When the earliest unclaimed entry is (or was) due, in UTC milliseconds; `None` when every
    /// entry is leased or the queue is empty.
    pub earliest_due_at: Option<i64>,
}

impl QueueGauges {
    /// How long the earliest unclaimed entry has been due at `now`, in milliseconds (0 when it
    /// is not due yet, or there is none).
    #[must_use]
    pub fn oldest_due_age_ms(&self, now: i64) -> u64 {
        self.earliest_due_at
            .map_or(0, |due| u64::try_from(now.saturating_sub(due)).unwrap_or(0))
    }
}

impl<DB: Dialect> Queries<DB>
where
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
    for<'a> &'a str: sqlx::ColumnIndex<DB::Row>,
    i64: for<'a> sqlx::Decode<'a, DB> + sqlx::Type<DB>,
    Option<i64>: for<'a> sqlx::Decode<'a, DB> + sqlx::Type<DB>,
{
    /// Reads [`QueueGauges`].
    pub(super) async fn queue_gauges(pool: &Pool<DB>) -> Result<QueueGauges> {
        let depth: i64 = sqlx::query("SELECT COUNT(*) AS depth FROM queue_entries")
            .fetch_one(pool)
            .await?
            .try_get("depth")?;
        // A leased entry's due_at is the end of its lease, not when it was due: left out.
        let earliest: Option<i64> = sqlx::query(
            "SELECT due_at FROM queue_entries WHERE lease_until IS NULL ORDER BY due_at LIMIT 1",
        )
        .fetch_optional(pool)
        .await?
        .map(|row| row.try_get("due_at"))
        .transpose()?;
        Ok(QueueGauges {
            depth: u64::try_from(depth).unwrap_or(0),
            earliest_due_at: earliest,
        })
    }
}

impl Store {
    /// The queue's depth and earliest unclaimed due time, for the metrics.
    pub async fn queue_gauges(&self) -> Result<QueueGauges> {
        match &self.inner.backend {
            Backend::Sqlite { reader, .. } => Queries::queue_gauges(reader).await,
            Backend::Postgres(pool) => Queries::queue_gauges(pool).await,
        }
    }
}
