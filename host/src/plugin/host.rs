//! What a plugin instance can reach: the store state of its calls and what the host imports do.
//!
//! A plugin gets an empty WASI context (no environment, no preopened files, no sockets, stdin
//! closed, stderr captured for diagnostics) and exactly two capabilities of Herald's own: logging
//! and, for providers, outbound HTTP that the host performs with reqwest — only to hosts the
//! operator granted (scheme, host, port and the addresses a name resolves to, see
//! [`super::egress`]), with host-owned headers refused, redirects off (a redirect could leave the
//! grants), a timeout and a response-size cap.
//!
//! Both are implemented here once, in the host's own terms ([`super::model`]); each bindings
//! module adapts them to its contract version's import traits.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use wasmtime::component::ResourceTable;
use wasmtime::{StoreLimits, StoreLimitsBuilder};
use wasmtime_wasi::p2::pipe::MemoryOutputPipe;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

use super::egress::{self, Egress};
use super::model::{HttpError, HttpRequest, HttpResponse, LogLevel, MaybeSent, NotSent};

/// Bytes of guest stderr kept for diagnostics (a panic message fits).
pub(crate) const STDERR_CAPACITY: usize = 4096;
/// Longest plugin log line kept.
const MAX_LOG_LINE: usize = 2048;
/// Log lines one call may write; later ones are dropped, with one notice.
const MAX_LOG_LINES_PER_CALL: u32 = 100;
/// Log bytes one call may write (after each line's cut); later lines are dropped, with one notice.
const MAX_LOG_BYTES_PER_CALL: usize = 64 * 1024;

pub use super::redact::Redactor;

/// The outbound HTTP a provider plugin has been granted.
#[derive(Debug)]
pub struct HttpGrant {
    /// Shared client (connection pool) of the runtime.
    pub client: reqwest::Client,
    /// The operator's grants (scheme, host, port); `client` resolves names through them.
    pub rules: Egress,
    /// Timeout of one request.
    pub timeout: Duration,
    /// Largest response body accepted.
    pub max_response_bytes: usize,
}

/// The state of one store: one plugin instance, for one call or (instance reuse) for several
/// calls of one tenant under one plugin version; [`HostState::begin_call`] resets what is counted
/// per call.
pub struct HostState {
    wasi: WasiCtx,
    table: ResourceTable,
    /// Memory and instance limits applied by the store's limiter.
    pub limits: StoreLimits,
    plugin: Arc<str>,
    grant: Option<Arc<HttpGrant>>,
    /// Set once an outbound request of this call may have reached its server.
    made_request: Arc<AtomicBool>,
    redactor: Arc<Redactor>,
    stderr: MemoryOutputPipe,
    /// Where this call's stderr starts: what earlier calls on the instance wrote is not its own.
    stderr_from: usize,
    /// Log lines and bytes this call has written, against the per-call budget.
    logged: (u32, usize),
}

impl HostState {
    /// State for one call of `plugin`, with `memory_bytes` of linear memory at most.
    /// `made_request` is set when an outbound request of the call may have reached its server
    /// (requests refused before sending, or that never connected, leave it alone).
    pub fn new(
        plugin: Arc<str>,
        memory_bytes: usize,
        grant: Option<Arc<HttpGrant>>,
        redactor: Arc<Redactor>,
        made_request: Arc<AtomicBool>,
    ) -> Self {
        let stderr = MemoryOutputPipe::new(STDERR_CAPACITY);
        let mut builder = WasiCtx::builder();
        builder
            .allow_tcp(false)
            .allow_udp(false)
            .allow_ip_name_lookup(false)
            .stderr(stderr.clone());
        let limits = StoreLimitsBuilder::new()
            .memory_size(memory_bytes)
            .trap_on_grow_failure(true)
            .instances(16)
            .tables(16)
            // One linear memory per instance, so `memory_mb` bounds all of its memory.
            .memories(1)
            .build();
        Self {
            wasi: builder.build(),
            table: ResourceTable::new(),
            limits,
            plugin,
            grant,
            made_request,
            redactor,
            stderr,
            stderr_from: 0,
            logged: (0, 0),
        }
    }

