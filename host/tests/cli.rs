//! The `herald` command line: segment counting, configuration from file and environment,
//! `herald demo inbound`, and `herald serve`'s logs and signals.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

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
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap();
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
        // The Twilio plugin's `describe` says which of its settings are public.
        .env("HERALD_RUNTIME__PLUGIN_DIR", root.join("target/plugins"))
        .env(
            "HERALD_RUNTIME__CACHE_DIR",
            root.join("target/herald-cache"),
        )
        .env(
            "HERALD_RUNTIME__ARTIFACT_KEY_FILE",
            root.join("target/herald-artifact.key"),
        )
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

/// How long `herald serve` may take to start (compiling a plugin on a cold cache included) or
/// to do what a test waits for.
const PATIENCE: Duration = Duration::from_secs(60);

/// A config file for `herald serve` in `dir`: an ephemeral port, SQLite in `dir`, the bundled
/// plugins (the Twilio one pointed nowhere), and `extra` TOML appended.
fn serve_config(dir: &Path, extra: &str) -> PathBuf {
    let (twilio, mustache) = (common::plugin("twilio"), common::plugin("mustache"));
    let root = common::root();
    let toml = format!(
        "[server]\nlisten = \"127.0.0.1:0\"\napi_keys = [\"cli-key\"]\n{extra}\n\
         [storage]\nurl = \"sqlite://{db}\"\n\
         [runtime]\ncache_dir = \"{cache}\"\nwatch = false\n\
         [plugins.mustache]\npath = \"{mustache}\"\n\
         [plugins.twilio]\npath = \"{twilio}\"\nallowed_hosts = [\"127.0.0.1:9\"]\n\
         [plugins.twilio.config]\naccount_sid = \"AC0123456789abcdef0123456789abcdef\"\n\
         auth_token = \"cli-token\"\nfrom = \"+15005550006\"\nbase_url = \"http://127.0.0.1:9\"\n",
        db = dir.join("herald.db").display(),
        cache = root.join("target/herald-cache").display(),
        mustache = mustache.display(),
        twilio = twilio.display(),
    );
    let file = dir.join("herald.toml");
    std::fs::write(&file, toml).unwrap();
    file
}

/// Makes one HTTP/1.1 request to `listen` with the test API key; returns the raw answer.
fn http(listen: &str, method: &str, path: &str, body: &str) -> String {
    let mut stream = std::net::TcpStream::connect(listen).unwrap();
    stream.set_read_timeout(Some(PATIENCE)).unwrap();
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: herald\r\nAuthorization: Bearer cli-key\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).unwrap();
    answer
}

/// A running `herald serve`, its stdout and stderr read line by line as they come.
struct Served {
    child: Child,
    lines: mpsc::Receiver<String>,
    seen: Vec<String>,
}

