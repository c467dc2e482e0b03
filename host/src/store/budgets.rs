//! Budgets as stored: their definitions, their usage per period and the thresholds that fired.
//! Reservations and spending are written by the ledger's steps (`ledger.rs`); this file creates,
//! replaces and reads.

use sqlx::{ColumnIndex, Decode, Executor, Pool, Row as _, Type};

use super::Store;
use super::dialect::{Dialect, Queries, Value};
use super::error::{Result, StoreError};
use super::model::{Money, TenantId};

/// A stored budget.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredBudget {
    /// The owning tenant.
    pub tenant: TenantId,
    /// Its name, unique per tenant.
    pub name: String,
    /// `daily` or `monthly`.
    pub period: String,
    /// The limit per period.
    pub limit: Money,
    /// The category it applies to; `None` for every message.
    pub category: Option<String>,
    /// Alert thresholds, percent of the limit.
    pub alert_thresholds: Vec<u32>,
    /// Whether sends past the limit are refused.
    pub hard_cap: bool,
    /// When it was created (UTC ms).
    pub created_at: i64,
    /// When it was last replaced (UTC ms).
    pub updated_at: i64,
}

/// A budget's usage in one period.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BudgetUsage {
    /// Actual prices charged.
    pub spent_micros: i64,
    /// Estimates reserved and not yet settled or released.
    pub reserved_micros: i64,
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
    /// Creates or replaces a budget; returns whether it was created.
    async fn put_budget(pool: &Pool<DB>, budget: &StoredBudget) -> Result<bool> {
        let thresholds = serde_json::to_string(&budget.alert_thresholds)
            .map_err(|e| StoreError::Corrupt(e.to_string()))?;
        let mut tx = pool.begin_with(DB::BEGIN).await?;
        let replaced = sqlx::query(
            "UPDATE budgets SET period = $3, limit_micros = $4, currency = $5, category = $6,
                 alert_thresholds = $7, hard_cap = $8, updated_at = $9
             WHERE tenant_id = $1 AND name = $2
             RETURNING name",
        )
        .bind(budget.tenant.as_str())
        .bind(budget.name.as_str())
        .bind(budget.period.as_str())
        .bind(budget.limit.micros)
        .bind(budget.limit.currency.as_str())
        .bind(budget.category.as_deref())
        .bind(thresholds.as_str())
        .bind(i32::from(budget.hard_cap))
        .bind(budget.updated_at)
        .fetch_optional(&mut *tx)
        .await?;
        if replaced.is_none() {
            let inserted = sqlx::query(
                "INSERT INTO budgets (tenant_id, name, period, limit_micros, currency, category,
                     alert_thresholds, hard_cap, created_at, updated_at)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $9)
                 ON CONFLICT (tenant_id, name) DO NOTHING
                 RETURNING name",
            )
            .bind(budget.tenant.as_str())
            .bind(budget.name.as_str())
            .bind(budget.period.as_str())
            .bind(budget.limit.micros)
            .bind(budget.limit.currency.as_str())
            .bind(budget.category.as_deref())
            .bind(thresholds.as_str())
            .bind(i32::from(budget.hard_cap))
            .bind(budget.created_at)
            .fetch_optional(&mut *tx)
            .await?;
            if inserted.is_none() {
                // Created by a concurrent PUT between the two statements: report it as such.
                return Err(StoreError::Conflict(format!(
                    "budget `{}` was created concurrently",
                    budget.name
                )));
            }
        }
        tx.commit().await?;
        Ok(replaced.is_none())
    }

    /// Every budget of a tenant, by name.
    async fn list_budgets(pool: &Pool<DB>, tenant: Option<&str>) -> Result<Vec<StoredBudget>> {
        let rows = sqlx::query(
            "SELECT * FROM budgets WHERE ($1 IS NULL OR tenant_id = $1) ORDER BY tenant_id, name",
        )
        .bind(tenant)
        .fetch_all(pool)
        .await?;
        rows.iter()
            .map(|row| {
                let thresholds: String = row.try_get("alert_thresholds")?;
                let hard_cap: i32 = row.try_get("hard_cap")?;
                Ok(StoredBudget {
                    tenant: super::shared::tenant(row.try_get("tenant_id")?)?,
                    name: row.try_get("name")?,
                    period: row.try_get("period")?,
                    limit: Money {
                        micros: row.try_get("limit_micros")?,
                        currency: row.try_get("currency")?,
                    },
                    category: row.try_get("category")?,
                    alert_thresholds: super::shared::json(&thresholds, "alert_thresholds")?,
                    hard_cap: hard_cap != 0,
                    created_at: row.try_get("created_at")?,
                    updated_at: row.try_get("updated_at")?,
                })
            })
            .collect()
    }

    async fn budget_alerts(
        pool: &Pool<DB>,
        tenant: &str,
        budget: &str,
        period_start: i64,
    ) -> Result<Vec<(u32, i64)>> {
        let rows = sqlx::query(
            "SELECT threshold, fired_at FROM budget_alerts
             WHERE tenant_id = $1 AND budget = $2 AND period_start = $3
             ORDER BY threshold",
        )
        .bind(tenant)
        .bind(budget)
        .bind(period_start)
        .fetch_all(pool)
        .await?;
        rows.iter()
            .map(|row| {
                let threshold: i32 = row.try_get("threshold")?;
                let threshold = u32::try_from(threshold)
                    .map_err(|_| StoreError::Corrupt(format!("threshold {threshold}")))?;
                Ok((threshold, row.try_get("fired_at")?))
            })
            .collect()
    }

    async fn budget_usage(
        pool: &Pool<DB>,
        tenant: &str,
        budget: &str,
        period_start: i64,
    ) -> Result<BudgetUsage> {
        let row = sqlx::query(
            "SELECT spent_micros, reserved_micros FROM budget_usage
             WHERE tenant_id = $1 AND budget = $2 AND period_start = $3",
        )
        .bind(tenant)
        .bind(budget)
        .bind(period_start)
        .fetch_optional(pool)
        .await?;
        row.map_or(Ok(BudgetUsage::default()), |row| {
            Ok(BudgetUsage {
                spent_micros: row.try_get("spent_micros")?,
                reserved_micros: row.try_get("reserved_micros")?,
            })
        })
    }
}