    /// Starts a new call on this instance: no outbound request made yet, a fresh log budget, and
    /// stderr read from here on.
    pub fn begin_call(&mut self) {
        self.made_request.store(false, Ordering::SeqCst);
        self.logged = (0, 0);
        self.stderr_from = self.stderr.contents().len();
    }

    /// Whether an outbound request of the current call may have reached its server.
    pub fn made_request(&self) -> bool {
        self.made_request.load(Ordering::SeqCst)
    }

    /// Whether the guest's stderr is (nearly) at its cap, so a write may have been refused: a
    /// write that does not fit whole is refused, and a panic message rarely comes this close.
    pub fn stderr_full(&self) -> bool {
        self.stderr.contents().len() + 256 > STDERR_CAPACITY
    }

    /// What the guest wrote to stderr during the current call (a panic message, typically),
    /// redacted.
    pub fn stderr_text(&self) -> String {
        let bytes = self.stderr.contents();
        let own = bytes.get(self.stderr_from..).unwrap_or_default();
        self.redactor.redact(String::from_utf8_lossy(own).trim())
    }

    /// Performs a plugin's outbound request, if its grant allows it.
    ///
    /// Errors say whether the request can have reached the server. Everything refused before the
    /// client has the request (no grant, bad URL or method) and every failure to connect (DNS,
    /// connection refused, TLS handshake) is `not-sent`; anything after that may have been sent.
    /// A timeout counts as `maybe-sent` even if it struck while connecting: the host cannot tell.
    pub(crate) async fn http_send(
        &mut self,
        request: HttpRequest,
    ) -> Result<HttpResponse, HttpError> {
        let Some(grant) = self.grant.clone() else {
            return Err(HttpError::NotSent(NotSent::Denied(
                "this plugin has no network access".into(),
            )));
        };
        let url = url::Url::parse(&request.url).map_err(|e| {
            HttpError::NotSent(NotSent::InvalidRequest(format!("invalid URL: {e}")))
        })?;
        if let Err(why) = grant.rules.check_url(&url) {
            tracing::warn!(plugin = %self.plugin, "denied outbound request: {why}");
            return Err(HttpError::NotSent(NotSent::Denied(why)));
        }
        // Before any header map is built: `http`'s map panics past 32,768 entries.
        if let Err(why) = egress::check_headers(&request.headers) {
            tracing::warn!(plugin = %self.plugin, "refused outbound request: {why}");
            return Err(HttpError::NotSent(NotSent::InvalidRequest(why)));
        }
        let method = reqwest::Method::from_bytes(request.method.as_bytes()).map_err(|_| {
            HttpError::NotSent(NotSent::InvalidRequest(format!(
                "invalid method `{}`",
                request.method
            )))
        })?;
        let mut builder = grant
            .client
            .request(method, url)
            .timeout(grant.timeout)
            .body(request.body);
        for (name, value) in &request.headers {
            builder = builder.header(name.as_str(), value.as_str());
        }
        let built = builder
            .build()
            .map_err(|e| HttpError::NotSent(NotSent::InvalidRequest(self.describe(&e))))?;
        // From here on the request may reach the server, so a failure of this call is no longer
        // safe to retry blindly. Counted before awaiting, so a call cancelled mid-request (its
        // deadline) counts it too; uncounted when the client says it never connected. Calls into
        // one instance are sequential, so restoring the previous value cannot hide another request.
        let earlier = self.made_request.swap(true, Ordering::SeqCst);
        let mut response = match grant.client.execute(built).await {
            Ok(response) => response,
            // The resolver refused every address of a granted name: nothing was sent, and it is
            // a denial, not an outage.
            Err(e) if egress::refused_address(&e).is_some() => {
                self.made_request.store(earlier, Ordering::SeqCst);
                let why = self
                    .redactor
                    .redact(&egress::refused_address(&e).unwrap_or_default());
                tracing::warn!(plugin = %self.plugin, "denied outbound request: {why}");
                return Err(HttpError::NotSent(NotSent::Denied(why)));
            }
            Err(e) if e.is_connect() => {
                self.made_request.store(earlier, Ordering::SeqCst);
                return Err(HttpError::NotSent(NotSent::Unreachable(self.describe(&e))));
            }
            Err(e) => return Err(self.maybe_sent(&e)),
        };
        let status = response.status().as_u16();
        let headers = response
            .headers()
            .iter()
            .map(|(k, v)| {
                (
                    k.as_str().to_string(),
                    String::from_utf8_lossy(v.as_bytes()).into_owned(),
                )
            })
            .collect();
        let mut body = Vec::new();
        loop {
            match response.chunk().await {
                Ok(Some(chunk)) => {
                    if body.len() + chunk.len() > grant.max_response_bytes {
                        return Err(HttpError::MaybeSent(MaybeSent::ResponseTooLarge));
                    }
                    body.extend_from_slice(&chunk);
                }
                Ok(None) => break,
                Err(e) => return Err(self.maybe_sent(&e)),
            }
        }
        Ok(HttpResponse {
            status,
            headers,
            body,
        })
    }

