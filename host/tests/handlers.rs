//! Handler tests: Herald's router called in-process with `tower::ServiceExt::oneshot`, over an
//! in-memory SQLite store and the probe provider; no socket, no dispatcher.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use herald::config::{Config, ServerConfig, StorageConfig};
use herald::{Herald, TenantId};
use serde_json::{Value, json};
use tower::ServiceExt;

const KEY: &str = "handler-key";

fn config(provider: &str) -> Config {
    let mut plugins = vec![(
        "mustache",
        common::plugin_config(common::plugin("mustache")),
    )];
    if provider == "probe" {
        plugins.push(("probe", common::plugin_config(common::plugin("probe"))));
    }
    let mut config = common::config(plugins, provider, "mustache");
    config.server = ServerConfig {
        api_keys: vec![KEY.into()],
        ..ServerConfig::default()
    };
    config.storage = StorageConfig {
        url: "sqlite::memory:".into(),
        ..StorageConfig::default()
    };
    config
}

async fn herald(provider: &str) -> Herald {
    Herald::builder()
        .config(config(provider))
        .build()
        .await
        .unwrap()
}

/// Calls the router once; returns the status, the headers and the body as JSON (or text).
async fn call(herald: &Herald, request: Request<Body>) -> (StatusCode, header::HeaderMap, Value) {
    let response = herald.router().oneshot(request).await.unwrap();
    let status = response.status();
    let headers = response.headers().clone();
    let bytes = axum::body::to_bytes(response.into_body(), 1 << 20)
        .await
        .unwrap();
    let body = serde_json::from_slice(&bytes)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()));
    (status, headers, body)
}

fn post_json(path: &str, body: &Value) -> Request<Body> {
    Request::post(path)
        .header(header::AUTHORIZATION, format!("Bearer {KEY}"))
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(body.to_string()))
        .unwrap()
}

fn get(path: &str) -> Request<Body> {
    Request::get(path)
        .header(header::AUTHORIZATION, format!("Bearer {KEY}"))
        .body(Body::empty())
        .unwrap()
}

/// Asserts the one error shape with `code` and `status`.
fn assert_error(answer: &(StatusCode, header::HeaderMap, Value), status: StatusCode, code: &str) {
    assert_eq!(answer.0, status, "{}", answer.2);
    assert_eq!(answer.2["error"]["code"], code, "{}", answer.2);
    assert!(
        answer.2["error"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty())
    );
}

/// A send is answered 202 with its counts, read back with its history, and replayed by key.
#[tokio::test]
async fn send_read_and_replay() {
    let herald = herald("probe").await;
    let body = json!({"to_number": "+14155552671", "message": "Hello “there”", "customer_id": 42});
    let mut request = post_json("/api/v1/sms/send", &body);
    request
        .headers_mut()
        .insert("idempotency-key", "order-42".parse().unwrap());
    let (status, _, sent) = call(&herald, request).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{sent}");
    assert_eq!(sent["status"], "queued");
    assert_eq!(sent["encoding"], "UCS-2");
    assert_eq!(sent["segments"], 1);
    assert_eq!(sent["customer_id"], "42");
    assert_eq!(sent["category"], "transactional");
    let id = sent["id"].as_str().unwrap();

    let (status, _, read) = call(&herald, get(&format!("/api/v1/sms/messages/{id}"))).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(read["history"][0]["status"], "queued");

    let mut replay = post_json("/api/v1/sms/send", &body);
    replay
        .headers_mut()
        .insert("idempotency-key", "order-42".parse().unwrap());
    let (status, headers, replayed) = call(&herald, replay).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    assert_eq!(replayed["id"], sent["id"]);
    assert_eq!(headers["idempotent-replayed"], "true");

    let mut other = post_json(
        "/api/v1/sms/send",
        &json!({"to_number": "+14155552671", "message": "different"}),
    );
    other
        .headers_mut()
        .insert("idempotency-key", "order-42".parse().unwrap());
    assert_error(
        &call(&herald, other).await,
        StatusCode::CONFLICT,
        "idempotency_conflict",
    );
}

