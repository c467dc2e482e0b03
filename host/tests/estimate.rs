//! The dry run, `POST /api/v1/sms/estimate`, on SQLite and on PostgreSQL (a template rendered by
//! the real mustache plugin; nothing stored or sent), and `herald segments --explain`, which
//! prints the same analysis.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::process::Command;

use common::app::{Backend, TestApp};
use reqwest::StatusCode;
use serde_json::{Value, json};

on_both_backends!(
    text_is_explained,
    template_is_rendered_and_counted,
    bad_input_is_refused
);

const ESTIMATE: &str = "/api/v1/sms/estimate";

/// Curly quotes force UCS-2 at their positions; the answer names them, offers the Smart
/// Encoding alternative with its count, leaves `cost` null with a reason, and sends nothing.
async fn text_is_explained(backend: Backend) {
    let app = TestApp::start(backend).await;
    let (status, estimate) = app
        .post(
            ESTIMATE,
            &json!({"message": "It\u{2019}s \u{201C}ready\u{201D}"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{estimate}");
    assert_eq!(estimate["encoding"], "UCS-2", "{estimate:#}");
    assert_eq!(estimate["segments"], 1);
    assert_eq!(estimate["units"], 12);
    assert_eq!(estimate["category"], "transactional");
    let positions: Vec<(u64, &str)> = estimate["ucs2_characters"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["position"].as_u64().unwrap(),
                c["code_point"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(positions, [(2, "U+2019"), (5, "U+201C"), (11, "U+201D")]);
    let smart = &estimate["smart_encoding"];
    assert_eq!(smart["applies"], true);
    assert_eq!(smart["text"], "It's \"ready\"");
    assert_eq!(smart["encoding"], "GSM-7");
    assert_eq!(smart["replacements"].as_array().unwrap().len(), 3);
    assert_eq!(estimate["smart_encoding_enabled"], false);
    assert_eq!(estimate["cost"], Value::Null);
    assert!(
        estimate["cost_unavailable"]
            .as_str()
            .unwrap()
            .contains("no price")
    );
    assert!(estimate.get("recipient_opted_out").is_none());

    // A long GSM text: three segments, nothing to explain.
    let (_, long) = app
        .post(ESTIMATE, &json!({"message": "a".repeat(307)}))
        .await;
    assert_eq!(long["encoding"], "GSM-7");
    assert_eq!(long["segments"], 3);
    assert_eq!(long["ucs2_characters"], json!([]));
    assert_eq!(long["smart_encoding"], Value::Null);
    assert_eq!(app.message_count().await, 0, "a dry run stores nothing");
    assert!(app.carrier.requests().is_empty());
    app.stop().await;
}

/// A template is rendered with its variables and takes its category; with a recipient, the
/// answer says whether that recipient's opt-outs would refuse it.
async fn template_is_rendered_and_counted(backend: Backend) {
    let app = TestApp::start(backend).await;
    let (status, template) = app
        .post(
            "/api/v1/sms/templates",
            &json!({"name": "promo", "category": "marketing", "template_body": "{{name}}: {{deal}} off. Reply STOP to opt out"}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{template}");
    let id = template["id"].as_str().unwrap();
    let body = json!({
        "template_id": id,
        "template_variables": {"name": "Zoë", "deal": 20},
        "to_number": "+14155550141",
    });
    let (status, estimate) = app.post(ESTIMATE, &body).await;
    assert_eq!(status, StatusCode::OK, "{estimate}");
    assert_eq!(estimate["body"], "Zoë: 20 off. Reply STOP to opt out");
    assert_eq!(estimate["template_id"], id);
    assert_eq!(estimate["category"], "marketing");
    assert_eq!(estimate["encoding"], "UCS-2", "ë is not in GSM-7");
    assert_eq!(estimate["ucs2_characters"][0]["position"], 2);
    assert_eq!(estimate["smart_encoding"], Value::Null, "no stand-in for ë");
    assert_eq!(estimate["recipient_opted_out"], false);

    app.post(
        "/api/v1/sms/opt-out",
        &json!({"phone_number": "+14155550141", "opt_out_reason": "r", "customer_id": 1, "category": "marketing"}),
    )
    .await;
    let (_, blocked) = app.post(ESTIMATE, &body).await;
    assert_eq!(blocked["recipient_opted_out"], true, "{blocked}");
    let (_, other) = app
        .post(
            ESTIMATE,
            &json!({"template_id": id, "template_variables": {"name": "Zoe", "deal": 20}, "category": "alerts", "to_number": "+14155550141"}),
        )
        .await;
    assert_eq!(other["recipient_opted_out"], false, "{other}");
    assert_eq!(other["encoding"], "GSM-7");
    app.stop().await;
}

/// A body that a send would refuse is refused the same way.
async fn bad_input_is_refused(backend: Backend) {
    let app = TestApp::start(backend).await;
    for (body, code) in [
        (json!({}), "missing_body"),
        (
            json!({"message": "a", "template_id": "t"}),
            "ambiguous_body",
        ),
        (json!({"template_id": "tpl_nope"}), "unknown_template"),
        (json!({"message": " "}), "empty_message"),
        (json!({"message": "a".repeat(1601)}), "message_too_long"),
        (
            json!({"message": "hi", "to_number": "12"}),
            "invalid_phone_number",
        ),
        (
            json!({"message": "hi", "category": "all"}),
            "invalid_category",
        ),
        (json!({"message": "hi", "surprise": 1}), "invalid_field"),
    ] {
        let (status, error) = app.post(ESTIMATE, &body).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}: {error}");
        assert_eq!(error["error"]["code"], code, "{body}");
    }
    app.stop().await;
}

/// `herald segments --explain` prints the analysis the API answers with.
#[test]
fn cli_explains_the_same() {
    let output = Command::new(env!("CARGO_BIN_EXE_herald"))
        .args(["segments", "--explain", "Deal\u{2019}s on \u{1F355}"])
        .output()
        .unwrap();
    assert!(output.status.success(), "{output:?}");
    let explained: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(explained["encoding"], "UCS-2");
    let positions: Vec<u64> = explained["ucs2_characters"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["position"].as_u64().unwrap())
        .collect();
    assert_eq!(positions, [4, 10]);
    assert_eq!(explained["smart_encoding"]["applies"], false);
    assert_eq!(
        explained["smart_encoding"]["replacements"][0]["replacement"],
        "'"
    );
}
