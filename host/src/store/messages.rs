//! Messages and their status history: enqueue with idempotency, the monotonic status rule applied
//! to provider reports, reads and keyset-paginated listing; plus the row helpers the queue shares
//! (reading a message under its row lock, recording a status change).

use sqlx::{AssertSqlSafe, ColumnIndex, Decode, Executor, Pool, Row as _, Type};

use super::dialect::{Dialect, Queries, Value};
use super::error::{Result, StoreError};
use super::ids::{decode_cursor, encode_cursor};
use super::ledger::{BudgetAlert, cost_statement, hold_statements};
use super::model::{
    ApplyResult, Enqueued, EventSource, Message, MessageFilter, MessageLookup, MessageStatus,
    Money, NewMessage, Page, StatusEvent, StatusUpdate, advance_reported,
};
use super::priority::ClaimPriority;
use super::script::{Arg, Script, Statement};
use super::shared::{
    Change, Facts, category, count, db_int, encoding, error_info, json, name_of, page_size, paged,
    status, tenant, word,
};

/// One message by id; [`Dialect::LOCK_ROWS`] is appended when it is read to be written.
pub(super) const SELECT_MESSAGE: &str = "SELECT * FROM messages WHERE tenant_id = $1 AND id = $2";

/// The message a tenant's idempotency key created.
pub(super) const SELECT_BY_IDEMPOTENCY_KEY: &str =
    "SELECT * FROM messages WHERE tenant_id = $1 AND idempotency_key = $2";

/// The condition of a new message's cost row, written before the message itself (`$11`: its
/// idempotency key): that no message of the tenant holds the key, since then the message's
/// insert stores nothing. A key of NULL matches no row.
const KEY_FREE: &str =
    "NOT EXISTS (SELECT 1 FROM messages WHERE tenant_id = $1 AND idempotency_key = $11)";

