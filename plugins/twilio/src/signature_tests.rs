//! Tests for `X-Twilio-Signature` validation. Expected signatures are Twilio's published vectors or
//! were computed independently with Python's `hmac`/`hashlib`.

#![allow(clippy::unwrap_used)]

use super::*;

const TOKEN: &str = "12345";
const URL: &str = "https://mycompany.com/myapp.php?foo=1&bar=2";
const OFFICIAL: &str = "0/KCTR6DLpKmkAf8muzZqo1nDgQ=";
/// The official parameters, form-encoded as Twilio posts them.
const BODY: &str = "CallSid=CA1234567890ABCDE&Caller=%2B12349013030&Digits=1234&From=%2B12349013030&To=%2B18005551212";

fn request(
    url: &str,
    content_type: Option<&str>,
    body: &str,
    signature: Option<&str>,
) -> HttpRequest {
    let mut headers = Vec::new();
    if let Some(content_type) = content_type {
        headers.push(("Content-Type".to_string(), content_type.to_string()));
    }
    if let Some(signature) = signature {
        headers.push(("X-Twilio-Signature".to_string(), signature.to_string()));
    }
    HttpRequest {
        method: "POST".to_string(),
        url: url.to_string(),
        headers,
        body: body.as_bytes().to_vec(),
    }
}

fn form_request(url: &str, body: &str, signature: &str) -> HttpRequest {
    request(
        url,
        Some("application/x-www-form-urlencoded"),
        body,
        Some(signature),
    )
}

#[test]
fn official_vector() {
    let params = form::fields(BODY.as_bytes());
    assert_eq!(compute(TOKEN, URL, &params).unwrap(), OFFICIAL);
    assert_eq!(verify(&form_request(URL, BODY, OFFICIAL), TOKEN), Ok(()));
}

#[test]
fn parameter_order_in_body_does_not_matter() {
    let shuffled = "To=%2B18005551212&Digits=1234&From=%2B12349013030&Caller=%2B12349013030&CallSid=CA1234567890ABCDE";
    assert_eq!(
        verify(&form_request(URL, shuffled, OFFICIAL), TOKEN),
        Ok(())
    );
}

#[test]
fn twilio_python_vector() {
    let body = "CallSid=CA1234567890ABCDE&Caller=%2B14158675309&Digits=1234&From=%2B14158675309&To=%2B18005551212";
    let req = form_request(URL, body, "RSOYDt4T1cUTdK1PDd93/VVr8B8=");
    assert_eq!(verify(&req, TOKEN), Ok(()));
}

#[test]
fn header_name_is_case_insensitive() {
    let mut req = form_request(URL, BODY, OFFICIAL);
    req.headers = vec![
        (
            "content-type".into(),
            "application/x-www-form-urlencoded; charset=utf-8".into(),
        ),
        ("x-twilio-signature".into(), OFFICIAL.into()),
    ];
    assert_eq!(verify(&req, TOKEN), Ok(()));
}

#[test]
fn missing_header_is_unsigned() {
    let req = request(URL, Some("application/x-www-form-urlencoded"), BODY, None);
    assert_eq!(verify(&req, TOKEN), Err(WebhookError::Unsigned));
}

#[test]
fn mismatches_are_bad_signatures() {
    let cases = [
        form_request(URL, BODY, "AAAAAAAAAAAAAAAAAAAAAAAAAAA="),
        form_request(URL, BODY, "not base64!"),
        form_request(URL, &BODY.replace("1234&", "4321&"), OFFICIAL),
        form_request(&URL.replace("foo=1", "foo=2"), BODY, OFFICIAL),
        form_request(URL, &format!("{BODY}&Extra="), OFFICIAL),
    ];
    for req in cases {
        assert_eq!(verify(&req, TOKEN), Err(WebhookError::BadSignature));
    }
    assert_eq!(
        verify(&form_request(URL, BODY, OFFICIAL), "54321"),
        Err(WebhookError::BadSignature)
    );
}

#[test]
fn default_https_port_added_or_removed() {
    let with_port = "https://mycompany.com:443/myapp.php?foo=1&bar=2";
    let signed_with_port = "EpDEmp1PyjDYp77YxYU3GILBWzE=";
    // Twilio signed without the port; the operator's URL has it.
    assert_eq!(
        verify(&form_request(with_port, BODY, OFFICIAL), TOKEN),
        Ok(())
    );
    // Twilio signed with the port; the operator's URL lacks it.
    assert_eq!(
        verify(&form_request(URL, BODY, signed_with_port), TOKEN),
        Ok(())
    );
    assert_eq!(
        verify(&form_request(with_port, BODY, signed_with_port), TOKEN),
        Ok(())
    );
}

