//! Step 2, render: a message sent from a template gets its text from the tenant's renderer
//! plugin, and its category from the template unless the request named one.
//!
//! A request names its template by id or by name (`"order_ready"`), here, once, so every kind
//! of send (single, bulk, scheduled) resolves it the same way. The message records the
//! template's id and the version it was rendered from; versions never change, so that pair
//! says exactly which text produced it. Managing templates (creating, versions, previews) is
//! [`super::templates`].

use super::Pipeline;
use super::accept::{Content, Draft};
use super::error::{ErrorCode, PipelineError, Result};
use crate::domain::{Category, TenantId};
use crate::plugin::LoadedPlugin;
use crate::plugin::model::{MissingVariables, RenderError, RenderedText, Variables};
use crate::store::Template;

/// A draft with its text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rendered {
    /// The text to send, before encoding.
    pub body: String,
    /// The template it came from.
    pub template_id: Option<String>,
    /// The version of the template it came from.
    pub template_version: Option<i64>,
    /// The category: the request's, else the template's, else `transactional`.
    pub category: Category,
}

/// Renders `draft`'s template, or takes its text as it is.
pub async fn render(pipeline: &Pipeline, draft: &Draft) -> Result<Rendered> {
    let request = &draft.request;
    render_content(
        pipeline,
        &draft.tenant,
        &request.content,
        request.category.clone(),
    )
    .await
}

/// Renders `content` for `tenant`, or takes its text as it is; the category is `requested`, else
/// the template's, else `transactional`. The step itself, without a recipient: the dry run
/// ([`estimate`](super::estimate)) renders this way.
pub async fn render_content(
    pipeline: &Pipeline,
    tenant: &TenantId,
    content: &Content,
    requested: Option<Category>,
) -> Result<Rendered> {
    let (template, variables) = match content {
        Content::Text(text) => {
            return Ok(Rendered {
                body: text.clone(),
                template_id: None,
                template_version: None,
                category: requested.unwrap_or_else(Category::transactional),
            });
        }
        Content::Template {
            template,
            variables,
        } => (template, variables),
    };
    let stored = usable_template(pipeline, tenant, template).await?;
    let renderer = super::tenants::renderer(pipeline, tenant).await?;
    render_template_with(&renderer, &stored, variables, requested).await
}

/// [`render_content`] for a template already looked up ([`usable_template`]) with the tenant's
/// renderer already chosen: a bulk batch looks both up once, not once per row.
pub async fn render_template_with(
    renderer: &LoadedPlugin,
    stored: &Template,
    variables: &Variables,
    requested: Option<Category>,
) -> Result<Rendered> {
    if !stored.is_active {
        return Err(PipelineError::new(
            ErrorCode::InactiveTemplate,
            format!("template `{}` is not active", stored.name),
        ));
    }
    let rendered = render_text_with(renderer, stored, variables, MissingVariables::Refuse).await?;
    // Templates are created with message categories only; a reserved one would be ignored.
    let template_category = stored
        .category
        .clone()
        .filter(|c| matches!(c, Category::Named(_)));
    Ok(Rendered {
        body: rendered.text,
        template_id: Some(stored.id.clone()),
        template_version: Some(stored.version),
        category: requested
            .or(template_category)
            .unwrap_or_else(Category::transactional),
    })
}

/// The template a request names by `id_or_name`, if it may be used: it exists and is not
/// deleted (a deleted one is still found by its id, to say so).
pub async fn usable_template(
    pipeline: &Pipeline,
    tenant: &TenantId,
    id_or_name: &str,
) -> Result<Template> {
    let shown: String = id_or_name.chars().take(64).collect();
    let stored = pipeline
        .store()
        .find_template(tenant, id_or_name)
        .await?
        .ok_or_else(|| {
            PipelineError::new(ErrorCode::UnknownTemplate, format!("no template `{shown}`"))
        })?;
    if stored.deleted_at.is_some() {
        return Err(PipelineError::new(
            ErrorCode::TemplateDeleted,
            format!("template `{shown}` was deleted"),
        ));
    }
    Ok(stored)
}

/// Renders `template`'s current version with the tenant's renderer. With
/// [`MissingVariables::Refuse`] a missing variable is `missing_template_variable`; with
/// [`MissingVariables::Report`] it prints as nothing and is listed.
pub async fn render_text(
    pipeline: &Pipeline,
    tenant: &TenantId,
    template: &Template,
    variables: &Variables,
    missing: MissingVariables,
) -> Result<RenderedText> {
    let renderer = super::tenants::renderer(pipeline, tenant).await?;
    render_text_with(&renderer, template, variables, missing).await
}

/// [`render_text`] with the renderer already chosen.
async fn render_text_with(
    renderer: &LoadedPlugin,
    template: &Template,
    variables: &Variables,
    missing: MissingVariables,
) -> Result<RenderedText> {
    match renderer.render(&template.body, variables, missing).await {
        Ok(Ok(rendered)) => Ok(rendered),
        Ok(Err(RenderError::MissingVariable(name))) => Err(PipelineError::new(
            ErrorCode::MissingTemplateVariable,
            format!("template `{}` needs the variable `{name}`", template.name),
        )),
        Ok(Err(RenderError::InvalidTemplate(e))) => {
            Err(PipelineError::new(ErrorCode::InvalidTemplate, e.message))
        }
        Ok(Err(e @ RenderError::UnsupportedValue(_))) => Err(PipelineError::new(
            ErrorCode::InvalidTemplateVariable,
            e.to_string(),
        )),
        Err(failure) => Err(PipelineError::plugin(
            &failure,
            ErrorCode::RendererUnavailable,
        )),
    }
}
