//! The renderer's own cases, then every test of the official Mustache spec files this renderer
//! implements (`tests/spec/`: interpolation, sections, inverted, comments; vendored with their
//! MIT license), run with HTML escaping and missing variables as empty text, as the spec says.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use serde_json::{Value, json};

use super::*;

fn sms(template: &str, data: Value) -> Result<String, RenderError> {
    render(template, &data, Escape::None, Missing::Refuse).map(|r| r.text)
}

fn error(template: &str) -> (u32, u32, String) {
    let e = variables(template).unwrap_err();
    (e.line, e.column, e.message)
}

/// Variables print as text, without HTML escaping; values are never parsed again.
#[test]
fn substitutes_without_escaping() {
    let data = json!({"name": "Ann & <Bo>", "code": 42, "ok": true, "none": null, "x": "{{y}}"});
    assert_eq!(
        sms(
            "Hi {{name}} {{ code }} {{{name}}} {{&ok}} [{{none}}] {{x}}",
            data
        )
        .unwrap(),
        "Hi Ann & <Bo> 42 Ann & <Bo> true [] {{y}}"
    );
}

/// A missing variable fails a send, naming it; a preview prints nothing and lists each once.
#[test]
fn missing_variables() {
    let template = "{{a}} {{b}} {{b}} {{#c}}{{d}}{{/c}} {{^c}}{{e}}{{/c}}";
    assert_eq!(
        sms(template, json!({"a": 1})).unwrap_err(),
        RenderError::Missing("b".into())
    );
    let report = render(template, &json!({"a": 1}), Escape::None, Missing::Report).unwrap();
    assert_eq!(report.text, "1    ");
    assert_eq!(report.missing, ["b", "e"]);
}

/// Sections iterate lists, enter objects, test booleans; inverted sections render on absence.
#[test]
fn sections_over_lists_and_objects() {
    let data = json!({
        "items": [{"name": "Tea", "qty": 2}, {"name": "Cake", "qty": 1}],
        "customer": {"first": "Ann"},
        "vip": true, "empty": [], "blank": "",
    });
    let template = "{{#customer}}Hi {{first}}.{{/customer}}\
                    {{#items}} {{qty}}x {{name}}{{/items}}.\
                    {{#vip}} Gold!{{/vip}}{{^empty}} Nothing.{{/empty}}{{^blank}} Blank.{{/blank}}\
                    {{^missing}} Absent.{{/missing}} {{customer.first}}";
    assert_eq!(
        sms(template, data).unwrap(),
        "Hi Ann. 2x Tea 1x Cake. Gold! Nothing. Blank. Absent. Ann"
    );
}

/// Standalone section lines disappear with their line break.
#[test]
fn standalone_lines() {
    let template = "Order:\n{{#items}}\n- {{.}}\n{{/items}}\n{{! the end }}\nThanks";
    assert_eq!(
        sms(template, json!({"items": ["a", "b"]})).unwrap(),
        "Order:\n- a\n- b\nThanks"
    );
}

/// Variables are listed in first-use order, each once, section names included.
#[test]
fn variables_in_first_use_order() {
    let names =
        variables("{{ b }} {{a}} {{#list}}{{.}}{{item.name}}{{/list}} {{b}} {{! c }}").unwrap();
    assert_eq!(names, ["b", "a", "list", "item.name"]);
    assert!(variables("plain text } {").unwrap().is_empty());
}

/// Partials and delimiter changes are refused with a clear message and a position.
#[test]
fn partials_and_delimiters_are_refused() {
    let (line, column, message) = error("Hi\n  {{> footer}}");
    assert_eq!((line, column), (2, 3));
    assert!(message.contains("partials"), "{message}");
    let (_, _, message) = error("{{=<% %>=}}");
    assert!(message.contains("delimiters"), "{message}");
}

/// Malformed templates are refused where the fault is.
#[test]
fn malformed_templates() {
    assert_eq!(error("Hello {{name").0..=error("Hello {{name").1, 1..=7);
    assert_eq!(
        (error("line one\n  {{").0, error("line one\n  {{").1),
        (2, 3)
    );
    // Columns count characters, not bytes.
    assert_eq!(error("héllo ✓ {{x").1, 9);
    assert_eq!(error("a {{}} b").1, 3);
    assert!(error("{{first name}}").2.contains("first name"));
    assert!(error("{{a..b}}").2.contains("a..b"));
    assert!(error("{{#a}}x").2.contains("never closed"));
    assert!(error("x{{/a}}").2.contains("closes no open section"));
    assert!(
        error("{{#a}}{{#b}}{{/a}}{{/b}}")
            .2
            .contains("closes the section `b`")
    );
    assert!(error("{{{a}}").2.contains("unclosed"));
}

/// Nested sections over lists cannot multiply without bound.
#[test]
fn output_is_bounded() {
    let list: Vec<u32> = (0..100).collect();
    let template = "{{#l}}{{#l}}{{#l}}{{#l}}xxxxxxxxxx{{/l}}{{/l}}{{/l}}{{/l}}";
    match sms(template, json!({ "l": list })) {
        Err(RenderError::Invalid(e)) => assert!(e.message.contains("longer than")),
        other => panic!("{other:?}"),
    }
}

/// Spec tests this renderer skips on purpose, by file and name, with the reason. Empty: every
/// test of the four files passes.
const SKIPPED: &[(&str, &str, &str)] = &[];

/// Runs every test of the vendored spec files.
#[test]
fn mustache_spec() {
    let files = [
        (
            "interpolation",
            include_str!("../../tests/spec/interpolation.json"),
        ),
        ("sections", include_str!("../../tests/spec/sections.json")),
        ("inverted", include_str!("../../tests/spec/inverted.json")),
        ("comments", include_str!("../../tests/spec/comments.json")),
    ];
    let mut ran = 0;
    let mut failures = Vec::new();
    for (file, text) in files {
        let spec: Value = serde_json::from_str(text).unwrap();
        for test in spec["tests"].as_array().unwrap() {
            let name = test["name"].as_str().unwrap();
            if SKIPPED.iter().any(|(f, n, _)| *f == file && *n == name) {
                continue;
            }
            let template = test["template"].as_str().unwrap();
            let expected = test["expected"].as_str().unwrap();
            let got = render(template, &test["data"], Escape::Html, Missing::Report);
            match got {
                Ok(rendered) if rendered.text == expected => {}
                other => failures.push(format!(
                    "{file} / {name}: expected {expected:?}, got {other:?}"
                )),
            }
            ran += 1;
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {ran} failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
    assert_eq!(ran, 42 + 34 + 22 + 12);
}
