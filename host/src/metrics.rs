//! Herald's Prometheus metrics: one recorder per [`Herald`](crate::Herald), rendered in the
//! Prometheus text format on request (`GET /metrics`, see [`crate::api::metrics`]).
//!
//! Why a recorder per instance and not the `metrics` crate's global one: a process has only one
//! global recorder, installed once. Several Heralds in one process (every feature test, an
//! embedder running two) would then either share one exposition (each scrape showing the other's
//! counters) or fail to install theirs. So each Herald builds its own
//! [`PrometheusRecorder`] and records into it explicitly: every recording method below runs the
//! `metrics` macros under [`metrics::with_local_recorder`] for the length of one synchronous
//! call, which never spans an `.await`, so it is correct on any task and any thread. The
//! process-wide recorder is left alone for the embedder's own metrics.
//!
//! Label values are bounded: tenants are ids the admin API created, plugins and providers are
//! configured names, routes are the router's templates (`route="unmatched"` otherwise), and any
//! value that is not a short identifier is replaced by `invalid` ([`label`]), so no client input
//! can grow the number of series.
//!
//! Histograms grow between scrapes until they are folded into their buckets; `Herald::run`
//! calls [`Metrics::upkeep`] every few seconds so memory stays flat when nobody scrapes.

use std::sync::Arc;
use std::time::Duration;

use metrics::{
    Unit, counter, describe_counter, describe_gauge, describe_histogram, gauge, histogram,
};
use metrics_exporter_prometheus::{
    Matcher, PrometheusBuilder, PrometheusHandle, PrometheusRecorder,
};

use serde::{Deserialize, Serialize};

use crate::domain::{MessageStatus, TenantId};

/// Messages accepted (stored and queued or scheduled); labels `tenant`, `provider`, `status`.
pub const ACCEPTED: &str = "herald_messages_accepted_total";
/// Delivery attempts recorded, by the status the attempt left the message in (`sent`, `queued`
/// for a retry, `failed`, `unknown`, …); labels `tenant`, `provider`, `status`.
pub const DISPATCHED: &str = "herald_messages_dispatched_total";
/// Messages that reached a final status (`delivered`, `undelivered`, `failed`, `canceled`;
/// `read` when no `delivered` came first),
/// from an attempt, a provider's report or a single message's cancel (a batch's cancel is not
/// counted); labels `tenant`, `provider`, `status`.
pub const FINAL: &str = "herald_messages_final_total";
/// Queue entries (due, scheduled or leased), read from storage at scrape time.
pub const QUEUE_DEPTH: &str = "herald_queue_depth";
/// How long the oldest due, unclaimed queue entry has been due, in seconds (0 when none is).
pub const QUEUE_OLDEST_DUE_AGE: &str = "herald_queue_oldest_due_age_seconds";
/// Plugin call latency, in seconds; labels `plugin`, `function`.
pub const PLUGIN_CALL_DURATION: &str = "herald_plugin_call_duration_seconds";
/// HTTP request latency, in seconds; labels `method`, `route` (the route template), `status`.
pub const HTTP_REQUEST_DURATION: &str = "herald_http_request_duration_seconds";
/// Provider webhooks refused as not genuine (`403 invalid_signature`); label `provider`.
pub const WEBHOOK_VERIFICATION_FAILURES: &str = "herald_webhook_verification_failures_total";
/// Configuration reloads (admin endpoint, file watch, SIGHUP); label `outcome`: `applied`,
/// `partial` (some plugin or the routing was rejected and kept its old version) or `refused`
/// (the configuration did not load).
pub const RELOADS: &str = "herald_reloads_total";
/// Money spent in a budget's current period, in micros; labels `tenant`, `budget`, `currency`.
pub const BUDGET_SPENT: &str = "herald_budget_spent_micros";
/// Money reserved (estimated, not yet reconciled) in a budget's current period, in micros;
/// labels `tenant`, `budget`, `currency`.
pub const BUDGET_RESERVED: &str = "herald_budget_reserved_micros";
/// Budget alert thresholds crossed; labels `tenant`, `budget`, `threshold` (percent).
pub const BUDGET_ALERTS: &str = "herald_budget_alerts_total";
/// Live event streams (`/delivery/stream`) ended because their client fell too far behind;
/// label `tenant`.
pub const EVENT_STREAMS_DROPPED: &str = "herald_event_streams_dropped_total";

/// The `[metrics]` configuration section: whether `GET /metrics` is served and to whom. Read
/// at each request, so a reload applies it at once.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MetricsConfig {
    /// Whether `GET /metrics` answers (default `true`); when off it is `404 not_found`.
    pub enabled: bool,
    /// Who may scrape (default `loopback`).
    pub access: MetricsAccess,
}

