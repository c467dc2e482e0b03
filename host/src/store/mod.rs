//! Durable storage and the send queue, behind one [`Store`] with two backends: SQLite (one file in
//! WAL mode, the embedded default) and PostgreSQL (several processes sharing one queue).
//!
//! Layout:
//! - [`model`]: the domain types the store reads and writes, and the monotonic status rule.
//! - `dialect`: the `Dialect` trait (the SQL fragments that differ between the backends) and
//!   `Queries<DB>`, the handle every shared query is an associated function of.
//! - `messages`, `queue`, `records`, `reconcile`, `templates`: the shared queries, written once as plain
//!   generic code over the backend's sqlx database type; `shared`: the plain helpers they use.
//! - `opt_outs`: the opt-out list and inbound messages as callers read them (per number, paged,
//!   counted, the audit trail for the export), queries and `Store` methods together.
//! - `sqlite`, `postgres`: connecting, migrating, and each backend's `Dialect` (how a write
//!   transaction begins, row locks, the claim statement, cross-process wake-ups).
//! - `error`, `ids`: the store's error type; ids, clocks and pagination cursors.
//! - `gauges`: the queue's depth and oldest due entry, read for the metrics.
//! - `priority`: the claim order of queue entries ([`ClaimPriority`]); `cancel`: withdrawing a
//!   waiting message; `schedules`: recurring schedules and their exactly-once firing steps.
//! - `events`: the event log (a row per status change, inbound message and opt-out change,
//!   written in the transaction of the change) and its horizon, up to which readers read.
//! - `ledger`: the cost ledger — estimates and reservations written inside the enqueue, actual
//!   prices inside the transaction storing a provider's report, releases inside a failure or
//!   cancel ([`Charge`]); `ledger_bulk`: the same for a batch's rows and drafts; `budgets`:
//!   budgets, their usage per period and the thresholds that fired.
//!
//! Each [`Store`] method matches on the backend and calls the same `Queries` function with that
//! backend's pool, so go-to-definition leads straight to the SQL.
//!
//! Every tenant-owned row carries its tenant id and every query is scoped by it. Times are UTC
//! milliseconds since the epoch; money is integer micro-units plus a currency code. Migrations
//! are embedded from `migrations/sqlite` and `migrations/postgres` (same numbers and names,
//! append-only) and applied by [`Store::migrate`].
//!
//! The queue: [`Store::enqueue`] writes the message, its queue entry and its first event in one
//! transaction; [`Store::claim`] leases due entries (expired leases included, so a process that
//! died loses nothing); each outcome of an attempt is fenced by the lease token, so a worker whose
//! lease was taken over cannot overwrite the new holder's work.

mod batches;
mod budgets;
mod cancel;
mod dialect;
mod error;
mod events;
mod gauges;
mod group;
mod ids;
mod ledger;
mod ledger_bulk;
mod messages;
pub mod model;
mod opt_outs;
mod pg_claim;
mod pg_enqueue;
mod pg_group;
mod pg_outcome;
mod pg_outcome_group;
mod postgres;
mod priority;
mod profiles;
mod queue;
mod reconcile;
mod records;
mod reports;
mod schedules;
mod script;
mod shared;
mod sqlite;
mod sqlite_lookup;
mod sqlite_outcome;
mod statuses;
mod templates;
mod tenants;

use std::sync::Arc;
use std::time::Duration;

use sqlx::{PgPool, Postgres, Sqlite, SqlitePool};
use tokio::sync::Notify;
use tokio::task::JoinHandle;

pub use batches::{Batch, BatchCounts, BatchState, Canceled, ChunkInserted};
pub use budgets::{BudgetUsage, StoredBudget};
pub use cancel::CancelOutcome;
use dialect::Queries;
pub use error::{Result, StoreError};
pub use events::{BUDGET_THRESHOLD, LoggedEvent, MESSAGE_INBOUND, MESSAGE_STATUS, OPT_OUT_CHANGED};
pub use gauges::QueueGauges;
pub use ids::{new_id, now_millis};
pub use ledger::{BudgetAlert, Charge, Hold, MessageCost, PriceAverage};
pub use ledger_bulk::DraftCharges;
pub use model::*;
pub use opt_outs::{InboundFilter, OptOut, OptOutActivity, OptOutCounts, OptOutFilter};
pub use priority::ClaimPriority;
pub use reports::{CostFact, DAY_MS, Dimension, FailureFact, LatencyFact, LatencyKind};
pub use schedules::{Schedule, ScheduleTiming};

