//! Budgets: a tenant's spending limit per UTC day or month, for all its messages or one
//! category, with alert thresholds and an optional hard cap.
//!
//! What a budget counts is its period's *committed* money: `spent` (actual prices) plus
//! `reserved` (estimates of messages not yet priced). A hard-capped budget refuses a send whose
//! estimate would take the committed amount past the limit (`402 budget_exceeded`); the check and
//! the reservation are one conditional update inside the enqueue (see [`crate::store`]'s ledger),
//! so concurrent sends never overshoot. A threshold fires once per period, the first time the
//! committed amount reaches it: a `budget.threshold` log line, recorded so that it never fires
//! twice.

use serde::{Deserialize, Serialize};
use time::{Date, Month, OffsetDateTime, Time};

use super::Pipeline;
use super::error::{ErrorCode, PipelineError, Result};
use crate::domain::{Category, Money, TenantId};
use crate::store::StoredBudget;

/// The longest budget name.
const MAX_NAME: usize = 64;
/// The most alert thresholds a budget may have.
const MAX_THRESHOLDS: usize = 10;
/// The largest threshold, in percent of the limit.
const MAX_THRESHOLD: u32 = 1_000;
/// The largest limit: a billion currency units, so that usage sums stay far inside 64 bits (on
/// PostgreSQL an overflow would be an error) and exact as the metrics' floating-point gauges.
const MAX_LIMIT_MICROS: i64 = 1_000_000_000 * 1_000_000;

/// How long a budget's period lasts; periods start at UTC midnight.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Period {
    /// A UTC day.
    Daily,
    /// A UTC calendar month.
    Monthly,
}

impl Period {
    /// The name stored and shown.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Daily => "daily",
            Self::Monthly => "monthly",
        }
    }

    fn parse(name: &str) -> Option<Self> {
        [Self::Daily, Self::Monthly]
            .into_iter()
            .find(|p| p.as_str() == name)
    }

    /// The start and end (UTC ms, end exclusive) of the period that contains `now`.
    #[must_use]
    pub fn bounds(self, now: i64) -> (i64, i64) {
        let at = OffsetDateTime::from_unix_timestamp_nanos(i128::from(now) * 1_000_000)
            .unwrap_or(OffsetDateTime::UNIX_EPOCH);
        let day = at.date();
        let (start, end) = match self {
            Self::Daily => (day, day.next_day().unwrap_or(day)),
            Self::Monthly => {
                let first = day.replace_day(1).unwrap_or(day);
                let (year, month) = match day.month() {
                    Month::December => (day.year() + 1, Month::January),
                    month => (day.year(), month.next()),
                };
                (
                    first,
                    Date::from_calendar_date(year, month, 1).unwrap_or(first),
                )
            }
        };
        (millis(start), millis(end))
    }
}

/// Milliseconds since the epoch as RFC 3339.
fn iso(ms: i64) -> String {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_default()
}

fn millis(date: Date) -> i64 {
    let nanos = date
        .with_time(Time::MIDNIGHT)
        .assume_utc()
        .unix_timestamp_nanos();
    i64::try_from(nanos / 1_000_000).unwrap_or(i64::MAX)
}

/// A budget as a caller writes it (`PUT /api/v1/sms/budgets/{name}`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BudgetSpec {
    /// `daily` or `monthly`.
    pub period: String,
    /// The limit per period.
    pub limit: Limit,
    /// The only category it applies to; absent for every message.
    #[serde(default)]
    pub category: Option<String>,
    /// Percentages of the limit that alert when first reached in a period.
    #[serde(default)]
    pub alert_thresholds: Vec<u32>,
    /// Whether sends past the limit are refused.
    #[serde(default)]
    pub hard_cap: bool,
}

/// A budget's limit: integer micro-units of a currency.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Limit {
    /// The amount in micro-units; not negative.
    pub micros: i64,
    /// The ISO 4217 currency code.
    pub currency: String,
}

/// A budget with its usage in the current period.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BudgetView {
    /// Its name.
    pub name: String,
    /// `daily` or `monthly`.
    pub period: String,
    /// The limit per period.
    pub limit: Money,
    /// The category it applies to; `null` for every message.
    pub category: Option<String>,
    /// Alert thresholds, percent of the limit.
    pub alert_thresholds: Vec<u32>,
    /// Whether sends past the limit are refused.
    pub hard_cap: bool,
    /// The current period's usage.
    pub usage: Usage,
}

