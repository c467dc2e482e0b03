//! Bounds on everything a plugin returns, applied once, right after each call, before any caller
//! can store, log or answer with it.
//!
//! A plugin is third-party code: its strings may be 12 MB long, hold NUL or control characters or
//! echo a secret, its lists may be endless and its numbers absurd. [`Sanitizer`] turns each
//! [`super::model`] output type into one the host can safely keep:
//!
//! - ids, status words, error codes, senders and numbers: at most [`ID_BYTES`] bytes on one line
//!   (control characters become U+FFFD);
//! - error texts, webhook rejections and template errors: at most [`TEXT_BYTES`] bytes (NUL and
//!   control characters other than tab and newline become U+FFFD);
//! - an inbound body: at most [`BODY_CHARS`] characters;
//! - a cut string ends with [`TRUNCATED`], on a character boundary, within its cap;
//! - events per webhook: at most the plugin's `max_webhook_events` (default 100); the rest are
//!   dropped with a warning;
//! - segments: 1 to [`MAX_SEGMENTS`], else dropped (the host's own count stands); a price: a
//!   non-negative amount up to [`MAX_PRICE_MICROS`] in a three-letter upper-case currency code,
//!   else dropped — both with a warning, since they are the plugin's claim, not the host's;
//! - a rendered text longer than [`BODY_CHARS`] characters is refused as an invalid template;
//!   the variables it reports missing are ids, at most [`MAX_NAMES`] of them;
//! - every string, after redaction of the plugin's secrets (see [`super::redact`]).
//!
//! Dropping a bad number rather than failing the call keeps a message whose provider did accept
//! it from being resent: the acceptance is the fact that matters, the number is decoration.

use super::model::*;
use super::redact::Redactor;

/// Longest id, status word, error code, sender or phone number kept, in bytes.
pub const ID_BYTES: usize = 128;
/// Longest error text kept, in bytes.
pub const TEXT_BYTES: usize = 1024;
/// Longest inbound body or rendered text, in characters (the host's own message limit).
pub const BODY_CHARS: usize = crate::domain::MAX_BODY_CHARS;
/// Events kept from one webhook unless the plugin's settings say otherwise.
pub const DEFAULT_WEBHOOK_EVENTS: usize = 100;
/// The most segments a provider may report for one message.
pub const MAX_SEGMENTS: u32 = 100;
/// The highest price a provider may report for one message: 1,000 currency units.
pub const MAX_PRICE_MICROS: i64 = 1_000 * 1_000_000;
/// Longest list of names (settings, hosts, template variables) kept from a plugin.
pub const MAX_NAMES: usize = 256;
/// What ends a string that was cut.
pub const TRUNCATED: &str = "…[truncated]";

/// Which characters a string may keep.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Lines {
    /// One line: every control character is replaced.
    One,
    /// Text: newlines and tabs are kept, other control characters replaced.
    Many,
}

/// Bounds and redacts the output of one plugin.
pub struct Sanitizer<'a> {
    plugin: &'a str,
    redactor: &'a Redactor,
    max_events: usize,
}

impl<'a> Sanitizer<'a> {
    /// A sanitizer for `plugin`'s output, with its secrets and its webhook event cap.
    pub fn new(plugin: &'a str, redactor: &'a Redactor, max_events: usize) -> Self {
        Self {
            plugin,
            redactor,
            max_events,
        }
    }

    /// `text` redacted and cut to `max_bytes` bytes (marker included), with control characters
    /// replaced as `lines` says.
    fn bound(&self, text: &str, max_bytes: usize, lines: Lines) -> String {
        // Redact a window that can hold any secret starting within the cap, not the whole of a
        // 12 MB string; a window that ends in what may be the start of a secret loses that tail.
        let window = max_bytes.saturating_add(self.redactor.longest());
        let mut cut = floor_char_boundary(text, window);
        let windowed = cut < text.len();
        if windowed {
            cut -= self.redactor.partial_tail(&text[..cut]);
        }
        let redacted = self.redactor.redact(&text[..cut]);
        let mut out = clean(&redacted, lines);
        if windowed || out.len() > max_bytes {
            let keep = floor_char_boundary(&out, max_bytes.saturating_sub(TRUNCATED.len()));
            out.truncate(keep);
            out.push_str(TRUNCATED);
        }
        out
    }

    /// An id, status word, code, sender or number.
    pub fn id(&self, text: &str) -> String {
        self.bound(text, ID_BYTES, Lines::One)
    }

