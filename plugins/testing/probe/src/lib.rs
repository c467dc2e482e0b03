//! A test fixture for the Herald host's integration tests: a provider component whose `send`
//! misbehaves on request, chosen by the message body.
//!
//! | body | behaviour |
//! |---|---|
//! | `spin` | loops forever (the host's deadline must stop it) |
//! | `alloc` | allocates 1 MiB blocks forever, keeping them alive (the memory limit must stop it) |
//! | `trap` | panics, which traps |
//! | `forbidden` | asks the host for `http://forbidden.invalid/`; refused with the host's text if denied |
//! | `http:<url>`, `sleep-http:<url>` | GETs `<url>` through the host; accepted with id = body text, status = HTTP status |
//! | `http-then-trap:<url>` | GETs `<url>` through the host, then panics whatever the outcome |
//! | `env` | accepted with id = number of env vars, status = `fs-ok`/`fs-denied` for reading `/etc/passwd` |
//! | `count` | accepted with id `count-<n>-<first>`: `n` counts this instance's `count` calls, `first` is the setting `marker` of its first one; status = this call's `marker` |
//! | anything else | accepted with id `probe-<version>-<message-id>`, status `queued` |
//!
//! `count` keeps state in the instance on purpose, so the host's tests can see whether an
//! instance served an earlier call, and whose.
//!
//! A failed request is refused when the host denied it or found it invalid, retryable when it
//! never connected, unknown when it may have been sent; the error text is the host's error.
//!
//! `fetch-status` answers by the provider message id it is asked about:
//!
//! | id | answer |
//! |---|---|
//! | `spin` | loops forever |
//! | `trap` | panics, which traps |
//! | `retryable` | retryable, with a retry-after of 1,234 ms |
//! | `permanent` | permanent |
//! | anything else | `delivered` (provider status `delivered`), sent from `probe-sender` |
//!
//! Built against `herald:plugin@0.2.0`. Cargo features: `v2` reports version 2.0.0 instead of
//! 1.0.0; `broken` makes `describe` trap.

/// Bindings generated from the WIT contract.
mod bindings {
    #![allow(missing_docs)]
    wit_bindgen::generate!({ world: "provider", path: "../../../wit/v0.2.0" });
}

use bindings::exports::herald::plugin::provider_api::{
    Accepted, DeliveryState, FetchStatusError, Guest, OutboundMessage, ProviderError,
    RetryableError, SendError, StatusUpdate, WebhookError, WebhookEvent,
};
use bindings::herald::plugin::http;
use bindings::herald::plugin::types::{
    ConfigKey, HttpError, HttpRequest, NotSentReason, PluginInfo,
};

/// The version `describe` reports; the `v2` build lets hot-reload tests tell builds apart.
const VERSION: &str = if cfg!(feature = "v2") {
    "2.0.0"
} else {
    "1.0.0"
};

/// The exported component.
struct Probe;

impl Guest for Probe {
    fn describe() -> PluginInfo {
        if cfg!(feature = "broken") {
            panic!("probe built with feature `broken`: describe traps on purpose");
        }
        PluginInfo {
            name: "probe".to_string(),
            version: VERSION.to_string(),
            description: "Test fixture whose send behaviour is chosen by the message body."
                .to_string(),
            config_keys: vec![ConfigKey {
                name: "marker".to_string(),
                description: "Any text; `count` replies with it, so tests can tell settings apart."
                    .to_string(),
                required: false,
                secret: false,
            }],
            outbound_hosts: Vec::new(),
        }
    }

