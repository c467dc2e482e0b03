//! The reads behind the cost and delivery reports: set-based aggregates over a tenant's
//! messages in a UTC time range, joined with their costs (`message_costs`) and their status
//! history (`status_events`). The pipeline (`pipeline/reports.rs`) folds these rows into totals
//! and groups, so every report of a period is computed from the same rows.

use sqlx::{ColumnIndex, Decode, Executor, Pool, Row as _, Type};

use super::Store;
use super::dialect::{Dialect, Queries, Value};
use super::error::Result;
use super::model::TenantId;

/// The length of a UTC day in milliseconds: `created_at / DAY_MS` is the day's number since
/// the Unix epoch on both backends (integer division of non-negative integers).
pub const DAY_MS: i64 = 86_400_000;

/// The messages of one day, provider, category, template, country, status and currency, with
/// their counts and money sums.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CostFact {
    /// Days since the Unix epoch (UTC) of the messages' acceptance.
    pub day: i64,
    /// The provider plugin.
    pub provider: String,
    /// The opt-out category.
    pub category: String,
    /// The template, if sent from one.
    pub template_id: Option<String>,
    /// The destination country (ISO 3166 alpha-2) as priced; `None` without a cost row.
    pub country: Option<String>,
    /// The current status.
    pub status: String,
    /// The currency of the money sums; `None` when none of the messages is priced.
    pub currency: Option<String>,
    /// How many messages.
    pub messages: i64,
    /// Their segments.
    pub segments: i64,
    /// The sum of their estimates in `currency`.
    pub estimated_micros: i64,
    /// The sum of their actual prices (every attempt).
    pub actual_micros: i64,
    /// The sum of their reconciled differences (actual - estimate, where both are known).
    pub difference_micros: i64,
    /// The sum of their costs: the actual price where known, else the estimate, except that a
    /// message that failed before the carrier had it or was canceled (and has no actual
    /// price) costs nothing, as its reservation was released.
    pub cost_micros: i64,
}

/// One message as the delivery metrics read it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeliveryFact {
    /// Days since the Unix epoch (UTC) of its acceptance.
    pub day: i64,
    /// The provider plugin.
    pub provider: String,
    /// The opt-out category.
    pub category: String,
    /// The template, if sent from one.
    pub template_id: Option<String>,
    /// The destination country as priced, if priced.
    pub country: Option<String>,
    /// The current status.
    pub status: String,
    /// The provider's (or Herald's) error code of a failure.
    pub error_code: Option<String>,
    /// Milliseconds from acceptance to the first `sent`, if it was sent.
    pub to_sent_ms: Option<i64>,
    /// Milliseconds from acceptance to the first `delivered`, if it was delivered.
    pub to_delivered_ms: Option<i64>,
    /// Its cost (actual price of every attempt, else the estimate; nothing when it failed or
    /// was canceled without an actual price), if priced.
    pub cost_micros: Option<i64>,
    /// The currency of `cost_micros`.
    pub currency: Option<String>,
}

/// The grouped cost facts of `[$2, $3)`: drafts are not messages yet, so they are left out.
const COST_FACTS: &str = "
    SELECT m.created_at / 86400000 AS day, m.provider, m.category, m.template_id, c.country,
           m.status, COALESCE(c.actual_currency, c.currency) AS currency,
           COUNT(*) AS messages,
           CAST(SUM(m.segments) AS BIGINT) AS segments,
           CAST(SUM(CASE WHEN c.actual_currency IS NULL OR c.actual_currency = c.currency
                         THEN c.estimate_micros END) AS BIGINT) AS estimated,
           CAST(SUM(c.actual_micros) AS BIGINT) AS actual,
           CAST(SUM(c.difference_micros) AS BIGINT) AS difference,
           CAST(SUM(COALESCE(c.actual_micros, CASE WHEN m.status IN ('failed', 'canceled') THEN 0
                         ELSE c.estimate_micros END)) AS BIGINT) AS cost
    FROM messages m
    LEFT JOIN message_costs c ON c.tenant_id = m.tenant_id AND c.message_id = m.id
    WHERE m.tenant_id = $1 AND m.created_at >= $2 AND m.created_at < $3 AND m.status <> 'draft'
    GROUP BY m.created_at / 86400000, m.provider, m.category, m.template_id, c.country,
             m.status, COALESCE(c.actual_currency, c.currency)";

