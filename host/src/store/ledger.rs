//! The cost ledger's rows, written inside the transactions of the steps they record: the
//! estimate and the budget reservations inside the enqueue, each actual price inside the
//! transaction that stores the provider's report, and the release of a reservation inside the
//! failure or cancellation that ends a message before any provider took it.
//!
//! A hard-cap reservation is one conditional `UPDATE … WHERE spent + reserved + x <= limit
//! RETURNING …` on the budget's usage row for the period: PostgreSQL re-checks the condition on
//! the row's newest version after waiting for its lock, and SQLite's single writer runs one
//! transaction at a time, so concurrent sends can never take a budget past its limit.

use sqlx::{ColumnIndex, Decode, Executor, Pool, Row as _, Type};

use super::Store;
use super::dialect::{Dialect, Queries, Value};
use super::error::{Result, StoreError};
use super::model::{Message, Money, TenantId};
use super::script::{Rows, Script, Statement};

/// What a new message charges, computed before its enqueue and written inside it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Charge {
    /// The provider the estimate was made for.
    pub provider: String,
    /// The destination country (ISO 3166 alpha-2), when known.
    pub country: Option<String>,
    /// Herald's segment count.
    pub segments: u32,
    /// The estimate (segments × price), or `None` with [`Charge::reason`].
    pub estimate: Option<Money>,
    /// Where the price came from (`tenant`, `config`, `average`).
    pub source: Option<String>,
    /// Why there is no estimate.
    pub reason: Option<String>,
    /// The budgets it reserves from, ordered by name (so two sends lock usage rows in one order).
    pub holds: Vec<Hold>,
}

/// One reservation of a message on one budget's period.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hold {
    /// The budget's name.
    pub budget: String,
    /// The start of the period it counts in (UTC ms).
    pub period_start: i64,
    /// The amount reserved (0 for a message without an estimate under a budget without a cap).
    pub micros: i64,
    /// Whether the reservation is refused past the limit.
    pub hard_cap: bool,
    /// The budget's limit, for its alert thresholds.
    pub limit_micros: i64,
    /// Its alert thresholds, in percent of the limit.
    pub thresholds: Vec<u32>,
}

/// A threshold a budget's committed amount (spent + reserved) crossed for the first time in a
/// period.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BudgetAlert {
    /// The tenant.
    pub tenant: TenantId,
    /// The budget's name.
    pub budget: String,
    /// The threshold, in percent.
    pub threshold: u32,
    /// The period's start (UTC ms).
    pub period_start: i64,
    /// Spent plus reserved when it fired.
    pub committed_micros: i64,
}

/// The money side of one message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessageCost {
    /// The estimate at accept.
    pub estimate: Option<Money>,
    /// Where its price came from.
    pub source: Option<String>,
    /// Why there is no estimate.
    pub reason: Option<String>,
    /// The sum of the actual prices of every attempt.
    pub actual: Option<Money>,
    /// Actual minus estimate, once both are known in one currency.
    pub difference_micros: Option<i64>,
}

/// The sums behind a running average price: `total_micros / total_segments` per segment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PriceAverage {
    /// The currency of the prices.
    pub currency: String,
    /// The sum of actual prices.
    pub total_micros: i64,
    /// The segments they paid for.
    pub total_segments: i64,
}

