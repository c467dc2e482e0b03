//! The cost of a message, from its estimate at accept to its provider's actual price.
//!
//! At accept, [`charge`] prices a message: segments × the price per segment from the tenant's
//! price table, else the operator's `[pricing]` (see [`super::pricing`]), else the running average
//! of the actual per-segment prices the tenant paid that provider for that country. Where none
//! exists the message has no estimate, and its answer says why (`cost: null`,
//! `cost_unavailable`). The same function lists the reservations the tenant's budgets take
//! (see [`super::budgets`]); the store writes the estimate and takes them inside the enqueue.
//!
//! A hard-capped budget refuses (`402 budget_exceeded`) a message it cannot charge: one without
//! an estimate, or with an estimate in another currency than the budget's. Refusing is the only
//! choice that keeps the cap a cap. A budget without a hard cap charges such a message only when
//! its actual price arrives in the budget's currency.
//!
//! After accept the store records each actual price (the accept answer, a status callback or a
//! reconciler lookup; one per attempt), replaces the estimate by it, keeps the difference, and
//! settles or releases the reservations ([`crate::store::Charge`]).

use std::collections::HashMap;

use serde::Serialize;

use super::Pipeline;
use super::budgets::Period;
use super::error::{ErrorCode, PipelineError, Result};
use super::pricing::{self, PriceSource};
use crate::domain::{Category, Money, PhoneNumber, TenantId};
use crate::segments::{Encoding, SegmentCount};
use crate::store::{Charge, Hold, PriceAverage};

/// Why a message has no estimate: no price entry fits and no actual price was seen.
pub const NO_PRICE: &str = "no price entry fits this provider, country and encoding, and no \
     actual price has been seen for them yet";

/// The cost of a message as callers see it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Cost {
    /// The estimate at accept (segments × price per segment).
    pub estimate: Option<Money>,
    /// Where the price of the estimate came from: `tenant`, `config` or `average`.
    pub estimate_source: Option<String>,
    /// The provider's actual price, summed over every attempt; `null` until one is reported.
    pub actual: Option<Money>,
    /// Actual minus estimate, in micro-units, once both are known in one currency.
    pub difference_micros: Option<i64>,
}

/// The cost fields of a message's answer: `cost`, and `cost_unavailable` when there is no
/// estimate.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CostFields {
    /// The cost; `null` when nothing is known.
    pub cost: Option<Cost>,
    /// Why there is no estimate.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cost_unavailable: Option<String>,
}

/// What pricing a tenant's messages needs, read once for many messages (a batch's rows): the
/// tenant's price table, its budgets and the running averages looked up so far.
#[derive(Debug)]
pub struct Rates {
    tenant: TenantId,
    pricing: Option<pricing::PriceTable>,
    budgets: Vec<crate::store::StoredBudget>,
    averages: HashMap<(String, Option<String>), Option<PriceAverage>>,
}

impl Rates {
    /// Reads `tenant`'s price table and budgets.
    pub async fn load(pipeline: &Pipeline, tenant: &TenantId) -> Result<Self> {
        Ok(Self {
            tenant: tenant.clone(),
            pricing: super::tenants::settings(pipeline, tenant).await?.pricing,
            budgets: pipeline.store().list_budgets(tenant).await?,
            averages: HashMap::new(),
        })
    }

    /// The estimate for a message of `count` (encoding and segments) sent by `provider` to `to`, with where its price
    /// came from; `None` when no price is known.
    pub async fn estimate(
        &mut self,
        pipeline: &Pipeline,
        provider: &str,
        to: Option<&PhoneNumber>,
        count: (Encoding, u32),
    ) -> Result<Option<(Money, PriceSource)>> {
        let (encoding, segments) = count;
        let country = to.and_then(PhoneNumber::country);
        let segments = i64::from(segments);
        if let Some((price, source)) = pricing::price(
            self.pricing.as_ref(),
            &pipeline.config().pricing,
            provider,
            country,
            encoding,
        ) {
            let micros = price.micros.saturating_mul(segments);
            return Ok(Some((Money::new(micros, price.currency), source)));
        }
        let key = (provider.to_owned(), country.map(str::to_owned));
        let average = match self.averages.get(&key) {
            Some(known) => known.clone(),
            None => {
                let found = pipeline
                    .store()
                    .price_averages(&self.tenant, provider, country)
                    .await?
                    .into_iter()
                    .next();
                self.averages.insert(key, found.clone());
                found
            }
        };
        Ok(average.map(|average| {
            // segments × (total ÷ total segments), multiplied first so no precision is lost.
            let micros = i128::from(average.total_micros) * i128::from(segments)
                / i128::from(average.total_segments.max(1));
            let micros = i64::try_from(micros).unwrap_or(i64::MAX);
            (Money::new(micros, average.currency), PriceSource::Average)
        }))
    }

