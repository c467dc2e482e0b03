//! `GET /metrics` against a real Herald: the message counters by tenant, provider and status
//! after deliveries through the local carrier, the queue gauges read from storage, plugin and
//! HTTP latency histograms, webhook verification failures, reloads; and the `[metrics]` guard.
//! Every exposition is checked by a small Prometheus text-format parser (below) before it is
//! read.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{Request, StatusCode};
use common::app::{ACCOUNT_SID, ADMIN_KEY, Backend, TestApp};
use herald::clock::ManualClock;
use herald::metrics::MetricsAccess;
use herald::{Herald, SendRequest, TenantId};
use serde_json::{Value, json};
use tower::ServiceExt;

on_both_backends!(
    counters_after_deliveries,
    queue_gauges_come_from_storage,
    bulk_rows_count_as_accepted,
);

/// A number the carrier delivers to, and one it fails (`…0070`).
const DELIVERED_TO: &str = "+14155552671";
const FAILED_TO: &str = "+14155550070";

/// Messages sent and delivered (or failed) through the carrier show in the counters by tenant,
/// provider and status; the plugin's `send` calls in its histogram; requests by route template
/// (never a raw id) and an unknown path as `unmatched`; a badly signed callback as a
/// verification failure; an admin reload by its outcome.
async fn counters_after_deliveries(backend: Backend) {
    let app = TestApp::start(backend).await;
    let mut delivered = Vec::new();
    for _ in 0..2 {
        let sent = app
            .send(json!({"to_number": DELIVERED_TO, "message": "hi"}))
            .await;
        delivered.push(sent["id"].as_str().unwrap().to_owned());
    }
    let failed = app
        .send(json!({"to_number": FAILED_TO, "message": "hi"}))
        .await;
    let failed = failed["id"].as_str().unwrap().to_owned();
    for id in &delivered {
        app.wait_for(id, "delivered").await;
    }
    app.wait_for(&failed, "failed").await;
    let (status, _) = app.get("/no/such/route").await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    // A status callback with the host's token but a forged provider signature.
    let token = app.herald.pipeline().callback_key().token(
        &TenantId::default_tenant(),
        &delivered[0],
        "twilio",
    );
    let url = format!(
        "{}/api/v1/sms/webhooks/twilio/status?message_id={}&token={token}",
        app.base, delivered[0]
    );
    let forged = app
        .client
        .post(&url)
        .header("X-Twilio-Signature", "bm90IGEgc2lnbmF0dXJl")
        .form(&[
            ("MessageSid", "SM0000"),
            ("MessageStatus", "failed"),
            ("AccountSid", ACCOUNT_SID),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status(), StatusCode::FORBIDDEN);

    let (status, reload) = app
        .admin(reqwest::Method::POST, "/admin/plugins/reload", None)
        .await;
    let outcome = match status {
        StatusCode::OK if reload["rejected"].as_object().is_none_or(|r| r.is_empty()) => "applied",
        StatusCode::OK => "partial",
        _ => "refused",
    };

    // The TestApp listens on 127.0.0.1: the default guard serves it without a key.
    let response = app
        .client
        .get(format!("{}/metrics", app.base))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert!(
        response.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain; version=0.0.4")
    );
    let text = response.text().await.unwrap();
    let metrics = Exposition::parse(&text);

    let by = |status: &'static str| {
        [
            ("tenant", "default"),
            ("provider", "twilio"),
            ("status", status),
        ]
    };
    assert_eq!(
        metrics.value("herald_messages_accepted_total", &by("queued")),
        Some(3.0),
        "{text}"
    );
    assert_eq!(
        metrics.value("herald_messages_dispatched_total", &by("sent")),
        Some(3.0),
        "{text}"
    );
    assert_eq!(
        metrics.value("herald_messages_final_total", &by("delivered")),
        Some(2.0),
        "{text}"
    );
    assert_eq!(
        metrics.value("herald_messages_final_total", &by("failed")),
        Some(1.0),
        "{text}"
    );
    assert_eq!(metrics.kind("herald_messages_final_total"), Some("counter"));

    assert_eq!(
        metrics.kind("herald_plugin_call_duration_seconds"),
        Some("histogram")
    );
    let sends = metrics
        .value(
            "herald_plugin_call_duration_seconds_count",
            &[("plugin", "twilio"), ("function", "send")],
        )
        .unwrap_or_default();
    assert!(sends >= 3.0, "{text}");
    let webhook_calls = metrics
        .value(
            "herald_plugin_call_duration_seconds_count",
            &[("plugin", "twilio"), ("function", "receive_webhook")],
        )
        .unwrap_or_default();
    assert!(webhook_calls >= 1.0, "{text}");

    let message_reads = metrics
        .value(
            "herald_http_request_duration_seconds_count",
            &[
                ("method", "GET"),
                ("route", "/api/v1/sms/messages/{id}"),
                ("status", "200"),
            ],
        )
        .unwrap_or_default();
    assert!(message_reads >= 3.0, "{text}");
    assert_eq!(
        metrics.value(
            "herald_http_request_duration_seconds_count",
            &[("method", "GET"), ("route", "unmatched"), ("status", "404")],
        ),
        Some(1.0),
        "{text}"
    );
    assert!(
        !text.contains(&delivered[0][..]),
        "a message id leaked into a label: {text}"
    );

    assert_eq!(
        metrics.value(
            "herald_webhook_verification_failures_total",
            &[("provider", "twilio")]
        ),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        metrics.value("herald_reloads_total", &[("outcome", outcome)]),
        Some(1.0),
        "{reload} {text}"
    );
    // Nothing is left to send.
    assert_eq!(
        metrics.value("herald_queue_depth", &[]),
        Some(0.0),
        "{text}"
    );
    assert_eq!(
        metrics.value("herald_queue_oldest_due_age_seconds", &[]),
        Some(0.0),
        "{text}"
    );
    app.stop().await;
}

