//! What the reconciler needs from storage: the messages due to be asked about, an optimistic
//! claim of one ask (so two processes sharing a database do not both ask), and the mark that
//! stops the asking when the provider says it can never answer.
//!
//! A message is a candidate while it is `sent` or `unknown`, has a provider message id, is younger
//! than the maximum age, and has kept its status for at least `after_ms`. After each ask the next
//! one waits at least as long as the message had already waited (and at least `after_ms`), so the
//! asks about a message the carrier never reports on come at ages `a`, `2a`, `4a`, … and a
//! message costs a handful of lookups over its whole maximum age, not one per pass.

use sqlx::{ColumnIndex, Decode, Executor, Pool, Row as _, Type};

use super::dialect::{Dialect, Queries, Value};
use super::error::Result;
use super::model::{ReconcileCandidate, ReconcileQuery};
use super::shared::{status, tenant};

/// The candidates, at most `$4` per provider, the longest-waiting first. Binds `$1` now, `$2` the
/// oldest creation time still asked about and `$3` now minus `after_ms`. The status list is
/// written out, not bound, so that both backends can use the partial index of migration 0004.
const CANDIDATES: &str = "
    SELECT tenant_id, id, provider, provider_message_id, status, updated_at, reconciled_at
    FROM (
        SELECT tenant_id, id, provider, provider_message_id, status, updated_at, reconciled_at,
               ROW_NUMBER() OVER (
                   PARTITION BY provider ORDER BY COALESCE(reconciled_at, updated_at), id
               ) AS place
        FROM messages
        WHERE status IN ('sent', 'unknown')
          AND provider_message_id IS NOT NULL
          AND reconcile_error IS NULL
          AND created_at >= $2
          AND updated_at <= $3
          AND (reconciled_at IS NULL
               OR (reconciled_at <= $3 AND 2 * reconciled_at - updated_at <= $1))
    ) AS due
    WHERE place <= $4
    ORDER BY provider, place";

impl<DB: Dialect> Queries<DB>
where
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
    for<'a> &'a str: Value<'a, DB> + ColumnIndex<DB::Row>,
    for<'a> Option<&'a str>: Value<'a, DB>,
    String: for<'a> Decode<'a, DB> + Type<DB>,
    i64: for<'a> Value<'a, DB>,
    Option<i64>: for<'a> Value<'a, DB>,
{
    /// The messages due to be asked about, grouped by provider.
    pub(super) async fn reconcile_candidates(
        pool: &Pool<DB>,
        query: &ReconcileQuery,
    ) -> Result<Vec<ReconcileCandidate>> {
        let rows = sqlx::query(CANDIDATES)
            .bind(query.now)
            .bind(query.now.saturating_sub(query.max_age_ms))
            .bind(query.now.saturating_sub(query.after_ms))
            .bind(i64::from(query.per_provider))
            .fetch_all(pool)
            .await?;
        rows.iter()
            .map(|row| {
                Ok(ReconcileCandidate {
                    tenant_id: tenant(row.try_get("tenant_id")?)?,
                    id: row.try_get("id")?,
                    provider: row.try_get("provider")?,
                    provider_message_id: row.try_get("provider_message_id")?,
                    status: status(row.try_get("status")?)?,
                    updated_at: row.try_get("updated_at")?,
                    reconciled_at: row.try_get("reconciled_at")?,
                })
            })
            .collect()
    }

    /// Records that the reconciler asks about `candidate` now, unless another ask (in this or
    /// another process) got there first or its status moved; returns whether this one may ask.
    pub(super) async fn claim_reconcile(
        pool: &Pool<DB>,
        candidate: &ReconcileCandidate,
        now: i64,
    ) -> Result<bool> {
        // -1 stands for "never asked": times are never negative.
        let claimed = sqlx::query(
            "UPDATE messages SET reconciled_at = $3
             WHERE tenant_id = $1 AND id = $2 AND COALESCE(reconciled_at, -1) = $4
               AND status IN ('sent', 'unknown')
             RETURNING id",
        )
        .bind(candidate.tenant_id.as_str())
        .bind(candidate.id.as_str())
        .bind(now)
        .bind(candidate.reconciled_at.unwrap_or(-1))
        .fetch_optional(pool)
        .await?;
        Ok(claimed.is_some())
    }

    /// Stops asking about a message: its provider said it can never report it, and why.
    pub(super) async fn stop_reconciling(
        pool: &Pool<DB>,
        tenant: &str,
        id: &str,
        reason: &str,
    ) -> Result<()> {
        sqlx::query("UPDATE messages SET reconcile_error = $3 WHERE tenant_id = $1 AND id = $2")
            .bind(tenant)
            .bind(id)
            .bind(reason)
            .execute(pool)
            .await?;
        Ok(())
    }
}
