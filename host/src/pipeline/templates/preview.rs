//! A template's preview: the text a send would render from the given variables, how it would be
//! encoded and counted and why, and which variables are missing or unused. A preview stores
//! nothing and never fails over a missing variable: it prints as nothing and is reported, which
//! is what someone checking a template wants to see.

use super::super::Pipeline;
use super::super::accept;
use super::super::error::{ErrorCode, PipelineError, Result};
use super::super::render;
use crate::domain::TenantId;
use crate::plugin::model::{MissingVariables, Variables};
use crate::segments::explain::{Explanation, explain};
use crate::store::Template;

/// What a send from a template would produce.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Preview {
    /// The template, at the version previewed (its current one).
    pub template: Template,
    /// The rendered text, missing variables printed as nothing.
    pub text: String,
    /// Its encoding, segments and units, the characters that force UCS-2 and what Smart
    /// Encoding would change; `None` when the rendered text is empty.
    pub explanation: Option<Explanation>,
    /// Whether Smart Encoding is on (`delivery.smart_encoding`), i.e. what a send would do.
    pub smart_encoding_enabled: bool,
    /// Variables the template printed without a value, in first-use order.
    pub missing_variables: Vec<String>,
    /// Variables given that the template does not use, in name order.
    pub unused_variables: Vec<String>,
}

/// Previews the template `id_or_name` of `tenant` with `variables`.
pub async fn preview(
    pipeline: &Pipeline,
    tenant: &TenantId,
    id_or_name: &str,
    variables: &Variables,
) -> Result<Preview> {
    accept::template_variables(variables)?;
    let template = super::get(pipeline, tenant, id_or_name).await?;
    if template.deleted_at.is_some() {
        return Err(PipelineError::new(
            ErrorCode::TemplateDeleted,
            format!("template `{}` was deleted", template.name),
        ));
    }
    let rendered = render::render_text(
        pipeline,
        tenant,
        &template,
        variables,
        MissingVariables::Report,
    )
    .await?;
    let unused_variables = variables
        .keys()
        .filter(|given| !template.variables.iter().any(|used| uses(used, given)))
        .cloned()
        .collect();
    Ok(Preview {
        explanation: explain(&rendered.text).ok(),
        smart_encoding_enabled: pipeline.config().delivery.smart_encoding,
        text: rendered.text,
        missing_variables: rendered.missing,
        unused_variables,
        template,
    })
}

/// Whether the variable name `used` (possibly dotted, `customer.name`) reads the top-level
/// variable `given`.
fn uses(used: &str, given: &str) -> bool {
    used.strip_prefix(given)
        .is_some_and(|rest| rest.is_empty() || rest.starts_with('.'))
}

#[cfg(test)]
mod tests {
    use super::uses;

    /// A dotted name uses its first part; a longer name with the same start does not.
    #[test]
    fn dotted_names_use_their_root() {
        assert!(uses("customer", "customer"));
        assert!(uses("customer.name", "customer"));
        assert!(!uses("customer_name", "customer"));
        assert!(!uses("name", "customer"));
    }
}