impl Default for MetricsConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            access: MetricsAccess::Loopback,
        }
    }
}

/// Who may read `GET /metrics`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MetricsAccess {
    /// A client on a loopback address (`127.0.0.0/8`, `::1`) without a key; anyone else with
    /// the admin key. Behind a proxy on the same host every client looks local: use `admin`.
    #[default]
    Loopback,
    /// Only with the admin key (`Authorization: Bearer <server.admin_key>`).
    Admin,
    /// Anyone who can reach the server.
    Open,
}

/// The route label of a request no route matched.
pub const UNMATCHED_ROUTE: &str = "unmatched";

/// Latency buckets in seconds, from 1 ms (a cached read) to 30 s (a plugin's longest timeout).
const LATENCY_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

/// The longest label value kept as given.
const MAX_LABEL_LEN: usize = 64;

/// One Herald's metrics: its own recorder and the handle that renders it. Cheap to clone;
/// clones record into the same recorder.
#[derive(Clone)]
pub struct Metrics {
    recorder: Arc<PrometheusRecorder>,
    handle: PrometheusHandle,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// A fresh recorder with every Herald metric described and latencies as histograms.
    #[must_use]
    pub fn new() -> Self {
        let with_buckets = [PLUGIN_CALL_DURATION, HTTP_REQUEST_DURATION]
            .into_iter()
            .try_fold(PrometheusBuilder::new(), |builder, name| {
                builder.set_buckets_for_metric(Matcher::Full(name.to_owned()), LATENCY_BUCKETS)
            });
        // Only an empty bucket list is refused, and ours is not empty; were it, latencies would
        // render as summaries instead.
        let builder = with_buckets.unwrap_or_else(|_| PrometheusBuilder::new());
        let recorder = Arc::new(builder.build_recorder());
        let handle = recorder.handle();
        let metrics = Self { recorder, handle };
        metrics.record(describe);
        metrics
    }

    /// Runs `f` with this instance's recorder as the current one: the `metrics` macros inside
    /// record here. `f` is synchronous, so the recorder cannot leak to other tasks.
    pub fn record<T>(&self, f: impl FnOnce() -> T) -> T {
        metrics::with_local_recorder(self.recorder.as_ref(), f)
    }

    /// The exposition in the Prometheus text format.
    #[must_use]
    pub fn render(&self) -> String {
        self.handle.render()
    }

    /// Folds recorded histogram samples into their buckets (see the module docs).
    pub fn upkeep(&self) {
        self.handle.run_upkeep();
    }

    /// A message was accepted for `tenant`, to go through `provider`, as `status`.
    pub fn accepted(&self, tenant: &TenantId, provider: &str, status: MessageStatus) {
        self.accepted_many(tenant, provider, status, 1);
    }

    /// `n` messages (a bulk batch's rows) were accepted at once, like [`Metrics::accepted`].
    pub fn accepted_many(&self, tenant: &TenantId, provider: &str, status: MessageStatus, n: u64) {
        self.message_counter(ACCEPTED, tenant, provider, status, n);
    }

    /// An attempt through `provider` was recorded and left the message in `status`; a final
    /// status is counted in [`FINAL`] too.
    pub fn dispatched(&self, tenant: &TenantId, provider: &str, status: MessageStatus) {
        self.message_counter(DISPATCHED, tenant, provider, status, 1);
        if status.is_final() {
            self.finished(tenant, provider, status);
        }
    }

    /// A message of `tenant` sent through `provider` reached the final `status`.
    pub fn finished(&self, tenant: &TenantId, provider: &str, status: MessageStatus) {
        self.message_counter(FINAL, tenant, provider, status, 1);
    }

    fn message_counter(
        &self,
        name: &'static str,
        tenant: &TenantId,
        provider: &str,
        status: MessageStatus,
        n: u64,
    ) {
        let labels = [
            ("tenant", label(tenant.as_str())),
            ("provider", label(provider)),
            ("status", status.as_str().to_owned()),
        ];
        self.record(|| counter!(name, &labels).increment(n));
    }

    /// The queue as storage reported it at scrape time.
    pub fn queue(&self, depth: u64, oldest_due_age: Duration) {
        self.record(|| {
            gauge!(QUEUE_DEPTH).set(depth as f64);
            gauge!(QUEUE_OLDEST_DUE_AGE).set(oldest_due_age.as_secs_f64());
        });
    }

