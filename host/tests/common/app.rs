//! A whole Herald for feature tests: storage on the chosen backend, the bundled plugins, the
//! local Twilio-compatible carrier, and the HTTP API on an ephemeral port.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use herald::Herald;
use herald::config::{Config, ConfigSource, DeliveryConfig, ServerConfig, StorageConfig};
use herald_testkit::carrier::{self, Carrier, CarrierConfig};
use reqwest::StatusCode;
use serde_json::Value;

/// The account the carrier and the Twilio plugin share.
pub const ACCOUNT_SID: &str = "AC0123456789abcdef0123456789abcdef";
/// The auth token the carrier signs callbacks with.
pub const AUTH_TOKEN: &str = "feature-test-token";
/// The API key tests use.
pub const API_KEY: &str = "test-api-key";
/// The admin key tests use.
pub const ADMIN_KEY: &str = "test-admin-key";
/// Our number, as the Twilio plugin sends from it.
pub const OUR_NUMBER: &str = "+15005550006";

/// Which storage backend a test runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// A SQLite file in a temp dir.
    Sqlite,
    /// A fresh PostgreSQL database.
    Postgres,
}

/// A storage URL for `backend`, and the directory that must outlive it.
pub async fn storage_url(backend: Backend) -> (String, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let url = match backend {
        Backend::Sqlite => format!("sqlite://{}", dir.path().join("herald.db").display()),
        Backend::Postgres => super::db::postgres_url().await,
    };
    (url, dir)
}

/// A configuration for a test Herald on `public_url`, using `carrier` and `storage`.
pub fn config(public_url: &str, carrier_url: &str, storage: &str) -> Config {
    let twilio = super::twilio_settings(carrier_url, ACCOUNT_SID, AUTH_TOKEN);
    let mustache = super::plugin_config(super::plugin("mustache"));
    let mut config = super::config(
        vec![("twilio", twilio), ("mustache", mustache)],
        "twilio",
        "mustache",
    );
    config.server = ServerConfig {
        public_url: public_url.into(),
        api_keys: vec![API_KEY.into()],
        admin_key: ADMIN_KEY.into(),
        ..ServerConfig::default()
    };
    config.storage = StorageConfig {
        url: storage.into(),
        ..StorageConfig::default()
    };
    config.delivery = DeliveryConfig {
        retry_base_ms: 50,
        retry_max_ms: 200,
        lease_ms: 5_000,
        workers: 8,
        ..DeliveryConfig::default()
    };
    config
}

/// A running Herald with its carrier.
pub struct TestApp {
    /// Herald's base URL.
    pub base: String,
    /// The local carrier.
    pub carrier: Carrier,
    /// The running Herald (store, plugins, pipeline).
    pub herald: Herald,
    /// An HTTP client.
    pub client: reqwest::Client,
    /// The storage URL, to reopen the store after a shutdown.
    pub storage: String,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    server: Option<tokio::task::JoinHandle<()>>,
    _dir: tempfile::TempDir,
}

impl TestApp {
    /// Starts Herald on `backend` with the default test configuration.
    pub async fn start(backend: Backend) -> Self {
        Self::start_with(backend, |_| {}).await
    }

    /// Starts Herald on `backend` after `tweak` adjusts the configuration.
    pub async fn start_with(backend: Backend, tweak: impl FnOnce(&mut Config)) -> Self {
        Self::start_custom(backend, |_| {}, tweak).await
    }

