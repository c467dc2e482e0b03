//! Recurring schedules: a cron expression in a time zone ([`recurrence`](super::recurrence)),
//! content (a text or a template with its variables) and recipients. The scheduler ([`run`],
//! started by `Herald::run`) finds due fire times and creates their messages through the same
//! steps as a send ([`Pipeline::send`]); nothing here re-implements one.
//!
//! Exactly once: a fire time is leased in storage, its messages are created each under an
//! idempotency key made of the schedule id, the fire time and the recipient's index, and only
//! then does the schedule move to its next fire time (a conditional update that only the lease
//! holder's view of the schedule passes). A second process, a restart, or a lease that expired
//! mid-fire repeats the sends, and the keys turn every repeat into a replay of the message
//! already stored. A fire time whose sends hit a transient failure (storage, plugins) is not
//! moved past; its lease expires and it is tried again.
//!
//! Downtime: the next fire time after a fire is computed from the time of the fire, so fire
//! times missed while Herald was down fire once, late, or, with `catch_up: false`, not at all
//! (a fire time is missed when it is more than [`CATCH_UP_GRACE_MS`] late).

use std::time::Duration;

use tokio::sync::watch;

use super::Pipeline;
use super::accept::{self, Content, References, SendRequest};
use super::error::{ErrorCode, PipelineError, Result};
use super::recurrence::Recurrence;
use super::{bulk, count, render, tenants};
use crate::domain::{Category, PhoneNumber, TenantId};
use crate::store::{self, Page, Schedule, ScheduleTiming, StoreError, new_id};

/// The most recipients a schedule may name; more belong in a bulk batch.
pub const MAX_RECIPIENTS: usize = 1_000;
/// The longest schedule name, in bytes.
const MAX_NAME: usize = 200;
/// How late a fire time may be processed and still count as on time: later than this it was
/// missed (downtime), and `catch_up: false` skips it.
pub const CATCH_UP_GRACE_MS: i64 = 60_000;
/// How long a process holds a fire time while it creates its messages; after this another
/// process may take it over (the messages' idempotency keys keep the takeover harmless).
const FIRE_LEASE_MS: i64 = 60_000;
/// How many of a batch's recipients a fire time reads at once.
const BATCH_PAGE: u32 = 500;
/// How many due schedules one pass takes.
const PASS_SIZE: u32 = 32;
/// How many upcoming fire times a schedule shows.
pub const SHOWN_FIRE_TIMES: usize = 5;

/// Who a schedule sends to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Audience {
    /// These numbers, in this order.
    Recipients(Vec<PhoneNumber>),
    /// The recipients of a bulk batch.
    Batch(String),
}

/// A new schedule, as a caller asks for it.
#[derive(Debug, Clone, PartialEq)]
pub struct ScheduleRequest {
    /// A name for people.
    pub name: String,
    /// The cron expression.
    pub cron: String,
    /// The IANA time zone it is read in.
    pub timezone: String,
    /// The text, or the template and its variables.
    pub content: Content,
    /// Who it sends to.
    pub audience: Audience,
    /// The category of its messages; `None` takes the template's.
    pub category: Option<Category>,
    /// Whether a fire time missed by downtime fires late (default) or is skipped.
    pub catch_up: bool,
}

/// A change to a schedule: any of pause, expression and zone.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ScheduleChange {
    /// Pause (`true`) or resume (`false`).
    pub paused: Option<bool>,
    /// A new cron expression.
    pub cron: Option<String>,
    /// A new time zone.
    pub timezone: Option<String>,
}

/// A schedule with its upcoming fire times.
#[derive(Debug, Clone, PartialEq)]
pub struct ScheduleRecord {
    /// The schedule.
    pub schedule: Schedule,
    /// Its next fire times (UTC ms), none while paused.
    pub next_fire_times: Vec<i64>,
    /// The same times on the schedule zone's clock, RFC 3339 with offset.
    pub next_fire_times_local: Vec<String>,
}

