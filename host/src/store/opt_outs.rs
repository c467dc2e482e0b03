//! Reading the opt-out list and the inbound messages for people: the opt-outs in force (per
//! number and paginated), their counts, the audit trail in pages for the compliance export, the
//! figures of the opt-out rate, and the inbound listing.
//!
//! Writes to the list (`opt_out`, `opt_in`) stay in `records.rs` with the check the pipeline
//! runs before every send; this file only reads. Listings are keyset-paginated, newest first,
//! like the messages list; the export walks the audit trail by its sequence number, oldest
//! first, so a page never repeats or skips an event however many arrive meanwhile.

use std::collections::BTreeMap;

use sqlx::{ColumnIndex, Decode, Executor, Pool, Row as _, Type};

use super::dialect::{Dialect, Queries, Value};
use super::error::{Result, StoreError};
use super::ids::{decode_cursor, encode_cursor};
use super::model::{Category, InboundMessage, Keyword, OptOutEvent, OptOutMethod, Page, TenantId};
use super::records::method;
use super::shared::{category, name_of, page_size, paged, tenant, word};
use super::{Backend, Store};

/// An opt-out in force.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct OptOut {
    /// The phone number, E.164.
    pub phone_number: String,
    /// The category (`all` for every category).
    pub category: Category,
    /// How it was made.
    pub method: OptOutMethod,
    /// The message behind it (see [`OptOutEvent::source_message_id`]).
    pub source_message_id: Option<String>,
    /// Why, if known.
    pub reason: Option<String>,
    /// The caller's customer reference, when the API was given one.
    pub customer_id: Option<String>,
    /// Since when.
    pub created_at: i64,
}

/// Which opt-outs [`Store::list_opt_outs`] returns.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OptOutFilter {
    /// Only of this category.
    pub category: Option<Category>,
    /// Only made this way.
    pub method: Option<OptOutMethod>,
    /// Only made at or after this time.
    pub since: Option<i64>,
    /// Page size: 50 when `None`, at most 500.
    pub limit: Option<u32>,
    /// The `next_cursor` of the previous page.
    pub cursor: Option<String>,
}

/// The opt-outs in force, counted.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct OptOutCounts {
    /// Opt-outs in force.
    pub total: u64,
    /// Distinct numbers with at least one opt-out in force.
    pub numbers: u64,
    /// Opt-outs per category name.
    pub by_category: BTreeMap<String, u64>,
    /// Opt-outs per method (the list's `source`), every method named, zeros included.
    pub by_source: BTreeMap<&'static str, u64>,
}

/// What happened to the opt-out list, and how many numbers were messaged, in a period.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct OptOutActivity {
    /// Opt-out events in the period.
    pub opt_outs: u64,
    /// Distinct numbers that opted out of something in the period.
    pub numbers_opted_out: u64,
    /// Opt-in events in the period.
    pub opt_ins: u64,
    /// Distinct numbers sent a message in the period (keyword confirmations left out).
    pub recipients: u64,
}

/// Which inbound messages [`Store::list_inbound`] returns.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct InboundFilter {
    /// Only from this number.
    pub from_number: Option<String>,
    /// Only those that matched this keyword.
    pub keyword: Option<Keyword>,
    /// Only received at or after this time.
    pub received_from: Option<i64>,
    /// Only received before this time.
    pub received_to: Option<i64>,
    /// Page size: 50 when `None`, at most 500.
    pub limit: Option<u32>,
    /// The `next_cursor` of the previous page.
    pub cursor: Option<String>,
}

/// Reads a stored count.
fn count(value: i64) -> u64 {
    u64::try_from(value).unwrap_or(0)
}

/// Decodes a listing's cursor; one whose key holds a NUL character (which PostgreSQL cannot
/// compare with) was not made by Herald.
fn cursor(text: &str) -> Result<(i64, String)> {
    let (at, key) = decode_cursor(text)?;
    if key.contains('\0') {
        return Err(StoreError::InvalidCursor);
    }
    Ok((at, key))
}

