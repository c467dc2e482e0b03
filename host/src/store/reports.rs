//! The reads behind the cost and delivery reports. Both read rollups that the database keeps
//! from every change, never the period's messages, so a report's cost grows with the days and
//! distinct keys of its period, not with its messages (migrations 0014, then 0016 on SQLite and
//! 0017 on PostgreSQL):
//!
//! - one narrow table per grouping, so a read touches only the keys it keeps apart:
//!   `cost_rollups` (day × provider × category), `template_rollups` (day × category × template)
//!   and `country_rollups` (day × category × country), each also by status and currency, with
//!   counts and money sums;
//! - `failure_rollups`: failed and undelivered messages per failure code, per day and one
//!   dimension's value;
//! - `latency_rollups`: histograms of the times from acceptance to a message's first `sent` and
//!   first `delivered`, per tenant × day × one dimension's value.
//!
//! The triggers of every writing transaction only append their changes, with every dimension,
//! to `rollup_deltas` and `latency_deltas` (no shared row to lock or upsert), and
//! [`fold_rollups`](Store::fold_rollups), run about once a second by the store, adds them into
//! the tables above and removes them in one transaction. Reads go through the views `*_now`,
//! which add the deltas not folded yet, so every committed change is counted exactly once.
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

/// Messages of one status and currency, and of the [`Dimension`]s a read kept apart (the others are `0`, `""` or `None`), with their counts and money sums.
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

/// Failed and undelivered messages with one failure code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FailureFact {
    /// The day (when grouped by day; else 0).
    pub day: i64,
    /// The value of the dimension kept apart (`""`: none, or not kept apart).
    pub value: String,
    /// The provider's (or Herald's) failure code; `None` when none was given.
    pub error_code: Option<String>,
    /// How many messages.
    pub messages: i64,
}

/// The narrow rollup view a read of `dims` goes to: the template's or the country's when it
/// keeps those apart (with the day and category at most), else the one by day, provider and
/// category.
fn rollup_view(dims: &[Dimension]) -> &'static str {
    let view = if dims.contains(&Dimension::Template) {
        "template_rollups_now"
    } else if dims.contains(&Dimension::Country) {
        "country_rollups_now"
    } else {
        "cost_rollups_now"
    };
    debug_assert!(
        dims.iter().all(|dim| match view {
            "template_rollups_now" => matches!(
                dim,
                Dimension::Day | Dimension::Category | Dimension::Template
            ),
            "country_rollups_now" => matches!(
                dim,
                Dimension::Day | Dimension::Category | Dimension::Country
            ),
            _ => matches!(
                dim,
                Dimension::Day | Dimension::Provider | Dimension::Category
            ),
        }),
        "no rollup table keeps {dims:?} apart"
    );
    view
}

/// The rollup columns of a read: the dimensions kept apart, then what every read keeps apart.
fn rollup_query(dims: &[Dimension]) -> String {
    let mut keys: Vec<&str> = dims.iter().map(|dim| dim.column()).collect();
    keys.extend(["status", "currency"]);
    let keys = keys.join(", ");
    let view = rollup_view(dims);
    // Drafts are not messages yet; rows whose changes cancelled out are skipped.
    format!(
        "SELECT {keys}, CAST(SUM(messages) AS BIGINT) AS messages,
                CAST(SUM(segments) AS BIGINT) AS segments,
                CAST(SUM(estimated_micros) AS BIGINT) AS estimated,
                CAST(SUM(actual_micros) AS BIGINT) AS actual,
                CAST(SUM(difference_micros) AS BIGINT) AS difference,
                CAST(SUM(cost_micros) AS BIGINT) AS cost
         FROM {view}
         WHERE tenant_id = $1 AND day >= $2 AND day < $3 AND status <> 'draft'
         GROUP BY {keys}"
    )
}

