//! Staging a batch's rows: each row goes through the same steps as a single send (accept,
//! render, count, check) and is written to the batch a chunk at a time; a row that a step
//! refuses is reported by its position and the others go on. The opt-out check runs once per
//! chunk ([`check::check_many`]), one read for all its rows instead of one each.
//!
//! Memory stays flat whatever the number of rows: at most [`CHUNK_ROWS`] prepared messages, at
//! most [`MAX_CACHED_RENDERS`] cached renders and, when a cap is set, that many reported
//! rejections are held at once.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use serde::Serialize;

use super::Recipient;
use crate::domain::Category;
use crate::pipeline::accept::{self, Content, References, SendRequest};
use crate::pipeline::error::{ErrorCode, PipelineError, Result};
use crate::pipeline::render::Rendered;
use crate::pipeline::{Pipeline, check, count, enqueue, ledger, render, tenants};
use crate::plugin::LoadedPlugin;
use crate::store::{Batch, NewMessage, Template};

/// Rows prepared before they are written, in one transaction.
pub const CHUNK_ROWS: usize = 5_000;
/// Distinct (template, variables, category) renders remembered; the cache is emptied when full,
/// since rows that share variables usually come together.
const MAX_CACHED_RENDERS: usize = 10_000;
/// Distinct templates (by the id or name rows give) remembered; emptied when full.
const MAX_CACHED_TEMPLATES: usize = 256;

/// A row a step refused.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Rejected {
    /// Where it was: its index in a JSON list, or its line in an upload.
    pub position: u64,
    /// Why, as a stable code.
    pub code: ErrorCode,
    /// Why, for people.
    pub message: String,
}

/// What staging rows did.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Staged {
    /// Rows written to the batch.
    pub accepted: u64,
    /// Refused rows, in order (at most the cap the stager was given).
    pub rejected: Vec<Rejected>,
    /// How many rows were refused, reported or not.
    pub rejected_count: u64,
}

/// Prepares rows of one draft batch and writes them a chunk at a time.
pub(super) struct Stager<'p> {
    pipeline: &'p Pipeline,
    batch: Batch,
    provider: String,
    smart_encoding: bool,
    renders: HashMap<String, Rendered>,
    /// Templates looked up, by the id or name rows gave, and the renderer: once per batch, so
    /// that every row of a batch renders from the same version with the same renderer.
    templates: HashMap<String, Template>,
    renderer: Option<Arc<LoadedPlugin>>,
    pending: Vec<(u64, NewMessage)>,
    report_cap: usize,
    staged: Staged,
    /// Set when the rows are queued right after staging: each row is then priced and charged
    /// to the tenant's budgets as it is written (see [`Self::charging`]).
    rates: Option<ledger::Rates>,
}

impl<'p> Stager<'p> {
    /// A stager for draft `batch`, reporting at most `report_cap` rejections.
    pub(super) async fn new(
        pipeline: &'p Pipeline,
        batch: Batch,
        report_cap: usize,
    ) -> Result<Self> {
        let provider = tenants::provider(pipeline, &batch.tenant_id).await?;
        Ok(Self {
            pipeline,
            provider: provider.name().to_owned(),
            smart_encoding: pipeline.config().delivery.smart_encoding,
            batch,
            renders: HashMap::new(),
            templates: HashMap::new(),
            renderer: None,
            pending: Vec::with_capacity(CHUNK_ROWS),
            report_cap,
            staged: Staged::default(),
            rates: None,
        })
    }

    /// Prices and charges every row as it is written, in the transaction that writes it: for a
    /// batch sent right away. A row that a hard-capped budget has no room for is rejected with
    /// `budget_exceeded` and the rows after it go on.
    pub(super) async fn charging(mut self) -> Result<Self> {
        self.rates = Some(ledger::Rates::load(self.pipeline, &self.batch.tenant_id).await?);
        Ok(self)
    }