/// A bulk batch's accepted rows are counted once the batch is queued, however far the
/// dispatcher has taken them by then; a refused row is not.
async fn bulk_rows_count_as_accepted(backend: Backend) {
    let app = TestApp::start(backend).await;
    let (status, answer) = app
        .post(
            "/api/v1/sms/send-bulk",
            &json!({
                "batch_name": "metrics",
                "recipients": [
                    {"to_number": "+14155550101", "message": "one"},
                    {"to_number": "+14155550102", "message": "two"},
                    {"to_number": "+12", "message": "bad number"},
                    {"to_number": "+14155550103", "message": "three"},
                ],
            }),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{answer}");
    assert_eq!(answer["accepted"], 3, "{answer}");
    let text = app
        .client
        .get(format!("{}/metrics", app.base))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let metrics = Exposition::parse(&text);
    assert_eq!(
        metrics.value(
            "herald_messages_accepted_total",
            &[
                ("tenant", "default"),
                ("provider", "twilio"),
                ("status", "queued")
            ]
        ),
        Some(3.0),
        "{text}"
    );
    app.stop().await;
}

/// With the clock held and no dispatcher running, one message due now and one scheduled an hour
/// ahead: the queue holds two entries, and five seconds later the due one has waited five.
async fn queue_gauges_come_from_storage(backend: Backend) {
    let (storage, _dir) = common::app::storage_url(backend).await;
    let start = herald::store::now_millis();
    let clock = ManualClock::new(start);
    let herald = built(&storage, Some(clock.clone()), |_| {}).await;
    let tenant = TenantId::default_tenant();
    herald
        .send(
            &tenant,
            SendRequest::text(DELIVERED_TO.parse().unwrap(), "now"),
        )
        .await
        .unwrap();
    let mut later = SendRequest::text(DELIVERED_TO.parse().unwrap(), "later");
    later.send_at = Some(start + 3_600_000);
    herald.send(&tenant, later).await.unwrap();
    clock.advance(5_000);

    let (status, text) = scrape(&herald, Some(loopback()), None).await;
    assert_eq!(status, StatusCode::OK, "{text}");
    let metrics = Exposition::parse(&text);
    assert_eq!(
        metrics.value("herald_queue_depth", &[]),
        Some(2.0),
        "{text}"
    );
    assert_eq!(
        metrics.value("herald_queue_oldest_due_age_seconds", &[]),
        Some(5.0),
        "{text}"
    );
    assert_eq!(
        metrics.value(
            "herald_messages_accepted_total",
            &[
                ("tenant", "default"),
                ("provider", "twilio"),
                ("status", "scheduled")
            ]
        ),
        Some(1.0),
        "{text}"
    );
    herald.close().await;
}

/// The default guard serves a loopback peer without a key and wants the admin key from any
/// other peer (or from a request whose peer is unknown); `admin` wants it from everyone,
/// `open` from no one, no admin key configured is `403 admin_disabled`, and `enabled = false`
/// is `404`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_guard_follows_the_configuration() {
    let (storage, _dir) = common::app::storage_url(Backend::Sqlite).await;
    let remote = SocketAddr::from(([192, 0, 2, 7], 40_000));

    let herald = built(&storage, None, |_| {}).await;
    assert_eq!(
        scrape(&herald, Some(loopback()), None).await.0,
        StatusCode::OK
    );
    let mapped: SocketAddr = "[::ffff:127.0.0.1]:40000".parse().unwrap();
    assert_eq!(scrape(&herald, Some(mapped), None).await.0, StatusCode::OK);
    refused(
        &herald,
        Some(remote),
        None,
        StatusCode::UNAUTHORIZED,
        "unauthorized",
    )
    .await;
    refused(
        &herald,
        None,
        None,
        StatusCode::UNAUTHORIZED,
        "unauthorized",
    )
    .await;
    refused(
        &herald,
        Some(remote),
        Some("wrong"),
        StatusCode::UNAUTHORIZED,
        "unauthorized",
    )
    .await;
    let (status, text) = scrape(&herald, Some(remote), Some(ADMIN_KEY)).await;
    assert_eq!(status, StatusCode::OK, "{text}");
    Exposition::parse(&text);
    herald.close().await;

    let admin_only = built(&storage, None, |c| c.metrics.access = MetricsAccess::Admin).await;
    refused(
        &admin_only,
        Some(loopback()),
        None,
        StatusCode::UNAUTHORIZED,
        "unauthorized",
    )
    .await;
    assert_eq!(
        scrape(&admin_only, Some(loopback()), Some(ADMIN_KEY))
            .await
            .0,
        StatusCode::OK
    );
    admin_only.close().await;

    let open = built(&storage, None, |c| c.metrics.access = MetricsAccess::Open).await;
    assert_eq!(scrape(&open, Some(remote), None).await.0, StatusCode::OK);
    open.close().await;

    let no_admin = built(&storage, None, |c| c.server.admin_key.clear()).await;
    refused(
        &no_admin,
        Some(remote),
        None,
        StatusCode::FORBIDDEN,
        "admin_disabled",
    )
    .await;
    assert_eq!(
        scrape(&no_admin, Some(loopback()), None).await.0,
        StatusCode::OK
    );
    no_admin.close().await;

    let off = built(&storage, None, |c| c.metrics.enabled = false).await;
    refused(
        &off,
        Some(loopback()),
        Some(ADMIN_KEY),
        StatusCode::NOT_FOUND,
        "not_found",
    )
    .await;
    off.close().await;
}

