//! The cost and delivery reports of a period: `costs/summary` (totals and groups),
//! `costs/report` (billing line items per day × provider × category), and what they share with
//! `delivery/metrics` ([`delivery_metrics`](super::delivery_metrics)): the period and the groups.
//!
//! Every report reads rollups (`store/reports.rs`): counts and money per tenant × UTC day ×
//! status × currency and the dimensions of its grouping (provider and category, template, or
//! country), each table holding only the keys its reads keep apart and every one summing the
//! same changes to messages and their costs, so their cost does not grow with the messages of a
//! day. The summary and the report read the same rows, so they agree to the micro. Money is
//! summed per currency in integer micros; ratios for people
//! (delivery and opt-out rates) are floats.
//!
//! `template` is the message's `template_id`; `country` is from its cost row
//! (`message_costs.country`, the destination as priced): a message with no cost row has no
//! country and is grouped under `null`.

use std::collections::BTreeMap;

use chrono::{DateTime, NaiveDate};
use serde::{Deserialize, Serialize};

use super::Pipeline;
use super::error::{PipelineError, Result};
use crate::domain::{ErrorCode, TenantId};
use crate::store::{CostFact, DAY_MS, Dimension};

/// The longest period a report covers, in days, so one request's work stays bounded.
pub const MAX_DAYS: i64 = 366;
/// How many failure reasons and templates the delivery metrics list.
pub(super) const TOP: usize = 10;

/// A report's dimension for groups.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum GroupBy {
    /// The UTC day of acceptance (`YYYY-MM-DD`).
    Day,
    /// The opt-out category.
    Category,
    /// The provider plugin.
    Provider,
    /// The template id (`null`: not from a template).
    Template,
    /// The destination country as priced (`null`: not priced).
    Country,
}

impl GroupBy {
    /// The rollups' key column it reads.
    pub(super) fn dimension(self) -> Dimension {
        match self {
            Self::Day => Dimension::Day,
            Self::Category => Dimension::Category,
            Self::Provider => Dimension::Provider,
            Self::Template => Dimension::Template,
            Self::Country => Dimension::Country,
        }
    }
}

/// A period of whole UTC days, `start_date` to `end_date` inclusive.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Period {
    /// The first day, `YYYY-MM-DD`.
    pub start_date: String,
    /// The last day (inclusive), `YYYY-MM-DD`.
    pub end_date: String,
    /// Its start, UTC milliseconds (inclusive).
    pub start: i64,
    /// Its end, UTC milliseconds (exclusive): the midnight after `end_date`.
    pub end: i64,
}

impl Period {
    /// Parses `start_date` and `end_date` (`YYYY-MM-DD`, UTC days, the end inclusive); a bad
    /// date, a reversed range or one longer than [`MAX_DAYS`] is `invalid_query`.
    pub fn parse(start_date: &str, end_date: &str) -> Result<Self> {
        let start_day = day_number("start_date", start_date)?;
        let end_day = day_number("end_date", end_date)?;
        if end_day < start_day {
            return Err(invalid(format!(
                "`end_date` ({end_date}) is before `start_date` ({start_date})"
            )));
        }
        if end_day - start_day + 1 > MAX_DAYS {
            return Err(invalid(format!(
                "the period is longer than {MAX_DAYS} days"
            )));
        }
        Ok(Self {
            start_date: start_date.to_owned(),
            end_date: end_date.to_owned(),
            start: start_day * DAY_MS,
            end: (end_day + 1) * DAY_MS,
        })
    }
}

impl Period {
    /// Its days since the Unix epoch, `[first, end)`.
    pub fn days(&self) -> (i64, i64) {
        (self.start / DAY_MS, self.end / DAY_MS)
    }
}

/// Days since the Unix epoch of a `YYYY-MM-DD` date given as query parameter `name`.
fn day_number(name: &str, text: &str) -> Result<i64> {
    let date = (text.len() == 10)
        .then(|| NaiveDate::parse_from_str(text, "%Y-%m-%d").ok())
        .flatten()
        .ok_or_else(|| invalid(format!("`{name}` must be a date as YYYY-MM-DD")))?;
    let epoch = NaiveDate::from_ymd_opt(1970, 1, 1).unwrap_or_default();
    let days = date.signed_duration_since(epoch).num_days();
    if days < 0 {
        return Err(invalid(format!("`{name}` must not be before 1970-01-01")));
    }
    Ok(days)
}

/// `YYYY-MM-DD` of day number `day` (days since the Unix epoch).
pub fn date_of(day: i64) -> String {
    DateTime::from_timestamp_millis(day.saturating_mul(DAY_MS))
        .map(|t| t.date_naive().format("%Y-%m-%d").to_string())
        .unwrap_or_default()
}

fn invalid(message: impl Into<String>) -> PipelineError {
    PipelineError::new(ErrorCode::InvalidQuery, message)
}

/// Whether `status` counts as delivered (a read message was delivered first).
pub(super) fn is_delivered(status: &str) -> bool {
    matches!(status, "delivered" | "read")
}

/// Whether `status` is a failure.
pub(super) fn is_failed(status: &str) -> bool {
    matches!(status, "failed" | "undelivered")
}

