//! The reads behind the cost and delivery reports. Both read rollups that database triggers
//! keep in the transaction of every change (migration 0014), never the period's messages, so a
//! report's cost grows with the days and distinct keys of its period, not with its messages:
//!
//! - `rollups`: counts and money per tenant × UTC day × provider × category × template ×
//!   country × status × failure code × currency;
//! - `latency_rollups`: histograms of the times from acceptance to a message's first `sent` and
//!   first `delivered`, per tenant × day × one dimension's value.
//!
//! On PostgreSQL the triggers append to `rollup_deltas` and `latency_deltas` instead (migration
//! 0016: concurrent writers never wait on a shared rollup row), and [`fold_deltas`], run about
//! once a second by the store, adds them into the rollups. Reads go through the views
//! `rollups_now` and `latency_now`, which on PostgreSQL add the deltas not folded yet.
//!
//! The pipeline (`pipeline/reports.rs`, `pipeline/delivery_metrics.rs`) folds these rows into
//! totals and groups, so every report of a period is computed from the same rows.

use sqlx::{AssertSqlSafe, ColumnIndex, Decode, Executor, Pool, Row as _, Type};

use super::Store;
use super::dialect::{Dialect, Queries, Value};
use super::error::Result;
use super::model::TenantId;

/// The length of a UTC day in milliseconds: `created_at / DAY_MS` is the day's number since
/// the Unix epoch on both backends (integer division of non-negative integers).
pub const DAY_MS: i64 = 86_400_000;

/// A key column of the rollups that a read keeps apart (the others are summed over).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dimension {
    /// The UTC day of acceptance.
    Day,
    /// The provider plugin.
    Provider,
    /// The opt-out category.
    Category,
    /// The template, if sent from one.
    Template,
    /// The destination country as priced.
    Country,
}

impl Dimension {
    /// The rollup column.
    fn column(self) -> &'static str {
        match self {
            Self::Day => "day",
            Self::Provider => "provider",
            Self::Category => "category",
            Self::Template => "template_id",
            Self::Country => "country",
        }
    }

    /// The `dimension` of the latency rollups that keeps this one apart (`all` for the day,
    /// which every latency row has).
    fn latency_name(self) -> &'static str {
        match self {
            Self::Day => "all",
            Self::Provider => "provider",
            Self::Category => "category",
            Self::Template => "template",
            Self::Country => "country",
        }
    }
}

/// Messages of one status, failure code and currency, and of the [`Dimension`]s a read kept
/// apart (the others are `0`, `""` or `None`), with their counts and money sums.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
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
    /// The failure code of failed and undelivered messages (`None`: none given, or not failed).
    pub error_code: Option<String>,
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

impl CostFact {
    /// Whether it counts nothing: a key whose messages all moved to other keys.
    fn is_nothing(&self) -> bool {
        self.messages == 0
            && self.segments == 0
            && self.estimated_micros == 0
            && self.actual_micros == 0
            && self.difference_micros == 0
            && self.cost_micros == 0
    }
}

/// Which duration a latency histogram counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum LatencyKind {
    /// From acceptance to the first `sent`.
    Sent,
    /// From acceptance to the first `delivered`.
    Delivered,
}

/// One bucket of a latency histogram: how many messages took `[lower_ms, upper_ms)`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LatencyFact {
    /// The day (when grouped by day; else 0).
    pub day: i64,
    /// The value of the dimension kept apart (`""`: none, or not kept apart).
    pub value: String,
    /// The duration counted.
    pub kind: LatencyKind,
    /// The bucket's lower bound (inclusive), milliseconds.
    pub lower_ms: i64,
    /// Its upper bound (exclusive).
    pub upper_ms: i64,
    /// How many messages fell in it.
    pub messages: i64,
    /// The sum of their durations, milliseconds.
    pub total_ms: i64,
}

/// The rollup columns of a read: the dimensions kept apart, then what every read keeps apart.
fn rollup_query(dims: &[Dimension]) -> String {
    let mut keys: Vec<&str> = dims.iter().map(|dim| dim.column()).collect();
    keys.extend(["status", "error_code", "currency"]);
    let keys = keys.join(", ");
    // Drafts are not messages yet; rows whose changes cancelled out are skipped.
    format!(
        "SELECT {keys}, CAST(SUM(messages) AS BIGINT) AS messages,
                CAST(SUM(segments) AS BIGINT) AS segments,
                CAST(SUM(estimated_micros) AS BIGINT) AS estimated,
                CAST(SUM(actual_micros) AS BIGINT) AS actual,
                CAST(SUM(difference_micros) AS BIGINT) AS difference,
                CAST(SUM(cost_micros) AS BIGINT) AS cost
         FROM rollups_now
         WHERE tenant_id = $1 AND day >= $2 AND day < $3 AND status <> 'draft'
         GROUP BY {keys}"
    )
}