/// The parser itself refuses what is not the text format, so the checks above can fail.
#[test]
fn the_parser_refuses_malformed_expositions() {
    for bad in [
        "metric{a=\"1\" 1\n",
        "metric{a=1} 1\n",
        "1metric 1\n",
        "metric one\n",
        "# TYPE m histogram\nm_bucket{le=\"1\"} 2\nm_bucket{le=\"+Inf\"} 1\nm_sum 1\nm_count 1\n",
        "# TYPE m counter\n# TYPE m counter\nm 1\n",
        "m 1\n# TYPE m counter\n",
    ] {
        assert!(
            std::panic::catch_unwind(|| Exposition::parse(bad)).is_err(),
            "accepted {bad:?}"
        );
    }
    let good = Exposition::parse(
        "# HELP m a \\\\ help\n# TYPE m histogram\nm_bucket{le=\"1\",x=\"a\\\"b\"} 1\nm_bucket{le=\"+Inf\",x=\"a\\\"b\"} 2\nm_sum{x=\"a\\\"b\"} 3.5\nm_count{x=\"a\\\"b\"} 2\n",
    );
    assert_eq!(good.value("m_count", &[("x", "a\"b")]), Some(2.0));
}

/// The loopback peer of a scrape from this machine.
fn loopback() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 40_000))
}

/// A Herald on `storage` (not running: nothing is dispatched), with the test configuration
/// after `tweak`.
async fn built(
    storage: &str,
    clock: Option<Arc<ManualClock>>,
    tweak: impl FnOnce(&mut herald::config::Config),
) -> Herald {
    // Nothing is sent: the carrier's address only has to be a valid grant.
    let mut config = common::app::config("http://127.0.0.1:8080", "http://127.0.0.1:9", storage);
    tweak(&mut config);
    let mut builder = Herald::builder().config(config);
    if let Some(clock) = clock {
        builder = builder.clock(clock);
    }
    builder.build().await.unwrap()
}

