//! `GET /delivery/metrics`: delivery rate, times to `sent` and `delivered` (mean, p50, p95),
//! failure reasons, cost per message (retries included), opt-out rate and template usage of a
//! period, in total and per group. Each message's times need its own history, so these read the
//! period's messages with one set-based query (`store/reports.rs`) rather than the rollups.

use std::collections::BTreeMap;

use serde::Serialize;

use super::Pipeline;
use super::error::Result;
use super::reports::{GroupBy, Period, TOP, group_key, is_delivered, is_failed, rate};
use crate::domain::TenantId;
use crate::store::DeliveryFact;

/// Mean, median and 95th percentile of a set of durations, in milliseconds.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Timing {
    /// How many messages reached the status.
    pub count: i64,
    /// Mean, rounded down.
    pub mean_ms: Option<i64>,
    /// Median (nearest rank).
    pub p50_ms: Option<i64>,
    /// 95th percentile (nearest rank).
    pub p95_ms: Option<i64>,
}

impl Timing {
    fn of(mut values: Vec<i64>) -> Self {
        values.sort_unstable();
        let count = values.len() as i64;
        let rank = |p: i64| -> Option<i64> {
            // Nearest rank: the smallest value with at least p% of the values at or below it.
            let index = (p * count + 99) / 100 - 1;
            usize::try_from(index)
                .ok()
                .and_then(|i| values.get(i).copied())
        };
        Self {
            count,
            mean_ms: (count > 0).then(|| values.iter().sum::<i64>() / count),
            p50_ms: rank(50),
            p95_ms: rank(95),
        }
    }
}

/// How many failures a provider error code accounts for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FailureReason {
    /// The provider's (or Herald's) error code; `unknown` when none was given.
    pub error_code: String,
    /// Failed or undelivered messages with it.
    pub count: i64,
}

/// The cost per message in one currency, retries included.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MessageCost {
    /// ISO 4217 currency.
    pub currency: String,
    /// Messages priced in it.
    pub messages: i64,
    /// Their cost: every attempt's actual price, else the estimate.
    pub cost_micros: i64,
    /// `cost_micros ÷ messages`, rounded down.
    pub cost_per_message_micros: i64,
}

/// The delivery figures of a set of messages.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct DeliveryFigures {
    /// Messages accepted.
    pub messages: i64,
    /// Of those, delivered (or read).
    pub delivered: i64,
    /// Of those, failed or undelivered.
    pub failed: i64,
    /// `delivered ÷ messages`.
    pub delivery_rate: Option<f64>,
    /// From acceptance to the first `sent`.
    pub time_to_sent: Timing,
    /// From acceptance to the first `delivered`.
    pub time_to_delivered: Timing,
    /// The most frequent failure codes, most frequent first (at most 10).
    pub failure_reasons: Vec<FailureReason>,
    /// Cost per message, per currency, retries included.
    pub cost_per_message: Vec<MessageCost>,
}

#[derive(Debug, Default)]
struct DeliveryAcc {
    messages: i64,
    delivered: i64,
    failed: i64,
    to_sent: Vec<i64>,
    to_delivered: Vec<i64>,
    reasons: BTreeMap<String, i64>,
    costs: BTreeMap<String, (i64, i64)>,
}

impl DeliveryAcc {
    fn add(&mut self, fact: &DeliveryFact) {
        self.messages += 1;
        if is_delivered(&fact.status) {
            self.delivered += 1;
        }
        if is_failed(&fact.status) {
            self.failed += 1;
            let code = fact.error_code.as_deref().unwrap_or("unknown");
            *self.reasons.entry(code.to_owned()).or_default() += 1;
        }
        self.to_sent.extend(fact.to_sent_ms);
        self.to_delivered.extend(fact.to_delivered_ms);
        if let (Some(cost), Some(currency)) = (fact.cost_micros, &fact.currency) {
            let sum = self.costs.entry(currency.clone()).or_default();
            sum.0 += 1;
            sum.1 += cost;
        }
    }

