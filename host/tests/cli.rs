//! The `herald` command line: segment counting and configuration from file and environment.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::Write;
use std::process::{Command, Stdio};

fn herald() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_herald"));
    cmd.env_remove("HERALD_LOG");
    cmd
}

fn json_of(output: &std::process::Output) -> serde_json::Value {
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).unwrap()
}

/// `herald segments TEXT` prints encoding, segments and units as one JSON object.
#[test]
fn segments_of_an_argument() {
    let out = json_of(
        &herald()
            .args(["segments", &"a".repeat(161)])
            .output()
            .unwrap(),
    );
    assert_eq!(out["encoding"], "GSM-7");
    assert_eq!(out["segments"], 2);
    assert_eq!(out["units"], 161);
    let out = json_of(&herald().args(["segments", "héllo 😀"]).output().unwrap());
    assert_eq!(out["encoding"], "UCS-2");
    assert_eq!(out["non_gsm"], serde_json::json!(["😀"]));
}

/// Without TEXT the command reads standard input; `--smart-encoding` replaces look-alikes.
#[test]
fn segments_of_stdin_with_smart_encoding() {
    let mut child = herald()
        .args(["segments", "--smart-encoding"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all("“Quoted” — fine…".as_bytes())
        .unwrap();
    let out = json_of(&child.wait_with_output().unwrap());
    assert_eq!(out["encoding"], "GSM-7");
}

/// An empty body is an error, not a count.
#[test]
fn empty_text_is_an_error() {
    let output = herald().args(["segments", ""]).output().unwrap();
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("empty"));
}

/// The original module's TWILIO_* variables configure the Twilio plugin; HERALD_* override the
/// file; secrets are redacted when the configuration is printed.
#[test]
fn environment_overrides_and_redaction() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("herald.toml");
    std::fs::write(&file, "[server]\nlisten = \"127.0.0.1:9000\"\n[plugins.twilio]\nallowed_hosts = [\"api.twilio.com\"]\n").unwrap();
    let output = herald()
        .args(["config", "--config"])
        .arg(&file)
        .env("TWILIO_ACCOUNT_SID", "AC0123456789abcdef0123456789abcdef")
        .env("TWILIO_AUTH_TOKEN", "super-secret-token")
        .env("TWILIO_PHONE_NUMBER", "+15005550006")
        .env("HERALD_SERVER__LISTEN", "127.0.0.1:9100")
        .env(
            "HERALD_PLUGINS__TWILIO__CONFIG__MESSAGING_SERVICE_SID",
            "MG0123456789abcdef0123456789abcdef",
        )
        .env("HERALD_LOG", "debug")
        .output()
        .unwrap();
    let config = json_of(&output);
    assert_eq!(config["server"]["listen"], "127.0.0.1:9100");
    let twilio = &config["plugins"]["twilio"]["config"];
    assert_eq!(twilio["account_sid"], "AC0123456789abcdef0123456789abcdef");
    assert_eq!(
        twilio["from"], "+15005550006",
        "a phone number must stay text"
    );
    assert_eq!(
        twilio["messaging_service_sid"],
        "MG0123456789abcdef0123456789abcdef"
    );
    assert_eq!(twilio["auth_token"], "[redacted]");
    assert!(!String::from_utf8_lossy(&output.stdout).contains("super-secret-token"));
    assert_eq!(
        config["plugins"]["twilio"]["allowed_hosts"],
        serde_json::json!(["api.twilio.com"])
    );
}

/// A misspelled setting is refused with its name.
#[test]
fn unknown_setting_is_refused() {
    let output = herald()
        .args(["config"])
        .env("HERALD_SERVER__LISTN", "x")
        .output()
        .unwrap();
    assert!(!output.status.success());
    assert!(
        String::from_utf8_lossy(&output.stderr).contains("listn"),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
}
