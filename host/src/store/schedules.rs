//! Recurring schedules: their rows, keyset-paginated listing, and the three steps of firing one
//! fire time exactly once (see migration 0009):
//!
//! 1. [`Store::lease_fire`]: a conditional update takes the fire time (`next_fire_at = due`) for
//!    a while, so that processes sharing a database do not all do the work at once;
//! 2. the pipeline creates the fire time's messages, each under an idempotency key derived from
//!    the schedule, the fire time and the recipient, so repeating this step creates nothing new;
//! 3. [`Store::finish_fire`]: `next_fire_at` moves on, only if it still reads `due`.
//!
//! A process that dies between 1 and 3 loses nothing: its lease expires and the fire time is
//! taken again; the messages already created are found by their keys.

use serde::Serialize;
use sqlx::{ColumnIndex, Decode, Executor, Pool, Row as _, Type};

use super::dialect::{Dialect, Queries, Value};
use super::error::Result;
use super::ids::{decode_cursor, encode_cursor};
use super::model::{Category, Page, TenantId};
use super::shared::{category, json, page_size, paged, tenant};
use super::{Backend, Store};

/// A recurring schedule.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Schedule {
    /// The schedule id (`sch_…`).
    pub id: String,
    /// The owning tenant.
    pub tenant_id: TenantId,
    /// A name for people.
    pub name: String,
    /// The cron expression, as given.
    pub cron: String,
    /// The IANA time zone the expression is read in.
    pub timezone: String,
    /// The literal text, when not using a template.
    pub message: Option<String>,
    /// The template to render.
    pub template_id: Option<String>,
    /// The template's variables.
    pub template_variables: serde_json::Map<String, serde_json::Value>,
    /// The recipients, E.164.
    pub recipients: Option<Vec<String>>,
    /// The bulk batch whose recipients it sends to, instead of `recipients`.
    pub batch_id: Option<String>,
    /// The category of its messages; `None` takes the template's.
    pub category: Option<Category>,
    /// Whether a fire time missed by downtime fires late (once) or is skipped.
    pub catch_up: bool,
    /// Whether it is paused.
    pub paused: bool,
    /// The next fire time not yet processed (UTC ms); `None` while paused or when the
    /// expression has no more.
    pub next_fire_at: Option<i64>,
    /// The last fire time whose messages were created.
    pub last_fired_at: Option<i64>,
    /// When it was created.
    pub created_at: i64,
    /// When it last changed.
    pub updated_at: i64,
}

/// A change to a schedule's timing; the rest of a schedule is fixed at creation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScheduleTiming {
    /// The cron expression.
    pub cron: String,
    /// The IANA time zone.
    pub timezone: String,
    /// Whether it is paused.
    pub paused: bool,
    /// The next fire time (`None` while paused).
    pub next_fire_at: Option<i64>,
}