impl<DB: Dialect> Queries<DB>
where
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
    for<'a> &'a str: Value<'a, DB> + ColumnIndex<DB::Row>,
    for<'a> Option<&'a str>: Value<'a, DB>,
    String: for<'a> Decode<'a, DB> + Type<DB>,
    i64: for<'a> Value<'a, DB>,
    Option<i64>: for<'a> Value<'a, DB>,
    bool: for<'a> Value<'a, DB>,
{
    fn opt_out_from_row(row: &DB::Row) -> Result<OptOut> {
        Ok(OptOut {
            phone_number: row.try_get("phone_number")?,
            category: category(row.try_get("category")?)?,
            method: method(row.try_get("method")?)?,
            source_message_id: row.try_get("source_message_id")?,
            reason: row.try_get("reason")?,
            customer_id: row.try_get("customer_id")?,
            created_at: row.try_get("created_at")?,
        })
    }

    fn inbound_from_row(row: &DB::Row) -> Result<InboundMessage> {
        Ok(InboundMessage {
            id: row.try_get("id")?,
            tenant_id: tenant(row.try_get("tenant_id")?)?,
            provider: row.try_get("provider")?,
            provider_message_id: row.try_get("provider_message_id")?,
            from_number: row.try_get("from_number")?,
            to_number: row.try_get("to_number")?,
            body: row.try_get("body")?,
            keyword: row
                .try_get::<Option<String>, _>("keyword")?
                .map(|name| word(&name))
                .transpose()?,
            received_at: row.try_get("received_at")?,
        })
    }

    /// The opt-outs of one number in force, by category.
    async fn opt_outs_of(pool: &Pool<DB>, tenant: &str, phone: &str) -> Result<Vec<OptOut>> {
        let rows = sqlx::query(
            "SELECT * FROM opt_outs WHERE tenant_id = $1 AND phone_number = $2 ORDER BY category",
        )
        .bind(tenant)
        .bind(phone)
        .fetch_all(pool)
        .await?;
        rows.iter().map(Self::opt_out_from_row).collect()
    }

    /// Every category the number's audit trail mentions, by name.
    async fn categories_in_trail(
        pool: &Pool<DB>,
        tenant: &str,
        phone: &str,
    ) -> Result<Vec<Category>> {
        let rows = sqlx::query(
            "SELECT DISTINCT category FROM opt_out_events
             WHERE tenant_id = $1 AND phone_number = $2 ORDER BY category",
        )
        .bind(tenant)
        .bind(phone)
        .fetch_all(pool)
        .await?;
        rows.iter()
            .map(|row| category(row.try_get("category")?))
            .collect()
    }

    /// One page of the opt-outs in force, newest first (keyset on `(created_at, phone_number,
    /// category)`).
    async fn list_opt_outs(
        pool: &Pool<DB>,
        tenant: &str,
        filter: &OptOutFilter,
    ) -> Result<Page<OptOut>> {
        let after = filter.cursor.as_deref().map(cursor).transpose()?;
        let after = after
            .map(|(created_at, key)| {
                let (phone, category) = key.split_once('/').ok_or(StoreError::InvalidCursor)?;
                Ok::<_, StoreError>((created_at, phone.to_owned(), category.to_owned()))
            })
            .transpose()?;
        let limit = page_size(filter.limit);
        let rows = sqlx::query(
            "SELECT * FROM opt_outs
             WHERE tenant_id = $1
               AND ($2 IS NULL OR category = $2)
               AND ($3 IS NULL OR method = $3)
               AND ($4 IS NULL OR created_at >= $4)
               AND ($5 IS NULL OR created_at < $5
                    OR (created_at = $5 AND (phone_number < $6
                        OR (phone_number = $6 AND category < $7))))
             ORDER BY created_at DESC, phone_number DESC, category DESC
             LIMIT $8",
        )
        .bind(tenant)
        .bind(filter.category.as_ref().map(Category::as_str))
        .bind(filter.method.map(OptOutMethod::as_str))
        .bind(filter.since)
        .bind(after.as_ref().map(|(created_at, _, _)| *created_at))
        .bind(after.as_ref().map(|(_, phone, _)| phone.as_str()))
        .bind(after.as_ref().map(|(_, _, category)| category.as_str()))
        .bind(i64::from(limit) + 1)
        .fetch_all(pool)
        .await?;
        let items = rows
            .iter()
            .map(Self::opt_out_from_row)
            .collect::<Result<Vec<_>>>()?;
        Ok(paged(items, limit, |last| {
            let key = format!("{}/{}", last.phone_number, last.category);
            encode_cursor(last.created_at, &key)
        }))
    }

    /// The opt-outs in force, counted by category and by method.
    async fn count_opt_outs(pool: &Pool<DB>, tenant: &str) -> Result<OptOutCounts> {
        let totals = sqlx::query(
            "SELECT COUNT(*) AS total, COUNT(DISTINCT phone_number) AS numbers
             FROM opt_outs WHERE tenant_id = $1",
        )
        .bind(tenant)
        .fetch_one(pool)
        .await?;
        let by_category = sqlx::query(
            "SELECT category, COUNT(*) AS n FROM opt_outs WHERE tenant_id = $1
             GROUP BY category ORDER BY category",
        )
        .bind(tenant)
        .fetch_all(pool)
        .await?;
        let by_method = sqlx::query(
            "SELECT method, COUNT(*) AS n FROM opt_outs WHERE tenant_id = $1 GROUP BY method",
        )
        .bind(tenant)
        .fetch_all(pool)
        .await?;
        let mut by_source: BTreeMap<&'static str, u64> = OptOutMethod::ALL
            .into_iter()
            .map(|m| (m.as_str(), 0))
            .collect();
        for row in &by_method {
            let found = method(row.try_get("method")?)?;
            by_source.insert(found.as_str(), count(row.try_get("n")?));
        }
        Ok(OptOutCounts {
            total: count(totals.try_get("total")?),
            numbers: count(totals.try_get("numbers")?),
            by_category: by_category
                .iter()
                .map(|row| Ok((row.try_get("category")?, count(row.try_get("n")?))))
                .collect::<Result<_>>()?,
            by_source,
        })
    }

    /// Opt-out and opt-in events in `[from, to)` (`recipients` is left 0).
    async fn opt_out_activity(
        pool: &Pool<DB>,
        tenant: &str,
        from: i64,
        to: i64,
    ) -> Result<OptOutActivity> {
        let events = sqlx::query(
            "SELECT
                 COUNT(CASE WHEN action = 'opt_out' THEN 1 END) AS opt_outs,
                 COUNT(DISTINCT CASE WHEN action = 'opt_out' THEN phone_number END) AS numbers,
                 COUNT(CASE WHEN action = 'opt_in' THEN 1 END) AS opt_ins
             FROM opt_out_events
             WHERE tenant_id = $1 AND occurred_at >= $2 AND occurred_at < $3",
        )
        .bind(tenant)
        .bind(from)
        .bind(to)
        .fetch_one(pool)
        .await?;
        Ok(OptOutActivity {
            opt_outs: count(events.try_get("opt_outs")?),
            numbers_opted_out: count(events.try_get("numbers")?),
            opt_ins: count(events.try_get("opt_ins")?),
            recipients: 0,
        })
    }

    /// Distinct numbers sent a message in `[from, to)`, keyword confirmations left out.
    async fn count_recipients(pool: &Pool<DB>, tenant: &str, from: i64, to: i64) -> Result<u64> {
        let row = sqlx::query(
            "SELECT COUNT(DISTINCT to_number) AS n FROM messages
             WHERE tenant_id = $1 AND created_at >= $2 AND created_at < $3
               AND category <> 'compliance'",
        )
        .bind(tenant)
        .bind(from)
        .bind(to)
        .fetch_one(pool)
        .await?;
        Ok(count(row.try_get("n")?))
    }

    /// Up to `limit` audit events after sequence number `after`, oldest first, occurred in
    /// `[from, to)` where given.
    async fn opt_out_events_after(
        pool: &Pool<DB>,
        tenant: &str,
        after: i64,
        window: (Option<i64>, Option<i64>),
        limit: u32,
    ) -> Result<Vec<OptOutEvent>> {
        let rows = sqlx::query(
            "SELECT * FROM opt_out_events
             WHERE tenant_id = $1 AND id > $2
               AND ($3 IS NULL OR occurred_at >= $3)
               AND ($4 IS NULL OR occurred_at < $4)
             ORDER BY id
             LIMIT $5",
        )
        .bind(tenant)
        .bind(after)
        .bind(window.0)
        .bind(window.1)
        .bind(i64::from(limit))
        .fetch_all(pool)
        .await?;
        rows.iter().map(Self::opt_out_event_from_row).collect()
    }

    /// One page of inbound messages, newest first (keyset on `(received_at, id)`).
    async fn list_inbound(
        pool: &Pool<DB>,
        tenant: &str,
        filter: &InboundFilter,
    ) -> Result<Page<InboundMessage>> {
        let after = filter.cursor.as_deref().map(cursor).transpose()?;
        let limit = page_size(filter.limit);
        let rows = sqlx::query(
            "SELECT * FROM inbound_messages
             WHERE tenant_id = $1
               AND ($2 IS NULL OR from_number = $2)
               AND ($3 IS NULL OR keyword = $3)
               AND ($4 IS NULL OR received_at >= $4)
               AND ($5 IS NULL OR received_at < $5)
               AND ($6 IS NULL OR received_at < $6 OR (received_at = $6 AND id < $7))
             ORDER BY received_at DESC, id DESC
             LIMIT $8",
        )
        .bind(tenant)
        .bind(filter.from_number.as_deref())
        .bind(filter.keyword.as_ref().map(name_of).as_deref())
        .bind(filter.received_from)
        .bind(filter.received_to)
        .bind(after.as_ref().map(|(received_at, _)| *received_at))
        .bind(after.as_ref().map(|(_, id)| id.as_str()))
        .bind(i64::from(limit) + 1)
        .fetch_all(pool)
        .await?;
        let items = rows
            .iter()
            .map(Self::inbound_from_row)
            .collect::<Result<Vec<_>>>()?;
        Ok(paged(items, limit, |last| {
            encode_cursor(last.received_at, &last.id)
        }))
    }
}