/// One message by its provider's id, locked like [`SELECT_MESSAGE`].
const SELECT_BY_PROVIDER_ID: &str = "SELECT * FROM messages
     WHERE tenant_id = $1 AND provider = $2 AND provider_message_id = $3";

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
    pub(super) fn message_from_row(row: &DB::Row) -> Result<Message> {
        let price = match (row.try_get("price_micros")?, row.try_get("price_currency")?) {
            (Some(micros), Some(currency)) => Some(Money { micros, currency }),
            _ => None,
        };
        let metadata: Option<String> = row.try_get("metadata")?;
        let provider_segments: Option<i32> = row.try_get("provider_segments")?;
        Ok(Message {
            id: row.try_get("id")?,
            tenant_id: tenant(row.try_get("tenant_id")?)?,
            to_number: row.try_get("to_number")?,
            sender: row.try_get("sender")?,
            body: row.try_get("body")?,
            template_id: row.try_get("template_id")?,
            template_version: row.try_get("template_version")?,
            category: category(row.try_get("category")?)?,
            encoding: encoding(row.try_get("encoding")?)?,
            segments: count(row.try_get("segments")?, "segments")?,
            provider_segments: provider_segments
                .map(|value| count(value, "provider_segments"))
                .transpose()?,
            units: count(row.try_get("units")?, "units")?,
            status: status(row.try_get("status")?)?,
            provider: row.try_get("provider")?,
            provider_message_id: row.try_get("provider_message_id")?,
            attempts: count(row.try_get("attempts")?, "attempts")?,
            max_attempts: count(row.try_get("max_attempts")?, "max_attempts")?,
            customer_id: row.try_get("customer_id")?,
            order_id: row.try_get("order_id")?,
            reservation_id: row.try_get("reservation_id")?,
            metadata: metadata.map(|text| json(&text, "metadata")).transpose()?,
            idempotency_key: row.try_get("idempotency_key")?,
            request_hash: row.try_get("request_hash")?,
            send_at: row.try_get("send_at")?,
            price,
            error: error_info(row.try_get("error_code")?, row.try_get("error_message")?),
            batch_id: row.try_get("batch_id")?,
            created_at: row.try_get("created_at")?,
            updated_at: row.try_get("updated_at")?,
        })
    }

    fn event_from_row(row: &DB::Row) -> Result<StatusEvent> {
        Ok(StatusEvent {
            id: row.try_get("id")?,
            tenant_id: tenant(row.try_get("tenant_id")?)?,
            message_id: row.try_get("message_id")?,
            status: status(row.try_get("status")?)?,
            provider_status: row.try_get("provider_status")?,
            error: error_info(row.try_get("error_code")?, row.try_get("error_message")?),
            source: word(row.try_get("source")?)?,
            occurred_at: row.try_get("occurred_at")?,
        })
    }

    /// Sets the status and error columns, and records the change as an event.
    pub(super) async fn transition(
        conn: &mut DB::Connection,
        tenant: &str,
        id: &str,
        change: &Change<'_>,
    ) -> Result<Message> {
        let mut script = Script::default();
        let updated = transition_statements::<DB>(&mut script, tenant, id, change);
        let rows = DB::run_script(conn, &script).await?;
        let row = rows[updated]
            .first()
            .ok_or(StoreError::Database(sqlx::Error::RowNotFound))?;
        Self::message_from_row(row)
    }

    /// Reads a message for a read-decide-write, locking its row where the backend needs it.
    pub(super) async fn lock_message(
        conn: &mut DB::Connection,
        tenant: &str,
        id: &str,
    ) -> Result<Option<Message>> {
        let row = sqlx::query(locking::<DB>(SELECT_MESSAGE))
            .bind(tenant)
            .bind(id)
            .fetch_optional(&mut *conn)
            .await?;
        row.as_ref().map(Self::message_from_row).transpose()
    }

    /// Looks a message up by its provider id, locked like [`Self::lock_message`].
    async fn lock_by_provider_id(
        conn: &mut DB::Connection,
        tenant: &str,
        provider: &str,
        provider_id: &str,
    ) -> Result<Option<Message>> {
        let row = sqlx::query(locking::<DB>(SELECT_BY_PROVIDER_ID))
            .bind(tenant)
            .bind(provider)
            .bind(provider_id)
            .fetch_optional(&mut *conn)
            .await?;
        row.as_ref().map(Self::message_from_row).transpose()
    }

    /// Stores and queues a new message inside the caller's transaction (the SQLite writer's
    /// batch), or returns the message that its idempotency key already names; also returns the
    /// budget alerts to log once it commits. PostgreSQL's is one statement (`pg_enqueue.rs`).
    pub(super) async fn enqueue_in(
        conn: &mut DB::Connection,
        new: &NewMessage,
    ) -> Result<(Enqueued, Vec<BudgetAlert>)> {
        let (status, send_at) = placement(new);
        let tenant = new.tenant_id.as_str();
        // One script (on SQLite one round trip): the message, then the rest only while the
        // message was stored, as a reused idempotency key stores nothing.
        let mut script = Script::default();
        // A charge's cost row goes first, unless the idempotency key is taken: the message's
        // insert trigger then writes the one rollup delta that counts the message with its
        // estimate, and the cost row's trigger, finding no message yet, writes none (after
        // the message it would write two: the message uncounted without cost, counted with).
        if let Some(charge) = &new.charge {
            script.push(
                cost_statement(tenant, &new.id, charge, new.now, KEY_FREE)
                    .bind(new.idempotency_key.as_deref()),
            );
        }
        let mut insert = Statement::new(format!(
            "INSERT INTO messages {MESSAGE_COLUMNS}
             VALUES {MESSAGE_VALUES}
             ON CONFLICT (tenant_id, idempotency_key) DO NOTHING
             RETURNING *"
        ));
        for arg in message_args(new) {
            insert = insert.bind(arg);
        }
        let message = script.push(insert);
        script.push(
            Statement::new(
                "INSERT INTO queue_entries (message_id, tenant_id, due_at, priority)
                 SELECT $1, $2, $3, $4 WHERE EXISTS (SELECT 1 FROM messages WHERE id = $1)",
            )
            .bind(new.id.as_str())
            .bind(new.tenant_id.as_str())
            .bind(send_at.unwrap_or(new.now))
            .bind(ClaimPriority::of(&new.category, new.bulk).as_i32()),
        );
        let change = Change {
            status,
            provider_status: None,
            error: None,
            source: EventSource::Api,
            now: new.now,
        };
        event_statements::<DB>(&mut script, new.tenant_id.as_str(), &new.id, &change);
        let upserts = new
            .charge
            .as_ref()
            .map(|charge| hold_statements(&mut script, tenant, &new.id, charge, new.now));
        let rows = DB::run_script(conn, &script).await?;
        let Some(row) = rows.get(message).and_then(|rows| rows.first()) else {
            // Only the idempotency key can conflict silently: the key is set.
            let key = new.idempotency_key.clone().unwrap_or_default();
            let row = sqlx::query(SELECT_BY_IDEMPOTENCY_KEY)
                .bind(new.tenant_id.as_str())
                .bind(key.as_str())
                .fetch_one(&mut *conn)
                .await?;
            let existing = Self::message_from_row(&row)?;
            return if existing.request_hash == new.request_hash {
                Ok((Enqueued::Existing(existing), Vec::new()))
            } else {
                Err(StoreError::IdempotencyConflict { key })
            };
        };
        let created = Self::message_from_row(row)?;
        let alerts = match (&new.charge, upserts) {
            // A budget without room rolls the whole enqueue back as the transaction drops.
            (Some(charge), Some(upserts)) => {
                Self::charged(
                    conn,
                    new.tenant_id.as_str(),
                    charge,
                    &upserts,
                    &rows,
                    new.now,
                )
                .await?
            }
            _ => Vec::new(),
        };
        Ok((Enqueued::Created(created), alerts))
    }

    /// Applies a provider's status reports about one message, in order, with the monotonic rule
    /// ([`advance_reported`]: a `queued` or `scheduled` message is left alone), under the
    /// message's row lock, in one transaction of their own.
    pub(super) async fn apply_statuses(
        pool: &Pool<DB>,
        tenant: &str,
        updates: &[StatusUpdate],
    ) -> Result<Vec<Option<ApplyResult>>> {
        let mut tx = pool.begin_with(DB::BEGIN).await?;
        let (results, alerts) = Self::apply_statuses_in(&mut tx, tenant, updates).await?;
        tx.commit().await?;
        super::ledger::log_alerts(&alerts);
        Ok(results)
    }

    /// Applies `updates`, reports about one message (they all share the first one's lookup), in
    /// the caller's transaction, coalesced: the message is read and locked once, what they
    /// report is stored in one update, and its row moves once to the last status they reach,
    /// with one event per step on the way, so the history reads as if each had been applied on
    /// its own. Returns one result per report, in order (`None` when no message matches), and
    /// the budget alerts to log once the transaction commits.
    pub(super) async fn apply_statuses_in(
        conn: &mut DB::Connection,
        tenant: &str,
        updates: &[StatusUpdate],
    ) -> Result<(Vec<Option<ApplyResult>>, Vec<BudgetAlert>)> {
        let Some(first) = updates.first() else {
            return Ok((Vec::new(), Vec::new()));
        };
        let current = match &first.lookup {
            MessageLookup::Id(id) => Self::lock_message(conn, tenant, id).await?,
            MessageLookup::Provider {
                provider,
                provider_message_id,
            } => Self::lock_by_provider_id(conn, tenant, provider, provider_message_id).await?,
        };
        let Some(current) = current else {
            return Ok((vec![None; updates.len()], Vec::new()));
        };
        if current.status.is_waiting() {
            // Not in flight: no provider has it, so the reports are forged or misrouted. Nothing
            // they say is stored, not even a price or provider id.
            let unchanged = ApplyResult {
                message: current.clone(),
                previous: current.status,
                changed: false,
            };
            return Ok((vec![Some(unchanged); updates.len()], Vec::new()));
        }
        // What the reports say, folded as the columns' own rules would apply them one by one: a
        // provider id or sender only where none is stored yet (the first wins), a segment count
        // and price replace the one before (the last wins).
        let facts = Facts {
            provider_message_id: updates
                .iter()
                .find_map(|u| u.provider_message_id.as_deref()),
            provider_segments: updates.iter().rev().find_map(|u| u.segments),
            price: updates.iter().rev().find_map(|u| u.price.as_ref()),
            sender: updates.iter().find_map(|u| u.sender.as_deref()),
        };
        // The facts go first, in a script of their own when a price's ledger steps follow
        // (they read no fact), else at the head of the status change's script. Either way the
        // write's first change is a script (see `GroupWriter::write_scripted`).
        let mut facts_first = facts_update(tenant, &current.id, &facts);
        if facts.price.is_some()
            && let Some(update) = facts_first.take()
        {
            let mut script = Script::default();
            script.push(update);
            DB::run_script(conn, &script).await?;
        }
        let mut alerts = Vec::new();
        // The provider id stored before each report: the message's own, else the first one
        // reported so far.
        let mut stored_id = current.provider_message_id.as_deref();
        let mut status = current.status;
        let mut steps = Vec::with_capacity(updates.len());
        for update in updates {
            if let Some(price) = &update.price {
                // The attempt is the one the report names, else the one the message was sent as.
                let attempt = update
                    .provider_message_id
                    .as_deref()
                    .or(stored_id)
                    .unwrap_or_default();
                alerts
                    .extend(Self::record_actual(conn, &current, attempt, price, update.now).await?);
            }
            stored_id = stored_id.or(update.provider_message_id.as_deref());
            let previous = status;
            let changed = advance_reported(status, update.status);
            if changed {
                status = update.status;
            }
            steps.push((previous, status, changed));
        }
        let changes: Vec<Change<'_>> = updates
            .iter()
            .zip(&steps)
            .filter(|(_, (_, _, changed))| *changed)
            .map(|(update, _)| Change {
                status: update.status,
                provider_status: update.provider_status.as_deref(),
                error: update.error.as_ref(),
                source: update.source,
                now: update.now,
            })
            .collect();
        let message = match changes.split_last() {
            Some((last, before)) => {
                // The row moves once, to the last step; the history takes every step in order.
                let mut script = Script::default();
                if let Some(update) = facts_first {
                    script.push(update);
                }
                let updated = script.push(status_update(tenant, &current.id, last));
                for change in before.iter().chain([last]) {
                    event_statements::<DB>(&mut script, tenant, &current.id, change);
                }
                let rows = DB::run_script(conn, &script).await?;
                let row = rows[updated]
                    .first()
                    .ok_or(StoreError::Database(sqlx::Error::RowNotFound))?;
                Self::message_from_row(row)?
            }
            None if facts.is_empty() => current.clone(),
            None => {
                if let Some(update) = facts_first {
                    let mut script = Script::default();
                    script.push(update);
                    DB::run_script(conn, &script).await?;
                }
                Self::lock_message(conn, tenant, &current.id)
                    .await?
                    .unwrap_or_else(|| current.clone())
            }
        };
        let results = steps
            .into_iter()
            .map(|(previous, after, changed)| {
                let mut message = message.clone();
                message.status = after;
                Some(ApplyResult {
                    message,
                    previous,
                    changed,
                })
            })
            .collect();
        Ok((results, alerts))
    }

    /// Reads one message.
    pub(super) async fn get_message(
        pool: &Pool<DB>,
        tenant: &str,
        id: &str,
    ) -> Result<Option<Message>> {
        let row = sqlx::query(SELECT_MESSAGE)
            .bind(tenant)
            .bind(id)
            .fetch_optional(pool)
            .await?;
        row.as_ref().map(Self::message_from_row).transpose()
    }

    /// Reads the message a tenant's idempotency key created, if any.
    pub(super) async fn message_by_idempotency_key(
        pool: &Pool<DB>,
        tenant: &str,
        key: &str,
    ) -> Result<Option<Message>> {
        let row = sqlx::query(SELECT_BY_IDEMPOTENCY_KEY)
            .bind(tenant)
            .bind(key)
            .fetch_optional(pool)
            .await?;
        row.as_ref().map(Self::message_from_row).transpose()
    }

    /// Reads a message's status history, oldest first.
    pub(super) async fn message_events(
        pool: &Pool<DB>,
        tenant: &str,
        id: &str,
    ) -> Result<Vec<StatusEvent>> {
        let rows = sqlx::query(
            "SELECT * FROM status_events WHERE tenant_id = $1 AND message_id = $2
             ORDER BY occurred_at, id",
        )
        .bind(tenant)
        .bind(id)
        .fetch_all(pool)
        .await?;
        rows.iter().map(Self::event_from_row).collect()
    }

    /// Lists messages newest first, one keyset page at a time.
    pub(super) async fn list_messages(
        pool: &Pool<DB>,
        tenant: &str,
        filter: &MessageFilter,
    ) -> Result<Page<Message>> {
        let after = filter.cursor.as_deref().map(decode_cursor).transpose()?;
        let limit = page_size(filter.limit);
        let rows = sqlx::query(
            "SELECT * FROM messages
             WHERE tenant_id = $1
               AND ($2 IS NULL OR status = $2)
               AND ($3 IS NULL OR to_number = $3)
               AND ($4 IS NULL OR customer_id = $4)
               AND ($5 IS NULL OR created_at >= $5)
               AND ($6 IS NULL OR created_at < $6)
               AND ($7 IS NULL OR created_at < $7 OR (created_at = $7 AND id < $8))
             ORDER BY created_at DESC, id DESC
             LIMIT $9",
        )
        .bind(tenant)
        .bind(filter.status.map(MessageStatus::as_str))
        .bind(filter.to_number.as_deref())
        .bind(filter.customer_id.as_deref())
        .bind(filter.created_from)
        .bind(filter.created_to)
        .bind(after.as_ref().map(|(created_at, _)| *created_at))
        .bind(after.as_ref().map(|(_, id)| id.as_str()))
        .bind(i64::from(limit) + 1)
        .fetch_all(pool)
        .await?;
        let items = rows
            .iter()
            .map(Self::message_from_row)
            .collect::<Result<Vec<_>>>()?;
        Ok(paged(items, limit, |last| {
            encode_cursor(last.created_at, &last.id)
        }))
    }
}