impl<DB: Dialect> Queries<DB>
where
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
    for<'a> &'a str: Value<'a, DB> + ColumnIndex<DB::Row>,
    for<'a> Option<&'a str>: Value<'a, DB>,
    String: for<'a> Decode<'a, DB> + Type<DB>,
    i32: for<'a> Value<'a, DB>,
    i64: for<'a> Value<'a, DB>,
    Option<i32>: for<'a> Value<'a, DB>,
    Option<i64>: for<'a> Value<'a, DB>,
{
    fn schedule_from_row(row: &DB::Row) -> Result<Schedule> {
        let variables: String = row.try_get("template_variables")?;
        let recipients: Option<String> = row.try_get("recipients")?;
        let category_name: Option<String> = row.try_get("category")?;
        let catch_up: i32 = row.try_get("catch_up")?;
        let paused: i32 = row.try_get("paused")?;
        Ok(Schedule {
            id: row.try_get("id")?,
            tenant_id: tenant(row.try_get("tenant_id")?)?,
            name: row.try_get("name")?,
            cron: row.try_get("cron")?,
            timezone: row.try_get("timezone")?,
            message: row.try_get("message")?,
            template_id: row.try_get("template_id")?,
            template_variables: json(&variables, "template_variables")?,
            recipients: recipients
                .map(|text| json(&text, "recipients"))
                .transpose()?,
            batch_id: row.try_get("batch_id")?,
            category: category_name.map(category).transpose()?,
            catch_up: catch_up != 0,
            paused: paused != 0,
            next_fire_at: row.try_get("next_fire_at")?,
            last_fired_at: row.try_get("last_fired_at")?,
            created_at: row.try_get("created_at")?,
            updated_at: row.try_get("updated_at")?,
        })
    }

    async fn create_schedule(pool: &Pool<DB>, schedule: &Schedule) -> Result<()> {
        let variables = serde_json::Value::Object(schedule.template_variables.clone()).to_string();
        let recipients = schedule
            .recipients
            .as_ref()
            .map(|list| serde_json::json!(list).to_string());
        sqlx::query(
            "INSERT INTO schedules (id, tenant_id, name, cron, timezone, message, template_id,
                 template_variables, recipients, batch_id, category, catch_up, paused,
                 next_fire_at, created_at, updated_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $15)",
        )
        .bind(schedule.id.as_str())
        .bind(schedule.tenant_id.as_str())
        .bind(schedule.name.as_str())
        .bind(schedule.cron.as_str())
        .bind(schedule.timezone.as_str())
        .bind(schedule.message.as_deref())
        .bind(schedule.template_id.as_deref())
        .bind(variables.as_str())
        .bind(recipients.as_deref())
        .bind(schedule.batch_id.as_deref())
        .bind(schedule.category.as_ref().map(Category::as_str))
        .bind(i32::from(schedule.catch_up))
        .bind(i32::from(schedule.paused))
        .bind(schedule.next_fire_at)
        .bind(schedule.created_at)
        .execute(pool)
        .await?;
        Ok(())
    }

    async fn get_schedule(pool: &Pool<DB>, tenant: &str, id: &str) -> Result<Option<Schedule>> {
        let row = sqlx::query("SELECT * FROM schedules WHERE tenant_id = $1 AND id = $2")
            .bind(tenant)
            .bind(id)
            .fetch_optional(pool)
            .await?;
        row.as_ref().map(Self::schedule_from_row).transpose()
    }

    async fn list_schedules(
        pool: &Pool<DB>,
        tenant: &str,
        limit: Option<u32>,
        cursor: Option<&str>,
    ) -> Result<Page<Schedule>> {
        let after = cursor.map(decode_cursor).transpose()?;
        let limit = page_size(limit);
        let rows = sqlx::query(
            "SELECT * FROM schedules
             WHERE tenant_id = $1
               AND ($2 IS NULL OR created_at < $2 OR (created_at = $2 AND id < $3))
             ORDER BY created_at DESC, id DESC
             LIMIT $4",
        )
        .bind(tenant)
        .bind(after.as_ref().map(|(created_at, _)| *created_at))
        .bind(after.as_ref().map(|(_, id)| id.as_str()))
        .bind(i64::from(limit) + 1)
        .fetch_all(pool)
        .await?;
        let items = rows
            .iter()
            .map(Self::schedule_from_row)
            .collect::<Result<Vec<_>>>()?;
        Ok(paged(items, limit, |last| {
            encode_cursor(last.created_at, &last.id)
        }))
    }

    async fn update_schedule_timing(
        pool: &Pool<DB>,
        tenant: &str,
        id: &str,
        timing: &ScheduleTiming,
        now: i64,
    ) -> Result<Option<Schedule>> {
        // A new timing drops a lease held on the old next fire time: that fire's `finish_fire`
        // then finds `next_fire_at` changed and leaves the new one alone.
        let row = sqlx::query(
            "UPDATE schedules
             SET cron = $3, timezone = $4, paused = $5, next_fire_at = $6,
                 lease_owner = NULL, lease_until = NULL, updated_at = $7
             WHERE tenant_id = $1 AND id = $2
             RETURNING *",
        )
        .bind(tenant)
        .bind(id)
        .bind(timing.cron.as_str())
        .bind(timing.timezone.as_str())
        .bind(i32::from(timing.paused))
        .bind(timing.next_fire_at)
        .bind(now)
        .fetch_optional(pool)
        .await?;
        row.as_ref().map(Self::schedule_from_row).transpose()
    }

    async fn delete_schedule(pool: &Pool<DB>, tenant: &str, id: &str) -> Result<bool> {
        let deleted =
            sqlx::query("DELETE FROM schedules WHERE tenant_id = $1 AND id = $2 RETURNING id")
                .bind(tenant)
                .bind(id)
                .fetch_optional(pool)
                .await?;
        Ok(deleted.is_some())
    }

    async fn due_schedules(pool: &Pool<DB>, now: i64, limit: u32) -> Result<Vec<Schedule>> {
        // The scheduler serves every tenant, like the queue's claim; a suspended tenant's
        // schedules wait.
        let rows = sqlx::query(
            "SELECT * FROM schedules
             WHERE next_fire_at IS NOT NULL AND next_fire_at <= $1 AND paused = 0
               AND (lease_until IS NULL OR lease_until <= $1)
               AND tenant_id NOT IN (SELECT id FROM tenants WHERE status = 'suspended')
             ORDER BY next_fire_at
             LIMIT $2",
        )
        .bind(now)
        .bind(i64::from(limit))
        .fetch_all(pool)
        .await?;
        rows.iter().map(Self::schedule_from_row).collect()
    }

    async fn lease_fire(
        pool: &Pool<DB>,
        schedule: &Schedule,
        due: i64,
        owner: &str,
        until: i64,
        now: i64,
    ) -> Result<bool> {
        let leased = sqlx::query(
            "UPDATE schedules SET lease_owner = $4, lease_until = $5
             WHERE tenant_id = $1 AND id = $2 AND next_fire_at = $3 AND paused = 0
               AND (lease_until IS NULL OR lease_until <= $6)
             RETURNING id",
        )
        .bind(schedule.tenant_id.as_str())
        .bind(schedule.id.as_str())
        .bind(due)
        .bind(owner)
        .bind(until)
        .bind(now)
        .fetch_optional(pool)
        .await?;
        Ok(leased.is_some())
    }

    async fn finish_fire(
        pool: &Pool<DB>,
        schedule: &Schedule,
        due: i64,
        owner: &str,
        next: Option<i64>,
        fired: bool,
        now: i64,
    ) -> Result<bool> {
        let finished = sqlx::query(
            "UPDATE schedules
             SET next_fire_at = $5, last_fired_at = COALESCE($6, last_fired_at),
                 lease_owner = NULL, lease_until = NULL, updated_at = $7
             WHERE tenant_id = $1 AND id = $2 AND next_fire_at = $3 AND lease_owner = $4
             RETURNING id",
        )
        .bind(schedule.tenant_id.as_str())
        .bind(schedule.id.as_str())
        .bind(due)
        .bind(owner)
        .bind(next)
        .bind(fired.then_some(due))
        .bind(now)
        .fetch_optional(pool)
        .await?;
        Ok(finished.is_some())
    }
}