    fn finish(self) -> DeliveryFigures {
        let mut reasons: Vec<FailureReason> = self
            .reasons
            .into_iter()
            .map(|(error_code, count)| FailureReason { error_code, count })
            .collect();
        // Stable: equal counts stay in code order.
        reasons.sort_by_key(|reason| std::cmp::Reverse(reason.count));
        reasons.truncate(TOP);
        DeliveryFigures {
            messages: self.messages,
            delivered: self.delivered,
            failed: self.failed,
            delivery_rate: rate(self.delivered, self.messages),
            time_to_sent: Timing::of(self.to_sent),
            time_to_delivered: Timing::of(self.to_delivered),
            failure_reasons: reasons,
            cost_per_message: self
                .costs
                .into_iter()
                .map(|(currency, (messages, cost))| MessageCost {
                    currency,
                    messages,
                    cost_micros: cost,
                    cost_per_message_micros: cost / messages.max(1),
                })
                .collect(),
        }
    }
}

/// One group of the delivery metrics.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DeliveryGroup {
    /// The group's key.
    pub key: Option<String>,
    /// Its figures.
    #[serde(flatten)]
    pub figures: DeliveryFigures,
}

/// How a template was used.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TemplateUsage {
    /// The template id.
    pub template_id: String,
    /// Messages sent from it.
    pub messages: i64,
    /// Of those, delivered.
    pub delivered: i64,
    /// `delivered ÷ messages`.
    pub delivery_rate: Option<f64>,
}

/// The answer of `GET /delivery/metrics`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DeliveryMetrics {
    /// The period.
    #[serde(flatten)]
    pub period: Period,
    /// The dimension of `groups`, if grouped.
    pub group_by: Option<GroupBy>,
    /// Every message of the period.
    pub totals: DeliveryFigures,
    /// The same per group, by key.
    pub groups: Vec<DeliveryGroup>,
    /// The opt-out rate over the period: distinct numbers that opted out ÷ distinct numbers
    /// messaged (as `GET /opt-outs/stats`).
    pub opt_outs: super::opt_outs::Period,
    /// The most used templates (at most 10), most used first.
    pub templates: Vec<TemplateUsage>,
}

/// The delivery metrics of `tenant` over `period`, grouped by `group_by` when given.
pub async fn delivery_metrics(
    pipeline: &Pipeline,
    tenant: &TenantId,
    period: Period,
    group_by: Option<GroupBy>,
) -> Result<DeliveryMetrics> {
    let facts = pipeline
        .store()
        .delivery_facts(tenant, period.start, period.end)
        .await?;
    let mut totals = DeliveryAcc::default();
    let mut groups: BTreeMap<Option<String>, DeliveryAcc> = BTreeMap::new();
    let mut templates: BTreeMap<String, (i64, i64)> = BTreeMap::new();
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
        if let Some(template) = &fact.template_id {
            let usage = templates.entry(template.clone()).or_default();
            usage.0 += 1;
            usage.1 += i64::from(is_delivered(&fact.status));
        }
    }
    let mut templates: Vec<TemplateUsage> = templates
        .into_iter()
        .map(|(template_id, (messages, delivered))| TemplateUsage {
            template_id,
            messages,
            delivered,
            delivery_rate: rate(delivered, messages),
        })
        .collect();
    templates.sort_by_key(|usage| std::cmp::Reverse(usage.messages));
    templates.truncate(TOP);
    let opt_outs =
        super::opt_outs::stats(pipeline, tenant, Some(period.start), Some(period.end)).await?;
    Ok(DeliveryMetrics {
        period,
        group_by,
        totals: totals.finish(),
        groups: groups
            .into_iter()
            .map(|(key, acc)| DeliveryGroup {
                key,
                figures: acc.finish(),
            })
            .collect(),
        opt_outs: opt_outs.period,
        templates,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timing_uses_nearest_rank() {
        let timing = Timing::of((1..=20).rev().collect());
        assert_eq!(timing.count, 20);
        assert_eq!(timing.mean_ms, Some(10));
        assert_eq!(timing.p50_ms, Some(10));
        assert_eq!(timing.p95_ms, Some(19));
        assert_eq!(Timing::of(Vec::new()).p95_ms, None);
    }
}