/// The country key of a price average for a number whose country is unknown.
const UNKNOWN_COUNTRY: &str = "*";

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
    /// Writes a ledger row.
    #[allow(clippy::too_many_arguments)]
    async fn ledger_row(
        conn: &mut DB::Connection,
        tenant: &str,
        message: &str,
        kind: &str,
        budget: Option<(&str, i64)>,
        attempt_ref: Option<&str>,
        money: &Money,
        now: i64,
    ) -> Result<()> {
        sqlx::query(
            "INSERT INTO ledger_entries (tenant_id, message_id, kind, budget, period_start,
                 attempt_ref, micros, currency, created_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        )
        .bind(tenant)
        .bind(message)
        .bind(kind)
        .bind(budget.map(|(name, _)| name))
        .bind(budget.map(|(_, start)| start))
        .bind(attempt_ref)
        .bind(money.micros)
        .bind(money.currency.as_str())
        .bind(now)
        .execute(&mut *conn)
        .await?;
        Ok(())
    }

    /// Records the estimate and takes the reservations of a new message, inside its enqueue
    /// transaction. A hard-capped budget without room is a [`StoreError::BudgetExceeded`]: the
    /// caller rolls the whole enqueue back.
    pub(super) async fn charge(
        conn: &mut DB::Connection,
        tenant: &str,
        message: &str,
        charge: &Charge,
        now: i64,
    ) -> Result<Vec<BudgetAlert>> {
        let mut script = Script::default();
        let upserts = charge_statements(&mut script, tenant, message, charge, now);
        let rows = DB::run_script(conn, &script).await?;
        Self::charged(conn, tenant, charge, &upserts, &rows, now).await
    }

    /// Reads what the reservations of [`charge_statements`] returned (their statements'
    /// indexes `upserts`, rows `rows`): a hold whose upsert returned no row had no room, which
    /// is a [`StoreError::BudgetExceeded`]; the others fire the thresholds they crossed.
    pub(super) async fn charged(
        conn: &mut DB::Connection,
        tenant: &str,
        charge: &Charge,
        upserts: &[usize],
        rows: &Rows<DB::Row>,
        now: i64,
    ) -> Result<Vec<BudgetAlert>> {
        let mut alerts = Vec::new();
        for (hold, &at) in charge.holds.iter().zip(upserts) {
            let Some(row) = rows.get(at).and_then(|rows| rows.first()) else {
                return Err(StoreError::BudgetExceeded {
                    budget: hold.budget.clone(),
                });
            };
            let after: i64 = row.try_get::<i64, _>("spent_micros")?
                + row.try_get::<i64, _>("reserved_micros")?;
            let crossing = Crossing {
                budget: &hold.budget,
                period_start: hold.period_start,
                limit: hold.limit_micros,
                thresholds: &hold.thresholds,
                before: after - hold.micros,
                after,
            };
            Self::fire_thresholds(conn, tenant, &crossing, now, &mut alerts).await?;
        }
        Ok(alerts)
    }

    /// Records that thresholds of a budget were crossed, once per period each.
    pub(super) async fn fire_thresholds(
        conn: &mut DB::Connection,
        tenant: &str,
        crossing: &Crossing<'_>,
        now: i64,
        alerts: &mut Vec<BudgetAlert>,
    ) -> Result<()> {
        for &threshold in crossing.thresholds {
            // Compared in i128: limit × percent cannot overflow.
            let mark = i128::from(crossing.limit) * i128::from(threshold);
            let reached = |amount: i64| i128::from(amount) * 100 >= mark;
            if reached(crossing.before) || !reached(crossing.after) {
                continue;
            }
            let inserted = sqlx::query(
                "INSERT INTO budget_alerts (tenant_id, budget, period_start, threshold, fired_at)
                 VALUES ($1, $2, $3, $4, $5)
                 ON CONFLICT (tenant_id, budget, period_start, threshold) DO NOTHING
                 RETURNING threshold",
            )
            .bind(tenant)
            .bind(crossing.budget)
            .bind(crossing.period_start)
            .bind(i32::try_from(threshold).unwrap_or(i32::MAX))
            .bind(now)
            .fetch_optional(&mut *conn)
            .await?;
            if inserted.is_some() {
                // Into the event log in the same transaction: the live stream carries it, and
                // outbound webhooks will.
                let payload = serde_json::json!({
                    "budget": crossing.budget,
                    "threshold": threshold,
                    "period_start": crossing.period_start,
                    "committed_micros": crossing.after,
                    "limit_micros": crossing.limit,
                    "fired_at": now,
                });
                let payload = payload.to_string();
                sqlx::query(
                    "INSERT INTO events (tenant_id, kind, message_id, payload, created_at)
                     VALUES ($1, $2, NULL, $3, $4)",
                )
                .bind(tenant)
                .bind(super::events::BUDGET_THRESHOLD)
                .bind(payload.as_str())
                .bind(now)
                .execute(&mut *conn)
                .await?;
                alerts.push(BudgetAlert {
                    tenant: super::shared::tenant(tenant.to_owned())?,
                    budget: crossing.budget.to_owned(),
                    threshold,
                    period_start: crossing.period_start,
                    committed_micros: crossing.after,
                });
            }
        }
        Ok(())
    }

    /// Records an actual price a provider reported for one attempt of `message` (the attempt
    /// named by its provider message id), inside the transaction that stores the report: the
    /// ledger row (only the change, when the attempt was priced before), the message's actual
    /// sum and difference, the running average, and the settlement of its reservations.
    pub(super) async fn record_actual(
        conn: &mut DB::Connection,
        message: &Message,
        attempt_ref: &str,
        price: &Money,
        now: i64,
    ) -> Result<Vec<BudgetAlert>> {
        let tenant = message.tenant_id.as_str();
        let id = message.id.as_str();
        let country = crate::domain::PhoneNumber::parse(&message.to_number)
            .ok()
            .and_then(|number| number.country().map(str::to_owned));
        sqlx::query(
            "INSERT INTO message_costs (tenant_id, message_id, provider, country, segments,
                 reason, created_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7)
             ON CONFLICT (tenant_id, message_id) DO NOTHING",
        )
        .bind(tenant)
        .bind(id)
        .bind(message.provider.as_str())
        .bind(country.as_deref())
        .bind(super::shared::db_int(message.segments))
        .bind(Some("no estimate was made when the message was accepted"))
        .bind(now)
        .execute(&mut *conn)
        .await?;
        let row = sqlx::query(
            "SELECT CAST(COALESCE(SUM(micros), 0) AS BIGINT) AS charged, COUNT(*) AS priced
             FROM ledger_entries
             WHERE tenant_id = $1 AND message_id = $2 AND kind = 'actual' AND attempt_ref = $3
               AND currency = $4",
        )
        .bind(tenant)
        .bind(id)
        .bind(attempt_ref)
        .bind(price.currency.as_str())
        .fetch_one(&mut *conn)
        .await?;
        let charged: i64 = row.try_get("charged")?;
        let priced: i64 = row.try_get("priced")?;
        let delta = price.micros - charged;
        if priced > 0 && delta == 0 {
            // The same price reported again (a callback, then a lookup): nothing changes.
            return Ok(Vec::new());
        }
        let change = Money::new(delta, price.currency.clone());
        Self::ledger_row(
            conn,
            tenant,
            id,
            "actual",
            None,
            Some(attempt_ref),
            &change,
            now,
        )
        .await?;
        sqlx::query(
            "UPDATE message_costs
             SET actual_micros = COALESCE(actual_micros, 0) + $3, actual_currency = $4,
                 difference_micros = CASE WHEN currency = $4 AND estimate_micros IS NOT NULL
                     THEN COALESCE(actual_micros, 0) + $3 - estimate_micros END
             WHERE tenant_id = $1 AND message_id = $2",
        )
        .bind(tenant)
        .bind(id)
        .bind(delta)
        .bind(price.currency.as_str())
        .execute(&mut *conn)
        .await?;
        let new_segments = if priced == 0 {
            i64::from(message.segments)
        } else {
            0
        };
        sqlx::query(
            "INSERT INTO price_averages (tenant_id, provider, country, currency, total_micros,
                 total_segments)
             VALUES ($1, $2, $3, $4, $5, $6)
             ON CONFLICT (tenant_id, provider, country, currency) DO UPDATE
             SET total_micros = price_averages.total_micros + excluded.total_micros,
                 total_segments = price_averages.total_segments + excluded.total_segments",
        )
        .bind(tenant)
        .bind(message.provider.as_str())
        .bind(country.as_deref().unwrap_or(UNKNOWN_COUNTRY))
        .bind(price.currency.as_str())
        .bind(delta)
        .bind(new_segments)
        .execute(&mut *conn)
        .await?;
        Self::settle(conn, tenant, id, &change, now).await
    }

    /// Moves a message's reservations into spending as its actual price (change) arrives: a
    /// held reservation is given back and the price spent; a settled one adds the change. A
    /// budget in another currency than the price cannot be charged with it: its reservation is
    /// given back all the same, so it is not held for ever.
    async fn settle(
        conn: &mut DB::Connection,
        tenant: &str,
        id: &str,
        change: &Money,
        now: i64,
    ) -> Result<Vec<BudgetAlert>> {
        let holds = sqlx::query(
            "SELECT h.budget, h.period_start, h.micros, h.state, b.limit_micros,
                 b.alert_thresholds, b.currency
             FROM budget_holds h
             JOIN budgets b ON b.tenant_id = h.tenant_id AND b.name = h.budget
             WHERE h.tenant_id = $1 AND h.message_id = $2 AND h.state <> 'released'
             ORDER BY h.budget",
        )
        .bind(tenant)
        .bind(id)
        .fetch_all(&mut *conn)
        .await?;
        let mut alerts = Vec::new();
        for hold in holds {
            let budget: String = hold.try_get("budget")?;
            let period_start: i64 = hold.try_get("period_start")?;
            let state: String = hold.try_get("state")?;
            let held: i64 = if state == "held" {
                hold.try_get("micros")?
            } else {
                0
            };
            let currency: String = hold.try_get("currency")?;
            let spend = if currency == change.currency {
                change.micros
            } else {
                0
            };
            let row = sqlx::query(
                "UPDATE budget_usage
                 SET reserved_micros = reserved_micros - $4, spent_micros = spent_micros + $5
                 WHERE tenant_id = $1 AND budget = $2 AND period_start = $3
                 RETURNING spent_micros, reserved_micros",
            )
            .bind(tenant)
            .bind(budget.as_str())
            .bind(period_start)
            .bind(held)
            .bind(spend)
            .fetch_optional(&mut *conn)
            .await?;
            if state == "held" {
                Self::mark_hold(conn, tenant, id, &budget, "settled").await?;
                let released = Money::new(held, currency.clone());
                let at = Some((budget.as_str(), period_start));
                Self::ledger_row(conn, tenant, id, "release", at, None, &released, now).await?;
            }
            let Some(row) = row else { continue };
            let after: i64 = row.try_get::<i64, _>("spent_micros")?
                + row.try_get::<i64, _>("reserved_micros")?;
            let thresholds: String = hold.try_get("alert_thresholds")?;
            let thresholds: Vec<u32> = super::shared::json(&thresholds, "alert_thresholds")?;
            let crossing = Crossing {
                budget: &budget,
                period_start,
                limit: hold.try_get("limit_micros")?,
                thresholds: &thresholds,
                before: after - spend + held,
                after,
            };
            Self::fire_thresholds(conn, tenant, &crossing, now, &mut alerts).await?;
        }
        Ok(alerts)
    }

    async fn mark_hold(
        conn: &mut DB::Connection,
        tenant: &str,
        id: &str,
        budget: &str,
        state: &str,
    ) -> Result<()> {
        sqlx::query(
            "UPDATE budget_holds SET state = $4
             WHERE tenant_id = $1 AND message_id = $2 AND budget = $3",
        )
        .bind(tenant)
        .bind(id)
        .bind(budget)
        .bind(state)
        .execute(&mut *conn)
        .await?;
        Ok(())
    }

    /// Gives back every reservation a message still holds (it failed before any provider took
    /// it, or was canceled), inside the transaction that ends it.
    pub(super) async fn release_holds(
        conn: &mut DB::Connection,
        tenant: &str,
        id: &str,
        now: i64,
    ) -> Result<()> {
        let holds = sqlx::query(
            "SELECT h.budget, h.period_start, h.micros, b.currency
             FROM budget_holds h
             LEFT JOIN budgets b ON b.tenant_id = h.tenant_id AND b.name = h.budget
             WHERE h.tenant_id = $1 AND h.message_id = $2 AND h.state = 'held'
             ORDER BY h.budget",
        )
        .bind(tenant)
        .bind(id)
        .fetch_all(&mut *conn)
        .await?;
        for hold in holds {
            let budget: String = hold.try_get("budget")?;
            let period_start: i64 = hold.try_get("period_start")?;
            let micros: i64 = hold.try_get("micros")?;
            let currency: Option<String> = hold.try_get("currency")?;
            sqlx::query(
                "UPDATE budget_usage SET reserved_micros = reserved_micros - $4
                 WHERE tenant_id = $1 AND budget = $2 AND period_start = $3",
            )
            .bind(tenant)
            .bind(budget.as_str())
            .bind(period_start)
            .bind(micros)
            .execute(&mut *conn)
            .await?;
            Self::mark_hold(conn, tenant, id, &budget, "released").await?;
            let released = Money::new(micros, currency.unwrap_or_default());
            let at = Some((budget.as_str(), period_start));
            Self::ledger_row(conn, tenant, id, "release", at, None, &released, now).await?;
        }
        Ok(())
    }

    async fn message_cost(pool: &Pool<DB>, tenant: &str, id: &str) -> Result<Option<MessageCost>> {
        let row =
            sqlx::query("SELECT * FROM message_costs WHERE tenant_id = $1 AND message_id = $2")
                .bind(tenant)
                .bind(id)
                .fetch_optional(pool)
                .await?;
        let Some(row) = row else { return Ok(None) };
        let money = |micros: Option<i64>, currency: Option<String>| match (micros, currency) {
            (Some(micros), Some(currency)) => Some(Money { micros, currency }),
            _ => None,
        };
        Ok(Some(MessageCost {
            estimate: money(row.try_get("estimate_micros")?, row.try_get("currency")?),
            source: row.try_get("estimate_source")?,
            reason: row.try_get("reason")?,
            actual: money(
                row.try_get("actual_micros")?,
                row.try_get("actual_currency")?,
            ),
            difference_micros: row.try_get("difference_micros")?,
        }))
    }

    async fn price_averages(
        pool: &Pool<DB>,
        tenant: &str,
        provider: &str,
        country: &str,
    ) -> Result<Vec<PriceAverage>> {
        let rows = sqlx::query(
            "SELECT currency, total_micros, total_segments FROM price_averages
             WHERE tenant_id = $1 AND provider = $2 AND country = $3 AND total_segments > 0
             ORDER BY total_segments DESC, currency",
        )
        .bind(tenant)
        .bind(provider)
        .bind(country)
        .fetch_all(pool)
        .await?;
        rows.iter()
            .map(|row| {
                Ok(PriceAverage {
                    currency: row.try_get("currency")?,
                    total_micros: row.try_get("total_micros")?,
                    total_segments: row.try_get("total_segments")?,
                })
            })
            .collect()
    }
}

