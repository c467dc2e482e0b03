//! Opt-out management for callers (TCPA): opting a number out of a category or of everything,
//! opting it back in, its state per category, the list in force with its counts and the opt-out
//! rate, the compliance export of every change, and CSV imports.
//!
//! The list itself is the one the [`check`](super::check) step reads before enqueue and the
//! [`dispatch`](super::dispatch) step reads again before each attempt, so a change here holds for
//! messages already queued. Categories are free-form names; `all` blocks every category except
//! `compliance` (the STOP / START / HELP confirmations, which the law requires to reach a number
//! that just opted out), and `compliance` itself cannot be opted out of.
//!
//! Every change is audited with how it was made ([`OptOutMethod`]): here `api` or `import`;
//! inbound keywords and provider reports record theirs in [`inbound`](super::inbound) and
//! [`dispatch`](super::dispatch).

use futures_util::Stream;
use serde::Serialize;

use super::Pipeline;
use super::accept::MAX_REFERENCE;
use super::error::{ErrorCode, PipelineError, Result};
use crate::domain::{Category, CategoryError, PhoneNumber, TenantId};
use crate::store::{
    OptOut, OptOutActivity, OptOutChange, OptOutCounts, OptOutEvent, OptOutFilter, OptOutMethod,
    Page, StoreError,
};

/// The longest opt-out reason accepted, in characters.
pub const MAX_REASON_CHARS: usize = 500;
/// The most rejected rows an import report lists one by one (all are counted).
pub const MAX_REPORTED_ROWS: usize = 1_000;
/// Audit events read per page of the export.
const EXPORT_PAGE: u32 = 500;
/// The period of the opt-out rate when the caller names none: the last 30 days.
const DEFAULT_PERIOD_MS: i64 = 30 * 24 * 60 * 60 * 1000;

/// Parses the phone number of an opt-out request, a path or a CSV row.
pub fn phone(number: &str) -> Result<PhoneNumber> {
    PhoneNumber::parse(number).map_err(|e| {
        // A `+` sent in a query string or form arrives as a space.
        let hint = if number.starts_with(' ') {
            "; a `+` read as a space: send it as `%2B`"
        } else {
            ""
        };
        PipelineError::new(
            ErrorCode::InvalidPhoneNumber,
            format!("phone_number {e}{hint}"),
        )
    })
}

/// Parses the category of an opt-out or opt-in: `all` when none is named; `compliance` is
/// refused, since keyword confirmations must reach every number.
pub fn category(name: Option<&str>) -> Result<Category> {
    let Some(name) = name else {
        return Ok(Category::All);
    };
    match Category::parse(name) {
        Ok(Category::Compliance) => Err(PipelineError::new(
            ErrorCode::InvalidCategory,
            "`compliance` messages (STOP, START and HELP replies) cannot be opted out of",
        )),
        Ok(category) => Ok(category),
        Err(e @ (CategoryError::Invalid(_) | CategoryError::Reserved(_))) => Err(
            PipelineError::new(ErrorCode::InvalidCategory, e.to_string()),
        ),
    }
}

/// An opt-out a caller asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OptOutRequest {
    /// The number.
    pub phone: PhoneNumber,
    /// What it opts out of (`all` for everything).
    pub category: Category,
    /// Why (`opt_out_reason`).
    pub reason: Option<String>,
    /// The caller's customer reference.
    pub customer_id: Option<String>,
}

/// One category's state for one number.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CategoryState {
    /// The category (`all` for every category).
    pub category: Category,
    /// Whether the number is opted out of this category itself.
    pub opted_out: bool,
    /// Whether messages of this category are refused: opted out of it or of `all`.
    pub blocked: bool,
    /// The opt-out of this category in force, if any.
    pub opt_out: Option<OptOut>,
}

/// A number's opt-out state: every category it has a record for, and `all`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NumberState {
    /// The number, E.164.
    pub phone_number: String,
    /// Whether the number is opted out of everything (`all`).
    pub is_opted_out: bool,
    /// Each category's state, `all` first, then by name.
    pub categories: Vec<CategoryState>,
}