impl Store {
    /// The opt-outs in force for any of `phones` at `tenant`, as (number, category) pairs: one
    /// read for a whole chunk of a bulk batch, where a read per row would cost a round trip each.
    pub async fn opt_outs_among(
        &self,
        tenant: &TenantId,
        phones: &[&str],
    ) -> Result<Vec<(String, String)>> {
        if phones.is_empty() {
            return Ok(Vec::new());
        }
        let phones =
            serde_json::to_string(phones).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        let rows = match &self.inner.backend {
            Backend::Sqlite { reader, .. } => {
                sqlx::query_as(
                    "SELECT phone_number, category FROM opt_outs
                     WHERE tenant_id = $1 AND phone_number IN (SELECT value FROM json_each($2))",
                )
                .bind(tenant.as_str())
                .bind(phones)
                .fetch_all(reader)
                .await?
            }
            Backend::Postgres(pool) => {
                sqlx::query_as(
                    "SELECT phone_number, category FROM opt_outs
                     WHERE tenant_id = $1
                       AND phone_number IN (SELECT jsonb_array_elements_text($2::text::jsonb))",
                )
                .bind(tenant.as_str())
                .bind(phones)
                .fetch_all(pool)
                .await?
            }
        };
        Ok(rows)
    }

    /// The opt-outs of `phone` in force, by category, and every category its audit trail
    /// mentions (opt-outs since lifted included).
    pub async fn opt_out_state(
        &self,
        tenant: &TenantId,
        phone: &str,
    ) -> Result<(Vec<OptOut>, Vec<Category>)> {
        let tenant = tenant.as_str();
        match &self.inner.backend {
            Backend::Sqlite { reader, .. } => Ok((
                Queries::opt_outs_of(reader, tenant, phone).await?,
                Queries::categories_in_trail(reader, tenant, phone).await?,
            )),
            Backend::Postgres(pool) => Ok((
                Queries::opt_outs_of(pool, tenant, phone).await?,
                Queries::categories_in_trail(pool, tenant, phone).await?,
            )),
        }
    }

