//! Templates and their immutable versions: create (version 1), look up by id or by name, list
//! with filters and a keyset cursor, change (a new version), roll back (another version made
//! current), soft-delete, and the idempotent seeding of a tenant's default templates.
//!
//! A template row holds a copy of its current version, so reading and rendering a template is
//! one row; `template_versions` holds every version, never updated. A deleted template keeps
//! both (its `deleted_at` is set): it reads as before but cannot change, and its name is free
//! again, since names are unique only among the templates that are not deleted.

use sqlx::{AssertSqlSafe, ColumnIndex, Decode, Executor, Pool, Row as _, Type};

use super::dialect::{Dialect, Queries, Value};
use super::error::{Result, StoreError};
use super::ids::{decode_cursor, encode_cursor};
use super::model::{
    Category, NewTemplate, Page, Template, TemplateChange, TemplateFilter, TemplateVersion,
    TemplateWrite, TenantId,
};
use super::shared::{category, json, page_size, paged, tenant};
use super::{Backend, Store};

/// One template by id, deleted or not.
const SELECT_TEMPLATE: &str = "SELECT * FROM templates WHERE tenant_id = $1 AND id = $2";

impl<DB: Dialect> Queries<DB>
where
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
    for<'a> &'a str: Value<'a, DB> + ColumnIndex<DB::Row>,
    for<'a> Option<&'a str>: Value<'a, DB>,
    String: for<'a> Decode<'a, DB> + Type<DB>,
    i64: for<'a> Value<'a, DB>,
    bool: for<'a> Value<'a, DB>,
    Option<i64>: for<'a> Value<'a, DB>,
    Option<bool>: for<'a> Value<'a, DB>,
{
    fn template_from_row(row: &DB::Row) -> Result<Template> {
        Ok(Template {
            id: row.try_get("id")?,
            tenant_id: tenant(row.try_get("tenant_id")?)?,
            name: row.try_get("name")?,
            category: row
                .try_get::<Option<String>, _>("category")?
                .map(category)
                .transpose()?,
            description: row.try_get("description")?,
            body: row.try_get("body")?,
            variables: json(row.try_get("variables")?, "variables")?,
            is_active: row.try_get("is_active")?,
            version: row.try_get("current_version")?,
            deleted_at: row.try_get("deleted_at")?,
            created_at: row.try_get("created_at")?,
            updated_at: row.try_get("updated_at")?,
        })
    }

    fn version_from_row(row: &DB::Row) -> Result<TemplateVersion> {
        Ok(TemplateVersion {
            template_id: row.try_get("template_id")?,
            version: row.try_get("version")?,
            category: row
                .try_get::<Option<String>, _>("category")?
                .map(category)
                .transpose()?,
            description: row.try_get("description")?,
            body: row.try_get("body")?,
            variables: json(row.try_get("variables")?, "variables")?,
            created_at: row.try_get("created_at")?,
        })
    }

    /// Inserts a template as version 1 (row and version); with `skip_conflicts`, an id or a
    /// live name already taken inserts nothing and returns `None`.
    async fn insert_template(
        conn: &mut DB::Connection,
        new: &NewTemplate,
        skip_conflicts: bool,
    ) -> Result<Option<Template>> {
        let variables = serde_json::Value::from(new.variables.clone()).to_string();
        let insert = if skip_conflicts {
            "INSERT INTO templates (id, tenant_id, name, category, description, body, variables,
                 is_active, current_version, created_at, updated_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 1, $9, $9)
             ON CONFLICT DO NOTHING
             RETURNING *"
        } else {
            "INSERT INTO templates (id, tenant_id, name, category, description, body, variables,
                 is_active, current_version, created_at, updated_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 1, $9, $9)
             RETURNING *"
        };
        let row = sqlx::query(insert)
            .bind(new.id.as_str())
            .bind(new.tenant_id.as_str())
            .bind(new.name.as_str())
            .bind(new.category.as_ref().map(Category::as_str))
            .bind(new.description.as_deref())
            .bind(new.body.as_str())
            .bind(variables.as_str())
            .bind(new.is_active)
            .bind(new.now)
            .fetch_optional(&mut *conn)
            .await
            .map_err(|error| match StoreError::from(error) {
                StoreError::Conflict(_) => {
                    let name = &new.name;
                    StoreError::Conflict(format!("a template named {name:?} already exists"))
                }
                other => other,
            })?;
        let Some(row) = row else {
            return Ok(None);
        };
        let template = Self::template_from_row(&row)?;
        Self::insert_version(&mut *conn, &template).await?;
        Ok(Some(template))
    }

    /// Records `template`'s current content as its version `template.version`.
    async fn insert_version(conn: &mut DB::Connection, template: &Template) -> Result<()> {
        let variables = serde_json::Value::from(template.variables.clone()).to_string();
        sqlx::query(
            "INSERT INTO template_versions (tenant_id, template_id, version, category,
                 description, body, variables, created_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .bind(template.tenant_id.as_str())
        .bind(template.id.as_str())
        .bind(template.version)
        .bind(template.category.as_ref().map(Category::as_str))
        .bind(template.description.as_deref())
        .bind(template.body.as_str())
        .bind(variables.as_str())
        .bind(template.updated_at)
        .execute(&mut *conn)
        .await?;
        Ok(())
    }

    /// Creates a template (version 1); a live name the tenant already uses is a conflict.
    pub(super) async fn create_template(pool: &Pool<DB>, new: &NewTemplate) -> Result<Template> {
        let mut tx = pool.begin_with(DB::BEGIN).await?;
        let template = Self::insert_template(&mut tx, new, false)
            .await?
            .ok_or_else(|| StoreError::Conflict(format!("template {:?}", new.name)))?;
        tx.commit().await?;
        Ok(template)
    }

    /// Creates those of `templates` whose id and name are both free; returns how many it created.
    pub(super) async fn seed_templates(pool: &Pool<DB>, templates: &[NewTemplate]) -> Result<u32> {
        let mut tx = pool.begin_with(DB::BEGIN).await?;
        let mut created = 0;
        for new in templates {
            if Self::insert_template(&mut tx, new, true).await?.is_some() {
                created += 1;
            }
        }
        tx.commit().await?;
        Ok(created)
    }

    /// Reads one template by id, deleted or not.
    pub(super) async fn get_template(
        pool: &Pool<DB>,
        tenant: &str,
        id: &str,
    ) -> Result<Option<Template>> {
        let row = sqlx::query(SELECT_TEMPLATE)
            .bind(tenant)
            .bind(id)
            .fetch_optional(pool)
            .await?;
        row.as_ref().map(Self::template_from_row).transpose()
    }

    /// Finds a template by id (deleted or not), else by the name of a template not deleted.
    pub(super) async fn find_template(
        pool: &Pool<DB>,
        tenant: &str,
        id_or_name: &str,
    ) -> Result<Option<Template>> {
        let row = sqlx::query(
            "SELECT * FROM templates
             WHERE tenant_id = $1 AND (id = $2 OR (name = $2 AND deleted_at IS NULL))
             ORDER BY CASE WHEN id = $2 THEN 0 ELSE 1 END
             LIMIT 1",
        )
        .bind(tenant)
        .bind(id_or_name)
        .fetch_optional(pool)
        .await?;
        row.as_ref().map(Self::template_from_row).transpose()
    }

    /// Lists templates newest first, one keyset page at a time.
    pub(super) async fn list_templates(
        pool: &Pool<DB>,
        tenant: &str,
        filter: &TemplateFilter,
    ) -> Result<Page<Template>> {
        let after = filter.cursor.as_deref().map(decode_cursor).transpose()?;
        let limit = page_size(filter.limit);
        let rows = sqlx::query(
            "SELECT * FROM templates
             WHERE tenant_id = $1
               AND ($2 IS NULL OR category = $2)
               AND ($3 IS NULL OR is_active = $3)
               AND ($4 IS NULL OR name = $4)
               AND ($5 OR deleted_at IS NULL)
               AND ($6 IS NULL OR created_at < $6 OR (created_at = $6 AND id < $7))
             ORDER BY created_at DESC, id DESC
             LIMIT $8",
        )
        .bind(tenant)
        .bind(filter.category.as_ref().map(Category::as_str))
        .bind(filter.is_active)
        .bind(filter.name.as_deref())
        .bind(filter.include_deleted)
        .bind(after.as_ref().map(|(created_at, _)| *created_at))
        .bind(after.as_ref().map(|(_, id)| id.as_str()))
        .bind(i64::from(limit) + 1)
        .fetch_all(pool)
        .await?;
        let items = rows
            .iter()
            .map(Self::template_from_row)
            .collect::<Result<Vec<_>>>()?;
        Ok(paged(items, limit, |last| {
            encode_cursor(last.created_at, &last.id)
        }))
    }

    /// Reads a template for a read-decide-write, locking its row where the backend needs it.
    async fn lock_template(
        conn: &mut DB::Connection,
        tenant: &str,
        id: &str,
    ) -> Result<Option<Template>> {
        let locked = AssertSqlSafe(format!("{SELECT_TEMPLATE}{}", DB::LOCK_ROWS));
        let row = sqlx::query(locked)
            .bind(tenant)
            .bind(id)
            .fetch_optional(&mut *conn)
            .await?;
        row.as_ref().map(Self::template_from_row).transpose()
    }

    /// Writes `template`'s content columns, state and current version.
    async fn write_template(conn: &mut DB::Connection, template: &Template) -> Result<Template> {
        let variables = serde_json::Value::from(template.variables.clone()).to_string();
        let row = sqlx::query(
            "UPDATE templates
             SET category = $3, description = $4, body = $5, variables = $6, is_active = $7,
                 current_version = $8, deleted_at = $9, updated_at = $10
             WHERE tenant_id = $1 AND id = $2
             RETURNING *",
        )
        .bind(template.tenant_id.as_str())
        .bind(template.id.as_str())
        .bind(template.category.as_ref().map(Category::as_str))
        .bind(template.description.as_deref())
        .bind(template.body.as_str())
        .bind(variables.as_str())
        .bind(template.is_active)
        .bind(template.version)
        .bind(template.deleted_at)
        .bind(template.updated_at)
        .fetch_one(&mut *conn)
        .await?;
        Self::template_from_row(&row)
    }

    /// Applies `change`: a changed source, description or category becomes a new version (one
    /// past the highest, even after a roll-back); a change that changes nothing writes nothing.
    pub(super) async fn update_template(
        pool: &Pool<DB>,
        tenant: &str,
        id: &str,
        change: &TemplateChange,
    ) -> Result<TemplateWrite> {
        let mut tx = pool.begin_with(DB::BEGIN).await?;
        let Some(current) = Self::lock_template(&mut tx, tenant, id).await? else {
            return Ok(TemplateWrite::NotFound);
        };
        if current.deleted_at.is_some() {
            return Ok(TemplateWrite::Deleted(current));
        }
        let mut next = current.clone();
        if let Some((body, variables)) = &change.body {
            next.body.clone_from(body);
            next.variables.clone_from(variables);
        }
        if let Some(description) = &change.description {
            next.description.clone_from(description);
        }
        if let Some(category) = &change.category {
            next.category.clone_from(category);
        }
        let new_version = next.body != current.body
            || next.description != current.description
            || next.category != current.category;
        if let Some(is_active) = change.is_active {
            next.is_active = is_active;
        }
        if next == current {
            return Ok(TemplateWrite::Done(current));
        }
        next.updated_at = change.now;
        if new_version {
            let highest: i64 = sqlx::query(
                "SELECT MAX(version) AS highest FROM template_versions
                 WHERE tenant_id = $1 AND template_id = $2",
            )
            .bind(tenant)
            .bind(id)
            .fetch_one(&mut *tx)
            .await?
            .try_get::<Option<i64>, _>("highest")?
            .unwrap_or(0);
            next.version = highest + 1;
            Self::insert_version(&mut tx, &next).await?;
        }
        let written = Self::write_template(&mut tx, &next).await?;
        tx.commit().await?;
        Ok(TemplateWrite::Done(written))
    }

    /// Makes version `version` the current one (a roll-back, or forward again): no version is
    /// written, the template's copy and pointer move.
    pub(super) async fn activate_version(
        pool: &Pool<DB>,
        tenant: &str,
        id: &str,
        version: i64,
        now: i64,
    ) -> Result<TemplateWrite> {
        let mut tx = pool.begin_with(DB::BEGIN).await?;
        let Some(current) = Self::lock_template(&mut tx, tenant, id).await? else {
            return Ok(TemplateWrite::NotFound);
        };
        if current.deleted_at.is_some() {
            return Ok(TemplateWrite::Deleted(current));
        }
        let Some(chosen) = Self::version_in(&mut tx, tenant, id, version).await? else {
            return Ok(TemplateWrite::NoSuchVersion);
        };
        if current.version == chosen.version {
            return Ok(TemplateWrite::Done(current));
        }
        let next = Template {
            category: chosen.category,
            description: chosen.description,
            body: chosen.body,
            variables: chosen.variables,
            version: chosen.version,
            updated_at: now,
            ..current
        };
        let written = Self::write_template(&mut tx, &next).await?;
        tx.commit().await?;
        Ok(TemplateWrite::Done(written))
    }

    /// Marks a template deleted; its row and versions stay.
    pub(super) async fn delete_template(
        pool: &Pool<DB>,
        tenant: &str,
        id: &str,
        now: i64,
    ) -> Result<TemplateWrite> {
        let mut tx = pool.begin_with(DB::BEGIN).await?;
        let Some(current) = Self::lock_template(&mut tx, tenant, id).await? else {
            return Ok(TemplateWrite::NotFound);
        };
        if current.deleted_at.is_some() {
            return Ok(TemplateWrite::Deleted(current));
        }
        let next = Template {
            deleted_at: Some(now),
            updated_at: now,
            ..current
        };
        let written = Self::write_template(&mut tx, &next).await?;
        tx.commit().await?;
        Ok(TemplateWrite::Done(written))
    }

    async fn version_in(
        conn: &mut DB::Connection,
        tenant: &str,
        id: &str,
        version: i64,
    ) -> Result<Option<TemplateVersion>> {
        let row = sqlx::query(
            "SELECT * FROM template_versions
             WHERE tenant_id = $1 AND template_id = $2 AND version = $3",
        )
        .bind(tenant)
        .bind(id)
        .bind(version)
        .fetch_optional(&mut *conn)
        .await?;
        row.as_ref().map(Self::version_from_row).transpose()
    }

    /// Reads one version of a template.
    pub(super) async fn template_version(
        pool: &Pool<DB>,
        tenant: &str,
        id: &str,
        version: i64,
    ) -> Result<Option<TemplateVersion>> {
        let mut conn = pool.acquire().await?;
        Self::version_in(&mut conn, tenant, id, version).await
    }

    /// Reads one page of a template's versions, oldest first.
    pub(super) async fn template_versions(
        pool: &Pool<DB>,
        tenant: &str,
        id: &str,
        limit: Option<u32>,
        cursor: Option<&str>,
    ) -> Result<Page<TemplateVersion>> {
        let after = cursor.map(decode_cursor).transpose()?;
        let limit = page_size(limit);
        let rows = sqlx::query(
            "SELECT * FROM template_versions
             WHERE tenant_id = $1 AND template_id = $2 AND ($3 IS NULL OR version > $3)
             ORDER BY version
             LIMIT $4",
        )
        .bind(tenant)
        .bind(id)
        .bind(after.map(|(version, _)| version))
        .bind(i64::from(limit) + 1)
        .fetch_all(pool)
        .await?;
        let items = rows
            .iter()
            .map(Self::version_from_row)
            .collect::<Result<Vec<_>>>()?;
        Ok(paged(items, limit, |last| {
            encode_cursor(last.version, &last.template_id)
        }))
    }
}