/// Bad input of every kind gets its code and status, in the one error shape.
#[tokio::test]
async fn bad_input_gets_its_code() {
    let herald = herald("probe").await;
    let send = |body: Value| post_json("/api/v1/sms/send", &body);
    let cases = [
        (
            json!({"to_number": "+12", "message": "x"}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_phone_number",
        ),
        (
            json!({"to_number": "4155552671", "message": "x"}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_phone_number",
        ),
        (
            json!({"to_number": "+14155552671"}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "missing_body",
        ),
        (
            json!({"to_number": "+14155552671", "message": "x", "template_id": "t"}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "ambiguous_body",
        ),
        (
            json!({"to_number": "+14155552671", "message": "  "}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "empty_message",
        ),
        (
            json!({"to_number": "+14155552671", "message": "x".repeat(1601)}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "message_too_long",
        ),
        (
            json!({"to_number": "+14155552671", "message": "x", "category": "compliance"}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_category",
        ),
        (
            json!({"to_number": "+14155552671", "template_id": "tpl_none"}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "unknown_template",
        ),
        (
            json!({"to_number": "+14155552671", "message": "x", "surprise": 1}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_field",
        ),
        (
            json!({"to_number": "+14155552671", "message": "x", "metadata": [1]}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_field",
        ),
    ];
    for (body, status, code) in cases {
        assert_error(&call(&herald, send(body)).await, status, code);
    }

    let malformed = Request::post("/api/v1/sms/send")
        .header(header::AUTHORIZATION, format!("Bearer {KEY}"))
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from("{\"to_number\":"))
        .unwrap();
    assert_error(
        &call(&herald, malformed).await,
        StatusCode::BAD_REQUEST,
        "malformed_json",
    );
    let not_json = Request::post("/api/v1/sms/send")
        .header(header::AUTHORIZATION, format!("Bearer {KEY}"))
        .body(Body::from("to_number=1"))
        .unwrap();
    assert_error(
        &call(&herald, not_json).await,
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "unsupported_media_type",
    );
    assert_error(
        &call(&herald, get("/api/v1/sms/messages/msg_nope")).await,
        StatusCode::NOT_FOUND,
        "message_not_found",
    );
    assert_error(
        &call(&herald, get("/api/v1/sms/messages?limit=0")).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_query",
    );
}

/// Routing and transport errors use the same shape: 401 (with a challenge), 404, 405, 414, 431.
#[tokio::test]
async fn transport_errors_share_the_shape() {
    let herald = herald("probe").await;
    let anonymous = Request::get("/api/v1/sms/messages")
        .body(Body::empty())
        .unwrap();
    let answer = call(&herald, anonymous).await;
    assert_error(&answer, StatusCode::UNAUTHORIZED, "unauthorized");
    assert!(answer.1.contains_key(header::WWW_AUTHENTICATE));

    let lowercase = Request::get("/api/v1/sms/messages")
        .header(header::AUTHORIZATION, format!("bearer {KEY}"))
        .body(Body::empty())
        .unwrap();
    assert_eq!(call(&herald, lowercase).await.0, StatusCode::OK);

    assert_error(
        &call(&herald, get("/nowhere")).await,
        StatusCode::NOT_FOUND,
        "not_found",
    );
    let wrong_method = Request::delete("/api/v1/sms/send")
        .body(Body::empty())
        .unwrap();
    assert_error(
        &call(&herald, wrong_method).await,
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
    );
    let long = format!("/api/v1/sms/messages?customer_id={}", "x".repeat(9_000));
    assert_error(
        &call(&herald, get(&long)).await,
        StatusCode::URI_TOO_LONG,
        "uri_too_long",
    );
    let mut big = get("/api/v1/sms/messages");
    for i in 0..40 {
        big.headers_mut().insert(
            format!("x-filler-{i}")
                .parse::<header::HeaderName>()
                .unwrap(),
            "y".repeat(1_000).parse().unwrap(),
        );
    }
    assert_error(
        &call(&herald, big).await,
        StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
        "headers_too_large",
    );
}

/// A template's category is the message's unless the request names one, so a marketing template
/// obeys marketing opt-outs.
#[tokio::test]
async fn template_category_applies() {
    let herald = herald("probe").await;
    let (status, _, template) = call(
        &herald,
        post_json(
            "/api/v1/sms/templates",
            &json!({"name": "promo", "category": "marketing", "template_body": "Deal: {{deal}}. Reply STOP to opt out"}),
        ),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{template}");
    let id = template["id"].as_str().unwrap();
    let tenant = TenantId::default_tenant();
    herald
        .store()
        .opt_out(&herald::store::OptOutChange::new(
            &tenant,
            "+14155552671",
            herald::Category::parse("marketing").unwrap(),
            herald::store::OptOutMethod::Api,
            0,
        ))
        .await
        .unwrap();
    let from_template = json!({"to_number": "+14155552671", "template_id": id, "template_variables": {"deal": "2 for 1"}});
    assert_error(
        &call(&herald, post_json("/api/v1/sms/send", &from_template)).await,
        StatusCode::CONFLICT,
        "recipient_opted_out",
    );
    let mut overridden = from_template.clone();
    overridden["category"] = json!("transactional");
    let (status, _, sent) = call(&herald, post_json("/api/v1/sms/send", &overridden)).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{sent}");
    assert_eq!(sent["body"], "Deal: 2 for 1. Reply STOP to opt out");
    assert_eq!(sent["category"], "transactional");
}

/// With no provider loaded a send is refused with 503 and nothing is stored.
#[tokio::test]
async fn no_provider_is_unavailable() {
    let herald = herald("").await;
    let answer = call(
        &herald,
        post_json(
            "/api/v1/sms/send",
            &json!({"to_number": "+14155552671", "message": "hi"}),
        ),
    )
    .await;
    assert_error(
        &answer,
        StatusCode::SERVICE_UNAVAILABLE,
        "provider_unavailable",
    );
    assert!(answer.1.contains_key(header::RETRY_AFTER));
    let (_, _, page) = call(&herald, get("/api/v1/sms/messages")).await;
    assert_eq!(page["items"], json!([]));
}

fn post_raw(path: &str, content_type: &str, body: impl Into<Body>) -> Request<Body> {
    Request::post(path)
        .header(header::AUTHORIZATION, format!("Bearer {KEY}"))
        .header(header::CONTENT_TYPE, content_type)
        .body(body.into())
        .unwrap()
}

/// The number of messages the default tenant has.
async fn stored_messages(herald: &Herald) -> usize {
    let (status, _, page) = call(herald, get("/api/v1/sms/messages?limit=500")).await;
    assert_eq!(status, StatusCode::OK, "{page}");
    page["items"].as_array().unwrap().len()
}

/// A NUL character is refused wherever text enters: every JSON field kind of a send and of a
/// template (422 `invalid_field`), path ids (422 `invalid_field`), query filters (422
/// `invalid_query`) and webhooks (400 `malformed_webhook`); nothing is stored.
#[tokio::test]
async fn nul_is_refused_everywhere() {
    let herald = herald("probe").await;
    let to = "+14155552671";
    let sends = [
        json!({"to_number": to, "message": "a\u{0}b"}),
        json!({"to_number": to, "message": "x", "customer_id": "c\u{0}"}),
        json!({"to_number": to, "message": "x", "order_id": "\u{0}"}),
        json!({"to_number": to, "message": "x", "metadata": {"k": ["ok", "\u{0}"]}}),
        json!({"to_number": to, "message": "x", "metadata": {"k\u{0}": 1}}),
        json!({"to_number": to, "template_id": "tpl", "template_variables": {"v": "\u{0}"}}),
        json!({"to_number": to, "template_id": "tpl\u{0}"}),
        json!({"to_number": to, "message": "x", "category": "a\u{0}"}),
        json!({"to_number": to, "message": "x", "from_number": "AB\u{0}"}),
        json!({"to_number": "+1415555\u{0}2671", "message": "x"}),
    ];
    for body in sends {
        let answer = call(&herald, post_json("/api/v1/sms/send", &body)).await;
        assert_error(&answer, StatusCode::UNPROCESSABLE_ENTITY, "invalid_field");
        assert!(
            answer.2["error"]["message"]
                .as_str()
                .unwrap()
                .contains("NUL")
        );
    }
    let templates = [
        json!({"name": "n\u{0}", "template_body": "Hi"}),
        json!({"name": "n", "template_body": "Hi \u{0}"}),
        json!({"name": "n", "template_body": "Hi", "description": "\u{0}"}),
    ];
    for body in templates {
        assert_error(
            &call(&herald, post_json("/api/v1/sms/templates", &body)).await,
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_field",
        );
    }
    for path in [
        "/api/v1/sms/messages/%00",
        "/api/v1/sms/messages/msg_%00x",
        "/api/v1/sms/templates/%00",
    ] {
        assert_error(
            &call(&herald, get(path)).await,
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_field",
        );
    }
    for query in [
        "customer_id=%00",
        "phone_number=%00",
        "cursor=%00",
        "status=%00",
        "x%00=1",
    ] {
        assert_error(
            &call(&herald, get(&format!("/api/v1/sms/messages?{query}"))).await,
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_query",
        );
    }
    let form = "application/x-www-form-urlencoded";
    let webhooks = [
        post_raw(
            "/api/v1/sms/webhooks/probe/inbound",
            form,
            "Body=%00&From=x",
        ),
        post_raw(
            "/api/v1/sms/webhooks/probe/inbound",
            form,
            &b"Body=a\0b"[..],
        ),
        post_raw(
            "/api/v1/sms/webhooks/probe/status?message_id=%00",
            form,
            "MessageStatus=sent",
        ),
        post_raw(
            "/api/v1/sms/webhooks/probe/status",
            "application/json",
            r#"{"Body": "\u0000"}"#,
        ),
    ];
    for request in webhooks {
        assert_error(
            &call(&herald, request).await,
            StatusCode::BAD_REQUEST,
            "malformed_webhook",
        );
    }
    // The same webhook without the NUL reaches the plugin, which accepts it.
    let clean = post_raw("/api/v1/sms/webhooks/probe/inbound", form, "Body=hi&From=x");
    assert_eq!(call(&herald, clean).await.0, StatusCode::OK);
    assert_eq!(stored_messages(&herald).await, 0);
}

/// A key given twice in one JSON object is refused with 422 `invalid_field`, at the top of a
/// send, inside its metadata, and in a template.
#[tokio::test]
async fn duplicate_keys_are_refused() {
    let herald = herald("probe").await;
    let json = "application/json";
    for (path, body, field) in [
        (
            "/api/v1/sms/send",
            r#"{"to_number": "+14155552671", "to_number": "+14155552672", "message": "x"}"#,
            "`to_number`",
        ),
        (
            "/api/v1/sms/send",
            r#"{"to_number": "+14155552671", "message": "x", "metadata": {"a": 1, "a": 2}}"#,
            "`metadata.a`",
        ),
        (
            "/api/v1/sms/templates",
            r#"{"name": "a", "name": "b", "template_body": "Hi"}"#,
            "`name`",
        ),
    ] {
        let answer = call(&herald, post_raw(path, json, body)).await;
        assert_error(&answer, StatusCode::UNPROCESSABLE_ENTITY, "invalid_field");
        let message = answer.2["error"]["message"].as_str().unwrap();
        assert!(
            message.contains("duplicate field") && message.contains(field),
            "{message}"
        );
    }
    assert_eq!(stored_messages(&herald).await, 0);
}

/// Refusals of a body's shape speak Herald's words and name the field, never serde's wording
/// (types, positions, variant names, lists of expected fields).
#[tokio::test]
async fn refusals_name_the_field_in_herald_words() {
    let herald = herald("probe").await;
    let to = "+14155552671";
    for (body, message) in [
        (
            json!({"to_number": to, "message": "x", "customer_id": {"id": 1}}),
            "`customer_id` must be a string or a number, not an object",
        ),
        (
            json!({"to_number": to, "message": "x", "order_id": [1]}),
            "`order_id` must be a string or a number, not an array",
        ),
        (
            json!({"to_number": 14155552671u64, "message": "x"}),
            "`to_number` must be a string, not 14155552671",
        ),
        (
            json!({"to_number": to, "message": "x", "surprise": 1}),
            "unknown field `surprise`",
        ),
        (
            json!({"to_number": to, "message": "x", "metadata": "m"}),
            "`metadata` must be an object, not a string",
        ),
        (json!({"message": "x"}), "`to_number` is required"),
        (
            json!([to, "x"]),
            "the body must be a JSON object, not an array",
        ),
    ] {
        let answer = call(&herald, post_json("/api/v1/sms/send", &body)).await;
        assert_error(&answer, StatusCode::UNPROCESSABLE_ENTITY, "invalid_field");
        assert_eq!(answer.2["error"]["message"], message, "{body}");
    }
    let answer = call(
        &herald,
        post_json(
            "/api/v1/sms/templates",
            &json!({"name": "n", "template_body": "Hi", "is_active": "yes"}),
        ),
    )
    .await;
    assert_error(&answer, StatusCode::UNPROCESSABLE_ENTITY, "invalid_field");
    assert_eq!(
        answer.2["error"]["message"],
        "`is_active` must be true or false, not a string"
    );
    let answer = call(
        &herald,
        post_raw("/api/v1/sms/send", "application/json", "{\"to_number\": }"),
    )
    .await;
    assert_error(&answer, StatusCode::BAD_REQUEST, "malformed_json");
    assert_eq!(
        answer.2["error"]["message"],
        "the body is not valid JSON: expected value (line 1, column 15)"
    );
}

/// `from_number` takes an E.164 number, a 5–6 digit short code or an alphanumeric sender ID
/// (1–11 letters, digits and spaces, one letter at least); anything else is 422
/// `invalid_sender`.
#[tokio::test]
async fn senders_by_kind() {
    let herald = herald("probe").await;
    for from in [
        "+14155552671",
        "12345",
        "654321",
        "ACME Shop",
        "Shop24",
        "A",
    ] {
        let body = json!({"to_number": "+14155552672", "message": "x", "from_number": from});
        let (status, _, sent) = call(&herald, post_json("/api/v1/sms/send", &body)).await;
        assert_eq!(status, StatusCode::ACCEPTED, "{from}: {sent}");
        assert_eq!(sent["sender"], from);
    }
    for from in [
        "",
        "4155552671",
        "1234",
        "1234567",
        "+12",
        "ACME-Shop",
        "ABCDEFGHIJKL",
        " ACME",
        "Café",
    ] {
        let body = json!({"to_number": "+14155552672", "message": "x", "from_number": from});
        assert_error(
            &call(&herald, post_json("/api/v1/sms/send", &body)).await,
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_sender",
        );
    }
}

/// A body of only invisible characters (zero-width, controls, format characters) is 422
/// `empty_message`; one visible character makes it a message.
#[tokio::test]
async fn invisible_bodies_are_empty() {
    let herald = herald("probe").await;
    for text in ["\u{200b}\u{200d}", "\u{7}", "\u{feff} \u{2060}", "\u{fe0f}"] {
        let body = json!({"to_number": "+14155552671", "message": text});
        assert_error(
            &call(&herald, post_json("/api/v1/sms/send", &body)).await,
            StatusCode::UNPROCESSABLE_ENTITY,
            "empty_message",
        );
    }
    let body = json!({"to_number": "+14155552671", "message": "\u{200b}ok"});
    assert_eq!(
        call(&herald, post_json("/api/v1/sms/send", &body)).await.0,
        StatusCode::ACCEPTED
    );
}

/// List filters are checked: a `+` left unencoded (read as a space) is refused with a hint to
/// send `%2B`, the encoded number finds the message, and `customer_id` is bounded.
#[tokio::test]
async fn list_filters_are_checked() {
    let herald = herald("probe").await;
    let body = json!({"to_number": "+14155552671", "message": "x", "customer_id": "c1"});
    assert_eq!(
        call(&herald, post_json("/api/v1/sms/send", &body)).await.0,
        StatusCode::ACCEPTED
    );
    let answer = call(
        &herald,
        get("/api/v1/sms/messages?phone_number=+14155552671"),
    )
    .await;
    assert_error(&answer, StatusCode::UNPROCESSABLE_ENTITY, "invalid_query");
    assert!(
        answer.2["error"]["message"]
            .as_str()
            .unwrap()
            .contains("%2B"),
        "{}",
        answer.2
    );
    let (status, _, page) = call(
        &herald,
        get("/api/v1/sms/messages?phone_number=%2B14155552671"),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(page["items"].as_array().unwrap().len(), 1);
    let (status, _, page) = call(&herald, get("/api/v1/sms/messages?customer_id=c1")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(page["items"].as_array().unwrap().len(), 1);
    let long = format!("/api/v1/sms/messages?customer_id={}", "c".repeat(256));
    for (path, message) in [
        (long.as_str(), "`customer_id` must be 1 to 255 bytes"),
        (
            "/api/v1/sms/messages?customer_id=",
            "`customer_id` must be 1 to 255 bytes",
        ),
        (
            "/api/v1/sms/messages?phone_number=4155552671",
            "`phone_number`",
        ),
        (
            "/api/v1/sms/messages?surprise=1",
            "unknown query parameter `surprise`",
        ),
        (
            "/api/v1/sms/messages?limit=ten",
            "query parameter `limit` has an invalid value",
        ),
        (
            "/api/v1/sms/messages?status=sent&status=failed",
            "given more than once",
        ),
    ] {
        let answer = call(&herald, get(path)).await;
        assert_error(&answer, StatusCode::UNPROCESSABLE_ENTITY, "invalid_query");
        let text = answer.2["error"]["message"].as_str().unwrap();
        assert!(text.contains(message), "{path}: {text}");
    }
}