/// `GET /metrics` through the router, from `peer` (none: a router served without connect
/// info), with `key` as the bearer token.
async fn scrape(
    herald: &Herald,
    peer: Option<SocketAddr>,
    key: Option<&str>,
) -> (StatusCode, String) {
    let mut request = Request::get("/metrics");
    if let Some(key) = key {
        request = request.header("authorization", format!("Bearer {key}"));
    }
    let mut request = request.body(Body::empty()).unwrap();
    if let Some(peer) = peer {
        request.extensions_mut().insert(ConnectInfo(peer));
    }
    let response = herald.router().oneshot(request).await.unwrap();
    let status = response.status();
    let body = axum::body::to_bytes(response.into_body(), 1 << 22)
        .await
        .unwrap();
    (status, String::from_utf8(body.to_vec()).unwrap())
}

/// Asserts that the scrape is refused with `status` and the API's error shape naming `code`.
async fn refused(
    herald: &Herald,
    peer: Option<SocketAddr>,
    key: Option<&str>,
    status: StatusCode,
    code: &str,
) {
    let (got, text) = scrape(herald, peer, key).await;
    assert_eq!(got, status, "{text}");
    let body: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(body["error"]["code"], code, "{body}");
    assert!(body["error"]["message"].is_string(), "{body}");
}

/// A label set without `le`, as the key of a histogram's series.
type Labels = Vec<(String, String)>;

/// One sample of an exposition.
#[derive(Debug)]
struct Sample {
    name: String,
    labels: BTreeMap<String, String>,
    value: f64,
}

/// A parsed Prometheus text exposition (format 0.0.4). Parsing panics on anything the format
/// does not allow: a bad name, label or value, a `# TYPE` after its samples or twice, histogram
/// buckets that are not cumulative or disagree with their count.
#[derive(Debug, Default)]
struct Exposition {
    types: BTreeMap<String, String>,
    samples: Vec<Sample>,
}

impl Exposition {
    fn parse(text: &str) -> Self {
        let mut parsed = Self::default();
        let mut seen_families = std::collections::BTreeSet::new();
        for line in text.lines() {
            if line.trim().is_empty() {
                continue;
            }
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                let (name, kind) = rest.split_once(' ').expect("a TYPE line names its type");
                assert!(valid_name(name), "bad metric name {name:?}");
                assert!(
                    ["counter", "gauge", "histogram", "summary", "untyped"].contains(&kind),
                    "unknown type {kind:?}"
                );
                assert!(
                    !seen_families.contains(name),
                    "TYPE of {name} after its samples"
                );
                assert!(
                    parsed
                        .types
                        .insert(name.to_owned(), kind.to_owned())
                        .is_none(),
                    "TYPE of {name} twice"
                );
                continue;
            }
            if let Some(rest) = line.strip_prefix("# HELP ") {
                let name = rest.split(' ').next().unwrap_or_default();
                assert!(valid_name(name), "bad metric name in HELP {name:?}");
                continue;
            }
            if line.starts_with('#') {
                continue;
            }
            let sample = parse_sample(line);
            seen_families.insert(parsed.family(&sample.name));
            parsed.samples.push(sample);
        }
        parsed.check_histograms();
        parsed
    }

    /// The family a sample belongs to (a histogram's `_bucket`, `_sum`, `_count` included).
    fn family(&self, name: &str) -> String {
        for suffix in ["_bucket", "_sum", "_count"] {
            if let Some(base) = name.strip_suffix(suffix)
                && self
                    .types
                    .get(base)
                    .is_some_and(|t| t == "histogram" || t == "summary")
            {
                return base.to_owned();
            }
        }
        name.to_owned()
    }

    fn check_histograms(&self) {
        for (family, _) in self.types.iter().filter(|(_, t)| *t == "histogram") {
            let mut series: BTreeMap<Labels, Vec<(f64, f64)>> = BTreeMap::new();
            for sample in self
                .samples
                .iter()
                .filter(|s| s.name == format!("{family}_bucket"))
            {
                let le = sample.labels.get("le").expect("a bucket has `le`");
                let bound = if le == "+Inf" {
                    f64::INFINITY
                } else {
                    le.parse().unwrap()
                };
                let rest = sample
                    .labels
                    .iter()
                    .filter(|(k, _)| *k != "le")
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect();
                series.entry(rest).or_default().push((bound, sample.value));
            }
            for (labels, mut buckets) in series {
                buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
                assert!(
                    buckets.windows(2).all(|w| w[0].1 <= w[1].1),
                    "{family} buckets are not cumulative: {buckets:?}"
                );
                let (last, total) = *buckets.last().unwrap();
                assert!(last.is_infinite(), "{family} has no +Inf bucket");
                let count = self
                    .samples
                    .iter()
                    .find(|s| {
                        s.name == format!("{family}_count")
                            && s.labels
                                .iter()
                                .map(|(k, v)| (k.clone(), v.clone()))
                                .eq(labels.iter().cloned())
                    })
                    .unwrap_or_else(|| panic!("{family} has no _count for {labels:?}"));
                assert_eq!(
                    count.value, total,
                    "{family}: +Inf bucket and _count disagree"
                );
            }
        }
    }

    /// The type a family was declared with.
    fn kind(&self, family: &str) -> Option<&str> {
        self.types.get(family).map(String::as_str)
    }

    /// The value of the sample `name` whose labels are exactly `labels`.
    fn value(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        let wanted: BTreeMap<String, String> = labels
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        self.samples
            .iter()
            .find(|s| s.name == name && s.labels == wanted)
            .map(|s| s.value)
    }
}