/// How to connect; the defaults suit a single `herald serve`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreOptions {
    /// PostgreSQL: the pool size. SQLite: the number of reader connections (writes always go
    /// through one connection).
    pub max_connections: u32,
    /// How long an operation waits for a pooled connection (opening one included) before it
    /// fails with [`StoreError::Unavailable`].
    pub acquire_timeout: Duration,
    /// SQLite: how long a statement waits for a lock held by another process.
    pub busy_timeout: Duration,
}

impl Default for StoreOptions {
    fn default() -> Self {
        Self {
            max_connections: 8,
            acquire_timeout: Duration::from_secs(5),
            busy_timeout: Duration::from_secs(5),
        }
    }
}

/// The durable store and queue; cheap to clone, and clones share pools and wake-ups.
#[derive(Clone)]
pub struct Store {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("backend", &self.backend_name())
            .finish_non_exhaustive()
    }
}

struct Inner {
    backend: Backend,
    /// Wakes [`Store::wait_for_work`] when this process (or, on PostgreSQL, any process) enqueues.
    wake: Arc<Notify>,
    /// PostgreSQL's `LISTEN` task, stopped when the last clone of the store is dropped.
    listener: Option<JoinHandle<()>>,
    /// PostgreSQL: the notifications owed to other processes, and the task that sends them
    /// after each commit (stopped with the listener).
    publisher: Option<(Arc<postgres::Pending>, JoinHandle<()>)>,
    /// The task that folds the rollup deltas into the rollups (`reports.rs`).
    folder: JoinHandle<()>,
    /// PostgreSQL: the lanes that commit enqueues in groups (`pg_group.rs`).
    enqueues: Option<pg_group::EnqueueGroup>,
    /// PostgreSQL: the lane that records attempt outcomes in groups (`pg_outcome_group.rs`).
    outcomes: Option<pg_outcome_group::OutcomeGroup>,
    /// The task that applies status reports in groups, coalesced by message (`statuses.rs`).
    statuses: statuses::StatusGroup,
    /// Tenants' settings and budgets, cached (`profiles.rs`).
    profiles: Arc<profiles::Profiles>,
    /// The event log's horizon (see `events.rs`), woken after commits that wrote events.
    horizon: events::Horizon,
}

impl Drop for Inner {
    fn drop(&mut self) {
        if let Some(listener) = &self.listener {
            listener.abort();
        }
        if let Some((_, publisher)) = &self.publisher {
            publisher.abort();
        }
        self.folder.abort();
    }
}

enum Backend {
    /// Writes are serialised on one connection (no busy-loops); reads use their own pool, which
    /// WAL lets run alongside the writer. The hot writes (enqueues, attempt outcomes, status
    /// reports) go through `group`, which commits the writes waiting together.
    Sqlite {
        writer: SqlitePool,
        reader: SqlitePool,
        group: group::GroupWriter,
        /// The hottest point reads, on the caller's thread (none for an in-memory database).
        lookups: Option<sqlite_lookup::Lookups>,
    },
    Postgres(PgPool),
}

impl Store {
    /// Connects to `postgres://…` (or `postgresql://…`), or to SQLite given
    /// `sqlite://path?mode=rwc`, `sqlite:path` or a plain file path (created if missing).
    ///
    /// SQLite runs in WAL mode with `synchronous = NORMAL`: a committed transaction survives a
    /// crash of the process; after a power loss the last few may roll back. Foreign keys are
    /// enforced and a busy lock is waited for up to [`StoreOptions::busy_timeout`].
    pub async fn connect(url: &str, options: &StoreOptions) -> Result<Store> {
        let wake = Arc::new(Notify::new());
        let horizon = events::Horizon::new();
        let profiles = Arc::new(profiles::Profiles::default());
        let (backend, listener, publisher) =
            if url.starts_with("postgres://") || url.starts_with("postgresql://") {
                let pool = postgres::connect(url, options).await?;
                let listener = postgres::listen(
                    url,
                    Arc::clone(&wake),
                    Arc::clone(&horizon.written),
                    Arc::clone(&profiles),
                )
                .await?;
                let pending = Arc::new(postgres::Pending::default());
                let publisher = postgres::publisher(pool.clone(), Arc::clone(&pending));
                (
                    Backend::Postgres(pool),
                    Some(listener),
                    Some((pending, publisher)),
                )
            } else {
                let (writer, reader, lookups) = sqlite::connect(url, options).await?;
                let group = group::GroupWriter::start(writer.clone());
                (
                    Backend::Sqlite {
                        writer,
                        reader,
                        group,
                        lookups,
                    },
                    None,
                    None,
                )
            };
        let folder = reports::folder(reports::Folding::of(&backend));
        let enqueues = match &backend {
            // Half the pool at most, so that claims and callbacks always find a connection.
            Backend::Postgres(pool) => Some(pg_group::EnqueueGroup::start(
                pool.clone(),
                (options.max_connections as usize / 2).clamp(1, 4),
            )),
            Backend::Sqlite { .. } => None,
        };
        let outcomes = match &backend {
            Backend::Postgres(pool) => Some(pg_outcome_group::OutcomeGroup::start(pool.clone())),
            Backend::Sqlite { .. } => None,
        };
        let statuses = statuses::StatusGroup::start(match &backend {
            Backend::Sqlite { group, .. } => statuses::Target::Sqlite(group.clone()),
            Backend::Postgres(pool) => statuses::Target::Postgres(pool.clone()),
        });
        Ok(Store {
            inner: Arc::new(Inner {
                backend,
                wake,
                listener,
                publisher,
                folder,
                enqueues,
                outcomes,
                statuses,
                profiles,
                horizon,
            }),
        })
    }

