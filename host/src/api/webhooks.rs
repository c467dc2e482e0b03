//! Provider webhooks: `POST /api/v1/sms/webhooks/{provider}/status` and `.../inbound`.
//!
//! Webhooks are authenticated by the provider's signature, not an API key; the
//! [`track`](crate::pipeline::track) step has the provider plugin verify and parse them. A
//! forged or unsigned request is a 403 and changes nothing.
//!
//! A webhook carrying a NUL character — a raw NUL byte, `%00` in its query or form body, or
//! `\u0000` in a JSON body — is refused with `400 malformed_webhook` before the plugin sees it:
//! no provider sends one, and storage could not hold it.

use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, PathRejection};
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};

use super::error::{ApiError, ApiResult};
use crate::domain::ErrorCode;
use crate::pipeline::Pipeline;
use crate::pipeline::track::{self, Webhook};

/// An empty TwiML answer: "received, nothing to reply" (replies go through the queue).
const EMPTY_TWIML: &str = "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Response></Response>";

/// `POST /api/v1/sms/webhooks/{provider}/status` and `.../inbound`: one handler, since the
/// provider plugin tells status reports and inbound messages apart.
pub async fn receive(
    State(pipeline): State<Pipeline>,
    provider: Result<Path<String>, PathRejection>,
    // The URI as this router sees it: nested under a prefix, the prefix is part of
    // `server.public_url`, and the two together are the URL the provider signed.
    uri: Uri,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult<Response> {
    let Ok(Path(provider)) = provider else {
        return Err(ApiError::new(
            ErrorCode::UnknownProvider,
            "the provider in the URL is not valid UTF-8 text",
        ));
    };
    let path_and_query = uri
        .path_and_query()
        .map_or_else(|| "/".to_owned(), |p| p.as_str().to_owned());
    let body = body?;
    if carries_nul(path_and_query.as_bytes()) || carries_nul(&body) {
        return Err(ApiError::new(
            ErrorCode::MalformedWebhook,
            "the webhook contains a NUL character",
        ));
    }
    let webhook = Webhook {
        path_and_query,
        headers: headers
            .iter()
            .map(|(k, v)| {
                (
                    k.as_str().to_owned(),
                    String::from_utf8_lossy(v.as_bytes()).into_owned(),
                )
            })
            .collect(),
        body: body.to_vec(),
    };
    let receipt = track::receive_webhook(&pipeline, &provider, webhook).await?;
    Ok(if receipt.inbound > 0 {
        ([(header::CONTENT_TYPE, "text/xml")], EMPTY_TWIML).into_response()
    } else {
        StatusCode::OK.into_response()
    })
}

/// Whether `bytes` hold a NUL: raw, percent-encoded (`%00`) or as a JSON escape (`\u0000`).
fn carries_nul(bytes: &[u8]) -> bool {
    bytes.contains(&0)
        || bytes.windows(3).any(|w| w == b"%00")
        || bytes.windows(6).any(|w| w == b"\\u0000")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every spelling of NUL is found; text that merely resembles one is not.
    #[test]
    fn finds_nul_in_every_spelling() {
        for bad in [&b"Body=a\0b"[..], b"Body=%00", b"{\"Body\": \"\\u0000\"}"] {
            assert!(carries_nul(bad), "{}", String::from_utf8_lossy(bad));
        }
        for fine in [
            &b"Body=100%25"[..],
            b"Body=%2500",
            b"From=%2B14155550000",
            b"",
        ] {
            assert!(!carries_nul(fine), "{}", String::from_utf8_lossy(fine));
        }
    }
}
