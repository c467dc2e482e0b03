//! Reading what the steps stored, as callers see it: one message with its history, a page of
//! messages (templates are read through [`super::templates`]). Every read is scoped by tenant: another tenant's id reads as absent.
//!
//! Text with a NUL character never reaches the store (PostgreSQL refuses it): no id can hold
//! one, so such an id reads as absent, and a filter holding one is an invalid query.

use super::Pipeline;
use super::error::{ErrorCode, PipelineError, Result};
use crate::domain::TenantId;
use crate::store::{Message, MessageFilter, Page, StatusEvent, StoreError};

/// A message with its status history, oldest event first.
#[derive(Debug, Clone, PartialEq)]
pub struct MessageRecord {
    /// The message.
    pub message: Message,
    /// How its status moved.
    pub history: Vec<StatusEvent>,
}

/// The message `id` of `tenant`, with its history.
pub async fn message(pipeline: &Pipeline, tenant: &TenantId, id: &str) -> Result<MessageRecord> {
    let store = pipeline.store();
    let missing = || not_found(ErrorCode::MessageNotFound, "message", id);
    if id.contains('\0') {
        return Err(missing());
    }
    let message = store.get_message(tenant, id).await?.ok_or_else(missing)?;
    let history = store.message_events(tenant, id).await?;
    Ok(MessageRecord { message, history })
}

/// One page of `tenant`'s messages, newest first.
pub async fn messages(
    pipeline: &Pipeline,
    tenant: &TenantId,
    filter: &MessageFilter,
) -> Result<Page<Message>> {
    let texts = [&filter.to_number, &filter.customer_id, &filter.cursor];
    if texts
        .iter()
        .any(|t| t.as_deref().is_some_and(|t| t.contains('\0')))
    {
        return Err(PipelineError::new(
            ErrorCode::InvalidQuery,
            "a filter contains a NUL character",
        ));
    }
    match pipeline.store().list_messages(tenant, filter).await {
        Ok(page) => Ok(page),
        Err(StoreError::InvalidCursor) => Err(PipelineError::new(
            ErrorCode::InvalidQuery,
            "the cursor is not valid",
        )),
        Err(e) => Err(e.into()),
    }
}

pub(super) fn not_found(code: ErrorCode, what: &str, id: &str) -> PipelineError {
    // Ids come from the caller: quote only a bounded prefix.
    let shown: String = id.chars().take(64).collect();
    PipelineError::new(code, format!("no {what} `{shown}`"))
}
