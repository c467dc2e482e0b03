//! Templates over HTTP, each scenario on SQLite and on PostgreSQL, rendered by the bundled
//! mustache plugin: the defaults every tenant starts with, versions and roll-back, soft delete,
//! listing, lookup by name in sends, and the refusals of each route. Previews and rendering are
//! in `template_previews.rs`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::app::{Backend, TestApp};
use common::templates::{TEMPLATES, create, refused};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

on_both_backends!(
    defaults_exist_for_every_tenant,
    versions_and_roll_back,
    soft_delete_keeps_history,
    listing_filters_and_pages,
    bad_input_is_refused,
);

const TO: &str = "+14155552671";

/// `method path` with an optional JSON body and the test API key.
async fn call(
    app: &TestApp,
    method: Method,
    path: &str,
    body: Option<Value>,
) -> (StatusCode, Value) {
    let mut builder = app.client.request(method, format!("{}{path}", app.base));
    if let Some(body) = body {
        builder = builder.json(&body);
    }
    app.request(builder).await
}

/// Every name on a page of `GET /templates?query`.
async fn names(app: &TestApp, query: &str) -> Vec<String> {
    let (status, page) = app.get(&format!("{TEMPLATES}?{query}")).await;
    assert_eq!(status, StatusCode::OK, "{page}");
    page["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap().to_owned())
        .collect()
}

/// The default tenant and a tenant made through the admin API both start with the seed's six
/// templates (their categories and variables, the marketing one ending with the opt-out words);
/// each previews with exactly its variables missing, and a send names one by its name.
async fn defaults_exist_for_every_tenant(backend: Backend) {
    let app = TestApp::start(backend).await;
    let expected = [
        (
            "reservation_confirmation",
            "reservation",
            vec![
                "customer_name",
                "party_size",
                "restaurant_name",
                "date",
                "time",
                "confirmation_code",
            ],
        ),
        (
            "reservation_reminder",
            "reminder",
            vec!["party_size", "restaurant_name", "time"],
        ),
        (
            "order_ready",
            "order",
            vec!["customer_name", "order_number", "restaurant_name"],
        ),
        (
            "order_delivered",
            "order",
            vec!["order_number", "restaurant_name"],
        ),
        (
            "authentication_code",
            "authentication",
            vec!["code", "restaurant_name"],
        ),
        (
            "marketing_promotion",
            "marketing",
            vec![
                "restaurant_name",
                "promotion_text",
                "promo_code",
                "discount",
            ],
        ),
    ];
    for (name, category, variables) in &expected {
        let (status, template) = app.get(&format!("{TEMPLATES}/{name}")).await;
        assert_eq!(status, StatusCode::OK, "{template}");
        assert_eq!(template["category"], *category);
        assert_eq!(template["variables"], json!(variables));
        assert_eq!(template["version"], 1);
        assert!(template["template_body"].as_str().unwrap().contains("{{"));
        // The renderer finds the same variables, in the same order.
        let (status, preview) = app
            .post(&format!("{TEMPLATES}/{name}/preview"), &json!({}))
            .await;
        assert_eq!(status, StatusCode::OK, "{preview}");
        assert_eq!(preview["missing_variables"], json!(variables), "{name}");
    }
    let (_, marketing) = app.get(&format!("{TEMPLATES}/marketing_promotion")).await;
    assert!(
        marketing["template_body"]
            .as_str()
            .unwrap()
            .ends_with("Reply STOP to opt out")
    );

    let sent = app
        .send(json!({"to_number": TO, "template_id": "order_ready", "template_variables": {"customer_name": "Ann", "order_number": "ORD-123", "restaurant_name": "Aura"}}))
        .await;
    let (_, order_ready) = app.get(&format!("{TEMPLATES}/order_ready")).await;
    assert_eq!(sent["template_id"], order_ready["id"]);
    assert_eq!(sent["template_version"], 1);
    assert_eq!(sent["category"], "order");
    assert_eq!(
        sent["body"],
        "Hi Ann, your order #ORD-123 is ready for pickup at Aura!"
    );
    assert_eq!(sent["encoding"], "GSM-7");
    assert_eq!(sent["segments"], 1);

    let (status, tenant) = app
        .admin(
            Method::POST,
            "/admin/tenants",
            Some(&json!({"name": "Acme"})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{tenant}");
    let id = tenant["id"].as_str().unwrap();
    let (_, key) = app
        .admin(Method::POST, &format!("/admin/tenants/{id}/api-keys"), None)
        .await;
    let key = key["key"].as_str().unwrap();
    let (status, page) = app
        .request_as(key, app.client.get(format!("{}{TEMPLATES}", app.base)))
        .await;
    assert_eq!(status, StatusCode::OK, "{page}");
    let items = page["items"].as_array().unwrap();
    let mut theirs: Vec<&str> = items.iter().map(|t| t["name"].as_str().unwrap()).collect();
    theirs.sort_unstable();
    let mut wanted: Vec<&str> = expected.iter().map(|(n, _, _)| *n).collect();
    wanted.sort_unstable();
    assert_eq!(theirs, wanted);
    let acme_order_ready = items.iter().find(|t| t["name"] == "order_ready").unwrap();
    assert_ne!(
        acme_order_ready["id"], order_ready["id"],
        "ids are per tenant"
    );
    app.stop().await;
}

/// A change of text, description or category is a new version; `is_active` is not. Rolling back
/// makes an earlier version current without copying it; the next change is highest+1; every
/// message keeps the version it was rendered from.
async fn versions_and_roll_back(backend: Backend) {
    let app = TestApp::start(backend).await;
    let template = create(
        &app,
        json!({"name": "welcome", "category": "onboarding", "template_body": "Hi {{name}}"}),
    )
    .await;
    let id = template["id"].as_str().unwrap().to_owned();
    let path = format!("{TEMPLATES}/{id}");
    assert_eq!(template["version"], 1);
    assert_eq!(template["template_body"], "Hi {{name}}");
    assert!(
        template.get("body").is_none(),
        "the API says template_body: {template}"
    );

    let first = app
        .send(json!({"to_number": TO, "template_id": id, "template_variables": {"name": "Ann"}}))
        .await;
    assert_eq!(first["template_version"], 1);

    let (status, v2) = call(
        &app,
        Method::PATCH,
        &path,
        Some(json!({"template_body": "Welcome {{name}} to {{place}}"})),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{v2}");
    assert_eq!(v2["version"], 2);
    assert_eq!(v2["variables"], json!(["name", "place"]));
    assert_eq!(v2["category"], "onboarding", "unchanged fields are kept");

    let (status, same) = call(
        &app,
        Method::PATCH,
        &path,
        Some(json!({"template_body": "Welcome {{name}} to {{place}}"})),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        same["version"], 2,
        "a change that changes nothing writes no version"
    );

    let (status, inactive) = call(
        &app,
        Method::PATCH,
        &path,
        Some(json!({"is_active": false})),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(inactive["is_active"], false);
    assert_eq!(inactive["version"], 2);
    refused(
        app.post("/api/v1/sms/send", &json!({"to_number": TO, "template_id": "welcome", "template_variables": {"name": "A", "place": "B"}})).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "inactive_template",
    );
    call(&app, Method::PATCH, &path, Some(json!({"is_active": true}))).await;

    let (_, v3) = call(
        &app,
        Method::PATCH,
        &path,
        Some(json!({"description": "greets", "category": "marketing"})),
    )
    .await;
    assert_eq!(v3["version"], 3);
    assert_eq!(v3["description"], "greets");

    let (status, versions) = app.get(&format!("{path}/versions")).await;
    assert_eq!(status, StatusCode::OK, "{versions}");
    assert_eq!(versions["current_version"], 3);
    let listed: Vec<(i64, bool)> = versions["versions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| {
            (
                v["version"].as_i64().unwrap(),
                v["current"].as_bool().unwrap(),
            )
        })
        .collect();
    assert_eq!(listed, [(1, false), (2, false), (3, true)]);
    assert_eq!(versions["versions"][0]["template_body"], "Hi {{name}}");

    let (status, rolled) = app
        .post(&format!("{path}/versions/1/activate"), &json!({}))
        .await;
    assert_eq!(status, StatusCode::OK, "{rolled}");
    assert_eq!(rolled["version"], 1);
    assert_eq!(rolled["template_body"], "Hi {{name}}");
    assert_eq!(rolled["category"], "onboarding");
    let again = app.send(json!({"to_number": TO, "template_id": "welcome", "template_variables": {"name": "Bo"}})).await;
    assert_eq!(again["body"], "Hi Bo");
    assert_eq!(again["template_version"], 1);

    let (_, v4) = call(
        &app,
        Method::PATCH,
        &path,
        Some(json!({"template_body": "Hello {{name}}"})),
    )
    .await;
    assert_eq!(
        v4["version"], 4,
        "after a roll-back the next version is highest+1"
    );
    let (_, versions) = app.get(&format!("{path}/versions")).await;
    assert_eq!(versions["versions"].as_array().unwrap().len(), 4);
    assert_eq!(
        versions["versions"][1]["template_body"], "Welcome {{name}} to {{place}}",
        "versions never change"
    );

    // `null` removes a description or a category (a new version); an absent field keeps it.
    let (status, v5) = call(
        &app,
        Method::PATCH,
        &path,
        Some(json!({"description": null, "category": null})),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{v5}");
    assert_eq!(v5["version"], 5);
    assert_eq!(
        (&v5["description"], &v5["category"]),
        (&Value::Null, &Value::Null)
    );
    assert_eq!(v5["template_body"], "Hello {{name}}");

    // Versions come a page at a time, oldest first.
    let mut seen = Vec::new();
    let mut query = "limit=2".to_owned();
    loop {
        let (status, page) = app.get(&format!("{path}/versions?{query}")).await;
        assert_eq!(status, StatusCode::OK, "{page}");
        let items = page["versions"].as_array().unwrap();
        assert!(items.len() <= 2);
        seen.extend(items.iter().map(|v| v["version"].as_i64().unwrap()));
        match page["next_cursor"].as_str() {
            Some(cursor) => query = format!("limit=2&cursor={cursor}"),
            None => break,
        }
    }
    assert_eq!(seen, [1, 2, 3, 4, 5]);
    for bad in ["limit=0", "limit=501", "cursor=zz", "page=2"] {
        refused(
            app.get(&format!("{path}/versions?{bad}")).await,
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_query",
        );
    }

    // Messages keep the version they were rendered from.
    let stored = app.message(first["id"].as_str().unwrap()).await;
    assert_eq!(stored["template_version"], 1);
    assert_eq!(stored["template_id"], id.as_str());

    refused(
        app.post(&format!("{path}/versions/9/activate"), &json!({}))
            .await,
        StatusCode::NOT_FOUND,
        "template_version_not_found",
    );
    for bad in ["0", "-1", "abc", "1.5", "99999999999999999999"] {
        refused(
            app.post(&format!("{path}/versions/{bad}/activate"), &json!({}))
                .await,
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_field",
        );
    }
    refused(
        app.post(
            &format!("{TEMPLATES}/tpl_nope/versions/1/activate"),
            &json!({}),
        )
        .await,
        StatusCode::NOT_FOUND,
        "template_not_found",
    );
    app.stop().await;
}

/// A deleted template reads as before (by id, marked deleted, versions too), is hidden from the
/// list unless asked, cannot be sent, previewed, changed or deleted again, and frees its name.
async fn soft_delete_keeps_history(backend: Backend) {
    let app = TestApp::start(backend).await;
    let template = create(
        &app,
        json!({"name": "promo", "template_body": "Deal: {{deal}}"}),
    )
    .await;
    let id = template["id"].as_str().unwrap().to_owned();
    let path = format!("{TEMPLATES}/{id}");
    let sent = app.send(json!({"to_number": TO, "template_id": "promo", "template_variables": {"deal": "2 for 1"}})).await;

    let (status, deleted) = call(&app, Method::DELETE, "/api/v1/sms/templates/promo", None).await;
    assert_eq!(status, StatusCode::OK, "{deleted}");
    assert_eq!(deleted["deleted"], true);
    assert!(deleted["deleted_at"].is_i64());

    let (status, read) = app.get(&path).await;
    assert_eq!(status, StatusCode::OK, "{read}");
    assert_eq!(read["deleted"], true);
    assert_eq!(read["template_body"], "Deal: {{deal}}");
    let (status, versions) = app.get(&format!("{path}/versions")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(versions["deleted"], true);
    assert_eq!(versions["versions"].as_array().unwrap().len(), 1);
    assert_eq!(
        app.message(sent["id"].as_str().unwrap()).await["template_id"],
        id.as_str()
    );

    refused(
        app.get(&format!("{TEMPLATES}/promo")).await,
        StatusCode::NOT_FOUND,
        "template_not_found",
    );
    refused(
        call(&app, Method::DELETE, &path, None).await,
        StatusCode::CONFLICT,
        "template_deleted",
    );
    refused(
        call(
            &app,
            Method::PATCH,
            &path,
            Some(json!({"template_body": "x"})),
        )
        .await,
        StatusCode::CONFLICT,
        "template_deleted",
    );
    refused(
        app.post(&format!("{path}/versions/1/activate"), &json!({}))
            .await,
        StatusCode::CONFLICT,
        "template_deleted",
    );
    refused(
        app.post(&format!("{path}/preview"), &json!({"deal": "x"}))
            .await,
        StatusCode::CONFLICT,
        "template_deleted",
    );
    refused(
        app.post(
            "/api/v1/sms/send",
            &json!({"to_number": TO, "template_id": id, "template_variables": {"deal": "x"}}),
        )
        .await,
        StatusCode::CONFLICT,
        "template_deleted",
    );
    refused(
        app.post(
            "/api/v1/sms/send",
            &json!({"to_number": TO, "template_id": "promo", "template_variables": {"deal": "x"}}),
        )
        .await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "unknown_template",
    );

    assert!(!names(&app, "limit=500").await.contains(&"promo".to_owned()));
    assert!(
        names(&app, "include_deleted=true")
            .await
            .contains(&"promo".to_owned())
    );

    let reused = create(
        &app,
        json!({"name": "promo", "template_body": "New deal: {{deal}}"}),
    )
    .await;
    assert_ne!(reused["id"], id.as_str());
    let again = app.send(json!({"to_number": TO, "template_id": "promo", "template_variables": {"deal": "3 for 2"}})).await;
    assert_eq!(again["body"], "New deal: 3 for 2");
    assert_eq!(
        names(&app, "name=promo&include_deleted=true").await,
        ["promo", "promo"]
    );
    app.stop().await;
}

/// `GET /templates` filters by category, state and name, pages with a cursor, and refuses bad
/// queries.
async fn listing_filters_and_pages(backend: Backend) {
    let app = TestApp::start(backend).await;
    create(
        &app,
        json!({"name": "a_order", "category": "order", "template_body": "A"}),
    )
    .await;
    create(
        &app,
        json!({"name": "b_off", "category": "order", "template_body": "B", "is_active": false}),
    )
    .await;
    let mut orders = names(&app, "category=order").await;
    orders.sort_unstable();
    assert_eq!(
        orders,
        ["a_order", "b_off", "order_delivered", "order_ready"]
    );
    assert_eq!(names(&app, "is_active=false").await, ["b_off"]);
    assert_eq!(names(&app, "name=order_ready").await, ["order_ready"]);
    assert_eq!(
        names(&app, "category=order&is_active=true&name=b_off").await,
        Vec::<String>::new()
    );

    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let query = match &cursor {
            Some(c) => format!("limit=3&cursor={c}"),
            None => "limit=3".to_owned(),
        };
        let (status, page) = app.get(&format!("{TEMPLATES}?{query}")).await;
        assert_eq!(status, StatusCode::OK, "{page}");
        let items = page["items"].as_array().unwrap();
        assert!(items.len() <= 3);
        seen.extend(items.iter().map(|t| t["name"].as_str().unwrap().to_owned()));
        match page["next_cursor"].as_str() {
            Some(next) => cursor = Some(next.to_owned()),
            None => break,
        }
    }
    assert_eq!(seen.len(), 8, "{seen:?}");
    assert_eq!(seen[0], "b_off", "newest first");
    let mut unique = seen.clone();
    unique.sort_unstable();
    unique.dedup();
    assert_eq!(unique.len(), 8);

    for bad in [
        "limit=0",
        "limit=501",
        "cursor=zz",
        "is_active=maybe",
        "surprise=1",
        "category=a%20b",
        "name=%00",
    ] {
        refused(
            app.get(&format!("{TEMPLATES}?{bad}")).await,
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_query",
        );
    }
    app.stop().await;
}

/// Each route refuses bad input with its code: an invalid template (partials, delimiter changes,
/// unclosed sections) with a position, an unknown template by id or name, a PATCH of unknown
/// fields, a duplicate name.
async fn bad_input_is_refused(backend: Backend) {
    let app = TestApp::start(backend).await;
    for (body, hint) in [
        ("Hi {{> footer}}", "partials"),
        ("{{=<% %>=}} hi", "delimiters"),
        ("{{#items}}open", "never closed"),
        ("x {{/items}}", "closes no open section"),
        ("Hi {{name", "unclosed"),
        ("Hi {{first name}}", "first name"),
    ] {
        let error = refused(
            app.post(TEMPLATES, &json!({"name": "bad", "template_body": body}))
                .await,
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_template",
        );
        let message = error["error"]["message"].as_str().unwrap();
        assert!(
            message.contains(hint) && message.contains("line 1, column"),
            "{body}: {message}"
        );
    }
    let template = create(
        &app,
        json!({"name": "fine", "template_body": "Hi {{name}}"}),
    )
    .await;
    let path = format!("{TEMPLATES}/{}", template["id"].as_str().unwrap());
    let error = refused(
        call(
            &app,
            Method::PATCH,
            &path,
            Some(json!({"template_body": "Hi {{> partial}}"})),
        )
        .await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_template",
    );
    assert!(
        error["error"]["message"]
            .as_str()
            .unwrap()
            .contains("partials")
    );
    let (_, versions) = app.get(&format!("{path}/versions")).await;
    assert_eq!(
        versions["versions"].as_array().unwrap().len(),
        1,
        "a refused change writes nothing"
    );
    refused(
        call(&app, Method::PATCH, &path, Some(json!({"name": "renamed"}))).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_field",
    );
    refused(
        call(
            &app,
            Method::PATCH,
            &path,
            Some(json!({"template_body": ""})),
        )
        .await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "empty_template",
    );
    refused(
        call(&app, Method::PATCH, &path, Some(json!({"category": "all"}))).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_category",
    );
    refused(
        call(&app, Method::PATCH, &path, Some(json!({"is_active": "no"}))).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_field",
    );
    refused(
        call(
            &app,
            Method::PATCH,
            "/api/v1/sms/templates/tpl_missing",
            Some(json!({"is_active": false})),
        )
        .await,
        StatusCode::NOT_FOUND,
        "template_not_found",
    );
    refused(
        call(
            &app,
            Method::DELETE,
            "/api/v1/sms/templates/tpl_missing",
            None,
        )
        .await,
        StatusCode::NOT_FOUND,
        "template_not_found",
    );
    refused(
        app.get("/api/v1/sms/templates/tpl_missing/versions").await,
        StatusCode::NOT_FOUND,
        "template_not_found",
    );
    refused(
        app.get("/api/v1/sms/templates/tpl%00x").await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_field",
    );
    refused(
        app.post(
            TEMPLATES,
            &json!({"name": "fine", "template_body": "again"}),
        )
        .await,
        StatusCode::CONFLICT,
        "template_exists",
    );
    for template_id in [json!("tpl_01unknown"), json!("no_such_name"), json!(7)] {
        refused(
            app.post(
                "/api/v1/sms/send",
                &json!({"to_number": TO, "template_id": template_id}),
            )
            .await,
            StatusCode::UNPROCESSABLE_ENTITY,
            "unknown_template",
        );
    }
    assert_eq!(app.message_count().await, 0, "nothing refused was stored");
    app.stop().await;
}
