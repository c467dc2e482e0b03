//! Building the WebAssembly plugins: the `plugins/` cargo workspace compiled for `wasm32-wasip2`,
//! with the resulting components copied to `target/plugins/<name>.wasm` for the host and its tests.
//!
//! `plugins/` is a workspace of its own (the top-level one excludes it) and builds into
//! `target/wasm`, so its release profile and target never disturb the host's builds.

use std::ffi::OsString;
use std::fs;
use std::io::ErrorKind;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};

/// The target whose `cdylib` output is a component (rustc links it with `wasm-component-ld`).
const TARGET: &str = "wasm32-wasip2";

/// A build of the plugins workspace: the cargo arguments that select it, and which of its
/// outputs (`<crate file stem>.wasm` → `<plugin name>.wasm`) to keep from it.
struct Build {
    args: &'static [&'static str],
    outputs: &'static [(&'static str, &'static str)],
}

/// The builds, in order. The probe variants must be copied right after their own build: every
/// probe build writes the same `herald_probe.wasm`, whatever its features.
const BUILDS: &[Build] = &[
    Build {
        args: &["--workspace"],
        outputs: &[
            ("herald_twilio", "twilio"),
            ("herald_mustache", "mustache"),
            ("herald_probe", "probe"),
            ("herald_contract_0_1_0", "contract-0.1.0"),
            ("herald_future_contract", "future-contract"),
            ("herald_hostile_egress", "hostile-egress"),
            ("herald_hostile_output", "hostile-output"),
            ("herald_hostile_renderer", "hostile-renderer"),
            ("herald_hostile_pool", "hostile-pool"),
            ("herald_hostile_webhook", "hostile-webhook"),
            ("herald_renderer_0_1_0", "renderer-0.1.0"),
        ],
    },
    Build {
        args: &["--package", "herald-probe", "--features", "v2"],
        outputs: &[("herald_probe", "probe-v2")],
    },
    Build {
        args: &["--package", "herald-probe", "--features", "broken"],
        outputs: &[("herald_probe", "probe-broken")],
    },
];

/// The order in which plugins are reported and returned.
const REPORT_ORDER: &[&str] = &[
    "twilio",
    "mustache",
    "probe",
    "probe-v2",
    "probe-broken",
    "contract-0.1.0",
    "future-contract",
    "hostile-egress",
    "hostile-output",
    "hostile-renderer",
    "hostile-pool",
    "hostile-webhook",
    "renderer-0.1.0",
];

/// Whether an install rewrote the file.
#[derive(Clone, Copy)]
enum Install {
    Updated,
    Unchanged,
}

/// Builds every plugin in release mode for `wasm32-wasip2` and installs the components as
/// `<root>/target/plugins/{twilio,mustache,probe,probe-v2,probe-broken,contract-0.1.0,future-contract,hostile-pool}.wasm`.
/// `<root>/target/plugins/{twilio,mustache,probe,probe-v2,probe-broken,contract-0.1.0,future-contract,hostile-webhook}.wasm`.
///
/// All but three are built against the current contract, `wit/v0.2.0`: `contract-0.1.0` (a
/// provider) and `renderer-0.1.0` stay on the frozen `wit/v0.1.0` (the host must keep serving
/// them) and `future-contract` names 0.9.0 (the host must refuse it).
///
/// `root` is the repository root. A component file is only rewritten when its bytes changed, so
/// file watchers (hot reload) and mtimes only see real changes. Prints one line per plugin and
/// returns the installed paths in the order above.
pub fn build_plugins(root: &Path) -> Result<Vec<PathBuf>> {
    ensure_target()?;
    let manifest = root.join("plugins").join("Cargo.toml");
    if !manifest.is_file() {
        bail!("no plugins workspace at {}", manifest.display());
    }
    let target_dir = root.join("target").join("wasm");
    let built_dir = target_dir.join(TARGET).join("release");
    let out_dir = root.join("target").join("plugins");
    fs::create_dir_all(&out_dir).with_context(|| format!("cannot create {}", out_dir.display()))?;

    let mut installed: Vec<(&str, PathBuf, u64, Install)> = Vec::new();
    for build in BUILDS {
        cargo_build(root, &manifest, &target_dir, build.args)?;
        for &(stem, name) in build.outputs {
            let source = built_dir.join(format!("{stem}.wasm"));
            let destination = out_dir.join(format!("{name}.wasm"));
            let (size, outcome) = install(&source, &destination)?;
            installed.push((name, destination, size, outcome));
        }
    }

    let mut paths = Vec::with_capacity(REPORT_ORDER.len());
    for name in REPORT_ORDER {
        let Some((_, path, size, outcome)) = installed.iter().find(|(n, ..)| n == name) else {
            bail!("internal error: plugin {name} was not built");
        };
        let shown = path.strip_prefix(root).unwrap_or(path);
        let outcome = match outcome {
            Install::Updated => "updated",
            Install::Unchanged => "unchanged",
        };
        println!(
            "plugin {name:<16} {:<40} {size:>8} bytes  {outcome}",
            shown.display()
        );
        paths.push(path.clone());
    }
    Ok(paths)
}

