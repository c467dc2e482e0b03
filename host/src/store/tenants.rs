//! Tenants and what belongs to them alone: their status, their API keys (stored as hashes), their
//! settings document and the numbers they own, which route inbound messages to them.

use sqlx::{ColumnIndex, Decode, Executor, Pool, Row as _, Type};

use super::dialect::{Dialect, Queries, Value};
use super::error::{Result, StoreError};
use super::model::{ApiKey, NewApiKey, StoredSettings, Tenant, TenantStatus};
use super::shared::tenant;
use crate::domain::TenantId;

const SELECT_TENANT: &str = "SELECT id, name, status, created_at FROM tenants";
/// A tenant by id (also read by the SQLite lookups, `sqlite_lookup.rs`).
pub(super) const TENANT_BY_ID: &str =
    "SELECT id, name, status, created_at FROM tenants WHERE id = $1";
/// The tenant of an unrevoked API key, by the key's hash (also read by the SQLite lookups).
pub(super) const TENANT_FOR_KEY: &str =
    "SELECT t.id, t.name, t.status, t.created_at FROM api_keys k
     JOIN tenants t ON t.id = k.tenant_id
     WHERE k.key_hash = $1 AND k.revoked_at IS NULL";
/// The tenant and provider of a message (also read by the SQLite lookups).
pub(super) const MESSAGE_OWNER: &str = "SELECT tenant_id, provider FROM messages WHERE id = $1";

