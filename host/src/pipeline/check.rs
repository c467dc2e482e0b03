//! Step 4, check: whether the message may be sent at all. Today that is the opt-out list
//! (tenant-scoped and category-aware: an opt-out of `all` blocks every category); budgets,
//! quiet hours and rate limits hook in here.

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
        return Err(PipelineError::new(
            ErrorCode::RecipientOptedOut,
            format!("{to} has opted out of {category} messages; nothing was sent"),
        ));
    }
    Ok(())
}
