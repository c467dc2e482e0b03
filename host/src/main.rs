//! The `herald` command: serve, count segments, run migrations.

use std::io::Read;
use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand};
use herald::config::ConfigSource;
use herald::segments;

#[derive(Parser)]
#[command(
    name = "herald",
    version,
    about = "Herald: SMS notifications with sandboxed WebAssembly providers"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Start the server (API, webhooks, plugin runtime).
    Serve {
        /// Config file (TOML); environment variables override it.
        #[arg(long, short)]
        config: Option<PathBuf>,
    },
    /// Start a local Twilio-compatible carrier and Herald pointed at it: the demo, no account needed.
    Demo {
        /// Config file (TOML); its `plugins.twilio.config` names the carrier's URL and credentials.
        #[arg(long, short)]
        config: Option<PathBuf>,
    },
    /// Print the effective configuration (file plus environment) as JSON, secrets redacted.
    Config {
        /// Config file (TOML).
        #[arg(long, short)]
        config: Option<PathBuf>,
    },
    /// Apply pending database migrations and exit.
    Migrate {
        /// Config file (TOML).
        #[arg(long, short)]
        config: Option<PathBuf>,
    },
    /// Print the encoding and segment count of TEXT (or of standard input) as JSON.
    Segments {
        /// Apply Twilio-style Smart Encoding before counting.
        #[arg(long)]
        smart_encoding: bool,
        /// The message text; read from standard input when absent.
        text: Option<String>,
    },
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    // `herald.toml` in the working directory is the config file unless one is named.
    let default_file = |given: Option<PathBuf>| {
        given.or_else(|| Some(PathBuf::from("herald.toml")).filter(|p| p.exists()))
    };
    match cli.command {
        Command::Segments {
            smart_encoding,
            text,
        } => {
            let text = match text {
                Some(t) => t,
                None => {
                    let mut buf = String::new();
                    std::io::stdin()
                        .read_to_string(&mut buf)
                        .context("reading standard input")?;
                    buf
                }
            };
            let count = segments::count(&text, segments::Options { smart_encoding })?;
            println!("{}", serde_json::to_string(&count)?);
            Ok(())
        }
        Command::Config { config } => {
            let loaded = ConfigSource {
                file: default_file(config),
                env: true,
            }
            .load()?;
            println!("{}", serde_json::to_string_pretty(&loaded.redacted())?);
            Ok(())
        }
        Command::Migrate { config } => {
            init_tracing();
            let loaded = ConfigSource {
                file: default_file(config),
                env: true,
            }
            .load()?;
            let store = herald::app::open_store(&loaded).await?;
            tracing::info!(backend = store.backend_name(), "migrations applied");
            Ok(())
        }
        Command::Demo { config } => {
            init_tracing();
            let source = ConfigSource {
                file: default_file(config),
                env: true,
            };
            let loaded = source.load()?;
            let carrier = start_carrier(&loaded).await?;
            tracing::info!(carrier = %carrier.base_url(), "local Twilio-compatible carrier listening");
            serve(source, loaded).await?;
            carrier.shutdown().await;
            Ok(())
        }
        Command::Serve { config } => {
            init_tracing();
            let source = ConfigSource {
                file: default_file(config),
                env: true,
            };
            let loaded = source.load()?;
            serve(source, loaded).await
        }
    }
}

/// Starts Herald on the configured address until SIGINT or SIGTERM.
async fn serve(source: ConfigSource, loaded: herald::config::Config) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind(loaded.server.listen)
        .await
        .with_context(|| format!("binding {}", loaded.server.listen))?;
    tracing::info!(listen = %loaded.server.listen, storage = %loaded.storage.url, "herald starting");
    let herald = herald::Herald::builder()
        .config(loaded)
        .source(source)
        .build()
        .await?;
    herald.serve(listener, shutdown_signal()).await?;
    tracing::info!("herald stopped");
    Ok(())
}

/// Starts the carrier where the Twilio plugin's `base_url` points, with its credentials, posting
/// inbound messages to Herald's inbound webhook.
async fn start_carrier(
    config: &herald::config::Config,
) -> anyhow::Result<herald::carrier::Carrier> {
    let twilio = config
        .plugins
        .get("twilio")
        .context("the demo needs a [plugins.twilio] section")?;
    let setting = |key: &str| {
        twilio
            .config
            .get(key)
            .cloned()
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
    let carrier_config = herald::carrier::CarrierConfig {
        account_sid: setting("account_sid")?,
        auth_token: setting("auth_token")?,
        callback_delay: std::time::Duration::from_millis(500),
        inbound_url: Some(inbound),
    };
    Ok(herald::carrier::spawn(listener, carrier_config).await)
}

fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("HERALD_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt().with_env_filter(filter).init();
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! { _ = ctrl_c => {}, _ = term => {} }
}