impl<DB: Dialect> Queries<DB>
where
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
    for<'a> &'a str: Value<'a, DB> + ColumnIndex<DB::Row>,
    for<'a> Option<&'a str>: Value<'a, DB>,
    String: for<'a> Decode<'a, DB> + Type<DB>,
    i64: for<'a> Value<'a, DB>,
    Option<i64>: for<'a> Value<'a, DB>,
{
    fn tenant_from_row(row: &DB::Row) -> Result<Tenant> {
        let status: String = row.try_get("status")?;
        Ok(Tenant {
            id: tenant(row.try_get("id")?)?,
            name: row.try_get("name")?,
            status: TenantStatus::parse(&status)
                .ok_or_else(|| StoreError::Corrupt(format!("tenant status {status:?}")))?,
            created_at: row.try_get("created_at")?,
        })
    }

    fn api_key_from_row(row: &DB::Row) -> Result<ApiKey> {
        Ok(ApiKey {
            id: row.try_get("id")?,
            tenant_id: tenant(row.try_get("tenant_id")?)?,
            prefix: row.try_get("prefix")?,
            created_at: row.try_get("created_at")?,
            revoked_at: row.try_get("revoked_at")?,
        })
    }

    /// Creates a tenant; an existing id is a conflict.
    pub(super) async fn create_tenant(pool: &Pool<DB>, tenant: &Tenant) -> Result<()> {
        sqlx::query("INSERT INTO tenants (id, name, status, created_at) VALUES ($1, $2, $3, $4)")
            .bind(tenant.id.as_str())
            .bind(tenant.name.as_str())
            .bind(tenant.status.as_str())
            .bind(tenant.created_at)
            .execute(pool)
            .await?;
        Ok(())
    }

    /// Reads a tenant.
    pub(super) async fn get_tenant(pool: &Pool<DB>, id: &str) -> Result<Option<Tenant>> {
        let row = sqlx::query(TENANT_BY_ID)
            .bind(id)
            .fetch_optional(pool)
            .await?;
        row.as_ref().map(Self::tenant_from_row).transpose()
    }

    /// Lists every tenant, oldest first.
    pub(super) async fn list_tenants(pool: &Pool<DB>) -> Result<Vec<Tenant>> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "{SELECT_TENANT} ORDER BY created_at, id"
        )))
        .fetch_all(pool)
        .await?;
        rows.iter().map(Self::tenant_from_row).collect()
    }

    /// Sets a tenant's status; `None` when there is no such tenant.
    pub(super) async fn set_tenant_status(
        pool: &Pool<DB>,
        id: &str,
        status: TenantStatus,
    ) -> Result<Option<Tenant>> {
        let row = sqlx::query(
            "UPDATE tenants SET status = $2 WHERE id = $1 RETURNING id, name, status, created_at",
        )
        .bind(id)
        .bind(status.as_str())
        .fetch_optional(pool)
        .await?;
        row.as_ref().map(Self::tenant_from_row).transpose()
    }

    /// Stores a new API key's hash.
    pub(super) async fn create_api_key(pool: &Pool<DB>, key: &NewApiKey) -> Result<ApiKey> {
        let row = sqlx::query(
            "INSERT INTO api_keys (id, tenant_id, prefix, key_hash, created_at)
             VALUES ($1, $2, $3, $4, $5)
             RETURNING id, tenant_id, prefix, created_at, revoked_at",
        )
        .bind(key.id.as_str())
        .bind(key.tenant_id.as_str())
        .bind(key.prefix.as_str())
        .bind(key.key_hash.as_str())
        .bind(key.now)
        .fetch_one(pool)
        .await?;
        Self::api_key_from_row(&row)
    }

    /// Lists a tenant's keys, oldest first, revoked ones included.
    pub(super) async fn list_api_keys(pool: &Pool<DB>, tenant: &str) -> Result<Vec<ApiKey>> {
        let rows = sqlx::query(
            "SELECT id, tenant_id, prefix, created_at, revoked_at FROM api_keys
             WHERE tenant_id = $1 ORDER BY created_at, id",
        )
        .bind(tenant)
        .fetch_all(pool)
        .await?;
        rows.iter().map(Self::api_key_from_row).collect()
    }

    /// Revokes a tenant's key; `false` when it has no such key or it was already revoked.
    pub(super) async fn revoke_api_key(
        pool: &Pool<DB>,
        tenant: &str,
        key_id: &str,
        now: i64,
    ) -> Result<bool> {
        let revoked = sqlx::query(
            "UPDATE api_keys SET revoked_at = $3
             WHERE tenant_id = $1 AND id = $2 AND revoked_at IS NULL
             RETURNING id",
        )
        .bind(tenant)
        .bind(key_id)
        .bind(now)
        .fetch_optional(pool)
        .await?;
        Ok(revoked.is_some())
    }

    /// The tenant (and its status) that the unrevoked key with this hash belongs to.
    pub(super) async fn tenant_for_key(pool: &Pool<DB>, key_hash: &str) -> Result<Option<Tenant>> {
        let row = sqlx::query(TENANT_FOR_KEY)
            .bind(key_hash)
            .fetch_optional(pool)
            .await?;
        row.as_ref().map(Self::tenant_from_row).transpose()
    }

    /// Replaces a tenant's settings and the numbers it owns, in one transaction. A number another
    /// tenant owns is a conflict, and nothing changes.
    pub(super) async fn put_tenant_settings(
        pool: &Pool<DB>,
        tenant: &str,
        settings: &str,
        numbers: &[String],
        now: i64,
    ) -> Result<()> {
        let mut tx = pool.begin_with(DB::BEGIN).await?;
        sqlx::query(
            "INSERT INTO tenant_settings (tenant_id, settings, updated_at) VALUES ($1, $2, $3)
             ON CONFLICT (tenant_id) DO UPDATE SET settings = $2, updated_at = $3",
        )
        .bind(tenant)
        .bind(settings)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        sqlx::query("DELETE FROM tenant_numbers WHERE tenant_id = $1")
            .bind(tenant)
            .execute(&mut *tx)
            .await?;
        for number in numbers {
            sqlx::query("INSERT INTO tenant_numbers (phone_number, tenant_id) VALUES ($1, $2)")
                .bind(number.as_str())
                .bind(tenant)
                .execute(&mut *tx)
                .await
                .map_err(|error| match StoreError::from(error) {
                    StoreError::Conflict(_) => {
                        StoreError::Conflict(format!("{number} belongs to another tenant"))
                    }
                    other => other,
                })?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Reads a tenant's settings document.
    pub(super) async fn get_tenant_settings(
        pool: &Pool<DB>,
        tenant: &str,
    ) -> Result<Option<StoredSettings>> {
        let row =
            sqlx::query("SELECT settings, updated_at FROM tenant_settings WHERE tenant_id = $1")
                .bind(tenant)
                .fetch_optional(pool)
                .await?;
        row.map(|row| {
            Ok(StoredSettings {
                settings: row.try_get("settings")?,
                updated_at: row.try_get("updated_at")?,
            })
        })
        .transpose()
    }

    /// The tenant that owns `number`.
    pub(super) async fn tenant_for_number(
        pool: &Pool<DB>,
        number: &str,
    ) -> Result<Option<TenantId>> {
        let row = sqlx::query("SELECT tenant_id FROM tenant_numbers WHERE phone_number = $1")
            .bind(number)
            .fetch_optional(pool)
            .await?;
        row.map(|row| tenant(row.try_get("tenant_id")?)).transpose()
    }

    /// The tenant that owns message `id` (message ids are unique across tenants) and the
    /// provider it is sent through.
    pub(super) async fn message_owner(
        pool: &Pool<DB>,
        id: &str,
    ) -> Result<Option<(TenantId, String)>> {
        let row = sqlx::query(MESSAGE_OWNER)
            .bind(id)
            .fetch_optional(pool)
            .await?;
        row.map(|row| Ok((tenant(row.try_get("tenant_id")?)?, row.try_get("provider")?)))
            .transpose()
    }
}
