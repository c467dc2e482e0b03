//! `X-Twilio-Signature` validation: base64(HMAC-SHA1(auth token, URL + sorted form parameters)).
//!
//! The string to sign is the URL exactly as Twilio requested it followed by every POST parameter
//! (sorted by name, then by value for repeated names; decoded) as `name` + `value` with no
//! separators. Twilio is inconsistent about ports, so a signature is accepted for the URL as given,
//! with a default port (`:443` for https, `:80` for http) removed, or with it added. A non-default
//! port is never removed: it names a different endpoint. For non-form bodies Twilio adds
//! `bodySHA256=<hex>` to the query, signs the URL alone, and the body must match that hash.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, KeyInit, Mac};
use sha1::Sha1;
use sha2::{Digest, Sha256};

use crate::bindings::exports::herald::plugin::provider_api::WebhookError;
use crate::bindings::herald::plugin::types::HttpRequest;
use crate::form;

/// Checks the request's signature against `auth_token`.
pub fn verify(request: &HttpRequest, auth_token: &str) -> Result<(), WebhookError> {
    let header = form::header(request, "x-twilio-signature").ok_or(WebhookError::Unsigned)?;
    let expected = STANDARD
        .decode(header.trim())
        .map_err(|_| WebhookError::BadSignature)?;
    let params = signed_params(request)?;
    let matches = url_variants(&request.url).iter().any(|url| {
        mac(auth_token, url, &params)
            .map(|mac| mac.verify_slice(&expected).is_ok())
            .unwrap_or(false)
    });
    if matches {
        Ok(())
    } else {
        Err(WebhookError::BadSignature)
    }
}

/// The signature Twilio would send for `url` and form `params`.
#[cfg(test)]
pub fn compute(auth_token: &str, url: &str, params: &[(String, String)]) -> Option<String> {
    let mut sorted = params.to_vec();
    sorted.sort();
    mac(auth_token, url, &sorted).map(|mac| STANDARD.encode(mac.finalize().into_bytes()))
}

/// The parameters covered by the signature, sorted; checks the body hash for non-form bodies.
fn signed_params(request: &HttpRequest) -> Result<Vec<(String, String)>, WebhookError> {
    if let Some(hash) = form::query_param(&request.url, "bodySHA256") {
        let actual = hex(&Sha256::digest(&request.body));
        // Both sides are public (the hash is in the URL), so a plain comparison leaks nothing.
        return if actual.eq_ignore_ascii_case(hash.trim()) {
            Ok(Vec::new())
        } else {
            Err(WebhookError::BadSignature)
        };
    }
    if form::is_form(request) {
        let mut params = form::fields(&request.body);
        params.sort();
        return Ok(params);
    }
    if request.body.is_empty() {
        return Ok(Vec::new());
    }
    // A non-form body without `bodySHA256` would not be covered by the signature at all.
    Err(WebhookError::BadSignature)
}

/// The HMAC over `url` followed by the already sorted `params`.
fn mac(auth_token: &str, url: &str, params: &[(String, String)]) -> Option<Hmac<Sha1>> {
    let mut mac = <Hmac<Sha1> as KeyInit>::new_from_slice(auth_token.as_bytes()).ok()?;
    mac.update(url.as_bytes());
    for (name, value) in params {
        mac.update(name.as_bytes());
        mac.update(value.as_bytes());
    }
    Some(mac)
}

/// Lower-case hex of `bytes`.
fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for &b in bytes {
        out.push(char::from(DIGITS[usize::from(b >> 4)]));
        out.push(char::from(DIGITS[usize::from(b & 0xf)]));
    }
    out
}

/// The URLs a valid signature may have been computed over: `url` itself, plus `url` without its
/// default port or with the default port added.
pub fn url_variants(url: &str) -> Vec<String> {
    let mut variants = vec![url.to_string()];
    let Some(scheme_end) = url.find("://") else {
        return variants;
    };
    let default_port = match url[..scheme_end].to_ascii_lowercase().as_str() {
        "https" => "443",
        "http" => "80",
        _ => return variants,
    };
    let authority_start = scheme_end + 3;
    let authority_end = url[authority_start..]
        .find(['/', '?', '#'])
        .map_or(url.len(), |i| authority_start + i);
    let authority = &url[authority_start..authority_end];
    // The port is after the last ':' that follows the userinfo and any IPv6 literal's ']'.
    let host_start = authority.rfind('@').map_or(0, |i| i + 1);
    let host_port = &authority[host_start..];
    let search_from = host_port.rfind(']').unwrap_or(0);
    let port = host_port[search_from..]
        .rfind(':')
        .map(|i| (search_from + i, &host_port[search_from + i + 1..]));
    match port {
        Some((colon, port)) if port == default_port => {
            let colon = authority_start + host_start + colon;
            variants.push(format!("{}{}", &url[..colon], &url[authority_end..]));
        }
        Some(_) => {}
        None => variants.push(format!(
            "{}:{default_port}{}",
            &url[..authority_end],
            &url[authority_end..]
        )),
    }
    variants
}

#[cfg(test)]
#[path = "signature_tests.rs"]
mod tests;