/// Appends the backend's row lock to a `SELECT`. Both parts are constants of this crate, never
/// input, which is what makes the assembled text safe to run.
pub(super) fn locking<DB: Dialect>(select: &str) -> AssertSqlSafe<String> {
    AssertSqlSafe(format!("{select}{}", DB::LOCK_ROWS))
}

/// Appends the statements that record a status change of message `id` (only while it is stored)
/// to `script`: its event log entry, then its history row, as the log's entry reads the previous
/// status from the history.
pub(super) fn event_statements<DB: Dialect>(
    script: &mut Script,
    tenant: &str,
    id: &str,
    change: &Change<'_>,
) {
    script.push(super::events::log_status_statement::<DB>(
        tenant, id, change,
    ));
    script.push(
        Statement::new(
            "INSERT INTO status_events (tenant_id, message_id, status, provider_status,
                 error_code, error_message, source, occurred_at)
             SELECT $1, $2, $3, $4, $5, $6, $7, $8
             WHERE EXISTS (SELECT 1 FROM messages WHERE id = $2)",
        )
        .bind(tenant)
        .bind(id)
        .bind(change.status.as_str())
        .bind(change.provider_status)
        .bind(change.error.and_then(|error| error.code.as_deref()))
        .bind(change.error.and_then(|error| error.message.as_deref()))
        .bind(name_of(&change.source).as_str())
        .bind(change.now),
    );
}