/// The failure counts of a read, by day when `by_day`, else by the dimension's value.
fn failure_query(by_day: bool) -> &'static str {
    if by_day {
        "SELECT day, '' AS value, error_code, CAST(SUM(messages) AS BIGINT) AS messages
         FROM failure_rollups_now
         WHERE tenant_id = $1 AND dimension = $2 AND day >= $3 AND day < $4
         GROUP BY day, error_code
         HAVING SUM(messages) <> 0"
    } else {
        "SELECT CAST(0 AS BIGINT) AS day, value, error_code,
                CAST(SUM(messages) AS BIGINT) AS messages
         FROM failure_rollups_now
         WHERE tenant_id = $1 AND dimension = $2 AND day >= $3 AND day < $4
         GROUP BY value, error_code
         HAVING SUM(messages) <> 0"
    }
}

/// The latency buckets of a read, by day when `by_day`, else by the dimension's value. The
/// buckets' upper bounds are joined after the sums, to the few rows they leave.
fn latency_query(by_day: bool) -> &'static str {
    if by_day {
        "SELECT r.day AS day, '' AS value, r.kind, r.bucket_ms, b.upper_ms, r.messages,
                r.total_ms
         FROM (SELECT day, kind, bucket_ms, CAST(SUM(messages) AS BIGINT) AS messages,
                      CAST(SUM(total_ms) AS BIGINT) AS total_ms
               FROM latency_now
               WHERE tenant_id = $1 AND dimension = $2 AND day >= $3 AND day < $4
               GROUP BY day, kind, bucket_ms) AS r
         JOIN latency_buckets b ON b.lower_ms = r.bucket_ms"
    } else {
        "SELECT CAST(0 AS BIGINT) AS day, r.value AS value, r.kind, r.bucket_ms, b.upper_ms,
                r.messages, r.total_ms
         FROM (SELECT value, kind, bucket_ms, CAST(SUM(messages) AS BIGINT) AS messages,
                      CAST(SUM(total_ms) AS BIGINT) AS total_ms
               FROM latency_now
               WHERE tenant_id = $1 AND dimension = $2 AND day >= $3 AND day < $4
               GROUP BY value, kind, bucket_ms) AS r
         JOIN latency_buckets b ON b.lower_ms = r.bucket_ms"
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

    /// The rows of a per-dimension rollup read (`query(by_day)`, binding the tenant, the
    /// dimension's name and the days): `all` without a dimension, per day for the day.
    async fn per_dimension(
        pool: &Pool<DB>,
        query: fn(bool) -> &'static str,
        tenant: &str,
        days: (i64, i64),
        dim: Option<Dimension>,
    ) -> Result<Vec<DB::Row>> {
        let name = dim.map_or("all", Dimension::latency_name);
        Ok(sqlx::query(query(dim == Some(Dimension::Day)))
            .bind(tenant)
            .bind(name)
            .bind(days.0)
            .bind(days.1)
            .fetch_all(pool)
            .await?)
    }

    async fn latency_facts(
        pool: &Pool<DB>,
        tenant: &str,
        days: (i64, i64),
        dim: Option<Dimension>,
    ) -> Result<Vec<LatencyFact>> {
        let rows = Self::per_dimension(pool, latency_query, tenant, days, dim).await?;
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

    async fn failure_facts(
        pool: &Pool<DB>,
        tenant: &str,
        days: (i64, i64),
        dim: Option<Dimension>,
    ) -> Result<Vec<FailureFact>> {
        let rows = Self::per_dimension(pool, failure_query, tenant, days, dim).await?;
        rows.iter()
            .map(|row| {
                Ok(FailureFact {
                    day: row.try_get("day")?,
                    value: row.try_get("value")?,
                    error_code: none_if_empty(row.try_get("error_code")?),
                    messages: row.try_get::<Option<i64>, _>("messages")?.unwrap_or(0),
                })
            })
            .collect()
    }
}

/// The narrow rollup tables and their key columns (the deltas have every one of them).
const NARROW: [(&str, &str); 3] = [
    (
        "cost_rollups",
        "tenant_id, day, provider, category, status, currency",
    ),
    (
        "template_rollups",
        "tenant_id, day, category, template_id, status, currency",
    ),
    (
        "country_rollups",
        "tenant_id, day, category, country, status, currency",
    ),
];
/// The summed columns of the narrow tables and of `rollup_deltas`.
const SUMS: [&str; 6] = [
    "messages",
    "segments",
    "estimated_micros",
    "actual_micros",
    "difference_micros",
    "cost_micros",
];
/// The key columns of `latency_rollups` and `latency_deltas`.
const LATENCY_KEY: &str = "tenant_id, dimension, day, value, kind, bucket_ms";

/// An upsert adding the rows of `source` (`rollup_deltas`, or what a fold took out of it)
/// into the narrow table `table` keyed by `key`, in key order.
fn fold_into(table: &str, key: &str, source: &str) -> String {
    let sums = SUMS.join(", ");
    let summed = SUMS.map(|sum| format!("SUM({sum})")).join(", ");
    let added = SUMS
        .map(|sum| format!("{sum} = {table}.{sum} + excluded.{sum}"))
        .join(", ");
    format!(
        "INSERT INTO {table} ({key}, {sums})
         SELECT {key}, {summed} FROM {source} WHERE true
         GROUP BY {key} ORDER BY {key}
         ON CONFLICT ({key}) DO UPDATE SET {added}"
    )
}

/// An upsert adding the failed and undelivered messages of `source` into `failure_rollups`,
/// once per dimension (as the latency histograms keep them).
fn fold_failures(source: &str) -> String {
    format!(
        "INSERT INTO failure_rollups (tenant_id, dimension, day, value, error_code, messages)
         SELECT d.tenant_id, dims.name, d.day,
                CASE dims.name WHEN 'provider' THEN d.provider WHEN 'category' THEN d.category
                    WHEN 'template' THEN d.template_id WHEN 'country' THEN d.country
                    ELSE '' END,
                d.error_code, SUM(d.messages)
         FROM {source} d
         CROSS JOIN (SELECT 'all' AS name UNION ALL SELECT 'provider' UNION ALL
                     SELECT 'category' UNION ALL SELECT 'template' UNION ALL
                     SELECT 'country') AS dims
         WHERE d.status IN ('failed', 'undelivered')
         GROUP BY 1, 2, 3, 4, 5 ORDER BY 1, 2, 3, 4, 5
         ON CONFLICT (tenant_id, dimension, day, value, error_code) DO UPDATE SET
             messages = failure_rollups.messages + excluded.messages"
    )
}

/// An upsert adding the rows of `source` into `latency_rollups`, in key order.
fn fold_latency(source: &str) -> String {
    format!(
        "INSERT INTO latency_rollups ({LATENCY_KEY}, messages, total_ms)
         SELECT {LATENCY_KEY}, SUM(messages), SUM(total_ms) FROM {source} WHERE true
         GROUP BY {LATENCY_KEY} ORDER BY {LATENCY_KEY}
         ON CONFLICT ({LATENCY_KEY}) DO UPDATE SET
             messages = latency_rollups.messages + excluded.messages,
             total_ms = latency_rollups.total_ms + excluded.total_ms"
    )
}

/// Folds the committed deltas into the rollups on PostgreSQL: one statement per delta table,
/// each deleting the deltas it reads (`DELETE … RETURNING`) and upserting their sums, so a
/// reader sees every change once, as a delta or folded, and two processes folding at once never
/// count a delta twice. Returns how many rollup rows it changed.
async fn fold_postgres(pool: &sqlx::PgPool) -> Result<u64> {
    let mut steps: Vec<String> = NARROW
        .iter()
        .map(|(table, key)| fold_into(table, key, "moved"))
        .collect();
    steps.push(fold_failures("moved"));
    let ctes: Vec<String> = steps
        .iter()
        .enumerate()
        .map(|(i, step)| format!("f{i} AS ({step} RETURNING 1)"))
        .collect();
    let counted: Vec<String> = (0..steps.len())
        .map(|i| format!("(SELECT COUNT(*) FROM f{i})"))
        .collect();
    let rollups = format!(
        "WITH moved AS (DELETE FROM rollup_deltas RETURNING *), {}
         SELECT {}",
        ctes.join(", "),
        counted.join(" + ")
    );
    let latency = format!(
        "WITH moved AS (DELETE FROM latency_deltas RETURNING *),
              f0 AS ({} RETURNING 1)
         SELECT COUNT(*) FROM f0",
        fold_latency("moved")
    );
    let mut folded = 0;
    for sql in [rollups, latency] {
        let changed: i64 = sqlx::query_scalar(AssertSqlSafe(sql))
            .fetch_one(pool)
            .await?;
        folded += changed.unsigned_abs();
    }
    Ok(folded)
}

/// The most deltas of each table one SQLite fold transaction takes, so that a large backlog (a
/// bulk batch of 100,000 writes its deltas in one statement) holds the one writer connection for
/// a short while at a time rather than for the whole fold.
const FOLD_CHUNK: i64 = 20_000;
/// The pause between two chunks, in which the other writers get the connection.
const FOLD_PAUSE: std::time::Duration = std::time::Duration::from_millis(5);

/// Folds the deltas into the rollups on SQLite, oldest first, in transactions of at most
/// [`FOLD_CHUNK`] deltas of each table on the writer connection: each adds its chunk and deletes
/// it (no other writer can add or fold in between). Returns how many rollup rows it changed.
async fn fold_sqlite(writer: &sqlx::SqlitePool) -> Result<u64> {
    let mut folded = 0;
    loop {
        let mut tx = writer.begin().await?;
        let mut full = false;
        for (deltas, folds) in [
            ("rollup_deltas", {
                let source = "(SELECT * FROM rollup_deltas WHERE rowid <= $1)";
                let mut steps: Vec<String> = NARROW
                    .iter()
                    .map(|(table, key)| fold_into(table, key, source))
                    .collect();
                steps.push(fold_failures(source));
                steps
            }),
            (
                "latency_deltas",
                vec![fold_latency(
                    "(SELECT * FROM latency_deltas WHERE rowid <= $1)",
                )],
            ),
        ] {
            let chunk = sqlx::query(AssertSqlSafe(format!(
                "SELECT COUNT(*) AS taken, MAX(rowid) AS last
                 FROM (SELECT rowid FROM {deltas} ORDER BY rowid LIMIT $1)"
            )))
            .bind(FOLD_CHUNK)
            .fetch_one(&mut *tx)
            .await?;
            let taken: i64 = chunk.try_get("taken")?;
            let Some(last) = chunk.try_get::<Option<i64>, _>("last")? else {
                continue;
            };
            full |= taken >= FOLD_CHUNK;
            for sql in folds {
                folded += sqlx::query(AssertSqlSafe(sql))
                    .bind(last)
                    .execute(&mut *tx)
                    .await?
                    .rows_affected();
            }
            sqlx::query(AssertSqlSafe(format!(
                "DELETE FROM {deltas} WHERE rowid <= $1"
            )))
            .bind(last)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        if !full {
            return Ok(folded);
        }
        tokio::time::sleep(FOLD_PAUSE).await;
    }
}

/// The connection a fold writes through: SQLite's writer, or the PostgreSQL pool.
#[derive(Clone)]
pub(super) enum Folding {
    Sqlite(sqlx::SqlitePool),
    Postgres(sqlx::PgPool),
}

impl Folding {
    /// The backend's fold connection.
    pub(super) fn of(backend: &super::Backend) -> Self {
        match backend {
            super::Backend::Sqlite { writer, .. } => Self::Sqlite(writer.clone()),
            super::Backend::Postgres(pool) => Self::Postgres(pool.clone()),
        }
    }

    /// Folds the committed deltas into the rollups; returns how many rollup rows it changed.
    async fn fold(&self) -> Result<u64> {
        match self {
            Self::Sqlite(writer) => {
                // An idle store takes no write lock every second.
                let waiting: Option<i64> = sqlx::query_scalar(
                    "SELECT 1 FROM rollup_deltas UNION ALL SELECT 1 FROM latency_deltas LIMIT 1",
                )
                .fetch_optional(writer)
                .await?;
                match waiting {
                    Some(_) => fold_sqlite(writer).await,
                    None => Ok(0),
                }
            }
            Self::Postgres(pool) => fold_postgres(pool).await,
        }
    }

    /// PostgreSQL: analyses every table of the schema whose rows changed by more than
    /// [`ANALYZE_SHARE`] of its rows plus [`ANALYZE_THRESHOLD`] since it was last analysed (by
    /// anyone), as autovacuum would; returns the tables analysed.
    ///
    /// Why the store does it: a server can run with autovacuum off, and then `messages` is never
    /// analysed. Without statistics the planner takes `tenant_id = $1` to match 0.5 % of the rows,
    /// so a prepared lookup by tenant and id was planned on a new table as a scan of
    /// `messages_batch` (tenant first, the id fourth): every lookup read all of the tenant's
    /// messages (measured: 1.2 billion index entries read in one 20,000-message run of the
    /// pipeline bench). An analysis invalidates the plans cached on the table, in every
    /// session. The delta tables are left to [`Self::tidy`], which does not analyse them on
    /// purpose; `SKIP_LOCKED` passes over a table another session is analysing.
    pub(super) async fn analyze_changed(&self) -> Result<Vec<String>> {
        let Self::Postgres(pool) = self else {
            return Ok(Vec::new());
        };
        let changed: Vec<String> = sqlx::query_scalar(
            "SELECT relname::text FROM pg_stat_user_tables
             WHERE schemaname = current_schema()
               AND relname NOT IN ('rollup_deltas', 'latency_deltas', '_sqlx_migrations')
               AND n_mod_since_analyze > $1::bigint + $2::float8 * GREATEST(n_live_tup, 0)
             ORDER BY relname",
        )
        .bind(ANALYZE_THRESHOLD)
        .bind(ANALYZE_SHARE)
        .fetch_all(pool)
        .await?;
        if !changed.is_empty() {
            let tables = changed
                .iter()
                .map(|name| format!("\"{}\"", name.replace('"', "\"\"")))
                .collect::<Vec<_>>()
                .join(", ");
            // A skipped table is reported as a WARNING notice, which sqlx logs as a warning:
            // with two processes analysing the same tables that was several a second, for
            // nothing that needs anyone's attention.
            let mut tx = pool.begin().await?;
            sqlx::query("SET LOCAL client_min_messages = error")
                .execute(&mut *tx)
                .await?;
            sqlx::raw_sql(AssertSqlSafe(format!("ANALYZE (SKIP_LOCKED) {tables}")))
                .execute(&mut *tx)
                .await?;
            tx.commit().await?;
        }
        Ok(changed)
    }

    /// PostgreSQL: vacuums the delta tables (just after a fold, when they are nearly empty) and
    /// refreshes the planner's statistics of the rollups. Every fold deletes what the triggers appended, so without a vacuum the delta
    /// tables grow by a table's worth of dead rows a second, which every fold and report then
    /// reads; and a report's plan over rollups never analysed sorts tens of thousands of rows
    /// on disk where a hash would do (measured: 88 ms against 28 ms for one histogram read over
    /// 46,000 rows). Autovacuum does the same where it is on; a server can have it off, and
    /// these tables are small, so doing it here is cheap either way.
    pub(super) async fn tidy(&self) -> Result<()> {
        if let Self::Postgres(pool) = self {
            // One statement each: VACUUM refuses to run in a multi-statement string.
            // Not analysed: a sample taken while a backlog waits would mislead every plan
            // once it is folded. The vacuum itself sets their row counts.
            sqlx::raw_sql("VACUUM rollup_deltas, latency_deltas")
                .execute(pool)
                .await?;
            sqlx::raw_sql(
                "ANALYZE cost_rollups, template_rollups, country_rollups, failure_rollups,
                     latency_rollups",
            )
            .execute(pool)
            .await?;
        }
        Ok(())
    }
}

/// The share of a PostgreSQL table's rows that may change before [`Folding::analyze_changed`]
/// analyses it again, and the count added to it (autovacuum's defaults).
const ANALYZE_SHARE: f64 = 0.1;
const ANALYZE_THRESHOLD: i64 = 50;

/// How often [`folder`] folds the rollup deltas into the rollups.
const FOLD_EVERY: std::time::Duration = std::time::Duration::from_secs(1);

/// How many folds apart [`folder`] tidies PostgreSQL's rollup tables (about a minute).
const TIDY_EVERY: u64 = 60;

/// Folds the rollup deltas the triggers append into the rollups every [`FOLD_EVERY`], so the
/// deltas stay a few seconds of writes however long Herald runs; on PostgreSQL it also tidies
/// the tables every [`TIDY_EVERY`] folds (see [`Folding::tidy`]).
pub(super) fn folder(folding: Folding) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(FOLD_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        for folds in 1_u64.. {
            tick.tick().await;
            if let Err(error) = folding.fold().await {
                // Before the migrations have run the tables are missing: not worth a warning.
                if error.is_undefined_table() {
                    tracing::debug!(%error, "rollup deltas not folded yet");
                } else {
                    tracing::warn!(%error, "folding the rollup deltas failed; retrying");
                }
            } else if folds % TIDY_EVERY == 0
                && let Err(error) = folding.tidy().await
            {
                tracing::warn!(%error, "vacuuming the rollup deltas failed");
            }
            match folding.analyze_changed().await {
                Ok(tables) if !tables.is_empty() => {
                    tracing::debug!(?tables, "analysed the tables that changed");
                }
                Ok(_) => {}
                Err(error) if error.is_undefined_table() => {}
                Err(error) => tracing::warn!(%error, "analysing the changed tables failed"),
            }
        }
    })
}

