//! Bulk batches: the batch row, its messages written many at a time, and the batch-wide moves
//! (send a draft, cancel what is not yet claimed), each in one transaction.
//!
//! A batch's messages are ordinary message rows carrying `batch_id`. They are inserted a chunk
//! at a time, one transaction per chunk, with their first events and no queue entries: the
//! batch is staged. A chunk is one statement whatever its size, with a handful of bound values:
//! on PostgreSQL each column is bound as one array and `UNNEST` forms the rows; on SQLite the
//! rows are bound as one JSON array and `json_each` forms them.
//! [`Store::send_batch`] then queues all of them with one `INSERT ... SELECT` in one
//! transaction that wakes the dispatchers once, so a batch is queued whole or not at all, and a
//! crash half-way through an upload leaves nothing half-sent.
//!
//! Duplicates are refused by the database, not by memory: `batch_recipient` holds the number
//! (or NULL when the batch allows duplicates) under a unique index, and the insert skips a row
//! that collides, so a million-line upload stays deduplicated whatever its order.

use sqlx::{
    AssertSqlSafe, ColumnIndex, Decode, Executor, PgPool, Pool, Row as _, Sqlite, SqlitePool, Type,
};

use super::dialect::{Dialect, Queries, Value};
use super::error::{Result, StoreError};
use super::events::{MESSAGE_STATUS, PREVIOUS_STATUS, log_status_sql, status_payload};
use super::ids::{decode_cursor, encode_cursor};
use super::ledger_bulk::DraftCharges;
use super::model::{Category, Message, MessageStatus, NewMessage, Page, TenantId};
use super::priority::ClaimPriority;
use super::shared::{category, db_int, json, page_size, paged, status, tenant};
use super::{Backend, Store};

/// What one chunk of a batch's rows wrote.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ChunkInserted {
    /// The ids inserted, in no particular order.
    pub inserted: Vec<String>,
    /// The ids of rows a hard-capped budget had no room for: not stored.
    pub over_budget: Vec<String>,
}

/// Where a batch is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum BatchState {
    /// Stored and validated, waiting for `POST /batches/{id}/send`.
    Draft,
    /// Its messages are queued (or already sent).
    Sending,
    /// Canceled: its unclaimed messages were withdrawn.
    Canceled,
}

impl BatchState {
    /// The state's snake_case name, as stored.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Draft => "draft",
            Self::Sending => "sending",
            Self::Canceled => "canceled",
        }
    }

    fn parse(name: &str) -> Result<Self> {
        [Self::Draft, Self::Sending, Self::Canceled]
            .into_iter()
            .find(|state| state.as_str() == name)
            .ok_or_else(|| super::StoreError::Corrupt(format!("batch status {name:?}")))
    }
}

/// A stored batch.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Batch {
    /// The batch id (`bat_…`).
    pub id: String,
    /// The owning tenant.
    pub tenant_id: TenantId,
    /// The caller's name for it.
    pub name: Option<String>,
    /// Where it is in its life.
    pub state: BatchState,
    /// The category every message takes unless its row names one.
    pub category: Option<Category>,
    /// The template rows without content use.
    pub template_id: Option<String>,
    /// Values for the template's variables, under each row's own.
    pub template_variables: Option<serde_json::Map<String, serde_json::Value>>,
    /// Whether a number may get more than one message.
    pub allow_duplicates: bool,
    /// When its messages are due; `None` for as soon as it is sent.
    pub send_at: Option<i64>,
    /// When it was created.
    pub created_at: i64,
    /// When its messages were queued.
    pub started_at: Option<i64>,
    /// When it was canceled.
    pub canceled_at: Option<i64>,
}

/// How many of a batch's messages are in each status, and when the last one changed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BatchCounts {
    /// Messages per status, only statuses with at least one message.
    pub by_status: Vec<(MessageStatus, u64)>,
    /// The latest change to any of its messages.
    pub last_change: Option<i64>,
}

/// What canceling a batch did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Canceled {
    /// The batch, now canceled.
    pub batch: Batch,
    /// How many messages were withdrawn.
    pub messages: u64,
}

