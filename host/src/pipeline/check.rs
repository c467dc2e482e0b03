//! Step 4, check: whether the message may be sent at all. Today that is the opt-out list
//! (tenant-scoped and category-aware: an opt-out of `all` blocks every category); budgets,
//! quiet hours and rate limits hook in here.

use std::collections::HashSet;

use super::Pipeline;
use super::error::{ErrorCode, PipelineError, Result};
use crate::domain::{Category, PhoneNumber, TenantId};

/// Refuses a message to `to` in `category` when the recipient opted out of it.
pub async fn check(
    pipeline: &Pipeline,
    tenant: &TenantId,
    to: &PhoneNumber,
    category: &Category,
) -> Result<()> {
    if category.ignores_opt_out() {
        return Ok(());
    }
    let opted_out = pipeline
        .store()
        .is_opted_out(tenant, to.as_str(), category)
        .await?;
    if opted_out {
        return Err(opted_out_error(to.as_str(), category));
    }
    Ok(())
}

/// [`check`] for many messages at once (a chunk of a bulk batch): `rows` are (recipient,
/// category) pairs, and the answer says, in the same order, whether each may be sent. One
/// store read serves them all.
///
/// # Errors
///
/// Storage errors (which refuse every row alike).
pub async fn check_many(
    pipeline: &Pipeline,
    tenant: &TenantId,
    rows: &[(&str, &Category)],
) -> Result<Vec<Result<()>>> {
    let phones: Vec<&str> = rows
        .iter()
        .filter(|(_, category)| !category.ignores_opt_out())
        .map(|(phone, _)| *phone)
        .collect();
    let opted_out: HashSet<(String, String)> = pipeline
        .store()
        .opt_outs_among(tenant, &phones)
        .await?
        .into_iter()
        .collect();
    let blocked =
        |phone: &str, category: &str| opted_out.contains(&(phone.to_owned(), category.to_owned()));
    Ok(rows
        .iter()
        .map(|(phone, category)| {
            let refused = !category.ignores_opt_out()
                && (blocked(phone, category.as_str()) || blocked(phone, Category::All.as_str()));
            if refused {
                Err(opted_out_error(phone, category))
            } else {
                Ok(())
            }
        })
        .collect())
}

fn opted_out_error(to: &str, category: &Category) -> PipelineError {
    PipelineError::new(
        ErrorCode::RecipientOptedOut,
        format!("{to} has opted out of {category} messages; nothing was sent"),
    )
}
