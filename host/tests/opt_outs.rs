//! Opt-out management over HTTP, each scenario on SQLite and on PostgreSQL: the seed's opt-out,
//! check and opt-in routes, enforcement at accept and at dispatch, the list with its filters and
//! stats, CSV imports, and the compliance export with each change's method and source message.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::app::{API_KEY, Backend, OUR_NUMBER, TestApp};
use herald_testkit::carrier::ScriptedResponse;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

on_both_backends!(
    opt_out_check_and_opt_in,
    all_blocks_every_category_but_compliance,
    dispatch_refuses_a_message_accepted_before_the_opt_out,
    list_filters_and_pages,
    stats_count_and_rate,
    import_reports_each_bad_row,
    import_streams_past_the_body_limit,
    keyword_and_provider_opt_outs_in_the_export,
    bad_input_is_refused,
    each_tenant_has_its_own_list,
);

const NUMBER: &str = "+14155550100";

/// `POST path` with the API key and a CSV body.
async fn post_csv(app: &TestApp, path: &str, csv: &str) -> (StatusCode, Value) {
    let request = app
        .client
        .post(format!("{}{path}", app.base))
        .header("content-type", "text/csv")
        .body(csv.to_owned());
    app.request(request).await
}

/// The state of `category` in a check answer.
fn category<'a>(state: &'a Value, name: &str) -> &'a Value {
    state["categories"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["category"] == name)
        .unwrap_or_else(|| panic!("no `{name}` in {state:#}"))
}

/// Sends `body` to `to` in `category`, returning the status and answer.
async fn try_send(app: &TestApp, to: &str, category: &str) -> (StatusCode, Value) {
    app.post(
        "/api/v1/sms/send",
        &json!({"to_number": to, "message": "hello", "category": category}),
    )
    .await
}