/// A ratio for people; `None` when nothing was counted.
pub(super) fn rate(part: i64, whole: i64) -> Option<f64> {
    (whole > 0).then(|| part as f64 / whole as f64)
}

/// Money in one currency of a set of messages.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct CurrencyCost {
    /// ISO 4217 currency.
    pub currency: String,
    /// Messages priced in it.
    pub messages: i64,
    /// Of those, delivered.
    pub delivered: i64,
    /// Sum of the estimates.
    pub estimated_micros: i64,
    /// Sum of the actual prices (every attempt).
    pub actual_micros: i64,
    /// Sum of the reconciled differences (actual - estimate, where both are known).
    pub difference_micros: i64,
    /// Sum of the costs: the actual price where known, else the estimate (nothing for a
    /// message that failed or was canceled without an actual price).
    pub cost_micros: i64,
    /// `cost_micros ÷ messages`, rounded down.
    pub cost_per_message_micros: Option<i64>,
    /// `cost_micros ÷ delivered`, rounded down.
    pub cost_per_delivered_micros: Option<i64>,
}

/// The cost figures of a set of messages.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct CostFigures {
    /// Messages accepted.
    pub messages: i64,
    /// Their segments.
    pub segments: i64,
    /// Of those, delivered (or read).
    pub delivered: i64,
    /// `delivered ÷ messages`.
    pub delivery_rate: Option<f64>,
    /// Messages with neither an estimate nor an actual price.
    pub unpriced_messages: i64,
    /// The money, per currency.
    pub costs: Vec<CurrencyCost>,
}

#[derive(Debug, Default)]
struct CostAcc {
    messages: i64,
    segments: i64,
    delivered: i64,
    unpriced: i64,
    money: BTreeMap<String, CurrencyCost>,
}

impl CostAcc {
    fn add(&mut self, fact: &CostFact) {
        let delivered = if is_delivered(&fact.status) {
            fact.messages
        } else {
            0
        };
        self.messages += fact.messages;
        self.segments += fact.segments;
        self.delivered += delivered;
        let Some(currency) = &fact.currency else {
            self.unpriced += fact.messages;
            return;
        };
        let money = self
            .money
            .entry(currency.clone())
            .or_insert_with(|| CurrencyCost {
                currency: currency.clone(),
                ..CurrencyCost::default()
            });
        money.messages += fact.messages;
        money.delivered += delivered;
        money.estimated_micros += fact.estimated_micros;
        money.actual_micros += fact.actual_micros;
        money.difference_micros += fact.difference_micros;
        money.cost_micros += fact.cost_micros;
    }

    fn finish(self) -> CostFigures {
        let costs = self
            .money
            .into_values()
            .map(|mut money| {
                money.cost_per_message_micros =
                    (money.messages > 0).then(|| money.cost_micros / money.messages);
                money.cost_per_delivered_micros =
                    (money.delivered > 0).then(|| money.cost_micros / money.delivered);
                money
            })
            .collect();
        CostFigures {
            messages: self.messages,
            segments: self.segments,
            delivered: self.delivered,
            delivery_rate: rate(self.delivered, self.messages),
            unpriced_messages: self.unpriced,
            costs,
        }
    }
}

/// The key of a group: the day, category, provider, template or country.
pub(super) fn group_key(
    group_by: GroupBy,
    day: i64,
    provider: &str,
    category: &str,
    template: Option<&str>,
    country: Option<&str>,
) -> Option<String> {
    match group_by {
        GroupBy::Day => Some(date_of(day)),
        GroupBy::Category => Some(category.to_owned()),
        GroupBy::Provider => Some(provider.to_owned()),
        GroupBy::Template => template.map(str::to_owned),
        GroupBy::Country => country.map(str::to_owned),
    }
}

/// One group of the cost summary.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CostGroup {
    /// The group's key (`null`: no template, or not priced).
    pub key: Option<String>,
    /// Its figures.
    #[serde(flatten)]
    pub figures: CostFigures,
}

/// The answer of `GET /costs/summary`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Summary {
    /// The period.
    #[serde(flatten)]
    pub period: Period,
    /// The dimension of `groups`, if grouped.
    pub group_by: Option<GroupBy>,
    /// Every message of the period.
    pub totals: CostFigures,
    /// The same per group, by key.
    pub groups: Vec<CostGroup>,
}

/// The cost summary of `tenant` over `period`, grouped by `group_by` when given.
pub async fn summary(
    pipeline: &Pipeline,
    tenant: &TenantId,
    period: Period,
    group_by: Option<GroupBy>,
) -> Result<Summary> {
    let dims: Vec<Dimension> = group_by.map(GroupBy::dimension).into_iter().collect();
    let facts = rollups(pipeline, tenant, &period, &dims).await?;
    let mut totals = CostAcc::default();
    let mut groups: BTreeMap<Option<String>, CostAcc> = BTreeMap::new();
    for fact in &facts {
        totals.add(fact);
        if let Some(group_by) = group_by {
            let key = group_key(
                group_by,
                fact.day,
                &fact.provider,
                &fact.category,
                fact.template_id.as_deref(),
                fact.country.as_deref(),
            );
            groups.entry(key).or_default().add(fact);
        }
    }
    Ok(Summary {
        period,
        group_by,
        totals: totals.finish(),
        groups: groups
            .into_iter()
            .map(|(key, acc)| CostGroup {
                key,
                figures: acc.finish(),
            })
            .collect(),
    })
}

