//! Step 2, render: a message sent from a template gets its text from the tenant's renderer
//! plugin, and its category from the template unless the request named one.
//!
//! The renderer also validates templates when they are created ([`create_template`]), so a
//! template that cannot render is refused up front, not at the first send.

use super::Pipeline;
use super::accept::{Content, Draft};
use super::error::{ErrorCode, PipelineError, Result};
use crate::domain::{Category, TenantId};
use crate::plugin::model::RenderError;
use crate::store::{NewTemplate, StoreError, Template, new_id};

/// The longest template source accepted, in characters (a rendered message's limit).
const MAX_TEMPLATE_CHARS: usize = super::count::MAX_BODY_CHARS;

/// A draft with its text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rendered {
    /// The text to send, before encoding.
    pub body: String,
    /// The template it came from.
    pub template_id: Option<String>,
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
                category: requested.unwrap_or_else(Category::transactional),
            });
        }
        Content::Template {
            template,
            variables,
        } => (template, variables),
    };
    let stored = pipeline
        .store()
        .get_template(tenant, template)
        .await?
        .ok_or_else(|| {
            PipelineError::new(
                ErrorCode::UnknownTemplate,
                format!("no template `{template}`"),
            )
        })?;
    if !stored.is_active {
        return Err(PipelineError::new(
            ErrorCode::InactiveTemplate,
            format!("template `{template}` is not active"),
        ));
    }
    let mut pairs = Vec::with_capacity(variables.len());
    for (name, value) in variables {
        let text = match value {
            serde_json::Value::String(s) => s.clone(),
            serde_json::Value::Number(n) => n.to_string(),
            serde_json::Value::Bool(b) => b.to_string(),
            serde_json::Value::Null => String::new(),
            _ => {
                return Err(PipelineError::new(
                    ErrorCode::InvalidTemplateVariable,
                    format!("template variable `{name}` must be a string, number or boolean"),
                ));
            }
        };
        pairs.push((name.clone(), text));
    }
    let renderer = super::tenants::renderer(pipeline, tenant).await?;
    let body = match renderer.render(&stored.body, &pairs).await {
        Ok(Ok(text)) => text,
        Ok(Err(RenderError::MissingVariable(name))) => {
            return Err(PipelineError::new(
                ErrorCode::MissingTemplateVariable,
                format!("template `{template}` needs the variable `{name}`"),
            ));
        }
        Ok(Err(RenderError::InvalidTemplate(e))) => {
            return Err(PipelineError::new(ErrorCode::InvalidTemplate, e.message));
        }
        Err(failure) => {
            return Err(PipelineError::plugin(
                &failure,
                ErrorCode::RendererUnavailable,
            ));
        }
    };
    // Templates are created with message categories only; a reserved one would be ignored.
    let template_category = stored.category.filter(|c| matches!(c, Category::Named(_)));
    Ok(Rendered {
        body,
        template_id: Some(stored.id),
        category: requested
            .or(template_category)
            .unwrap_or_else(Category::transactional),
    })
}

/// A template to create.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TemplateDraft {
    /// Its name, unique per tenant.
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

/// Validates `draft` with the renderer plugin (which also lists its variables) and stores it.
pub async fn create_template(
    pipeline: &Pipeline,
    tenant: &TenantId,
    draft: TemplateDraft,
) -> Result<Template> {
    // PostgreSQL cannot store a NUL; the API refuses it while parsing, this is for embedders.
    for (field, text) in [
        ("name", draft.name.as_str()),
        ("template_body", draft.body.as_str()),
        (
            "description",
            draft.description.as_deref().unwrap_or_default(),
        ),
    ] {
        if text.contains('\0') {
            return Err(PipelineError::new(
                ErrorCode::InvalidField,
                format!("`{field}` contains a NUL character"),
            ));
        }
    }
    let name = draft.name.trim();
    if name.is_empty() || name.chars().count() > 128 {
        return Err(PipelineError::new(
            ErrorCode::InvalidField,
            "name must be 1 to 128 characters",
        ));
    }
    if draft.body.trim().is_empty() {
        return Err(PipelineError::new(
            ErrorCode::EmptyTemplate,
            "template_body is empty",
        ));
    }
    if draft.body.chars().count() > MAX_TEMPLATE_CHARS {
        return Err(PipelineError::new(
            ErrorCode::TemplateTooLong,
            format!("template_body is longer than {MAX_TEMPLATE_CHARS} characters"),
        ));
    }
    let renderer = super::tenants::renderer(pipeline, tenant).await?;
    let variables = match renderer.validate(&draft.body).await {
        Ok(Ok(variables)) => variables,
        Ok(Err(e)) => {
            let at = e
                .position
                .map(|p| format!(" at line {}, column {}", p.line, p.column))
                .unwrap_or_default();
            return Err(PipelineError::new(
                ErrorCode::InvalidTemplate,
                format!("{}{at}", e.message),
            ));
        }
        Err(failure) => {
            return Err(PipelineError::plugin(
                &failure,
                ErrorCode::RendererUnavailable,
            ));
        }
    };
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