impl Store {
    /// Creates a template as its version 1; a name one of the tenant's templates that is not
    /// deleted already has is a [`StoreError::Conflict`].
    pub async fn create_template(&self, new: &NewTemplate) -> Result<Template> {
        match &self.inner.backend {
            Backend::Sqlite { writer, .. } => Queries::create_template(writer, new).await,
            Backend::Postgres(pool) => Queries::create_template(pool, new).await,
        }
    }

    /// Creates those of `templates` whose id and name are both free, in one transaction, and
    /// returns how many it created: run again, it creates nothing (ids are the caller's, so a
    /// caller that derives them makes seeding idempotent, even after a seeded template was
    /// deleted).
    pub async fn seed_templates(&self, templates: &[NewTemplate]) -> Result<u32> {
        match &self.inner.backend {
            Backend::Sqlite { writer, .. } => Queries::seed_templates(writer, templates).await,
            Backend::Postgres(pool) => Queries::seed_templates(pool, templates).await,
        }
    }

    /// Reads one template by id, deleted or not.
    pub async fn get_template(&self, tenant: &TenantId, id: &str) -> Result<Option<Template>> {
        match &self.inner.backend {
            Backend::Sqlite { reader, .. } => {
                Queries::get_template(reader, tenant.as_str(), id).await
            }
            Backend::Postgres(pool) => Queries::get_template(pool, tenant.as_str(), id).await,
        }
    }