    /// An error or diagnostic text.
    pub fn text(&self, text: &str) -> String {
        self.bound(text, TEXT_BYTES, Lines::Many)
    }

    /// An inbound message body: at most [`BODY_CHARS`] characters, marker included.
    fn body(&self, text: &str) -> String {
        let chars = |s: &str, n: usize| s.char_indices().nth(n).map_or(s.len(), |(i, _)| i);
        let window = chars(text, BODY_CHARS).saturating_add(self.redactor.longest());
        let mut cut = floor_char_boundary(text, window);
        let windowed = cut < text.len();
        if windowed {
            cut -= self.redactor.partial_tail(&text[..cut]);
        }
        let mut out = clean(&self.redactor.redact(&text[..cut]), Lines::Many);
        if windowed || out.chars().nth(BODY_CHARS).is_some() {
            out.truncate(chars(&out, BODY_CHARS - TRUNCATED.chars().count()));
            out.push_str(TRUNCATED);
        }
        out
    }

    fn error(&self, error: ProviderError) -> ProviderError {
        ProviderError {
            code: error.code.map(|c| self.id(&c)),
            message: self.text(&error.message),
        }
    }

    fn segments(&self, segments: Option<u32>) -> Option<u32> {
        let s = segments?;
        if (1..=MAX_SEGMENTS).contains(&s) {
            Some(s)
        } else {
            tracing::warn!(
                plugin = self.plugin,
                segments = s,
                "plugin reported an absurd segment count; ignored"
            );
            None
        }
    }

    fn price(&self, price: Option<Money>) -> Option<Money> {
        let p = price?;
        let currency_ok =
            p.currency.len() == 3 && p.currency.bytes().all(|b| b.is_ascii_uppercase());
        if currency_ok && (0..=MAX_PRICE_MICROS).contains(&p.micros) {
            Some(p)
        } else {
            tracing::warn!(plugin = self.plugin, micros = p.micros, currency = %self.id(&p.currency), "plugin reported an impossible price; ignored");
            None
        }
    }

    /// A send outcome.
    pub fn send(&self, outcome: SendOutcome) -> SendOutcome {
        match outcome {
            SendOutcome::Accepted(a) => SendOutcome::Accepted(Accepted {
                provider_message_id: self.id(&a.provider_message_id),
                provider_status: self.id(&a.provider_status),
                segments: self.segments(a.segments),
                price: self.price(a.price),
                sender: a.sender.map(|s| self.id(&s)),
            }),
            SendOutcome::Retryable {
                error,
                retry_after_ms,
            } => SendOutcome::Retryable {
                error: self.error(error),
                retry_after_ms,
            },
            SendOutcome::Refused(e) => SendOutcome::Refused(self.error(e)),
            SendOutcome::Unknown(e) => SendOutcome::Unknown(self.error(e)),
            SendOutcome::OptedOut(e) => SendOutcome::OptedOut(self.error(e)),
            SendOutcome::InvalidRecipient(e) => SendOutcome::InvalidRecipient(self.error(e)),
            SendOutcome::Busy(e) => SendOutcome::Busy(self.error(e)),
        }
    }

    /// A status update.
    pub fn status(&self, u: StatusUpdate) -> StatusUpdate {
        StatusUpdate {
            provider_message_id: self.id(&u.provider_message_id),
            state: u.state,
            provider_status: self.id(&u.provider_status),
            error: u.error.map(|e| self.error(e)),
            segments: self.segments(u.segments),
            price: self.price(u.price),
            sender: u.sender.map(|s| self.id(&s)),
        }
    }

    /// A fetch-status outcome.
    pub fn fetch(&self, outcome: FetchOutcome) -> FetchOutcome {
        match outcome {
            FetchOutcome::Status(u) => FetchOutcome::Status(self.status(u)),
            FetchOutcome::Retryable {
                error,
                retry_after_ms,
            } => FetchOutcome::Retryable {
                error: self.error(error),
                retry_after_ms,
            },
            FetchOutcome::Permanent(e) => FetchOutcome::Permanent(self.error(e)),
            FetchOutcome::Unsupported => FetchOutcome::Unsupported,
        }
    }