/// Appends a status change of message `id` to `script`: the update of its row (returning it, at
/// the index returned) and the statements of [`event_statements`].
pub(super) fn transition_statements<DB: Dialect>(
    script: &mut Script,
    tenant: &str,
    id: &str,
    change: &Change<'_>,
) -> usize {
    let updated = script.push(status_update(tenant, id, change));
    event_statements::<DB>(script, tenant, id, change);
    updated
}

/// The update that stores what a provider reported about message `id`, whatever its status;
/// `None` when the reports said nothing of it.
fn facts_update(tenant: &str, id: &str, facts: &Facts<'_>) -> Option<Statement> {
    if facts.is_empty() {
        return None;
    }
    Some(
        Statement::new(
            "UPDATE messages SET provider_message_id = COALESCE(provider_message_id, $3),
                 provider_segments = COALESCE($4, provider_segments),
                 price_micros = COALESCE($5, price_micros),
                 price_currency = COALESCE($6, price_currency),
                 sender = COALESCE(sender, $7)
             WHERE tenant_id = $1 AND id = $2",
        )
        .bind(tenant)
        .bind(id)
        .bind(facts.provider_message_id)
        .bind(facts.provider_segments.map(db_int))
        .bind(facts.price.map(|price| price.micros))
        .bind(facts.price.map(|price| price.currency.as_str()))
        .bind(facts.sender),
    )
}

