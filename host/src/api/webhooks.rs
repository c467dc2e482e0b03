//! Provider webhooks: `POST /api/v1/sms/webhooks/{provider}/status` and `.../inbound`.
//!
//! Webhooks are authenticated by the provider's signature, not an API key; the
//! [`track`](crate::pipeline::track) step has the provider plugin verify and parse them. A
//! forged or unsigned request is a 403 and changes nothing.

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};

use super::error::ApiResult;
use crate::pipeline::Pipeline;
use crate::pipeline::track::{self, Webhook};

/// An empty TwiML answer: "received, nothing to reply" (replies go through the queue).
const EMPTY_TWIML: &str = "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Response></Response>";

/// `POST /api/v1/sms/webhooks/{provider}/status` and `.../inbound`: one handler, since the
/// provider plugin tells status reports and inbound messages apart.
pub async fn receive(
    State(pipeline): State<Pipeline>,
    Path(provider): Path<String>,
    // The URI as this router sees it: nested under a prefix, the prefix is part of
    // `server.public_url`, and the two together are the URL the provider signed.
    uri: Uri,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult<Response> {
    let webhook = Webhook {
        path_and_query: uri
            .path_and_query()
            .map_or_else(|| "/".to_owned(), |p| p.as_str().to_owned()),
        headers: headers
            .iter()
            .map(|(k, v)| {
                (
                    k.as_str().to_owned(),
                    String::from_utf8_lossy(v.as_bytes()).into_owned(),
                )
            })
            .collect(),
        body: body?.to_vec(),
    };
    let receipt = track::receive_webhook(&pipeline, &provider, webhook).await?;
    Ok(if receipt.inbound > 0 {
        ([(header::CONTENT_TYPE, "text/xml")], EMPTY_TWIML).into_response()
    } else {
        StatusCode::OK.into_response()
    })
}
