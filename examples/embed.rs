//! Embedding Herald in a larger application: configuration built in code, storage on SQLite,
//! the bundled plugins, and a local Twilio-compatible carrier; one message sent through the
//! library's own HTTP API and followed to `delivered`.
//!
//! Run with: `cargo xtask build-plugins && cargo run -p herald --example embed`

use std::collections::BTreeMap;
use std::time::Duration;

use herald::config::{Config, ConfigSource, PluginConfig, ServerConfig, StorageConfig};
use herald_testkit::carrier::{self, CarrierConfig};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    // A carrier standing in for Twilio, on a free local port.
    let carrier = carrier::spawn(
        tokio::net::TcpListener::bind("127.0.0.1:0").await?,
        CarrierConfig::default(),
    )
    .await;
    let account = carrier.config().account_sid.clone();
    let token = carrier.config().auth_token.clone();

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let base = format!("http://{}", listener.local_addr()?);
    let dir = std::env::temp_dir().join(format!("herald-embed-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;

    let mut config = Config {
        server: ServerConfig {
            public_url: base.clone(),
            api_keys: vec!["embed-key".into()],
            ..Default::default()
        },
        storage: StorageConfig {
            url: format!("sqlite://{}", dir.join("herald.db").display()),
        },
        ..Default::default()
    };
    config.runtime.watch = false;
    let carrier_host = carrier.base_url().trim_start_matches("http://").to_string();
    config.plugins.insert(
        "twilio".into(),
        PluginConfig {
            allowed_hosts: vec![carrier_host],
            config: BTreeMap::from([
                ("account_sid".into(), account),
                ("auth_token".into(), token),
                ("from".into(), "+15005550006".into()),
                ("base_url".into(), carrier.base_url().to_string()),
            ]),
            ..Default::default()
        },
    );

    let state = herald::AppState::start(config, ConfigSource::default()).await?;
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(herald::serve(state, listener, async {
        let _ = stopped.await;
    }));

    let client = reqwest::Client::new();
    let accepted: serde_json::Value = client
        .post(format!("{base}/api/v1/sms/send"))
        .bearer_auth("embed-key")
        .json(&serde_json::json!({"to_number": "+14155552671", "message": "Hello from an embedded Herald"}))
        .send()
        .await?
        .json()
        .await?;
    let id = accepted["id"].as_str().unwrap_or_default().to_string();
    println!(
        "accepted {id}: {} segment(s), {}",
        accepted["segments"], accepted["encoding"]
    );
    for _ in 0..100 {
        let message: serde_json::Value = client
            .get(format!("{base}/api/v1/sms/messages/{id}"))
            .bearer_auth("embed-key")
            .send()
            .await?
            .json()
            .await?;
        if message["status"] == "delivered" {
            let history: Vec<&str> = message["history"]
                .as_array()
                .map(|h| h.iter().filter_map(|e| e["status"].as_str()).collect())
                .unwrap_or_default();
            println!("delivered: {}", history.join(" → "));
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let _ = stop.send(());
    server.await??;
    std::fs::remove_dir_all(&dir)?;
    Ok(())
}