/// A budget's usage in its current period.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Usage {
    /// Actual prices charged.
    pub spent: Money,
    /// Estimates reserved for messages not yet priced.
    pub reserved: Money,
    /// The limit minus spent and reserved (negative when a budget without a hard cap is over).
    pub remaining: Money,
    /// When the period began (RFC 3339, UTC).
    pub period_start: String,
    /// When the period ends and usage starts again from zero (RFC 3339, UTC).
    pub resets_at: String,
    /// The alert thresholds reached in this period, each fired once, lowest first.
    pub alerts: Vec<FiredAlert>,
}

/// A threshold that fired in the current period.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FiredAlert {
    /// The threshold, in percent of the limit.
    pub threshold: u32,
    /// When it fired (RFC 3339, UTC).
    pub fired_at: String,
}

/// Creates or replaces budget `name`; returns it with its usage and whether it was created.
pub async fn put(
    pipeline: &Pipeline,
    tenant: &TenantId,
    name: &str,
    spec: BudgetSpec,
) -> Result<(BudgetView, bool)> {
    let stored = check(tenant, name, spec, pipeline.now())?;
    let created = match pipeline.store().put_budget(&stored).await {
        Ok(created) => created,
        Err(crate::store::StoreError::Conflict(message)) => {
            return Err(PipelineError::new(ErrorCode::InvalidBudget, message));
        }
        Err(e) => return Err(e.into()),
    };
    Ok((view(pipeline, stored).await?, created))
}

/// Every budget of `tenant`, by name, with its usage in the current period.
pub async fn list(pipeline: &Pipeline, tenant: &TenantId) -> Result<Vec<BudgetView>> {
    let mut views = Vec::new();
    for budget in pipeline.store().list_budgets(tenant).await? {
        views.push(view(pipeline, budget).await?);
    }
    Ok(views)
}

/// Sets the budget metrics from the store (at a scrape): every budget's spent and reserved in
/// its current period, and how many alerts each threshold fired.
///
/// # Errors
///
/// Storage errors.
pub async fn record_metrics(pipeline: &Pipeline) -> Result<()> {
    let store = pipeline.store();
    let metrics = pipeline.metrics();
    for budget in store.all_budgets().await? {
        let Some(period) = Period::parse(&budget.period) else {
            continue;
        };
        let (start, _) = period.bounds(pipeline.now());
        let usage = store
            .budget_usage(&budget.tenant, &budget.name, start)
            .await?;
        metrics.budget_usage(
            &budget.tenant,
            &budget.name,
            &budget.limit.currency,
            usage.spent_micros,
            usage.reserved_micros,
        );
    }
    for (tenant, budget, threshold, fired) in store.budget_alert_counts().await? {
        metrics.budget_alerts_fired(
            &tenant,
            &budget,
            threshold,
            u64::try_from(fired).unwrap_or(0),
        );
    }
    Ok(())
}

async fn view(pipeline: &Pipeline, budget: StoredBudget) -> Result<BudgetView> {
    let period = Period::parse(&budget.period)
        .ok_or_else(|| PipelineError::internal(format!("budget period {:?}", budget.period)))?;
    let (start, end) = period.bounds(pipeline.now());
    let usage = pipeline
        .store()
        .budget_usage(&budget.tenant, &budget.name, start)
        .await?;
    let alerts = pipeline
        .store()
        .budget_alerts(&budget.tenant, &budget.name, start)
        .await?
        .into_iter()
        .map(|(threshold, at)| FiredAlert {
            threshold,
            fired_at: iso(at),
        })
        .collect();
    let money = |micros| Money::new(micros, budget.limit.currency.clone());
    let remaining = budget
        .limit
        .micros
        .saturating_sub(usage.spent_micros)
        .saturating_sub(usage.reserved_micros);
    Ok(BudgetView {
        usage: Usage {
            spent: money(usage.spent_micros),
            reserved: money(usage.reserved_micros),
            remaining: money(remaining),
            period_start: iso(start),
            resets_at: iso(end),
            alerts,
        },
        name: budget.name,
        period: budget.period,
        limit: budget.limit,
        category: budget.category,
        alert_thresholds: budget.alert_thresholds,
        hard_cap: budget.hard_cap,
    })
}