    /// One call of `function` on `plugin` took `elapsed` (failures included).
    pub fn plugin_call(&self, plugin: &str, function: &'static str, elapsed: Duration) {
        let labels = [("plugin", label(plugin)), ("function", function.to_owned())];
        self.record(|| histogram!(PLUGIN_CALL_DURATION, &labels).record(elapsed));
    }

    /// A request to `route` (a route template, or [`UNMATCHED_ROUTE`]) was answered `status`
    /// after `elapsed`.
    pub fn http_request(&self, method: &str, route: &str, status: u16, elapsed: Duration) {
        let method = match method {
            "GET" | "HEAD" | "POST" | "PUT" | "PATCH" | "DELETE" | "OPTIONS" => method,
            _ => "other",
        };
        let labels = [
            ("method", method.to_owned()),
            ("route", route_label(route)),
            ("status", status.to_string()),
        ];
        self.record(|| histogram!(HTTP_REQUEST_DURATION, &labels).record(elapsed));
    }

    /// A webhook claiming to come from `provider` failed verification.
    pub fn webhook_verification_failed(&self, provider: &str) {
        let labels = [("provider", label(provider))];
        self.record(|| counter!(WEBHOOK_VERIFICATION_FAILURES, &labels).increment(1));
    }

    /// A configuration reload ended with `outcome` (see [`RELOADS`]).
    pub fn reload(&self, outcome: ReloadOutcome) {
        let labels = [("outcome", outcome.as_str())];
        self.record(|| counter!(RELOADS, &labels).increment(1));
    }

    /// A budget's usage now: `spent` and `reserved` micros of `currency` in its period.
    pub fn budget_usage(
        &self,
        tenant: &TenantId,
        budget: &str,
        currency: &str,
        spent: i64,
        reserved: i64,
    ) {
        let labels = [
            ("tenant", label(tenant.as_str())),
            ("budget", label(budget)),
            ("currency", label(currency)),
        ];
        // A gauge is an f64: exact for amounts up to 2^53 micros (about 9 billion units).
        self.record(|| {
            gauge!(BUDGET_SPENT, &labels).set(spent as f64);
            gauge!(BUDGET_RESERVED, &labels).set(reserved as f64);
        });
    }

    /// `total` alerts of `budget` at `threshold` fired so far, as the store counts them.
    pub fn budget_alerts_fired(&self, tenant: &str, budget: &str, threshold: i32, total: u64) {
        let labels = [
            ("tenant", label(tenant)),
            ("budget", label(budget)),
            ("threshold", threshold.to_string()),
        ];
        self.record(|| counter!(BUDGET_ALERTS, &labels).absolute(total));
    }

    /// A live event stream of `tenant` was dropped as too slow.
    pub fn event_stream_dropped(&self, tenant: &TenantId) {
        let labels = [("tenant", label(tenant.as_str()))];
        self.record(|| counter!(EVENT_STREAMS_DROPPED, &labels).increment(1));
    }
}

/// How a configuration reload ended, as [`RELOADS`] counts it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReloadOutcome {
    /// Everything in the new configuration is in force.
    Applied,
    /// The configuration is in force, but a plugin or the routing was rejected and its previous
    /// version keeps serving.
    Partial,
    /// The configuration did not load or validate; the running one stays whole.
    Refused,
}

impl ReloadOutcome {
    /// The label value.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Applied => "applied",
            Self::Partial => "partial",
            Self::Refused => "refused",
        }
    }
}

/// Describes every metric, so each has its `# HELP` and `# TYPE` from the first scrape on.
fn describe() {
    describe_counter!(
        ACCEPTED,
        "Messages accepted (stored and queued or scheduled)."
    );
    describe_counter!(
        DISPATCHED,
        "Delivery attempts recorded, by the status the attempt left the message in."
    );
    describe_counter!(FINAL, "Messages that reached a final status.");
    describe_gauge!(QUEUE_DEPTH, "Queue entries: due, scheduled or leased.");
    describe_gauge!(
        QUEUE_OLDEST_DUE_AGE,
        Unit::Seconds,
        "How long the oldest due, unclaimed queue entry has been due."
    );
    describe_histogram!(
        PLUGIN_CALL_DURATION,
        Unit::Seconds,
        "Plugin call latency, by plugin and function."
    );
    describe_histogram!(
        HTTP_REQUEST_DURATION,
        Unit::Seconds,
        "HTTP request latency, by route template and status."
    );
    describe_counter!(
        WEBHOOK_VERIFICATION_FAILURES,
        "Provider webhooks refused as not genuine."
    );
    describe_counter!(RELOADS, "Configuration reloads, by outcome.");
    describe_gauge!(
        BUDGET_SPENT,
        "Money spent in a budget's current period, in micros of its currency."
    );
    describe_gauge!(
        BUDGET_RESERVED,
        "Money reserved in a budget's current period, in micros of its currency."
    );
    describe_counter!(BUDGET_ALERTS, "Budget alert thresholds crossed.");
    describe_counter!(
        EVENT_STREAMS_DROPPED,
        "Live event streams ended because their client fell too far behind."
    );
}

