//! Test fixture for the Herald host: a template renderer (world `renderer` of
//! `herald:plugin@0.2.0`) whose answers are hostile, chosen by the template text:
//!
//! | template | `validate` | `render` |
//! |---|---|---|
//! | `huge-error` | a 512 KiB error message | the same |
//! | `many-variables` | 10,000 variable names | — |
//! | `huge-render` | no variables | 512 KiB of text |
//! | `many-missing` | no variables | `m`, reporting 10,000 long missing variable names |
//! | anything else | no variables | the template as it is |

/// Bindings generated from the WIT contract.
mod bindings {
    #![allow(missing_docs)]
    wit_bindgen::generate!({ world: "renderer", path: "../../../wit/v0.2.0" });
}

use bindings::exports::herald::plugin::renderer_api::{
    Guest, MissingVariables, Position, RenderError, Rendered, TemplateError,
};
use bindings::herald::plugin::types::PluginInfo;

/// Far past every cap, yet under the host's hostcall fuel, so the output reaches its bounds.
const HUGE: usize = 512 << 10;

/// The exported component.
struct HostileRenderer;

fn huge_error() -> TemplateError {
    TemplateError {
        message: "e".repeat(HUGE),
        position: Some(Position {
            line: u32::MAX,
            column: u32::MAX,
        }),
    }
}

impl Guest for HostileRenderer {
    fn describe() -> PluginInfo {
        PluginInfo {
            name: "hostile-renderer".to_string(),
            version: env!("CARGO_PKG_VERSION").to_string(),
            description: "Answers with oversized errors and text, for host tests.".to_string(),
            config_keys: Vec::new(),
            outbound_hosts: Vec::new(),
        }
    }

    fn validate(template: String) -> Result<Vec<String>, TemplateError> {
        match template.as_str() {
            "huge-error" => Err(huge_error()),
            "many-variables" => Ok((0..10_000).map(|i| format!("v{i}")).collect()),
            _ => Ok(Vec::new()),
        }
    }

    fn render(
        template: String,
        _variables: String,
        _missing: MissingVariables,
    ) -> Result<Rendered, RenderError> {
        let rendered = |text: String, missing: Vec<String>| Ok(Rendered { text, missing });
        match template.as_str() {
            "huge-error" => Err(RenderError::InvalidTemplate(huge_error())),
            "huge-render" => rendered("r".repeat(HUGE), Vec::new()),
            "many-missing" => rendered(
                "m".to_string(),
                (0..10_000)
                    .map(|i| format!("{}{i}", "v".repeat(HUGE / 10_000)))
                    .collect(),
            ),
            _ => rendered(template, Vec::new()),
        }
    }
}

bindings::export!(HostileRenderer with_types_in bindings);