/// The outcome of an opt-out or opt-in: whether it changed the list, and the state after it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Changed {
    /// `false` when the list already said so (a repeated opt-out, an opt-in with nothing to
    /// lift).
    pub changed: bool,
    /// The number's state afterwards.
    #[serde(flatten)]
    pub state: NumberState,
}

/// The state of `phone` in every category it has a record for, plus `all` and `also` (a
/// category the caller asks about).
pub async fn state(
    pipeline: &Pipeline,
    tenant: &TenantId,
    phone: &PhoneNumber,
    also: Option<&Category>,
) -> Result<NumberState> {
    let (in_force, seen) = pipeline
        .store()
        .opt_out_state(tenant, phone.as_str())
        .await?;
    let mut categories: Vec<Category> = vec![Category::All];
    for category in seen
        .into_iter()
        .chain(in_force.iter().map(|o| o.category.clone()))
        .chain(also.cloned())
    {
        if !categories.contains(&category) {
            categories.push(category);
        }
    }
    categories[1..].sort();
    let everything = in_force.iter().any(|o| o.category == Category::All);
    let categories = categories
        .into_iter()
        .map(|category| {
            let opt_out = in_force.iter().find(|o| o.category == category).cloned();
            CategoryState {
                opted_out: opt_out.is_some(),
                blocked: opt_out.is_some() || everything,
                category,
                opt_out,
            }
        })
        .collect();
    Ok(NumberState {
        phone_number: phone.as_str().to_owned(),
        is_opted_out: everything,
        categories,
    })
}

/// Opts a number out, as a caller of the API asked.
pub async fn opt_out(
    pipeline: &Pipeline,
    tenant: &TenantId,
    request: OptOutRequest,
) -> Result<Changed> {
    if let Some(reason) = &request.reason {
        check_reason(reason)?;
    }
    if let Some(customer_id) = &request.customer_id
        && (customer_id.is_empty()
            || customer_id.len() > MAX_REFERENCE
            || customer_id.contains('\0'))
    {
        return Err(PipelineError::new(
            ErrorCode::InvalidField,
            format!("`customer_id` must be 1 to {MAX_REFERENCE} bytes with no NUL character"),
        ));
    }
    let change = OptOutChange {
        reason: request.reason,
        customer_id: request.customer_id,
        ..OptOutChange::new(
            tenant,
            request.phone.as_str(),
            request.category,
            OptOutMethod::Api,
            pipeline.now(),
        )
    };
    let changed = pipeline.store().opt_out(&change).await?;
    let state = state(pipeline, tenant, &request.phone, Some(&change.category)).await?;
    Ok(Changed { changed, state })
}

/// Opts a number back into `category` (`all` lifts every opt-out), as a caller of the API asked.
pub async fn opt_in(
    pipeline: &Pipeline,
    tenant: &TenantId,
    phone: &PhoneNumber,
    category: Category,
) -> Result<Changed> {
    let change = OptOutChange::new(
        tenant,
        phone.as_str(),
        category,
        OptOutMethod::Api,
        pipeline.now(),
    );
    let changed = pipeline.store().opt_in(&change).await?;
    let state = state(pipeline, tenant, phone, Some(&change.category)).await?;
    Ok(Changed { changed, state })
}

/// One page of `tenant`'s opt-outs in force, newest first.
pub async fn list(
    pipeline: &Pipeline,
    tenant: &TenantId,
    filter: &OptOutFilter,
) -> Result<Page<OptOut>> {
    if filter.cursor.as_deref().is_some_and(|c| c.contains('\0')) {
        return Err(invalid_cursor());
    }
    match pipeline.store().list_opt_outs(tenant, filter).await {
        Err(StoreError::InvalidCursor) => Err(invalid_cursor()),
        other => Ok(other?),
    }
}

