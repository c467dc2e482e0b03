//! Tenant-owned records besides messages: inbound messages (stored once per provider id, acted
//! on once per host-derived key) and
//! the opt-out list with its audit trail. Templates have their own file, `templates.rs`.

use sqlx::{ColumnIndex, Decode, Executor, Pool, Row as _, Type};

use super::dialect::{Dialect, Queries, Value};
use super::error::{Result, StoreError};
use super::model::{InboundMessage, OptOutAction, OptOutChange, OptOutEvent, OptOutMethod};
use super::shared::{category, name_of, tenant, word};

/// Parses a stored opt-out method.
pub(super) fn method(name: String) -> Result<OptOutMethod> {
    OptOutMethod::parse(&name).ok_or_else(|| StoreError::Corrupt(format!("method {name:?}")))
}

/// Whether a number is opted out of a category or of `all` (also read by the SQLite lookups,
/// `sqlite_lookup.rs`).
pub(super) const OPTED_OUT: &str = "SELECT 1 FROM opt_outs
     WHERE tenant_id = $1 AND phone_number = $2 AND category IN ($3, 'all')
     LIMIT 1";
impl<DB: Dialect> Queries<DB>
where
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
    for<'a> &'a str: Value<'a, DB> + ColumnIndex<DB::Row>,
    for<'a> Option<&'a str>: Value<'a, DB>,
    String: for<'a> Decode<'a, DB> + Type<DB>,
    i64: for<'a> Value<'a, DB>,
    bool: for<'a> Value<'a, DB>,
{
    pub(super) fn opt_out_event_from_row(row: &DB::Row) -> Result<OptOutEvent> {
        Ok(OptOutEvent {
            id: row.try_get("id")?,
            tenant_id: tenant(row.try_get("tenant_id")?)?,
            phone_number: row.try_get("phone_number")?,
            category: category(row.try_get("category")?)?,
            action: word(row.try_get("action")?)?,
            method: method(row.try_get("method")?)?,
            source_message_id: row.try_get("source_message_id")?,
            reason: row.try_get("reason")?,
            customer_id: row.try_get("customer_id")?,
            occurred_at: row.try_get("occurred_at")?,
        })
    }

    /// Stores an inbound message unless the provider already delivered it; returns whether it
    /// was stored.
    pub(super) async fn record_inbound(pool: &Pool<DB>, inbound: &InboundMessage) -> Result<bool> {
        let mut tx = pool.begin_with(DB::BEGIN).await?;
        let inserted = sqlx::query(
            "INSERT INTO inbound_messages (id, tenant_id, provider, provider_message_id,
                 from_number, to_number, body, keyword, received_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
             ON CONFLICT (tenant_id, provider, provider_message_id) DO NOTHING
             RETURNING id",
        )
        .bind(inbound.id.as_str())
        .bind(inbound.tenant_id.as_str())
        .bind(inbound.provider.as_str())
        .bind(inbound.provider_message_id.as_str())
        .bind(inbound.from_number.as_str())
        .bind(inbound.to_number.as_str())
        .bind(inbound.body.as_str())
        .bind(inbound.keyword.as_ref().map(name_of).as_deref())
        .bind(inbound.received_at)
        .fetch_optional(&mut *tx)
        .await?;
        if inserted.is_some() {
            Self::log_inbound(&mut tx, inbound).await?;
        }
        tx.commit().await?;
        Ok(inserted.is_some())
    }

    /// Claims the compliance action keyed `key` for inbound message `inbound_id`; returns whether
    /// this call claimed it (`false`: an earlier delivery of the same message already acted).
    pub(super) async fn claim_inbound_action(
        pool: &Pool<DB>,
        tenant: &str,
        key: &str,
        inbound_id: &str,
        now: i64,
    ) -> Result<bool> {
        let inserted = sqlx::query(
            "INSERT INTO inbound_actions (tenant_id, action_key, inbound_id, created_at)
             VALUES ($1, $2, $3, $4)
             ON CONFLICT (tenant_id, action_key) DO NOTHING
             RETURNING action_key",
        )
        .bind(tenant)
        .bind(key)
        .bind(inbound_id)
        .bind(now)
        .fetch_optional(pool)
        .await?;
        Ok(inserted.is_some())
    }

    async fn insert_opt_out_event(
        conn: &mut DB::Connection,
        change: &OptOutChange,
        action: OptOutAction,
    ) -> Result<()> {
        sqlx::query(
            "INSERT INTO opt_out_events (tenant_id, phone_number, category, action, method,
                 source_message_id, reason, customer_id, occurred_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        )
        .bind(change.tenant_id.as_str())
        .bind(change.phone_number.as_str())
        .bind(change.category.as_str())
        .bind(name_of(&action).as_str())
        .bind(change.method.as_str())
        .bind(change.source_message_id.as_deref())
        .bind(change.reason.as_deref())
        .bind(change.customer_id.as_deref())
        .bind(change.occurred_at)
        .execute(&mut *conn)
        .await?;
        Self::log_opt_out(conn, change, action).await
    }

    /// Adds an opt-out (and its audit event) unless it exists; returns whether it was added.
    pub(super) async fn opt_out(pool: &Pool<DB>, change: &OptOutChange) -> Result<bool> {
        let mut tx = pool.begin_with(DB::BEGIN).await?;
        let inserted = sqlx::query(
            "INSERT INTO opt_outs (tenant_id, phone_number, category, method, source_message_id,
                 reason, customer_id, created_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
             ON CONFLICT (tenant_id, phone_number, category) DO NOTHING
             RETURNING category",
        )
        .bind(change.tenant_id.as_str())
        .bind(change.phone_number.as_str())
        .bind(change.category.as_str())
        .bind(change.method.as_str())
        .bind(change.source_message_id.as_deref())
        .bind(change.reason.as_deref())
        .bind(change.customer_id.as_deref())
        .bind(change.occurred_at)
        .fetch_optional(&mut *tx)
        .await?;
        let added = inserted.is_some();
        if added {
            Self::insert_opt_out_event(&mut tx, change, OptOutAction::OptOut).await?;
        }
        tx.commit().await?;
        Ok(added)
    }

    /// Removes opt-outs (every category when the change's is `all`) and audits it; returns
    /// whether any was removed.
    pub(super) async fn opt_in(pool: &Pool<DB>, change: &OptOutChange) -> Result<bool> {
        let mut tx = pool.begin_with(DB::BEGIN).await?;
        let deleted = sqlx::query(
            "DELETE FROM opt_outs
             WHERE tenant_id = $1 AND phone_number = $2 AND (category = $3 OR $3 = 'all')
             RETURNING category",
        )
        .bind(change.tenant_id.as_str())
        .bind(change.phone_number.as_str())
        .bind(change.category.as_str())
        .fetch_all(&mut *tx)
        .await?;
        let removed = !deleted.is_empty();
        if removed {
            Self::insert_opt_out_event(&mut tx, change, OptOutAction::OptIn).await?;
        }
        tx.commit().await?;
        Ok(removed)
    }

    /// Returns whether the number is opted out of the category or of `all`.
    pub(super) async fn is_opted_out(
        pool: &Pool<DB>,
        tenant: &str,
        phone: &str,
        category: &str,
    ) -> Result<bool> {
        let row = sqlx::query(OPTED_OUT)
            .bind(tenant)
            .bind(phone)
            .bind(category)
            .fetch_optional(pool)
            .await?;
        Ok(row.is_some())
    }

    /// Reads a number's opt-out audit trail, oldest first.
    pub(super) async fn opt_out_events(
        pool: &Pool<DB>,
        tenant: &str,
        phone: &str,
    ) -> Result<Vec<OptOutEvent>> {
        let rows = sqlx::query(
            "SELECT * FROM opt_out_events WHERE tenant_id = $1 AND phone_number = $2
             ORDER BY occurred_at, id",
        )
        .bind(tenant)
        .bind(phone)
        .fetch_all(pool)
        .await?;
        rows.iter().map(Self::opt_out_event_from_row).collect()
    }
}
