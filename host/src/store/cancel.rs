//! Canceling a message that is still waiting in the queue (`queued` or `scheduled`).
//!
//! The queue entry is deleted only while no claim holds it, in the same transaction as the move
//! to `canceled`. On PostgreSQL the `DELETE` waits for a claim that has the entry locked and then
//! sees its lease, so a claim and a cancel never both win; on SQLite the one writer connection
//! runs them one after the other.

use sqlx::{ColumnIndex, Decode, Executor, Pool, Type};

use super::Backend;
use super::Store;
use super::dialect::{Dialect, Queries, Value};
use super::error::Result;
use super::model::{EventSource, Message, MessageStatus, TenantId};
use super::shared::Change;

/// What a cancel did.
#[derive(Debug, Clone, PartialEq)]
pub enum CancelOutcome {
    /// The message was waiting and is now `canceled`.
    Canceled(Message),
    /// The message was claimed for sending, or is past it: it is left as it is.
    NotCancelable(Message),
    /// The tenant has no such message.
    NotFound,
}

impl<DB: Dialect> Queries<DB>
where
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
    for<'a> &'a str: Value<'a, DB> + ColumnIndex<DB::Row>,
    for<'a> Option<&'a str>: Value<'a, DB>,
    String: for<'a> Decode<'a, DB> + Type<DB>,
    i32: for<'a> Value<'a, DB>,
    i64: for<'a> Value<'a, DB>,
    Option<i32>: for<'a> Value<'a, DB>,
    Option<i64>: for<'a> Value<'a, DB>,
{
    /// Deletes the message's unleased queue entry and moves it to `canceled`, in one
    /// transaction; leaves everything as it was when a claim holds the entry or there is none.
    async fn cancel_message(
        pool: &Pool<DB>,
        tenant: &str,
        id: &str,
        now: i64,
    ) -> Result<CancelOutcome> {
        let mut tx = pool.begin_with(DB::BEGIN).await?;
        let removed = sqlx::query(
            "DELETE FROM queue_entries
             WHERE tenant_id = $1 AND message_id = $2 AND lease_owner IS NULL
             RETURNING message_id",
        )
        .bind(tenant)
        .bind(id)
        .fetch_optional(&mut *tx)
        .await?;
        let Some(current) = Self::lock_message(&mut tx, tenant, id).await? else {
            return Ok(CancelOutcome::NotFound);
        };
        // A draft batch's message has no queue entry yet: it is withdrawn all the same, and the
        // batch's send leaves it out.
        let queued = removed.is_some() || current.status == MessageStatus::Draft;
        if !queued || !current.status.is_waiting() {
            tx.rollback().await?;
            return Ok(CancelOutcome::NotCancelable(current));
        }
        let change = Change {
            status: MessageStatus::Canceled,
            provider_status: None,
            error: None,
            source: EventSource::Api,
            now,
        };
        let message = Self::transition(&mut tx, tenant, id, &change).await?;
        Self::release_holds(&mut tx, tenant, id, now).await?;
        tx.commit().await?;
        Ok(CancelOutcome::Canceled(message))
    }
}

impl Store {
    /// Cancels message `id` of `tenant` if it is still waiting (`draft`, `queued` or `scheduled`)
    /// and no dispatcher has claimed it: its queue entry is removed and it moves to `canceled`, with an
    /// event, atomically.
    pub async fn cancel_message(
        &self,
        tenant: &TenantId,
        id: &str,
        now: i64,
    ) -> Result<CancelOutcome> {
        let result = match &self.inner.backend {
            Backend::Sqlite { writer, .. } => {
                Queries::cancel_message(writer, tenant.as_str(), id, now).await
            }
            Backend::Postgres(pool) => {
                Queries::cancel_message(pool, tenant.as_str(), id, now).await
            }
        };
        self.events_written();
        result
    }
}