/// The rollup rows of days `[$2, $3)`: what [`COST_FACTS`] would sum without its template and
/// country, kept by the triggers of migration 0013 (rows whose changes cancelled out are
/// skipped).
const ROLLUP_FACTS: &str = "
    SELECT day, provider, category, status, currency, messages, segments, estimated_micros,
           actual_micros, difference_micros, cost_micros
    FROM rollups
    WHERE tenant_id = $1 AND day >= $2 AND day < $3 AND status <> 'draft'
      AND (messages <> 0 OR segments <> 0 OR estimated_micros <> 0 OR actual_micros <> 0
           OR difference_micros <> 0 OR cost_micros <> 0)";

/// One row per message of `[$2, $3)` with its first `sent` and `delivered` times.
const DELIVERY_FACTS: &str = "
    SELECT m.created_at / 86400000 AS day, m.provider, m.category, m.template_id, c.country,
           m.status, m.error_code,
           (SELECT MIN(e.occurred_at) FROM status_events e
             WHERE e.tenant_id = m.tenant_id AND e.message_id = m.id AND e.status = 'sent')
             - m.created_at AS to_sent,
           (SELECT MIN(e.occurred_at) FROM status_events e
             WHERE e.tenant_id = m.tenant_id AND e.message_id = m.id AND e.status = 'delivered')
             - m.created_at AS to_delivered,
           COALESCE(c.actual_micros, CASE WHEN m.status IN ('failed', 'canceled') THEN 0
                    ELSE c.estimate_micros END) AS cost,
           COALESCE(c.actual_currency, c.currency) AS currency
    FROM messages m
    LEFT JOIN message_costs c ON c.tenant_id = m.tenant_id AND c.message_id = m.id
    WHERE m.tenant_id = $1 AND m.created_at >= $2 AND m.created_at < $3 AND m.status <> 'draft'";