impl Store {
    /// Stores a new schedule.
    pub async fn create_schedule(&self, schedule: &Schedule) -> Result<()> {
        match &self.inner.backend {
            Backend::Sqlite { writer, .. } => Queries::create_schedule(writer, schedule).await,
            Backend::Postgres(pool) => Queries::create_schedule(pool, schedule).await,
        }
    }

    /// Reads one schedule.
    pub async fn get_schedule(&self, tenant: &TenantId, id: &str) -> Result<Option<Schedule>> {
        match &self.inner.backend {
            Backend::Sqlite { reader, .. } => {
                Queries::get_schedule(reader, tenant.as_str(), id).await
            }
            Backend::Postgres(pool) => Queries::get_schedule(pool, tenant.as_str(), id).await,
        }
    }

    /// Lists a tenant's schedules newest first, one keyset page at a time (`limit` 50 by
    /// default, at most 500; `cursor` from the previous page). A cursor that does not decode is
    /// [`StoreError::InvalidCursor`](super::StoreError::InvalidCursor).
    pub async fn list_schedules(
        &self,
        tenant: &TenantId,
        limit: Option<u32>,
        cursor: Option<&str>,
    ) -> Result<Page<Schedule>> {
        let tenant = tenant.as_str();
        match &self.inner.backend {
            Backend::Sqlite { reader, .. } => {
                Queries::list_schedules(reader, tenant, limit, cursor).await
            }
            Backend::Postgres(pool) => Queries::list_schedules(pool, tenant, limit, cursor).await,
        }
    }

