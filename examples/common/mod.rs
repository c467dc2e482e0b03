//! What the examples share: a local Twilio-compatible carrier and a configuration for a Herald
//! that sends through it, stores in a temporary SQLite file and uses the bundled plugins (build
//! them first with `cargo xtask build-plugins`).
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::PathBuf;

use herald::config::{Config, PluginConfig, ServerConfig, StorageConfig};
use herald_testkit::carrier::{self, Carrier, CarrierConfig};

/// Starts a carrier standing in for Twilio on a free local port.
pub async fn carrier() -> anyhow::Result<Carrier> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    Ok(carrier::spawn(listener, CarrierConfig::default()).await)
}

/// A configuration for a Herald reachable at `public_url`, sending through `carrier`, storing
/// in `dir`.
pub fn config(public_url: &str, carrier: &Carrier, dir: &std::path::Path) -> Config {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut config = Config {
        server: ServerConfig {
            public_url: public_url.to_owned(),
            ..Default::default()
        },
        storage: StorageConfig {
            url: format!("sqlite://{}", dir.join("herald.db").display()),
            ..StorageConfig::default()
        },
        ..Default::default()
    };
    config.runtime.watch = false;
    config.runtime.plugin_dir = root.join("target/plugins");
    config.runtime.cache_dir = root.join("target/herald-cache");
    config.runtime.artifact_key_file = root.join("target/herald-artifact.key");
    let carrier_host = carrier.base_url().trim_start_matches("http://").to_owned();
    config.plugins.insert(
        "twilio".into(),
        PluginConfig {
            allowed_hosts: vec![carrier_host],
            config: BTreeMap::from([
                ("account_sid".into(), carrier.config().account_sid.clone()),
                ("auth_token".into(), carrier.config().auth_token.clone()),
                ("from".into(), "+15005550006".into()),
                ("base_url".into(), carrier.base_url().to_owned()),
            ]),
            ..Default::default()
        },
    );
    config
        .plugins
        .insert("mustache".into(), PluginConfig::default());
    config.routing.provider = "twilio".into();
    config.routing.renderer = "mustache".into();
    config
}

/// A fresh temporary directory for one run.
pub fn temp_dir(name: &str) -> anyhow::Result<PathBuf> {
    let dir = std::env::temp_dir().join(format!("herald-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}

/// Runs `herald`'s dispatcher until message `id` reaches a final status (or 10 s pass), then
/// prints its history.
pub async fn deliver(
    herald: &herald::Herald,
    tenant: &herald::TenantId,
    id: &str,
) -> anyhow::Result<()> {
    let (stop, mut stopped) = tokio::sync::watch::channel(false);
    let dispatcher = tokio::spawn({
        let herald = herald.clone();
        async move {
            herald
                .run(async move {
                    let _ = stopped.wait_for(|s| *s).await;
                })
                .await;
        }
    });
    for _ in 0..100 {
        let record = herald.message(tenant, id).await?;
        if record.message.status.is_final() {
            let history: Vec<&str> = record.history.iter().map(|e| e.status.as_str()).collect();
            println!("{id}: {}", history.join(" → "));
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let _ = stop.send(true);
    dispatcher.await?;
    Ok(())
}

/// Builds a Herald whose HTTP API (where status callbacks arrive) is served on a free port.
pub async fn herald_with_api(
    carrier: &Carrier,
    dir: &std::path::Path,
) -> anyhow::Result<herald::Herald> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let base = format!("http://{}", listener.local_addr()?);
    let herald = herald::Herald::builder()
        .config(config(&base, carrier, dir))
        .build()
        .await?;
    let router = herald.router();
    tokio::spawn(async move { axum::serve(listener, router).await });
    Ok(herald)
}