    /// Validates `row` (found at `position`) and adds it to the batch, or reports why not. Only
    /// a fault that would refuse every row (storage, plugins) is returned as an error.
    pub(super) async fn push(&mut self, position: u64, row: Recipient) -> Result<()> {
        match self.prepare(row).await {
            Ok(message) => {
                self.pending.push((position, message));
                if self.pending.len() >= CHUNK_ROWS {
                    self.flush().await?;
                }
                Ok(())
            }
            Err(error) if refuses_every_row(error.code) => Err(error),
            Err(error) => {
                self.reject(position, error);
                Ok(())
            }
        }
    }

    /// Reports row `position` as refused.
    pub(super) fn reject(&mut self, position: u64, error: PipelineError) {
        self.staged.rejected_count += 1;
        if self.staged.rejected.len() < self.report_cap {
            self.staged.rejected.push(Rejected {
                position,
                code: error.code,
                message: error.message,
            });
        }
    }

    /// Writes what is pending and returns the outcome, refusals in row order (duplicates are
    /// only found when their chunk is written).
    pub(super) async fn finish(mut self) -> Result<Staged> {
        self.flush().await?;
        self.staged
            .rejected
            .sort_by_key(|rejected| rejected.position);
        Ok(self.staged)
    }

    /// Accept, render and count one row: the steps of a single send but the check, which
    /// [`Stager::flush`] runs for the whole chunk.
    async fn prepare(&mut self, row: Recipient) -> Result<NewMessage> {
        let request = self.request(row)?;
        let draft = accept::accept(&self.batch.tenant_id, request)?;
        let rendered = self.render(&draft).await?;
        let counted = count::count(&rendered.body, self.smart_encoding)?;
        let outgoing = enqueue::routed(draft, rendered, counted, &self.provider);
        let charge = match &mut self.rates {
            Some(rates) => Some(
                rates
                    .charge(
                        self.pipeline,
                        &outgoing.provider,
                        &outgoing.to,
                        &outgoing.category,
                        (outgoing.body.count.encoding, outgoing.body.count.segments),
                    )
                    .await?,
            ),
            None => None,
        };
        let mut message = enqueue::new_message(self.pipeline, outgoing);
        message.batch_id = Some(self.batch.id.clone());
        message.charge = charge;
        Ok(message)
    }

    /// The send request of `row`, with the batch's template, variables and category under the
    /// row's own.
    fn request(&self, row: Recipient) -> Result<SendRequest> {
        let template = row.template_id.or_else(|| {
            // The batch's template is for rows that bring no text of their own.
            row.message
                .is_none()
                .then(|| self.batch.template_id.clone())
                .flatten()
        });
        let variables = match (&template, &self.batch.template_variables) {
            (Some(_), Some(defaults)) => {
                let mut merged: BTreeMap<_, _> = defaults.clone().into_iter().collect();
                merged.extend(row.template_variables);
                merged
            }
            _ => row.template_variables,
        };
        Ok(SendRequest {
            to: accept::recipient(&row.to_number)?,
            content: Content::from_parts(row.message, template, variables)?,
            from: row.from_number.as_deref().map(accept::sender).transpose()?,
            category: match row.category.as_deref() {
                Some(name) => Some(accept::category(name)?),
                None => self.batch.category.clone(),
            },
            references: References {
                customer_id: row.customer_id,
                order_id: row.order_id,
                reservation_id: row.reservation_id,
            },
            metadata: row.metadata,
            idempotency_key: None,
            // The batch's `send_at` applies to all its rows when it is sent.
            send_at: None,
            bulk: true,
        })
    }