    /// Lists a tenant's opt-outs in force newest first, one page at a time.
    pub async fn list_opt_outs(
        &self,
        tenant: &TenantId,
        filter: &OptOutFilter,
    ) -> Result<Page<OptOut>> {
        match &self.inner.backend {
            Backend::Sqlite { reader, .. } => {
                Queries::list_opt_outs(reader, tenant.as_str(), filter).await
            }
            Backend::Postgres(pool) => Queries::list_opt_outs(pool, tenant.as_str(), filter).await,
        }
    }

    /// Counts a tenant's opt-outs in force, by category and by method.
    pub async fn count_opt_outs(&self, tenant: &TenantId) -> Result<OptOutCounts> {
        match &self.inner.backend {
            Backend::Sqlite { reader, .. } => {
                Queries::count_opt_outs(reader, tenant.as_str()).await
            }
            Backend::Postgres(pool) => Queries::count_opt_outs(pool, tenant.as_str()).await,
        }
    }

    /// Counts a tenant's opt-out and opt-in events in `[from, to)` (`recipients` is left 0; see
    /// [`Store::count_recipients`]).
    pub async fn opt_out_activity(
        &self,
        tenant: &TenantId,
        from: i64,
        to: i64,
    ) -> Result<OptOutActivity> {
        match &self.inner.backend {
            Backend::Sqlite { reader, .. } => {
                Queries::opt_out_activity(reader, tenant.as_str(), from, to).await
            }
            Backend::Postgres(pool) => {
                Queries::opt_out_activity(pool, tenant.as_str(), from, to).await
            }
        }
    }