    /// A failure once the request was on its way.
    fn maybe_sent(&self, error: &reqwest::Error) -> HttpError {
        HttpError::MaybeSent(if error.is_timeout() {
            MaybeSent::Timeout
        } else {
            MaybeSent::Transport(self.describe(error))
        })
    }

    /// A client error with its causes (`… : tcp connect error: Connection refused`), redacted:
    /// the top-level text alone rarely says what failed.
    fn describe(&self, error: &reqwest::Error) -> String {
        let mut text = error.to_string();
        let mut source = std::error::Error::source(error);
        while let Some(cause) = source {
            let cause_text = cause.to_string();
            if !text.contains(&cause_text) {
                text = format!("{text}: {cause_text}");
            }
            source = cause.source();
        }
        self.redactor.redact(&text)
    }

    /// Writes one plugin log line into the host's log: redacted, length-capped, with control
    /// characters escaped (so a plugin cannot forge a line of its own), within the call's budget
    /// of [`MAX_LOG_LINES_PER_CALL`] lines and [`MAX_LOG_BYTES_PER_CALL`] bytes.
    pub(crate) fn log(&mut self, level: LogLevel, message: String) {
        let plugin = &*self.plugin;
        let (lines, bytes) = self.logged;
        if lines >= MAX_LOG_LINES_PER_CALL || bytes >= MAX_LOG_BYTES_PER_CALL {
            if lines != u32::MAX {
                tracing::warn!(
                    plugin,
                    "plugin log budget for this call spent ({MAX_LOG_LINES_PER_CALL} lines or {MAX_LOG_BYTES_PER_CALL} bytes); its further lines are dropped"
                );
                self.logged.0 = u32::MAX;
            }
            return;
        }
        // Cut before redacting (with room for a secret straddling the cut), so a 12 MB line
        // costs the host no more than a short one.
        let mut window = MAX_LOG_LINE.saturating_add(self.redactor.longest());
        if window < message.len() {
            while !message.is_char_boundary(window) {
                window -= 1;
            }
            window -= self.redactor.partial_tail(&message[..window]);
        }
        let kept = &message[..window.min(message.len())];
        let mut message = escape_controls(&self.redactor.redact(kept));
        if message.len() > MAX_LOG_LINE {
            let mut cut = MAX_LOG_LINE;
            while !message.is_char_boundary(cut) {
                cut -= 1;
            }
            message.truncate(cut);
        }
        self.logged = (lines + 1, bytes.saturating_add(message.len()));
        match level {
            LogLevel::Trace => tracing::trace!(plugin, "{message}"),
            LogLevel::Debug => tracing::debug!(plugin, "{message}"),
            LogLevel::Info => tracing::info!(plugin, "{message}"),
            LogLevel::Warn => tracing::warn!(plugin, "{message}"),
            LogLevel::Error => tracing::error!(plugin, "{message}"),
        }
    }
}

/// `text` with CR, LF and every other control character written as an escape (`\n`, `\u{1b}`).
fn escape_controls(text: &str) -> String {
    if !text.chars().any(char::is_control) {
        return text.to_string();
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}

impl WasiView for HostState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Control characters in a log line are escaped, so a line cannot end early.
    #[test]
    fn log_text_is_escaped() {
        assert_eq!(escape_controls("a\r\nb\u{1b}c"), "a\\r\\nb\\u{1b}c");
        assert_eq!(escape_controls("plain"), "plain");
    }
}