/// A change of a budget's committed amount, checked against its thresholds.
pub(super) struct Crossing<'a> {
    pub(super) budget: &'a str,
    pub(super) period_start: i64,
    pub(super) limit: i64,
    pub(super) thresholds: &'a [u32],
    pub(super) before: i64,
    pub(super) after: i64,
}

/// Logs the thresholds that fired, once their transaction committed.
pub(super) fn log_alerts(alerts: &[BudgetAlert]) {
    for alert in alerts {
        tracing::warn!(
            target: "budget.threshold",
            tenant = %alert.tenant,
            budget = %alert.budget,
            threshold = alert.threshold,
            period = alert.period_start,
            committed_micros = alert.committed_micros,
            "budget.threshold"
        );
    }
}

impl Store {
    /// The money side of message `id`: estimate, actual and difference; `None` when nothing was
    /// recorded for it.
    pub async fn message_cost(&self, tenant: &TenantId, id: &str) -> Result<Option<MessageCost>> {
        match &self.inner.backend {
            super::Backend::Sqlite { reader, .. } => {
                Queries::message_cost(reader, tenant.as_str(), id).await
            }
            super::Backend::Postgres(pool) => {
                Queries::message_cost(pool, tenant.as_str(), id).await
            }
        }
    }

    /// The running averages of actual prices for a tenant, provider and country (`None`: a
    /// number whose country is unknown), the most used currency first.
    pub async fn price_averages(
        &self,
        tenant: &TenantId,
        provider: &str,
        country: Option<&str>,
    ) -> Result<Vec<PriceAverage>> {
        let country = country.unwrap_or(UNKNOWN_COUNTRY);
        match &self.inner.backend {
            super::Backend::Sqlite { reader, .. } => {
                Queries::price_averages(reader, tenant.as_str(), provider, country).await
            }
            super::Backend::Postgres(pool) => {
                Queries::price_averages(pool, tenant.as_str(), provider, country).await
            }
        }
    }
}