    /// Finds a template by id (deleted or not), else by the name of one that is not deleted.
    pub async fn find_template(
        &self,
        tenant: &TenantId,
        id_or_name: &str,
    ) -> Result<Option<Template>> {
        match &self.inner.backend {
            Backend::Sqlite { reader, .. } => {
                Queries::find_template(reader, tenant.as_str(), id_or_name).await
            }
            Backend::Postgres(pool) => {
                Queries::find_template(pool, tenant.as_str(), id_or_name).await
            }
        }
    }

    /// Lists a tenant's templates newest first, one page at a time (keyset pagination on
    /// `(created_at, id)`).
    pub async fn list_templates(
        &self,
        tenant: &TenantId,
        filter: &TemplateFilter,
    ) -> Result<Page<Template>> {
        match &self.inner.backend {
            Backend::Sqlite { reader, .. } => {
                Queries::list_templates(reader, tenant.as_str(), filter).await
            }
            Backend::Postgres(pool) => Queries::list_templates(pool, tenant.as_str(), filter).await,
        }
    }

    /// Changes a template; a changed source, description or category is a new version.
    pub async fn update_template(
        &self,
        tenant: &TenantId,
        id: &str,
        change: &TemplateChange,
    ) -> Result<TemplateWrite> {
        match &self.inner.backend {
            Backend::Sqlite { writer, .. } => {
                Queries::update_template(writer, tenant.as_str(), id, change).await
            }
            Backend::Postgres(pool) => {
                Queries::update_template(pool, tenant.as_str(), id, change).await
            }
        }
    }

