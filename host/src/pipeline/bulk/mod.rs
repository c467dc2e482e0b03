//! Bulk batches: many messages sent as one batch, each row taking the same steps as a single
//! send (accept, render, count, check), and queued together.
//!
//! A batch is built as a draft: its rows are validated and written as messages without queue
//! entries, a chunk per transaction ([`stage`]). Sending it queues every message at once, in one
//! transaction, so a batch is sent whole or not at all; `send_immediately` simply sends the
//! draft as soon as its rows are staged. Lists too large for one JSON request are uploaded to a
//! draft as NDJSON or CSV, read as a stream ([`upload`]).
//!
//! A row that a step refuses is reported with its position, code and message, and only that
//! row is left out. A number already in the batch is sent once unless the batch allows
//! duplicates; the database's unique index decides, so this holds across uploads too.
//!
//! Canceling withdraws every message not yet claimed by a dispatcher; a claimed one finishes.

pub mod stage;
pub mod upload;

use std::collections::BTreeMap;

use serde::Deserialize;

use super::Pipeline;
use super::accept;
use super::error::{ErrorCode, PipelineError, Result};
use super::tenants;
use crate::domain::{Category, MessageStatus, PhoneNumber, TenantId};
use crate::store::{
    Batch, BatchCounts, BatchState, DraftCharges, Message, Page, StoreError, new_id,
};
pub use stage::{Rejected, Staged};

/// The most recipients one `/send-bulk` request may list; larger lists are uploaded.
pub const MAX_RECIPIENTS: usize = 100_000;
/// The longest batch name accepted, in characters.
const MAX_NAME: usize = 255;

/// One row of a bulk send: the seed's recipient object, also one NDJSON line or CSV record.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Recipient {
    /// Recipient, E.164.
    pub to_number: String,
    /// The text, when not using a template.
    pub message: Option<String>,
    /// The template to render (its id, as a string or a number); default: the batch's.
    #[serde(default, deserialize_with = "text_or_number")]
    pub template_id: Option<String>,
    /// Values for the template's variables, over the batch's.
    #[serde(default)]
    pub template_variables: BTreeMap<String, serde_json::Value>,
    /// Sender number or ID, when not the provider's default.
    pub from_number: Option<String>,
    /// Opt-out category; default: the batch's, else the template's, else `transactional`.
    pub category: Option<String>,
    /// Caller's customer reference (a string or a number).
    #[serde(default, deserialize_with = "text_or_number")]
    pub customer_id: Option<String>,
    /// Caller's order reference (a string or a number).
    #[serde(default, deserialize_with = "text_or_number")]
    pub order_id: Option<String>,
    /// Caller's reservation reference (a string or a number).
    #[serde(default, deserialize_with = "text_or_number")]
    pub reservation_id: Option<String>,
    /// Free-form metadata (a JSON object).
    pub metadata: Option<serde_json::Map<String, serde_json::Value>>,
}

/// Reads a reference the seed module sent as a string or as a number, as text.
fn text_or_number<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> std::result::Result<Option<String>, D::Error> {
    use serde::de::Error;
    match Option::<serde_json::Value>::deserialize(deserializer)? {
        None | Some(serde_json::Value::Null) => Ok(None),
        Some(serde_json::Value::String(text)) => Ok(Some(text)),
        Some(serde_json::Value::Number(number)) => Ok(Some(number.to_string())),
        Some(_) => Err(D::Error::custom("must be a string or a number")),
    }
}

/// What a bulk send asks for, besides its rows.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct BatchRequest {
    /// The caller's name for the batch.
    pub name: Option<String>,
    /// Send once staged; otherwise the batch stays a draft until [`send`].
    pub send_immediately: bool,
    /// The template for rows that bring neither text nor template.
    pub template: Option<String>,
    /// Values for the template's variables, under each row's own.
    pub template_variables: BTreeMap<String, serde_json::Value>,
    /// The category of rows that name none.
    pub category: Option<Category>,
    /// When to send (UTC milliseconds); a past time is now.
    pub send_at: Option<i64>,
    /// Whether a number may get more than one message.
    pub allow_duplicates: bool,
}

/// A batch with its rows' outcome: what `/send-bulk` and an upload answer.
#[derive(Debug, Clone, PartialEq)]
pub struct Created {
    /// The batch, as it is now.
    pub batch: BatchSummary,
    /// The rows' outcome.
    pub staged: Staged,
}