    /// The events of one webhook: at most the cap, each bounded.
    pub fn events(&self, mut events: Vec<WebhookEvent>) -> Vec<WebhookEvent> {
        if events.len() > self.max_events {
            tracing::warn!(
                plugin = self.plugin,
                events = events.len(),
                kept = self.max_events,
                "plugin returned more webhook events than its cap; the rest are dropped"
            );
            events.truncate(self.max_events);
        }
        events
            .into_iter()
            .map(|event| match event {
                WebhookEvent::Status(u) => WebhookEvent::Status(self.status(u)),
                WebhookEvent::Inbound(m) => WebhookEvent::Inbound(InboundMessage {
                    provider_message_id: self.id(&m.provider_message_id),
                    from: self.id(&m.from),
                    to: self.id(&m.to),
                    body: self.body(&m.body),
                    segments: self.segments(m.segments),
                }),
            })
            .collect()
    }

    /// A webhook rejection.
    pub fn rejection(&self, rejection: WebhookRejection) -> WebhookRejection {
        match rejection {
            WebhookRejection::Malformed(text) => WebhookRejection::Malformed(self.text(&text)),
            other => other,
        }
    }

    /// A webhook's events, or why it was rejected.
    pub fn webhook<T>(
        &self,
        result: Result<T, WebhookRejection>,
        ok: impl FnOnce(T) -> T,
    ) -> Result<T, WebhookRejection> {
        result.map(ok).map_err(|r| self.rejection(r))
    }

    /// A template error.
    pub fn template_error(&self, e: TemplateError) -> TemplateError {
        TemplateError {
            message: self.text(&e.message),
            position: e.position,
        }
    }

    /// The variables a template uses, or why it is invalid.
    pub fn validated(
        &self,
        result: Result<Vec<String>, TemplateError>,
    ) -> Result<Vec<String>, TemplateError> {
        match result {
            Ok(names) if names.len() > MAX_NAMES => Err(TemplateError {
                message: format!(
                    "the renderer reported {} variables; at most {MAX_NAMES} are allowed",
                    names.len()
                ),
                position: None,
            }),
            Ok(names) => Ok(names.iter().map(|n| self.id(n)).collect()),
            Err(e) => Err(self.template_error(e)),
        }
    }

    /// A rendered text and the variables it reports missing, or why rendering failed.
    pub fn rendered(
        &self,
        result: Result<RenderedText, RenderError>,
    ) -> Result<RenderedText, RenderError> {
        match result {
            Ok(rendered) if rendered.text.chars().nth(BODY_CHARS).is_some() => {
                Err(RenderError::InvalidTemplate(TemplateError {
                    message: format!("the rendered text has more than {BODY_CHARS} characters"),
                    position: None,
                }))
            }
            Ok(rendered) => Ok(RenderedText {
                text: self.redactor.redact(&rendered.text),
                missing: rendered
                    .missing
                    .iter()
                    .take(MAX_NAMES)
                    .map(|name| self.id(name))
                    .collect(),
            }),
            Err(RenderError::MissingVariable(name)) => {
                Err(RenderError::MissingVariable(self.id(&name)))
            }
            Err(RenderError::InvalidTemplate(e)) => {
                Err(RenderError::InvalidTemplate(self.template_error(e)))
            }
            Err(RenderError::UnsupportedValue(name)) => {
                Err(RenderError::UnsupportedValue(self.id(&name)))
            }
        }
    }

    /// What a plugin said about itself.
    pub fn info(&self, info: PluginInfo) -> PluginInfo {
        PluginInfo {
            name: self.id(&info.name),
            version: self.id(&info.version),
            description: self.text(&info.description),
            config_keys: info
                .config_keys
                .into_iter()
                .take(MAX_NAMES)
                .map(|k| ConfigKey {
                    name: self.id(&k.name),
                    description: self.text(&k.description),
                    required: k.required,
                    secret: k.secret,
                })
                .collect(),
            outbound_hosts: info
                .outbound_hosts
                .into_iter()
                .take(MAX_NAMES)
                .map(|h| self.id(&h))
                .collect(),
        }
    }
}

/// The largest char boundary of `text` at or below `at`.
fn floor_char_boundary(text: &str, at: usize) -> usize {
    if at >= text.len() {
        return text.len();
    }
    let mut at = at;
    while !text.is_char_boundary(at) {
        at -= 1;
    }
    at
}