/// The update of message `id`'s row to `change`'s status, returning the row.
fn status_update(tenant: &str, id: &str, change: &Change<'_>) -> Statement {
    Statement::new(
        "UPDATE messages
         SET status = $3, error_code = $4, error_message = $5, updated_at = $6
         WHERE tenant_id = $1 AND id = $2
         RETURNING *",
    )
    .bind(tenant)
    .bind(id)
    .bind(change.status.as_str())
    .bind(change.error.and_then(|error| error.code.as_deref()))
    .bind(change.error.and_then(|error| error.message.as_deref()))
    .bind(change.now)
}

/// The columns of a new message's row, in the order of [`MESSAGE_VALUES`].
pub(super) const MESSAGE_COLUMNS: &str = "(id, tenant_id, to_number, sender, body, template_id,
     encoding, segments, units, status, provider, attempts, max_attempts, customer_id, order_id,
     reservation_id, metadata, idempotency_key, request_hash, created_at, updated_at, category,
     template_version, send_at, batch_id)";

/// A new message's row over [`message_args`]'s `$1…$23`.
pub(super) const MESSAGE_VALUES: &str = "($1, $2, $3, $4, $5, $6, $7, $8, $9, $21, $10, 0, $11,
     $12, $13, $14, $15, $16, $17, $18, $18, $19, $20, $22, $23)";