impl<DB: Dialect> Queries<DB>
where
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
    for<'a> &'a str: Value<'a, DB> + ColumnIndex<DB::Row>,
    for<'a> Option<&'a str>: Value<'a, DB>,
    String: for<'a> Decode<'a, DB> + Type<DB>,
    bool: for<'a> Value<'a, DB>,
    i32: for<'a> Value<'a, DB>,
    i64: for<'a> Value<'a, DB>,
    Option<i32>: for<'a> Value<'a, DB>,
    Option<i64>: for<'a> Value<'a, DB>,
{
    fn batch_from_row(row: &DB::Row) -> Result<Batch> {
        let state: String = row.try_get("status")?;
        let category_name: Option<String> = row.try_get("category")?;
        let variables: Option<String> = row.try_get("template_variables")?;
        Ok(Batch {
            id: row.try_get("id")?,
            tenant_id: tenant(row.try_get("tenant_id")?)?,
            name: row.try_get("name")?,
            state: BatchState::parse(&state)?,
            category: category_name.map(category).transpose()?,
            template_id: row.try_get("template_id")?,
            template_variables: variables
                .map(|text| json(&text, "template_variables"))
                .transpose()?,
            allow_duplicates: row.try_get("allow_duplicates")?,
            send_at: row.try_get("send_at")?,
            created_at: row.try_get("created_at")?,
            started_at: row.try_get("started_at")?,
            canceled_at: row.try_get("canceled_at")?,
        })
    }

    /// Stores a new batch.
    async fn create_batch(pool: &Pool<DB>, batch: &Batch) -> Result<()> {
        let variables = batch
            .template_variables
            .as_ref()
            .map(|variables| serde_json::Value::Object(variables.clone()).to_string());
        sqlx::query(
            "INSERT INTO batches (id, tenant_id, name, status, category, template_id,
                 allow_duplicates, send_at, created_at, started_at, canceled_at, updated_at,
                 template_variables)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $9, $12)",
        )
        .bind(batch.id.as_str())
        .bind(batch.tenant_id.as_str())
        .bind(batch.name.as_deref())
        .bind(batch.state.as_str())
        .bind(batch.category.as_ref().map(Category::as_str))
        .bind(batch.template_id.as_deref())
        .bind(batch.allow_duplicates)
        .bind(batch.send_at)
        .bind(batch.created_at)
        .bind(batch.started_at)
        .bind(batch.canceled_at)
        .bind(variables.as_deref())
        .execute(pool)
        .await?;
        Ok(())
    }

    /// Reads one batch.
    async fn get_batch(pool: &Pool<DB>, tenant: &str, id: &str) -> Result<Option<Batch>> {
        let row = sqlx::query("SELECT * FROM batches WHERE tenant_id = $1 AND id = $2")
            .bind(tenant)
            .bind(id)
            .fetch_optional(pool)
            .await?;
        row.as_ref().map(Self::batch_from_row).transpose()
    }

    /// Lists batches newest first, one keyset page at a time.
    async fn list_batches(
        pool: &Pool<DB>,
        tenant: &str,
        limit: Option<u32>,
        cursor: Option<&str>,
    ) -> Result<Page<Batch>> {
        let after = cursor.map(decode_cursor).transpose()?;
        let limit = page_size(limit);
        let rows = sqlx::query(
            "SELECT * FROM batches
             WHERE tenant_id = $1
               AND ($2 IS NULL OR created_at < $2 OR (created_at = $2 AND id < $3))
             ORDER BY created_at DESC, id DESC
             LIMIT $4",
        )
        .bind(tenant)
        .bind(after.as_ref().map(|(created_at, _)| *created_at))
        .bind(after.as_ref().map(|(_, id)| id.as_str()))
        .bind(i64::from(limit) + 1)
        .fetch_all(pool)
        .await?;
        let items = rows
            .iter()
            .map(Self::batch_from_row)
            .collect::<Result<Vec<_>>>()?;
        Ok(paged(items, limit, |b| encode_cursor(b.created_at, &b.id)))
    }

    /// Lists a batch's messages oldest first, one keyset page at a time.
    async fn list_batch_messages(
        pool: &Pool<DB>,
        tenant: &str,
        batch: &str,
        limit: Option<u32>,
        cursor: Option<&str>,
    ) -> Result<Page<Message>> {
        let after = cursor.map(decode_cursor).transpose()?;
        let limit = page_size(limit);
        let rows = sqlx::query(
            "SELECT * FROM messages
             WHERE tenant_id = $1 AND batch_id = $2
               AND ($3 IS NULL OR created_at > $3 OR (created_at = $3 AND id > $4))
             ORDER BY created_at, id
             LIMIT $5",
        )
        .bind(tenant)
        .bind(batch)
        .bind(after.as_ref().map(|(created_at, _)| *created_at))
        .bind(after.as_ref().map(|(_, id)| id.as_str()))
        .bind(i64::from(limit) + 1)
        .fetch_all(pool)
        .await?;
        let items = rows
            .iter()
            .map(Self::message_from_row)
            .collect::<Result<Vec<_>>>()?;
        Ok(paged(items, limit, |m| encode_cursor(m.created_at, &m.id)))
    }

    /// Counts a batch's messages by status.
    async fn batch_counts(pool: &Pool<DB>, tenant: &str, batch: &str) -> Result<BatchCounts> {
        let rows = sqlx::query(
            "SELECT status, COUNT(*) AS n, MAX(updated_at) AS last_change FROM messages
             WHERE tenant_id = $1 AND batch_id = $2
             GROUP BY status",
        )
        .bind(tenant)
        .bind(batch)
        .fetch_all(pool)
        .await?;
        let mut counts = BatchCounts::default();
        for row in rows {
            let name: String = row.try_get("status")?;
            let n: i64 = row.try_get("n")?;
            let last: Option<i64> = row.try_get("last_change")?;
            counts
                .by_status
                .push((status(&name)?, u64::try_from(n).unwrap_or_default()));
            counts.last_change = counts.last_change.max(last);
        }
        Ok(counts)
    }

    /// Whether batch `batch` is still a draft, read under its lock (the row lock on PostgreSQL,
    /// the write lock `BEGIN IMMEDIATE` took on SQLite): a send or a cancel then waits for the
    /// chunk being written and sees it, or the chunk sees the batch already gone from draft.
    pub(super) async fn still_draft(
        conn: &mut DB::Connection,
        tenant: &str,
        batch: &str,
    ) -> Result<bool> {
        let row = sqlx::query(AssertSqlSafe(format!(
            "SELECT status FROM batches WHERE tenant_id = $1 AND id = $2{}",
            DB::LOCK_ROWS
        )))
        .bind(tenant)
        .bind(batch)
        .fetch_optional(&mut *conn)
        .await?;
        let state: Option<String> = row.map(|row| row.try_get("status")).transpose()?;
        Ok(state.as_deref() == Some(BatchState::Draft.as_str()))
    }

    /// Queues every message of draft batch `id`, due at `due_at`, and marks the batch sending;
    /// `None` when the batch is not a draft (or does not exist).
    async fn send_batch(
        pool: &Pool<DB>,
        tenant: &str,
        id: &str,
        due_at: i64,
        now: i64,
        drafts: &DraftCharges,
    ) -> Result<Option<Batch>> {
        let mut tx = pool.begin_with(DB::BEGIN).await?;
        let row = sqlx::query(
            "UPDATE batches SET status = 'sending', started_at = $3, updated_at = $3
             WHERE tenant_id = $1 AND id = $2 AND status = 'draft'
             RETURNING *",
        )
        .bind(tenant)
        .bind(id)
        .bind(now)
        .fetch_optional(&mut *tx)
        .await?;
        let Some(row) = row else {
            return Ok(None);
        };
        // Refused messages leave `draft` here, so the statements below pass them by.
        Self::charge_drafts(&mut tx, tenant, drafts, now).await?;
        sqlx::query(
            "INSERT INTO queue_entries (message_id, tenant_id, due_at, priority)
             SELECT id, tenant_id, $3, CASE WHEN category = $4 THEN $5 ELSE $6 END FROM messages
             WHERE tenant_id = $1 AND batch_id = $2 AND status = 'draft'",
        )
        .bind(tenant)
        .bind(id)
        .bind(due_at)
        .bind(ClaimPriority::MARKETING)
        .bind(ClaimPriority::BulkMarketing.as_i32())
        .bind(ClaimPriority::Bulk.as_i32())
        .execute(&mut *tx)
        .await?;
        // The drafts become `queued`, or wait as `scheduled` when due later (as a single send
        // with a `send_at` does), each with its event.
        let (status, send_at) = if due_at > now {
            (MessageStatus::Scheduled, Some(due_at))
        } else {
            (MessageStatus::Queued, None)
        };
        sqlx::query(
            "UPDATE messages SET status = $3, send_at = $4, updated_at = $5
             WHERE tenant_id = $1 AND batch_id = $2 AND status = 'draft'",
        )
        .bind(tenant)
        .bind(id)
        .bind(status.as_str())
        .bind(send_at)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        let payload = status_payload::<DB>("m.status", "'draft'", "NULL", "NULL", "'api'", "$3");
        sqlx::query(log_status_sql::<DB>(
            &payload,
            "$3",
            "FROM messages m WHERE m.tenant_id = $1 AND m.batch_id = $2 AND m.status = $4",
        ))
        .bind(tenant)
        .bind(id)
        .bind(now)
        .bind(status.as_str())
        .execute(&mut *tx)
        .await?;
        sqlx::query(
            "INSERT INTO status_events (tenant_id, message_id, status, source, occurred_at)
             SELECT tenant_id, id, status, 'api', $3 FROM messages
             WHERE tenant_id = $1 AND batch_id = $2 AND status = $4",
        )
        .bind(tenant)
        .bind(id)
        .bind(now)
        .bind(status.as_str())
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Self::batch_from_row(&row).map(Some)
    }

    /// Cancels batch `id`: every message not yet claimed (status `queued`, its queue entry not
    /// leased) becomes `canceled` with an event, and its queue entry goes, in one transaction.
    /// A message a dispatcher holds is left to finish. `None` when there is no such batch.
    async fn cancel_batch(
        pool: &Pool<DB>,
        tenant: &str,
        id: &str,
        now: i64,
    ) -> Result<Option<Canceled>> {
        let mut tx = pool.begin_with(DB::BEGIN).await?;
        let row = sqlx::query(
            "UPDATE batches SET status = 'canceled', canceled_at = COALESCE(canceled_at, $3),
                 updated_at = $3
             WHERE tenant_id = $1 AND id = $2
             RETURNING *",
        )
        .bind(tenant)
        .bind(id)
        .bind(now)
        .fetch_optional(&mut *tx)
        .await?;
        let Some(row) = row else {
            return Ok(None);
        };
        // Queue entries first, as a claim takes them (entry, then message): a claim in flight
        // either holds the entry (leased, so it is kept here) or finds it gone.
        sqlx::query(
            "DELETE FROM queue_entries
             WHERE tenant_id = $1 AND lease_owner IS NULL
               AND message_id IN (SELECT id FROM messages WHERE tenant_id = $1 AND batch_id = $2)",
        )
        .bind(tenant)
        .bind(id)
        .execute(&mut *tx)
        .await?;
        sqlx::query(
            "UPDATE messages SET status = 'canceled', updated_at = $3
             WHERE tenant_id = $1 AND batch_id = $2
               AND status IN ('draft', 'queued', 'scheduled')
               AND NOT EXISTS (SELECT 1 FROM queue_entries q WHERE q.message_id = messages.id)",
        )
        .bind(tenant)
        .bind(id)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        // The messages this call canceled are the canceled ones without their event yet.
        let canceled: i64 = sqlx::query(
            "SELECT COUNT(*) AS n FROM messages
             WHERE tenant_id = $1 AND batch_id = $2 AND status = 'canceled'
               AND NOT EXISTS (SELECT 1 FROM status_events e
                   WHERE e.tenant_id = $1 AND e.message_id = messages.id
                     AND e.status = 'canceled')",
        )
        .bind(tenant)
        .bind(id)
        .fetch_one(&mut *tx)
        .await?
        .try_get("n")?;
        // Logged first: the log's entry reads the previous status from the history.
        let payload =
            status_payload::<DB>("'canceled'", PREVIOUS_STATUS, "NULL", "NULL", "'api'", "$3");
        sqlx::query(log_status_sql::<DB>(
            &payload,
            "$3",
            "FROM messages m
             WHERE m.tenant_id = $1 AND m.batch_id = $2 AND m.status = 'canceled'
               AND NOT EXISTS (SELECT 1 FROM status_events e
                   WHERE e.tenant_id = $1 AND e.message_id = m.id AND e.status = 'canceled')",
        ))
        .bind(tenant)
        .bind(id)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        sqlx::query(
            "INSERT INTO status_events (tenant_id, message_id, status, source, occurred_at)
             SELECT tenant_id, id, 'canceled', 'api', $3 FROM messages
             WHERE tenant_id = $1 AND batch_id = $2 AND status = 'canceled'
               AND NOT EXISTS (SELECT 1 FROM status_events e
                   WHERE e.tenant_id = $1 AND e.message_id = messages.id
                     AND e.status = 'canceled')",
        )
        .bind(tenant)
        .bind(id)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        Self::release_batch_holds(&mut tx, tenant, id, now).await?;
        tx.commit().await?;
        Ok(Some(Canceled {
            batch: Self::batch_from_row(&row)?,
            messages: u64::try_from(canceled).unwrap_or_default(),
        }))
    }
}