    /// Makes version `version` of a template the current one.
    pub async fn activate_template_version(
        &self,
        tenant: &TenantId,
        id: &str,
        version: i64,
        now: i64,
    ) -> Result<TemplateWrite> {
        match &self.inner.backend {
            Backend::Sqlite { writer, .. } => {
                Queries::activate_version(writer, tenant.as_str(), id, version, now).await
            }
            Backend::Postgres(pool) => {
                Queries::activate_version(pool, tenant.as_str(), id, version, now).await
            }
        }
    }

    /// Soft-deletes a template: it stays readable, with its versions.
    pub async fn delete_template(
        &self,
        tenant: &TenantId,
        id: &str,
        now: i64,
    ) -> Result<TemplateWrite> {
        match &self.inner.backend {
            Backend::Sqlite { writer, .. } => {
                Queries::delete_template(writer, tenant.as_str(), id, now).await
            }
            Backend::Postgres(pool) => {
                Queries::delete_template(pool, tenant.as_str(), id, now).await
            }
        }
    }

    /// Reads one version of a template.
    pub async fn template_version(
        &self,
        tenant: &TenantId,
        id: &str,
        version: i64,
    ) -> Result<Option<TemplateVersion>> {
        match &self.inner.backend {
            Backend::Sqlite { reader, .. } => {
                Queries::template_version(reader, tenant.as_str(), id, version).await
            }
            Backend::Postgres(pool) => {
                Queries::template_version(pool, tenant.as_str(), id, version).await
            }
        }
    }

    /// Reads one page of a template's versions, oldest first; a cursor this store did not
    /// make is [`StoreError::InvalidCursor`].
    pub async fn template_versions(
        &self,
        tenant: &TenantId,
        id: &str,
        limit: Option<u32>,
        cursor: Option<&str>,
    ) -> Result<Page<TemplateVersion>> {
        let tenant = tenant.as_str();
        match &self.inner.backend {
            Backend::Sqlite { reader, .. } => {
                Queries::template_versions(reader, tenant, id, limit, cursor).await
            }
            Backend::Postgres(pool) => {
                Queries::template_versions(pool, tenant, id, limit, cursor).await
            }
        }
    }
}
