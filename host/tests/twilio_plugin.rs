//! The Twilio plugin, through the sandboxed runtime, against a local server that speaks Twilio's
//! Messages API.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use base64::Engine as _;
use herald::plugin::model::*;
use herald::plugin::{LoadedPlugin, Plugins};
use herald_testkit::carrier::{self, Carrier, CarrierConfig, ScriptedResponse};

const SID: &str = "AC0123456789abcdef0123456789abcdef";
const TOKEN: &str = "test-auth-token-0123456789";

async fn setup() -> (Carrier, Plugins) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let carrier = carrier::spawn(
        listener,
        CarrierConfig {
            account_sid: SID.into(),
            auth_token: TOKEN.into(),
            callback_delay: Duration::from_millis(10),
            inbound_url: None,
            accounts: Vec::new(),
        },
    )
    .await;
    let settings = common::twilio_settings(carrier.base_url(), SID, TOKEN);
    let plugins = Plugins::start(&common::config(vec![("twilio", settings)], "twilio", ""))
        .await
        .unwrap();
    (carrier, plugins)
}

fn message(to: &str, body: &str) -> OutboundMessage {
    OutboundMessage {
        message_id: "msg_01".into(),
        to: to.into(),
        sender: None,
        body: body.into(),
        encoding: Encoding::Gsm7,
        segments: 1,
        status_callback: Some(
            "https://herald.example.com/api/v1/sms/webhooks/twilio/status?message_id=msg_01".into(),
        ),
        attempt: 1,
    }
}

/// A send is a form POST to the Messages resource with Basic auth and Twilio's field names.
#[tokio::test]
async fn send_speaks_the_messages_api() {
    let (carrier, plugins) = setup().await;
    let outcome = plugins
        .provider()
        .unwrap()
        .send(&message("+14155552671", "Hello from Herald"))
        .await;
    let SendOutcome::Accepted(accepted) = outcome else {
        panic!("expected accepted, got {outcome:?}")
    };
    assert!(
        accepted.provider_message_id.starts_with("SM"),
        "{accepted:?}"
    );
    assert_eq!(accepted.provider_status, "queued");

    let requests = carrier.requests();
    assert_eq!(requests.len(), 1);
    let r = &requests[0];
    assert_eq!(r.method, "POST");
    assert_eq!(r.path, format!("/2010-04-01/Accounts/{SID}/Messages.json"));
    let auth = r
        .headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("authorization"))
        .map(|(_, v)| v.clone())
        .unwrap();
    let expected = base64::engine::general_purpose::STANDARD.encode(format!("{SID}:{TOKEN}"));
    assert_eq!(auth, format!("Basic {expected}"));
    let content_type = r
        .headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("content-type"))
        .map(|(_, v)| v.clone())
        .unwrap();
    assert!(
        content_type.starts_with("application/x-www-form-urlencoded"),
        "{content_type}"
    );
    let form: BTreeMap<&str, &str> = r
        .form
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    assert_eq!(form["To"], "+14155552671");
    assert_eq!(form["From"], "+15005550006");
    assert_eq!(form["Body"], "Hello from Herald");
    assert!(form["StatusCallback"].ends_with("/status?message_id=msg_01"));
    assert_valid_against_openapi(&r.form);
}

/// Every field the plugin sends exists in Twilio's OpenAPI description, with a valid value.
fn assert_valid_against_openapi(form: &[(String, String)]) {
    let fixture: serde_json::Value =
        serde_json::from_str(herald_testkit::fixtures::TWILIO_CREATE_MESSAGE).unwrap();
    let properties = fixture["request"]["properties"].as_object().unwrap();
    for required in fixture["request"]["required"].as_array().unwrap() {
        assert!(
            form.iter().any(|(k, _)| k == required.as_str().unwrap()),
            "missing required {required}"
        );
    }
    for (name, value) in form {
        let schema = properties
            .get(name)
            .unwrap_or_else(|| panic!("`{name}` is not a CreateMessage parameter"));
        match schema["format"].as_str() {
            Some("phone-number") => {
                assert!(value.starts_with('+') && value[1..].chars().all(|c| c.is_ascii_digit()))
            }
            Some("uri") => {
                let url = url::Url::parse(value).unwrap();
                assert!(
                    !url.host_str().unwrap().contains('_'),
                    "Twilio refuses underscores in callback hosts"
                );
            }
            _ => {}
        }
        if let Some(pattern) = schema["pattern"].as_str() {
            let prefix = &pattern[1..3];
            assert!(
                value.starts_with(prefix) && value.len() == 34,
                "`{name}` = {value} does not match {pattern}"
            );
        }
    }
}

