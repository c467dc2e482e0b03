//! The `herald` command: serve, count segments, run migrations, and (with the `demo` feature)
//! run the demo.

#[cfg(feature = "demo")]
mod demo;

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
    /// `herald demo inbound` then texts Herald through that carrier.
    #[cfg(feature = "demo")]
    Demo(demo::DemoArgs),
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
    /// Print the encoding and segment count of TEXT (or of standard input, less one trailing
    /// newline) as JSON.
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
                    // `echo` and here-strings end the text with a newline that is not part of
                    // the message (a newline counts as a character, and can tip a segment).
                    let end = buf
                        .strip_suffix("\r\n")
                        .or_else(|| buf.strip_suffix('\n'))
                        .map_or(buf.len(), str::len);
                    buf.truncate(end);
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
        #[cfg(feature = "demo")]
        Command::Demo(args) => demo::run(args).await,
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
