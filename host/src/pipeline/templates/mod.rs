//! Managing a tenant's templates: create, read, list, change (each change of the text,
//! description or category is a new, immutable version), roll back to an earlier version,
//! soft-delete, preview ([`preview`]), and the six defaults every tenant starts with
//! ([`defaults`]). Rendering one for a send is step 2, [`super::render`].
//!
//! Routes name a template by id or by name, as sends do: an id finds it even once deleted (its
//! history stays readable), a name only while it is not deleted (the name is then free again).
//!
//! Versions: a template starts at version 1; a change that alters its text, description or
//! category writes version n+1 (n the highest so far) and makes it current; `is_active` alone
//! writes no version. Rolling back does not copy: it moves the template's `current_version`
//! pointer to an existing version, which stays as it was, so a message's `(template_id,
//! template_version)` always names the exact text it was rendered from. A later change still
//! writes highest+1.

pub mod defaults;
pub mod preview;

use super::Pipeline;
use super::error::{ErrorCode, PipelineError, Result};
use super::read::not_found;
use crate::domain::{Category, TenantId};
use crate::store::{
    NewTemplate, Page, StoreError, Template, TemplateChange, TemplateFilter, TemplateVersion,
    TemplateWrite, new_id,
};

/// The longest template source accepted, in characters (a rendered message's limit).
const MAX_TEMPLATE_CHARS: usize = super::count::MAX_BODY_CHARS;
/// The longest template name accepted, in characters.
const MAX_NAME_CHARS: usize = 128;
/// The longest description accepted, in characters.
const MAX_DESCRIPTION_CHARS: usize = 1024;

/// A template to create.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TemplateDraft {
    /// Its name, unique among the tenant's templates that are not deleted.
    pub name: String,
    /// The category of messages sent from it.
    pub category: Option<Category>,
    /// A description for people.
    pub description: Option<String>,
    /// The source, e.g. `Hi {{customer_name}}`.
    pub body: String,
    /// Whether it may be used.
    pub is_active: bool,
}

/// A change to a template; `None` leaves a field as it is.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TemplateEdit {
    /// A new source (validated by the renderer).
    pub body: Option<String>,
    /// A new description; `Some(None)` removes it.
    pub description: Option<Option<String>>,
    /// A new category; `Some(None)` removes it.
    pub category: Option<Option<Category>>,
    /// Activates or deactivates the template (writes no version).
    pub is_active: Option<bool>,
}

/// Validates `draft` with the renderer plugin (which also lists its variables) and stores it as
/// version 1.
pub async fn create(
    pipeline: &Pipeline,
    tenant: &TenantId,
    draft: TemplateDraft,
) -> Result<Template> {
    refuse_nul("name", &draft.name)?;
    let name = draft.name.trim();
    if name.is_empty() || name.chars().count() > MAX_NAME_CHARS {
        return Err(PipelineError::new(
            ErrorCode::InvalidField,
            format!("name must be 1 to {MAX_NAME_CHARS} characters"),
        ));
    }
    if let Some(description) = &draft.description {
        check_description(description)?;
    }
    let variables = check_body(pipeline, tenant, &draft.body).await?;
    let new = NewTemplate {
        id: new_id("tpl"),
        tenant_id: tenant.clone(),
        name: name.to_owned(),
        category: draft.category,
        description: draft.description,
        body: draft.body,
        variables,
        is_active: draft.is_active,
        now: pipeline.now(),
    };
    match pipeline.store().create_template(&new).await {
        Ok(template) => Ok(template),
        Err(StoreError::Conflict(_)) => Err(PipelineError::new(
            ErrorCode::TemplateExists,
            format!("a template named `{}` already exists", new.name),
        )),
        Err(e) => Err(e.into()),
    }
}

/// The template `id_or_name` of `tenant`: by id even once deleted, by name while not deleted.
pub async fn get(pipeline: &Pipeline, tenant: &TenantId, id_or_name: &str) -> Result<Template> {
    let missing = || not_found(ErrorCode::TemplateNotFound, "template", id_or_name);
    if id_or_name.contains('\0') {
        return Err(missing());
    }
    pipeline
        .store()
        .find_template(tenant, id_or_name)
        .await?
        .ok_or_else(missing)
}

/// One page of `tenant`'s templates, newest first; deleted ones only when the filter asks.
pub async fn list(
    pipeline: &Pipeline,
    tenant: &TenantId,
    filter: &TemplateFilter,
) -> Result<Page<Template>> {
    let texts = [&filter.name, &filter.cursor];
    if texts
        .iter()
        .any(|t| t.as_deref().is_some_and(|t| t.contains('\0')))
    {
        return Err(PipelineError::new(
            ErrorCode::InvalidQuery,
            "a filter contains a NUL character",
        ));
    }
    match pipeline.store().list_templates(tenant, filter).await {
        Ok(page) => Ok(page),
        Err(StoreError::InvalidCursor) => Err(PipelineError::new(
            ErrorCode::InvalidQuery,
            "the cursor is not valid",
        )),
        Err(e) => Err(e.into()),
    }
}