    /// What a new message charges: its estimate and the reservations of the budgets that apply
    /// to its `category`. Refuses with `budget_exceeded` a message a hard-capped budget cannot
    /// charge (no estimate, or another currency); the room itself is checked in the enqueue.
    pub async fn charge(
        &mut self,
        pipeline: &Pipeline,
        provider: &str,
        to: &PhoneNumber,
        category: &Category,
        count: (Encoding, u32),
    ) -> Result<Charge> {
        let estimate = self.estimate(pipeline, provider, Some(to), count).await?;
        let now = pipeline.now();
        let mut holds = Vec::new();
        for budget in &self.budgets {
            if budget
                .category
                .as_deref()
                .is_some_and(|c| c != category.as_str())
            {
                continue;
            }
            let period = match budget.period.as_str() {
                "daily" => Period::Daily,
                _ => Period::Monthly,
            };
            let micros = match &estimate {
                Some((money, _)) if money.currency == budget.limit.currency => money.micros,
                other if budget.hard_cap => {
                    let why = match other {
                        Some((money, _)) => format!(
                            "its estimate is in {}, the budget in {}",
                            money.currency, budget.limit.currency
                        ),
                        None => "the message has no cost estimate".to_owned(),
                    };
                    return Err(PipelineError::new(
                        ErrorCode::BudgetExceeded,
                        format!(
                            "hard-capped budget `{}` cannot charge this message: {why}",
                            budget.name
                        ),
                    ));
                }
                // Charged when its actual price arrives, if that is in the budget's currency.
                _ => 0,
            };
            holds.push(Hold {
                budget: budget.name.clone(),
                period_start: period.bounds(now).0,
                micros,
                hard_cap: budget.hard_cap,
                limit_micros: budget.limit.micros,
                thresholds: budget.alert_thresholds.clone(),
            });
        }
        let (estimate, source) = estimate.unzip();
        Ok(Charge {
            provider: provider.to_owned(),
            country: to.country().map(str::to_owned),
            segments: count.1,
            reason: estimate.is_none().then(|| NO_PRICE.to_owned()),
            estimate,
            source: source.map(|s| s.as_str().to_owned()),
            holds,
        })
    }
}

/// The estimate for a message of `count` sent by `provider` to `to` for `tenant` (see
/// [`Rates::estimate`]).
pub async fn estimate(
    pipeline: &Pipeline,
    tenant: &TenantId,
    provider: &str,
    to: Option<&PhoneNumber>,
    count: &SegmentCount,
) -> Result<Option<(Money, PriceSource)>> {
    let mut rates = Rates::load(pipeline, tenant).await?;
    let count = (count.encoding, count.segments);
    rates.estimate(pipeline, provider, to, count).await
}

/// What one new message of `tenant` charges (see [`Rates::charge`]).
pub async fn charge(
    pipeline: &Pipeline,
    tenant: &TenantId,
    provider: &str,
    to: &PhoneNumber,
    category: &Category,
    count: &SegmentCount,
) -> Result<Charge> {
    let mut rates = Rates::load(pipeline, tenant).await?;
    let count = (count.encoding, count.segments);
    rates.charge(pipeline, provider, to, category, count).await
}

/// The cost fields of message `id` of `tenant`.
pub async fn cost(pipeline: &Pipeline, tenant: &TenantId, id: &str) -> Result<CostFields> {
    let stored = pipeline.store().message_cost(tenant, id).await?;
    Ok(match stored {
        None => CostFields {
            cost: None,
            cost_unavailable: Some("no cost was recorded for this message".to_owned()),
        },
        Some(stored) => {
            let known = stored.estimate.is_some() || stored.actual.is_some();
            CostFields {
                cost_unavailable: stored
                    .estimate
                    .is_none()
                    .then(|| stored.reason.clone().unwrap_or_else(|| NO_PRICE.to_owned())),
                cost: known.then_some(Cost {
                    estimate: stored.estimate,
                    estimate_source: stored.source,
                    actual: stored.actual,
                    difference_micros: stored.difference_micros,
                }),
            }
        }
    })
}