/// A sender pool is sent as MessagingServiceSid instead of From.
#[tokio::test]
async fn sender_pool_uses_messaging_service() {
    let (carrier, plugins) = setup().await;
    let mut m = message("+14155552671", "pool");
    m.sender = Some(Sender::Pool("MG0123456789abcdef0123456789abcdef".into()));
    assert!(matches!(
        plugins.provider().unwrap().send(&m).await,
        SendOutcome::Accepted(_)
    ));
    let form = &carrier.requests()[0].form;
    assert!(
        form.iter()
            .any(|(k, v)| k == "MessagingServiceSid" && v.starts_with("MG"))
    );
    assert!(!form.iter().any(|(k, _)| k == "From"));
    assert_valid_against_openapi(form);
}

async fn outcome_for(
    carrier: &Carrier,
    provider: &LoadedPlugin,
    script: Option<ScriptedResponse>,
    to: &str,
) -> SendOutcome {
    if let Some(s) = script {
        carrier.script(s);
    }
    provider.send(&message(to, "hi")).await
}

/// Each Twilio error class maps to the result variant that says what is safe.
#[tokio::test]
async fn error_classes() {
    let (carrier, plugins) = setup().await;
    let p = plugins.provider().unwrap();

    let rate_limited = outcome_for(
        &carrier,
        &p,
        Some(ScriptedResponse::Error {
            http_status: 429,
            code: 20429,
            retry_after: Some(7),
        }),
        "+14155552671",
    )
    .await;
    match rate_limited {
        SendOutcome::Retryable {
            error,
            retry_after_ms,
        } => {
            assert_eq!(error.code.as_deref(), Some("20429"));
            assert_eq!(retry_after_ms, Some(7_000));
        }
        other => panic!("429 must be retryable, got {other:?}"),
    }
    let server_error = outcome_for(
        &carrier,
        &p,
        Some(ScriptedResponse::Status5xx(503)),
        "+14155552671",
    )
    .await;
    assert!(
        matches!(server_error, SendOutcome::Retryable { .. }),
        "{server_error:?}"
    );

    let invalid = outcome_for(&carrier, &p, None, "+15005550001").await;
    assert!(
        matches!(&invalid, SendOutcome::InvalidRecipient(e) if e.code.as_deref() == Some("21211")),
        "{invalid:?}"
    );
    let not_mobile = outcome_for(&carrier, &p, None, "+15005550009").await;
    assert!(
        matches!(&not_mobile, SendOutcome::InvalidRecipient(e) if e.code.as_deref() == Some("21614")),
        "{not_mobile:?}"
    );
    let opted_out = outcome_for(&carrier, &p, None, "+15005550004").await;
    assert!(
        matches!(&opted_out, SendOutcome::OptedOut(e) if e.code.as_deref() == Some("21610")),
        "{opted_out:?}"
    );
}

/// Wrong credentials are refused (not retried), and the token never appears in the error.
#[tokio::test]
async fn bad_credentials_are_refused_without_leaking_the_token() {
    let (carrier, _) = setup().await;
    let settings = common::twilio_settings(carrier.base_url(), SID, "wrong-token-abcdef");
    let plugins = Plugins::start(&common::config(vec![("twilio", settings)], "twilio", ""))
        .await
        .unwrap();
    let outcome = plugins
        .provider()
        .unwrap()
        .send(&message("+14155552671", "hi"))
        .await;
    match outcome {
        SendOutcome::Refused(e) => {
            assert_eq!(e.code.as_deref(), Some("20003"));
            assert!(!e.message.contains("wrong-token-abcdef"));
        }
        other => panic!("expected refused, got {other:?}"),
    }
}

/// A request that times out after it was sent is unknown: it may have reached Twilio.
#[tokio::test]
async fn timeout_after_sending_is_unknown() {
    let (carrier, plugins) = setup().await;
    carrier.script(ScriptedResponse::Hang(Duration::from_secs(5)));
    let outcome = plugins
        .provider()
        .unwrap()
        .send(&message("+14155552671", "hi"))
        .await;
    assert!(matches!(outcome, SendOutcome::Unknown(_)), "{outcome:?}");
}

