//! The event log as readers see it: a tenant's latest status changes (`/delivery/real-time`) and
//! a live feed of everything the tenant's log records (`/delivery/stream`).
//!
//! The log, not a notification, is the source of truth: a feed remembers the last id it handed
//! on and, each time the log's horizon moves (a commit in this process, or on PostgreSQL a
//! `NOTIFY` from any process), reads the tenant's events after that id up to the horizon. So it
//! neither skips nor repeats an event, and a client that comes back with the last id it saw
//! (`Last-Event-ID`) continues exactly where it stopped.
//!
//! Writers never wait for a feed: each feed reads the log on its own task into a bounded buffer,
//! and a feed whose client has not taken [`FEED_BUFFER`] events is dropped (the buffer's events
//! are still handed on, then the feed ends with [`FeedItem::Dropped`]); the client resumes from
//! the log with its last id.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use tokio::sync::mpsc;

use super::Pipeline;
use super::error::{PipelineError, Result};
use crate::domain::{ErrorCode, TenantId};
use crate::store::{LoggedEvent, MESSAGE_STATUS};

/// The most events a feed holds for its client before the client counts as too slow.
pub const FEED_BUFFER: usize = 1_024;
/// How many events a feed reads from the log at a time.
const READ_PAGE: u32 = 500;
/// How long a new stream waits for the log's horizon to be read for the first time.
const FIRST_READING: std::time::Duration = std::time::Duration::from_secs(5);
/// The largest `limit` of [`latest_status_changes`].
pub const MAX_LATEST: u32 = 500;
/// How many events retention removes in one transaction.
const PRUNE_BATCH: u32 = 5_000;
/// The pause between two batches, so other writers get the database in between.
const PRUNE_PAUSE: std::time::Duration = std::time::Duration::from_millis(20);

/// The tenant's latest message status changes, newest first, at most `limit` (1 to
/// [`MAX_LATEST`]).
pub async fn latest_status_changes(
    pipeline: &Pipeline,
    tenant: &TenantId,
    limit: u32,
) -> Result<Vec<LoggedEvent>> {
    let limit = limit.clamp(1, MAX_LATEST);
    Ok(pipeline
        .store()
        .latest_events(tenant, MESSAGE_STATUS, i64::MAX, limit)
        .await?)
}

/// What a feed hands its client.
#[derive(Debug)]
pub enum FeedItem {
    /// The next event of the tenant's log.
    Event(LoggedEvent),
    /// The feed ended because its client fell [`FEED_BUFFER`] events behind; nothing follows.
    Dropped,
}

/// A live feed of one tenant's event log; dropping it stops its reader task.
#[derive(Debug)]
pub struct Feed {
    events: mpsc::Receiver<LoggedEvent>,
    dropped: Arc<AtomicBool>,
    ended: bool,
}

impl Feed {
    /// The next item; `None` once the feed has ended (its last item was [`FeedItem::Dropped`],
    /// or storage failed, which is logged).
    pub async fn next(&mut self) -> Option<FeedItem> {
        if self.ended {
            return None;
        }
        match self.events.recv().await {
            Some(event) => Some(FeedItem::Event(event)),
            None => {
                self.ended = true;
                self.dropped
                    .load(Ordering::Acquire)
                    .then_some(FeedItem::Dropped)
            }
        }
    }
}

/// Starts a feed of `tenant`'s events after id `after` (0 for the log's start; a client
/// connecting fresh passes the current horizon, see [`current_position`]).
#[must_use]
pub fn follow(pipeline: &Pipeline, tenant: &TenantId, after: i64) -> Feed {
    let (sender, events) = mpsc::channel(FEED_BUFFER);
    let dropped = Arc::new(AtomicBool::new(false));
    let task = read_log(
        pipeline.clone(),
        tenant.clone(),
        after,
        sender,
        Arc::clone(&dropped),
    );
    tokio::spawn(task);
    Feed {
        events,
        dropped,
        ended: false,
    }
}

/// The id a new feed starts after to see only what happens from now on: the log's horizon, once
/// it has been read (storage that does not answer within a few seconds is `storage_unavailable`).
pub async fn current_position(pipeline: &Pipeline) -> Result<i64> {
    let mut horizon = pipeline.store().event_horizon();
    let known = tokio::time::timeout(FIRST_READING, horizon.wait_for(|id| *id >= 0)).await;
    match known {
        Ok(Ok(id)) => Ok(*id),
        _ => Err(PipelineError::new(
            ErrorCode::StorageUnavailable,
            "the event log could not be read",
        )),
    }
}

/// The feed's reader: follows the horizon and hands on the tenant's events in id order until the
/// client goes away, falls too far behind, storage fails or the process shuts down.
async fn read_log(
    pipeline: Pipeline,
    tenant: TenantId,
    mut after: i64,
    sender: mpsc::Sender<LoggedEvent>,
    dropped: Arc<AtomicBool>,
) {
    let mut horizon = pipeline.store().event_horizon();
    let mut ended = pipeline.store().event_streams_ended();
    loop {
        if *ended.borrow_and_update() {
            return;
        }
        let upto = *horizon.borrow_and_update();
        while after < upto {
            let page = match pipeline
                .store()
                .events_after(&tenant, after, upto, READ_PAGE)
                .await
            {
                Ok(page) => page,
                Err(error) => {
                    tracing::warn!(%error, tenant = %tenant.as_str(), "an event stream could not read the log; ending it");
                    return;
                }
            };
            let full_page = page.len() == READ_PAGE as usize;
            for event in page {
                let id = event.id;
                match sender.try_send(event) {
                    Ok(()) => after = id,
                    Err(mpsc::error::TrySendError::Full(_)) => {
                        tracing::info!(tenant = %tenant.as_str(), last_id = after, "an event stream's client fell behind; dropping it");
                        dropped.store(true, Ordering::Release);
                        pipeline.metrics().event_stream_dropped(&tenant);
                        return;
                    }
                    Err(mpsc::error::TrySendError::Closed(_)) => return,
                }
            }
            if !full_page {
                // Every event of the tenant up to the horizon is handed on.
                after = upto;
            }
        }
        tokio::select! {
            changed = horizon.changed() => {
                if changed.is_err() {
                    return;
                }
            }
            () = sender.closed() => return,
            _ = ended.changed() => {}
        }
    }
}

/// Removes the events older than `storage.event_retention_ms` (none when it is 0), oldest
/// first, in batches of [`PRUNE_BATCH`] with a pause between them. Returns how many it removed.
pub async fn prune_expired(pipeline: &Pipeline) -> Result<u64> {
    let retention = pipeline.config().storage.event_retention_ms;
    if retention == 0 {
        return Ok(0);
    }
    let before = pipeline
        .now()
        .saturating_sub(i64::try_from(retention).unwrap_or(i64::MAX));
    let mut removed = 0;
    loop {
        let batch = pipeline.store().prune_events(before, PRUNE_BATCH).await?;
        removed += batch;
        if batch < u64::from(PRUNE_BATCH) {
            return Ok(removed);
        }
        tokio::time::sleep(PRUNE_PAUSE).await;
    }
}

/// Where a stream resumed after `after` can start: `after` itself, or, when retention has
/// removed events after it, the highest id removed (`Some` of it, so the client is told).
pub async fn resume_point(pipeline: &Pipeline, after: i64) -> Result<(i64, Option<i64>)> {
    let through = pipeline.store().events_pruned_through().await?;
    Ok(if after < through {
        (through, Some(through))
    } else {
        (after, None)
    })
}
