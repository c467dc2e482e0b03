//! The durable queue: claiming due entries under a lease, and the lease-fenced outcomes of an
//! attempt (accepted, rescheduled, finished). A claim reclaims expired leases, so entries held by a
//! process that died are picked up again. Expanded per backend by
//! [`backend_queries`](super::shared::backend_queries).

/// Expands the queue queries; invoked by [`backend_queries`](super::shared::backend_queries).
macro_rules! queue_queries {
    (begin = $begin:literal, lock = $lock:literal, claim = $claim:literal) => {
        /// Leases up to `limit` due entries to one claim and marks their messages `sending`.
        pub(super) async fn claim(
            pool: &Pool,
            worker: &str,
            now: i64,
            lease: std::time::Duration,
            limit: u32,
        ) -> Result<Vec<ClaimedJob>> {
            let owner = lease_token(worker);
            let until = now.saturating_add(i64::try_from(lease.as_millis()).unwrap_or(i64::MAX));
            let mut tx = pool.begin_with($begin).await?;
            let entries = sqlx::query($claim)
                .bind(owner.as_str())
                .bind(until)
                .bind(now)
                .bind(i64::from(limit))
                .fetch_all(&mut *tx)
                .await?;
            let mut jobs = Vec::with_capacity(entries.len());
            for entry in entries {
                let tenant: String = entry.try_get("tenant_id")?;
                let id: String = entry.try_get("message_id")?;
                let previous = lock_message(&mut tx, &tenant, &id).await?;
                let Some(previous) = previous
                    .filter(|message| message.status.rank() <= MessageStatus::Sending.rank())
                else {
                    // A callback already moved it past `sending` while an attempt whose process
                    // died held the lease: the provider has it, so there is nothing to send.
                    sqlx::query("DELETE FROM queue_entries WHERE message_id = $1")
                        .bind(id.as_str())
                        .execute(&mut *tx)
                        .await?;
                    continue;
                };
                let row = sqlx::query(
                    "UPDATE messages
                     SET attempts = attempts + 1, status = 'sending', updated_at = $3
                     WHERE tenant_id = $1 AND id = $2
                     RETURNING *",
                )
                .bind(tenant.as_str())
                .bind(id.as_str())
                .bind(now)
                .fetch_one(&mut *tx)
                .await?;
                let change = Change::dispatcher(MessageStatus::Sending, None, now);
                insert_event(&mut tx, &tenant, &id, &change).await?;
                let message = message_from_row(&row)?;
                jobs.push(ClaimedJob {
                    attempt: message.attempts,
                    lease_owner: owner.clone(),
                    interrupted: previous.status == MessageStatus::Sending,
                    message,
                });
            }
            tx.commit().await?;
            Ok(jobs)
        }

        /// Deletes a queue entry if the lease still holds it.
        async fn delete_leased(conn: &mut Conn, lease: LeaseRef<'_>) -> Result<bool> {
            let done = sqlx::query(
                "DELETE FROM queue_entries
                 WHERE message_id = $1 AND tenant_id = $2 AND lease_owner = $3",
            )
            .bind(lease.message_id)
            .bind(lease.tenant_id)
            .bind(lease.owner)
            .execute(&mut *conn)
            .await?;
            Ok(done.rows_affected() > 0)
        }

        /// Records that the provider accepted the attempt; fenced by the lease.
        pub(super) async fn complete_accepted(
            pool: &Pool,
            lease: LeaseRef<'_>,
            accepted: &Accepted,
            now: i64,
        ) -> Result<LeaseOutcome> {
            let mut tx = pool.begin_with($begin).await?;
            if !delete_leased(&mut tx, lease).await? {
                return Ok(LeaseOutcome::Lost);
            }
            let Some(current) = lock_message(&mut tx, lease.tenant_id, lease.message_id).await?
            else {
                return Ok(LeaseOutcome::Lost);
            };
            sqlx::query(
                "UPDATE messages SET provider = $3, provider_message_id = $4, updated_at = $5
                 WHERE tenant_id = $1 AND id = $2",
            )
            .bind(lease.tenant_id)
            .bind(lease.message_id)
            .bind(accepted.provider.as_str())
            .bind(accepted.provider_message_id.as_str())
            .bind(now)
            .execute(&mut *tx)
            .await?;
            let facts = Facts {
                provider_message_id: None,
                segments: accepted.segments,
                price: accepted.price.as_ref(),
            };
            record_facts(&mut tx, lease.tenant_id, lease.message_id, &facts).await?;
            if advance(current.status, MessageStatus::Sent) {
                let change = Change {
                    status: MessageStatus::Sent,
                    provider_status: accepted.provider_status.as_deref(),
                    error: None,
                    source: EventSource::Dispatcher,
                    now,
                };
                transition(&mut tx, lease.tenant_id, lease.message_id, &change).await?;
            }
            tx.commit().await?;
            Ok(LeaseOutcome::Applied)
        }

        /// Releases the lease and makes the entry due again at `due_at`; fenced by the lease.
        pub(super) async fn reschedule(
            pool: &Pool,
            lease: LeaseRef<'_>,
            due_at: i64,
            error: &ErrorInfo,
            now: i64,
        ) -> Result<LeaseOutcome> {
            let mut tx = pool.begin_with($begin).await?;
            let released = sqlx::query(
                "UPDATE queue_entries SET lease_owner = NULL, lease_until = NULL, due_at = $4
                 WHERE message_id = $1 AND tenant_id = $2 AND lease_owner = $3",
            )
            .bind(lease.message_id)
            .bind(lease.tenant_id)
            .bind(lease.owner)
            .bind(due_at)
            .execute(&mut *tx)
            .await?;
            if released.rows_affected() == 0 {
                return Ok(LeaseOutcome::Lost);
            }
            let current = lock_message(&mut tx, lease.tenant_id, lease.message_id).await?;
            if current.is_some_and(|message| message.status == MessageStatus::Sending) {
                // The one backward move: an attempt the provider did not take returns to the queue.
                let change = Change::dispatcher(MessageStatus::Queued, Some(error), now);
                transition(&mut tx, lease.tenant_id, lease.message_id, &change).await?;
            }
            tx.commit().await?;
            Ok(LeaseOutcome::Applied)
        }

        /// Removes the entry and gives the message its last status; fenced by the lease.
        pub(super) async fn finish(
            pool: &Pool,
            lease: LeaseRef<'_>,
            new_status: MessageStatus,
            error: &ErrorInfo,
            now: i64,
        ) -> Result<LeaseOutcome> {
            let mut tx = pool.begin_with($begin).await?;
            if !delete_leased(&mut tx, lease).await? {
                return Ok(LeaseOutcome::Lost);
            }
            let current = lock_message(&mut tx, lease.tenant_id, lease.message_id).await?;
            if current.is_some_and(|message| advance(message.status, new_status)) {
                let change = Change::dispatcher(new_status, Some(error), now);
                transition(&mut tx, lease.tenant_id, lease.message_id, &change).await?;
            }
            tx.commit().await?;
            Ok(LeaseOutcome::Applied)
        }

        /// Counts queue entries across all tenants.
        pub(super) async fn count_queue(pool: &Pool) -> Result<u64> {
            let total: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM queue_entries")
                .fetch_one(pool)
                .await?;
            Ok(u64::try_from(total).unwrap_or(0))
        }

        /// Returns when the earliest queue entry becomes claimable.
        pub(super) async fn next_due_at(pool: &Pool) -> Result<Option<i64>> {
            let row = sqlx::query("SELECT due_at FROM queue_entries ORDER BY due_at LIMIT 1")
                .fetch_optional(pool)
                .await?;
            Ok(row.map(|row| row.try_get("due_at")).transpose()?)
        }
    };
}

pub(super) use queue_queries;