/// What one scheduler pass did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Pass {
    /// Fire times whose messages were created.
    pub fired: usize,
    /// Fire times skipped: missed during downtime with `catch_up: false`.
    pub skipped: usize,
    /// Messages created (replays of messages created before are not counted).
    pub messages: usize,
    /// Recipients refused (opted out, the template gone, …): logged, and the fire time counts.
    pub refused: usize,
    /// Fire times left for a later pass: another process holds them, or a send failed for a
    /// reason that may pass.
    pub deferred: usize,
}

/// Creates a schedule for `tenant`: the expression, the zone and the content are checked, the
/// content by rendering and counting it for the first recipient, as a send would.
pub async fn create(
    pipeline: &Pipeline,
    tenant: &TenantId,
    request: ScheduleRequest,
) -> Result<ScheduleRecord> {
    tenants::ensure_active(pipeline, tenant).await?;
    let name = request.name.trim();
    if name.is_empty() || name.len() > MAX_NAME || name.chars().any(char::is_control) {
        return Err(invalid(format!(
            "`name` must be 1 to {MAX_NAME} bytes of text without control characters"
        )));
    }
    let recurrence = Recurrence::parse(&request.cron, &request.timezone)?;
    let now = pipeline.now();
    let next = first_fire(&recurrence, now)?;
    let (recipients, batch_id) = match request.audience {
        Audience::Recipients(list) if list.is_empty() => {
            return Err(invalid("`recipients` must name at least one number".into()));
        }
        Audience::Recipients(list) if list.len() > MAX_RECIPIENTS => {
            return Err(invalid(format!(
                "`recipients` may name at most {MAX_RECIPIENTS} numbers; send to more with a bulk batch"
            )));
        }
        Audience::Recipients(list) => (list, None),
        Audience::Batch(id) => {
            // The batch must be the tenant's and hold at least one recipient; its first one
            // stands in for the trial below.
            let first = bulk::messages(pipeline, tenant, &id, Some(1), None).await?;
            let Some(first) = first.items.into_iter().next() else {
                return Err(PipelineError::new(
                    ErrorCode::EmptyBatch,
                    format!("batch `{id}` has no recipients to schedule"),
                ));
            };
            (vec![accept::recipient(&first.to_number)?], Some(id))
        }
    };
    // What every fire time will send, tried once now for the first recipient.
    let mut trial = SendRequest::text(recipients[0].clone(), String::new());
    trial.content = request.content.clone();
    trial.category = request.category.clone();
    let draft = accept::accept(tenant, trial)?;
    let rendered = render::render(pipeline, &draft).await?;
    count::count(&rendered.body, pipeline.config().delivery.smart_encoding)?;
    let (message, template_id, variables) = match request.content {
        Content::Text(text) => (Some(text), None, serde_json::Map::new()),
        Content::Template {
            template,
            variables,
        } => (None, Some(template), variables.into_iter().collect()),
    };
    let schedule = Schedule {
        id: new_id("sch"),
        tenant_id: tenant.clone(),
        name: name.to_owned(),
        cron: request.cron.trim().to_owned(),
        timezone: request.timezone,
        message,
        template_id,
        template_variables: variables,
        recipients: batch_id
            .is_none()
            .then(|| recipients.iter().map(ToString::to_string).collect()),
        batch_id,
        category: request.category,
        catch_up: request.catch_up,
        paused: false,
        next_fire_at: Some(next),
        last_fired_at: None,
        created_at: now,
        updated_at: now,
    };
    pipeline.store().create_schedule(&schedule).await?;
    Ok(record(&recurrence, schedule))
}

/// The schedule `id` of `tenant`, with its next fire times.
pub async fn get(pipeline: &Pipeline, tenant: &TenantId, id: &str) -> Result<ScheduleRecord> {
    let schedule = find(pipeline, tenant, id).await?;
    let recurrence = Recurrence::parse(&schedule.cron, &schedule.timezone)?;
    Ok(record(&recurrence, schedule))
}