/// The latency buckets of a read, by day when `by_day`, else by the dimension's value.
fn latency_query(by_day: bool) -> &'static str {
    if by_day {
        "SELECT r.day AS day, '' AS value, r.kind, r.bucket_ms, b.upper_ms,
                CAST(SUM(r.messages) AS BIGINT) AS messages,
                CAST(SUM(r.total_ms) AS BIGINT) AS total_ms
         FROM latency_now r JOIN latency_buckets b ON b.lower_ms = r.bucket_ms
         WHERE r.tenant_id = $1 AND r.dimension = $2 AND r.day >= $3 AND r.day < $4
         GROUP BY r.day, r.kind, r.bucket_ms, b.upper_ms"
    } else {
        "SELECT CAST(0 AS BIGINT) AS day, r.value AS value, r.kind, r.bucket_ms, b.upper_ms,
                CAST(SUM(r.messages) AS BIGINT) AS messages,
                CAST(SUM(r.total_ms) AS BIGINT) AS total_ms
         FROM latency_now r JOIN latency_buckets b ON b.lower_ms = r.bucket_ms
         WHERE r.tenant_id = $1 AND r.dimension = $2 AND r.day >= $3 AND r.day < $4
         GROUP BY r.value, r.kind, r.bucket_ms, b.upper_ms"
    }
}

/// `''` is how the rollups key "none" (a key column cannot be NULL).
fn none_if_empty(text: String) -> Option<String> {
    (!text.is_empty()).then_some(text)
}

impl<DB: Dialect> Queries<DB>
where
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
    for<'a> &'a str: Value<'a, DB> + ColumnIndex<DB::Row>,
    String: for<'a> Decode<'a, DB> + Type<DB>,
    Option<String>: for<'a> Decode<'a, DB> + Type<DB>,
    i64: for<'a> Value<'a, DB>,
    Option<i64>: for<'a> Value<'a, DB>,
{
    async fn rollup_facts(
        pool: &Pool<DB>,
        tenant: &str,
        days: (i64, i64),
        dims: &[Dimension],
    ) -> Result<Vec<CostFact>> {
        let rows = sqlx::query(AssertSqlSafe(rollup_query(dims)))
            .bind(tenant)
            .bind(days.0)
            .bind(days.1)
            .fetch_all(pool)
            .await?;
        rows.iter()
            .map(|row| {
                let sum = |name: &str| -> Result<i64> {
                    Ok(row.try_get::<Option<i64>, _>(name)?.unwrap_or(0))
                };
                let mut fact = CostFact {
                    status: row.try_get("status")?,
                    error_code: none_if_empty(row.try_get("error_code")?),
                    currency: none_if_empty(row.try_get("currency")?),
                    messages: sum("messages")?,
                    segments: sum("segments")?,
                    estimated_micros: sum("estimated")?,
                    actual_micros: sum("actual")?,
                    difference_micros: sum("difference")?,
                    cost_micros: sum("cost")?,
                    ..CostFact::default()
                };
                for dim in dims {
                    match dim {
                        Dimension::Day => fact.day = row.try_get("day")?,
                        Dimension::Provider => fact.provider = row.try_get("provider")?,
                        Dimension::Category => fact.category = row.try_get("category")?,
                        Dimension::Template => {
                            fact.template_id = none_if_empty(row.try_get("template_id")?);
                        }
                        Dimension::Country => {
                            fact.country = none_if_empty(row.try_get("country")?);
                        }
                    }
                }
                Ok(fact)
            })
            // Keys whose messages all moved elsewhere sum to nothing.
            .filter(|fact| !matches!(fact, Ok(fact) if fact.is_nothing()))
            .collect()
    }

    async fn latency_facts(
        pool: &Pool<DB>,
        tenant: &str,
        days: (i64, i64),
        dim: Option<Dimension>,
    ) -> Result<Vec<LatencyFact>> {
        let name = dim.map_or("all", Dimension::latency_name);
        let rows = sqlx::query(latency_query(dim == Some(Dimension::Day)))
            .bind(tenant)
            .bind(name)
            .bind(days.0)
            .bind(days.1)
            .fetch_all(pool)
            .await?;
        let mut facts = Vec::with_capacity(rows.len());
        for row in &rows {
            let kind = match row.try_get::<String, _>("kind")?.as_str() {
                "sent" => LatencyKind::Sent,
                _ => LatencyKind::Delivered,
            };
            let messages: Option<i64> = row.try_get("messages")?;
            facts.push(LatencyFact {
                day: row.try_get("day")?,
                value: row.try_get("value")?,
                kind,
                lower_ms: row.try_get("bucket_ms")?,
                upper_ms: row.try_get("upper_ms")?,
                messages: messages.unwrap_or(0),
                total_ms: row.try_get::<Option<i64>, _>("total_ms")?.unwrap_or(0),
            });
        }
        Ok(facts)
    }
}

