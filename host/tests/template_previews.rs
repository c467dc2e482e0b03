//! Template previews and rendering over HTTP, each scenario on SQLite and on PostgreSQL, through
//! the bundled mustache plugin: what a preview explains and reports, sections over structured
//! variables in a send, and cases of the official Mustache spec rendered by the real component.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::app::{Backend, TestApp};
use common::templates::{TEMPLATES, create, refused};
use reqwest::StatusCode;
use serde_json::{Value, json};

on_both_backends!(
    preview_explains_the_text,
    sections_render_structured_variables,
    spec_cases_through_the_component,
);

const TO: &str = "+14155552671";

/// A preview renders with the seed's flat body, reports missing and unused variables instead of
/// failing, and explains the encoding: the characters that force UCS-2 at their positions and
/// what Smart Encoding would change.
async fn preview_explains_the_text(backend: Backend) {
    let app = TestApp::start(backend).await;
    create(
        &app,
        json!({"name": "note", "template_body": "Hi {{name}}, “{{what}}” {{later}}"}),
    )
    .await;
    let (status, preview) = app
        .post(
            &format!("{TEMPLATES}/note/preview"),
            &json!({"name": "Zoé", "what": "ready 😀", "extra": 1}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{preview}");
    assert_eq!(preview["rendered_text"], "Hi Zoé, “ready 😀” ");
    assert_eq!(preview["version"], 1);
    assert_eq!(preview["missing_variables"], json!(["later"]));
    assert_eq!(preview["unused_variables"], json!(["extra"]));
    assert_eq!(preview["encoding"], "UCS-2");
    assert_eq!(preview["segments"], 1);
    assert_eq!(
        preview["units"], 19,
        "18 characters, the emoji takes two UTF-16 units"
    );
    assert_eq!(
        preview["ucs2_characters"],
        json!([
            {"position": 8, "character": "“", "code_point": "U+201C"},
            {"position": 15, "character": "😀", "code_point": "U+1F600"},
            {"position": 16, "character": "”", "code_point": "U+201D"}
        ])
    );
    let smart = &preview["smart_encoding"];
    assert_eq!(smart["applies"], false, "the emoji keeps it UCS-2: {smart}");
    assert_eq!(smart["replacements"].as_array().unwrap().len(), 2);

    let (_, quotes) = app
        .post(
            &format!("{TEMPLATES}/note/preview"),
            &json!({"name": "Al", "what": "ok", "later": "!"}),
        )
        .await;
    assert_eq!(quotes["rendered_text"], "Hi Al, “ok” !");
    assert_eq!(quotes["missing_variables"], json!([]));
    assert_eq!(quotes["encoding"], "UCS-2");
    assert_eq!(quotes["smart_encoding"]["applies"], true);
    assert_eq!(quotes["smart_encoding"]["encoding"], "GSM-7");
    assert_eq!(
        quotes["smart_encoding"]["replacements"][0],
        json!({"position": 7, "character": "“", "code_point": "U+201C", "replacement": "\""})
    );

    create(
        &app,
        json!({"name": "all_vars", "template_body": "{{a}}{{b}}"}),
    )
    .await;
    let (status, empty) = app
        .post(&format!("{TEMPLATES}/all_vars/preview"), &json!({}))
        .await;
    assert_eq!(status, StatusCode::OK, "{empty}");
    assert_eq!(empty["rendered_text"], "");
    assert_eq!(empty["encoding"], Value::Null);
    assert_eq!(empty["missing_variables"], json!(["a", "b"]));

    refused(
        app.post(&format!("{TEMPLATES}/nope/preview"), &json!({}))
            .await,
        StatusCode::NOT_FOUND,
        "template_not_found",
    );
    refused(
        app.post(&format!("{TEMPLATES}/note/preview"), &json!(["a"]))
            .await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_field",
    );
    let huge = "x".repeat(40 * 1024);
    refused(
        app.post(&format!("{TEMPLATES}/note/preview"), &json!({"name": huge}))
            .await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_template_variable",
    );
    let deep = json!({"a": [[[[[[[[["too deep"]]]]]]]]]});
    refused(
        app.post(&format!("{TEMPLATES}/note/preview"), &deep).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_template_variable",
    );
    app.stop().await;
}

/// A send's variables may be lists and objects, which sections iterate; the message records the
/// rendered text.
async fn sections_render_structured_variables(backend: Backend) {
    let app = TestApp::start(backend).await;
    create(&app, json!({
        "name": "receipt",
        "template_body": "Order {{order.number}}:\n{{#items}}\n- {{qty}}x {{name}}\n{{/items}}\n{{^paid}}\nPay at pickup.\n{{/paid}}\n{{! staff only }}\nThanks!",
    }))
    .await;
    let sent = app
        .send(
            json!({"to_number": TO, "template_id": "receipt", "template_variables": {
                "order": {"number": 42},
                "items": [{"qty": 2, "name": "Tea"}, {"qty": 1, "name": "Cake"}],
                "paid": false,
            }}),
        )
        .await;
    assert_eq!(
        sent["body"],
        "Order 42:\n- 2x Tea\n- 1x Cake\nPay at pickup.\nThanks!"
    );
    let delivered = app
        .wait_for(sent["id"].as_str().unwrap(), "delivered")
        .await;
    assert_eq!(delivered["template_version"], 1);
    refused(
        app.post("/api/v1/sms/send", &json!({"to_number": TO, "template_id": "receipt", "template_variables": {"items": []}})).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "missing_template_variable",
    );
    app.stop().await;
}

/// A few cases of the official spec (vendored in the plugin crate), rendered through the real
/// component by a preview: context stacks, implicit iterators, standalone lines, comments.
async fn spec_cases_through_the_component(backend: Backend) {
    let app = TestApp::start(backend).await;
    let spec_dir = common::root().join("plugins/mustache/tests/spec");
    let cases = [
        ("sections", "List Contexts"),
        ("sections", "Deeply Nested Contexts"),
        ("sections", "Implicit Iterator - Array"),
        ("sections", "Indented Standalone Lines"),
        ("inverted", "Standalone Line Endings"),
        ("interpolation", "Dotted Names - Context Precedence"),
        ("comments", "Indented Multiline Standalone"),
    ];
    for (index, (file, name)) in cases.iter().enumerate() {
        let text = std::fs::read_to_string(spec_dir.join(format!("{file}.json"))).unwrap();
        let spec: Value = serde_json::from_str(&text).unwrap();
        let test = spec["tests"]
            .as_array()
            .unwrap()
            .iter()
            .find(|t| t["name"] == *name)
            .unwrap_or_else(|| panic!("{file} / {name}"));
        let template = create(
            &app,
            json!({"name": format!("spec_{index}"), "template_body": test["template"]}),
        )
        .await;
        let (status, preview) = app
            .post(
                &format!("{TEMPLATES}/{}/preview", template["id"].as_str().unwrap()),
                &test["data"],
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{file} / {name}: {preview}");
        assert_eq!(
            preview["rendered_text"], test["expected"],
            "{file} / {name}"
        );
    }
    app.stop().await;
}