/// The rollups of `period` (whole UTC days), keeping `dims` apart.
pub(super) async fn rollups(
    pipeline: &Pipeline,
    tenant: &TenantId,
    period: &Period,
    dims: &[Dimension],
) -> Result<Vec<CostFact>> {
    Ok(pipeline
        .store()
        .rollup_facts(tenant, period.days(), dims)
        .await?)
}

/// One billing line: the messages of a day, provider, category and currency.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LineItem {
    /// The UTC day, `YYYY-MM-DD`.
    pub date: String,
    /// The provider plugin.
    pub provider: String,
    /// The opt-out category.
    pub category: String,
    /// The currency of the money columns (`null`: unpriced messages).
    pub currency: Option<String>,
    /// Messages.
    pub messages: i64,
    /// Their segments.
    pub segments: i64,
    /// Sum of the estimates.
    pub estimated_micros: i64,
    /// Sum of the actual prices.
    pub actual_micros: i64,
    /// Sum of the reconciled differences.
    pub difference_micros: i64,
    /// Sum of the costs (actual where known, else estimate).
    pub cost_micros: i64,
}

/// The totals of a billing report: the sums of its line items.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ReportTotals {
    /// Messages.
    pub messages: i64,
    /// Segments.
    pub segments: i64,
    /// The money, per currency (`messages` there: those priced in it).
    pub costs: Vec<CurrencyTotal>,
}

/// The money of a report in one currency.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct CurrencyTotal {
    /// ISO 4217 currency.
    pub currency: String,
    /// Messages priced in it.
    pub messages: i64,
    /// Sum of the estimates.
    pub estimated_micros: i64,
    /// Sum of the actual prices.
    pub actual_micros: i64,
    /// Sum of the reconciled differences.
    pub difference_micros: i64,
    /// Sum of the costs.
    pub cost_micros: i64,
}

/// The answer of `GET /costs/report` (JSON).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Report {
    /// The period.
    #[serde(flatten)]
    pub period: Period,
    /// The line items by day, provider, category and currency.
    pub items: Vec<LineItem>,
    /// Their sums.
    pub totals: ReportTotals,
}

/// The billing report of `tenant` over `period`.
pub async fn report(pipeline: &Pipeline, tenant: &TenantId, period: Period) -> Result<Report> {
    let dims = [Dimension::Day, Dimension::Provider, Dimension::Category];
    let facts = rollups(pipeline, tenant, &period, &dims).await?;
    type Key = (i64, String, String, Option<String>);
    let mut lines: BTreeMap<Key, LineItem> = BTreeMap::new();
    for fact in &facts {
        let key = (
            fact.day,
            fact.provider.clone(),
            fact.category.clone(),
            fact.currency.clone(),
        );
        let line = lines.entry(key).or_insert_with(|| LineItem {
            date: date_of(fact.day),
            provider: fact.provider.clone(),
            category: fact.category.clone(),
            currency: fact.currency.clone(),
            messages: 0,
            segments: 0,
            estimated_micros: 0,
            actual_micros: 0,
            difference_micros: 0,
            cost_micros: 0,
        });
        line.messages += fact.messages;
        line.segments += fact.segments;
        line.estimated_micros += fact.estimated_micros;
        line.actual_micros += fact.actual_micros;
        line.difference_micros += fact.difference_micros;
        line.cost_micros += fact.cost_micros;
    }
    let items: Vec<LineItem> = lines.into_values().collect();
    let mut totals = ReportTotals::default();
    let mut money: BTreeMap<String, CurrencyTotal> = BTreeMap::new();
    for item in &items {
        totals.messages += item.messages;
        totals.segments += item.segments;
        if let Some(currency) = &item.currency {
            let sum = money
                .entry(currency.clone())
                .or_insert_with(|| CurrencyTotal {
                    currency: currency.clone(),
                    ..CurrencyTotal::default()
                });
            sum.messages += item.messages;
            sum.estimated_micros += item.estimated_micros;
            sum.actual_micros += item.actual_micros;
            sum.difference_micros += item.difference_micros;
            sum.cost_micros += item.cost_micros;
        }
    }
    totals.costs = money.into_values().collect();
    Ok(Report {
        period,
        items,
        totals,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn periods_are_whole_utc_days() {
        let period = Period::parse("1970-01-02", "1970-01-02").unwrap();
        assert_eq!((period.start, period.end), (DAY_MS, 2 * DAY_MS));
        assert!(Period::parse("2026-01-02", "2026-01-01").is_err());
        assert!(Period::parse("2026-1-2", "2026-01-03").is_err());
        assert!(Period::parse("2026-02-30", "2026-03-01").is_err());
        assert!(Period::parse("2024-01-01", "2026-01-01").is_err());
        assert_eq!(date_of(20_000), "2024-10-04");
    }
}
