//! Reading what the steps stored, as callers see it: one message with its history, a page of
//! messages, one template. Every read is scoped by tenant: another tenant's id reads as absent.

use super::Pipeline;
use super::error::{ErrorCode, PipelineError, Result};
use crate::domain::TenantId;
use crate::store::{Message, MessageFilter, Page, StatusEvent, StoreError, Template};

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
    let message = store
        .get_message(tenant, id)
        .await?
        .ok_or_else(|| not_found(ErrorCode::MessageNotFound, "message", id))?;
    let history = store.message_events(tenant, id).await?;
    Ok(MessageRecord { message, history })
}

/// One page of `tenant`'s messages, newest first.
pub async fn messages(
    pipeline: &Pipeline,
    tenant: &TenantId,
    filter: &MessageFilter,
) -> Result<Page<Message>> {
    match pipeline.store().list_messages(tenant, filter).await {
        Ok(page) => Ok(page),
        Err(StoreError::InvalidCursor) => Err(PipelineError::new(
            ErrorCode::InvalidQuery,
            "the cursor is not valid",
        )),
        Err(e) => Err(e.into()),
    }
}

/// The template `id` of `tenant`.
pub async fn template(pipeline: &Pipeline, tenant: &TenantId, id: &str) -> Result<Template> {
    pipeline
        .store()
        .get_template(tenant, id)
        .await?
        .ok_or_else(|| not_found(ErrorCode::TemplateNotFound, "template", id))
}

fn not_found(code: ErrorCode, what: &str, id: &str) -> PipelineError {
    // Ids come from the caller: quote only a bounded prefix.
    let shown: String = id.chars().take(64).collect();
    PipelineError::new(code, format!("no {what} `{shown}`"))
}