/// One message row of a chunk as SQLite's `json_each` reads it: a JSON array, its elements in
/// the order [`insert_batch_messages_json`] picks them with `->>`.
#[derive(serde::Serialize)]
struct JsonRow<'a>(
    &'a str,
    &'a str,
    Option<&'a str>,
    &'a str,
    Option<&'a str>,
    &'a str,
    i32,
    i32,
    &'a str,
    i32,
    Option<&'a str>,
    Option<&'a str>,
    Option<&'a str>,
    Option<String>,
    i64,
    &'a str,
    Option<&'a str>,
    Option<i64>,
);

/// SQLite's batch insert: the whole chunk in one statement, bound as one JSON array of rows
/// that `json_each` turns back into rows, and the `draft` events (history and log) from two
/// more statements bound with a JSON array of the ids inserted.
///
/// Why not multi-row `VALUES`: SQLite looks a bound parameter up by a linear scan of the
/// statement's parameters, so binding a statement of p parameters costs O(p²); at 1,000 rows of
/// 20 parameters that was three quarters of a 100,000-row `/send-bulk` (measured with `perf`).
async fn insert_batch_messages_json(
    pool: &SqlitePool,
    tenant: &str,
    batch: &str,
    messages: &[NewMessage],
    dedupe: bool,
) -> Result<Option<ChunkInserted>> {
    let mut tx = pool.begin_with(Sqlite::BEGIN).await?;
    if !Queries::<Sqlite>::still_draft(&mut tx, tenant, batch).await? {
        return Ok(None);
    }
    if messages.is_empty() {
        tx.commit().await?;
        return Ok(Some(ChunkInserted::default()));
    }
    let rows: Vec<JsonRow<'_>> = messages
        .iter()
        .map(|new| {
            JsonRow(
                new.id.as_str(),
                new.to_number.as_str(),
                new.sender.as_deref(),
                new.body.as_str(),
                new.template_id.as_deref(),
                new.encoding.as_str(),
                db_int(new.segments),
                db_int(new.units),
                new.provider.as_str(),
                db_int(new.max_attempts),
                new.customer_id.as_deref(),
                new.order_id.as_deref(),
                new.reservation_id.as_deref(),
                new.metadata.as_ref().map(serde_json::Value::to_string),
                new.now,
                new.category.as_str(),
                dedupe.then_some(new.to_number.as_str()),
                new.template_version,
            )
        })
        .collect();
    let rows = serde_json::to_string(&rows).map_err(|e| StoreError::Corrupt(e.to_string()))?;
    // `WHERE true`: SQLite's grammar needs it before `ON CONFLICT` in an `INSERT … SELECT`.
    let ids: Vec<(String, i64)> = sqlx::query_as(
        "INSERT INTO messages (id, tenant_id, to_number, sender, body, template_id, encoding,
             segments, units, provider, max_attempts, customer_id, order_id, reservation_id,
             metadata, created_at, category, batch_id, batch_recipient, template_version,
             status, attempts, updated_at)
         SELECT value ->> 0, $2, value ->> 1, value ->> 2, value ->> 3, value ->> 4,
             value ->> 5, value ->> 6, value ->> 7, value ->> 8, value ->> 9, value ->> 10,
             value ->> 11, value ->> 12, value ->> 13, value ->> 14, value ->> 15, $3,
             value ->> 16, value ->> 17, 'draft', 0, value ->> 14
         FROM json_each($1) WHERE true
         ON CONFLICT DO NOTHING
         RETURNING id, created_at",
    )
    .bind(rows)
    .bind(tenant)
    .bind(batch)
    .fetch_all(&mut *tx)
    .await?;
    if let Some((_, now)) = ids.first() {
        let inserted: Vec<&str> = ids.iter().map(|(id, _)| id.as_str()).collect();
        let inserted =
            serde_json::to_string(&inserted).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        sqlx::query(
            "INSERT INTO status_events (message_id, tenant_id, occurred_at, status, source)
             SELECT value, $2, $3, 'draft', 'api' FROM json_each($1)",
        )
        .bind(inserted.as_str())
        .bind(tenant)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        let payload = status_payload::<Sqlite>("'draft'", "NULL", "NULL", "NULL", "'api'", "$3");
        sqlx::query(log_status_sql::<Sqlite>(
            &payload,
            "$3",
            "FROM messages m
             WHERE m.tenant_id = $2 AND m.id IN (SELECT value FROM json_each($1))",
        ))
        .bind(inserted.as_str())
        .bind(tenant)
        .bind(now)
        .execute(&mut *tx)
        .await?;
    }
    let mut inserted: Vec<String> = ids.into_iter().map(|(id, _)| id).collect();
    let (over_budget, alerts) =
        Queries::<Sqlite>::charge_rows(&mut tx, tenant, messages, &mut inserted).await?;
    tx.commit().await?;
    super::ledger::log_alerts(&alerts);
    Ok(Some(ChunkInserted {
        inserted,
        over_budget,
    }))
}