    /// Applies the embedded migrations that the database has not seen yet.
    pub async fn migrate(&self) -> Result<()> {
        match &self.inner.backend {
            Backend::Sqlite { writer, .. } => sqlite::migrate(writer).await,
            Backend::Postgres(pool) => postgres::migrate(pool).await,
        }
    }

    /// Closes the pools, waiting for connections in use to be returned (SQLite checkpoints its
    /// WAL as the last connection closes). Operations after this fail.
    pub async fn close(&self) {
        self.end_event_streams();
        match &self.inner.backend {
            Backend::Sqlite { writer, reader, .. } => {
                reader.close().await;
                writer.close().await;
            }
            Backend::Postgres(pool) => pool.close().await,
        }
    }

    /// Runs a trivial query, to tell whether the database answers (readiness).
    pub async fn ping(&self) -> Result<()> {
        match &self.inner.backend {
            Backend::Sqlite { reader, .. } => {
                sqlx::query("SELECT 1").execute(reader).await?;
            }
            Backend::Postgres(pool) => {
                sqlx::query("SELECT 1").execute(pool).await?;
            }
        }
        Ok(())
    }

    /// Returns `"sqlite"` or `"postgres"`.
    #[must_use]
    pub fn backend_name(&self) -> &'static str {
        match self.inner.backend {
            Backend::Sqlite { .. } => "sqlite",
            Backend::Postgres(_) => "postgres",
        }
    }

    /// Creates a tenant; an existing id is a [`StoreError::Conflict`].
    pub async fn create_tenant(&self, tenant: &Tenant) -> Result<()> {
        match &self.inner.backend {
            Backend::Sqlite { writer, .. } => Queries::create_tenant(writer, tenant).await,
            Backend::Postgres(pool) => Queries::create_tenant(pool, tenant).await,
        }
    }

    /// Reads a tenant.
    pub async fn get_tenant(&self, id: &TenantId) -> Result<Option<Tenant>> {
        match &self.inner.backend {
            Backend::Sqlite {
                reader, lookups, ..
            } => match lookups.as_ref().map(|l| l.tenant(id.as_str())) {
                Some(Ok(found)) => Ok(found),
                _ => Queries::get_tenant(reader, id.as_str()).await,
            },
            Backend::Postgres(pool) => Queries::get_tenant(pool, id.as_str()).await,
        }
    }

    /// Lists every tenant, oldest first.
    pub async fn list_tenants(&self) -> Result<Vec<Tenant>> {
        match &self.inner.backend {
            Backend::Sqlite { reader, .. } => Queries::list_tenants(reader).await,
            Backend::Postgres(pool) => Queries::list_tenants(pool).await,
        }
    }

    /// Sets a tenant's status; `None` when there is no such tenant. Making a tenant active again
    /// wakes the dispatchers, since its held messages become claimable.
    pub async fn set_tenant_status(
        &self,
        id: &TenantId,
        status: TenantStatus,
    ) -> Result<Option<Tenant>> {
        let updated = match &self.inner.backend {
            Backend::Sqlite { writer, .. } => {
                Queries::set_tenant_status(writer, id.as_str(), status).await
            }
            Backend::Postgres(pool) => Queries::set_tenant_status(pool, id.as_str(), status).await,
        }?;
        if status == TenantStatus::Active {
            self.queue_written();
        }
        Ok(updated)
    }

    /// Stores a new API key (its hash and prefix only).
    pub async fn create_api_key(&self, key: &NewApiKey) -> Result<ApiKey> {
        match &self.inner.backend {
            Backend::Sqlite { writer, .. } => Queries::create_api_key(writer, key).await,
            Backend::Postgres(pool) => Queries::create_api_key(pool, key).await,
        }
    }

    /// Lists a tenant's API keys (ids and prefixes), revoked ones included.
    pub async fn list_api_keys(&self, tenant: &TenantId) -> Result<Vec<ApiKey>> {
        match &self.inner.backend {
            Backend::Sqlite { reader, .. } => Queries::list_api_keys(reader, tenant.as_str()).await,
            Backend::Postgres(pool) => Queries::list_api_keys(pool, tenant.as_str()).await,
        }
    }

    /// Revokes one of a tenant's keys; `false` when it has no such live key.
    pub async fn revoke_api_key(&self, tenant: &TenantId, key_id: &str, now: i64) -> Result<bool> {
        match &self.inner.backend {
            Backend::Sqlite { writer, .. } => {
                Queries::revoke_api_key(writer, tenant.as_str(), key_id, now).await
            }
            Backend::Postgres(pool) => {
                Queries::revoke_api_key(pool, tenant.as_str(), key_id, now).await
            }
        }
    }

    /// The tenant whose live API key has this SHA-256 hash. Read on every request, so a revoked
    /// key stops working at once in every process.
    pub async fn tenant_for_key(&self, key_hash: &str) -> Result<Option<Tenant>> {
        match &self.inner.backend {
            Backend::Sqlite {
                reader, lookups, ..
            } => match lookups.as_ref().map(|l| l.tenant_for_key(key_hash)) {
                Some(Ok(found)) => Ok(found),
                _ => Queries::tenant_for_key(reader, key_hash).await,
            },
            Backend::Postgres(pool) => Queries::tenant_for_key(pool, key_hash).await,
        }
    }

    /// Replaces a tenant's settings document and the numbers it owns; a number that another
    /// tenant owns is a [`StoreError::Conflict`] and nothing changes.
    pub async fn put_tenant_settings(
        &self,
        tenant: &TenantId,
        settings: &str,
        numbers: &[String],
        now: i64,
    ) -> Result<()> {
        let result = match &self.inner.backend {
            Backend::Sqlite { writer, .. } => {
                Queries::put_tenant_settings(writer, tenant.as_str(), settings, numbers, now).await
            }
            Backend::Postgres(pool) => {
                Queries::put_tenant_settings(pool, tenant.as_str(), settings, numbers, now).await
            }
        };
        self.profiles_written();
        result
    }

    /// Reads a tenant's settings document (cached: see `profiles.rs`).
    pub async fn get_tenant_settings(&self, tenant: &TenantId) -> Result<Option<StoredSettings>> {
        let profiles = &self.inner.profiles;
        if let Some(cached) = profiles.settings(tenant.as_str()) {
            return Ok(cached);
        }
        let ticket = profiles.ticket();
        let settings = match &self.inner.backend {
            Backend::Sqlite { reader, .. } => {
                Queries::get_tenant_settings(reader, tenant.as_str()).await
            }
            Backend::Postgres(pool) => Queries::get_tenant_settings(pool, tenant.as_str()).await,
        }?;
        profiles.keep_settings(ticket, tenant.as_str(), &settings);
        Ok(settings)
    }

    /// After a write to a tenant's settings or budgets (committed or not: forgetting costs only
    /// a read): this process forgets its cached profiles, and on PostgreSQL the others are told.
    fn profiles_written(&self) {
        self.inner.profiles.invalidate();
        if let Some((pending, _)) = &self.inner.publisher {
            pending.profiles();
        }
    }

    /// The tenant that owns the phone number `number`.
    pub async fn tenant_for_number(&self, number: &str) -> Result<Option<TenantId>> {
        match &self.inner.backend {
            Backend::Sqlite { reader, .. } => Queries::tenant_for_number(reader, number).await,
            Backend::Postgres(pool) => Queries::tenant_for_number(pool, number).await,
        }
    }

    /// The tenant that owns message `id` and the provider it is sent through, for callbacks
    /// that carry only the message's id.
    pub async fn message_owner(&self, id: &str) -> Result<Option<(TenantId, String)>> {
        match &self.inner.backend {
            Backend::Sqlite {
                reader, lookups, ..
            } => match lookups.as_ref().map(|l| l.message_owner(id)) {
                Some(Ok(found)) => Ok(found),
                _ => Queries::message_owner(reader, id).await,
            },
            Backend::Postgres(pool) => Queries::message_owner(pool, id).await,
        }
    }

    /// Stores a message with status `queued`, its queue entry and its first event (and its
    /// charge, if any) atomically: on SQLite in the writer's next batch, on PostgreSQL as one
    /// statement. Then wakes waiting dispatchers.
    ///
    /// A reused idempotency key returns [`Enqueued::Existing`] when the request hash matches and
    /// [`StoreError::IdempotencyConflict`] when it does not; either way nothing new is stored.
    pub async fn enqueue(&self, new: &NewMessage) -> Result<Enqueued> {
        let (enqueued, alerts) = match &self.inner.backend {
            Backend::Sqlite { group, .. } => {
                let new = new.clone();
                group
                    .write_scripted(move |conn| {
                        Box::pin(async move { Queries::<Sqlite>::enqueue_in(conn, &new).await })
                    })
                    .await?
            }
            Backend::Postgres(pool) => match &self.inner.enqueues {
                Some(group) => group.enqueue(pool, new).await?,
                None => Queries::<Postgres>::enqueue_one(pool, new).await?,
            },
        };
        ledger::log_alerts(&alerts);
        if matches!(enqueued, Enqueued::Created(_)) {
            self.queue_written();
            self.events_written();
        }
        Ok(enqueued)
    }

    /// Leases up to `limit` entries that are due at `now` (their lease, if any, expired) to one
    /// claim by `worker` for `lease`, counting an attempt and marking each message `sending`.
    ///
    /// Each job carries a lease token unique to this claim; pass it back through
    /// [`ClaimedJob::lease`] to record the attempt's outcome.
    pub async fn claim(
        &self,
        worker: &str,
        now: i64,
        lease: Duration,
        limit: u32,
    ) -> Result<Vec<ClaimedJob>> {
        let result = match &self.inner.backend {
            Backend::Sqlite { group, .. } => {
                let worker = worker.to_owned();
                group
                    .write_scripted(move |conn| {
                        Box::pin(async move {
                            Queries::<Sqlite>::claim_script(conn, &worker, now, lease, limit).await
                        })
                    })
                    .await
            }
            Backend::Postgres(pool) => {
                Queries::<Postgres>::claim_one(pool, worker, now, lease, limit).await
            }
        };
        // An idle dispatcher claims nothing, often: only a claim that moved messages wrote.
        if result.as_ref().is_ok_and(|jobs| !jobs.is_empty()) {
            self.events_written();
        }
        result
    }

    /// How many group-commit transactions have run: on SQLite the writer's (every write), on
    /// PostgreSQL the enqueue lanes' (a lone enqueue counts as one). With a count of the writes,
    /// a bench's average batch.
    #[must_use]
    pub fn group_commits(&self) -> Option<u64> {
        match &self.inner.backend {
            Backend::Sqlite { group, .. } => Some(group.batches()),
            Backend::Postgres(_) => self
                .inner
                .enqueues
                .as_ref()
                .map(pg_group::EnqueueGroup::batches),
        }
    }

    /// PostgreSQL: how many transactions the outcome lane has run (a lone outcome counts as
    /// one); `None` on SQLite, whose writer batches outcomes with every other write.
    #[must_use]
    pub fn outcome_commits(&self) -> Option<u64> {
        self.inner
            .outcomes
            .as_ref()
            .map(pg_outcome_group::OutcomeGroup::batches)
    }

    /// Wakes the dispatchers after a commit that queued messages: those of this process at once,
    /// those of other processes (PostgreSQL) through the publisher.
    fn queue_written(&self) {
        self.inner.wake.notify_one();
        if let Some((pending, _)) = &self.inner.publisher {
            pending.queue();
        }
    }

    /// Waits until a message is enqueued (in this process, or on PostgreSQL in any process) or
    /// `max` passes; returns whether it was woken. Wake-ups may be spurious: claim, then wait
    /// again.
    pub async fn wait_for_work(&self, max: Duration) -> bool {
        tokio::time::timeout(max, self.inner.wake.notified())
            .await
            .is_ok()
    }

    /// Records that the provider accepted the attempt: removes the queue entry, stores the
    /// provider's id, its segment count (as [`Message::provider_segments`]) and price, and moves
    /// the message to `sent` unless a callback already moved it further. Does nothing and returns [`LeaseOutcome::Lost`] without the lease.
    pub async fn complete_accepted(
        &self,
        lease: LeaseRef<'_>,
        accepted: &Accepted,
        now: i64,
    ) -> Result<LeaseOutcome> {
        let result = match &self.inner.backend {
            Backend::Sqlite { group, .. } => {
                let (lease, accepted) = (queue::OwnedLease::from(lease), accepted.clone());
                group
                    .write_scripted(move |conn| {
                        Box::pin(async move {
                            if accepted.price.is_none() {
                                let outcome = Queries::<Sqlite>::complete_accepted_script(
                                    conn,
                                    lease.as_ref(),
                                    &accepted,
                                    now,
                                )
                                .await?;
                                return Ok((outcome, Vec::new()));
                            }
                            let (outcome, alerts) = Queries::<Sqlite>::complete_accepted_in(
                                conn,
                                lease.as_ref(),
                                &accepted,
                                now,
                            )
                            .await?;
                            Ok((outcome, alerts))
                        })
                    })
                    .await
                    .map(|(outcome, alerts)| {
                        ledger::log_alerts(&alerts);
                        outcome
                    })
            }
            Backend::Postgres(pool) => {
                let outcome = pg_outcome_group::Outcome::Accepted {
                    accepted: accepted.clone(),
                };
                self.record_outcome(pool, lease, outcome, now).await
            }
        };
        self.events_written();
        result
    }

    /// Returns the message to `queued`, due again at `due_at`, recording the attempt's error.
    /// Does nothing and returns [`LeaseOutcome::Lost`] without the lease.
    pub async fn reschedule(
        &self,
        lease: LeaseRef<'_>,
        due_at: i64,
        error: &ErrorInfo,
        now: i64,
    ) -> Result<LeaseOutcome> {
        let result = match &self.inner.backend {
            Backend::Sqlite { group, .. } => {
                let (lease, error) = (queue::OwnedLease::from(lease), error.clone());
                group
                    .write(move |conn| {
                        Box::pin(async move {
                            Queries::<Sqlite>::release_in(
                                conn,
                                lease.as_ref(),
                                due_at,
                                &error,
                                now,
                                false,
                            )
                            .await
                        })
                    })
                    .await
            }
            Backend::Postgres(pool) => {
                let outcome = pg_outcome_group::Outcome::Release {
                    due_at,
                    error: error.clone(),
                    give_back: false,
                };
                self.record_outcome(pool, lease, outcome, now).await
            }
        };
        self.events_written();
        result
    }

    /// Like [`Store::reschedule`], and gives back the attempt the claim counted: for an attempt
    /// that never reached the provider because its plugin had no instance free (back-pressure).
    /// Does nothing and returns [`LeaseOutcome::Lost`] without the lease.
    pub async fn defer(
        &self,
        lease: LeaseRef<'_>,
        due_at: i64,
        error: &ErrorInfo,
        now: i64,
    ) -> Result<LeaseOutcome> {
        let result = match &self.inner.backend {
            Backend::Sqlite { group, .. } => {
                let (lease, error) = (queue::OwnedLease::from(lease), error.clone());
                group
                    .write(move |conn| {
                        Box::pin(async move {
                            Queries::<Sqlite>::release_in(
                                conn,
                                lease.as_ref(),
                                due_at,
                                &error,
                                now,
                                true,
                            )
                            .await
                        })
                    })
                    .await
            }
            Backend::Postgres(pool) => {
                let outcome = pg_outcome_group::Outcome::Release {
                    due_at,
                    error: error.clone(),
                    give_back: true,
                };
                self.record_outcome(pool, lease, outcome, now).await
            }
        };
        self.events_written();
        result
    }

    /// Removes the queue entry and moves the message to `status` (normally `failed` or
    /// `unknown`) by the monotonic rule, recording the error. Does nothing and returns
    /// [`LeaseOutcome::Lost`] without the lease.
    pub async fn finish(
        &self,
        lease: LeaseRef<'_>,
        status: MessageStatus,
        error: &ErrorInfo,
        now: i64,
    ) -> Result<LeaseOutcome> {
        let result = match &self.inner.backend {
            Backend::Sqlite { group, .. } => {
                let (lease, error) = (queue::OwnedLease::from(lease), error.clone());
                group
                    .write(move |conn| {
                        Box::pin(async move {
                            Queries::<Sqlite>::finish_in(conn, lease.as_ref(), status, &error, now)
                                .await
                        })
                    })
                    .await
            }
            Backend::Postgres(pool) => {
                let outcome = pg_outcome_group::Outcome::Finish {
                    status,
                    error: error.clone(),
                };
                self.record_outcome(pool, lease, outcome, now).await
            }
        };
        self.events_written();
        result
    }

    /// PostgreSQL: records an attempt's `outcome` through the outcome lane (in a transaction
    /// with the others waiting), or alone where the store has no lane.
    async fn record_outcome(
        &self,
        pool: &PgPool,
        lease: LeaseRef<'_>,
        outcome: pg_outcome_group::Outcome,
        now: i64,
    ) -> Result<LeaseOutcome> {
        let recorded = pg_outcome_group::Recorded {
            lease: queue::OwnedLease::from(lease),
            outcome,
            now,
        };
        match &self.inner.outcomes {
            Some(lane) => lane.record(recorded).await,
            None => recorded.run_alone(pool).await,
        }
    }

    /// Applies a provider's status report atomically with the monotonic rule
    /// ([`advance_reported`](crate::domain::advance_reported)): an event is
    /// recorded only when the status moves; a reported segment count (as
    /// [`Message::provider_segments`]), price and a missing provider message id are stored either
    /// way. `None` when no message matches.
    ///
    /// Reports are committed in groups with the others waiting, and those about one message
    /// are coalesced (`statuses.rs`); the answer comes once the report's group committed.
    pub async fn apply_status(
        &self,
        tenant: &TenantId,
        update: &StatusUpdate,
    ) -> Result<Option<ApplyResult>> {
        let mut results = self.apply_statuses(tenant, vec![update.clone()]).await;
        results.pop().unwrap_or(Ok(None))
    }

    /// Applies several reports of `tenant` as [`apply_status`](Self::apply_status) would one
    /// after another, in order, handed over together so that those about one message are
    /// coalesced into one apply. One result per report.
    pub async fn apply_statuses(
        &self,
        tenant: &TenantId,
        updates: Vec<StatusUpdate>,
    ) -> Vec<Result<Option<ApplyResult>>> {
        let results = self.inner.statuses.apply(tenant.as_str(), updates).await;
        self.events_written();
        results
    }

    /// Status reports taken, applies run (each one message's reports, coalesced) and batches
    /// committed, since the store opened.
    #[must_use]
    pub fn status_applies(&self) -> (u64, u64, u64) {
        self.inner.statuses.counts()
    }

    /// The messages due to be asked about again because their final status may have been lost:
    /// `sent` or `unknown`, with a provider message id, at most `query.per_provider` per provider
    /// (see [`ReconcileQuery`]), the longest-waiting first.
    pub async fn reconcile_candidates(
        &self,
        query: &ReconcileQuery,
    ) -> Result<Vec<ReconcileCandidate>> {
        match &self.inner.backend {
            Backend::Sqlite { reader, .. } => Queries::reconcile_candidates(reader, query).await,
            Backend::Postgres(pool) => Queries::reconcile_candidates(pool, query).await,
        }
    }

    /// Records that `candidate` is asked about at `now`; `false` when another ask claimed it
    /// first or its status has moved on, in which case the caller must not ask.
    pub async fn claim_reconcile(&self, candidate: &ReconcileCandidate, now: i64) -> Result<bool> {
        match &self.inner.backend {
            Backend::Sqlite { writer, .. } => {
                Queries::claim_reconcile(writer, candidate, now).await
            }
            Backend::Postgres(pool) => Queries::claim_reconcile(pool, candidate, now).await,
        }
    }

    /// Stops reconciling message `id`: its provider said it can never report it, for `reason`.
    pub async fn stop_reconciling(&self, tenant: &TenantId, id: &str, reason: &str) -> Result<()> {
        match &self.inner.backend {
            Backend::Sqlite { writer, .. } => {
                Queries::stop_reconciling(writer, tenant.as_str(), id, reason).await
            }
            Backend::Postgres(pool) => {
                Queries::stop_reconciling(pool, tenant.as_str(), id, reason).await
            }
        }
    }

    /// Reads one message.
    pub async fn get_message(&self, tenant: &TenantId, id: &str) -> Result<Option<Message>> {
        match &self.inner.backend {
            Backend::Sqlite { reader, .. } => {
                Queries::get_message(reader, tenant.as_str(), id).await
            }
            Backend::Postgres(pool) => Queries::get_message(pool, tenant.as_str(), id).await,
        }
    }

    /// Reads the message that `key` created for `tenant` as its `Idempotency-Key`, if any.
    pub async fn message_by_idempotency_key(
        &self,
        tenant: &TenantId,
        key: &str,
    ) -> Result<Option<Message>> {
        match &self.inner.backend {
            Backend::Sqlite { reader, .. } => {
                Queries::message_by_idempotency_key(reader, tenant.as_str(), key).await
            }
            Backend::Postgres(pool) => {
                Queries::message_by_idempotency_key(pool, tenant.as_str(), key).await
            }
        }
    }

    /// Reads a message's status events, oldest first.
    pub async fn message_events(&self, tenant: &TenantId, id: &str) -> Result<Vec<StatusEvent>> {
        match &self.inner.backend {
            Backend::Sqlite { reader, .. } => {
                Queries::message_events(reader, tenant.as_str(), id).await
            }
            Backend::Postgres(pool) => Queries::message_events(pool, tenant.as_str(), id).await,
        }
    }

    /// Lists a tenant's messages newest first, one page at a time (keyset pagination on
    /// `(created_at, id)`, so pages stay stable while messages arrive).
    pub async fn list_messages(
        &self,
        tenant: &TenantId,
        filter: &MessageFilter,
    ) -> Result<Page<Message>> {
        match &self.inner.backend {
            Backend::Sqlite { reader, .. } => {
                Queries::list_messages(reader, tenant.as_str(), filter).await
            }
            Backend::Postgres(pool) => Queries::list_messages(pool, tenant.as_str(), filter).await,
        }
    }

    /// Counts queue entries (leased or not) across all tenants.
    pub async fn count_queue(&self) -> Result<u64> {
        match &self.inner.backend {
            Backend::Sqlite { reader, .. } => Queries::count_queue(reader).await,
            Backend::Postgres(pool) => Queries::count_queue(pool).await,
        }
    }

    /// Returns the earliest time a queue entry becomes claimable, if there is any entry.
    pub async fn next_due_at(&self) -> Result<Option<i64>> {
        match &self.inner.backend {
            Backend::Sqlite { reader, .. } => Queries::next_due_at(reader).await,
            Backend::Postgres(pool) => Queries::next_due_at(pool).await,
        }
    }

    /// Stores an inbound message; `false` when the provider already delivered this one.
    pub async fn record_inbound(&self, inbound: &InboundMessage) -> Result<bool> {
        let result = match &self.inner.backend {
            Backend::Sqlite { writer, .. } => Queries::record_inbound(writer, inbound).await,
            Backend::Postgres(pool) => Queries::record_inbound(pool, inbound).await,
        };
        self.events_written();
        result
    }

    /// Claims the compliance action (opt-out change, confirmation) keyed `key` for inbound
    /// message `inbound_id` of `tenant`; `false` when an earlier delivery already claimed it.
    /// The key is the host's ([`inbound`](crate::pipeline::inbound)), never a plugin's id.
    pub async fn claim_inbound_action(
        &self,
        tenant: &TenantId,
        key: &str,
        inbound_id: &str,
        now: i64,
    ) -> Result<bool> {
        let tenant = tenant.as_str();
        match &self.inner.backend {
            Backend::Sqlite { writer, .. } => {
                Queries::claim_inbound_action(writer, tenant, key, inbound_id, now).await
            }
            Backend::Postgres(pool) => {
                Queries::claim_inbound_action(pool, tenant, key, inbound_id, now).await
            }
        }
    }

    /// Records `change` as an opt-out of its category ([`Category::All`] for everything), with an
    /// audit event; `false` when the number already was opted out of it.
    pub async fn opt_out(&self, change: &OptOutChange) -> Result<bool> {
        let result = match &self.inner.backend {
            Backend::Sqlite { writer, .. } => Queries::opt_out(writer, change).await,
            Backend::Postgres(pool) => Queries::opt_out(pool, change).await,
        };
        self.events_written();
        result
    }

    /// Records `change` as an opt-in: lifts the opt-out of its category ([`Category::All`] lifts
    /// every opt-out), with an audit event; `false` when there was nothing to lift.
    pub async fn opt_in(&self, change: &OptOutChange) -> Result<bool> {
        let result = match &self.inner.backend {
            Backend::Sqlite { writer, .. } => Queries::opt_in(writer, change).await,
            Backend::Postgres(pool) => Queries::opt_in(pool, change).await,
        };
        self.events_written();
        result
    }

    /// Returns whether `phone` may not be sent `category` messages: opted out of that category or
    /// of [`Category::All`].
    pub async fn is_opted_out(
        &self,
        tenant: &TenantId,
        phone: &str,
        category: &Category,
    ) -> Result<bool> {
        match &self.inner.backend {
            Backend::Sqlite {
                reader, lookups, ..
            } => match lookups
                .as_ref()
                .map(|l| l.is_opted_out(tenant.as_str(), phone, category.as_str()))
            {
                Some(Ok(found)) => Ok(found),
                _ => Queries::is_opted_out(reader, tenant.as_str(), phone, category.as_str()).await,
            },
            Backend::Postgres(pool) => {
                Queries::is_opted_out(pool, tenant.as_str(), phone, category.as_str()).await
            }
        }
    }

    /// Reads the audit trail of a number's opt-outs and opt-ins, oldest first.
    pub async fn opt_out_events(&self, tenant: &TenantId, phone: &str) -> Result<Vec<OptOutEvent>> {
        match &self.inner.backend {
            Backend::Sqlite { reader, .. } => {
                Queries::opt_out_events(reader, tenant.as_str(), phone).await
            }
            Backend::Postgres(pool) => Queries::opt_out_events(pool, tenant.as_str(), phone).await,
        }
    }
}