    /// Replaces a schedule's timing (cron, time zone, paused, next fire time); `None` when
    /// the tenant has no such schedule.
    pub async fn update_schedule_timing(
        &self,
        tenant: &TenantId,
        id: &str,
        timing: &ScheduleTiming,
        now: i64,
    ) -> Result<Option<Schedule>> {
        let tenant = tenant.as_str();
        match &self.inner.backend {
            Backend::Sqlite { writer, .. } => {
                Queries::update_schedule_timing(writer, tenant, id, timing, now).await
            }
            Backend::Postgres(pool) => {
                Queries::update_schedule_timing(pool, tenant, id, timing, now).await
            }
        }
    }

    /// Deletes a schedule; `false` when the tenant has no such schedule. Messages it already
    /// created are kept.
    pub async fn delete_schedule(&self, tenant: &TenantId, id: &str) -> Result<bool> {
        match &self.inner.backend {
            Backend::Sqlite { writer, .. } => {
                Queries::delete_schedule(writer, tenant.as_str(), id).await
            }
            Backend::Postgres(pool) => Queries::delete_schedule(pool, tenant.as_str(), id).await,
        }
    }

    /// Up to `limit` unpaused schedules, of every active tenant, whose next fire time has come
    /// and is not leased, the longest-waiting first.
    pub async fn due_schedules(&self, now: i64, limit: u32) -> Result<Vec<Schedule>> {
        match &self.inner.backend {
            Backend::Sqlite { reader, .. } => Queries::due_schedules(reader, now, limit).await,
            Backend::Postgres(pool) => Queries::due_schedules(pool, now, limit).await,
        }
    }

    /// Takes fire time `due` of `schedule` for `owner` until `until`; `false` when it is no
    /// longer the schedule's next fire time, or another lease on it has not expired.
    pub async fn lease_fire(
        &self,
        schedule: &Schedule,
        due: i64,
        owner: &str,
        until: i64,
        now: i64,
    ) -> Result<bool> {
        match &self.inner.backend {
            Backend::Sqlite { writer, .. } => {
                Queries::lease_fire(writer, schedule, due, owner, until, now).await
            }
            Backend::Postgres(pool) => {
                Queries::lease_fire(pool, schedule, due, owner, until, now).await
            }
        }
    }

    /// Moves `schedule` past fire time `due` to `next` and releases `owner`'s lease, recording
    /// `due` as fired when `fired`; `false` (and no change) when the lease was lost or the
    /// schedule changed meanwhile.
    pub async fn finish_fire(
        &self,
        schedule: &Schedule,
        due: i64,
        owner: &str,
        next: Option<i64>,
        fired: bool,
        now: i64,
    ) -> Result<bool> {
        match &self.inner.backend {
            Backend::Sqlite { writer, .. } => {
                Queries::finish_fire(writer, schedule, due, owner, next, fired, now).await
            }
            Backend::Postgres(pool) => {
                Queries::finish_fire(pool, schedule, due, owner, next, fired, now).await
            }
        }
    }
}