/// PostgreSQL's batch insert: the whole chunk in one statement, each column bound once as an
/// array and turned back into rows by `UNNEST`, the `draft` events (history and log) inserted
/// by further `INSERT`s fed from the first one's `RETURNING` (so a skipped duplicate gets none). The statement text is the same for every chunk, so it is prepared once per
/// connection.
async fn insert_batch_messages_unnest(
    pool: &PgPool,
    tenant: &str,
    batch: &str,
    messages: &[NewMessage],
    dedupe: bool,
) -> Result<Option<ChunkInserted>> {
    let mut tx = pool.begin().await?;
    if !Queries::<sqlx::Postgres>::still_draft(&mut tx, tenant, batch).await? {
        return Ok(None);
    }
    if messages.is_empty() {
        tx.commit().await?;
        return Ok(Some(ChunkInserted::default()));
    }
    fn column<'m, T>(messages: &'m [NewMessage], f: impl Fn(&'m NewMessage) -> T) -> Vec<T> {
        messages.iter().map(f).collect()
    }
    let metadata: Vec<Option<String>> = column(messages, |new| {
        new.metadata.as_ref().map(serde_json::Value::to_string)
    });
    // The events' payloads are read from the insert's `RETURNING`: the rows it inserts are not
    // visible to the rest of the statement.
    let payload = status_payload::<sqlx::Postgres>(
        "'draft'",
        "NULL",
        "NULL",
        "NULL",
        "'api'",
        "m.created_at",
    );
    let ids: Vec<String> = sqlx::query_scalar(AssertSqlSafe(format!(
        "WITH rows AS (
             SELECT * FROM UNNEST($3::text[], $4::text[], $5::text[], $6::text[], $7::text[],
                 $8::text[], $9::int4[], $10::int4[], $11::text[], $12::int4[], $13::text[],
                 $14::text[], $15::text[], $16::text[], $17::int8[], $18::text[], $19::text[],
                 $20::int8[])
             AS r(id, to_number, sender, body, template_id, encoding, segments, units, provider,
                 max_attempts, customer_id, order_id, reservation_id, metadata, created_at,
                 category, batch_recipient, template_version)
         ), inserted AS (
             INSERT INTO messages (id, tenant_id, to_number, sender, body, template_id,
                 encoding, segments, units, provider, max_attempts, customer_id, order_id,
                 reservation_id, metadata, created_at, category, batch_id, batch_recipient,
                 template_version, status, attempts, updated_at)
             SELECT id, $1, to_number, sender, body, template_id, encoding, segments, units,
                 provider, max_attempts, customer_id, order_id, reservation_id, metadata,
                 created_at, category, $2, batch_recipient, template_version, 'draft', 0,
                 created_at
             FROM rows
             ON CONFLICT DO NOTHING
             RETURNING id, tenant_id, created_at, provider, to_number, sender, category, batch_id
         ), events AS (
             INSERT INTO status_events (message_id, tenant_id, occurred_at, status, source)
             SELECT id, $1, created_at, 'draft', 'api' FROM inserted
         ), logged AS (
             INSERT INTO events (tenant_id, kind, message_id, payload, created_at)
             SELECT m.tenant_id, '{MESSAGE_STATUS}', m.id, {payload}, m.created_at
             FROM inserted m
         )
         SELECT id FROM inserted"
    )))
    .bind(tenant)
    .bind(batch)
    .bind(column(messages, |new| new.id.as_str()))
    .bind(column(messages, |new| new.to_number.as_str()))
    .bind(column(messages, |new| new.sender.as_deref()))
    .bind(column(messages, |new| new.body.as_str()))
    .bind(column(messages, |new| new.template_id.as_deref()))
    .bind(column(messages, |new| new.encoding.as_str()))
    .bind(column(messages, |new| db_int(new.segments)))
    .bind(column(messages, |new| db_int(new.units)))
    .bind(column(messages, |new| new.provider.as_str()))
    .bind(column(messages, |new| db_int(new.max_attempts)))
    .bind(column(messages, |new| new.customer_id.as_deref()))
    .bind(column(messages, |new| new.order_id.as_deref()))
    .bind(column(messages, |new| new.reservation_id.as_deref()))
    .bind(metadata)
    .bind(column(messages, |new| new.now))
    .bind(column(messages, |new| new.category.as_str()))
    .bind(column(messages, |new| {
        dedupe.then_some(new.to_number.as_str())
    }))
    .bind(column(messages, |new| new.template_version))
    .fetch_all(&mut *tx)
    .await?;
    let mut inserted = ids;
    let (over_budget, alerts) =
        Queries::<sqlx::Postgres>::charge_rows(&mut tx, tenant, messages, &mut inserted).await?;
    tx.commit().await?;
    super::ledger::log_alerts(&alerts);
    Ok(Some(ChunkInserted {
        inserted,
        over_budget,
    }))
}