/// A message's ledger row: its kind, the budget and period it concerns (reservations), and the
/// amount.
struct LedgerRow<'a> {
    kind: &'a str,
    budget: Option<(&'a str, i64)>,
    money: Money,
}

/// Only while message `$2` exists: the tail of an `INSERT … SELECT` of the charge's statements,
/// so that a charge in the same script as an enqueue that stored nothing (a reused idempotency
/// key) writes nothing either.
const WHILE_STORED: &str = "EXISTS (SELECT 1 FROM messages WHERE id = $2)";

/// Appends the statements that record `charge` for `message` (its cost row, its holds, its
/// `estimate` and `reservation` ledger rows, then one reservation upsert per hold) to `script`;
/// returns the index of each hold's upsert, whose row [`Queries::charged`] reads.
///
/// The reservations come last: on PostgreSQL each locks its budget's usage row until the commit,
/// and every send of the tenant under that budget waits for it, so the lock should be held for
/// as little of the transaction as can be.
pub(super) fn charge_statements(
    script: &mut Script,
    tenant: &str,
    message: &str,
    charge: &Charge,
    now: i64,
) -> Vec<usize> {
    script.push(cost_statement(tenant, message, charge, now, WHILE_STORED));
    hold_statements(script, tenant, message, charge, now)
}

