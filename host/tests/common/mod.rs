//! Helpers shared by the integration tests: plugin files, configurations, local servers.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

pub mod app;
pub mod db;
pub mod faults;
pub mod templates;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use herald::config::{Config, PluginConfig, RoutingConfig, RuntimeConfig};

/// The workspace root.
pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// A built plugin from `target/plugins`, or a panic that says how to build it.
pub fn plugin(name: &str) -> PathBuf {
    let path = root().join("target/plugins").join(format!("{name}.wasm"));
    assert!(
        path.exists(),
        "{} is missing: build the plugins with `cargo xtask build-plugins` (or run the tests with `cargo xtask test`)",
        path.display()
    );
    path
}

/// Plugin settings for `name` with the component at `path`.
pub fn plugin_config(path: PathBuf) -> PluginConfig {
    PluginConfig {
        path: Some(path),
        ..PluginConfig::default()
    }
}

/// A runtime configuration sized for tests, sharing the compiled-artifact cache.
pub fn runtime() -> RuntimeConfig {
    RuntimeConfig {
        cache_dir: root().join("target/herald-cache"),
        artifact_key_file: root().join("target/herald-artifact.key"),
        plugin_dir: root().join("target/plugins"),
        max_instances: 32,
        max_memory_mb: 64,
        watch: false,
        watch_interval_ms: 50,
        ..RuntimeConfig::default()
    }
}

/// A configuration with exactly these plugins and this routing (empty names disable a role).
pub fn config(plugins: Vec<(&str, PluginConfig)>, provider: &str, renderer: &str) -> Config {
    Config {
        runtime: runtime(),
        routing: RoutingConfig {
            provider: provider.into(),
            renderer: renderer.into(),
        },
        plugins: plugins
            .into_iter()
            .map(|(n, p)| (n.to_string(), p))
            .collect::<BTreeMap<_, _>>(),
        ..Config::default()
    }
}

/// Twilio plugin settings pointing at a local server.
pub fn twilio_settings(base_url: &str, account_sid: &str, auth_token: &str) -> PluginConfig {
    let host = url::Url::parse(base_url).unwrap();
    let grant = format!(
        "{}:{}",
        host.host_str().unwrap(),
        host.port_or_known_default().unwrap()
    );
    let mut settings = plugin_config(plugin("twilio"));
    settings.allowed_hosts = vec![grant];
    settings.http_timeout_ms = 2_000;
    settings.config = BTreeMap::from([
        ("account_sid".to_string(), account_sid.to_string()),
        ("auth_token".to_string(), auth_token.to_string()),
        ("from".to_string(), "+15005550006".to_string()),
        ("base_url".to_string(), base_url.to_string()),
    ]);
    settings
}

/// Serves `router` on an ephemeral local port and returns its base URL.
pub async fn serve(router: axum::Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        axum::serve(listener, router).await.unwrap();
    });
    format!("http://{addr}")
}

/// An outbound message with `body`, as the dispatcher would hand it to a provider plugin.
pub fn outbound(body: &str) -> herald::plugin::model::OutboundMessage {
    herald::plugin::model::OutboundMessage {
        message_id: "msg_test".into(),
        to: "+15005550006".into(),
        sender: None,
        body: body.into(),
        encoding: herald::plugin::model::Encoding::Gsm7,
        segments: 1,
        status_callback: None,
        attempt: 1,
    }
}

/// An address on 127.0.0.1 that refuses every connection for as long as the returned socket
/// lives: the socket is bound, so that no other server of the test run can be given the port,
/// but not listening. (A port taken and released at once was once handed to another test's
/// Herald, whose 404 then stood in for the refusal.)
pub fn refusing_address() -> (tokio::net::TcpSocket, std::net::SocketAddr) {
    let socket = tokio::net::TcpSocket::new_v4().expect("a TCP socket");
    socket
        .bind(std::net::SocketAddr::from(([127, 0, 0, 1], 0)))
        .expect("bind a port on 127.0.0.1");
    let addr = socket.local_addr().expect("the bound address");
    (socket, addr)
}