impl Store {
    /// Stores a new batch.
    pub async fn create_batch(&self, batch: &Batch) -> Result<()> {
        match &self.inner.backend {
            Backend::Sqlite { writer, .. } => Queries::create_batch(writer, batch).await,
            Backend::Postgres(pool) => Queries::create_batch(pool, batch).await,
        }
    }

    /// Reads one batch.
    pub async fn get_batch(&self, tenant: &TenantId, id: &str) -> Result<Option<Batch>> {
        match &self.inner.backend {
            Backend::Sqlite { reader, .. } => Queries::get_batch(reader, tenant.as_str(), id).await,
            Backend::Postgres(pool) => Queries::get_batch(pool, tenant.as_str(), id).await,
        }
    }

    /// Lists a tenant's batches newest first (keyset pagination on `(created_at, id)`).
    pub async fn list_batches(
        &self,
        tenant: &TenantId,
        limit: Option<u32>,
        cursor: Option<&str>,
    ) -> Result<Page<Batch>> {
        let tenant = tenant.as_str();
        match &self.inner.backend {
            Backend::Sqlite { reader, .. } => {
                Queries::list_batches(reader, tenant, limit, cursor).await
            }
            Backend::Postgres(pool) => Queries::list_batches(pool, tenant, limit, cursor).await,
        }
    }