/// A batch with its messages counted.
#[derive(Debug, Clone, PartialEq)]
pub struct BatchSummary {
    /// The batch.
    pub batch: Batch,
    /// Its status as callers see it (see [`BatchSummary::status`]).
    pub status: &'static str,
    /// Messages in the batch.
    pub total: u64,
    /// Messages per status.
    pub counts: Vec<(MessageStatus, u64)>,
    /// Messages that left the queue (sent, failed, canceled, …), out of `total`; 1 when empty.
    pub progress: f64,
    /// When the last message left the queue, once none is waiting.
    pub finished_at: Option<i64>,
}

impl BatchSummary {
    fn new(batch: Batch, counts: BatchCounts, now: i64) -> Self {
        let total: u64 = counts.by_status.iter().map(|(_, n)| n).sum();
        // Not yet out of Herald's hands: drafts, queued, scheduled (a batch with a `send_at`)
        // and the ones being sent.
        let waiting: u64 = counts
            .by_status
            .iter()
            .filter(|(status, _)| status.rank() <= MessageStatus::Sending.rank())
            .map(|(_, n)| n)
            .sum();
        let status = match batch.state {
            BatchState::Draft => "draft",
            BatchState::Canceled => "canceled",
            BatchState::Sending if waiting == 0 => "completed",
            BatchState::Sending if batch.send_at.is_some_and(|at| at > now) => "scheduled",
            BatchState::Sending => "sending",
        };
        let finished = batch.state != BatchState::Draft && waiting == 0;
        Self {
            status,
            total,
            progress: if total == 0 {
                1.0
            } else {
                (total - waiting) as f64 / total as f64
            },
            finished_at: finished
                .then_some(counts.last_change.or(batch.started_at))
                .flatten(),
            counts: counts.by_status,
            batch,
        }
    }
}

/// Parses a batch's `send_at` with the same rules as `/send` ([`accept::send_at`],
/// [`accept::check_send_at`]: RFC 3339 with an offset, at most `delivery.max_send_ahead_ms`
/// ahead); a past time is `now`.
pub fn send_at(pipeline: &Pipeline, text: &str) -> Result<i64> {
    let now = pipeline.now();
    let at = accept::send_at(text)?;
    accept::check_send_at(Some(at), now, pipeline.config().delivery.max_send_ahead_ms)?;
    Ok(at.max(now))
}

/// Creates a batch of `rows` for `tenant`: every row is staged (or reported), then the batch is
/// sent if asked to, else left a draft. A fault that stops the staging cancels the batch, so
/// nothing of it is sent.
pub async fn create(
    pipeline: &Pipeline,
    tenant: &TenantId,
    request: BatchRequest,
    rows: Vec<Recipient>,
) -> Result<Created> {
    tenants::ensure_active(pipeline, tenant).await?;
    if rows.len() > MAX_RECIPIENTS {
        return Err(PipelineError::new(
            ErrorCode::TooManyRecipients,
            format!(
                "{} recipients; one request takes at most {MAX_RECIPIENTS}: create a draft \
                 (`send_immediately: false`) and upload the list to /batches/{{id}}/recipients",
                rows.len()
            ),
        ));
    }
    if rows.is_empty() && request.send_immediately {
        return Err(PipelineError::new(
            ErrorCode::EmptyBatch,
            "`recipients` is empty: list at least one, or create a draft \
             (`send_immediately: false`) and upload them",
        ));
    }
    let send_immediately = request.send_immediately;
    let batch = new_batch(pipeline, tenant, request)?;
    pipeline.store().create_batch(&batch).await?;
    let id = batch.id.clone();
    let staged = match stage_rows(pipeline, batch, rows, send_immediately).await {
        Ok(staged) => staged,
        Err(error) => {
            // Leave nothing of a batch that stopped half-way to be sent later.
            if let Err(cancel) = pipeline
                .store()
                .cancel_batch(tenant, &id, pipeline.now())
                .await
            {
                tracing::warn!(batch_id = %id, error = %cancel, "canceling a failed batch failed");
            }
            return Err(error);
        }
    };
    if send_immediately {
        // Its rows were charged as they were staged.
        queue(pipeline, tenant, &id, &DraftCharges::default()).await?;
    }
    tracing::info!(
        tenant = %tenant,
        batch_id = %id,
        accepted = staged.accepted,
        rejected = staged.rejected_count,
        "batch created"
    );
    Ok(Created {
        batch: summary(pipeline, tenant, &id).await?,
        staged,
    })
}