/// Installs the `wasm32-wasip2` target through rustup when it is missing. Without rustup (a
/// toolchain from elsewhere) nothing is checked here and a missing target fails the build.
fn ensure_target() -> Result<()> {
    let listed = match Command::new("rustup")
        .args(["target", "list", "--installed"])
        .output()
    {
        Ok(output) if output.status.success() => output,
        Ok(output) => bail!(
            "`rustup target list --installed` failed: {}",
            String::from_utf8_lossy(&output.stderr).trim()
        ),
        Err(error) if error.kind() == ErrorKind::NotFound => return Ok(()),
        Err(error) => return Err(error).context("cannot run rustup"),
    };
    if String::from_utf8_lossy(&listed.stdout)
        .lines()
        .any(|line| line.trim() == TARGET)
    {
        return Ok(());
    }
    println!("installing the {TARGET} target with rustup");
    let status = Command::new("rustup")
        .args(["target", "add", TARGET])
        .status()
        .context("cannot run rustup")?;
    if !status.success() {
        bail!("`rustup target add {TARGET}` failed ({status})");
    }
    Ok(())
}

/// Runs `cargo build --release --target wasm32-wasip2` on the plugins workspace.
fn cargo_build(root: &Path, manifest: &Path, target_dir: &Path, args: &[&str]) -> Result<()> {
    // `CARGO` is the cargo that runs xtask: reusing it keeps the same toolchain.
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| OsString::from("cargo"));
    let status = Command::new(&cargo)
        .current_dir(root.join("plugins"))
        .env("CARGO_TARGET_DIR", target_dir)
        .arg("build")
        .arg("--manifest-path")
        .arg(manifest)
        .args(["--release", "--target", TARGET])
        .args(args)
        .status()
        .with_context(|| format!("cannot run {}", cargo.to_string_lossy()))?;
    if !status.success() {
        bail!(
            "building the plugins failed: cargo build {} ({status})",
            args.join(" ")
        );
    }
    Ok(())
}

/// Copies `source` to `destination` unless the contents are already equal; returns the size.
/// The new file is written next to the old one and renamed over it, so a watcher never reads a
/// half-written component.
fn install(source: &Path, destination: &Path) -> Result<(u64, Install)> {
    let bytes = fs::read(source).with_context(|| format!("cannot read {}", source.display()))?;
    let size = u64::try_from(bytes.len()).unwrap_or(u64::MAX);
    match fs::read(destination) {
        Ok(existing) if existing == bytes => return Ok((size, Install::Unchanged)),
        Ok(_) => {}
        Err(error) if error.kind() == ErrorKind::NotFound => {}
        Err(error) => {
            return Err(error).with_context(|| format!("cannot read {}", destination.display()));
        }
    }
    let mut temporary = destination.as_os_str().to_owned();
    temporary.push(".tmp");
    let temporary = PathBuf::from(temporary);
    fs::write(&temporary, &bytes)
        .with_context(|| format!("cannot write {}", temporary.display()))?;
    fs::rename(&temporary, destination).with_context(|| {
        format!(
            "cannot move {} to {}",
            temporary.display(),
            destination.display()
        )
    })?;
    Ok((size, Install::Updated))
}
