//! Tenants, end to end on both backends: the admin API, keys, per-tenant credentials and
//! numbers, and isolation — tenant A can read, change or infer nothing of tenant B's.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::app::{Backend, TestApp};
use herald_testkit::carrier::Account;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

/// Tenant B's own carrier account.
const B_SID: &str = "ACbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb";
const B_TOKEN: &str = "tenant-b-token";
/// The numbers A and B own.
const A_NUMBER: &str = "+14155550188";
const B_NUMBER: &str = "+14155550199";
/// A customer both tenants text.
const CUSTOMER: &str = "+14155552671";

/// A tenant created through the admin API, with a key and its settings.
struct Tenant {
    id: String,
    key: String,
}

async fn start(backend: Backend) -> TestApp {
    TestApp::start_custom(
        backend,
        |carrier| {
            carrier.accounts.push(Account {
                sid: B_SID.into(),
                token: B_TOKEN.into(),
                numbers: vec![B_NUMBER.into()],
            });
        },
        |_| {},
    )
    .await
}

async fn create(app: &TestApp, name: &str, settings: Value) -> Tenant {
    let (status, tenant) = app
        .admin(
            Method::POST,
            "/admin/tenants",
            Some(&json!({ "name": name })),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{tenant}");
    assert_eq!(tenant["name"], name);
    assert_eq!(tenant["status"], "active");
    let id = tenant["id"].as_str().unwrap().to_owned();
    let (status, key) = app
        .admin(Method::POST, &format!("/admin/tenants/{id}/api-keys"), None)
        .await;
    assert_eq!(status, StatusCode::CREATED, "{key}");
    let secret = key["key"].as_str().unwrap().to_owned();
    assert!(secret.starts_with(key["prefix"].as_str().unwrap()));
    let (status, shown) = app
        .admin(
            Method::PUT,
            &format!("/admin/tenants/{id}/settings"),
            Some(&settings),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{shown}");
    Tenant { id, key: secret }
}

async fn send(app: &TestApp, tenant: &Tenant, body: Value) -> (StatusCode, Value) {
    let builder = app
        .client
        .post(format!("{}/api/v1/sms/send", app.base))
        .json(&body);
    app.request_as(&tenant.key, builder).await
}

async fn get(app: &TestApp, tenant: &Tenant, path: &str) -> (StatusCode, Value) {
    let builder = app.client.get(format!("{}{path}", app.base));
    app.request_as(&tenant.key, builder).await
}

/// Waits until `tenant`'s message `id` has `status`.
async fn wait_for(app: &TestApp, tenant: &Tenant, id: &str, status: &str) -> Value {
    let mut last = Value::Null;
    for _ in 0..400 {
        let (_, message) = get(app, tenant, &format!("/api/v1/sms/messages/{id}")).await;
        if message["status"] == status {
            return message;
        }
        last = message;
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
    panic!("message {id} did not reach `{status}`: {last:#}");
}

async fn two_tenants(app: &TestApp) -> (Tenant, Tenant) {
    let a = create(
        app,
        "Tenant A",
        json!({ "plugins": { "twilio": { "from": A_NUMBER } }, "numbers": [A_NUMBER] }),
    )
    .await;
    let b = create(
        app,
        "Tenant B",
        json!({
            "plugins": { "twilio": { "account_sid": B_SID, "auth_token": B_TOKEN, "from": B_NUMBER } },
            "numbers": [B_NUMBER],
        }),
    )
    .await;
    (a, b)
}

/// Each tenant sends with its own credentials and sender, its callbacks verify with its own
/// token, and neither can read, use or infer the other's messages and templates.
async fn tenants_are_isolated(backend: Backend) {
    let app = start(backend).await;
    let (a, b) = two_tenants(&app).await;

    let (status, sent_a) = send(
        &app,
        &a,
        json!({"to_number": CUSTOMER, "message": "from A"}),
    )
    .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{sent_a}");
    let (status, sent_b) = send(
        &app,
        &b,
        json!({"to_number": CUSTOMER, "message": "from B"}),
    )
    .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{sent_b}");
    let a_id = sent_a["id"].as_str().unwrap();
    let b_id = sent_b["id"].as_str().unwrap();
    wait_for(&app, &a, a_id, "delivered").await;
    wait_for(&app, &b, b_id, "delivered").await;

    // The carrier saw each message under its tenant's account, from its tenant's number.
    let carried = app.carrier.messages();
    let by_body = |body: &str| carried.iter().find(|m| m.body == body).unwrap().clone();
    assert_eq!(by_body("from A").account_sid, common::app::ACCOUNT_SID);
    assert_eq!(by_body("from A").from.as_deref(), Some(A_NUMBER));
    assert_eq!(by_body("from B").account_sid, B_SID);
    assert_eq!(by_body("from B").from.as_deref(), Some(B_NUMBER));

    // B's message is absent for A: 404, not 403, and no trace in A's list.
    let (status, body) = get(&app, &a, &format!("/api/v1/sms/messages/{b_id}")).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    assert_eq!(body["error"]["code"], "message_not_found");
    let (_, page) = get(&app, &a, "/api/v1/sms/messages?limit=500").await;
    let ids: Vec<&str> = page["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, vec![a_id]);

    // B's template is absent for A, and cannot be sent from.
    let builder = app
        .client
        .post(format!("{}/api/v1/sms/templates", app.base))
        .json(&json!({"name": "b_only", "template_body": "Hi {{name}}"}));
    let (status, template) = app.request_as(&b.key, builder).await;
    assert_eq!(status, StatusCode::CREATED, "{template}");
    let template_id = template["id"].as_str().unwrap();
    let (status, _) = get(&app, &a, &format!("/api/v1/sms/templates/{template_id}")).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, body) = send(
        &app,
        &a,
        json!({"to_number": CUSTOMER, "template_id": template_id, "template_variables": {"name": "x"}}),
    )
    .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(body["error"]["code"], "unknown_template");
    // The same name is free for A: names are per tenant.
    let builder = app
        .client
        .post(format!("{}/api/v1/sms/templates", app.base))
        .json(&json!({"name": "b_only", "template_body": "Hello {{name}}"}));
    assert_eq!(app.request_as(&a.key, builder).await.0, StatusCode::CREATED);

    // Settings show secrets redacted; B's token never comes back.
    let (status, shown) = app
        .admin(
            Method::GET,
            &format!("/admin/tenants/{}/settings", b.id),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(shown["plugins"]["twilio"]["auth_token"], "[redacted]");
    assert!(!shown.to_string().contains(B_TOKEN));
    app.stop().await;
}

/// A STOP to A's number opts the sender out at A only; an inbound message to a number no tenant
/// owns is acknowledged and not stored.
async fn stop_is_scoped_to_the_tenant(backend: Backend) {
    let app = start(backend).await;
    let (a, b) = two_tenants(&app).await;
    let status = app
        .carrier
        .send_inbound(CUSTOMER, A_NUMBER, "STOP")
        .await
        .unwrap();
    assert_eq!(status, StatusCode::OK);
    let (status, body) = send(&app, &a, json!({"to_number": CUSTOMER, "message": "hi"})).await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert_eq!(body["error"]["code"], "recipient_opted_out");
    let (status, body) = send(&app, &b, json!({"to_number": CUSTOMER, "message": "hi"})).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");

    // B's number is signed with B's token by the carrier and lands at B.
    let status = app
        .carrier
        .send_inbound(CUSTOMER, B_NUMBER, "HELP")
        .await
        .unwrap();
    assert_eq!(status, StatusCode::OK);
    let (_, page) = get(&app, &b, "/api/v1/sms/messages?limit=500").await;
    let help_reply = page["items"]
        .as_array()
        .unwrap()
        .iter()
        .any(|m| m["category"] == "compliance" && m["to_number"] == CUSTOMER);
    assert!(help_reply, "B answers HELP: {page:#}");
    let (_, page) = get(&app, &a, "/api/v1/sms/messages?limit=500").await;
    let a_replies: Vec<&str> = page["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["category"] == "compliance")
        .map(|m| m["body"].as_str().unwrap())
        .collect();
    let stop_reply = app.herald.pipeline().config().compliance.stop_reply.clone();
    assert_eq!(
        a_replies,
        vec![stop_reply.as_str()],
        "A answered only its own STOP"
    );

    // A number nobody owns: 200, nothing stored anywhere.
    let status = app
        .carrier
        .send_inbound(CUSTOMER, "+14155550111", "STOP")
        .await
        .unwrap();
    assert_eq!(status, StatusCode::OK);
    let (status, _) = send(
        &app,
        &b,
        json!({"to_number": CUSTOMER, "message": "still fine"}),
    )
    .await;
    assert_eq!(status, StatusCode::ACCEPTED);
    app.stop().await;
}

/// Keys: listed by prefix only, revoked at once; a suspended tenant's sends get 403; unknown
/// tenants and keys are 404; admin routes need the admin key.
async fn keys_and_suspension(backend: Backend) {
    let app = start(backend).await;
    let (a, _b) = two_tenants(&app).await;
    let (status, keys) = app
        .admin(
            Method::GET,
            &format!("/admin/tenants/{}/api-keys", a.id),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(keys.as_array().unwrap().len(), 1);
    assert!(
        keys[0].get("key").is_none(),
        "a listed key must not show the key: {keys}"
    );
    assert!(!keys.to_string().contains(&a.key));
    let key_id = keys[0]["id"].as_str().unwrap();

    let (status, body) = app
        .admin(
            Method::PATCH,
            &format!("/admin/tenants/{}", a.id),
            Some(&json!({"status": "suspended"})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["status"], "suspended");
    let (status, body) = send(&app, &a, json!({"to_number": CUSTOMER, "message": "hi"})).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert_eq!(body["error"]["code"], "tenant_suspended");
    let (status, _) = app
        .admin(
            Method::PATCH,
            &format!("/admin/tenants/{}", a.id),
            Some(&json!({"status": "active"})),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = send(&app, &a, json!({"to_number": CUSTOMER, "message": "hi"})).await;
    assert_eq!(status, StatusCode::ACCEPTED);

    let (status, _) = app
        .admin(
            Method::DELETE,
            &format!("/admin/tenants/{}/api-keys/{key_id}", a.id),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, body) = get(&app, &a, "/api/v1/sms/messages").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    let (status, body) = app
        .admin(
            Method::DELETE,
            &format!("/admin/tenants/{}/api-keys/{key_id}", a.id),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    assert_eq!(body["error"]["code"], "api_key_not_found");

    let (status, body) = app
        .admin(
            Method::PATCH,
            "/admin/tenants/ten_nope",
            Some(&json!({"status": "suspended"})),
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    assert_eq!(body["error"]["code"], "tenant_not_found");
    let (status, body) = app
        .admin(
            Method::PATCH,
            &format!("/admin/tenants/{}", a.id),
            Some(&json!({"status": "paused"})),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    // A number another tenant owns cannot be claimed.
    let (status, body) = app
        .admin(
            Method::PUT,
            &format!("/admin/tenants/{}/settings", a.id),
            Some(&json!({"numbers": [B_NUMBER]})),
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert_eq!(body["error"]["code"], "number_taken");
    // A setting the plugin does not declare is refused.
    let (status, body) = app
        .admin(
            Method::PUT,
            &format!("/admin/tenants/{}/settings", a.id),
            Some(&json!({"plugins": {"twilio": {"colour": "red"}}})),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    // Tenant keys are not admin keys.
    let builder = app.client.get(format!("{}/admin/tenants", app.base));
    let (status, _) = app.request_as(common::app::API_KEY, builder).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, list) = app.admin(Method::GET, "/admin/tenants", None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        list.as_array().unwrap().len(),
        3,
        "default, A and B: {list}"
    );
    app.stop().await;
}

/// A suspended tenant's queued messages are held, not sent, while other tenants' go out; they
/// go out once it is active again.
async fn suspended_queue_is_held(backend: Backend) {
    use herald::domain::TenantStatus;
    use herald::pipeline::dispatch::run_once;
    use herald::pipeline::tenants;
    let (url, _dir) = common::app::storage_url(backend).await;
    let mut config = common::config(
        vec![("probe", common::plugin_config(common::plugin("probe")))],
        "probe",
        "",
    );
    config.storage.url = url;
    let herald = herald::Herald::builder()
        .config(config)
        .build()
        .await
        .unwrap();
    let pipeline = herald.pipeline();
    let held = tenants::create_tenant(pipeline, "held").await.unwrap();
    let other = tenants::create_tenant(pipeline, "other").await.unwrap();
    let to: herald::PhoneNumber = CUSTOMER.parse().unwrap();
    let send = |tenant, text: &'static str| {
        let request = herald::SendRequest::text(to.clone(), text);
        let herald = herald.clone();
        async move { herald.send(tenant, request).await.unwrap().message.id }
    };
    let held_id = send(&held.id, "wait").await;
    let other_id = send(&other.id, "go").await;
    tenants::set_status(pipeline, &held.id, TenantStatus::Suspended)
        .await
        .unwrap();
    let status = |tenant, id| {
        let herald = herald.clone();
        async move { herald.message(tenant, id).await.unwrap().message.status }
    };
    assert_eq!(
        run_once(pipeline, "w").await.unwrap(),
        1,
        "only the active tenant's message"
    );
    assert_eq!(
        status(&held.id, &held_id).await,
        herald::MessageStatus::Queued
    );
    assert_eq!(
        status(&other.id, &other_id).await,
        herald::MessageStatus::Sent
    );
    assert_eq!(
        pipeline.store().next_due_at().await.unwrap(),
        None,
        "held entries wake nobody"
    );
    tenants::set_status(pipeline, &held.id, TenantStatus::Active)
        .await
        .unwrap();
    assert_eq!(run_once(pipeline, "w").await.unwrap(), 1);
    assert_eq!(
        status(&held.id, &held_id).await,
        herald::MessageStatus::Sent
    );
    herald.close().await;
}

/// Admin input that PostgreSQL cannot store (a NUL character) or that names nothing is refused in
/// the one error shape, never a 500.
async fn admin_bad_input_is_refused(backend: Backend) {
    let app = start(backend).await;
    let (a, _b) = two_tenants(&app).await;
    let (status, body) = app
        .admin(
            Method::POST,
            "/admin/tenants",
            Some(&json!({"name": "bad\u{0}name"})),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(body["error"]["code"], "invalid_field");
    let (status, body) = app
        .admin(
            Method::POST,
            "/admin/tenants",
            Some(&json!({"name": "tab\there"})),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    let (status, body) = app
        .admin(
            Method::DELETE,
            &format!("/admin/tenants/{}/api-keys/key%00x", a.id),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    assert_eq!(body["error"]["code"], "api_key_not_found");
    let (status, body) = app
        .admin(Method::GET, "/admin/tenants/ten%00x/settings", None)
        .await;
    assert!(status.is_client_error(), "{status}: {body}");
    assert!(body["error"]["code"].is_string(), "{body}");
    let (status, body) = app
        .admin(
            Method::PATCH,
            &format!("/admin/tenants/{}", a.id),
            Some(&json!({"status": 7})),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    app.stop().await;
}

on_both_backends!(
    admin_bad_input_is_refused,
    tenants_are_isolated,
    stop_is_scoped_to_the_tenant,
    keys_and_suspension,
    suspended_queue_is_held
);
