//! The durable queue: claiming due entries under a lease, and the lease-fenced outcomes of an
//! attempt (accepted, rescheduled, deferred without counting it, finished). A claim reclaims expired leases, so entries held by a
//! process that died are picked up again.

use std::collections::HashMap;
use std::time::Duration;

use sqlx::{ColumnIndex, Decode, Executor, Pool, Row as _, Type};

use super::dialect::{Dialect, Queries, Value};
use super::error::{Result, StoreError};
use super::events::{PREVIOUS_STATUS, log_status_sql, status_payload};
use super::ids::lease_token;
use super::ledger::BudgetAlert;
use super::messages::SELECT_MESSAGE;
use super::model::{
    Accepted, ClaimedJob, ErrorInfo, EventSource, LeaseOutcome, LeaseRef, Message, MessageStatus,
    TenantId, advance,
};
use super::script::{Script, Statement};
use super::shared::{Change, db_int};

/// A [`LeaseRef`] that owns its parts, for a write that outlives the caller's borrow (one handed
/// to the group writer).
#[derive(Debug, Clone)]
pub(super) struct OwnedLease {
    tenant_id: TenantId,
    message_id: String,
    owner: String,
}

impl OwnedLease {
    /// The lease it names.
    pub(super) fn as_ref(&self) -> LeaseRef<'_> {
        LeaseRef {
            tenant_id: &self.tenant_id,
            message_id: &self.message_id,
            owner: &self.owner,
        }
    }
}

