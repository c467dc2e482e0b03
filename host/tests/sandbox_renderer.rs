//! A hostile renderer, end to end through the API (in-process, over an in-memory store): its
//! oversized errors, variable lists and rendered text never reach a client, a log or storage
//! unbounded.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use herald::Herald;
use serde_json::{Value, json};
use tower::ServiceExt;

const KEY: &str = "renderer-key";

async fn herald() -> Herald {
    let mut config = common::config(
        vec![
            ("probe", common::plugin_config(common::plugin("probe"))),
            (
                "hostile-renderer",
                common::plugin_config(common::plugin("hostile-renderer")),
            ),
        ],
        "probe",
        "hostile-renderer",
    );
    config.server.api_keys = vec![KEY.into()];
    config.storage.url = "sqlite::memory:".into();
    Herald::builder().config(config).build().await.unwrap()
}

/// Posts `body` to `path`; returns the status, the body's size in bytes and the body as JSON.
async fn post(herald: &Herald, path: &str, body: &Value) -> (StatusCode, usize, Value) {
    let request = Request::post(path)
        .header(header::AUTHORIZATION, format!("Bearer {KEY}"))
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(body.to_string()))
        .unwrap();
    let response = herald.router().oneshot(request).await.unwrap();
    let status = response.status();
    let bytes = axum::body::to_bytes(response.into_body(), 64 << 20)
        .await
        .unwrap();
    (
        status,
        bytes.len(),
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

/// A 512 KiB validation error answers a small 422; a template claiming 10,000 variables is
/// refused; a 512 KiB rendering is refused as an invalid template, and nothing is stored.
#[tokio::test]
async fn hostile_renderer_output_is_bounded() {
    let herald = herald().await;
    let template = |body: &str| json!({"name": body, "template_body": body});

    let (status, size, answer) =
        post(&herald, "/api/v1/sms/templates", &template("huge-error")).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{answer}");
    assert_eq!(answer["error"]["code"], "invalid_template");
    assert!(
        size < 2048,
        "a {size}-byte answer to a 512 KiB renderer error"
    );

    let (status, size, answer) = post(
        &herald,
        "/api/v1/sms/templates",
        &template("many-variables"),
    )
    .await;
    assert!(
        status.is_client_error() || status.is_server_error(),
        "{status}: {answer}"
    );
    assert!(size < 2048, "a {size}-byte answer to 10,000 variables");

    let (status, _, created) =
        post(&herald, "/api/v1/sms/templates", &template("huge-render")).await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let send = json!({"to_number": "+14155552671", "template_id": created["id"]});
    let (status, size, answer) = post(&herald, "/api/v1/sms/send", &send).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{answer}");
    assert_eq!(answer["error"]["code"], "invalid_template");
    assert!(size < 2048, "a {size}-byte answer to a 512 KiB rendering");
    let page = herald
        .pipeline()
        .store()
        .list_messages(&herald::TenantId::default_tenant(), &Default::default())
        .await
        .unwrap();
    assert!(
        page.items.is_empty(),
        "nothing is stored for a refused rendering"
    );
    herald.close().await;
}
