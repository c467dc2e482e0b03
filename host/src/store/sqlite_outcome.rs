//! An accepted attempt on SQLite as **one script**, one round trip to the writer's connection,
//! when the provider's answer carries no price (the PostgreSQL counterpart is one statement,
//! `pg_outcome.rs`). Every statement is fenced by the lease, so without it the script changes
//! nothing ([`LeaseOutcome::Lost`]). In order:
//!
//! 1. the `message.status` event of the move to `sent`, and
//! 2. its history row, both only where the message is not further along (a callback may have
//!    moved it already); the event comes first, as it reads the previous status from the
//!    history;
//! 3. the provider's id and facts, and the move itself;
//! 4. the lease's queue entry, deleted.
//!
//! An answer with a price keeps the ledger's steps (`Queries::complete_accepted_in`).

use std::sync::OnceLock;

use sqlx::Sqlite;
use sqlx::sqlite::SqliteConnection;

use super::dialect::{Dialect as _, Queries};
use super::error::Result;
use super::events::{PREVIOUS_STATUS, log_status_sql, status_payload};
use super::model::{Accepted, LeaseOutcome, LeaseRef, MessageStatus};
use super::script::{Script, Statement};
use super::shared::{db_int, statuses_before};

/// The statuses `sent` advances from, as a quoted SQL list.
fn movable() -> &'static str {
    static MOVABLE: OnceLock<String> = OnceLock::new();
    MOVABLE.get_or_init(|| statuses_before(MessageStatus::Sent))
}

/// While the lease `$3` holds message `$2` of tenant `$1`.
const LEASED: &str = "EXISTS (SELECT 1 FROM queue_entries
     WHERE message_id = $2 AND tenant_id = $1 AND lease_owner = $3)";

impl Queries<Sqlite> {
    /// Records that the provider accepted the attempt, for an answer without a price; see the
    /// module's documentation.
    pub(super) async fn complete_accepted_script(
        conn: &mut SqliteConnection,
        lease: LeaseRef<'_>,
        accepted: &Accepted,
        now: i64,
    ) -> Result<LeaseOutcome> {
        let movable = movable();
        let (tenant, id, owner) = (lease.tenant_id.as_str(), lease.message_id, lease.owner);
        let moving = format!(
            "FROM messages m
             WHERE m.tenant_id = $1 AND m.id = $2 AND m.status IN ({movable}) AND {LEASED}"
        );
        let fenced = |sql: String| Statement::new(sql).bind(tenant).bind(id).bind(owner);
        let mut script = Script::default();
        let payload = status_payload::<Sqlite>(
            "'sent'",
            PREVIOUS_STATUS,
            "$4",
            "NULL",
            "'dispatcher'",
            "$5",
        );
        script.push(
            fenced(log_status_sql::<Sqlite>(&payload, "$5", &moving).0)
                .bind(accepted.provider_status.as_deref())
                .bind(now),
        );
        script.push(
            fenced(format!(
                "INSERT INTO status_events (tenant_id, message_id, status, provider_status,
                     source, occurred_at)
                 SELECT m.tenant_id, m.id, 'sent', $4, 'dispatcher', $5 {moving}"
            ))
            .bind(accepted.provider_status.as_deref())
            .bind(now),
        );
        // In SQLite's `SET`, every column read is the row's value before the update.
        let updated = script.push(
            fenced(format!(
                "UPDATE messages
                 SET provider = $4, provider_message_id = $5, updated_at = $6,
                     provider_segments = COALESCE($7, provider_segments),
                     sender = COALESCE(sender, $8),
                     status = CASE WHEN status IN ({movable}) THEN 'sent' ELSE status END,
                     error_code = CASE WHEN status IN ({movable}) THEN NULL ELSE error_code END,
                     error_message = CASE WHEN status IN ({movable}) THEN NULL
                         ELSE error_message END
                 WHERE tenant_id = $1 AND id = $2 AND {LEASED}
                 RETURNING id"
            ))
            .bind(accepted.provider.as_str())
            .bind(accepted.provider_message_id.as_str())
            .bind(now)
            .bind(accepted.segments.map(db_int))
            .bind(accepted.sender.as_deref()),
        );
        let deleted = script.push(fenced(
            "DELETE FROM queue_entries
             WHERE message_id = $2 AND tenant_id = $1 AND lease_owner = $3
             RETURNING message_id"
                .to_owned(),
        ));
        let rows = Sqlite::run_script(conn, &script).await?;
        Ok(if rows[updated].is_empty() || rows[deleted].is_empty() {
            LeaseOutcome::Lost
        } else {
            LeaseOutcome::Applied
        })
    }
}