impl Served {
    /// Starts `herald serve --config config` with `env`, its output piped (not a terminal).
    fn start(config: &Path, env: &[(&str, &str)]) -> Self {
        let mut child = herald()
            .args(["serve", "--config"])
            .arg(config)
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let (sender, lines) = mpsc::channel();
        let stdout: Box<dyn Read + Send> = Box::new(child.stdout.take().unwrap());
        let stderr: Box<dyn Read + Send> = Box::new(child.stderr.take().unwrap());
        for output in [stdout, stderr] {
            let sender = sender.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(output).lines() {
                    let Ok(line) = line else { break };
                    if sender.send(line).is_err() {
                        break;
                    }
                }
            });
        }
        Self {
            child,
            lines,
            seen: Vec::new(),
        }
    }

    /// Returns the first line, printed so far or still to come, that satisfies `wanted`.
    fn wait_for(&mut self, wanted: impl Fn(&str) -> bool) -> String {
        if let Some(line) = self.seen.iter().find(|line| wanted(line)) {
            return line.clone();
        }
        let deadline = Instant::now() + PATIENCE;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    self.seen.push(line.clone());
                    if wanted(&line) {
                        return line;
                    }
                }
                Err(_) => panic!(
                    "no such line within {PATIENCE:?}; output:\n{}",
                    self.output()
                ),
            }
        }
    }

    /// Sends signal `name` (`INT`, `TERM`) to the process.
    fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .args(["-s", name, &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
    }

    /// Waits up to `within` for the process to exit; returns its status.
    fn finish(&mut self, within: Duration) -> ExitStatus {
        let deadline = Instant::now() + within;
        // Both pipes close when the process exits; then its status is ready.
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => self.seen.push(line),
                Err(mpsc::RecvTimeoutError::Disconnected) => break,
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    panic!("still running after {within:?}; output:\n{}", self.output())
                }
            }
        }
        self.child.wait().unwrap()
    }

    /// Everything it printed so far, one line each.
    fn output(&self) -> String {
        self.seen.join("\n")
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `herald serve` with its output piped logs without ANSI colour and says "ready" with the
/// address it listens on; with `HERALD_LOGGING__FORMAT=json` every line is a JSON object: the
/// "ready" one names address, storage backend and plugins, a request gets one debug line
/// (method, path without query, status, latency) and a message's state changes info lines
/// with tenant, message id and provider.
#[test]
fn serve_logs_plainly_or_as_json() {
    let dir = tempfile::tempdir().unwrap();
    let config = serve_config(dir.path(), "");

    let mut served = Served::start(&config, &[]);
    let ready = served.wait_for(|line| line.contains(" ready"));
    assert!(ready.contains("listen=127.0.0.1:"), "{ready}");
    served.signal("TERM");
    assert!(served.finish(PATIENCE).success(), "{}", served.output());
    let output = served.output();
    assert!(
        !output.contains('\u{1b}'),
        "ANSI escapes in piped output:\n{output}"
    );
    assert!(output.contains("herald stopped"), "{output}");

    let env = [
        ("HERALD_LOGGING__FORMAT", "json"),
        ("HERALD_LOG", "info,herald=debug"),
    ];
    let mut served = Served::start(&config, &env);
    let ready = served.wait_for(|line| line.contains("\"ready\""));
    let ready: serde_json::Value = serde_json::from_str(&ready).unwrap();
    assert_eq!(ready["level"], "INFO");
    let fields = &ready["fields"];
    assert_eq!(fields["message"], "ready");
    let listen = fields["listen"].as_str().unwrap().to_owned();
    assert!(listen.starts_with("127.0.0.1:"), "{ready}");
    assert_eq!(fields["storage"], "sqlite");
    let plugins = fields["plugins"].as_str().unwrap();
    assert!(
        plugins.contains("twilio") && plugins.contains("mustache"),
        "{plugins}"
    );

    // One debug line per request, without the query; one info line per state change.
    let body = r#"{"to_number": "+14155552671", "message": "hello"}"#;
    let answer = http(&listen, "POST", "/api/v1/sms/send?ref=private", body);
    assert!(answer.starts_with("HTTP/1.1 202"), "{answer}");
    let request = served.wait_for(|line| line.contains("\"request\""));
    let request: serde_json::Value = serde_json::from_str(&request).unwrap();
    assert_eq!(request["level"], "DEBUG");
    let fields = &request["fields"];
    assert_eq!(
        (&fields["method"], &fields["path"], &fields["status"]),
        (&"POST".into(), &"/api/v1/sms/send".into(), &202.into())
    );
    assert!(fields["latency_ms"].is_number(), "{request}");
    assert!(!served.output().contains("private"), "the query was logged");
    for state in ["message queued", "message sending"] {
        let line = served.wait_for(|line| line.contains(state));
        let line: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(line["level"], "INFO");
        let fields = &line["fields"];
        assert_eq!(
            (&fields["tenant"], &fields["provider"]),
            (&"default".into(), &"twilio".into())
        );
        assert!(
            fields["message_id"].as_str().unwrap().starts_with("msg_"),
            "{line}"
        );
    }
    served.signal("TERM");
    assert!(served.finish(PATIENCE).success(), "{}", served.output());
    for line in &served.seen {
        let parsed: serde_json::Value = serde_json::from_str(line)
            .unwrap_or_else(|error| panic!("not a JSON line ({error}): {line}"));
        assert!(
            parsed["level"].is_string() && parsed["fields"].is_object(),
            "{line}"
        );
    }
}

/// The first SIGINT starts a graceful shutdown, which waits for a client stuck half-way
/// through its body (grace and body timeout: 60 s); a second SIGINT exits at once, status 130.
#[test]
fn a_second_interrupt_exits_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let slow = "shutdown_grace_ms = 60000\nbody_read_timeout_ms = 60000\n";
    let config = serve_config(dir.path(), slow);
    let mut served = Served::start(&config, &[("HERALD_LOGGING__FORMAT", "json")]);
    let ready = served.wait_for(|line| line.contains("\"ready\""));
    let ready: serde_json::Value = serde_json::from_str(&ready).unwrap();
    let listen = ready["fields"]["listen"].as_str().unwrap().to_owned();

    // A client whose body the server is reading: it answered `100 Continue`.
    let mut stuck = std::net::TcpStream::connect(&listen).unwrap();
    stuck.set_read_timeout(Some(PATIENCE)).unwrap();
    write!(
        stuck,
        "POST /api/v1/sms/send HTTP/1.1\r\nHost: herald\r\nAuthorization: Bearer cli-key\r\n\
         Content-Type: application/json\r\nContent-Length: 100\r\nExpect: 100-continue\r\n\r\n"
    )
    .unwrap();
    let mut continued = [0u8; 25];
    stuck.read_exact(&mut continued).unwrap();
    assert!(String::from_utf8_lossy(&continued).starts_with("HTTP/1.1 100 Continue"));
    stuck.write_all(b"{\"to_number\": ").unwrap();

    served.signal("INT");
    served.wait_for(|line| line.contains("shutting down"));
    assert!(
        served.child.try_wait().unwrap().is_none(),
        "the first interrupt waits for the stuck client"
    );
    let started = Instant::now();
    served.signal("INT");
    let status = served.finish(Duration::from_secs(10));
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(status.code(), Some(130), "{}", served.output());
    drop(stuck);
}