fn valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == ':')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

fn parse_sample(line: &str) -> Sample {
    let name_end = line
        .find(['{', ' '])
        .unwrap_or_else(|| panic!("no value in {line:?}"));
    let name = &line[..name_end];
    assert!(valid_name(name), "bad metric name in {line:?}");
    let mut rest = &line[name_end..];
    let mut labels = BTreeMap::new();
    if let Some(after) = rest.strip_prefix('{') {
        let mut chars = after.char_indices().peekable();
        loop {
            // Skip to the next label name, or the end of the set.
            let Some(&(start, c)) = chars.peek() else {
                panic!("unterminated labels in {line:?}")
            };
            if c == '}' {
                rest = &after[start + 1..];
                break;
            }
            let eq = after[start..]
                .find('=')
                .unwrap_or_else(|| panic!("label without `=` in {line:?}"))
                + start;
            let label = &after[start..eq];
            assert!(
                valid_name(label) && !label.contains(':'),
                "bad label name {label:?} in {line:?}"
            );
            while chars.peek().is_some_and(|&(i, _)| i <= eq) {
                chars.next();
            }
            assert_eq!(
                chars.next().map(|(_, c)| c),
                Some('"'),
                "unquoted value in {line:?}"
            );
            let mut value = String::new();
            loop {
                match chars.next().map(|(_, c)| c) {
                    Some('\\') => match chars.next().map(|(_, c)| c) {
                        Some('\\') => value.push('\\'),
                        Some('"') => value.push('"'),
                        Some('n') => value.push('\n'),
                        other => panic!("bad escape {other:?} in {line:?}"),
                    },
                    Some('"') => break,
                    Some(c) => value.push(c),
                    None => panic!("unterminated label value in {line:?}"),
                }
            }
            assert!(
                labels.insert(label.to_owned(), value).is_none(),
                "label {label} twice in {line:?}"
            );
            match chars.peek().map(|&(_, c)| c) {
                Some(',') => {
                    chars.next();
                }
                Some('}') => {}
                other => panic!("expected `,` or `}}`, found {other:?} in {line:?}"),
            }
        }
    }
    let mut fields = rest
        .strip_prefix(' ')
        .unwrap_or_else(|| panic!("no space before the value in {line:?}"))
        .split(' ');
    let value = match fields.next().unwrap_or_default() {
        "+Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        "NaN" => f64::NAN,
        number => number
            .parse()
            .unwrap_or_else(|_| panic!("bad value {number:?} in {line:?}")),
    };
    if let Some(timestamp) = fields.next() {
        timestamp
            .parse::<i64>()
            .unwrap_or_else(|_| panic!("bad timestamp in {line:?}"));
    }
    assert!(fields.next().is_none(), "trailing fields in {line:?}");
    Sample {
        name: name.to_owned(),
        labels,
        value,
    }
}
