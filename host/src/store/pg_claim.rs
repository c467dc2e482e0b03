//! The claim on PostgreSQL as **one statement**: the lease of the due entries
//! ([`Dialect::CLAIM`]'s selection), the messages' previous status read under their row locks (in
//! id order, as callbacks lock them one at a time), the move to `sending` with the attempt
//! counted, and its event log entries and history rows, as `WITH` clauses.
//!
//! An entry whose message a callback already moved past `sending` (while an attempt whose process
//! died held the lease), or that lost its message, is leased and not sent; a second statement
//! deletes such entries, which happens only after a crash. Were the process to die between the
//! two, their lease would expire and the next claim would find them again.

use std::time::Duration;

use sqlx::{AssertSqlSafe, PgPool, Postgres, Row as _};

use super::dialect::{Dialect, Queries};
use super::error::Result;
use super::events::{PREVIOUS_STATUS, log_status_sql, status_payload};
use super::ids::lease_token;
use super::model::{ClaimedJob, MessageStatus};

/// The statuses whose message an attempt may (still) send.
const SENDABLE: [MessageStatus; 4] = [
    MessageStatus::Draft,
    MessageStatus::Queued,
    MessageStatus::Scheduled,
    MessageStatus::Sending,
];

/// The statement; binds `$1` the lease token, `$2` the lease's end, `$3` now, `$4` the most
/// entries to take (as [`Dialect::CLAIM`]).
fn statement() -> &'static str {
    static STATEMENT: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    STATEMENT.get_or_init(build)
}

fn build() -> String {
    // The claim's selection, then its lease as a clause (a test checks the split).
    let (selection, lease) = Postgres::CLAIM
        .split_once("UPDATE queue_entries")
        .unwrap_or((Postgres::CLAIM, ""));
    let sendable = SENDABLE
        .iter()
        .map(|status| format!("'{}'", status.as_str()))
        .collect::<Vec<_>>()
        .join(", ");
    let payload = status_payload::<Postgres>(
        "'sending'",
        PREVIOUS_STATUS,
        "NULL",
        "NULL",
        "'dispatcher'",
        "$3",
    );
    let logged = log_status_sql::<Postgres>(&payload, "$3", "FROM updated m").0;
    format!(
        "{selection}, leased AS (
             UPDATE queue_entries{lease}
         ), previous AS MATERIALIZED (
             SELECT m.id, m.status FROM messages m
             WHERE m.id IN (SELECT message_id FROM leased)
             ORDER BY m.id
             FOR UPDATE OF m
         ), updated AS (
             UPDATE messages m
             SET attempts = m.attempts + 1, status = 'sending', updated_at = $3
             FROM previous p
             WHERE m.id = p.id AND p.status IN ({sendable})
             RETURNING m.*
         ), logged AS (
             {logged}
         ), history AS (
             INSERT INTO status_events (tenant_id, message_id, status, source, occurred_at)
             SELECT tenant_id, id, 'sending', 'dispatcher', $3 FROM updated
         )
         SELECT l.message_id AS leased_id, p.status AS was, u.*
         FROM leased l
         LEFT JOIN previous p ON p.id = l.message_id
         LEFT JOIN updated u ON u.id = l.message_id"
    )
}

impl Queries<Postgres> {
    /// Leases up to `limit` due entries to a claim by `worker` and moves their messages to
    /// `sending`, in one statement (see the module's documentation).
    pub(super) async fn claim_one(
        pool: &PgPool,
        worker: &str,
        now: i64,
        lease: Duration,
        limit: u32,
    ) -> Result<Vec<ClaimedJob>> {
        let owner = lease_token(worker);
        let until = now.saturating_add(i64::try_from(lease.as_millis()).unwrap_or(i64::MAX));
        let rows = sqlx::query(AssertSqlSafe(statement()))
            .bind(owner.as_str())
            .bind(until)
            .bind(now)
            .bind(i64::from(limit))
            .fetch_all(pool)
            .await?;
        let mut jobs = Vec::with_capacity(rows.len());
        let mut gone = Vec::new();
        for row in &rows {
            let leased: String = row.try_get("leased_id")?;
            let updated: Option<String> = row.try_get("id")?;
            if updated.is_none() {
                gone.push(leased);
                continue;
            }
            let was: Option<String> = row.try_get("was")?;
            let message = Self::message_from_row(row)?;
            jobs.push(ClaimedJob {
                attempt: message.attempts,
                lease_owner: owner.clone(),
                interrupted: was.as_deref() == Some(MessageStatus::Sending.as_str()),
                message,
            });
        }
        if !gone.is_empty() {
            sqlx::query(
                "DELETE FROM queue_entries WHERE message_id = ANY($1) AND lease_owner = $2",
            )
            .bind(&gone)
            .bind(owner.as_str())
            .execute(pool)
            .await?;
        }
        Ok(jobs)
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_statement_is_built_from_the_claim() {
        let sql = super::statement();
        assert!(sql.contains("leased AS (\n             UPDATE queue_entries AS q"));
        assert!(sql.contains("RETURNING q.message_id, q.tenant_id"));
        assert_eq!(sql.matches("UPDATE queue_entries").count(), 1);
    }
}
