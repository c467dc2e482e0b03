//! The carrier's HTTP surface: Twilio's create, fetch and list Messages, plus the test kit's own
//! `POST /testkit/inbound`.

use std::collections::BTreeMap;
use std::time::Instant;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde_json::json;
use subtle::ConstantTimeEq as _;

use super::billing::rough_segments;
use super::callbacks::{self, now_rfc2822};
use super::inbound::{self, INBOUND_PATH};
use super::state::{CarrierState, MessageRecord, RecordedRequest, ScriptedResponse, new_sid};
use super::validate::{SendRequest, default_message, validate};

/// Builds the carrier's router: `POST`/`GET /2010-04-01/Accounts/{AccountSid}/Messages.json`,
/// `GET /2010-04-01/Accounts/{AccountSid}/Messages/{MessageSid}.json` and
/// `POST /testkit/inbound` (simulate a handset texting in). Anything else is a Twilio 404.
pub fn router(state: CarrierState) -> Router {
    Router::new()
        .route(
            "/2010-04-01/Accounts/{account_sid}/Messages.json",
            get(list_messages).post(create_message),
        )
        .route(
            "/2010-04-01/Accounts/{account_sid}/Messages/{message_file}",
            get(fetch_message),
        )
        .route(INBOUND_PATH, post(inbound::simulate))
        .fallback(not_found)
        .with_state(state)
}

/// A Twilio-shaped JSON error response.
pub(crate) fn twilio_error(status: StatusCode, code: u32, message: &str) -> Response {
    let body = json!({
        "code": code,
        "message": message,
        "more_info": format!("https://www.twilio.com/docs/errors/{code}"),
        "status": status.as_u16(),
    });
    let mut response = (status, axum::Json(body)).into_response();
    if status == StatusCode::UNAUTHORIZED {
        response.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Basic realm=\"Twilio API\""),
        );
    }
    response
}

fn error_for(http_status: u16, code: u32, message: Option<String>) -> Response {
    let status = StatusCode::from_u16(http_status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    twilio_error(
        status,
        code,
        &message.unwrap_or_else(|| default_message(code)),
    )
}

fn record(state: &CarrierState, method: &Method, uri: &Uri, headers: &HeaderMap, body: &Bytes) {
    let form = serde_urlencoded::from_bytes::<Vec<(String, String)>>(body).unwrap_or_default();
    let headers = headers
        .iter()
        .map(|(k, v)| {
            (
                k.as_str().to_owned(),
                String::from_utf8_lossy(v.as_bytes()).into_owned(),
            )
        })
        .collect();
    state.record_request(RecordedRequest {
        method: method.as_str().to_owned(),
        path: uri.path().to_owned(),
        query: uri.query().map(str::to_owned),
        headers,
        form,
        body: String::from_utf8_lossy(body).into_owned(),
        at: Instant::now(),
    });
}

/// True when the Basic credentials match the account (or an `SK…` API key with the auth token as
/// its secret) and the path names the configured account.
fn authorized(state: &CarrierState, headers: &HeaderMap, path_sid: &str) -> bool {
    let config = state.config();
    let Some(encoded) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Basic "))
    else {
        return false;
    };
    let Ok(decoded) = STANDARD.decode(encoded.trim()) else {
        return false;
    };
    let Ok(decoded) = String::from_utf8(decoded) else {
        return false;
    };
    let Some((user, password)) = decoded.split_once(':') else {
        return false;
    };
    let Some(token) = config.token_for(path_sid) else {
        return false;
    };
    let user_ok = user == path_sid || (user.starts_with("SK") && user.len() == 34);
    user_ok && bool::from(password.as_bytes().ct_eq(token.as_bytes()))
}

fn unauthorized() -> Response {
    twilio_error(StatusCode::UNAUTHORIZED, 20003, &default_message(20003))
}

async fn create_message(
    State(state): State<CarrierState>,
    Path(account_sid): Path<String>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    record(&state, &method, &uri, &headers, &body);
    match state.next_script() {
        Some(ScriptedResponse::Error {
            http_status,
            code,
            retry_after,
        }) => {
            let mut response = error_for(http_status, code, None);
            if let Some(secs) = retry_after {
                response
                    .headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from(secs));
            }
            return response;
        }
        Some(ScriptedResponse::Status5xx(status)) => {
            let code = 20000 + u32::from(status);
            return error_for(status, code, None);
        }
        Some(ScriptedResponse::Raw {
            http_status,
            content_type,
            body,
        }) => {
            let status = StatusCode::from_u16(http_status).unwrap_or(StatusCode::BAD_GATEWAY);
            return (status, [(header::CONTENT_TYPE, content_type)], body).into_response();
        }
        Some(ScriptedResponse::Hang(duration)) => tokio::time::sleep(duration).await,
        None => {}
    }
    if !authorized(&state, &headers, &account_sid) {
        return unauthorized();
    }
    let form = serde_urlencoded::from_bytes::<Vec<(String, String)>>(&body).unwrap_or_default();
    match validate(&state, &form) {
        Ok(request) => {
            let record = new_message(&account_sid, &request);
            state.insert_message(record.clone());
            callbacks::start_lifecycle(&state, &record.sid, request.status_callback);
            (StatusCode::CREATED, axum::Json(record)).into_response()
        }
        Err((code, message)) => error_for(400, code, Some(message)),
    }
}

