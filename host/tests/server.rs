//! The HTTP server's own limits, against a spawned Herald and raw TCP clients: a half-sent
//! header is cut off, a half-sent body is answered `408 request_timeout` (JSON) and the
//! connection closed, many headers get the API's JSON 431, and a shutdown with a stuck client
//! ends within its grace period while the provider call in flight still finishes.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::{Duration, Instant};

use common::app::{API_KEY, Backend, TestApp};
use herald_testkit::carrier::ScriptedResponse;
use reqwest::StatusCode;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// How long a test waits for the server to act before calling it a failure.
const PATIENCE: Duration = Duration::from_secs(5);

/// Opens a raw connection to the app.
async fn connect(app: &TestApp) -> TcpStream {
    TcpStream::connect(app.base.trim_start_matches("http://"))
        .await
        .unwrap()
}

/// Reads until the server closes the connection (a reset counts as closed); returns what it
/// sent and when it closed.
async fn read_until_closed(stream: &mut TcpStream) -> (Vec<u8>, Instant) {
    let mut received = Vec::new();
    let read = tokio::time::timeout(PATIENCE, async {
        let mut buf = [0u8; 4096];
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => received.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await;
    assert!(
        read.is_ok(),
        "the server kept the connection open for {PATIENCE:?}"
    );
    (received, Instant::now())
}

/// Reads until `needle` has arrived.
async fn read_until(stream: &mut TcpStream, needle: &str) -> String {
    let mut received = Vec::new();
    let found = tokio::time::timeout(PATIENCE, async {
        let mut buf = [0u8; 1024];
        while !String::from_utf8_lossy(&received).contains(needle) {
            let n = stream.read(&mut buf).await.unwrap();
            assert!(n > 0, "closed before {needle:?}");
            received.extend_from_slice(&buf[..n]);
        }
    })
    .await;
    assert!(found.is_ok(), "no {needle:?} within {PATIENCE:?}");
    String::from_utf8_lossy(&received).into_owned()
}

/// The head of a `POST /api/v1/sms/send` announcing a `length`-byte body and asking for
/// `100 Continue`, so the client knows when the server starts reading the body.
fn send_head(length: usize) -> String {
    format!(
        "POST /api/v1/sms/send HTTP/1.1\r\nHost: herald\r\nAuthorization: Bearer {API_KEY}\r\n\
         Content-Type: application/json\r\nContent-Length: {length}\r\nExpect: 100-continue\r\n\r\n"
    )
}

/// A client that sends half a request header is cut off, without an answer, once
/// `server.header_read_timeout_ms` has passed, not before.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn half_a_header_is_cut_off() {
    let timeout = Duration::from_millis(400);
    let app = TestApp::start_with(Backend::Sqlite, |config| {
        config.server.header_read_timeout_ms = timeout.as_millis() as u64;
    })
    .await;
    // Timed from before the connection: the server's deadline starts when it accepts it, which
    // under load can be well before this client gets to write.
    let started = Instant::now();
    let mut stream = connect(&app).await;
    stream
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: herald\r\nX-Half: ")
        .await
        .unwrap();
    let (received, closed) = read_until_closed(&mut stream).await;
    let waited = closed - started;
    assert!(
        waited >= timeout,
        "cut after {waited:?}, before the timeout"
    );
    assert!(
        received.is_empty(),
        "closed without an answer: {}",
        String::from_utf8_lossy(&received)
    );
    // The server still serves everyone else.
    let (status, _) = app.get("/healthz").await;
    assert_eq!(status, StatusCode::OK);
    app.stop().await;
}

/// A client that sends its headers and half its body is answered `408 request_timeout` in the
/// API's JSON shape once `server.body_read_timeout_ms` has passed, and the connection is
/// closed; nothing is stored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn half_a_body_gets_408_and_the_connection_closes() {
    let timeout = Duration::from_millis(400);
    let app = TestApp::start_with(Backend::Sqlite, |config| {
        config.server.body_read_timeout_ms = timeout.as_millis() as u64;
    })
    .await;
    let body = json!({"to_number": "+14155552671", "message": "half of it"}).to_string();
    let mut stream = connect(&app).await;
    stream
        .write_all(send_head(body.len()).as_bytes())
        .await
        .unwrap();
    read_until(&mut stream, "100 Continue\r\n\r\n").await;
    let started = Instant::now();
    stream
        .write_all(&body.as_bytes()[..body.len() / 2])
        .await
        .unwrap();
    let (received, closed) = read_until_closed(&mut stream).await;
    let waited = closed - started;
    assert!(
        waited >= timeout,
        "answered after {waited:?}, before the timeout"
    );
    let answer = String::from_utf8_lossy(&received);
    let (head, json) = answer.split_once("\r\n\r\n").unwrap();
    assert!(head.starts_with("HTTP/1.1 408"), "{head}");
    assert!(
        head.to_ascii_lowercase().contains("connection: close"),
        "{head}"
    );
    let error: Value = serde_json::from_str(json).unwrap();
    assert_eq!(error["error"]["code"], "request_timeout", "{error}");
    assert_eq!(app.message_count().await, 0);
    app.stop().await;
}