impl Store {
    /// Creates or replaces a budget; returns `true` when it was created.
    pub async fn put_budget(&self, budget: &StoredBudget) -> Result<bool> {
        let result = match &self.inner.backend {
            super::Backend::Sqlite { writer, .. } => Queries::put_budget(writer, budget).await,
            super::Backend::Postgres(pool) => Queries::put_budget(pool, budget).await,
        };
        self.profiles_written();
        result
    }

    /// A tenant's budgets, by name (cached: see `profiles.rs`).
    pub async fn list_budgets(&self, tenant: &TenantId) -> Result<Vec<StoredBudget>> {
        let profiles = &self.inner.profiles;
        if let Some(cached) = profiles.budgets(tenant.as_str()) {
            return Ok(cached);
        }
        let ticket = profiles.ticket();
        let budgets = match &self.inner.backend {
            super::Backend::Sqlite { reader, .. } => {
                Queries::list_budgets(reader, Some(tenant.as_str())).await
            }
            super::Backend::Postgres(pool) => {
                Queries::list_budgets(pool, Some(tenant.as_str())).await
            }
        }?;
        profiles.keep_budgets(ticket, tenant.as_str(), &budgets);
        Ok(budgets)
    }

    /// The thresholds of a budget that fired in the period starting at `period_start`, with
    /// when (UTC ms), lowest first.
    pub async fn budget_alerts(
        &self,
        tenant: &TenantId,
        budget: &str,
        period_start: i64,
    ) -> Result<Vec<(u32, i64)>> {
        match &self.inner.backend {
            super::Backend::Sqlite { reader, .. } => {
                Queries::budget_alerts(reader, tenant.as_str(), budget, period_start).await
            }
            super::Backend::Postgres(pool) => {
                Queries::budget_alerts(pool, tenant.as_str(), budget, period_start).await
            }
        }
    }

    /// Every tenant's budgets, for the metrics.
    pub async fn all_budgets(&self) -> Result<Vec<StoredBudget>> {
        match &self.inner.backend {
            super::Backend::Sqlite { reader, .. } => Queries::list_budgets(reader, None).await,
            super::Backend::Postgres(pool) => Queries::list_budgets(pool, None).await,
        }
    }

    /// How many alerts fired over all periods, as (tenant, budget, threshold, count): a count
    /// that only grows, so the metrics export it as a counter whichever process fired them.
    pub async fn budget_alert_counts(&self) -> Result<Vec<(String, String, i32, i64)>> {
        const SQL: &str = "SELECT tenant_id, budget, threshold, COUNT(*) FROM budget_alerts
                           GROUP BY tenant_id, budget, threshold";
        Ok(match &self.inner.backend {
            super::Backend::Sqlite { reader, .. } => sqlx::query_as(SQL).fetch_all(reader).await?,
            super::Backend::Postgres(pool) => sqlx::query_as(SQL).fetch_all(pool).await?,
        })
    }

    /// A budget's usage in the period starting at `period_start` (zero when nothing was used).
    pub async fn budget_usage(
        &self,
        tenant: &TenantId,
        budget: &str,
        period_start: i64,
    ) -> Result<BudgetUsage> {
        match &self.inner.backend {
            super::Backend::Sqlite { reader, .. } => {
                Queries::budget_usage(reader, tenant.as_str(), budget, period_start).await
            }
            super::Backend::Postgres(pool) => {
                Queries::budget_usage(pool, tenant.as_str(), budget, period_start).await
            }
        }
    }
}