/// Stages `rows`; rows sent right away are charged to the budgets as they are written.
async fn stage_rows(
    pipeline: &Pipeline,
    batch: Batch,
    rows: Vec<Recipient>,
    charge: bool,
) -> Result<Staged> {
    let mut stager = stage::Stager::new(pipeline, batch, usize::MAX).await?;
    if charge {
        stager = stager.charging().await?;
    }
    for (index, row) in (0u64..).zip(rows) {
        stager.push(index, row).await?;
    }
    stager.finish().await
}

/// A new draft batch from `request`, its text checked.
fn new_batch(pipeline: &Pipeline, tenant: &TenantId, request: BatchRequest) -> Result<Batch> {
    if let Some(name) = &request.name
        && (name.chars().count() > MAX_NAME || name.chars().any(char::is_control))
    {
        return Err(PipelineError::new(
            ErrorCode::InvalidField,
            format!(
                "`batch_name` must be at most {MAX_NAME} characters, none of them control characters"
            ),
        ));
    }
    let template_nul = request.template.as_ref().is_some_and(|t| t.contains('\0'));
    let variables = serde_json::Map::from_iter(request.template_variables);
    let variables_nul = serde_json::Value::Object(variables.clone())
        .to_string()
        .contains("\\u0000");
    if template_nul || variables_nul {
        return Err(PipelineError::new(
            ErrorCode::InvalidField,
            "`template_id` and `template_variables` may not contain a NUL character",
        ));
    }
    Ok(Batch {
        id: new_id("bat"),
        tenant_id: tenant.clone(),
        name: request.name,
        state: BatchState::Draft,
        category: request.category,
        template_id: request.template,
        template_variables: (!variables.is_empty()).then_some(variables),
        allow_duplicates: request.allow_duplicates,
        send_at: request.send_at,
        created_at: pipeline.now(),
        started_at: None,
        canceled_at: None,
    })
}

/// Sends draft batch `id`: queues every message it holds, due at its `send_at` or now.
pub async fn send(pipeline: &Pipeline, tenant: &TenantId, id: &str) -> Result<BatchSummary> {
    tenants::ensure_active(pipeline, tenant).await?;
    let batch = batch(pipeline, tenant, id).await?;
    if batch.state != BatchState::Draft {
        return Err(not_draft(id));
    }
    let counts = pipeline.store().batch_counts(tenant, id).await?;
    if counts.by_status.is_empty() {
        return Err(PipelineError::new(
            ErrorCode::EmptyBatch,
            format!("batch `{id}` has no recipients to send"),
        ));
    }
    let drafts = draft_charges(pipeline, tenant, id).await?;
    queue(pipeline, tenant, id, &drafts).await?;
    summary(pipeline, tenant, id).await
}

/// The charges of draft batch `id`'s messages, priced now: a draft is charged when it is sent,
/// not while it is kept. A message a hard-capped budget cannot charge (no estimate, another
/// currency) is listed as refused.
async fn draft_charges(pipeline: &Pipeline, tenant: &TenantId, id: &str) -> Result<DraftCharges> {
    let mut rates = super::ledger::Rates::load(pipeline, tenant).await?;
    let mut drafts = DraftCharges::default();
    let mut cursor: Option<String> = None;
    loop {
        let page = pipeline
            .store()
            .list_batch_messages(tenant, id, Some(500), cursor.as_deref())
            .await
            .map_err(cursor_error)?;
        for message in page.items {
            if message.status != MessageStatus::Draft {
                continue;
            }
            let Ok(to) = PhoneNumber::parse(&message.to_number) else {
                continue;
            };
            let count = (message.encoding, message.segments);
            match rates
                .charge(pipeline, &message.provider, &to, &message.category, count)
                .await
            {
                Ok(charge) => drafts.charges.push((message.id, charge)),
                Err(e) if e.code == ErrorCode::BudgetExceeded => {
                    drafts.refused.push((message.id, e.message));
                }
                Err(e) => return Err(e),
            }
        }
        match page.next_cursor {
            Some(next) => cursor = Some(next),
            None => return Ok(drafts),
        }
    }
}

/// Queues draft batch `id`'s messages in one transaction, charging them as `drafts` says.
async fn queue(
    pipeline: &Pipeline,
    tenant: &TenantId,
    id: &str,
    drafts: &DraftCharges,
) -> Result<()> {
    let now = pipeline.now();
    let stored = batch(pipeline, tenant, id).await?;
    // Rows due later wait as `scheduled`, like a single send with a `send_at`.
    let due_at = stored.send_at.unwrap_or(now).max(now);
    pipeline
        .store()
        .send_batch(tenant, id, due_at, now, drafts)
        .await?
        .ok_or_else(|| not_draft(id))?;
    tracing::info!(tenant = %tenant, batch_id = %id, due_at, "batch queued");
    let status = if due_at > now {
        MessageStatus::Scheduled
    } else {
        MessageStatus::Queued
    };
    count_accepted(pipeline, tenant, id, status).await;
    Ok(())
}

