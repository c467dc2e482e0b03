//! The `herald` command line: segment counting, configuration from file and environment, and
//! `herald demo inbound`.
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

/// Counts what `text` on standard input gives.
fn segments_of_stdin(text: &str) -> serde_json::Value {
    let mut child = herald()
        .arg("segments")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    json_of(&child.wait_with_output().unwrap())
}

/// One trailing newline on standard input (`\n` or `\r\n`, as `echo` adds) is not counted, so
/// 160 characters piped in stay one segment; a second newline, or one inside, is text.
#[test]
fn segments_of_stdin_drop_one_trailing_newline() {
    let full = "a".repeat(160);
    for piped in [format!("{full}\n"), format!("{full}\r\n"), full.clone()] {
        let out = segments_of_stdin(&piped);
        assert_eq!(out["units"], 160, "{piped:?}");
        assert_eq!(out["segments"], 1, "{piped:?}");
    }
    let out = segments_of_stdin(&format!("{full}\n\n"));
    assert_eq!(out["units"], 161);
    assert_eq!(out["segments"], 2);
    assert_eq!(segments_of_stdin("a\nb\n")["units"], 3);
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

/// A webhook receiver for the demo tests: every request's signature header and form, in order.
#[cfg(feature = "demo")]
type Received = std::sync::Arc<std::sync::Mutex<Vec<(String, Vec<(String, String)>)>>>;

/// Serves a receiver that records each request and answers 200; returns its inbound URL.
#[cfg(feature = "demo")]
async fn inbound_receiver(received: Received) -> String {
    use axum::extract::State;
    let app =
        axum::Router::new()
            .route(
                "/inbound",
                axum::routing::post(
                    |State(received): State<Received>,
                     headers: axum::http::HeaderMap,
                     body: String| async move {
                        let signature = headers
                            .get("x-twilio-signature")
                            .and_then(|v| v.to_str().ok())
                            .unwrap_or_default()
                            .to_owned();
                        let form = serde_urlencoded::from_str(&body).unwrap();
                        received.lock().unwrap().push((signature, form));
                    },
                ),
            )
            .with_state(received);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/inbound", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    url
}

/// Runs `herald` with `args` off the async runtime (the carrier and receiver live on it).
#[cfg(feature = "demo")]
async fn run_herald(args: Vec<String>) -> std::process::Output {
    tokio::task::spawn_blocking(move || herald().args(args).output().unwrap())
        .await
        .unwrap()
}

/// `herald demo inbound` has the running demo's carrier text Herald: the receiver gets a signed
/// inbound webhook to the config's Twilio number (or `--to`), and the command prints the receipt;
/// with no carrier there it fails and says so.
#[cfg(feature = "demo")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_inbound_texts_through_the_carrier() {
    use herald_testkit::carrier::{self, CarrierConfig, verify_twilio_signature};
    let received = Received::default();
    let inbound = inbound_receiver(received.clone()).await;
    let config = CarrierConfig {
        inbound_url: Some(inbound.clone()),
        ..CarrierConfig::default()
    };
    let token = config.auth_token.clone();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let carrier = carrier::spawn(listener, config).await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("herald.toml");
    let toml = format!(
        "[plugins.twilio.config]\nbase_url = \"{}\"\nfrom = \"+15005550006\"\n",
        carrier.base_url()
    );
    std::fs::write(&file, toml).unwrap();

    let args = ["demo", "--config", file.to_str().unwrap(), "inbound"];
    let args = [&args[..], &["--from", "+14155552671", "--body", "STOP"]].concat();
    let receipt = json_of(&run_herald(args.iter().map(|s| s.to_string()).collect()).await);
    assert_eq!(receipt["webhook_status"], 200);
    assert_eq!(receipt["to"], "+15005550006");
    assert_eq!(receipt["webhook_url"], inbound.as_str());

    let args = [
        "demo",
        "inbound",
        "--carrier-url",
        carrier.base_url(),
        "--to",
        "+14155550100",
        "--from",
        "+14155552671",
        "--body",
        "HELP",
    ];
    let receipt = json_of(&run_herald(args.iter().map(|s| s.to_string()).collect()).await);
    assert_eq!(receipt["to"], "+14155550100");

    let hits = received.lock().unwrap().clone();
    assert_eq!(hits.len(), 2);
    for ((signature, form), (to, body)) in hits
        .iter()
        .zip([("+15005550006", "STOP"), ("+14155550100", "HELP")])
    {
        assert!(verify_twilio_signature(&token, &inbound, form, signature));
        let field = |name: &str| {
            form.iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.as_str())
        };
        assert_eq!(
            (field("From"), field("To"), field("Body")),
            (Some("+14155552671"), Some(to), Some(body))
        );
    }

    let closed = carrier.base_url().to_owned();
    carrier.shutdown().await;
    let args = [
        "demo",
        "inbound",
        "--carrier-url",
        &closed,
        "--to",
        "+15005550006",
        "--from",
        "+14155552671",
        "--body",
        "STOP",
    ];
    let output = run_herald(args.iter().map(|s| s.to_string()).collect()).await;
    assert!(!output.status.success());
    assert!(
        String::from_utf8_lossy(&output.stderr).contains("herald demo` running"),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
}