/// Waits until `condition` holds, for up to 10 s.
async fn wait_until(condition: impl Fn() -> bool) {
    for _ in 0..400 {
        if condition() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("condition not met within 10 s");
}

/// The seed's bodies work as they did: an opt-out of one category blocks it and nothing else,
/// a repeat changes nothing, the check answers for the path's `+` written either way, and an
/// opt-in lifts it.
async fn opt_out_check_and_opt_in(backend: Backend) {
    let app = TestApp::start(backend).await;
    let (status, answer) = app
        .post(
            "/api/v1/sms/opt-out",
            &json!({"phone_number": NUMBER, "opt_out_reason": "User request", "customer_id": 123, "category": "marketing"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(answer["changed"], true);
    assert_eq!(answer["is_opted_out"], false);
    let marketing = category(&answer, "marketing");
    assert_eq!(marketing["blocked"], true);
    assert_eq!(marketing["opt_out"]["reason"], "User request");
    assert_eq!(marketing["opt_out"]["customer_id"], "123");
    assert_eq!(marketing["opt_out"]["method"], "api");

    let (_, again) = app
        .post(
            "/api/v1/sms/opt-out",
            &json!({"phone_number": NUMBER, "opt_out_reason": "again", "customer_id": "c-1", "category": "marketing"}),
        )
        .await;
    assert_eq!(again["changed"], false, "{again}");

    for path in ["+14155550100", "%2B14155550100"] {
        let (status, state) = app
            .get(&format!("/api/v1/sms/opt-out/check/{path}?category=alerts"))
            .await;
        assert_eq!(status, StatusCode::OK, "{path}: {state}");
        assert_eq!(state["phone_number"], NUMBER);
        let names: Vec<&str> = state["categories"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["category"].as_str().unwrap())
            .collect();
        assert_eq!(names, ["all", "alerts", "marketing"], "{path}");
        assert_eq!(category(&state, "all")["blocked"], false);
        assert_eq!(category(&state, "alerts")["blocked"], false);
        assert_eq!(category(&state, "marketing")["opted_out"], true);
    }

    let (status, refused) = try_send(&app, NUMBER, "marketing").await;
    assert_eq!(status, StatusCode::CONFLICT, "{refused}");
    assert_eq!(refused["error"]["code"], "recipient_opted_out");
    let (status, sent) = try_send(&app, NUMBER, "alerts").await;
    assert_eq!(status, StatusCode::ACCEPTED, "{sent}");

    let (status, lifted) = app
        .post(
            "/api/v1/sms/opt-out/opt-in",
            &json!({"phone_number": NUMBER, "category": "marketing"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{lifted}");
    assert_eq!(lifted["changed"], true);
    assert_eq!(category(&lifted, "marketing")["blocked"], false);
    let (_, nothing) = app
        .post(
            "/api/v1/sms/opt-out/opt-in",
            &json!({"phone_number": NUMBER}),
        )
        .await;
    assert_eq!(nothing["changed"], false, "{nothing}");
    let (status, sent) = try_send(&app, NUMBER, "marketing").await;
    assert_eq!(status, StatusCode::ACCEPTED, "{sent}");
    app.stop().await;
}

/// An opt-out without a category is `all`: every category is refused at accept, while the STOP
/// confirmation (category `compliance`) still reaches the number; a category opt-in does not lift
/// `all`, an opt-in of `all` lifts everything.
async fn all_blocks_every_category_but_compliance(backend: Backend) {
    let app = TestApp::start(backend).await;
    let (status, answer) = app
        .post(
            "/api/v1/sms/opt-out",
            &json!({"phone_number": NUMBER, "opt_out_reason": "asked", "customer_id": 1}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(answer["is_opted_out"], true);
    for name in ["transactional", "marketing", "order"] {
        let (status, refused) = try_send(&app, NUMBER, name).await;
        assert_eq!(status, StatusCode::CONFLICT, "{name}: {refused}");
    }
    let (status, refused) = try_send(&app, NUMBER, "compliance").await;
    assert_eq!(
        status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "callers cannot send compliance messages: {refused}"
    );

    // The STOP keyword's confirmation is the one message an opted-out number still gets.
    let texter = "+14155550109";
    app.carrier
        .send_inbound(texter, OUR_NUMBER, "STOP")
        .await
        .unwrap();
    wait_until(|| app.carrier_requests_to(texter) == 1).await;
    let (status, refused) = try_send(&app, texter, "transactional").await;
    assert_eq!(status, StatusCode::CONFLICT, "{refused}");
    let (_, inbound) = app.get("/api/v1/sms/inbound?keyword=stop").await;
    assert_eq!(inbound["items"].as_array().unwrap().len(), 1, "{inbound}");

    let (_, partial) = app
        .post(
            "/api/v1/sms/opt-out/opt-in",
            &json!({"phone_number": NUMBER, "category": "marketing"}),
        )
        .await;
    assert_eq!(partial["changed"], false, "{partial}");
    assert_eq!(category(&partial, "marketing")["blocked"], true);
    let (_, lifted) = app
        .post(
            "/api/v1/sms/opt-out/opt-in",
            &json!({"phone_number": NUMBER, "category": "all"}),
        )
        .await;
    assert_eq!(lifted["changed"], true, "{lifted}");
    assert_eq!(lifted["is_opted_out"], false);
    let (status, sent) = try_send(&app, NUMBER, "marketing").await;
    assert_eq!(status, StatusCode::ACCEPTED, "{sent}");
    app.stop().await;
}

/// A message accepted before its recipient opted out is refused at dispatch: its retry after a
/// carrier outage fails with `recipient_opted_out` and never reaches the carrier again.
async fn dispatch_refuses_a_message_accepted_before_the_opt_out(backend: Backend) {
    let app = TestApp::start_with(backend, |config| {
        config.delivery.retry_base_ms = 2_000;
        config.delivery.retry_max_ms = 2_000;
    })
    .await;
    app.carrier.script(ScriptedResponse::Error {
        http_status: 429,
        code: 20429,
        retry_after: None,
    });
    let id = app
        .send(json!({"to_number": NUMBER, "message": "your order shipped", "category": "order"}))
        .await["id"]
        .as_str()
        .unwrap()
        .to_string();
    let mut message = Value::Null;
    for _ in 0..400 {
        message = app.message(&id).await;
        if message["attempts"] == 1 && message["status"] == "queued" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(message["status"], "queued", "{message:#}");
    assert_eq!(app.carrier_requests_to(NUMBER), 1);

    let (status, answer) = app
        .post(
            "/api/v1/sms/opt-out",
            &json!({"phone_number": NUMBER, "opt_out_reason": "changed mind", "customer_id": 7, "category": "order"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    let failed = app.wait_for(&id, "failed").await;
    assert_eq!(failed["error"]["code"], "recipient_opted_out", "{failed:#}");
    assert_eq!(app.carrier_requests_to(NUMBER), 1, "no second attempt");
    app.stop().await;
}

/// `GET /opt-outs` lists the opt-outs in force newest first, filtered by category, source and
/// time, one page at a time.
async fn list_filters_and_pages(backend: Backend) {
    let app = TestApp::start(backend).await;
    for (number, name) in [
        ("+14155550101", "marketing"),
        ("+14155550102", "marketing"),
        ("+14155550103", "alerts"),
    ] {
        let (status, answer) = app
            .post(
                "/api/v1/sms/opt-out",
                &json!({"phone_number": number, "opt_out_reason": "r", "customer_id": 1, "category": name}),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{answer}");
        tokio::time::sleep(Duration::from_millis(3)).await;
    }
    let (status, report) = post_csv(
        &app,
        "/api/v1/sms/opt-outs/import",
        "phone_number,category\n+14155550104,marketing\n",
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{report}");

    let mut seen = Vec::new();
    let mut path = "/api/v1/sms/opt-outs?limit=3".to_owned();
    loop {
        let (status, page) = app.get(&path).await;
        assert_eq!(status, StatusCode::OK, "{page}");
        for item in page["items"].as_array().unwrap() {
            seen.push(item["phone_number"].as_str().unwrap().to_owned());
            assert!(item["created_at_iso"].as_str().unwrap().contains('T'));
        }
        match page["next_cursor"].as_str() {
            Some(cursor) => path = format!("/api/v1/sms/opt-outs?limit=3&cursor={cursor}"),
            None => break,
        }
    }
    assert_eq!(
        seen,
        [
            "+14155550104",
            "+14155550103",
            "+14155550102",
            "+14155550101"
        ],
        "newest first, each once"
    );

    let numbers = |page: &Value| -> Vec<String> {
        page["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| i["phone_number"].as_str().unwrap().to_owned())
            .collect()
    };
    let (_, marketing) = app.get("/api/v1/sms/opt-outs?category=marketing").await;
    assert_eq!(
        marketing["items"].as_array().unwrap().len(),
        3,
        "{marketing}"
    );
    let (_, imported) = app.get("/api/v1/sms/opt-outs?source=import").await;
    assert_eq!(numbers(&imported), ["+14155550104"]);
    let (_, by_api) = app
        .get("/api/v1/sms/opt-outs?method=api&category=alerts")
        .await;
    assert_eq!(numbers(&by_api), ["+14155550103"]);
    let (_, future) = app.get("/api/v1/sms/opt-outs?since=2999-01-01").await;
    assert!(numbers(&future).is_empty(), "{future}");
    let (_, past) = app
        .get("/api/v1/sms/opt-outs?since=2000-01-01T00:00:00Z")
        .await;
    assert_eq!(numbers(&past).len(), 4);
    app.stop().await;
}

/// The stats count the opt-outs in force by category and source, and the rate is the numbers
/// that opted out over the distinct numbers messaged in the period.
async fn stats_count_and_rate(backend: Backend) {
    let app = TestApp::start(backend).await;
    let numbers = [
        "+14155550111",
        "+14155550112",
        "+14155550113",
        "+14155550114",
    ];
    for number in numbers {
        app.send(json!({"to_number": number, "message": "hi"}))
            .await;
    }
    app.send(json!({"to_number": numbers[0], "message": "twice"}))
        .await;
    app.post(
        "/api/v1/sms/opt-out",
        &json!({"phone_number": numbers[0], "opt_out_reason": "r", "customer_id": 1, "category": "marketing"}),
    )
    .await;
    app.post(
        "/api/v1/sms/opt-out",
        &json!({"phone_number": numbers[0], "opt_out_reason": "r", "customer_id": 1}),
    )
    .await;
    post_csv(
        &app,
        "/api/v1/sms/opt-outs/import",
        &format!("phone_number,category\n{},\n", numbers[1]),
    )
    .await;

    let (status, stats) = app.get("/api/v1/sms/opt-outs/stats").await;
    assert_eq!(status, StatusCode::OK, "{stats}");
    assert_eq!(stats["current"]["total"], 3, "{stats:#}");
    assert_eq!(stats["current"]["numbers"], 2);
    assert_eq!(
        stats["current"]["by_category"],
        json!({"all": 2, "marketing": 1})
    );
    assert_eq!(
        stats["current"]["by_source"],
        json!({"keyword": 0, "api": 2, "import": 1, "provider": 0})
    );
    assert_eq!(stats["period"]["recipients"], 4);
    assert_eq!(stats["period"]["numbers_opted_out"], 2);
    assert_eq!(stats["period"]["opt_outs"], 3);
    assert_eq!(stats["period"]["opt_out_rate"], 0.5);

    let (status, empty) = app
        .get("/api/v1/sms/opt-outs/stats?start_date=2001-01-01&end_date=2001-01-31")
        .await;
    assert_eq!(status, StatusCode::OK, "{empty}");
    assert_eq!(empty["period"]["recipients"], 0);
    assert_eq!(empty["period"]["opt_out_rate"], Value::Null);
    assert_eq!(
        empty["current"]["total"], 3,
        "the list in force is not dated"
    );
    app.stop().await;
}

/// An import opts out every good row and reports each bad one by its line, with a code; a file
/// without the header is refused whole.
async fn import_reports_each_bad_row(backend: Backend) {
    let app = TestApp::start(backend).await;
    let csv = "phone_number,category,reason\r\n\
               +14155550121,marketing,asked at the counter\r\n\
               \r\n\
               +14155550122,,\"said \"\"stop\"\", twice\"\r\n\
               not-a-number,marketing,x\r\n\
               +14155550123,no such category,x\r\n\
               +14155550123,compliance,x\r\n\
               +14155550124,\"unclosed,x\r\n\
               +14155550125,marketing,x,extra\r\n\
               +14155550121,marketing,again\r\n";
    let (status, report) = post_csv(&app, "/api/v1/sms/opt-outs/import", csv).await;
    assert_eq!(status, StatusCode::OK, "{report}");
    assert_eq!(report["rows"], 8, "{report:#}");
    assert_eq!(report["opted_out"], 2);
    assert_eq!(report["unchanged"], 1);
    assert_eq!(report["rejected"], 5);
    let errors: Vec<(u64, &str)> = report["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| (e["row"].as_u64().unwrap(), e["code"].as_str().unwrap()))
        .collect();
    assert_eq!(
        errors,
        [
            (5, "invalid_phone_number"),
            (6, "invalid_category"),
            (7, "invalid_category"),
            (8, "invalid_csv"),
            (9, "invalid_csv"),
        ]
    );
    let (_, state) = app.get("/api/v1/sms/opt-out/check/+14155550122").await;
    assert_eq!(state["is_opted_out"], true, "an empty category is `all`");
    assert_eq!(
        category(&state, "all")["opt_out"]["reason"],
        "said \"stop\", twice"
    );
    assert_eq!(category(&state, "all")["opt_out"]["method"], "import");

    for bad_header in ["", "number,category\n+14155550126,marketing\n"] {
        let (status, error) = post_csv(&app, "/api/v1/sms/opt-outs/import", bad_header).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{error}");
        assert_eq!(error["error"]["code"], "invalid_csv");
    }
    let (status, error) = app
        .post(
            "/api/v1/sms/opt-outs/import",
            &json!({"phone_number": NUMBER}),
        )
        .await;
    assert_eq!(status, StatusCode::UNSUPPORTED_MEDIA_TYPE, "{error}");
    app.stop().await;
}

/// An import is read as it arrives, so a file longer than `server.max_body_bytes` (here 4 KiB)
/// is imported whole: sent chunked in frames that cut rows (and a CRLF) in two, and sent again
/// with a length, when every row is already in force. Other routes keep the limit.
async fn import_streams_past_the_body_limit(backend: Backend) {
    let app = TestApp::start_with(backend, |config| config.server.max_body_bytes = 4096).await;
    let rows = 300;
    let mut csv = String::from("phone_number,category,reason\r\n");
    for i in 0..rows {
        csv.push_str(&format!("+1415600{i:04},marketing,from the old list\r\n"));
    }
    assert!(csv.len() > 3 * 4096);

    let address = app.base.trim_start_matches("http://").to_owned();
    let mut stream = tokio::net::TcpStream::connect(&address).await.unwrap();
    let head = format!(
        "POST /api/v1/sms/opt-outs/import HTTP/1.1\r\nhost: {address}\r\n\
         authorization: Bearer {API_KEY}\r\ncontent-type: text/csv\r\n\
         transfer-encoding: chunked\r\nconnection: close\r\n\r\n"
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    for frame in csv.as_bytes().chunks(997) {
        stream
            .write_all(format!("{:x}\r\n", frame.len()).as_bytes())
            .await
            .unwrap();
        stream.write_all(frame).await.unwrap();
        stream.write_all(b"\r\n").await.unwrap();
        stream.flush().await.unwrap();
    }
    stream.write_all(b"0\r\n\r\n").await.unwrap();
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer).await.unwrap();
    let answer = String::from_utf8(answer).unwrap();
    let (head, body) = answer.split_once("\r\n\r\n").unwrap();
    assert!(head.starts_with("HTTP/1.1 200"), "{answer}");
    let report: Value = serde_json::from_str(body).unwrap();
    assert_eq!(report["rows"], rows, "{report}");
    assert_eq!(report["opted_out"], rows, "{report}");
    assert_eq!(report["rejected"], 0, "{report}");

    let (status, again) = post_csv(&app, "/api/v1/sms/opt-outs/import", &csv).await;
    assert_eq!(status, StatusCode::OK, "{again}");
    assert_eq!(
        (&again["unchanged"], &again["opted_out"]),
        (&json!(rows), &json!(0))
    );
    let (_, state) = app.get("/api/v1/sms/opt-out/check/+14156000299").await;
    assert_eq!(category(&state, "marketing")["opted_out"], true, "{state}");

    let long = "x".repeat(5000);
    let (status, error) = app
        .post(
            "/api/v1/sms/send",
            &json!({"to_number": NUMBER, "message": long}),
        )
        .await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{error}");
    app.stop().await;
}

/// A STOP texted in and an unsubscribed report from the provider are in the compliance export
/// with their method and source message (the inbound message; the refused outbound message),
/// as are the START after them and an API opt-out, in CSV and in JSON.
async fn keyword_and_provider_opt_outs_in_the_export(backend: Backend) {
    let app = TestApp::start(backend).await;
    app.carrier
        .send_inbound(NUMBER, OUR_NUMBER, "STOP")
        .await
        .unwrap();
    app.carrier
        .send_inbound(NUMBER, OUR_NUMBER, "START")
        .await
        .unwrap();
    let (_, inbound) = app.get("/api/v1/sms/inbound").await;
    let inbound = inbound["items"].as_array().unwrap().clone();
    assert_eq!(inbound.len(), 2, "{inbound:?}");
    let (start_id, stop_id) = (
        inbound[0]["id"].as_str().unwrap(),
        inbound[1]["id"].as_str().unwrap(),
    );
    // The carrier's magic number answers every send with 21610 (unsubscribed).
    let unsubscribed = "+15005550004";
    let refused = app
        .send(json!({"to_number": unsubscribed, "message": "hello"}))
        .await["id"]
        .as_str()
        .unwrap()
        .to_string();
    app.wait_for(&refused, "failed").await;
    app.post(
        "/api/v1/sms/opt-out",
        &json!({"phone_number": "+14155550199", "opt_out_reason": "phoned us", "customer_id": "=cmd", "category": "marketing"}),
    )
    .await;

    let response = app
        .client
        .get(format!(
            "{}/api/v1/sms/opt-outs/export?format=json",
            app.base
        ))
        .bearer_auth(common::app::API_KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        response.headers()["content-type"],
        "application/json",
        "{:?}",
        response.headers()
    );
    let events: Vec<Value> = response.json().await.unwrap();
    let summary: Vec<(&str, &str, &str, Option<&str>)> = events
        .iter()
        .map(|e| {
            (
                e["phone_number"].as_str().unwrap(),
                e["action"].as_str().unwrap(),
                e["method"].as_str().unwrap(),
                e["source_message_id"].as_str(),
            )
        })
        .collect();
    assert_eq!(
        summary,
        [
            (NUMBER, "opt_out", "keyword", Some(stop_id)),
            (NUMBER, "opt_in", "keyword", Some(start_id)),
            (unsubscribed, "opt_out", "provider", Some(refused.as_str())),
            ("+14155550199", "opt_out", "api", None),
        ],
        "{events:#?}"
    );
    assert_eq!(events[0]["reason"], "texted STOP");
    assert!(
        events[0]["occurred_at_iso"]
            .as_str()
            .unwrap()
            .ends_with('Z')
    );
    assert_eq!(events[3]["customer_id"], "=cmd", "JSON keeps text exact");

    let response = app
        .client
        .get(format!(
            "{}/api/v1/sms/opt-outs/export?format=csv",
            app.base
        ))
        .bearer_auth(common::app::API_KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert!(
        response.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/csv")
    );
    let csv = response.text().await.unwrap();
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(lines.len(), 5, "{csv}");
    assert!(
        lines[0].starts_with(
            "occurred_at,phone_number,category,action,method,source_message_id,reason"
        )
    );
    assert!(
        lines[1].contains(&format!(
            ",{NUMBER},all,opt_out,keyword,{stop_id},texted STOP,"
        )),
        "{}",
        lines[1]
    );
    assert!(
        lines[3].contains(&format!(",provider,{refused},")),
        "{}",
        lines[3]
    );
    assert!(lines[4].contains(",phoned us,'=cmd,"), "{}", lines[4]);

    let (_, window) = app
        .get("/api/v1/sms/opt-outs/export?format=json&end_date=2001-01-01")
        .await;
    assert_eq!(window, json!([]), "nothing before 2001");
    app.stop().await;
}

/// Bad input on every route is a 4xx in the one error shape, never a 500.
async fn bad_input_is_refused(backend: Backend) {
    let app = TestApp::start(backend).await;
    let unprocessable = [
        (
            "/api/v1/sms/opt-out",
            json!({"phone_number": "12345", "opt_out_reason": "r", "customer_id": 1}),
            "invalid_phone_number",
        ),
        (
            "/api/v1/sms/opt-out",
            json!({"phone_number": NUMBER, "category": "compliance"}),
            "invalid_category",
        ),
        (
            "/api/v1/sms/opt-out",
            json!({"phone_number": NUMBER, "category": "not a name"}),
            "invalid_category",
        ),
        (
            "/api/v1/sms/opt-out",
            json!({"phone_number": NUMBER, "opt_out_reason": "r".repeat(501)}),
            "invalid_field",
        ),
        (
            "/api/v1/sms/opt-out",
            json!({"phone_number": NUMBER, "surprise": true}),
            "invalid_field",
        ),
        (
            "/api/v1/sms/opt-out/opt-in",
            json!({"phone_number": "+1 nope"}),
            "invalid_phone_number",
        ),
    ];
    for (path, body, code) in unprocessable {
        let (status, error) = app.post(path, &body).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}: {error}");
        assert_eq!(error["error"]["code"], code, "{body}");
    }
    let queries = [
        (
            "/api/v1/sms/opt-out/check/not-a-number",
            "invalid_phone_number",
        ),
        (
            "/api/v1/sms/opt-out/check/%2014155550100",
            "invalid_phone_number",
        ),
        ("/api/v1/sms/opt-out/check/%00", "invalid_field"),
        (
            "/api/v1/sms/opt-out/check/+14155550100?surprise=1",
            "invalid_query",
        ),
        ("/api/v1/sms/opt-outs?since=yesterday", "invalid_query"),
        ("/api/v1/sms/opt-outs?source=fax", "invalid_query"),
        ("/api/v1/sms/opt-outs?category=compliance", "invalid_query"),
        ("/api/v1/sms/opt-outs?limit=0", "invalid_query"),
        ("/api/v1/sms/opt-outs?cursor=zz", "invalid_query"),
        ("/api/v1/sms/opt-outs?cursor=3a00", "invalid_query"),
        ("/api/v1/sms/opt-outs?cursor=313a2b312f00", "invalid_query"),
        ("/api/v1/sms/opt-outs?surprise=1", "invalid_query"),
        (
            "/api/v1/sms/opt-outs/stats?start_date=2025-02-01&end_date=2025-01-01",
            "invalid_query",
        ),
        (
            "/api/v1/sms/opt-outs/stats?start_date=soon",
            "invalid_query",
        ),
        ("/api/v1/sms/opt-outs/export?format=xml", "invalid_query"),
        (
            "/api/v1/sms/opt-outs/export?start_date=2025-02-01&end_date=2025-02-01T00:00:00Z",
            "invalid_query",
        ),
    ];
    for (path, code) in queries {
        let (status, error) = app.get(path).await;
        assert!(status.is_client_error(), "{path}: {status} {error}");
        assert_eq!(error["error"]["code"], code, "{path}: {error}");
    }
    let (status, error) = app.get("/api/v1/sms/opt-out/check/%2014155550100").await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        error["error"]["message"].as_str().unwrap().contains("%2B"),
        "{error}"
    );
    let (status, _) = app
        .request_as(
            "wrong-key",
            app.client.get(format!("{}/api/v1/sms/opt-outs", app.base)),
        )
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    app.stop().await;
}

/// One tenant's opt-outs neither block nor show for another: check, list, stats and export are
/// all scoped by the caller's key.
async fn each_tenant_has_its_own_list(backend: Backend) {
    let app = TestApp::start(backend).await;
    app.post(
        "/api/v1/sms/opt-out",
        &json!({"phone_number": NUMBER, "opt_out_reason": "r", "customer_id": 1}),
    )
    .await;
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
    let get = |path: &str| app.request_as(key, app.client.get(format!("{}{path}", app.base)));
    let (status, state) = get("/api/v1/sms/opt-out/check/+14155550100").await;
    assert_eq!(status, StatusCode::OK, "{state}");
    assert_eq!(state["is_opted_out"], false);
    let (_, list) = get("/api/v1/sms/opt-outs").await;
    assert_eq!(list["items"], json!([]));
    let (_, stats) = get("/api/v1/sms/opt-outs/stats").await;
    assert_eq!(stats["current"]["total"], 0);
    let (_, export) = get("/api/v1/sms/opt-outs/export?format=json").await;
    assert_eq!(export, json!([]));
    let (_, own) = app.get("/api/v1/sms/opt-outs/export?format=json").await;
    assert_eq!(own.as_array().unwrap().len(), 1);
    app.stop().await;
}