/// A body larger than `server.max_body_bytes` is answered `413 payload_too_large` with
/// `Connection: close` before the rest of it is read, and the connection closes: the unread
/// body is still on it, so a client must not send its next request there (one that reused it
/// would find it closed mid-request).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oversized_body_gets_413_and_the_connection_closes() {
    let app = TestApp::start(Backend::Sqlite).await;
    let length = 1024 * 1024;
    let mut stream = connect(&app).await;
    stream
        .write_all(send_head(length).as_bytes())
        .await
        .unwrap();
    read_until(&mut stream, "100 Continue\r\n\r\n").await;
    // More than the limit (64 KiB by default), but not all of the announced length.
    // (The server may close before taking all of it; how far the write gets does not matter.)
    let _ = tokio::time::timeout(PATIENCE, stream.write_all(&vec![b' '; 256 * 1024])).await;
    let (received, _) = read_until_closed(&mut stream).await;
    let answer = String::from_utf8_lossy(&received);
    let (head, json) = answer.split_once("\r\n\r\n").unwrap();
    assert!(head.contains("HTTP/1.1 413"), "{head}");
    assert!(
        head.to_ascii_lowercase().contains("connection: close"),
        "{head}"
    );
    let error: Value = serde_json::from_str(json).unwrap();
    assert_eq!(error["error"]["code"], "payload_too_large", "{error}");
    assert_eq!(app.message_count().await, 0);
    app.stop().await;
}

/// A request whose many ordinary headers add up to more than 32 KiB gets the API's JSON 431,
/// not the HTTP library's bare one (which it sends past 100 header lines by default).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_headers_get_the_json_431() {
    let app = TestApp::start(Backend::Sqlite).await;
    let mut request = app.client.get(format!("{}/api/v1/sms/messages", app.base));
    for n in 0..200 {
        request = request.header(format!("x-filler-{n}"), "v".repeat(180));
    }
    let (status, body) = app.request(request).await;
    assert_eq!(status, StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE);
    assert_eq!(body["error"]["code"], "headers_too_large", "{body}");
    app.stop().await;
}

/// A shutdown while a client is stuck half-way through its body ends once
/// `server.shutdown_grace_ms` has passed (its connection is dropped, not waited for until the
/// 60 s body timeout), while the provider call in flight still finishes and is recorded.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_with_a_stuck_client_ends_within_the_grace_period() {
    let grace = Duration::from_millis(300);
    let mut app = TestApp::start_with(Backend::Sqlite, |config| {
        config.server.shutdown_grace_ms = grace.as_millis() as u64;
        config.server.header_read_timeout_ms = 60_000;
        config.server.body_read_timeout_ms = 60_000;
    })
    .await;
    // A provider call in flight that outlasts the grace period.
    app.carrier
        .script(ScriptedResponse::Hang(Duration::from_millis(800)));
    let id = app
        .send(json!({"to_number": "+14155552671", "message": "in flight"}))
        .await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    app.wait_for(&id, "sending").await;
    // A client whose body the server is waiting for, and one that sent half a header.
    let mut stuck = connect(&app).await;
    stuck.write_all(send_head(100).as_bytes()).await.unwrap();
    read_until(&mut stuck, "100 Continue\r\n\r\n").await;
    stuck.write_all(b"{\"to_number\": ").await.unwrap();
    let mut half_header = connect(&app).await;
    half_header
        .write_all(b"GET /healthz HTTP/1.1\r\n")
        .await
        .unwrap();

    let started = Instant::now();
    tokio::time::timeout(PATIENCE, app.shutdown())
        .await
        .expect("the shutdown waited for the stuck client");
    let took = started.elapsed();
    assert!(
        took >= grace,
        "took {took:?}: the grace period was not given"
    );
    let (_, _) = read_until_closed(&mut stuck).await;
    let (_, _) = read_until_closed(&mut half_header).await;

    let store = herald::store::Store::connect(&app.storage, &Default::default())
        .await
        .unwrap();
    let message = store
        .get_message(&herald::TenantId::default_tenant(), &id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        message.status.as_str(),
        "sent",
        "the call in flight is recorded"
    );
    store.close().await;
}