/// Twilio at an address where nothing listens: the connection is refused, so nothing was sent
/// and the send is retryable, not unknown.
#[tokio::test]
async fn refused_connection_is_retryable() {
    let (_refusing, addr) = common::refusing_address();
    let base = format!("http://{addr}");
    let settings = common::twilio_settings(&base, SID, TOKEN);
    let plugins = Plugins::start(&common::config(vec![("twilio", settings)], "twilio", ""))
        .await
        .unwrap();
    let outcome = plugins
        .provider()
        .unwrap()
        .send(&message("+14155552671", "hi"))
        .await;
    match outcome {
        SendOutcome::Retryable {
            error,
            retry_after_ms,
        } => {
            assert!(error.message.contains("nothing was sent"), "{error:?}");
            assert!(!error.message.contains(TOKEN), "{error:?}");
            assert_eq!(retry_after_ms, None);
        }
        other => panic!("a refused connection must be retryable, got {other:?}"),
    }
}

/// A message sent through the plugin reads back with its final state, Twilio's error, the
/// sender, through a Basic-auth GET; a SID Twilio does not know is permanent, an unreachable
/// Twilio retryable.
#[tokio::test]
async fn fetch_status_reads_the_message_back() {
    let (carrier, plugins) = setup().await;
    let provider = plugins.provider().unwrap();
    let sid = match provider.send(&message("+14155550030", "hi")).await {
        SendOutcome::Accepted(accepted) => {
            assert_eq!(accepted.sender.as_deref(), Some("+15005550006"));
            accepted.provider_message_id
        }
        other => panic!("{other:?}"),
    };
    carrier
        .wait_for_status(&sid, "undelivered", Duration::from_secs(10))
        .await
        .unwrap();
    match provider.fetch_status(&sid).await {
        FetchOutcome::Status(update) => {
            assert_eq!(update.provider_message_id, sid);
            assert_eq!(update.state, DeliveryState::Undelivered);
            assert_eq!(update.provider_status, "undelivered");
            let error = update.error.unwrap();
            assert_eq!(error.code.as_deref(), Some("30003"));
            assert_eq!(update.segments, Some(1));
            assert_eq!(update.sender.as_deref(), Some("+15005550006"));
        }
        other => panic!("{other:?}"),
    }
    let lookup = carrier
        .requests()
        .into_iter()
        .find(|r| r.method == "GET")
        .unwrap();
    assert_eq!(
        lookup.path,
        format!("/2010-04-01/Accounts/{SID}/Messages/{sid}.json")
    );
    let basic = base64::engine::general_purpose::STANDARD.encode(format!("{SID}:{TOKEN}"));
    assert_eq!(
        lookup.header("authorization"),
        Some(format!("Basic {basic}").as_str())
    );

    match provider
        .fetch_status("SM00000000000000000000000000000000")
        .await
    {
        FetchOutcome::Permanent(error) => assert_eq!(error.code.as_deref(), Some("20404")),
        other => panic!("{other:?}"),
    }
    carrier.shutdown().await;
    match provider.fetch_status(&sid).await {
        FetchOutcome::Retryable { error, .. } => {
            assert!(error.message.contains("could not read"), "{error:?}");
            assert!(!error.message.contains(TOKEN), "{error:?}");
        }
        other => panic!("{other:?}"),
    }
}

fn form_request(url: &str, params: &[(&str, &str)], signature: Option<String>) -> WebhookRequest {
    let body = serde_urlencoded::to_string(params).unwrap().into_bytes();
    let mut headers = vec![(
        "Content-Type".to_string(),
        "application/x-www-form-urlencoded".to_string(),
    )];
    if let Some(s) = signature {
        headers.push(("X-Twilio-Signature".into(), s));
    }
    WebhookRequest {
        method: "POST".into(),
        url: url.into(),
        headers,
        body,
    }
}

