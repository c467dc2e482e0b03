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
        Command::Serve { config } => {
            init_tracing();
            let source = ConfigSource {
                file: config,
                env: true,
            };
            let loaded = source.load()?;
            let listener = tokio::net::TcpListener::bind(loaded.server.listen)
                .await
                .with_context(|| format!("binding {}", loaded.server.listen))?;
            tracing::info!(listen = %loaded.server.listen, "herald starting");
            let state = herald::AppState::start(loaded, source).await?;
            herald::serve(state, listener, shutdown_signal()).await?;
            tracing::info!("herald stopped");
            Ok(())
        }
    }
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
