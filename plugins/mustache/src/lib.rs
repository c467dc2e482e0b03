//! Herald's template renderer: a WebAssembly component (world `renderer` of `herald:plugin@0.2.0`)
//! that fills `{{name}}` placeholders strictly (a missing variable is an error, never blank text).
//!
//! This file owns the component's exports; the template language lives in [`template`].

mod template;

/// Bindings generated from the WIT contract.
mod bindings {
    #![allow(missing_docs)]
    wit_bindgen::generate!({ world: "renderer", path: "../../wit/v0.2.0" });
}

use bindings::exports::herald::plugin::renderer_api::{
    Guest, Position, RenderError, TemplateError,
};
use bindings::herald::plugin::types::PluginInfo;

/// The exported component.
struct Mustache;

impl Guest for Mustache {
    fn describe() -> PluginInfo {
        PluginInfo {
            name: "mustache".to_string(),
            version: env!("CARGO_PKG_VERSION").to_string(),
            description:
                "Fills {{name}} placeholders in SMS templates; every variable is required."
                    .to_string(),
            config_keys: Vec::new(),
            outbound_hosts: Vec::new(),
        }
    }

    fn validate(template: String) -> Result<Vec<String>, TemplateError> {
        template::variables(&template).map_err(template_error)
    }

    fn render(template: String, variables: Vec<(String, String)>) -> Result<String, RenderError> {
        template::render(&template, &variables).map_err(|error| match error {
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