/// Where a new message starts: `scheduled` until its `send_at` when that is later than now,
/// else `queued` and due now; with its `send_at` as stored.
pub(super) fn placement(new: &NewMessage) -> (MessageStatus, Option<i64>) {
    let send_at = new.due_at.filter(|due| *due > new.now);
    let status = if send_at.is_some() {
        MessageStatus::Scheduled
    } else {
        MessageStatus::Queued
    };
    (status, send_at)
}

/// The 23 parameters of a new message's row ([`MESSAGE_VALUES`]), on either backend.
pub(super) fn message_args(new: &NewMessage) -> Vec<Arg> {
    let (status, send_at) = placement(new);
    vec![
        new.id.as_str().into(),
        new.tenant_id.as_str().into(),
        new.to_number.as_str().into(),
        new.sender.as_deref().into(),
        new.body.as_str().into(),
        new.template_id.as_deref().into(),
        new.encoding.as_str().into(),
        db_int(new.segments).into(),
        db_int(new.units).into(),
        new.provider.as_str().into(),
        db_int(new.max_attempts).into(),
        new.customer_id.as_deref().into(),
        new.order_id.as_deref().into(),
        new.reservation_id.as_deref().into(),
        new.metadata
            .as_ref()
            .map(serde_json::Value::to_string)
            .as_deref()
            .into(),
        new.idempotency_key.as_deref().into(),
        new.request_hash.as_deref().into(),
        new.now.into(),
        new.category.as_str().into(),
        new.template_version.into(),
        status.as_str().into(),
        send_at.into(),
        new.batch_id.as_deref().into(),
    ]
}