/// The insert of `charge`'s cost row for `message`, written only where `condition` holds (SQL
/// over `$1`, the tenant, and `$2`, the message id).
pub(super) fn cost_statement(
    tenant: &str,
    message: &str,
    charge: &Charge,
    now: i64,
    condition: &str,
) -> Statement {
    Statement::new(format!(
        "INSERT INTO message_costs (tenant_id, message_id, provider, country, segments,
             estimate_micros, currency, estimate_source, reason, created_at)
         SELECT $1, $2, $3, $4, $5, $6, $7, $8, $9, $10 WHERE {condition}"
    ))
    .bind(tenant)
    .bind(message)
    .bind(charge.provider.as_str())
    .bind(charge.country.as_deref())
    .bind(super::shared::db_int(charge.segments))
    .bind(charge.estimate.as_ref().map(|m| m.micros))
    .bind(charge.estimate.as_ref().map(|m| m.currency.as_str()))
    .bind(charge.source.as_deref())
    .bind(charge.reason.as_deref())
    .bind(now)
}

/// Appends the statements of `charge` that follow its cost row (see [`charge_statements`]),
/// each written only while `message` is stored.
pub(super) fn hold_statements(
    script: &mut Script,
    tenant: &str,
    message: &str,
    charge: &Charge,
    now: i64,
) -> Vec<usize> {
    let currency = charge
        .estimate
        .as_ref()
        .map_or("", |estimate| estimate.currency.as_str());
    if !charge.holds.is_empty() {
        let values = (0..charge.holds.len())
            .map(|i| {
                let n = 3 + i * 3;
                format!("($1, $2, ${}, ${}, ${}, 'held')", n, n + 1, n + 2)
            })
            .collect::<Vec<_>>()
            .join(", ");
        let mut holds = Statement::new(format!(
            "INSERT INTO budget_holds (tenant_id, message_id, budget, period_start, micros, state)
             SELECT * FROM (VALUES {values}) AS held WHERE {WHILE_STORED}"
        ))
        .bind(tenant)
        .bind(message);
        for hold in &charge.holds {
            holds = holds
                .bind(hold.budget.as_str())
                .bind(hold.period_start)
                .bind(hold.micros);
        }
        script.push(holds);
    }
    let mut rows = Vec::with_capacity(1 + charge.holds.len());
    if let Some(estimate) = &charge.estimate {
        rows.push(LedgerRow {
            kind: "estimate",
            budget: None,
            money: estimate.clone(),
        });
    }
    for hold in &charge.holds {
        rows.push(LedgerRow {
            kind: "reservation",
            budget: Some((hold.budget.as_str(), hold.period_start)),
            money: Money::new(hold.micros, currency),
        });
    }
    if !rows.is_empty() {
        let values = (0..rows.len())
            .map(|i| {
                let n = 4 + i * 5;
                format!(
                    "($1, $2, ${}, ${}, ${}, NULL, ${}, ${}, $3)",
                    n,
                    n + 1,
                    n + 2,
                    n + 3,
                    n + 4
                )
            })
            .collect::<Vec<_>>()
            .join(", ");
        let mut entries = Statement::new(format!(
            "INSERT INTO ledger_entries (tenant_id, message_id, kind, budget, period_start,
                 attempt_ref, micros, currency, created_at)
             SELECT * FROM (VALUES {values}) AS entry WHERE {WHILE_STORED}"
        ))
        .bind(tenant)
        .bind(message)
        .bind(now);
        for row in &rows {
            entries = entries
                .bind(row.kind)
                .bind(row.budget.map(|(name, _)| name))
                .bind(row.budget.map(|(_, start)| start))
                .bind(row.money.micros)
                .bind(row.money.currency.as_str());
        }
        script.push(entries);
    }
    charge
        .holds
        .iter()
        .map(|hold| {
            script.push(
                Statement::new(reservation_upsert(
                    ["$1", "$3", "$4", "$5"],
                    hold.hard_cap,
                    &format!(" WHERE {WHILE_STORED}"),
                ))
                .bind(tenant)
                .bind(message)
                .bind(hold.budget.as_str())
                .bind(hold.period_start)
                .bind(hold.micros),
            )
        })
        .collect()
}

