//! A hostile test fixture for the Herald host's sandbox tests: a provider that tries to hog the
//! host's instances and host time.
//!
//! | call | behaviour |
//! |---|---|
//! | `verify-webhook` | sleeps 2 s (holding its instance), then accepts |
//! | `parse-webhook` | no events |
//! | `send`, body `slow` | sleeps 2 s, then accepted |
//! | `send`, body `log-flood:<KiB>` | logs lines of that many KiB in a loop, forever: nearly all its time is spent in the host |
//! | `send`, anything else | accepted at once with id `pool-<message-id>` |
//! | `fetch-status` | delivered |
//!
//! Sleeping goes through `wasi:clocks` and `wasi:io/poll`, so it costs the host no CPU: only an
//! instance and a permit are held, which is what a flood of slow webhooks exhausts.
//!
//! Built against `herald:plugin@0.2.0`.

/// Bindings generated from the WIT contract.
mod bindings {
    #![allow(missing_docs)]
    wit_bindgen::generate!({ world: "provider", path: "../../../wit/v0.2.0" });
}

use std::time::Duration;

use bindings::exports::herald::plugin::provider_api::{
    Accepted, DeliveryState, FetchStatusError, Guest, OutboundMessage, SendError, StatusUpdate,
    WebhookError, WebhookEvent,
};
use bindings::herald::plugin::log;
use bindings::herald::plugin::types::{HttpRequest, PluginInfo};

/// How long the slow calls hold their instance.
const SLOW: Duration = Duration::from_secs(2);

/// The exported component.
struct HostilePool;

impl Guest for HostilePool {
    fn describe() -> PluginInfo {
        PluginInfo {
            name: "hostile-pool".to_string(),
            version: "1.0.0".to_string(),
            description: "Hogs instances with slow webhooks and host time with a log flood."
                .to_string(),
            config_keys: Vec::new(),
            outbound_hosts: Vec::new(),
        }
    }

    fn send(
        _config: Vec<(String, String)>,
        message: OutboundMessage,
    ) -> Result<Accepted, SendError> {
        if message.body == "slow" {
            std::thread::sleep(SLOW);
        }
        if let Some(kib) = message.body.strip_prefix("log-flood:") {
            let line = "x".repeat(kib.parse::<usize>().unwrap_or(1024) << 10);
            loop {
                log::log(log::Level::Info, &line);
            }
        }
        Ok(Accepted {
            provider_message_id: format!("pool-{}", message.message_id),
            provider_status: "queued".to_string(),
            segments: None,
            price: None,
            sender: None,
        })
    }

    fn verify_webhook(
        _config: Vec<(String, String)>,
        _request: HttpRequest,
    ) -> Result<(), WebhookError> {
        std::thread::sleep(SLOW);
        Ok(())
    }

    fn parse_webhook(
        _config: Vec<(String, String)>,
        _request: HttpRequest,
    ) -> Result<Vec<WebhookEvent>, WebhookError> {
        Ok(Vec::new())
    }

    fn fetch_status(
        _config: Vec<(String, String)>,
        provider_message_id: String,
    ) -> Result<StatusUpdate, FetchStatusError> {
        Ok(StatusUpdate {
            provider_message_id,
            state: DeliveryState::Delivered,
            provider_status: "delivered".to_string(),
            error: None,
            segments: None,
            price: None,
            sender: None,
        })
    }
}

bindings::export!(HostilePool with_types_in bindings);