fn new_message(account_sid: &str, request: &SendRequest) -> MessageRecord {
    let account_sid = account_sid.to_owned();
    let sid = new_sid(if request.num_media > 0 { "MM" } else { "SM" });
    let now = now_rfc2822();
    let uri = format!("/2010-04-01/Accounts/{account_sid}/Messages/{sid}.json");
    let mut subresource_uris = BTreeMap::new();
    subresource_uris.insert(
        "media".to_owned(),
        format!("/2010-04-01/Accounts/{account_sid}/Messages/{sid}/Media.json"),
    );
    // Through a Messaging Service with no From, no sender is picked yet: status `accepted`,
    // `from` null and `num_segments` "0", like Twilio.
    let pooled = request.from.is_none();
    MessageRecord {
        account_sid,
        api_version: "2010-04-01".to_owned(),
        body: request.body.clone(),
        date_created: now.clone(),
        date_sent: None,
        date_updated: now,
        direction: "outbound-api".to_owned(),
        error_code: None,
        error_message: None,
        from: request.from.clone(),
        messaging_service_sid: request.messaging_service_sid.clone(),
        num_media: request.num_media.to_string(),
        num_segments: if pooled {
            "0".to_owned()
        } else {
            rough_segments(&request.body).to_string()
        },
        price: None,
        price_unit: "USD".to_owned(),
        sid,
        status: if pooled { "accepted" } else { "queued" }.to_owned(),
        subresource_uris,
        to: request.to.clone(),
        uri,
    }
}

async fn fetch_message(
    State(state): State<CarrierState>,
    Path((account_sid, message_file)): Path<(String, String)>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    record(&state, &method, &uri, &headers, &Bytes::new());
    if !authorized(&state, &headers, &account_sid) {
        return unauthorized();
    }
    let sid = message_file.strip_suffix(".json").unwrap_or(&message_file);
    match state.message(sid) {
        Some(record) => (StatusCode::OK, axum::Json(record)).into_response(),
        None => resource_not_found(uri.path()),
    }
}

async fn list_messages(
    State(state): State<CarrierState>,
    Path(account_sid): Path<String>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    record(&state, &method, &uri, &headers, &Bytes::new());
    if !authorized(&state, &headers, &account_sid) {
        return unauthorized();
    }
    let mut messages = state.messages();
    messages.reverse();
    let page_size = messages.len().max(50);
    let body = json!({
        "messages": messages,
        "end": messages.len().saturating_sub(1),
        "first_page_uri": format!("{}?PageSize={page_size}&Page=0", uri.path()),
        "next_page_uri": null,
        "page": 0,
        "page_size": page_size,
        "previous_page_uri": null,
        "start": 0,
        "uri": format!("{}?PageSize={page_size}&Page=0", uri.path()),
    });
    (StatusCode::OK, axum::Json(body)).into_response()
}

fn resource_not_found(path: &str) -> Response {
    let message = format!("The requested resource {path} was not found");
    twilio_error(StatusCode::NOT_FOUND, 20404, &message)
}

async fn not_found(
    State(state): State<CarrierState>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    record(&state, &method, &uri, &headers, &body);
    resource_not_found(uri.path())
}