impl From<LeaseRef<'_>> for OwnedLease {
    fn from(lease: LeaseRef<'_>) -> Self {
        Self {
            tenant_id: lease.tenant_id.clone(),
            message_id: lease.message_id.to_owned(),
            owner: lease.owner.to_owned(),
        }
    }
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
    /// A claim as one script (on SQLite one round trip): each statement
    /// after the lease finds the entries this claim took by their lease token, which is unique
    /// to the claim. SQLite's: its single writer needs no row locks; PostgreSQL's claim is one
    /// statement (`pg_claim.rs`).
    pub(super) async fn claim_script(
        conn: &mut DB::Connection,
        worker: &str,
        now: i64,
        lease: Duration,
        limit: u32,
    ) -> Result<Vec<ClaimedJob>> {
        let owner = lease_token(worker);
        let until = now.saturating_add(i64::try_from(lease.as_millis()).unwrap_or(i64::MAX));
        let taken = "SELECT message_id FROM queue_entries WHERE lease_owner = $1";
        // Entries whose message a callback already moved past `sending` (while an attempt
        // whose process died held the lease), or that lost their message, are not sent again.
        let sendable = [
            MessageStatus::Draft,
            MessageStatus::Queued,
            MessageStatus::Scheduled,
            MessageStatus::Sending,
        ]
        .iter()
        .map(|status| format!("'{}'", status.as_str()))
        .collect::<Vec<_>>()
        .join(", ");
        let mut script = Script::default();
        let leased = script.push(
            Statement::new(DB::CLAIM)
                .bind(owner.as_str())
                .bind(until)
                .bind(now)
                .bind(i64::from(limit)),
        );
        let previous = script.push(
            Statement::new(format!(
                "SELECT id, status FROM messages WHERE id IN ({taken})"
            ))
            .bind(owner.as_str()),
        );
        script.push(
            Statement::new(format!(
                "DELETE FROM queue_entries WHERE lease_owner = $1 AND message_id NOT IN (
                     SELECT id FROM messages WHERE id IN ({taken}) AND status IN ({sendable}))"
            ))
            .bind(owner.as_str()),
        );
        let updated = script.push(
            Statement::new(format!(
                "UPDATE messages SET attempts = attempts + 1, status = 'sending', updated_at = $2
                 WHERE id IN ({taken})
                 RETURNING *"
            ))
            .bind(owner.as_str())
            .bind(now),
        );
        // The log first: its entries read the previous status from the history.
        let payload = status_payload::<DB>(
            "'sending'",
            PREVIOUS_STATUS,
            "NULL",
            "NULL",
            "'dispatcher'",
            "$2",
        );
        script.push(
            Statement::new(
                log_status_sql::<DB>(
                    &payload,
                    "$2",
                    &format!("FROM messages m WHERE m.id IN ({taken})"),
                )
                .0,
            )
            .bind(owner.as_str())
            .bind(now),
        );
        script.push(
            Statement::new(format!(
                "INSERT INTO status_events (tenant_id, message_id, status, source, occurred_at)
                 SELECT tenant_id, id, 'sending', 'dispatcher', $2 FROM messages
                 WHERE id IN ({taken})"
            ))
            .bind(owner.as_str())
            .bind(now),
        );
        let rows = DB::run_script(conn, &script).await?;
        let mut order = Vec::with_capacity(rows[leased].len());
        for entry in &rows[leased] {
            order.push(entry.try_get::<String, _>("message_id")?);
        }
        let mut was: HashMap<String, MessageStatus> = HashMap::with_capacity(order.len());
        for row in &rows[previous] {
            let status: String = row.try_get("status")?;
            let status = MessageStatus::parse(&status)
                .ok_or_else(|| StoreError::Corrupt(format!("unknown status {status:?}")))?;
            was.insert(row.try_get("id")?, status);
        }
        let mut claimed: HashMap<String, Message> = HashMap::with_capacity(rows[updated].len());
        for row in &rows[updated] {
            let message = Self::message_from_row(row)?;
            claimed.insert(message.id.clone(), message);
        }
        // In the claim's order: expired leases first, then by priority and due time.
        Ok(order
            .iter()
            .filter_map(|id| claimed.remove(id))
            .map(|message| ClaimedJob {
                attempt: message.attempts,
                lease_owner: owner.clone(),
                interrupted: was.get(&message.id) == Some(&MessageStatus::Sending),
                message,
            })
            .collect())
    }

    /// Deletes a queue entry if the lease still holds it; returns whether it did.
    async fn delete_leased(conn: &mut DB::Connection, lease: LeaseRef<'_>) -> Result<bool> {
        let deleted = sqlx::query(
            "DELETE FROM queue_entries
             WHERE message_id = $1 AND tenant_id = $2 AND lease_owner = $3
             RETURNING message_id",
        )
        .bind(lease.message_id)
        .bind(lease.tenant_id.as_str())
        .bind(lease.owner)
        .fetch_optional(&mut *conn)
        .await?;
        Ok(deleted.is_some())
    }

    /// Records that the provider accepted the attempt (and the sender it used, when the message
    /// named none); fenced by the lease.
    pub(super) async fn complete_accepted(
        pool: &Pool<DB>,
        lease: LeaseRef<'_>,
        accepted: &Accepted,
        now: i64,
    ) -> Result<LeaseOutcome> {
        let mut tx = pool.begin_with(DB::BEGIN).await?;
        let (outcome, alerts) = Self::complete_accepted_in(&mut tx, lease, accepted, now).await?;
        if outcome == LeaseOutcome::Applied {
            tx.commit().await?;
            super::ledger::log_alerts(&alerts);
        }
        Ok(outcome)
    }

    /// [`complete_accepted`](Self::complete_accepted)'s statements in the caller's transaction;
    /// also returns the budget alerts to log once it commits.
    pub(super) async fn complete_accepted_in(
        conn: &mut DB::Connection,
        lease: LeaseRef<'_>,
        accepted: &Accepted,
        now: i64,
    ) -> Result<(LeaseOutcome, Vec<BudgetAlert>)> {
        let (tenant, id) = (lease.tenant_id.as_str(), lease.message_id);
        // First the lease's entry and the message (under its row lock where the backend needs
        // one), as one script: on SQLite one round trip.
        let mut script = Script::default();
        script.push(
            Statement::new(
                "DELETE FROM queue_entries
                 WHERE message_id = $1 AND tenant_id = $2 AND lease_owner = $3
                 RETURNING message_id",
            )
            .bind(id)
            .bind(tenant)
            .bind(lease.owner),
        );
        script.push(
            Statement::new(super::messages::locking::<DB>(SELECT_MESSAGE).0)
                .bind(tenant)
                .bind(id),
        );
        let rows = DB::run_script(conn, &script).await?;
        if rows[0].is_empty() {
            return Ok((LeaseOutcome::Lost, Vec::new()));
        }
        let Some(current) = rows[1].first().map(Self::message_from_row).transpose()? else {
            return Ok((LeaseOutcome::Lost, Vec::new()));
        };
        // Then what the provider said, and the move to `sent`: one more script unless the
        // answer carried a price, whose ledger steps come between.
        let mut script = Script::default();
        script.push(
            Statement::new(
                "UPDATE messages SET provider = $3, provider_message_id = $4, updated_at = $5,
                     provider_segments = COALESCE($6, provider_segments),
                     price_micros = COALESCE($7, price_micros),
                     price_currency = COALESCE($8, price_currency),
                     sender = COALESCE(sender, $9)
                 WHERE tenant_id = $1 AND id = $2",
            )
            .bind(tenant)
            .bind(id)
            .bind(accepted.provider.as_str())
            .bind(accepted.provider_message_id.as_str())
            .bind(now)
            .bind(accepted.segments.map(db_int))
            .bind(accepted.price.as_ref().map(|price| price.micros))
            .bind(accepted.price.as_ref().map(|price| price.currency.as_str()))
            .bind(accepted.sender.as_deref()),
        );
        let mut alerts = Vec::new();
        if let Some(price) = &accepted.price {
            DB::run_script(conn, &script).await?;
            script = Script::default();
            // Priced under the provider that took it (a failover may have changed it).
            let mut sent = current.clone();
            sent.provider.clone_from(&accepted.provider);
            let attempt = accepted.provider_message_id.as_str();
            alerts = Self::record_actual(conn, &sent, attempt, price, now).await?;
        }
        if advance(current.status, MessageStatus::Sent) {
            let change = Change {
                status: MessageStatus::Sent,
                provider_status: accepted.provider_status.as_deref(),
                error: None,
                source: EventSource::Dispatcher,
                now,
            };
            super::messages::transition_statements::<DB>(&mut script, tenant, id, &change);
        }
        if !script.is_empty() {
            DB::run_script(conn, &script).await?;
        }
        Ok((LeaseOutcome::Applied, alerts))
    }

    /// Releases the lease and makes the entry due again at `due_at`; fenced by the lease.
    pub(super) async fn reschedule(
        pool: &Pool<DB>,
        lease: LeaseRef<'_>,
        due_at: i64,
        error: &ErrorInfo,
        now: i64,
    ) -> Result<LeaseOutcome> {
        Self::release(pool, lease, due_at, error, now, false).await
    }

    /// Like [`reschedule`](Self::reschedule), and gives back the attempt the claim counted:
    /// for an attempt that never reached the plugin (it had no instance free).
    pub(super) async fn defer(
        pool: &Pool<DB>,
        lease: LeaseRef<'_>,
        due_at: i64,
        error: &ErrorInfo,
        now: i64,
    ) -> Result<LeaseOutcome> {
        Self::release(pool, lease, due_at, error, now, true).await
    }

    /// Releases the lease, due again at `due_at`; `give_back` uncounts the claimed attempt.
    async fn release(
        pool: &Pool<DB>,
        lease: LeaseRef<'_>,
        due_at: i64,
        error: &ErrorInfo,
        now: i64,
        give_back: bool,
    ) -> Result<LeaseOutcome> {
        let mut tx = pool.begin_with(DB::BEGIN).await?;
        let outcome = Self::release_in(&mut tx, lease, due_at, error, now, give_back).await?;
        tx.commit().await?;
        Ok(outcome)
    }

    /// [`release`](Self::release)'s statements in the caller's transaction.
    pub(super) async fn release_in(
        conn: &mut DB::Connection,
        lease: LeaseRef<'_>,
        due_at: i64,
        error: &ErrorInfo,
        now: i64,
        give_back: bool,
    ) -> Result<LeaseOutcome> {
        let released = sqlx::query(
            "UPDATE queue_entries SET lease_owner = NULL, lease_until = NULL, due_at = $4
             WHERE message_id = $1 AND tenant_id = $2 AND lease_owner = $3
             RETURNING message_id",
        )
        .bind(lease.message_id)
        .bind(lease.tenant_id.as_str())
        .bind(lease.owner)
        .bind(due_at)
        .fetch_optional(&mut *conn)
        .await?;
        if released.is_none() {
            return Ok(LeaseOutcome::Lost);
        }
        let current = Self::lock_message(conn, lease.tenant_id.as_str(), lease.message_id).await?;
        if current.is_some_and(|message| message.status == MessageStatus::Sending) {
            // The one backward move: an attempt the provider did not take returns to the queue.
            let change = Change::dispatcher(MessageStatus::Queued, Some(error), now);
            Self::transition(conn, lease.tenant_id.as_str(), lease.message_id, &change).await?;
        }
        if give_back {
            sqlx::query(
                "UPDATE messages SET attempts = attempts - 1
                 WHERE tenant_id = $1 AND id = $2 AND attempts > 0",
            )
            .bind(lease.tenant_id.as_str())
            .bind(lease.message_id)
            .execute(&mut *conn)
            .await?;
        }
        Ok(LeaseOutcome::Applied)
    }

    /// Removes the entry and gives the message its last status; fenced by the lease.
    pub(super) async fn finish(
        pool: &Pool<DB>,
        lease: LeaseRef<'_>,
        new_status: MessageStatus,
        error: &ErrorInfo,
        now: i64,
    ) -> Result<LeaseOutcome> {
        let mut tx = pool.begin_with(DB::BEGIN).await?;
        let outcome = Self::finish_in(&mut tx, lease, new_status, error, now).await?;
        tx.commit().await?;
        Ok(outcome)
    }

    /// [`finish`](Self::finish)'s statements in the caller's transaction.
    pub(super) async fn finish_in(
        conn: &mut DB::Connection,
        lease: LeaseRef<'_>,
        new_status: MessageStatus,
        error: &ErrorInfo,
        now: i64,
    ) -> Result<LeaseOutcome> {
        if !Self::delete_leased(conn, lease).await? {
            return Ok(LeaseOutcome::Lost);
        }
        let current = Self::lock_message(conn, lease.tenant_id.as_str(), lease.message_id).await?;
        // A message no provider took (no provider id) cannot be charged: its reservations go
        // back. One that may have reached a provider (`unknown`) keeps them until its price or
        // a final answer arrives.
        let never_reached = current.as_ref().is_some_and(|message| {
            message.provider_message_id.is_none() && new_status == MessageStatus::Failed
        });
        if current.is_some_and(|message| advance(message.status, new_status)) {
            let change = Change::dispatcher(new_status, Some(error), now);
            Self::transition(conn, lease.tenant_id.as_str(), lease.message_id, &change).await?;
        }
        if never_reached {
            Self::release_holds(conn, lease.tenant_id.as_str(), lease.message_id, now).await?;
        }
        Ok(LeaseOutcome::Applied)
    }

    /// Counts queue entries across all tenants.
    pub(super) async fn count_queue(pool: &Pool<DB>) -> Result<u64> {
        let row = sqlx::query("SELECT COUNT(*) AS total FROM queue_entries")
            .fetch_one(pool)
            .await?;
        let total: i64 = row.try_get("total")?;
        Ok(u64::try_from(total).unwrap_or(0))
    }

    /// Returns when the earliest queue entry becomes claimable.
    pub(super) async fn next_due_at(pool: &Pool<DB>) -> Result<Option<i64>> {
        // A suspended tenant's entries are held: they must not keep waking the dispatcher.
        let row = sqlx::query(
            "SELECT due_at FROM queue_entries
             WHERE tenant_id NOT IN (SELECT id FROM tenants WHERE status = 'suspended')
             ORDER BY due_at LIMIT 1",
        )
        .fetch_optional(pool)
        .await?;
        Ok(row.map(|row| row.try_get("due_at")).transpose()?)
    }
}
