//! A test fixture for the Herald host: a provider built against `herald:plugin@0.9.0` (the WIT copy
//! in `wit/`, identical to 0.1.0 but for the version). Its imports and exports name a contract
//! version the host does not implement, so the host must refuse to load it.

/// Bindings generated from the 0.9.0 copy of the contract.
mod bindings {
    #![allow(missing_docs)]
    wit_bindgen::generate!({ world: "provider", path: "wit" });
}

use bindings::exports::herald::plugin::provider_api::{
    Accepted, Guest, OutboundMessage, SendError, WebhookError, WebhookEvent,
};
use bindings::herald::plugin::log::{Level, log};
use bindings::herald::plugin::types::{HttpRequest, PluginInfo};

/// The exported component.
struct FutureContract;

impl Guest for FutureContract {
    fn describe() -> PluginInfo {
        PluginInfo {
            name: "future-contract".to_string(),
            version: "9.0.0".to_string(),
            description: "Test fixture built against a contract version the host does not know."
                .to_string(),
            config_keys: Vec::new(),
            outbound_hosts: Vec::new(),
        }
    }

    fn send(
        _config: Vec<(String, String)>,
        message: OutboundMessage,
    ) -> Result<Accepted, SendError> {
        // Importing something keeps the 0.9.0 `log` interface in the component's imports too.
        log(Level::Info, "future-contract send");
        Ok(Accepted {
            provider_message_id: format!("future-{}", message.message_id),
            provider_status: "queued".to_string(),
            segments: None,
            price: None,
        })
    }

    fn verify_webhook(
        _config: Vec<(String, String)>,
        _request: HttpRequest,
    ) -> Result<(), WebhookError> {
        Ok(())
    }

    fn parse_webhook(
        _config: Vec<(String, String)>,
        _request: HttpRequest,
    ) -> Result<Vec<WebhookEvent>, WebhookError> {
        Ok(Vec::new())
    }
}

bindings::export!(FutureContract with_types_in bindings);
