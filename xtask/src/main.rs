//! Herald's build tooling: `cargo xtask <command>`.
//!
//! - `build-plugins`: build the bundled and test plugins for wasm32-wasip2 into `target/plugins/`.
//! - `demo`: build everything and start Herald with a local Twilio-compatible carrier.
//! - `test`: build the plugins, make sure PostgreSQL is up, run every test.
//! - `bench`: build the plugins, make sure PostgreSQL is up, run the benchmark harness
//!   (`host/benches/harness.rs`, release) and write `target/bench/results.json`; `bench --quick`
//!   is its 60-second smoke run, failing on a gross regression.

mod plugins;

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, bail};

fn main() -> anyhow::Result<()> {
    let root = workspace_root();
    let mut args = std::env::args().skip(1);
    let command = args.next().unwrap_or_default();
    let rest: Vec<String> = args.collect();
    match command.as_str() {
        "build-plugins" => {
            plugins::build_plugins(&root)?;
        }
        "demo" => {
            plugins::build_plugins(&root)?;
            let mut cmd = cargo(&root);
            // A debug build shares its artifacts with `cargo xtask test` and starts sooner on a
            // fresh machine; the demo's load does not need release speed.
            cmd.args([
                "run",
                "-p",
                "herald",
                "--",
                "demo",
                "--config",
                "examples/herald.toml",
            ])
            .args(&rest);
            run(&mut cmd)?;
        }
        "test" => {
            plugins::build_plugins(&root)?;
            ensure_postgres()?;
            run(cargo(&root)
                .args([
                    "test",
                    "--manifest-path",
                    "plugins/Cargo.toml",
                    "--workspace",
                ])
                .env("CARGO_TARGET_DIR", root.join("target/wasm-native")))?;
            run(cargo(&root).args(["test", "--workspace"]).args(&rest))?;
        }
        "bench" => {
            plugins::build_plugins(&root)?;
            ensure_postgres()?;
            let results = root.join("target/bench/results.json");
            // Release for both runs: debug-profile figures are several times lower and would
            // fail the smoke run's half-targets (see BENCHMARKS.md, "Harness (issue 11)").
            run(cargo(&root)
                .args(["bench", "-p", "herald", "--bench", "harness", "--"])
                .arg("--out")
                .arg(&results)
                .args(&rest))?;
        }
        _ => bail!("usage: cargo xtask <build-plugins | demo | test | bench> [ARGS...]"),
    }
    Ok(())
}

fn workspace_root() -> PathBuf {
    // `cargo run` sets CARGO_MANIFEST_DIR for the process too; prefer it to the path compiled in,
    // which is stale when a shared target directory holds a build from another checkout.
    let manifest = std::env::var_os("CARGO_MANIFEST_DIR")
        .map_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")), PathBuf::from);
    manifest.parent().map(Path::to_path_buf).unwrap_or(manifest)
}

fn cargo(root: &Path) -> Command {
    let mut cmd = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    cmd.current_dir(root);
    cmd
}

fn run(cmd: &mut Command) -> anyhow::Result<()> {
    let status = cmd.status().with_context(|| format!("running {cmd:?}"))?;
    if !status.success() {
        bail!("{cmd:?} failed with {status}");
    }
    Ok(())
}

/// The PostgreSQL tests need a server on 127.0.0.1:5432; start the local cluster if it is down.
fn ensure_postgres() -> anyhow::Result<()> {
    if std::net::TcpStream::connect("127.0.0.1:5432").is_ok() {
        return Ok(());
    }
    eprintln!("PostgreSQL is not reachable on 127.0.0.1:5432; starting the local cluster");
    let versions: Vec<String> = std::fs::read_dir("/etc/postgresql")
        .context("PostgreSQL is not running and /etc/postgresql does not exist")?
        .filter_map(|e| e.ok().map(|e| e.file_name().to_string_lossy().into_owned()))
        .collect();
    let version = versions
        .first()
        .context("no PostgreSQL cluster in /etc/postgresql")?;
    run(Command::new("pg_ctlcluster").args([
        "--skip-systemctl-redirect",
        version,
        "main",
        "start",
    ]))?;
    for _ in 0..50 {
        if std::net::TcpStream::connect("127.0.0.1:5432").is_ok() {
            return Ok(());
        }
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    bail!("PostgreSQL did not come up on 127.0.0.1:5432")
}