impl Store {
    /// Folds the rollup changes not folded yet into the rollups. The store does it by itself
    /// about once a second, and reports include the unfolded changes either way. Returns how
    /// many rollup rows it changed.
    pub async fn fold_rollups(&self) -> Result<u64> {
        Folding::of(&self.inner.backend).fold().await
    }

    /// Analyses the tables whose rows changed by more than a tenth since their last analysis
    /// (PostgreSQL; nothing on SQLite) and returns their names. The store does it by itself
    /// about once a second (see `Folding::analyze_changed`).
    pub async fn analyze_changed(&self) -> Result<Vec<String>> {
        Folding::of(&self.inner.backend).analyze_changed().await
    }

    /// Vacuums the rollup delta tables and analyses the rollups (PostgreSQL; nothing on
    /// SQLite). The store does it by itself about once a minute.
    pub async fn tidy_rollups(&self) -> Result<()> {
        Folding::of(&self.inner.backend).tidy().await
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

    /// The failed and undelivered messages of the tenant accepted on UTC days `days`
    /// (`[first, end)`) per failure code, and per value of `dim` when given (per day for
    /// [`Dimension::Day`]).
    pub async fn failure_facts(
        &self,
        tenant: &TenantId,
        days: (i64, i64),
        dim: Option<Dimension>,
    ) -> Result<Vec<FailureFact>> {
        match &self.inner.backend {
            super::Backend::Sqlite { reader, .. } => {
                Queries::failure_facts(reader, tenant.as_str(), days, dim).await
            }
            super::Backend::Postgres(pool) => {
                Queries::failure_facts(pool, tenant.as_str(), days, dim).await
            }
        }
    }
}
