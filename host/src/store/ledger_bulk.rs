//! The ledger's steps for bulk sends: the rows of a batch sent right away are charged in the
//! transaction that writes their chunk, and a draft's messages in the transaction that queues
//! them. Each charge that a hard cap can refuse runs under its own savepoint, so one row past
//! the cap is taken out alone and the others go on.

use sqlx::{ColumnIndex, Decode, Executor, Row as _, Type};

use super::dialect::{Dialect, Queries, Value};
use super::error::{Result, StoreError};
use super::ledger::{BudgetAlert, Charge, log_alerts};

/// What sending a draft batch charges: the charge of each of its draft messages, and the
/// messages refused before any room was checked (a hard-capped budget cannot charge them).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DraftCharges {
    /// Message id and its charge.
    pub charges: Vec<(String, Charge)>,
    /// Message id and why it is refused.
    pub refused: Vec<(String, String)>,
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
    /// Charges the rows of a bulk chunk just inserted in `conn`'s transaction, in row order, each
    /// under its own savepoint: a row that a hard-capped budget has no room for is taken out
    /// again (its message row and event) and returned among the refused ids; `inserted` keeps
    /// the others.
    pub(super) async fn charge_rows(
        conn: &mut DB::Connection,
        tenant: &str,
        messages: &[super::model::NewMessage],
        inserted: &mut Vec<String>,
    ) -> Result<(Vec<String>, Vec<BudgetAlert>)> {
        let mut refused = Vec::new();
        let mut alerts = Vec::new();
        if messages.iter().all(|new| new.charge.is_none()) {
            return Ok((refused, alerts));
        }
        let kept: std::collections::HashSet<&str> = inserted.iter().map(String::as_str).collect();
        // Rows without a budget cannot be refused and fire no alert: their estimates are
        // written for the whole chunk at once.
        let unbudgeted: Vec<&super::model::NewMessage> = messages
            .iter()
            .filter(|new| kept.contains(new.id.as_str()))
            .filter(|new| new.charge.as_ref().is_some_and(|c| c.holds.is_empty()))
            .collect();
        Self::charge_unbudgeted(conn, tenant, &unbudgeted).await?;
        for new in messages {
            let Some(charge) = &new.charge else { continue };
            if !kept.contains(new.id.as_str()) || charge.holds.is_empty() {
                continue;
            }
            if !charge.holds.iter().any(|hold| hold.hard_cap) {
                // Nothing can refuse it: no savepoint needed.
                alerts.extend(Self::charge(conn, tenant, &new.id, charge, new.now).await?);
                continue;
            }
            sqlx::query("SAVEPOINT ledger_row")
                .execute(&mut *conn)
                .await?;
            match Self::charge(conn, tenant, &new.id, charge, new.now).await {
                Ok(fired) => alerts.extend(fired),
                Err(StoreError::BudgetExceeded { .. }) => {
                    sqlx::query("ROLLBACK TO SAVEPOINT ledger_row")
                        .execute(&mut *conn)
                        .await?;
                    // The row and its first events (history and log) go with it.
                    for table in [
                        "DELETE FROM status_events WHERE tenant_id = $1 AND message_id = $2",
                        "DELETE FROM events WHERE tenant_id = $1 AND message_id = $2",
                        "DELETE FROM messages WHERE tenant_id = $1 AND id = $2",
                    ] {
                        sqlx::query(table)
                            .bind(tenant)
                            .bind(new.id.as_str())
                            .execute(&mut *conn)
                            .await?;
                    }
                    refused.push(new.id.clone());
                }
                Err(e) => return Err(e),
            }
            sqlx::query("RELEASE SAVEPOINT ledger_row")
                .execute(&mut *conn)
                .await?;
        }
        inserted.retain(|id| !refused.contains(id));
        Ok((refused, alerts))
    }

    /// [`Queries::charge`] for many messages without budget holds, in two statements: their
    /// cost rows, and the ledger's `estimate` rows of those that have an estimate.
    async fn charge_unbudgeted(
        conn: &mut DB::Connection,
        tenant: &str,
        messages: &[&super::model::NewMessage],
    ) -> Result<()> {
        #[derive(serde::Serialize)]
        struct Row<'a>(
            &'a str,
            &'a str,
            Option<&'a str>,
            u32,
            Option<i64>,
            Option<&'a str>,
            Option<&'a str>,
            Option<&'a str>,
            i64,
        );
        let rows: Vec<Row<'_>> = messages
            .iter()
            .filter_map(|new| {
                let charge = new.charge.as_ref()?;
                Some(Row(
                    new.id.as_str(),
                    charge.provider.as_str(),
                    charge.country.as_deref(),
                    charge.segments,
                    charge.estimate.as_ref().map(|m| m.micros),
                    charge.estimate.as_ref().map(|m| m.currency.as_str()),
                    charge.source.as_deref(),
                    charge.reason.as_deref(),
                    new.now,
                ))
            })
            .collect();
        if rows.is_empty() {
            return Ok(());
        }
        let rows = serde_json::to_string(&rows).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "INSERT INTO message_costs (tenant_id, message_id, provider, country, segments,
                 estimate_micros, currency, estimate_source, reason, created_at)
             SELECT $2, value ->> 0, value ->> 1, value ->> 2, CAST(value ->> 3 AS INTEGER),
                 CAST(value ->> 4 AS BIGINT), value ->> 5, value ->> 6, value ->> 7,
                 CAST(value ->> 8 AS BIGINT)
             FROM {}",
            DB::JSON_ROWS
        )))
        .bind(rows.as_str())
        .bind(tenant)
        .execute(&mut *conn)
        .await?;
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "INSERT INTO ledger_entries (tenant_id, message_id, kind, micros, currency,
                 created_at)
             SELECT $2, value ->> 0, 'estimate', CAST(value ->> 4 AS BIGINT), value ->> 5,
                 CAST(value ->> 8 AS BIGINT)
             FROM {} WHERE value ->> 4 IS NOT NULL",
            DB::JSON_ROWS
        )))
        .bind(rows.as_str())
        .bind(tenant)
        .execute(&mut *conn)
        .await?;
        Ok(())
    }

    /// Charges the draft messages of a batch being sent, inside the send's transaction, each
    /// under its own savepoint. A message refused up front, or that a hard-capped budget has no
    /// room for, ends `failed` with `budget_exceeded` (and an event) instead of being queued.
    pub(super) async fn charge_drafts(
        conn: &mut DB::Connection,
        tenant: &str,
        drafts: &DraftCharges,
        now: i64,
    ) -> Result<()> {
        let mut alerts = Vec::new();
        for (id, charge) in &drafts.charges {
            // Only messages still waiting as drafts: one canceled meanwhile charges nothing.
            let status =
                sqlx::query("SELECT status FROM messages WHERE tenant_id = $1 AND id = $2")
                    .bind(tenant)
                    .bind(id.as_str())
                    .fetch_optional(&mut *conn)
                    .await?;
            let status: Option<String> = status.map(|row| row.try_get("status")).transpose()?;
            if status.as_deref() != Some("draft") {
                continue;
            }
            sqlx::query("SAVEPOINT ledger_draft")
                .execute(&mut *conn)
                .await?;
            match Self::charge(conn, tenant, id, charge, now).await {
                Ok(fired) => alerts.extend(fired),
                Err(StoreError::BudgetExceeded { budget }) => {
                    sqlx::query("ROLLBACK TO SAVEPOINT ledger_draft")
                        .execute(&mut *conn)
                        .await?;
                    let why = format!(
                        "budget `{budget}` has no room for this message's estimate in this period"
                    );
                    Self::refuse_draft(conn, tenant, id, &why, now).await?;
                }
                Err(e) => return Err(e),
            }
            sqlx::query("RELEASE SAVEPOINT ledger_draft")
                .execute(&mut *conn)
                .await?;
        }
        for (id, why) in &drafts.refused {
            Self::refuse_draft(conn, tenant, id, why, now).await?;
        }
        // Logged before the send commits: a rolled-back send could leave a line for an alert
        // that is not recorded, never the reverse.
        log_alerts(&alerts);
        Ok(())
    }

    /// Ends a draft message `failed` with `budget_exceeded`, with its event.
    async fn refuse_draft(
        conn: &mut DB::Connection,
        tenant: &str,
        id: &str,
        why: &str,
        now: i64,
    ) -> Result<()> {
        let refused = sqlx::query(
            "UPDATE messages SET status = 'failed', error_code = 'budget_exceeded',
                 error_message = $3, updated_at = $4
             WHERE tenant_id = $1 AND id = $2 AND status = 'draft'
             RETURNING id",
        )
        .bind(tenant)
        .bind(id)
        .bind(why)
        .bind(now)
        .fetch_optional(&mut *conn)
        .await?;
        if refused.is_some() {
            sqlx::query(
                "INSERT INTO status_events (tenant_id, message_id, status, error_code,
                     error_message, source, occurred_at)
                 VALUES ($1, $2, 'failed', 'budget_exceeded', $3, 'api', $4)",
            )
            .bind(tenant)
            .bind(id)
            .bind(why)
            .bind(now)
            .execute(&mut *conn)
            .await?;
        }
        Ok(())
    }

    /// Gives back the reservations of batch `batch`'s canceled messages, inside the cancel.
    pub(super) async fn release_batch_holds(
        conn: &mut DB::Connection,
        tenant: &str,
        batch: &str,
        now: i64,
    ) -> Result<()> {
        let held = sqlx::query(
            "SELECT DISTINCT h.message_id FROM budget_holds h
             JOIN messages m ON m.tenant_id = h.tenant_id AND m.id = h.message_id
             WHERE h.tenant_id = $1 AND m.batch_id = $2 AND m.status = 'canceled'
               AND h.state = 'held'",
        )
        .bind(tenant)
        .bind(batch)
        .fetch_all(&mut *conn)
        .await?;
        for row in held {
            let id: String = row.try_get("message_id")?;
            Self::release_holds(conn, tenant, &id, now).await?;
        }
        Ok(())
    }
}