/// Twilio's official example vector verifies; tampering or no signature is refused.
#[tokio::test]
async fn official_signature_vector() {
    let mut settings = common::twilio_settings("http://127.0.0.1:9", SID, "12345");
    settings.config.insert("auth_token".into(), "12345".into());
    let plugins = Plugins::start(&common::config(vec![("twilio", settings)], "twilio", ""))
        .await
        .unwrap();
    let p = plugins.provider().unwrap();
    let params = [
        ("CallSid", "CA1234567890ABCDE"),
        ("Caller", "+12349013030"),
        ("Digits", "1234"),
        ("From", "+12349013030"),
        ("To", "+18005551212"),
    ];
    let url = "https://mycompany.com/myapp.php?foo=1&bar=2";
    let good = Some("0/KCTR6DLpKmkAf8muzZqo1nDgQ=".to_string());
    assert_eq!(
        p.verify_webhook(&form_request(url, &params, good.clone()))
            .await
            .unwrap(),
        Ok(())
    );
    // Twilio may or may not include the default port: both forms must verify.
    let with_port = "https://mycompany.com:443/myapp.php?foo=1&bar=2";
    assert_eq!(
        p.verify_webhook(&form_request(with_port, &params, good.clone()))
            .await
            .unwrap(),
        Ok(())
    );
    let mut tampered = params;
    tampered[2] = ("Digits", "9999");
    assert_eq!(
        p.verify_webhook(&form_request(url, &tampered, good.clone()))
            .await
            .unwrap(),
        Err(WebhookRejection::BadSignature)
    );
    assert_eq!(
        p.verify_webhook(&form_request(url, &params, None))
            .await
            .unwrap(),
        Err(WebhookRejection::Unsigned)
    );
    // A non-default port is part of the URL and cannot be dropped.
    let other_port = "https://mycompany.com:8443/myapp.php?foo=1&bar=2";
    assert_eq!(
        p.verify_webhook(&form_request(other_port, &params, good))
            .await
            .unwrap(),
        Err(WebhookRejection::BadSignature)
    );
}

/// A signature computed over the URL with an explicit default port verifies against the URL without it.
#[tokio::test]
async fn port_variants() {
    let (_carrier, plugins) = setup().await;
    let p = plugins.provider().unwrap();
    let params = [("MessageSid", "SM1"), ("MessageStatus", "sent")];
    let owned: Vec<(String, String)> = params
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    for (signed, received) in [
        ("https://h.example.com:443/cb", "https://h.example.com/cb"),
        ("https://h.example.com/cb", "https://h.example.com:443/cb"),
        ("http://h.example.com:80/cb", "http://h.example.com/cb"),
        ("http://h.example.com/cb", "http://h.example.com:80/cb"),
    ] {
        let sig = carrier::twilio_signature(TOKEN, signed, &owned);
        assert_eq!(
            p.verify_webhook(&form_request(received, &params, Some(sig)))
                .await
                .unwrap(),
            Ok(()),
            "signed {signed}, received {received}"
        );
    }
}

/// Status callbacks and inbound messages are parsed into host events.
#[tokio::test]
async fn parses_status_and_inbound() {
    let (_carrier, plugins) = setup().await;
    let p = plugins.provider().unwrap();
    let url = "https://h.example.com/status";
    let status = form_request(
        url,
        &[
            ("MessageSid", "SM0123"),
            ("MessageStatus", "undelivered"),
            ("ErrorCode", "30003"),
            ("AccountSid", SID),
            ("To", "+14155552671"),
        ],
        None,
    );
    let events = p.parse_webhook(&status).await.unwrap().unwrap();
    match &events[..] {
        [WebhookEvent::Status(s)] => {
            assert_eq!(s.provider_message_id, "SM0123");
            assert_eq!(s.state, DeliveryState::Undelivered);
            assert_eq!(
                s.error.as_ref().and_then(|e| e.code.as_deref()),
                Some("30003")
            );
        }
        other => panic!("{other:?}"),
    }
    let delivered = form_request(
        url,
        &[
            ("MessageSid", "SM0124"),
            ("MessageStatus", "delivered"),
            ("Price", "-0.00830"),
            ("PriceUnit", "USD"),
            ("NumSegments", "2"),
        ],
        None,
    );
    match &p.parse_webhook(&delivered).await.unwrap().unwrap()[..] {
        [WebhookEvent::Status(s)] => {
            assert_eq!(s.state, DeliveryState::Delivered);
            assert_eq!(
                s.price,
                Some(Money {
                    micros: 8_300,
                    currency: "USD".into()
                })
            );
            assert_eq!(s.segments, Some(2));
        }
        other => panic!("{other:?}"),
    }
    let inbound = form_request(
        url,
        &[
            ("MessageSid", "SM0125"),
            ("SmsStatus", "received"),
            ("From", "+14155552671"),
            ("To", "+15005550006"),
            ("Body", "STOP"),
            ("NumSegments", "1"),
            ("FromCity", ""),
        ],
        None,
    );
    match &p.parse_webhook(&inbound).await.unwrap().unwrap()[..] {
        [WebhookEvent::Inbound(m)] => {
            assert_eq!(
                (m.from.as_str(), m.to.as_str(), m.body.as_str()),
                ("+14155552671", "+15005550006", "STOP")
            );
        }
        other => panic!("{other:?}"),
    }
}