/// One page of `tenant`'s schedules, newest first, each with its next fire times.
pub async fn list(
    pipeline: &Pipeline,
    tenant: &TenantId,
    limit: Option<u32>,
    cursor: Option<&str>,
) -> Result<Page<ScheduleRecord>> {
    if cursor.is_some_and(|c| c.contains('\0')) {
        return Err(bad_cursor());
    }
    let page = match pipeline.store().list_schedules(tenant, limit, cursor).await {
        Ok(page) => page,
        Err(StoreError::InvalidCursor) => return Err(bad_cursor()),
        Err(e) => return Err(e.into()),
    };
    let items = page
        .items
        .into_iter()
        .map(|schedule| {
            let recurrence = Recurrence::parse(&schedule.cron, &schedule.timezone)?;
            Ok(record(&recurrence, schedule))
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(Page {
        items,
        next_cursor: page.next_cursor,
    })
}

/// Pauses, resumes or re-times a schedule. A new expression or zone, or a resume, starts from
/// now: fire times that passed while paused are not caught up.
pub async fn update(
    pipeline: &Pipeline,
    tenant: &TenantId,
    id: &str,
    change: ScheduleChange,
) -> Result<ScheduleRecord> {
    if change == ScheduleChange::default() {
        return Err(invalid(
            "send at least one of `paused`, `cron` and `timezone`".into(),
        ));
    }
    let current = find(pipeline, tenant, id).await?;
    let cron = change
        .cron
        .map_or(current.cron.clone(), |c| c.trim().to_owned());
    let timezone = change.timezone.unwrap_or_else(|| current.timezone.clone());
    let recurrence = Recurrence::parse(&cron, &timezone)?;
    let paused = change.paused.unwrap_or(current.paused);
    let now = pipeline.now();
    let retimed = cron != current.cron || timezone != current.timezone || current.paused;
    let next_fire_at = if paused {
        None
    } else if retimed {
        Some(first_fire(&recurrence, now)?)
    } else {
        current.next_fire_at
    };
    let timing = ScheduleTiming {
        cron,
        timezone,
        paused,
        next_fire_at,
    };
    let updated = pipeline
        .store()
        .update_schedule_timing(tenant, id, &timing, now)
        .await?
        .ok_or_else(|| not_found(id))?;
    Ok(record(&recurrence, updated))
}

/// Deletes a schedule; the messages it created stay.
pub async fn delete(pipeline: &Pipeline, tenant: &TenantId, id: &str) -> Result<()> {
    if id.contains('\0') || !pipeline.store().delete_schedule(tenant, id).await? {
        return Err(not_found(id));
    }
    Ok(())
}

/// Runs the scheduler until `shutdown` becomes true: a pass every `delivery.schedule_poll_ms`.
pub async fn run(pipeline: Pipeline, mut shutdown: watch::Receiver<bool>) {
    let worker = format!("scheduler-{}", std::process::id());
    loop {
        if *shutdown.borrow() {
            break;
        }
        if let Err(e) = fire_due(&pipeline, &worker).await {
            tracing::warn!(error = %e, "the scheduler pass failed; trying again shortly");
        }
        let poll = Duration::from_millis(pipeline.config().delivery.schedule_poll_ms.max(10));
        tokio::select! {
            () = tokio::time::sleep(poll) => {}
            _ = shutdown.changed() => {}
        }
    }
}

/// Fires every schedule that is due now, once: the scheduler's loop without the loop, for
/// embedders that drive it themselves and for tests that move a manual clock.
pub async fn fire_due(pipeline: &Pipeline, worker: &str) -> store::Result<Pass> {
    let now = pipeline.now();
    let mut pass = Pass::default();
    for schedule in pipeline.store().due_schedules(now, PASS_SIZE).await? {
        fire(pipeline, worker, &schedule, &mut pass).await?;
    }
    Ok(pass)
}

/// Processes the due fire time of `schedule`: leases it, creates its messages (or skips it when
/// it was missed and `catch_up` is off), then moves the schedule on.
async fn fire(
    pipeline: &Pipeline,
    worker: &str,
    schedule: &Schedule,
    pass: &mut Pass,
) -> store::Result<()> {
    let Some(due) = schedule.next_fire_at else {
        return Ok(());
    };
    let now = pipeline.now();
    // Unique to this fire, so that only this holder's `finish_fire` can move the schedule.
    let owner = format!("{worker}:{}", new_id("fire"));
    let store = pipeline.store();
    if !store
        .lease_fire(schedule, due, &owner, now + FIRE_LEASE_MS, now)
        .await?
    {
        pass.deferred += 1;
        return Ok(());
    }
    let next = Recurrence::parse(&schedule.cron, &schedule.timezone)
        .ok()
        .and_then(|recurrence| recurrence.next_after(now.max(due)));
    let missed = now - due > CATCH_UP_GRACE_MS;
    if missed && !schedule.catch_up {
        tracing::info!(schedule_id = %schedule.id, tenant = %schedule.tenant_id, due, "fire time missed during downtime; skipped (catch_up is off)");
        store
            .finish_fire(schedule, due, &owner, next, false, now)
            .await?;
        pass.skipped += 1;
        return Ok(());
    }
    match send_fire(pipeline, schedule, due).await {
        Ok((created, refused)) => {
            store
                .finish_fire(schedule, due, &owner, next, true, now)
                .await?;
            tracing::info!(schedule_id = %schedule.id, tenant = %schedule.tenant_id, due, created, refused, "schedule fired");
            pass.fired += 1;
            pass.messages += created;
            pass.refused += refused;
        }
        Err(e) => {
            // Left leased: the fire time is tried again when the lease expires, and the
            // messages already created are replayed, not created twice.
            tracing::warn!(schedule_id = %schedule.id, tenant = %schedule.tenant_id, due, error = %e, "schedule fire interrupted; it will be tried again");
            pass.deferred += 1;
        }
    }
    Ok(())
}

/// Sends fire time `due` of `schedule` to each recipient through [`Pipeline::send`]; returns
/// how many messages were created and how many recipients were refused. A failure that may
/// pass (storage, plugins, a suspended tenant) stops the fire and is returned.
async fn send_fire(pipeline: &Pipeline, schedule: &Schedule, due: i64) -> Result<(usize, usize)> {
    let content = match (&schedule.message, &schedule.template_id) {
        (Some(text), _) => Content::Text(text.clone()),
        (None, template) => Content::Template {
            template: template.clone().unwrap_or_default(),
            variables: schedule.template_variables.clone().into_iter().collect(),
        },
    };
    let mut fired = Fired::default();
    match &schedule.batch_id {
        None => {
            for (index, number) in schedule.recipients.iter().flatten().enumerate() {
                send_one(pipeline, schedule, due, &content, index, number, &mut fired).await?;
            }
        }
        Some(batch) => {
            // The batch's recipients in the order they were accepted, a page at a time; a
            // recipient's index (and so its idempotency key) is its place in that order.
            let mut index = 0;
            let mut cursor = None;
            loop {
                let page = bulk::messages(
                    pipeline,
                    &schedule.tenant_id,
                    batch,
                    Some(BATCH_PAGE),
                    cursor.as_deref(),
                )
                .await?;
                for message in &page.items {
                    send_one(
                        pipeline,
                        schedule,
                        due,
                        &content,
                        index,
                        &message.to_number,
                        &mut fired,
                    )
                    .await?;
                    index += 1;
                }
                cursor = page.next_cursor;
                if cursor.is_none() {
                    break;
                }
            }
        }
    }
    Ok((fired.created, fired.refused))
}

/// What a fire time has done so far.
#[derive(Debug, Default)]
struct Fired {
    created: usize,
    refused: usize,
}

/// Sends `content` of fire time `due` to recipient `index` (`number`) of `schedule`. A refusal
/// that may pass is returned, to stop the fire; any other refusal is counted and logged.
async fn send_one(
    pipeline: &Pipeline,
    schedule: &Schedule,
    due: i64,
    content: &Content,
    index: usize,
    number: &str,
    fired: &mut Fired,
) -> Result<()> {
    let Ok(to) = PhoneNumber::parse(number) else {
        fired.refused += 1;
        return Ok(());
    };
    let metadata = serde_json::json!({ "schedule_id": schedule.id, "fire_at": due });
    let request = SendRequest {
        content: content.clone(),
        category: schedule.category.clone(),
        references: References::default(),
        metadata: metadata.as_object().cloned(),
        idempotency_key: Some(fire_key(&schedule.id, due, index)),
        bulk: true,
        ..SendRequest::text(to, String::new())
    };
    match pipeline.send(&schedule.tenant_id, request).await {
        Ok(submitted) => fired.created += usize::from(!submitted.replayed),
        Err(e) if transient(e.code) => return Err(e),
        Err(e) => {
            tracing::warn!(schedule_id = %schedule.id, due, recipient = index, code = %e.code, error = %e.message, "a scheduled message was refused");
            fired.refused += 1;
        }
    }
    Ok(())
}

/// The idempotency key of recipient `index`'s message of fire time `due` of schedule `id`.
#[must_use]
pub fn fire_key(id: &str, due: i64, index: usize) -> String {
    format!("schedule:{id}:{due}:{index}")
}

/// Whether a send refused with `code` may succeed if tried again later.
fn transient(code: ErrorCode) -> bool {
    matches!(
        code,
        ErrorCode::StorageUnavailable
            | ErrorCode::RendererUnavailable
            | ErrorCode::ProviderUnavailable
            | ErrorCode::PluginBusy
            | ErrorCode::TenantSuspended
            | ErrorCode::Internal
    )
}

/// The first fire time after `now`, or `invalid_cron` for an expression that never fires again.
fn first_fire(recurrence: &Recurrence, now: i64) -> Result<i64> {
    recurrence.next_after(now).ok_or_else(|| {
        PipelineError::new(ErrorCode::InvalidCron, "`cron` has no fire time after now")
    })
}

fn record(recurrence: &Recurrence, schedule: Schedule) -> ScheduleRecord {
    let next_fire_times = match schedule.next_fire_at {
        Some(next) => std::iter::once(next)
            .chain(recurrence.upcoming(next, SHOWN_FIRE_TIMES - 1))
            .collect(),
        None => Vec::new(),
    };
    let next_fire_times_local = next_fire_times
        .iter()
        .map(|&at| recurrence.local_rfc3339(at))
        .collect();
    ScheduleRecord {
        schedule,
        next_fire_times,
        next_fire_times_local,
    }
}

async fn find(pipeline: &Pipeline, tenant: &TenantId, id: &str) -> Result<Schedule> {
    if id.contains('\0') {
        return Err(not_found(id));
    }
    pipeline
        .store()
        .get_schedule(tenant, id)
        .await?
        .ok_or_else(|| not_found(id))
}

fn not_found(id: &str) -> PipelineError {
    let shown: String = id.chars().take(64).collect();
    PipelineError::new(
        ErrorCode::ScheduleNotFound,
        format!("no schedule `{shown}`"),
    )
}

fn bad_cursor() -> PipelineError {
    PipelineError::new(ErrorCode::InvalidQuery, "the cursor is not valid")
}

fn invalid(message: String) -> PipelineError {
    PipelineError::new(ErrorCode::InvalidField, message)
}