    /// Renders `draft`, once per distinct template, variables and category: the renderer is a
    /// plugin call, and a batch usually repeats the same variables many times. The template
    /// and the renderer are looked up once for the batch.
    async fn render(&mut self, draft: &accept::Draft) -> Result<Rendered> {
        let Content::Template {
            template,
            variables,
        } = &draft.request.content
        else {
            return render::render(self.pipeline, draft).await;
        };
        let key = serde_json::to_string(&(&draft.request.content, &draft.request.category))
            .map_err(PipelineError::internal)?;
        if let Some(rendered) = self.renders.get(&key) {
            return Ok(rendered.clone());
        }
        let renderer = match &self.renderer {
            Some(renderer) => Arc::clone(renderer),
            None => {
                let renderer = tenants::renderer(self.pipeline, &self.batch.tenant_id).await?;
                self.renderer = Some(Arc::clone(&renderer));
                renderer
            }
        };
        if !self.templates.contains_key(template) {
            let stored =
                render::usable_template(self.pipeline, &self.batch.tenant_id, template).await?;
            if self.templates.len() >= MAX_CACHED_TEMPLATES {
                self.templates.clear();
            }
            self.templates.insert(template.clone(), stored);
        }
        let stored = &self.templates[template];
        let rendered = render::render_template_with(
            &renderer,
            stored,
            variables,
            draft.request.category.clone(),
        )
        .await?;
        if self.renders.len() >= MAX_CACHED_RENDERS {
            self.renders.clear();
        }
        self.renders.insert(key, rendered.clone());
        Ok(rendered)
    }

    /// Checks the pending rows (opt-outs) and writes those that pass in one transaction; a row
    /// whose number the batch already has (and duplicates are not allowed) is reported as
    /// `duplicate_recipient`.
    async fn flush(&mut self) -> Result<()> {
        if self.pending.is_empty() {
            return Ok(());
        }
        let pending = std::mem::take(&mut self.pending);
        let rows: Vec<(&str, &Category)> = pending
            .iter()
            .map(|(_, message)| (message.to_number.as_str(), &message.category))
            .collect();
        let checked = check::check_many(self.pipeline, &self.batch.tenant_id, &rows).await?;
        let mut positions = Vec::with_capacity(pending.len());
        let mut messages = Vec::with_capacity(pending.len());
        for ((position, message), verdict) in pending.into_iter().zip(checked) {
            match verdict {
                Ok(()) => {
                    positions.push(position);
                    messages.push(message);
                }
                Err(error) => self.reject(position, error),
            }
        }
        self.pending = Vec::with_capacity(CHUNK_ROWS);
        if messages.is_empty() {
            return Ok(());
        }
        let inserted = self
            .pipeline
            .store()
            .insert_batch_messages(
                &self.batch.tenant_id,
                &self.batch.id,
                &messages,
                !self.batch.allow_duplicates,
            )
            .await?
            .ok_or_else(|| super::not_draft(&self.batch.id))?;
        let over_budget: HashSet<String> = inserted.over_budget.into_iter().collect();
        let inserted: HashSet<String> = inserted.inserted.into_iter().collect();
        for (position, message) in positions.into_iter().zip(messages) {
            if inserted.contains(&message.id) {
                self.staged.accepted += 1;
            } else if over_budget.contains(&message.id) {
                let error = PipelineError::new(
                    ErrorCode::BudgetExceeded,
                    "a hard-capped budget has no room for this row's estimate in this period",
                );
                self.reject(position, error);
            } else {
                let error = PipelineError::new(
                    ErrorCode::DuplicateRecipient,
                    format!(
                        "{} is already in this batch; it is sent once",
                        message.to_number
                    ),
                );
                self.reject(position, error);
            }
        }
        Ok(())
    }
}

/// Whether an error would refuse every row alike (storage, plugins, a suspended tenant), so
/// the batch stops instead of rejecting its rows one by one.
fn refuses_every_row(code: ErrorCode) -> bool {
    matches!(
        code,
        ErrorCode::StorageUnavailable
            | ErrorCode::Internal
            | ErrorCode::RendererUnavailable
            | ErrorCode::ProviderUnavailable
            | ErrorCode::PluginBusy
            | ErrorCode::TenantSuspended
            | ErrorCode::BatchNotDraft
    )
}