impl<DB: Dialect> Queries<DB>
where
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
    for<'a> &'a str: Value<'a, DB> + ColumnIndex<DB::Row>,
    String: for<'a> Decode<'a, DB> + Type<DB>,
    Option<String>: for<'a> Decode<'a, DB> + Type<DB>,
    i64: for<'a> Value<'a, DB>,
    Option<i64>: for<'a> Value<'a, DB>,
{
    async fn cost_facts(
        pool: &Pool<DB>,
        tenant: &str,
        start: i64,
        end: i64,
    ) -> Result<Vec<CostFact>> {
        let rows = sqlx::query(COST_FACTS)
            .bind(tenant)
            .bind(start)
            .bind(end)
            .fetch_all(pool)
            .await?;
        rows.iter()
            .map(|row| {
                let sum = |name: &str| -> Result<i64> {
                    Ok(row.try_get::<Option<i64>, _>(name)?.unwrap_or(0))
                };
                Ok(CostFact {
                    day: row.try_get("day")?,
                    provider: row.try_get("provider")?,
                    category: row.try_get("category")?,
                    template_id: row.try_get("template_id")?,
                    country: row.try_get("country")?,
                    status: row.try_get("status")?,
                    currency: row.try_get("currency")?,
                    messages: row.try_get("messages")?,
                    segments: sum("segments")?,
                    estimated_micros: sum("estimated")?,
                    actual_micros: sum("actual")?,
                    difference_micros: sum("difference")?,
                    cost_micros: sum("cost")?,
                })
            })
            .collect()
    }

    async fn rollup_facts(
        pool: &Pool<DB>,
        tenant: &str,
        first_day: i64,
        end_day: i64,
    ) -> Result<Vec<CostFact>> {
        let rows = sqlx::query(ROLLUP_FACTS)
            .bind(tenant)
            .bind(first_day)
            .bind(end_day)
            .fetch_all(pool)
            .await?;
        rows.iter()
            .map(|row| {
                let currency: String = row.try_get("currency")?;
                Ok(CostFact {
                    day: row.try_get("day")?,
                    provider: row.try_get("provider")?,
                    category: row.try_get("category")?,
                    template_id: None,
                    country: None,
                    status: row.try_get("status")?,
                    // '' is how the rollups key unpriced messages (a key column cannot be NULL).
                    currency: (!currency.is_empty()).then_some(currency),
                    messages: row.try_get("messages")?,
                    segments: row.try_get("segments")?,
                    estimated_micros: row.try_get("estimated_micros")?,
                    actual_micros: row.try_get("actual_micros")?,
                    difference_micros: row.try_get("difference_micros")?,
                    cost_micros: row.try_get("cost_micros")?,
                })
            })
            .collect()
    }

    async fn delivery_facts(
        pool: &Pool<DB>,
        tenant: &str,
        start: i64,
        end: i64,
    ) -> Result<Vec<DeliveryFact>> {
        let rows = sqlx::query(DELIVERY_FACTS)
            .bind(tenant)
            .bind(start)
            .bind(end)
            .fetch_all(pool)
            .await?;
        rows.iter()
            .map(|row| {
                Ok(DeliveryFact {
                    day: row.try_get("day")?,
                    provider: row.try_get("provider")?,
                    category: row.try_get("category")?,
                    template_id: row.try_get("template_id")?,
                    country: row.try_get("country")?,
                    status: row.try_get("status")?,
                    error_code: row.try_get("error_code")?,
                    to_sent_ms: row.try_get("to_sent")?,
                    to_delivered_ms: row.try_get("to_delivered")?,
                    cost_micros: row.try_get("cost")?,
                    currency: row.try_get("currency")?,
                })
            })
            .collect()
    }
}

impl Store {
    /// The tenant's messages accepted in `[start, end)` (UTC ms), grouped by day, provider,
    /// category, template, country, status and currency, with counts and money sums.
    pub async fn cost_facts(
        &self,
        tenant: &TenantId,
        start: i64,
        end: i64,
    ) -> Result<Vec<CostFact>> {
        match &self.inner.backend {
            super::Backend::Sqlite { reader, .. } => {
                Queries::cost_facts(reader, tenant.as_str(), start, end).await
            }
            super::Backend::Postgres(pool) => {
                Queries::cost_facts(pool, tenant.as_str(), start, end).await
            }
        }
    }

    /// The rollups of the tenant's messages accepted on UTC days `[first_day, end_day)` (days
    /// since the epoch): [`CostFact`]s without template or country, read from the rollup table
    /// instead of the messages.
    pub async fn rollup_facts(
        &self,
        tenant: &TenantId,
        first_day: i64,
        end_day: i64,
    ) -> Result<Vec<CostFact>> {
        match &self.inner.backend {
            super::Backend::Sqlite { reader, .. } => {
                Queries::rollup_facts(reader, tenant.as_str(), first_day, end_day).await
            }
            super::Backend::Postgres(pool) => {
                Queries::rollup_facts(pool, tenant.as_str(), first_day, end_day).await
            }
        }
    }

    /// The tenant's messages accepted in `[start, end)` (UTC ms), one row each, with their
    /// times to `sent` and `delivered`, failure code and cost.
    pub async fn delivery_facts(
        &self,
        tenant: &TenantId,
        start: i64,
        end: i64,
    ) -> Result<Vec<DeliveryFact>> {
        match &self.inner.backend {
            super::Backend::Sqlite { reader, .. } => {
                Queries::delivery_facts(reader, tenant.as_str(), start, end).await
            }
            super::Backend::Postgres(pool) => {
                Queries::delivery_facts(pool, tenant.as_str(), start, end).await
            }
        }
    }
}