#[test]
fn default_http_port_added_or_removed() {
    let without = "http://mycompany.com/myapp.php?foo=1&bar=2";
    let with = "http://mycompany.com:80/myapp.php?foo=1&bar=2";
    let signed_without = "FYMaGAU6nPbB9h2pncMl4aJ4vns=";
    let signed_with = "boT12oXXJ0BuzO2U/6iCqFdh2Do=";
    assert_eq!(
        verify(&form_request(with, BODY, signed_without), TOKEN),
        Ok(())
    );
    assert_eq!(
        verify(&form_request(without, BODY, signed_with), TOKEN),
        Ok(())
    );
    // :443 is not the default port for http, so it is never assumed.
    let https_signed = "EpDEmp1PyjDYp77YxYU3GILBWzE=";
    assert_eq!(
        verify(&form_request(without, BODY, https_signed), TOKEN),
        Err(WebhookError::BadSignature)
    );
}

#[test]
fn non_default_port_is_kept() {
    let with = "https://mycompany.com:1234/myapp.php?foo=1&bar=2";
    let signed_with = "qERtAmzS12GPa6TT11iKcG/MY9A=";
    assert_eq!(
        verify(&form_request(with, BODY, signed_with), TOKEN),
        Ok(())
    );
    // A signature over the port-less URL is for another endpoint: :1234 must not be stripped.
    assert_eq!(
        verify(&form_request(with, BODY, OFFICIAL), TOKEN),
        Err(WebhookError::BadSignature)
    );
    assert_eq!(url_variants(with), [with]);
}

#[test]
fn url_variant_shapes() {
    assert_eq!(
        url_variants("https://h.example/a?b=1"),
        ["https://h.example/a?b=1", "https://h.example:443/a?b=1"]
    );
    assert_eq!(
        url_variants("HTTP://h.example:80"),
        ["HTTP://h.example:80", "HTTP://h.example"]
    );
    assert_eq!(
        url_variants("https://[::1]/x"),
        ["https://[::1]/x", "https://[::1]:443/x"]
    );
    assert_eq!(
        url_variants("https://user:pw@h.example:443/x"),
        [
            "https://user:pw@h.example:443/x",
            "https://user:pw@h.example/x"
        ]
    );
    assert_eq!(url_variants("not a url"), ["not a url"]);
}

#[test]
fn repeated_names_sort_by_value() {
    // Python: the official params plus a second `Digits=1`.
    let body = format!("Digits=1&{BODY}");
    let req = form_request(URL, &body, "fqgkYEFXmZDicwP8u/fUfOSXeuI=");
    assert_eq!(verify(&req, TOKEN), Ok(()));
    let reordered = format!("{BODY}&Digits=1");
    let req = form_request(URL, &reordered, "fqgkYEFXmZDicwP8u/fUfOSXeuI=");
    assert_eq!(verify(&req, TOKEN), Ok(()));
}

#[test]
fn plus_is_a_space_and_empty_values_count() {
    let body = "Body=Hello+world+%26+more&Empty=";
    let req = form_request("https://h.example/t", body, "GjXSdg6I8cbHPvegEIIAOJBpvsY=");
    assert_eq!(verify(&req, "12345"), Ok(()));
}

#[test]
fn json_body_with_hash() {
    let body = r#"{"property": "value", "boolean": true}"#;
    let hash = "0a1ff7634d9ab3b95db5c9a2dfe9416e41502b283a80c7cf19632632f96e6620";
    let url = format!("{URL}&bodySHA256={hash}");
    let signature = "a9nBmqA0ju/hNViExpshrM61xv4=";
    let ok = request(&url, Some("application/json"), body, Some(signature));
    assert_eq!(verify(&ok, TOKEN), Ok(()));
    let tampered = request(&url, Some("application/json"), "{}", Some(signature));
    assert_eq!(verify(&tampered, TOKEN), Err(WebhookError::BadSignature));
}

#[test]
fn non_form_body_without_hash_is_rejected() {
    let signature = compute(TOKEN, URL, &[]).unwrap();
    let req = request(URL, Some("application/json"), "{}", Some(&signature));
    assert_eq!(verify(&req, TOKEN), Err(WebhookError::BadSignature));
    // A bodiless request (e.g. a GET webhook) is signed over its URL alone.
    let get = request(URL, None, "", Some(&signature));
    assert_eq!(verify(&get, TOKEN), Ok(()));
}