/// The opt-out figures of a tenant: the list in force, counted, and the opt-out rate over a
/// period.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Stats {
    /// The opt-outs in force now.
    pub current: OptOutCounts,
    /// The period the rate is over.
    pub period: Period,
}

/// The opt-out rate over a period.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Period {
    /// Start (inclusive), UTC milliseconds.
    pub start: i64,
    /// End (exclusive), UTC milliseconds.
    pub end: i64,
    /// What happened in it.
    #[serde(flatten)]
    pub activity: OptOutActivity,
    /// Distinct numbers that opted out ÷ distinct numbers messaged; `None` when none was
    /// messaged.
    pub opt_out_rate: Option<f64>,
}

/// `tenant`'s opt-out figures over `[start, end)`; the end defaults to now and the start to 30
/// days before the end.
pub async fn stats(
    pipeline: &Pipeline,
    tenant: &TenantId,
    start: Option<i64>,
    end: Option<i64>,
) -> Result<Stats> {
    let end = end.unwrap_or_else(|| pipeline.now());
    let start = start.unwrap_or(end.saturating_sub(DEFAULT_PERIOD_MS));
    if start >= end {
        return Err(PipelineError::new(
            ErrorCode::InvalidQuery,
            "the period is empty: `start_date` must be before `end_date`",
        ));
    }
    let store = pipeline.store();
    let current = store.count_opt_outs(tenant).await?;
    let mut activity = store.opt_out_activity(tenant, start, end).await?;
    activity.recipients = store.count_recipients(tenant, start, end).await?;
    // A ratio for people, not money: a float is the honest type.
    let opt_out_rate = (activity.recipients > 0)
        .then(|| activity.numbers_opted_out as f64 / activity.recipients as f64);
    Ok(Stats {
        current,
        period: Period {
            start,
            end,
            activity,
            opt_out_rate,
        },
    })
}

/// Every opt-out and opt-in of `tenant` that occurred in `window` (`[from, to)`, either end
/// open), oldest first, as a stream of pages read one at a time as the stream is polled: the
/// compliance export, in memory that stays flat however long the trail.
///
/// Pages follow the audit trail's sequence numbers, so an event is never repeated or skipped
/// because others arrive during the export.
pub fn export(
    pipeline: &Pipeline,
    tenant: &TenantId,
    window: (Option<i64>, Option<i64>),
) -> impl Stream<Item = Result<Vec<OptOutEvent>>> + Send + 'static {
    let pipeline = pipeline.clone();
    let tenant = tenant.clone();
    futures_util::stream::try_unfold(Some(0), move |after| {
        export_page(pipeline.clone(), tenant.clone(), after, window)
    })
}

/// The export's page after sequence number `after` (`None`: the last page was read), and where
/// the next one starts.
async fn export_page(
    pipeline: Pipeline,
    tenant: TenantId,
    after: Option<i64>,
    window: (Option<i64>, Option<i64>),
) -> Result<Option<(Vec<OptOutEvent>, Option<i64>)>> {
    let Some(after) = after else {
        return Ok(None);
    };
    let page = pipeline
        .store()
        .opt_out_events_after(&tenant, after, window, EXPORT_PAGE)
        .await?;
    if page.is_empty() {
        return Ok(None);
    }
    let next = if page.len() < EXPORT_PAGE as usize {
        None
    } else {
        page.last().map(|event| event.id)
    };
    Ok(Some((page, next)))
}

/// Refuses a reason too long to keep or holding a NUL character.
pub(super) fn check_reason(reason: &str) -> Result<()> {
    if reason.chars().count() > MAX_REASON_CHARS || reason.contains('\0') {
        return Err(PipelineError::new(
            ErrorCode::InvalidField,
            format!("the reason must be at most {MAX_REASON_CHARS} characters with no NUL"),
        ));
    }
    Ok(())
}

fn invalid_cursor() -> PipelineError {
    PipelineError::new(ErrorCode::InvalidQuery, "the cursor is not valid")
}