/// Counts a batch's messages just queued, all as `status`, as accepted. The count is read back
/// (one aggregate query per batch, not per row), and counts every message but those left
/// `draft` or `canceled`: dispatchers may already have taken some further. A failure to read
/// it costs the metric, never the batch.
async fn count_accepted(pipeline: &Pipeline, tenant: &TenantId, id: &str, status: MessageStatus) {
    let provider = match tenants::provider(pipeline, tenant).await {
        Ok(provider) => provider.name().to_owned(),
        Err(_) => return,
    };
    match pipeline.store().batch_counts(tenant, id).await {
        Ok(counts) => {
            let queued: u64 = counts
                .by_status
                .iter()
                .filter(|(s, _)| !matches!(s, MessageStatus::Draft | MessageStatus::Canceled))
                .map(|(_, n)| n)
                .sum();
            pipeline
                .metrics()
                .accepted_many(tenant, &provider, status, queued);
        }
        Err(e) => tracing::debug!(batch_id = %id, error = %e, "could not count a queued batch"),
    }
}

/// Cancels batch `id`: every message not yet claimed is withdrawn (`canceled`); the ones a
/// dispatcher holds finish. Canceling again changes nothing.
pub async fn cancel(
    pipeline: &Pipeline,
    tenant: &TenantId,
    id: &str,
) -> Result<(BatchSummary, u64)> {
    let canceled = pipeline
        .store()
        .cancel_batch(tenant, id, pipeline.now())
        .await?
        .ok_or_else(|| not_found(id))?;
    tracing::info!(tenant = %tenant, batch_id = %id, withdrawn = canceled.messages, "batch canceled");
    Ok((summary(pipeline, tenant, id).await?, canceled.messages))
}

/// Batch `id` with its messages counted.
pub async fn summary(pipeline: &Pipeline, tenant: &TenantId, id: &str) -> Result<BatchSummary> {
    let batch = batch(pipeline, tenant, id).await?;
    let counts = pipeline.store().batch_counts(tenant, id).await?;
    Ok(BatchSummary::new(batch, counts, pipeline.now()))
}

/// One page of `tenant`'s batches, newest first, each with its messages counted.
pub async fn list(
    pipeline: &Pipeline,
    tenant: &TenantId,
    limit: Option<u32>,
    cursor: Option<&str>,
) -> Result<Page<BatchSummary>> {
    let page = pipeline
        .store()
        .list_batches(tenant, limit, cursor)
        .await
        .map_err(cursor_error)?;
    let now = pipeline.now();
    let mut items = Vec::with_capacity(page.items.len());
    for batch in page.items {
        let counts = pipeline.store().batch_counts(tenant, &batch.id).await?;
        items.push(BatchSummary::new(batch, counts, now));
    }
    Ok(Page {
        items,
        next_cursor: page.next_cursor,
    })
}

/// One page of batch `id`'s messages, in the order they were accepted.
pub async fn messages(
    pipeline: &Pipeline,
    tenant: &TenantId,
    id: &str,
    limit: Option<u32>,
    cursor: Option<&str>,
) -> Result<Page<Message>> {
    batch(pipeline, tenant, id).await?;
    pipeline
        .store()
        .list_batch_messages(tenant, id, limit, cursor)
        .await
        .map_err(cursor_error)
}

/// The stored batch `id`, or `batch_not_found`.
async fn batch(pipeline: &Pipeline, tenant: &TenantId, id: &str) -> Result<Batch> {
    pipeline
        .store()
        .get_batch(tenant, id)
        .await?
        .ok_or_else(|| not_found(id))
}

fn cursor_error(error: StoreError) -> PipelineError {
    match error {
        StoreError::InvalidCursor => {
            PipelineError::new(ErrorCode::InvalidQuery, "the cursor is not valid")
        }
        other => other.into(),
    }
}

fn not_found(id: &str) -> PipelineError {
    let shown: String = id.chars().take(64).collect();
    PipelineError::new(ErrorCode::BatchNotFound, format!("no batch `{shown}`"))
}

fn not_draft(id: &str) -> PipelineError {
    PipelineError::new(
        ErrorCode::BatchNotDraft,
        format!("batch `{id}` is not a draft: it was sent or canceled"),
    )
}
