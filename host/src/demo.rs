//! `herald demo` (part of the `herald` binary, built with the `demo` feature): Herald with the test
//! kit's local Twilio-compatible carrier, and `herald demo inbound`, which has that carrier text
//! Herald as a handset would.

use std::path::PathBuf;

use anyhow::{Context, bail};
use clap::{Args, Subcommand};
use herald::config::{Config, ConfigSource};
use herald_testkit::carrier::{self, Carrier, CarrierConfig, InboundRequest};

/// `herald demo [--config FILE] [inbound …]`.
#[derive(Args)]
pub struct DemoArgs {
    /// Config file (TOML); its `plugins.twilio.config` names the carrier's URL and credentials.
    /// Default: `herald.toml`, else `examples/herald.toml`.
    #[arg(long, short, global = true)]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Option<DemoCommand>,
}

#[derive(Subcommand)]
enum DemoCommand {
    /// Have the running demo's carrier text Herald: it posts a signed Twilio inbound webhook.
    Inbound {
        /// The handset's number, e.g. +14155552671.
        #[arg(long)]
        from: String,
        /// The message text, e.g. STOP, START or HELP.
        #[arg(long)]
        body: String,
        /// The number texted. Default: the config's `plugins.twilio.config.from`.
        #[arg(long)]
        to: Option<String>,
        /// The carrier's root URL. Default: the config's `plugins.twilio.config.base_url`.
        #[arg(long)]
        carrier_url: Option<String>,
    },
}

/// Runs `herald demo` or one of its subcommands.
pub async fn run(args: DemoArgs) -> anyhow::Result<()> {
    let source = ConfigSource {
        file: config_file(args.config),
        env: true,
    };
    let loaded = source.load()?;
    match args.command {
        None => {
            crate::init_tracing(&loaded.logging);
            let carrier = start_carrier(&loaded).await?;
            tracing::info!(carrier = %carrier.base_url(), "local Twilio-compatible carrier listening");
            crate::serve(source, loaded).await?;
            carrier.shutdown().await;
            Ok(())
        }
        Some(DemoCommand::Inbound {
            from,
            body,
            to,
            carrier_url,
        }) => {
            let setting = |key: &str, flag: &str| {
                twilio_setting(&loaded, key)
                    .with_context(|| format!("pass {flag} or set plugins.twilio.config.{key}"))
            };
            let carrier_url =
                carrier_url.map_or_else(|| setting("base_url", "--carrier-url"), Ok)?;
            let to = to.map_or_else(|| setting("from", "--to"), Ok)?;
            let request = InboundRequest { from, to, body };
            let receipt = carrier::request_inbound(&carrier_url, &request).await?;
            println!("{}", serde_json::to_string(&receipt)?);
            if !(200..300).contains(&receipt.webhook_status) {
                bail!(
                    "Herald answered the inbound webhook at {} with HTTP {}",
                    receipt.webhook_url,
                    receipt.webhook_status
                );
            }
            Ok(())
        }
    }
}

/// The demo's config file: the one named, else `herald.toml`, else the repository's demo config.
fn config_file(given: Option<PathBuf>) -> Option<PathBuf> {
    given.or_else(|| {
        ["herald.toml", "examples/herald.toml"]
            .into_iter()
            .map(PathBuf::from)
            .find(|p| p.exists())
    })
}

/// `plugins.twilio.config.<key>`, if set.
fn twilio_setting(config: &Config, key: &str) -> Option<String> {
    config.plugins.get("twilio")?.config.get(key).cloned()
}

/// Starts the carrier where the Twilio plugin's `base_url` points, with its credentials, posting
/// inbound messages to Herald's inbound webhook.
async fn start_carrier(config: &Config) -> anyhow::Result<Carrier> {
    if !config.plugins.contains_key("twilio") {
        bail!("the demo needs a [plugins.twilio] section");
    }
    let setting = |key: &str| {
        twilio_setting(config, key)
            .with_context(|| format!("plugins.twilio.config.{key} is not set"))
    };
    let base_url =
        url::Url::parse(&setting("base_url")?).context("plugins.twilio.config.base_url")?;
    let addr = format!(
        "{}:{}",
        base_url.host_str().unwrap_or("127.0.0.1"),
        base_url.port_or_known_default().unwrap_or(80)
    );
    let listener = tokio::net::TcpListener::bind(&addr)
        .await
        .with_context(|| format!("binding the carrier on {addr}"))?;
    let inbound = format!(
        "{}/api/v1/sms/webhooks/twilio/inbound",
        config.server.public_url.trim_end_matches('/')
    );
    let carrier_config = CarrierConfig {
        account_sid: setting("account_sid")?,
        auth_token: setting("auth_token")?,
        callback_delay: std::time::Duration::from_millis(500),
        inbound_url: Some(inbound),
        accounts: Vec::new(),
    };
    Ok(carrier::spawn(listener, carrier_config).await)
}