/// Checks a budget as written and turns it into the stored form.
fn check(tenant: &TenantId, name: &str, spec: BudgetSpec, now: i64) -> Result<StoredBudget> {
    let invalid = |message: String| PipelineError::new(ErrorCode::InvalidBudget, message);
    let name_ok = !name.is_empty()
        && name.len() <= MAX_NAME
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'));
    if !name_ok {
        return Err(invalid(format!(
            "a budget name is 1 to {MAX_NAME} letters, digits, `_`, `-` or `.`"
        )));
    }
    let period = Period::parse(&spec.period)
        .ok_or_else(|| invalid("`period` must be `daily` or `monthly`".into()))?;
    if !(0..=MAX_LIMIT_MICROS).contains(&spec.limit.micros) {
        return Err(invalid(format!(
            "`limit.micros` must be from 0 to {MAX_LIMIT_MICROS}"
        )));
    }
    if !Money::is_currency_code(&spec.limit.currency) {
        return Err(invalid(
            "`limit.currency` must be an ISO 4217 code of three capital letters (`USD`)".into(),
        ));
    }
    let category = match &spec.category {
        None => None,
        Some(name) => Some(
            Category::for_message(name)
                .map_err(|e| invalid(format!("`category`: {e}")))?
                .as_str()
                .to_owned(),
        ),
    };
    let mut thresholds = spec.alert_thresholds;
    if thresholds.len() > MAX_THRESHOLDS || thresholds.iter().any(|t| *t == 0 || *t > MAX_THRESHOLD)
    {
        return Err(invalid(format!(
            "`alert_thresholds` are at most {MAX_THRESHOLDS} percentages from 1 to {MAX_THRESHOLD}"
        )));
    }
    thresholds.sort_unstable();
    thresholds.dedup();
    Ok(StoredBudget {
        tenant: tenant.clone(),
        name: name.to_owned(),
        period: period.as_str().to_owned(),
        limit: Money::new(spec.limit.micros, spec.limit.currency),
        category,
        alert_thresholds: thresholds,
        hard_cap: spec.hard_cap,
        created_at: now,
        updated_at: now,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Days and months start at UTC midnight; December rolls into January.
    #[test]
    fn period_bounds() {
        // 2026-12-31T13:00:00Z
        let now = 1_798_722_000_000;
        let (start, end) = Period::Daily.bounds(now);
        assert_eq!((start, end), (1_798_675_200_000, 1_798_761_600_000));
        let (start, end) = Period::Monthly.bounds(now);
        // 2026-12-01 and 2027-01-01.
        assert_eq!((start, end), (1_796_083_200_000, 1_798_761_600_000));
    }

    /// Bad names, periods, limits, currencies and thresholds are refused with one code.
    #[test]
    fn check_refuses_bad_budgets() {
        let tenant = TenantId::default_tenant();
        let spec = || BudgetSpec {
            period: "daily".into(),
            limit: Limit {
                micros: 1_000,
                currency: "USD".into(),
            },
            category: None,
            alert_thresholds: vec![80, 50, 80],
            hard_cap: true,
        };
        let ok = check(&tenant, "main", spec(), 0).unwrap();
        assert_eq!(ok.alert_thresholds, vec![50, 80]);
        let mut bad = vec![];
        bad.push(("", spec()));
        bad.push(("a/b", spec()));
        let mut s = spec();
        s.period = "weekly".into();
        bad.push(("x", s));
        let mut s = spec();
        s.limit.micros = -1;
        bad.push(("x", s));
        let mut s = spec();
        s.limit.currency = "usd".into();
        bad.push(("x", s));
        let mut s = spec();
        s.alert_thresholds = vec![0];
        bad.push(("x", s));
        let mut s = spec();
        s.category = Some("all".into());
        bad.push(("x", s));
        for (name, spec) in bad {
            assert_eq!(
                check(&tenant, name, spec.clone(), 0).unwrap_err().code,
                ErrorCode::InvalidBudget,
                "{name} {spec:?}"
            );
        }
    }
}