/// The upsert that reserves an amount on a budget's period, creating the period's usage row if
/// need be, and returns the row's `spent_micros, reserved_micros` after it: nothing when a hard
/// cap has no room. `params` are the SQL of the tenant, budget name, period start and amount;
/// `source` is the tail of its `SELECT` (a `WHERE` clause, or `FROM` and `WHERE`).
///
/// The limit is read in the same statement, so a budget replaced meanwhile is obeyed at its new
/// limit; a deleted one refuses (the comparison with NULL is not true). On PostgreSQL the
/// conflict arm re-checks the room on the row's newest version after waiting for its lock.
pub(super) fn reservation_upsert(params: [&str; 4], hard_cap: bool, source: &str) -> String {
    let [tenant, budget, period, amount] = params;
    let limit = format!(
        "(SELECT limit_micros FROM budgets WHERE tenant_id = {tenant} AND name = {budget})"
    );
    let (room_new, room) = if hard_cap {
        (
            format!(" AND {amount} <= {limit}"),
            format!(
                " WHERE budget_usage.spent_micros + budget_usage.reserved_micros + {amount}
                     <= {limit}"
            ),
        )
    } else {
        (String::new(), String::new())
    };
    format!(
        "INSERT INTO budget_usage (tenant_id, budget, period_start, spent_micros, reserved_micros)
         SELECT {tenant}, {budget}, {period}, 0, {amount}{source}{room_new}
         ON CONFLICT (tenant_id, budget, period_start) DO UPDATE
             SET reserved_micros = budget_usage.reserved_micros + {amount}{room}
         RETURNING spent_micros, reserved_micros"
    )
}
