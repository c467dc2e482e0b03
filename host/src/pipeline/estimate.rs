//! The dry run (`POST /api/v1/sms/estimate`): what a message would be if it were sent now, with
//! nothing stored or queued. It takes the [`render`](super::render) and [`count`](super::count)
//! steps a send takes, and adds [`segments::explain`]: the characters that force UCS-2 and what
//! Smart Encoding would change. Given a recipient, it also runs the opt-out
//! [`check`](super::check) and says whether the message would be refused.
//!
//! The cost is the estimate a send would record (see [`super::ledger`]), for the tenant's
//! provider and the recipient's country (`*` prices without a recipient); where none is known,
//! `cost` is `null` and `cost_unavailable` says why.

use serde::Serialize;

use super::Pipeline;
use super::accept::Content;
use super::check;
use super::count;
use super::error::{ErrorCode, PipelineError, Result};
use super::render;
use crate::domain::{Category, PhoneNumber, TenantId};
use crate::segments::explain::{CharAt, SmartAlternative};
use crate::segments::{self, SegmentCount};

/// What a caller wants estimated.
#[derive(Debug, Clone, PartialEq)]
pub struct EstimateRequest {
    /// The text, or a template with its variables.
    pub content: Content,
    /// The category; `None` takes the template's, then `transactional`.
    pub category: Option<Category>,
    /// The recipient, to check its opt-outs.
    pub to: Option<PhoneNumber>,
}

/// A message as it would be sent.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Estimate {
    /// The rendered text, before any Smart Encoding.
    pub body: String,
    /// The template it came from.
    pub template_id: Option<String>,
    /// Its category.
    pub category: Category,
    /// Encoding, segments and units as Herald would send it (with Smart Encoding when the
    /// configuration turns it on).
    #[serde(flatten)]
    pub count: SegmentCount,
    /// Whether the configuration applies Smart Encoding before sending.
    pub smart_encoding_enabled: bool,
    /// Every character of `body` outside GSM-7, with its position.
    pub ucs2_characters: Vec<CharAt>,
    /// What Smart Encoding would replace, and its count; `None` when it would change nothing.
    pub smart_encoding: Option<SmartAlternative>,
    /// With a recipient: whether its opt-outs would refuse the message.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub recipient_opted_out: Option<bool>,
    /// The estimated cost (segments × price per segment); `None` when no price is known.
    pub cost: Option<crate::domain::Money>,
    /// Why `cost` is `None`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cost_unavailable: Option<&'static str>,
}

/// Renders and counts `request` for `tenant` as a send would, and explains the count.
pub async fn estimate(
    pipeline: &Pipeline,
    tenant: &TenantId,
    request: EstimateRequest,
) -> Result<Estimate> {
    if let Content::Template { template, .. } = &request.content
        && template.contains('\0')
    {
        return Err(PipelineError::new(
            ErrorCode::UnknownTemplate,
            "a template id cannot contain a NUL character",
        ));
    }
    let rendered =
        render::render_content(pipeline, tenant, &request.content, request.category).await?;
    let smart_encoding_enabled = pipeline.config().delivery.smart_encoding;
    let counted = count::count(&rendered.body, smart_encoding_enabled)?;
    let explained = segments::explain(&rendered.body)
        .map_err(|e| PipelineError::new(ErrorCode::EmptyMessage, e.to_string()))?;
    let recipient_opted_out = match &request.to {
        None => None,
        Some(to) => match check::check(pipeline, tenant, to, &rendered.category).await {
            Ok(()) => Some(false),
            Err(e) if e.code == ErrorCode::RecipientOptedOut => Some(true),
            Err(e) => return Err(e),
        },
    };
    let provider = super::tenants::provider(pipeline, tenant).await?;
    let cost = super::ledger::estimate(
        pipeline,
        tenant,
        provider.name(),
        request.to.as_ref(),
        &counted.count,
    )
    .await?
    .map(|(money, _)| money);
    Ok(Estimate {
        cost_unavailable: cost.is_none().then_some(super::ledger::NO_PRICE),
        cost,
        body: rendered.body,
        template_id: rendered.template_id,
        category: rendered.category,
        count: counted.count,
        smart_encoding_enabled,
        ucs2_characters: explained.ucs2_characters,
        smart_encoding: explained.smart_encoding,
        recipient_opted_out,
    })
}
