//! Herald's template renderer: a WebAssembly component (world `renderer` of `herald:plugin@0.2.0`)
//! that renders Mustache templates (sections, inverted sections, comments, dotted names; no
//! partials, no delimiter changes) as plain SMS text, with no HTML escaping.
//!
//! This file owns the component's exports: the variables arrive as one JSON object, which it
//! parses; the template language lives in [`template`].

mod template;

/// Bindings generated from the WIT contract.
mod bindings {
    #![allow(missing_docs)]
    wit_bindgen::generate!({ world: "renderer", path: "../../wit/v0.2.0" });
}

use bindings::exports::herald::plugin::renderer_api::{
    Guest, MissingVariables, Position, RenderError, Rendered, TemplateError,
};
use bindings::herald::plugin::types::PluginInfo;

/// The exported component.
struct Mustache;

impl Guest for Mustache {
    fn describe() -> PluginInfo {
        PluginInfo {
            name: "mustache".to_string(),
            version: env!("CARGO_PKG_VERSION").to_string(),
            description: "Renders Mustache templates as plain SMS text: variables, sections, \
                          inverted sections and comments; no partials."
                .to_string(),
            config_keys: Vec::new(),
            outbound_hosts: Vec::new(),
        }
    }

    fn validate(template: String) -> Result<Vec<String>, TemplateError> {
        template::variables(&template).map_err(template_error)
    }

    fn render(
        template: String,
        variables: String,
        missing: MissingVariables,
    ) -> Result<Rendered, RenderError> {
        let data: serde_json::Value = serde_json::from_str(&variables).map_err(|e| {
            RenderError::InvalidTemplate(TemplateError {
                message: format!("the variables are not a JSON object: {e}"),
                position: None,
            })
        })?;
        let missing = match missing {
            MissingVariables::Refuse => template::Missing::Refuse,
            MissingVariables::Report => template::Missing::Report,
        };
        template::render(&template, &data, template::Escape::None, missing)
            .map(|rendered| Rendered {
                text: rendered.text,
                missing: rendered.missing,
            })
            .map_err(|error| match error {
                template::RenderError::Missing(name) => RenderError::MissingVariable(name),
                template::RenderError::Invalid(error) => {
                    RenderError::InvalidTemplate(template_error(error))
                }
            })
    }
}

fn template_error(error: template::Error) -> TemplateError {
    TemplateError {
        message: error.message,
        position: Some(Position {
            line: error.line,
            column: error.column,
        }),
    }
}

bindings::export!(Mustache with_types_in bindings);