    /// Distinct numbers the tenant sent a message in `[from, to)` (UTC ms), keyword
    /// confirmations left out: a scan of the period's messages.
    pub async fn count_recipients(&self, tenant: &TenantId, from: i64, to: i64) -> Result<u64> {
        match &self.inner.backend {
            Backend::Sqlite { reader, .. } => {
                Queries::count_recipients(reader, tenant.as_str(), from, to).await
            }
            Backend::Postgres(pool) => {
                Queries::count_recipients(pool, tenant.as_str(), from, to).await
            }
        }
    }

    /// Reads up to `limit` of a tenant's opt-out audit events after sequence number `after`
    /// (0 for the first), oldest first, limited to `window` (`[from, to)`, either end open):
    /// one page of the compliance export.
    pub async fn opt_out_events_after(
        &self,
        tenant: &TenantId,
        after: i64,
        window: (Option<i64>, Option<i64>),
        limit: u32,
    ) -> Result<Vec<OptOutEvent>> {
        let tenant = tenant.as_str();
        match &self.inner.backend {
            Backend::Sqlite { reader, .. } => {
                Queries::opt_out_events_after(reader, tenant, after, window, limit).await
            }
            Backend::Postgres(pool) => {
                Queries::opt_out_events_after(pool, tenant, after, window, limit).await
            }
        }
    }

    /// Lists a tenant's inbound messages newest first, one page at a time.
    pub async fn list_inbound(
        &self,
        tenant: &TenantId,
        filter: &InboundFilter,
    ) -> Result<Page<InboundMessage>> {
        match &self.inner.backend {
            Backend::Sqlite { reader, .. } => {
                Queries::list_inbound(reader, tenant.as_str(), filter).await
            }
            Backend::Postgres(pool) => Queries::list_inbound(pool, tenant.as_str(), filter).await,
        }
    }
}