    /// Lists a batch's messages in the order they were accepted (keyset pagination).
    pub async fn list_batch_messages(
        &self,
        tenant: &TenantId,
        batch: &str,
        limit: Option<u32>,
        cursor: Option<&str>,
    ) -> Result<Page<Message>> {
        let tenant = tenant.as_str();
        match &self.inner.backend {
            Backend::Sqlite { reader, .. } => {
                Queries::list_batch_messages(reader, tenant, batch, limit, cursor).await
            }
            Backend::Postgres(pool) => {
                Queries::list_batch_messages(pool, tenant, batch, limit, cursor).await
            }
        }
    }

    /// Counts a batch's messages by status.
    pub async fn batch_counts(&self, tenant: &TenantId, batch: &str) -> Result<BatchCounts> {
        match &self.inner.backend {
            Backend::Sqlite { reader, .. } => {
                Queries::batch_counts(reader, tenant.as_str(), batch).await
            }
            Backend::Postgres(pool) => Queries::batch_counts(pool, tenant.as_str(), batch).await,
        }
    }

    /// Inserts one chunk of draft batch `batch`'s messages in one transaction (see the module
    /// docs), without queue entries: [`Store::send_batch`] queues them. Their tenant and batch
    /// are `tenant` and `batch`, whatever the rows say. A recipient the batch already has is
    /// skipped when `dedupe` is set. Returns the ids inserted, or `None` when the batch is no
    /// longer a draft.
    pub async fn insert_batch_messages(
        &self,
        tenant: &TenantId,
        batch: &str,
        messages: &[NewMessage],
        dedupe: bool,
    ) -> Result<Option<ChunkInserted>> {
        let tenant = tenant.as_str();
        let result = match &self.inner.backend {
            Backend::Sqlite { writer, .. } => {
                insert_batch_messages_json(writer, tenant, batch, messages, dedupe).await
            }
            Backend::Postgres(pool) => {
                insert_batch_messages_unnest(pool, tenant, batch, messages, dedupe).await
            }
        };
        self.events_written();
        result
    }