/// The storage URL's password appears nowhere in `herald serve`'s output (stdout and stderr,
/// at debug level): not when PostgreSQL accepts the connection, not when it cannot be reached.
#[test]
fn storage_password_is_never_logged() {
    const PASSWORD: &str = "s3cret-pw";
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let database = runtime.block_on(async {
        use sqlx::{AssertSqlSafe, Connection};
        let mut admin = sqlx::PgConnection::connect(common::db::POSTGRES_ADMIN_URL)
            .await
            .unwrap();
        // Created once, shared by every run; the password is set again each time.
        sqlx::query(AssertSqlSafe(format!(
            "DO $$ BEGIN CREATE ROLE herald_test LOGIN PASSWORD '{PASSWORD}'; \
             EXCEPTION WHEN duplicate_object THEN ALTER ROLE herald_test LOGIN PASSWORD '{PASSWORD}'; END $$"
        )))
        .execute(&mut admin)
        .await
        .unwrap();
        // Named like the store tests' databases, so later runs drop it.
        let name = format!(
            "herald_test_{}_{:08x}",
            herald::store::now_millis(),
            rand::random::<u32>()
        );
        sqlx::query(AssertSqlSafe(format!("CREATE DATABASE {name} OWNER herald_test")))
            .execute(&mut admin)
            .await
            .unwrap();
        name
    });
    let dir = tempfile::tempdir().unwrap();
    let config = serve_config(dir.path(), "");

    let url = format!("postgres://herald_test:{PASSWORD}@127.0.0.1:5432/{database}");
    let env = [
        ("HERALD_STORAGE__URL", url.as_str()),
        ("HERALD_LOG", "debug"),
    ];
    let mut served = Served::start(&config, &env);
    served.wait_for(|line| line.contains(" ready"));
    served.signal("TERM");
    assert!(served.finish(PATIENCE).success(), "{}", served.output());
    let output = served.output();
    assert!(output.contains("herald starting"), "{output}");
    assert!(
        output.contains("herald_test:%5Bredacted%5D@127.0.0.1"),
        "{output}"
    );
    assert!(
        !output.contains(PASSWORD),
        "the password was logged:\n{output}"
    );

    let refused = format!("postgres://herald_test:{PASSWORD}@127.0.0.1:1/{database}");
    let env = [
        ("HERALD_STORAGE__URL", refused.as_str()),
        ("HERALD_STORAGE__ACQUIRE_TIMEOUT_MS", "300"),
        ("HERALD_LOG", "debug"),
    ];
    let mut served = Served::start(&config, &env);
    assert!(!served.finish(PATIENCE).success(), "{}", served.output());
    let output = served.output();
    assert!(output.contains("storage unavailable"), "{output}");
    assert!(
        !output.contains(PASSWORD),
        "the password was logged:\n{output}"
    );
}