    /// Starts Herald on `backend` after `carrier_tweak` adjusts the carrier's configuration and
    /// `tweak` Herald's.
    pub async fn start_custom(
        backend: Backend,
        carrier_tweak: impl FnOnce(&mut CarrierConfig),
        tweak: impl FnOnce(&mut Config),
    ) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let carrier_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let mut carrier_config = CarrierConfig {
            account_sid: ACCOUNT_SID.into(),
            auth_token: AUTH_TOKEN.into(),
            callback_delay: Duration::from_millis(20),
            inbound_url: Some(format!("{base}/api/v1/sms/webhooks/twilio/inbound")),
            accounts: Vec::new(),
        };
        carrier_tweak(&mut carrier_config);
        let carrier = carrier::spawn(carrier_listener, carrier_config).await;
        let (storage, dir) = storage_url(backend).await;
        let mut config = config(&base, carrier.base_url(), &storage);
        let storage_url = storage.clone();
        tweak(&mut config);
        let herald = Herald::builder()
            .config(config)
            .source(ConfigSource::default())
            .build()
            .await
            .unwrap();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn({
            let herald = herald.clone();
            async move {
                herald
                    .serve(listener, async {
                        let _ = stopped.await;
                    })
                    .await
                    .unwrap();
            }
        });
        Self {
            base,
            carrier,
            herald,
            client: reqwest::Client::new(),
            storage: storage_url,
            stop: Some(stop),
            server: Some(server),
            _dir: dir,
        }
    }

    /// Stops the server gracefully and waits for it.
    pub async fn stop(mut self) {
        self.shutdown().await;
    }

    /// Stops the server gracefully, keeping the storage for inspection.
    pub async fn shutdown(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(server) = self.server.take() {
            server.await.unwrap();
        }
    }

    /// `POST path` with a JSON body and the API key; returns status and JSON body.
    pub async fn post(&self, path: &str, body: &Value) -> (StatusCode, Value) {
        self.request(self.client.post(format!("{}{path}", self.base)).json(body))
            .await
    }

    /// `GET path` with the API key.
    pub async fn get(&self, path: &str) -> (StatusCode, Value) {
        self.request(self.client.get(format!("{}{path}", self.base)))
            .await
    }

    /// Sends a request with the API key and reads the JSON answer.
    pub async fn request(&self, builder: reqwest::RequestBuilder) -> (StatusCode, Value) {
        self.request_as(API_KEY, builder).await
    }

    /// Sends a request with `key` as the bearer token and reads the JSON answer.
    pub async fn request_as(
        &self,
        key: &str,
        builder: reqwest::RequestBuilder,
    ) -> (StatusCode, Value) {
        let response = builder.bearer_auth(key).send().await.unwrap();
        let status = response.status();
        let text = response.text().await.unwrap();
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }

    /// An admin call: `method path` with the admin key and an optional JSON body.
    pub async fn admin(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<&Value>,
    ) -> (StatusCode, Value) {
        let mut builder = self.client.request(method, format!("{}{path}", self.base));
        if let Some(body) = body {
            builder = builder.json(body);
        }
        self.request_as(ADMIN_KEY, builder).await
    }

    /// `POST /api/v1/sms/send`, asserting 202, returning the message.
    pub async fn send(&self, body: Value) -> Value {
        let (status, message) = self.post("/api/v1/sms/send", &body).await;
        assert_eq!(status, StatusCode::ACCEPTED, "{message}");
        message
    }

    /// The message `id` with its history.
    pub async fn message(&self, id: &str) -> Value {
        let (status, message) = self.get(&format!("/api/v1/sms/messages/{id}")).await;
        assert_eq!(status, StatusCode::OK, "{message}");
        message
    }

    /// Waits until message `id` has `status`, then returns it.
    pub async fn wait_for(&self, id: &str, status: &str) -> Value {
        let mut last = Value::Null;
        for _ in 0..400 {
            last = self.message(id).await;
            if last["status"] == status {
                return last;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!("message {id} did not reach `{status}` within 10 s: {last:#}");
    }

    /// How many messages the tenant has.
    pub async fn message_count(&self) -> usize {
        let (status, page) = self.get("/api/v1/sms/messages?limit=500").await;
        assert_eq!(status, StatusCode::OK, "{page}");
        page["items"].as_array().unwrap().len()
    }

    /// The statuses in a message's history, in order.
    pub fn history(message: &Value) -> Vec<String> {
        message["history"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["status"].as_str().unwrap().to_string())
            .collect()
    }

    /// Requests the carrier received for recipient `to`.
    pub fn carrier_requests_to(&self, to: &str) -> usize {
        self.carrier
            .requests()
            .iter()
            .filter(|r| r.form.iter().any(|(k, v)| k == "To" && v == to))
            .count()
    }
}

/// Defines, for each `async fn scenario(backend: Backend)`, a module with a `sqlite` and a
/// `postgres` test.
#[macro_export]
macro_rules! on_both_backends {
    ($($scenario:ident),* $(,)?) => {
        $(
            mod $scenario {
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn sqlite() {
                    super::$scenario($crate::common::app::Backend::Sqlite).await;
                }

                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn postgres() {
                    super::$scenario($crate::common::app::Backend::Postgres).await;
                }
            }
        )*
    };
}