    /// Queues a draft batch's messages at `due_at` and marks it sending, in one transaction
    /// that wakes the dispatchers once, charging them as `drafts` says (see
    /// [`DraftCharges`]); `None` when it is not a draft.
    pub async fn send_batch(
        &self,
        tenant: &TenantId,
        id: &str,
        due_at: i64,
        now: i64,
        drafts: &DraftCharges,
    ) -> Result<Option<Batch>> {
        let tenant = tenant.as_str();
        let sent = match &self.inner.backend {
            Backend::Sqlite { writer, .. } => {
                Queries::send_batch(writer, tenant, id, due_at, now, drafts).await
            }
            Backend::Postgres(pool) => {
                Queries::send_batch(pool, tenant, id, due_at, now, drafts).await
            }
        }?;
        if sent.is_some() {
            self.queue_written();
            self.events_written();
        }
        Ok(sent)
    }

    /// Cancels a batch's unclaimed messages in one transaction; `None` when there is no such
    /// batch.
    pub async fn cancel_batch(
        &self,
        tenant: &TenantId,
        id: &str,
        now: i64,
    ) -> Result<Option<Canceled>> {
        let result = match &self.inner.backend {
            Backend::Sqlite { writer, .. } => {
                Queries::cancel_batch(writer, tenant.as_str(), id, now).await
            }
            Backend::Postgres(pool) => Queries::cancel_batch(pool, tenant.as_str(), id, now).await,
        };
        self.events_written();
        result
    }
}
