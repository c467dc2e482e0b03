//! Helpers shared by the carrier's tests: a carrier on an ephemeral port, Twilio-style requests,
//! and a webhook receiver that records what the carrier posts.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::routing::post;
use herald_testkit::carrier::{self, Carrier, CarrierConfig};
use serde_json::Value;
use tokio::net::TcpListener;

/// The account the carrier accepts.
pub const SID: &str = "AC0123456789abcdef0123456789abcdef";
/// The auth token: Basic-auth password and signing key.
pub const TOKEN: &str = "test-auth-token";
/// The sender tests send from (Twilio's test sender).
pub const FROM: &str = "+15005550006";

/// The test carrier's configuration: short callback delay, no inbound URL.
pub fn config() -> CarrierConfig {
    CarrierConfig {
        account_sid: SID.to_owned(),
        auth_token: TOKEN.to_owned(),
        callback_delay: Duration::from_millis(20),
        inbound_url: None,
        accounts: Vec::new(),
    }
}

/// A carrier on an ephemeral port.
pub async fn start() -> Carrier {
    start_with(config()).await
}

/// A carrier with `config` on an ephemeral port.
pub async fn start_with(config: CarrierConfig) -> Carrier {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    carrier::spawn(listener, config).await
}

/// Posts a create-message form with the given credentials; returns status, headers and JSON body.
pub async fn send_as(
    carrier: &Carrier,
    user: &str,
    pass: &str,
    fields: &[(&str, &str)],
) -> (StatusCode, HeaderMap, Value) {
    let body = serde_urlencoded::to_string(fields).unwrap();
    let response = reqwest::Client::new()
        .post(carrier.messages_url())
        .basic_auth(user, Some(pass))
        .header("Content-Type", "application/x-www-form-urlencoded")
        .body(body)
        .send()
        .await
        .unwrap();
    let status = response.status();
    let headers = response.headers().clone();
    let json = serde_json::from_slice(&response.bytes().await.unwrap()).unwrap();
    (status, headers, json)
}

/// Posts a create-message form with the test account's credentials.
pub async fn send(carrier: &Carrier, fields: &[(&str, &str)]) -> (StatusCode, HeaderMap, Value) {
    send_as(carrier, SID, TOKEN, fields).await
}

/// Asserts a Twilio-shaped error with this HTTP status and Twilio code.
pub fn assert_twilio_error(status: StatusCode, json: &Value, http: u16, code: u64) {
    assert_eq!(status.as_u16(), http, "{json}");
    assert_eq!(json["code"], code, "{json}");
    assert_eq!(json["status"], http);
    assert_eq!(
        json["more_info"],
        format!("https://www.twilio.com/docs/errors/{code}")
    );
    assert!(json["message"].as_str().is_some_and(|m| !m.is_empty()));
}

/// One webhook request as seen by a test receiver.
#[derive(Clone, Debug)]
pub struct Hit {
    /// The URL as requested (base plus path and query).
    pub url: String,
    /// The `X-Twilio-Signature` header.
    pub signature: String,
    /// The decoded form fields.
    pub form: Vec<(String, String)>,
}

impl Hit {
    /// True when the `X-Twilio-Signature` matches this URL and form under `token`.
    pub fn signed_with(&self, token: &str) -> bool {
        carrier::verify_twilio_signature(token, &self.url, &self.form, &self.signature)
    }

    /// The first form field called `name`.
    pub fn field(&self, name: &str) -> Option<&str> {
        self.form
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// A local webhook receiver: records every request, failing the first few with HTTP 500.
#[derive(Clone, Default)]
pub struct Receiver {
    /// Root URL, e.g. `http://127.0.0.1:41234`; it serves `/status` and `/sms/inbound`.
    pub base: String,
    /// Requests received, oldest first.
    pub hits: Arc<Mutex<Vec<Hit>>>,
    failures_left: Arc<Mutex<u32>>,
}

/// The receiver's handler.
async fn receive(
    State(rx): State<Receiver>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> StatusCode {
    let signature = headers
        .get("x-twilio-signature")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    let form = serde_urlencoded::from_bytes(&body).unwrap();
    let url = format!("{}{}", rx.base, uri);
    rx.hits.lock().unwrap().push(Hit {
        url,
        signature,
        form,
    });
    let mut failures = rx.failures_left.lock().unwrap();
    if *failures > 0 {
        *failures -= 1;
        return StatusCode::INTERNAL_SERVER_ERROR;
    }
    StatusCode::OK
}

/// Starts a webhook receiver that fails its first `failures` requests with HTTP 500.
pub async fn receiver(failures: u32) -> Receiver {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let rx = Receiver {
        base: format!("http://{}", listener.local_addr().unwrap()),
        failures_left: Arc::new(Mutex::new(failures)),
        ..Receiver::default()
    };
    let app = Router::new()
        .route("/status", post(receive))
        .route("/sms/inbound", post(receive))
        .with_state(rx.clone());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    rx
}