/// The key columns of `rollups` and `rollup_deltas`.
const ROLLUP_KEY: &str =
    "tenant_id, day, provider, category, template_id, country, status, error_code, currency";
/// The key columns of `latency_rollups` and `latency_deltas`.
const LATENCY_KEY: &str = "tenant_id, dimension, day, value, kind, bucket_ms";

/// Folds the committed rollup deltas into the rollups (PostgreSQL, migration 0016): one
/// statement per table, each deleting the deltas it reads and upserting their sums in key
/// order, so a reader sees every change once, as a delta or folded, and two processes folding
/// at once never count a delta twice. Returns how many rollup rows it changed.
pub(super) async fn fold_deltas(pool: &sqlx::PgPool) -> Result<u64> {
    let rollups = format!(
        "WITH moved AS (DELETE FROM rollup_deltas RETURNING *)
         INSERT INTO rollups ({ROLLUP_KEY}, messages, segments, estimated_micros, actual_micros,
                              difference_micros, cost_micros)
         SELECT {ROLLUP_KEY}, SUM(messages), SUM(segments), SUM(estimated_micros),
                SUM(actual_micros), SUM(difference_micros), SUM(cost_micros)
         FROM moved
         GROUP BY {ROLLUP_KEY}
         ORDER BY {ROLLUP_KEY}
         ON CONFLICT ({ROLLUP_KEY}) DO UPDATE SET
             messages = rollups.messages + excluded.messages,
             segments = rollups.segments + excluded.segments,
             estimated_micros = rollups.estimated_micros + excluded.estimated_micros,
             actual_micros = rollups.actual_micros + excluded.actual_micros,
             difference_micros = rollups.difference_micros + excluded.difference_micros,
             cost_micros = rollups.cost_micros + excluded.cost_micros
         RETURNING 1"
    );
    let latency = format!(
        "WITH moved AS (DELETE FROM latency_deltas RETURNING *)
         INSERT INTO latency_rollups ({LATENCY_KEY}, messages, total_ms)
         SELECT {LATENCY_KEY}, SUM(messages), SUM(total_ms)
         FROM moved
         GROUP BY {LATENCY_KEY}
         ORDER BY {LATENCY_KEY}
         ON CONFLICT ({LATENCY_KEY}) DO UPDATE SET
             messages = latency_rollups.messages + excluded.messages,
             total_ms = latency_rollups.total_ms + excluded.total_ms
         RETURNING 1"
    );
    let mut folded = 0;
    for sql in [rollups, latency] {
        folded += sqlx::query(AssertSqlSafe(sql)).fetch_all(pool).await?.len() as u64;
    }
    Ok(folded)
}

impl Store {
    /// Folds the rollup changes not folded yet into the rollups (PostgreSQL; SQLite's triggers
    /// write the rollups themselves, so there it does nothing). The store does it by itself
    /// about once a second; reports include unfolded changes either way. Returns how many
    /// rollup rows it changed.
    pub async fn fold_rollups(&self) -> Result<u64> {
        match &self.inner.backend {
            super::Backend::Sqlite { .. } => Ok(0),
            super::Backend::Postgres(pool) => fold_deltas(pool).await,
        }
    }

    /// The rollups of the tenant's messages accepted on UTC days `[first_day, end_day)` (days
    /// since the epoch), summed over every key column but `dims`, status, failure code and
    /// currency.
    pub async fn rollup_facts(
        &self,
        tenant: &TenantId,
        days: (i64, i64),
        dims: &[Dimension],
    ) -> Result<Vec<CostFact>> {
        match &self.inner.backend {
            super::Backend::Sqlite { reader, .. } => {
                Queries::rollup_facts(reader, tenant.as_str(), days, dims).await
            }
            super::Backend::Postgres(pool) => {
                Queries::rollup_facts(pool, tenant.as_str(), days, dims).await
            }
        }
    }

    /// The latency histograms of the tenant's messages accepted on UTC days `days`
    /// (`[first, end)`), per bucket and kind, and per value of `dim` when given (per day for
    /// [`Dimension::Day`]).
    pub async fn latency_facts(
        &self,
        tenant: &TenantId,
        days: (i64, i64),
        dim: Option<Dimension>,
    ) -> Result<Vec<LatencyFact>> {
        match &self.inner.backend {
            super::Backend::Sqlite { reader, .. } => {
                Queries::latency_facts(reader, tenant.as_str(), days, dim).await
            }
            super::Backend::Postgres(pool) => {
                Queries::latency_facts(pool, tenant.as_str(), days, dim).await
            }
        }
    }
}
