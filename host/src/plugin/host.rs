//! What a plugin instance can reach: the per-call store state and what the host imports do.
//!
//! A plugin gets an empty WASI context (no environment, no preopened files, no sockets, stdin
//! closed, stderr captured for diagnostics) and exactly two capabilities of Herald's own: logging
//! and, for providers, outbound HTTP that the host performs with reqwest — only to hosts the
//! operator granted, with redirects off (a redirect could leave the allow-list), a timeout and a
//! response-size cap.
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

use super::model::{HttpError, HttpRequest, HttpResponse, LogLevel, MaybeSent, NotSent};

/// Bytes of guest stderr kept for diagnostics (a panic message fits).
const STDERR_CAPACITY: usize = 4096;
/// Longest plugin log line kept.
const MAX_LOG_LINE: usize = 2048;

/// Replaces secret setting values with `[redacted]` wherever plugin output might echo them.
#[derive(Debug, Default)]
pub struct Redactor {
    secrets: Vec<String>,
}

impl Redactor {
    /// A redactor for these secret values (empty values are ignored).
    pub fn new(secrets: impl IntoIterator<Item = String>) -> Self {
        let mut secrets: Vec<String> = secrets.into_iter().filter(|s| !s.is_empty()).collect();
        // Longest first, so a secret containing another is replaced whole.
        secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
        Self { secrets }
    }

    /// `text` with every secret value replaced.
    pub fn redact(&self, text: &str) -> String {
        let mut out = text.to_string();
        for secret in &self.secrets {
            if out.contains(secret.as_str()) {
                out = out.replace(secret.as_str(), "[redacted]");
            }
        }
        out
    }
}

/// One allow-list entry: a host name, optionally with a port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostRule {
    host: String,
    port: Option<u16>,
}

impl HostRule {
    /// Parses `host` or `host:port` (IPv6 literals in brackets).
    pub fn parse(rule: &str) -> Result<Self, String> {
        let parsed = url::Url::parse(&format!("http://{rule}/"))
            .map_err(|e| format!("invalid allowed host `{rule}`: {e}"))?;
        let host = parsed
            .host_str()
            .ok_or_else(|| format!("invalid allowed host `{rule}`"))?
            .to_ascii_lowercase();
        Ok(Self {
            host,
            port: parsed.port(),
        })
    }

    fn allows(&self, host: &str, port: u16) -> bool {
        self.host == host && self.port.is_none_or(|p| p == port)
    }
}

/// The outbound HTTP a provider plugin has been granted.
#[derive(Debug)]
pub struct HttpGrant {
    /// Shared client (connection pool) of the runtime.
    pub client: reqwest::Client,
    /// The operator's allow-list.
    pub rules: Vec<HostRule>,
    /// Timeout of one request.
    pub timeout: Duration,
    /// Largest response body accepted.
    pub max_response_bytes: usize,
}

/// The state of one store: one call into one plugin instance.
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
        }
    }

    /// What the guest wrote to stderr (a panic message, typically), redacted.
    pub fn stderr_text(&self) -> String {
        let bytes = self.stderr.contents();
        self.redactor.redact(String::from_utf8_lossy(&bytes).trim())
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
        if !matches!(url.scheme(), "http" | "https") {
            return Err(HttpError::NotSent(NotSent::InvalidRequest(format!(
                "scheme `{}` is not allowed",
                url.scheme()
            ))));
        }
        let host = url.host_str().unwrap_or_default().to_ascii_lowercase();
        let port = url.port_or_known_default().unwrap_or(0);
        if !grant.rules.iter().any(|r| r.allows(&host, port)) {
            tracing::warn!(plugin = %self.plugin, %host, port, "denied outbound request to a host not granted to this plugin");
            return Err(HttpError::NotSent(NotSent::Denied(format!(
                "{host}:{port} is not in this plugin's allowed_hosts"
            ))));
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

    /// Writes one plugin log line into the host's log, redacted and length-capped.
    pub(crate) fn log(&mut self, level: LogLevel, message: String) {
        let mut message = self.redactor.redact(&message);
        if message.len() > MAX_LOG_LINE {
            let mut cut = MAX_LOG_LINE;
            while !message.is_char_boundary(cut) {
                cut -= 1;
            }
            message.truncate(cut);
        }
        let plugin = &*self.plugin;
        match level {
            LogLevel::Trace => tracing::trace!(plugin, "{message}"),
            LogLevel::Debug => tracing::debug!(plugin, "{message}"),
            LogLevel::Info => tracing::info!(plugin, "{message}"),
            LogLevel::Warn => tracing::warn!(plugin, "{message}"),
            LogLevel::Error => tracing::error!(plugin, "{message}"),
        }
    }
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

    /// Host rules match the host exactly and the port when one is given.
    #[test]
    fn host_rules() {
        let any_port = HostRule::parse("api.twilio.com").unwrap();
        assert!(any_port.allows("api.twilio.com", 443));
        assert!(!any_port.allows("evil.twilio.com.example", 443));
        let pinned = HostRule::parse("127.0.0.1:4010").unwrap();
        assert!(pinned.allows("127.0.0.1", 4010));
        assert!(!pinned.allows("127.0.0.1", 4011));
    }

    /// Secrets are replaced, longest first.
    #[test]
    fn redaction() {
        let r = Redactor::new(["tok".to_string(), "token123".to_string(), String::new()]);
        assert_eq!(
            r.redact("auth token123 and tok"),
            "auth [redacted] and [redacted]"
        );
    }
}
