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
    about = "Herald: SMS notifications with sandboxed WebAssembly providers",
    after_help = "Environment:\n  \
        HERALD_LOG           what to log, as a tracing filter: `debug`, `herald=debug,sqlx=warn`, …\n                       \
        (overrides `logging.level`; the format is `logging.format`: text or json)\n  \
        HERALD_<SECTION>__<SETTING>\n                       \
        any setting, e.g. HERALD_SERVER__LISTEN=0.0.0.0:8080, HERALD_LOGGING__FORMAT=json"
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
        /// Also list every character that forces UCS-2 (with its position) and what Smart
        /// Encoding would replace and count: the `POST /api/v1/sms/estimate` analysis.
        #[arg(long)]
        explain: bool,
        /// The message text; read from standard input when absent.
        text: Option<String>,
    },
}

/// mimalloc instead of glibc's allocator: a request allocates and frees from whichever runtime
/// thread runs it, and glibc's arenas, locks and consolidation were 14 % of the samples of a
/// send's profile (`BENCHMARKS.md`). The benches use it too, so that they measure this binary.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

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
            explain,
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
            if explain {
                println!("{}", serde_json::to_string(&segments::explain(&text)?)?);
                return Ok(());
            }
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
            // A plugin's `describe` says which of its settings are secret; a plugin that cannot
            // be described has all of its settings hidden.
            let declared = herald::plugin::declared::declared_secrets(&loaded).await;
            println!(
                "{}",
                serde_json::to_string_pretty(&loaded.redacted_declared(&declared))?
            );
            Ok(())
        }
        Command::Migrate { config } => {
            let loaded = ConfigSource {
                file: default_file(config),
                env: true,
            }
            .load()?;
            init_tracing(&loaded.logging);
            let store = herald::app::open_store(&loaded).await?;
            tracing::info!(backend = store.backend_name(), "migrations applied");
            Ok(())
        }
        #[cfg(feature = "demo")]
        Command::Demo(args) => demo::run(args).await,
        Command::Serve { config } => {
            let source = ConfigSource {
                file: default_file(config),
                env: true,
            };
            let loaded = source.load()?;
            init_tracing(&loaded.logging);
            serve(source, loaded).await
        }
    }
}

/// Starts Herald on the configured address until SIGINT or SIGTERM; a second one exits at once.
async fn serve(source: ConfigSource, loaded: herald::config::Config) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind(loaded.server.listen)
        .await
        .with_context(|| format!("binding {}", loaded.server.listen))?;
    tracing::info!(
        listen = %loaded.server.listen,
        storage = %herald::config::redact_url(&loaded.storage.url),
        "herald starting"
    );
    let herald = herald::Herald::builder()
        .config(loaded)
        .source(source)
        .build()
        .await?;
    herald.serve(listener, shutdown_signal()?).await?;
    tracing::info!("herald stopped");
    Ok(())
}

/// Logs to standard output: `logging.format` text or JSON, filtered by `HERALD_LOG` or else
/// `logging.level`, coloured only when standard output is a terminal.
fn init_tracing(logging: &herald::config::LoggingConfig) {
    use herald::config::LogFormat;
    use std::io::IsTerminal;
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_env("HERALD_LOG")
        .or_else(|_| EnvFilter::try_new(&logging.level))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    let logs = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stdout().is_terminal());
    match logging.format {
        LogFormat::Text => logs.init(),
        LogFormat::Json => logs.json().init(),
    }
}

/// Resolves on the first SIGINT or SIGTERM, which starts a graceful shutdown; a second one
/// exits the process at once, for an operator who will not wait for the grace period.
/// The signal handlers are installed when this is called, so no signal falls between the two.
fn shutdown_signal() -> anyhow::Result<impl std::future::Future<Output = ()> + Send + 'static> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let mut interrupt = signal(SignalKind::interrupt()).context("installing SIGINT")?;
        let mut terminate = signal(SignalKind::terminate()).context("installing SIGTERM")?;
        Ok(async move {
            tokio::select! {
                _ = interrupt.recv() => {}
                _ = terminate.recv() => {}
            }
            tracing::info!("shutting down; interrupt again to exit at once");
            tokio::spawn(async move {
                tokio::select! {
                    _ = interrupt.recv() => {}
                    _ = terminate.recv() => {}
                }
                tracing::warn!("second signal: exiting at once");
                std::process::exit(130);
            });
        })
    }
    #[cfg(not(unix))]
    {
        Ok(async {
            let _ = tokio::signal::ctrl_c().await;
            tracing::info!("shutting down; interrupt again to exit at once");
            tokio::spawn(async {
                let _ = tokio::signal::ctrl_c().await;
                tracing::warn!("second interrupt: exiting at once");
                std::process::exit(130);
            });
        })
    }
}
