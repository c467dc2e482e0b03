//! A test fixture for the Herald host: a renderer built against the frozen
//! `herald:plugin@0.1.0` (`wit/v0.1.0`), whose `render` takes the variables as text pairs and
//! refuses a missing one. It fills `{{name}}` placeholders (no sections), so the host's tests can
//! prove that renderers of the first contract keep working after 0.2.0 moved to JSON variables.

/// Bindings generated from the 0.1.0 contract.
mod bindings {
    #![allow(missing_docs)]
    wit_bindgen::generate!({ world: "renderer", path: "../../../wit/v0.1.0" });
}

use bindings::exports::herald::plugin::renderer_api::{Guest, RenderError, TemplateError};
use bindings::herald::plugin::types::PluginInfo;

/// The exported component.
struct Renderer010;

/// The names of `{{name}}` placeholders in `template`, in order (repeats included).
fn placeholders(template: &str) -> Result<Vec<&str>, TemplateError> {
    let mut names = Vec::new();
    let mut rest = template;
    while let Some(open) = rest.find("{{") {
        let after = &rest[open + 2..];
        let Some(close) = after.find("}}") else {
            return Err(TemplateError {
                message: "unclosed `{{`".to_string(),
                position: None,
            });
        };
        names.push(after[..close].trim());
        rest = &after[close + 2..];
    }
    Ok(names)
}

impl Guest for Renderer010 {
    fn describe() -> PluginInfo {
        PluginInfo {
            name: "renderer-0.1.0".to_string(),
            version: env!("CARGO_PKG_VERSION").to_string(),
            description: "Fills {{name}} placeholders; built against contract 0.1.0.".to_string(),
            config_keys: Vec::new(),
            outbound_hosts: Vec::new(),
        }
    }

    fn validate(template: String) -> Result<Vec<String>, TemplateError> {
        let mut names: Vec<String> = Vec::new();
        for name in placeholders(&template)? {
            if !names.iter().any(|seen| seen == name) {
                names.push(name.to_string());
            }
        }
        Ok(names)
    }

    fn render(template: String, variables: Vec<(String, String)>) -> Result<String, RenderError> {
        let mut out = template.clone();
        for name in placeholders(&template).map_err(RenderError::InvalidTemplate)? {
            let value = variables
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, v)| v.as_str())
                .ok_or_else(|| RenderError::MissingVariable(name.to_string()))?;
            out = out.replacen(&format!("{{{{{name}}}}}"), value, 1);
        }
        Ok(out)
    }
}

bindings::export!(Renderer010 with_types_in bindings);
