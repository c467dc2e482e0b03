//! An accepted attempt on PostgreSQL as **one statement** (when the provider's answer carries no
//! price): the lease's queue entry deleted, the message read under its row lock, the provider's
//! id and facts stored and the move to `sent` (where the message is not further along), with its
//! event log entry and history row, as `WITH` clauses. Without the lease the statement changes
//! nothing ([`LeaseOutcome::Lost`]). An answer with a price keeps the ledger's steps
//! (`Queries::complete_accepted`).

use sqlx::postgres::PgConnection;
use sqlx::{AssertSqlSafe, PgPool, Postgres, Row as _};

use super::dialect::Queries;
use super::error::Result;
use super::events::{PREVIOUS_STATUS, log_status_sql, status_payload};
use super::model::{Accepted, LeaseOutcome, LeaseRef, MessageStatus};
use super::shared::{db_int, statuses_before};

/// Binds `$1` tenant, `$2` message, `$3` lease token, `$4` provider, `$5` its message id, `$6`
/// now, `$7` segments, `$8` sender, `$9` provider status.
fn statement() -> &'static str {
    static STATEMENT: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    STATEMENT.get_or_init(build)
}

fn build() -> String {
    let movable = statuses_before(MessageStatus::Sent);
    let payload = status_payload::<Postgres>(
        "'sent'",
        PREVIOUS_STATUS,
        "$9",
        "NULL",
        "'dispatcher'",
        "$6",
    );
    let logged = log_status_sql::<Postgres>(&payload, "$6", "FROM moved m").0;
    format!(
        "WITH deleted AS (
             DELETE FROM queue_entries
             WHERE message_id = $2 AND tenant_id = $1 AND lease_owner = $3
             RETURNING message_id
         ), current AS MATERIALIZED (
             SELECT m.id, m.status FROM messages m
             WHERE m.tenant_id = $1 AND m.id IN (SELECT message_id FROM deleted)
             FOR UPDATE
         ), updated AS (
             UPDATE messages m
             SET provider = $4, provider_message_id = $5, updated_at = $6,
                 provider_segments = COALESCE($7, m.provider_segments),
                 sender = COALESCE(m.sender, $8),
                 status = CASE WHEN c.status IN ({movable}) THEN 'sent' ELSE m.status END,
                 error_code = CASE WHEN c.status IN ({movable}) THEN NULL ELSE m.error_code END,
                 error_message = CASE WHEN c.status IN ({movable}) THEN NULL
                     ELSE m.error_message END
             FROM current c
             WHERE m.id = c.id
             RETURNING m.*, c.status AS was
         ), moved AS (
             SELECT * FROM updated WHERE was IN ({movable})
         ), logged AS (
             {logged}
         ), history AS (
             INSERT INTO status_events (tenant_id, message_id, status, provider_status,
                 source, occurred_at)
             SELECT tenant_id, id, 'sent', $9, 'dispatcher', $6 FROM moved
         )
         SELECT (SELECT count(*) FROM updated) AS applied"
    )
}

impl Queries<Postgres> {
    /// Records that the provider accepted the attempt; see the module's documentation.
    pub(super) async fn complete_accepted_one(
        pool: &PgPool,
        lease: LeaseRef<'_>,
        accepted: &Accepted,
        now: i64,
    ) -> Result<LeaseOutcome> {
        if accepted.price.is_some() {
            return Self::complete_accepted(pool, lease, accepted, now).await;
        }
        let mut conn = pool.acquire().await?;
        Self::complete_accepted_unpriced(&mut conn, lease, accepted, now).await
    }

    /// [`complete_accepted_one`](Self::complete_accepted_one)'s statement for an answer
    /// without a price, on `conn` (alone, or in a transaction of outcomes).
    pub(super) async fn complete_accepted_unpriced(
        conn: &mut PgConnection,
        lease: LeaseRef<'_>,
        accepted: &Accepted,
        now: i64,
    ) -> Result<LeaseOutcome> {
        let row = sqlx::query(AssertSqlSafe(statement()))
            .bind(lease.tenant_id.as_str())
            .bind(lease.message_id)
            .bind(lease.owner)
            .bind(accepted.provider.as_str())
            .bind(accepted.provider_message_id.as_str())
            .bind(now)
            .bind(accepted.segments.map(db_int))
            .bind(accepted.sender.as_deref())
            .bind(accepted.provider_status.as_deref())
            .fetch_one(&mut *conn)
            .await?;
        let applied: i64 = row.try_get("applied")?;
        Ok(if applied > 0 {
            LeaseOutcome::Applied
        } else {
            LeaseOutcome::Lost
        })
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn sent_advances_only_from_the_statuses_before_it() {
        let sql = super::build();
        assert!(
            sql.contains("IN ('draft', 'queued', 'scheduled', 'sending')"),
            "{sql}"
        );
    }
}
