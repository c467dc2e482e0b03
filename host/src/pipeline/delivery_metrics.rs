//! `GET /delivery/metrics`: delivery rate, times to `sent` and `delivered` (mean, p50, p95),
//! failure reasons, cost per message (retries included), opt-out rate and template usage of a
//! period, in total and per group.
//!
//! Everything is read from rollups (`store/reports.rs`), never from the period's messages:
//! counts and money from the narrow rollup of the grouping, failure codes from the failure
//! rollups, and the times from the latency histograms,
//! whose buckets are exact to 16 ms and then an eighth of an octave wide. A percentile is the
//! largest value of the bucket its rank falls in, so it is at most 9.1 % above the exact
//! value (and never below it); the mean is exact.

use std::collections::BTreeMap;

use serde::Serialize;

use super::Pipeline;
use super::error::Result;
use super::reports::{GroupBy, Period, TOP, group_key, is_delivered, is_failed, rate, rollups};
use crate::domain::TenantId;
use crate::store::{CostFact, Dimension, FailureFact, LatencyFact, LatencyKind};

/// Mean, median and 95th percentile of a set of durations, in milliseconds.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Timing {
    /// How many messages reached the status.
    pub count: i64,
    /// Mean, rounded down.
    pub mean_ms: Option<i64>,
    /// Median (nearest rank, from the histogram: at most 9.1 % above the exact value).
    pub p50_ms: Option<i64>,
    /// 95th percentile (as the median).
    pub p95_ms: Option<i64>,
}

/// A latency histogram: messages per bucket (`lower_ms → (upper_ms, messages)`) and the sum of
/// their durations.
#[derive(Debug, Default)]
struct Histogram {
    buckets: BTreeMap<i64, (i64, i64)>,
    total_ms: i64,
}

impl Histogram {
    fn add(&mut self, fact: &LatencyFact) {
        let bucket = self
            .buckets
            .entry(fact.lower_ms)
            .or_insert((fact.upper_ms, 0));
        bucket.1 += fact.messages;
        self.total_ms += fact.total_ms;
    }