/// `text` with control characters replaced by U+FFFD (newlines and tabs kept for `Lines::Many`).
/// NUL goes too: PostgreSQL refuses it in text.
fn clean(text: &str, lines: Lines) -> String {
    let keep = |c: char| !c.is_control() || (lines == Lines::Many && matches!(c, '\n' | '\t'));
    if text.chars().all(keep) {
        return text.to_string();
    }
    text.chars()
        .map(|c| if keep(c) { c } else { '\u{FFFD}' })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sanitizer(redactor: &Redactor) -> Sanitizer<'_> {
        Sanitizer::new("test", redactor, 3)
    }

    /// A huge id is cut to its cap with the marker, on a char boundary.
    #[test]
    fn huge_strings_are_cut() {
        let r = Redactor::default();
        let s = sanitizer(&r);
        let id = s.id(&"é".repeat(1 << 20));
        assert!(id.len() <= ID_BYTES && id.ends_with(TRUNCATED), "{id}");
        let text = s.text(&"x".repeat(12 << 20));
        assert_eq!(text.len(), TEXT_BYTES);
        let body = s.body(&"ü".repeat(5_000));
        assert_eq!(body.chars().count(), BODY_CHARS);
        assert!(body.ends_with(TRUNCATED));
        assert_eq!(s.body("short"), "short");
    }

    /// A secret straddling the cut is not left half visible.
    #[test]
    fn secret_at_the_cut_is_not_half_kept() {
        let r = Redactor::new(["SECRETVALUE".to_string()]);
        let s = sanitizer(&r);
        for pad in 100..140 {
            let text = format!("{}SECRETVALUE{}", "a".repeat(pad), "b".repeat(1_000));
            let id = s.id(&text);
            assert!(!id.contains("SECRET"), "{pad}: {id}");
            assert!(id.len() <= ID_BYTES);
        }
    }

    /// Control characters go from ids; newlines stay in texts; NUL goes everywhere.
    #[test]
    fn control_characters() {
        let r = Redactor::default();
        let s = sanitizer(&r);
        assert_eq!(s.id("a\nb\0c"), "a\u{FFFD}b\u{FFFD}c");
        assert_eq!(s.text("a\nb\0c"), "a\nb\u{FFFD}c");
    }

    /// Absurd numbers are dropped, sane ones kept.
    #[test]
    fn numbers() {
        let r = Redactor::default();
        let s = sanitizer(&r);
        assert_eq!(s.segments(Some(0)), None);
        assert_eq!(s.segments(Some(101)), None);
        assert_eq!(s.segments(Some(3)), Some(3));
        let money = |micros, currency: &str| {
            Some(Money {
                micros,
                currency: currency.into(),
            })
        };
        assert_eq!(s.price(money(-1, "USD")), None);
        assert_eq!(s.price(money(i64::MAX, "USD")), None);
        assert_eq!(s.price(money(7_900, "usd")), None);
        assert_eq!(s.price(money(7_900, "USDX")), None);
        assert_eq!(s.price(money(7_900, "USD")), money(7_900, "USD"));
    }

    /// A webhook's events are capped.
    #[test]
    fn events_are_capped() {
        let r = Redactor::default();
        let s = sanitizer(&r);
        let event = WebhookEvent::Inbound(InboundMessage {
            provider_message_id: "i".into(),
            from: "+1".into(),
            to: "+2".into(),
            body: "b".into(),
            segments: None,
        });
        assert_eq!(s.events(vec![event; 10]).len(), 3);
    }

    /// A renderer's huge error and huge output are bounded.
    #[test]
    fn renderer_output() {
        let r = Redactor::default();
        let s = sanitizer(&r);
        let huge = "e".repeat(12 << 20);
        match s.rendered(Err(RenderError::InvalidTemplate(TemplateError {
            message: huge.clone(),
            position: None,
        }))) {
            Err(RenderError::InvalidTemplate(e)) => assert!(e.message.len() <= TEXT_BYTES),
            other => panic!("{other:?}"),
        }
        let text = |text: String, missing: Vec<String>| RenderedText { text, missing };
        assert!(s.rendered(Ok(text(huge, Vec::new()))).is_err());
        assert!(s.validated(Ok(vec!["v".into(); MAX_NAMES + 1])).is_err());
        let reported = s
            .rendered(Ok(text("ok".into(), vec!["m".repeat(4096); 10_000])))
            .unwrap();
        assert_eq!(reported.missing.len(), MAX_NAMES);
        assert!(reported.missing.iter().all(|name| name.len() <= ID_BYTES));
    }
}