    fn send(
        config: Vec<(String, String)>,
        message: OutboundMessage,
    ) -> Result<Accepted, SendError> {
        let body = message.body.as_str();
        match body {
            "count" => Ok(count(&config)),
            "spin" => spin(),
            "alloc" => alloc(),
            "trap" => panic!("probe: trap requested by the message body"),
            "forbidden" => forbidden(),
            "env" => Ok(accepted(
                std::env::vars().count().to_string(),
                if std::fs::read_to_string("/etc/passwd").is_ok() {
                    "fs-ok"
                } else {
                    "fs-denied"
                },
            )),
            _ => {
                if let Some(url) = body.strip_prefix("http-then-trap:") {
                    let outcome = http::send(&get_request(url));
                    panic!("probe: trap requested after a request that ended in {outcome:?}");
                }
                if let Some(url) = body
                    .strip_prefix("http:")
                    .or_else(|| body.strip_prefix("sleep-http:"))
                {
                    get(url)
                } else {
                    Ok(accepted(
                        format!("probe-{VERSION}-{}", message.message_id),
                        "queued",
                    ))
                }
            }
        }
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

    fn fetch_status(
        _config: Vec<(String, String)>,
        provider_message_id: String,
    ) -> Result<StatusUpdate, FetchStatusError> {
        match provider_message_id.as_str() {
            "spin" => spin(),
            "trap" => panic!("probe: trap requested by the provider message id"),
            "retryable" => Err(FetchStatusError::Retryable(RetryableError {
                error: plugin_error("probe: retryable requested".to_string()),
                retry_after_ms: Some(1_234),
            })),
            "permanent" => Err(FetchStatusError::Permanent(plugin_error(
                "probe: permanent requested".to_string(),
            ))),
            _ => Ok(StatusUpdate {
                provider_message_id,
                state: DeliveryState::Delivered,
                provider_status: "delivered".to_string(),
                error: None,
                segments: None,
                price: None,
                sender: Some("probe-sender".to_string()),
            }),
        }
    }
}

fn accepted(id: String, status: &str) -> Accepted {
    Accepted {
        provider_message_id: id,
        provider_status: status.to_string(),
        segments: None,
        price: None,
        sender: None,
    }
}

/// State kept in the instance across calls: how many `count` calls it served, and the
/// `marker` setting of the first.
static COUNTED: std::sync::Mutex<(u32, Option<String>)> = std::sync::Mutex::new((0, None));

/// Counts this call in the instance's state and reports it (see the table above).
fn count(config: &[(String, String)]) -> Accepted {
    let marker = config
        .iter()
        .find(|(key, _)| key == "marker")
        .map_or("none", |(_, value)| value.as_str());
    let mut counted = COUNTED
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    counted.0 += 1;
    let first = counted.1.get_or_insert_with(|| marker.to_string()).clone();
    accepted(format!("count-{}-{first}", counted.0), marker)
}

/// Burns CPU until the host interrupts the call.
fn spin() -> ! {
    let mut n: u64 = 0;
    loop {
        // `black_box` keeps the loop observable so it is not optimised into something else.
        n = std::hint::black_box(n.wrapping_add(1));
    }
}

/// Grows memory until the host's limit stops the call; the blocks stay alive and touched.
fn alloc() -> ! {
    let mut blocks: Vec<Vec<u8>> = Vec::new();
    loop {
        blocks.push(vec![1u8; 1 << 20]);
        std::hint::black_box(&mut blocks);
    }
}

/// Calls a host the operator never grants, to check the host denies it.
fn forbidden() -> Result<Accepted, SendError> {
    match http::send(&get_request("http://forbidden.invalid/")) {
        Err(HttpError::NotSent(NotSentReason::Denied(text))) => {
            Err(SendError::Refused(plugin_error(text)))
        }
        Err(other) => Err(http_failure(other)),
        Ok(response) => Err(SendError::Unknown(plugin_error(format!(
            "forbidden.invalid answered HTTP {}: the host should have denied it",
            response.status
        )))),
    }
}

/// GETs `url` through the host and reports the answer in the `accepted` fields.
fn get(url: &str) -> Result<Accepted, SendError> {
    match http::send(&get_request(url)) {
        Ok(response) => Ok(accepted(
            String::from_utf8_lossy(&response.body).into_owned(),
            &response.status.to_string(),
        )),
        Err(error) => Err(http_failure(error)),
    }
}

fn get_request(url: &str) -> HttpRequest {
    HttpRequest {
        method: "GET".to_string(),
        url: url.to_string(),
        headers: Vec::new(),
        body: Vec::new(),
    }
}

/// Refused when the host would not send it (retrying cannot help), retryable when it never
/// connected, unknown when it may have reached the server. The message is the host's error.
fn http_failure(error: HttpError) -> SendError {
    let text = format!("{error:?}");
    match error {
        HttpError::NotSent(NotSentReason::Denied(_) | NotSentReason::InvalidRequest(_)) => {
            SendError::Refused(plugin_error(text))
        }
        HttpError::NotSent(NotSentReason::Unreachable(_)) => SendError::Retryable(RetryableError {
            error: plugin_error(text),
            retry_after_ms: None,
        }),
        HttpError::MaybeSent(_) => SendError::Unknown(plugin_error(text)),
    }
}

fn plugin_error(message: String) -> ProviderError {
    ProviderError {
        code: None,
        message,
    }
}

bindings::export!(Probe with_types_in bindings);