    fn timing(&self) -> Timing {
        let count: i64 = self.buckets.values().map(|(_, n)| n).sum();
        let rank = |p: i64| -> Option<i64> {
            // Nearest rank: the smallest value with at least p% of the values at or below it,
            // read as the largest value its bucket holds.
            let rank = (p * count + 99) / 100;
            let mut seen = 0;
            self.buckets.values().find_map(|&(upper, n)| {
                seen += n;
                (count > 0 && seen >= rank).then_some(upper - 1)
            })
        };
        Timing {
            count,
            mean_ms: (count > 0).then(|| self.total_ms / count),
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
    to_sent: Histogram,
    to_delivered: Histogram,
    reasons: BTreeMap<String, i64>,
    costs: BTreeMap<String, (i64, i64)>,
}

impl DeliveryAcc {
    fn add(&mut self, fact: &CostFact) {
        self.messages += fact.messages;
        if is_delivered(&fact.status) {
            self.delivered += fact.messages;
        }
        if is_failed(&fact.status) {
            self.failed += fact.messages;
        }
        if let Some(currency) = &fact.currency {
            let sum = self.costs.entry(currency.clone()).or_default();
            sum.0 += fact.messages;
            sum.1 += fact.cost_micros;
        }
    }

    fn add_failure(&mut self, fact: &FailureFact) {
        let code = fact.error_code.as_deref().unwrap_or("unknown");
        *self.reasons.entry(code.to_owned()).or_default() += fact.messages;
    }

    fn add_latency(&mut self, fact: &LatencyFact) {
        match fact.kind {
            LatencyKind::Sent => self.to_sent.add(fact),
            LatencyKind::Delivered => self.to_delivered.add(fact),
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
            time_to_sent: self.to_sent.timing(),
            time_to_delivered: self.to_delivered.timing(),
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

/// The opt-outs of a period beside the messages sent in it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct OptOutFigures {
    /// Opt-out events in the period.
    pub opt_outs: u64,
    /// Distinct numbers that opted out of something in the period.
    pub numbers_opted_out: u64,
    /// Opt-in events in the period.
    pub opt_ins: u64,
    /// Messages accepted in the period, keyword confirmations left out.
    pub messages: i64,
    /// `numbers_opted_out ÷ messages`: opt-outs per message sent, as messaging platforms
    /// report it (`GET /opt-outs/stats` divides by distinct numbers messaged instead, which
    /// needs a scan of the period's messages).
    pub opt_out_rate: Option<f64>,
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
    /// Opt-outs over the period, and their rate per message.
    pub opt_outs: OptOutFigures,
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
    let store = pipeline.store();
    let dimension = group_by.map(GroupBy::dimension);
    // The category is always kept apart: the opt-out rate leaves keyword confirmations out.
    let mut dims = vec![Dimension::Category];
    dims.extend(dimension.filter(|dim| *dim != Dimension::Category));
    let facts = rollups(pipeline, tenant, &period, &dims).await?;
    let mut totals = DeliveryAcc::default();
    let mut groups: BTreeMap<Option<String>, DeliveryAcc> = BTreeMap::new();
    let mut messages = 0;
    for fact in &facts {
        totals.add(fact);
        if fact.category != "compliance" {
            messages += fact.messages;
        }
        if let Some(group_by) = group_by {
            groups.entry(key_of(group_by, fact)).or_default().add(fact);
        }
    }
    let days = period.days();
    for fact in &store.latency_facts(tenant, days, None).await? {
        totals.add_latency(fact);
    }
    for fact in &store.failure_facts(tenant, days, None).await? {
        totals.add_failure(fact);
    }
    if let Some(group_by) = group_by {
        // The latency and failure rows of a group: by day, or by the dimension's value.
        let key = |day: i64, value: &str| match group_by {
            GroupBy::Day => group_key(group_by, day, "", "", None, None),
            _ => (!value.is_empty()).then(|| value.to_owned()),
        };
        for fact in &store.latency_facts(tenant, days, dimension).await? {
            groups
                .entry(key(fact.day, &fact.value))
                .or_default()
                .add_latency(fact);
        }
        for fact in &store.failure_facts(tenant, days, dimension).await? {
            groups
                .entry(key(fact.day, &fact.value))
                .or_default()
                .add_failure(fact);
        }
    }
    let by_template = if group_by == Some(GroupBy::Template) {
        facts
    } else {
        rollups(pipeline, tenant, &period, &[Dimension::Template]).await?
    };
    let mut templates: BTreeMap<String, (i64, i64)> = BTreeMap::new();
    for fact in &by_template {
        if let Some(template) = &fact.template_id {
            let usage = templates.entry(template.clone()).or_default();
            usage.0 += fact.messages;
            if is_delivered(&fact.status) {
                usage.1 += fact.messages;
            }
        }
    }
    let mut templates: Vec<TemplateUsage> = templates
        .into_iter()
        .filter(|(_, (messages, _))| *messages > 0)
        .map(|(template_id, (messages, delivered))| TemplateUsage {
            template_id,
            messages,
            delivered,
            delivery_rate: rate(delivered, messages),
        })
        .collect();
    templates.sort_by_key(|usage| std::cmp::Reverse(usage.messages));
    templates.truncate(TOP);
    let activity = store
        .opt_out_activity(tenant, period.start, period.end)
        .await?;
    let opt_outs = OptOutFigures {
        opt_outs: activity.opt_outs,
        numbers_opted_out: activity.numbers_opted_out,
        opt_ins: activity.opt_ins,
        messages,
        opt_out_rate: (messages > 0).then(|| activity.numbers_opted_out as f64 / messages as f64),
    };
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
        opt_outs,
        templates,
    })
}

/// The group of a rollup row.
fn key_of(group_by: GroupBy, fact: &CostFact) -> Option<String> {
    group_key(
        group_by,
        fact.day,
        &fact.provider,
        &fact.category,
        fact.template_id.as_deref(),
        fact.country.as_deref(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn histogram(values: &[i64]) -> Histogram {
        // The migration's bounds: exact to 16, then 1/8 octave (18, 20, 21, 23, ...).
        let bounds = [
            0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 18, 20, 21, 23,
        ];
        let mut histogram = Histogram::default();
        for &value in values {
            let i = bounds.iter().rposition(|&lower| lower <= value).unwrap();
            histogram.add(&LatencyFact {
                day: 0,
                value: String::new(),
                kind: LatencyKind::Sent,
                lower_ms: bounds[i],
                upper_ms: bounds[i + 1],
                messages: 1,
                total_ms: value,
            });
        }
        histogram
    }

    #[test]
    fn timing_uses_nearest_rank_of_the_buckets() {
        let timing = histogram(&(1..=20).rev().collect::<Vec<_>>()).timing();
        assert_eq!(timing.count, 20);
        assert_eq!(timing.mean_ms, Some(10));
        assert_eq!(timing.p50_ms, Some(10));
        // The 19th value (19) is in [18, 20): read as 19.
        assert_eq!(timing.p95_ms, Some(19));
        // 17 is in [16, 18): read as the bucket's largest value, 17... and 16 as 17 too.
        assert_eq!(histogram(&[16]).timing().p50_ms, Some(17));
        assert_eq!(histogram(&[17, 17, 22]).timing().p50_ms, Some(17));
        assert_eq!(histogram(&[17, 17, 22]).timing().p95_ms, Some(22));
        assert_eq!(histogram(&[]).timing().p95_ms, None);
        assert_eq!(histogram(&[]).timing().mean_ms, None);
    }
}
