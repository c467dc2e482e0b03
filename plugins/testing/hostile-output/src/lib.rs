//! A test fixture for the Herald host's sandbox tests: a provider whose *output* is hostile. It
//! never loops or traps; it answers with what a malicious or broken plugin could return, so the
//! host's bounds and redaction can be checked through the real host.
//!
//! `send` behaves by the message body:
//!
//! | body | behaviour |
//! |---|---|
//! | `huge-accept` | accepted with a 512 KiB provider message id, status, sender and currency, `u32::MAX` segments and an `i64::MIN` price |
//! | `huge-error` | refused with a 512 KiB code and message |
//! | `retry-max` | retryable with `retry-after-ms = u64::MAX` and a 512 KiB message |
//! | `echo-secret` | refused; the message holds the `api_key` setting in every encoding (raw, percent, base64 standard/URL-safe with and without padding, hex lower/upper) |
//! | `echo-secret-accept` | accepted; the id is the raw secret, the status its base64 and the sender its hex |
//! | `log-forge` | logs a line with CR/LF and a forged host line in it, then is accepted |
//! | `log-flood` | logs 100,000 lines of 1 KiB, then is accepted |
//! | `stack-overflow` | recurses until its stack runs out |
//! | `exit` | calls `std::process::exit(3)` (WASI p2 `exit` reports any failure as status 1) |
//! | `stderr-flood` | writes 64 KiB to stderr |
//! | anything else | accepted with id `hostile-<message-id>`, status `queued` |
//!
//! `verify-webhook` accepts every request except one whose body starts with `malformed`, which
//! it rejects as malformed with a 512 KiB text that echoes the secret. `parse-webhook` answers by
//! the body: `flood` gives 2,000 inbound messages; `huge-inbound` one inbound message to
//! `+15005550006` whose id and body are 512 KiB each; anything else no events.
//!
//! `fetch-status` answers any id with a 512 KiB status update whose price is `i64::MIN` and whose
//! segments are `u32::MAX`.
//!
//! Built against `herald:plugin@0.2.0`.

/// Bindings generated from the WIT contract.
mod bindings {
    #![allow(missing_docs)]
    wit_bindgen::generate!({ world: "provider", path: "../../../wit/v0.2.0" });
}

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};
use bindings::exports::herald::plugin::provider_api::{
    Accepted, DeliveryState, FetchStatusError, Guest, InboundMessage, OutboundMessage,
    ProviderError, RetryableError, SendError, StatusUpdate, WebhookError, WebhookEvent,
};
use bindings::herald::plugin::log::{Level, log};
use bindings::herald::plugin::types::{ConfigKey, HttpRequest, Money, PluginInfo};

/// The size of a "huge" string: 512 KiB, far past every cap. (The security review used 512 KiB;
/// the host's hostcall fuel now refuses a call that copies that much as a plugin fault before
/// any of it reaches host code, so these tests use sizes that get through to the bounds.)
const HUGE: usize = 512 << 10;

/// The exported component.
struct Hostile;

/// A `HUGE`-byte string of `c`.
fn huge(c: char) -> String {
    std::iter::repeat_n(c, HUGE).collect()
}

/// The `api_key` setting, or a placeholder when the operator gave none.
fn secret(config: &[(String, String)]) -> String {
    config
        .iter()
        .find(|(k, _)| k == "api_key")
        .map(|(_, v)| v.clone())
        .unwrap_or_else(|| "no-secret-configured".to_string())
}

/// Every encoding of `secret` the host must redact.
fn encodings(secret: &str) -> Vec<String> {
    let bytes = secret.as_bytes();
    let percent: String = bytes
        .iter()
        .map(|b| format!("%{b:02X}"))
        .collect::<String>();
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    vec![
        secret.to_string(),
        percent,
        STANDARD.encode(bytes),
        STANDARD_NO_PAD.encode(bytes),
        URL_SAFE.encode(bytes),
        URL_SAFE_NO_PAD.encode(bytes),
        hex.clone(),
        hex.to_uppercase(),
    ]
}

fn error(code: Option<String>, message: String) -> ProviderError {
    ProviderError { code, message }
}

fn accepted(id: String, status: String) -> Accepted {
    Accepted {
        provider_message_id: id,
        provider_status: status,
        segments: Some(1),
        price: None,
        sender: None,
    }
}

impl Guest for Hostile {
    fn describe() -> PluginInfo {
        PluginInfo {
            name: "hostile-output".to_string(),
            version: "1.0.0".to_string(),
            description: "Test fixture whose output is hostile.".to_string(),
            config_keys: vec![
                ConfigKey {
                    name: "api_key".to_string(),
                    description: "A secret the plugin echoes back.".to_string(),
                    required: false,
                    secret: true,
                },
                ConfigKey {
                    name: "region".to_string(),
                    description: "Not a secret.".to_string(),
                    required: false,
                    secret: false,
                },
            ],
            outbound_hosts: Vec::new(),
        }
    }