/// Applies `edit` to the template `id_or_name`: a changed text, description or category
/// becomes its next version; a deleted template cannot change (`template_deleted`).
pub async fn update(
    pipeline: &Pipeline,
    tenant: &TenantId,
    id_or_name: &str,
    edit: TemplateEdit,
) -> Result<Template> {
    let template = get(pipeline, tenant, id_or_name).await?;
    if let Some(Some(description)) = &edit.description {
        check_description(description)?;
    }
    let body = match edit.body {
        Some(body) => {
            let variables = check_body(pipeline, tenant, &body).await?;
            Some((body, variables))
        }
        None => None,
    };
    let change = TemplateChange {
        body,
        description: edit.description,
        category: edit.category,
        is_active: edit.is_active,
        now: pipeline.now(),
    };
    let outcome = pipeline
        .store()
        .update_template(tenant, &template.id, &change)
        .await?;
    written(outcome, &template)
}

/// Makes version `version` of the template `id_or_name` its current one (a roll-back).
pub async fn activate(
    pipeline: &Pipeline,
    tenant: &TenantId,
    id_or_name: &str,
    version: i64,
) -> Result<Template> {
    let template = get(pipeline, tenant, id_or_name).await?;
    let outcome = pipeline
        .store()
        .activate_template_version(tenant, &template.id, version, pipeline.now())
        .await?;
    match outcome {
        TemplateWrite::NoSuchVersion => Err(PipelineError::new(
            ErrorCode::TemplateVersionNotFound,
            format!("template `{}` has no version {version}", template.name),
        )),
        other => written(other, &template),
    }
}

/// Soft-deletes the template `id_or_name`: it can no longer be used, its history stays
/// readable by id, and its name is free. Deleting it again is `template_deleted`.
pub async fn delete(pipeline: &Pipeline, tenant: &TenantId, id_or_name: &str) -> Result<Template> {
    let template = get(pipeline, tenant, id_or_name).await?;
    let outcome = pipeline
        .store()
        .delete_template(tenant, &template.id, pipeline.now())
        .await?;
    written(outcome, &template)
}

/// The template `id_or_name` with one page of its versions, oldest first.
pub async fn versions(
    pipeline: &Pipeline,
    tenant: &TenantId,
    id_or_name: &str,
    limit: Option<u32>,
    cursor: Option<&str>,
) -> Result<(Template, Page<TemplateVersion>)> {
    let template = get(pipeline, tenant, id_or_name).await?;
    match pipeline
        .store()
        .template_versions(tenant, &template.id, limit, cursor)
        .await
    {
        Ok(page) => Ok((template, page)),
        Err(StoreError::InvalidCursor) => Err(PipelineError::new(
            ErrorCode::InvalidQuery,
            "the cursor is not valid",
        )),
        Err(e) => Err(e.into()),
    }
}

/// The template after a write, or why the write was refused.
fn written(outcome: TemplateWrite, template: &Template) -> Result<Template> {
    match outcome {
        TemplateWrite::Done(template) => Ok(template),
        TemplateWrite::NotFound => Err(not_found(
            ErrorCode::TemplateNotFound,
            "template",
            &template.id,
        )),
        TemplateWrite::Deleted(_) => Err(PipelineError::new(
            ErrorCode::TemplateDeleted,
            format!("template `{}` was deleted and cannot change", template.name),
        )),
        TemplateWrite::NoSuchVersion => Err(PipelineError::new(
            ErrorCode::TemplateVersionNotFound,
            format!("template `{}` has no such version", template.name),
        )),
    }
}

/// Checks a template source (not empty, not too long, no NUL) and has the tenant's renderer
/// validate it; returns the variables it uses.
async fn check_body(pipeline: &Pipeline, tenant: &TenantId, body: &str) -> Result<Vec<String>> {
    refuse_nul("template_body", body)?;
    if body.trim().is_empty() {
        return Err(PipelineError::new(
            ErrorCode::EmptyTemplate,
            "template_body is empty",
        ));
    }
    if body.chars().count() > MAX_TEMPLATE_CHARS {
        return Err(PipelineError::new(
            ErrorCode::TemplateTooLong,
            format!("template_body is longer than {MAX_TEMPLATE_CHARS} characters"),
        ));
    }
    let renderer = super::tenants::renderer(pipeline, tenant).await?;
    match renderer.validate(body).await {
        Ok(Ok(variables)) => Ok(variables),
        Ok(Err(e)) => {
            let at = e
                .position
                .map(|p| format!(" at line {}, column {}", p.line, p.column))
                .unwrap_or_default();
            Err(PipelineError::new(
                ErrorCode::InvalidTemplate,
                format!("{}{at}", e.message),
            ))
        }
        Err(failure) => Err(PipelineError::plugin(
            &failure,
            ErrorCode::RendererUnavailable,
        )),
    }
}

fn check_description(description: &str) -> Result<()> {
    refuse_nul("description", description)?;
    if description.chars().count() > MAX_DESCRIPTION_CHARS {
        return Err(PipelineError::new(
            ErrorCode::InvalidField,
            format!("description must be at most {MAX_DESCRIPTION_CHARS} characters"),
        ));
    }
    Ok(())
}

/// PostgreSQL cannot store a NUL; the API refuses it while parsing, this is for embedders.
fn refuse_nul(field: &str, text: &str) -> Result<()> {
    if text.contains('\0') {
        return Err(PipelineError::new(
            ErrorCode::InvalidField,
            format!("`{field}` contains a NUL character"),
        ));
    }
    Ok(())
}
