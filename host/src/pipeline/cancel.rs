//! Canceling a message that has not been sent: a `queued` or `scheduled` message that no
//! dispatcher has claimed moves to `canceled` and leaves the queue (see
//! [`Store::cancel_message`](crate::store::Store::cancel_message) for why a claim and a cancel
//! never both win).

use super::Pipeline;
use super::error::{ErrorCode, PipelineError, Result};
use crate::domain::TenantId;
use crate::store::{CancelOutcome, Message};

/// Cancels message `id` of `tenant`; `not_cancelable` (naming its status) once it was claimed
/// for sending or has an outcome, `message_not_found` when the tenant has no such message.
pub async fn cancel(pipeline: &Pipeline, tenant: &TenantId, id: &str) -> Result<Message> {
    let shown: String = id.chars().take(64).collect();
    let missing =
        || PipelineError::new(ErrorCode::MessageNotFound, format!("no message `{shown}`"));
    if id.contains('\0') {
        return Err(missing());
    }
    match pipeline
        .store()
        .cancel_message(tenant, id, pipeline.now())
        .await?
    {
        CancelOutcome::Canceled(message) => {
            pipeline
                .metrics()
                .finished(tenant, &message.provider, message.status);
            tracing::info!(%tenant, message_id = %message.id, "message canceled");
            Ok(message)
        }
        CancelOutcome::NotCancelable(message) => Err(PipelineError::new(
            ErrorCode::NotCancelable,
            format!(
                "message `{}` is {}: only a queued or scheduled message that is not being sent can be canceled",
                message.id, message.status
            ),
        )),
        CancelOutcome::NotFound => Err(missing()),
    }
}
