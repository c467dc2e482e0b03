//! Redaction of secret setting values from everything a plugin produces.
//!
//! A plugin sees its secrets (it needs them to call its provider), so anything it returns may
//! echo one: an error text, a provider id, a log line, a webhook rejection. A host error can also
//! carry one, e.g. a transport error that prints the request URL with the secret
//! percent-encoded in its query. The redactor therefore looks for each secret in every form a
//! plugin or a URL library is likely to print it in:
//!
//! - raw;
//! - percent-encoded (every byte, every non-alphanumeric byte, all but RFC 3986 unreserved
//!   bytes, and the `application/x-www-form-urlencoded` form), with upper- and lower-case hex
//!   digits;
//! - base64, standard and URL-safe alphabets, with and without padding;
//! - hex, lower and upper case.
//!
//! It cannot see a secret that was encoded together with other bytes (`user:secret` in one base64
//! string), hashed, or split; the README says so.

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};

/// What a redacted secret reads as.
pub const REDACTED: &str = "[redacted]";

/// Bytes RFC 3986 calls unreserved, which most encoders leave alone.
const UNRESERVED: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// Replaces secret setting values, in every encoding listed in the module docs, with
/// `[redacted]`.
#[derive(Debug, Default)]
pub struct Redactor {
    /// Every encoded form of every secret, longest first, without duplicates.
    needles: Vec<String>,
}

impl Redactor {
    /// A redactor for these secret values (empty values are ignored).
    pub fn new(secrets: impl IntoIterator<Item = String>) -> Self {
        let mut needles: Vec<String> = secrets
            .into_iter()
            .filter(|s| !s.is_empty())
            .flat_map(|s| encodings(&s))
            .collect();
        // Longest first, so a secret containing another is replaced whole.
        needles.sort_by(|a, b| b.len().cmp(&a.len()).then_with(|| a.cmp(b)));
        needles.dedup();
        Self { needles }
    }

    /// Whether there is nothing to redact.
    pub fn is_empty(&self) -> bool {
        self.needles.is_empty()
    }

    /// The longest encoded secret, in bytes (0 without secrets).
    pub fn longest(&self) -> usize {
        self.needles.first().map_or(0, String::len)
    }

    /// `text` with every secret, in every encoding, replaced.
    pub fn redact(&self, text: &str) -> String {
        let mut out = text.to_string();
        for needle in &self.needles {
            if out.contains(needle.as_str()) {
                out = out.replace(needle.as_str(), REDACTED);
            }
        }
        out
    }

    /// How many bytes at the end of `text` could be the start of a secret cut off by a
    /// truncation: those bytes must go too, or a cut could leave part of a secret behind.
    pub fn partial_tail(&self, text: &str) -> usize {
        let bytes = text.as_bytes();
        self.needles
            .iter()
            .filter_map(|needle| {
                let needle = needle.as_bytes();
                (1..needle.len())
                    .rev()
                    .find(|&k| bytes.ends_with(&needle[..k]))
            })
            .max()
            .unwrap_or(0)
    }
}

/// Every form of `secret` that [`Redactor`] looks for.
fn encodings(secret: &str) -> Vec<String> {
    let bytes = secret.as_bytes();
    let hex = hex::encode(bytes);
    let mut forms = vec![
        secret.to_string(),
        STANDARD.encode(bytes),
        STANDARD_NO_PAD.encode(bytes),
        URL_SAFE.encode(bytes),
        URL_SAFE_NO_PAD.encode(bytes),
        hex.to_uppercase(),
        hex,
    ];
    let percent = [
        bytes
            .iter()
            .map(|b| format!("%{b:02X}"))
            .collect::<String>(),
        utf8_percent_encode(secret, NON_ALPHANUMERIC).to_string(),
        utf8_percent_encode(secret, UNRESERVED).to_string(),
        url::form_urlencoded::byte_serialize(bytes).collect::<String>(),
    ];
    for form in percent {
        forms.push(lower_hex_escapes(&form));
        forms.push(form);
    }
    forms
}

/// `%3A` → `%3a`: the same percent-encoding with lower-case hex digits.
fn lower_hex_escapes(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut digits = 0;
    for c in text.chars() {
        if c == '%' {
            digits = 2;
            out.push(c);
        } else if digits > 0 {
            digits -= 1;
            out.push(c.to_ascii_lowercase());
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Secrets are replaced, longest first.
    #[test]
    fn raw_secrets_longest_first() {
        let r = Redactor::new(["tok".to_string(), "token123".to_string(), String::new()]);
        assert_eq!(
            r.redact("auth token123 and tok"),
            "auth [redacted] and [redacted]"
        );
    }

    /// Every encoding a plugin or a URL library is likely to print is replaced.
    #[test]
    fn encoded_secrets() {
        let secret = "s3cr/t+key=?&ü";
        let r = Redactor::new([secret.to_string()]);
        for form in encodings(secret) {
            let text = format!("before {form} after");
            assert_eq!(
                r.redact(&text),
                "before [redacted] after",
                "form {form} was not redacted"
            );
        }
        let url = url::Url::parse_with_params("https://x.test/a", [("key", secret)]).unwrap();
        assert!(!r.redact(url.as_str()).contains("s3cr"), "{url}");
    }

    /// The tail of a text that could be the start of a cut secret is measured.
    #[test]
    fn partial_tails() {
        let r = Redactor::new(["abcdef".to_string()]);
        assert_eq!(r.partial_tail("xxabc"), 3);
        assert_eq!(r.partial_tail("xxabd"), 0);
    }
}