/// `value` as a label value when it is a short identifier (ASCII letters, digits, `_`, `-`,
/// `.`, `:`; at most 64 bytes), else `invalid`: what reaches a label from outside cannot
/// create unbounded series, nor anything a scraper would misread.
#[must_use]
pub fn label(value: &str) -> String {
    let plain = !value.is_empty()
        && value.len() <= MAX_LABEL_LEN
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.' | b':'));
    if plain { value } else { "invalid" }.to_owned()
}

/// A route template as a label value: the router's own templates (`/api/v1/sms/messages/{id}`)
/// are bounded by the router; anything longer than a route could be is `invalid`.
fn route_label(route: &str) -> String {
    let plain = route.len() <= 128
        && route
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"/_-.{}*:".contains(&b));
    if plain { route } else { "invalid" }.to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Identifiers pass as they are; anything else a client could choose is `invalid`.
    #[test]
    fn labels_are_bounded() {
        assert_eq!(label("twilio"), "twilio");
        assert_eq!(label("ten_01HZX"), "ten_01HZX");
        assert_eq!(label(""), "invalid");
        assert_eq!(label("a\"b"), "invalid");
        assert_eq!(label(&"x".repeat(65)), "invalid");
        assert_eq!(
            route_label("/api/v1/sms/messages/{id}"),
            "/api/v1/sms/messages/{id}"
        );
        assert_eq!(route_label("/a b"), "invalid");
    }

    /// Two instances keep their own counts: one's recordings never show in the other's
    /// exposition.
    #[test]
    fn instances_are_separate() {
        let one = Metrics::new();
        let two = Metrics::new();
        let tenant = TenantId::default_tenant();
        one.accepted(&tenant, "twilio", MessageStatus::Queued);
        one.accepted(&tenant, "twilio", MessageStatus::Queued);
        assert!(
            one.render().contains(
                "herald_messages_accepted_total{tenant=\"default\",provider=\"twilio\",status=\"queued\"} 2"
            ),
            "{}",
            one.render()
        );
        assert!(!two.render().contains(ACCEPTED), "{}", two.render());
    }

    /// `[metrics]` defaults to enabled and loopback, takes `admin` and `open`, and refuses an
    /// unknown key or access; the example configuration loads with its `[metrics]` section.
    #[test]
    fn the_metrics_section_loads() {
        use figment::providers::{Format, Toml};
        let load = |text: &str| {
            figment::Figment::from(Toml::string(text))
                .extract::<crate::config::Config>()
                .map_err(Box::new)
        };
        assert_eq!(load("").unwrap().metrics, MetricsConfig::default());
        let config = load("[metrics]\nenabled = false\naccess = \"admin\"\n").unwrap();
        assert!(!config.metrics.enabled);
        assert_eq!(config.metrics.access, MetricsAccess::Admin);
        assert_eq!(
            load("[metrics]\naccess = \"open\"\n")
                .unwrap()
                .metrics
                .access,
            MetricsAccess::Open
        );
        assert!(load("[metrics]\naccess = \"anyone\"\n").is_err());
        assert!(load("[metrics]\nport = 9100\n").is_err());
        let example =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/herald.toml");
        let example = std::fs::read_to_string(example).unwrap();
        assert_eq!(load(&example).unwrap().metrics, MetricsConfig::default());
    }

    /// The budget metrics the ledger sets render under their names, with bounded labels.
    #[test]
    fn budget_metrics_render() {
        let metrics = Metrics::new();
        let tenant = TenantId::default_tenant();
        metrics.budget_usage(&tenant, "monthly", "USD", 1_500_000, 250_000);
        metrics.budget_alerts_fired(tenant.as_str(), "monthly", 80, 1);
        let text = metrics.render();
        for line in [
            "herald_budget_spent_micros{tenant=\"default\",budget=\"monthly\",currency=\"USD\"} 1500000",
            "herald_budget_reserved_micros{tenant=\"default\",budget=\"monthly\",currency=\"USD\"} 250000",
            "herald_budget_alerts_total{tenant=\"default\",budget=\"monthly\",threshold=\"80\"} 1",
            "# TYPE herald_budget_spent_micros gauge",
        ] {
            assert!(text.contains(line), "{line} in {text}");
        }
    }
}