    fn send(
        config: Vec<(String, String)>,
        message: OutboundMessage,
    ) -> Result<Accepted, SendError> {
        match message.body.as_str() {
            "huge-accept" => Ok(Accepted {
                provider_message_id: huge('i'),
                provider_status: huge('s'),
                segments: Some(u32::MAX),
                price: Some(Money {
                    micros: i64::MIN,
                    currency: huge('C'),
                }),
                sender: Some(huge('f')),
            }),
            "huge-error" => Err(SendError::Refused(error(Some(huge('c')), huge('e')))),
            "retry-max" => Err(SendError::Retryable(RetryableError {
                error: error(None, huge('r')),
                retry_after_ms: Some(u64::MAX),
            })),
            "echo-secret" => Err(SendError::Refused(error(
                Some(secret(&config)),
                encodings(&secret(&config)).join(" | "),
            ))),
            "echo-secret-accept" => {
                let all = encodings(&secret(&config));
                let mut a = accepted(all[0].clone(), all[2].clone());
                a.sender = Some(all[6].clone());
                Ok(a)
            }
            "log-forge" => {
                log(
                    Level::Info,
                    "harmless\n2026-01-01T00:00:00Z ERROR herald: FORGED admin key leaked\r\nmore",
                );
                Ok(accepted(
                    format!("hostile-{}", message.message_id),
                    "queued".into(),
                ))
            }
            "log-flood" => {
                let line: String = "x".repeat(1024);
                for _ in 0..100_000 {
                    log(Level::Info, &line);
                }
                Ok(accepted(
                    format!("hostile-{}", message.message_id),
                    "queued".into(),
                ))
            }
            "stack-overflow" => Ok(accepted(recurse(0).to_string(), "queued".into())),
            "exit" => std::process::exit(3),
            "stderr-flood" => {
                for _ in 0..64 {
                    eprintln!("{}", "e".repeat(1023));
                }
                Ok(accepted(
                    format!("hostile-{}", message.message_id),
                    "queued".into(),
                ))
            }
            _ => Ok(accepted(
                format!("hostile-{}", message.message_id),
                "queued".into(),
            )),
        }
    }

    fn verify_webhook(
        config: Vec<(String, String)>,
        request: HttpRequest,
    ) -> Result<(), WebhookError> {
        if request.body.starts_with(b"malformed") {
            let mut text = encodings(&secret(&config)).join(" ");
            text.push_str(&huge('m'));
            return Err(WebhookError::Malformed(text));
        }
        Ok(())
    }

    fn parse_webhook(
        _config: Vec<(String, String)>,
        request: HttpRequest,
    ) -> Result<Vec<WebhookEvent>, WebhookError> {
        let inbound = |i: usize| {
            WebhookEvent::Inbound(InboundMessage {
                provider_message_id: format!("in-{i}"),
                from: "+15005550001".to_string(),
                to: "+15005550006".to_string(),
                body: format!("flood {i}"),
                segments: Some(1),
            })
        };
        match request.body.as_slice() {
            b"flood" => Ok((0..2_000).map(inbound).collect()),
            b"huge-inbound" => Ok(vec![WebhookEvent::Inbound(InboundMessage {
                provider_message_id: huge('i'),
                from: "+15005550001".to_string(),
                to: "+15005550006".to_string(),
                body: huge('b'),
                segments: Some(u32::MAX),
            })]),
            _ => Ok(Vec::new()),
        }
    }

    fn fetch_status(
        _config: Vec<(String, String)>,
        _provider_message_id: String,
    ) -> Result<StatusUpdate, FetchStatusError> {
        Ok(StatusUpdate {
            provider_message_id: huge('i'),
            state: DeliveryState::Delivered,
            provider_status: huge('s'),
            error: Some(error(Some(huge('c')), huge('e'))),
            segments: Some(u32::MAX),
            price: Some(Money {
                micros: i64::MIN,
                currency: huge('C'),
            }),
            sender: Some(huge('f')),
        })
    }
}

/// Recurses until the wasm call stack runs out: its locals stay in wasm locals (not Rust's
/// shadow stack in linear memory), and `black_box` keeps the calls from being folded into a loop.
fn recurse(depth: u64) -> u64 {
    if std::hint::black_box(depth) == u64::MAX {
        return 0;
    }
    recurse(std::hint::black_box(depth + 1)).wrapping_mul(depth | 1)
}

bindings::export!(Hostile with_types_in bindings);
