//! Live configuration: a reload (here through the admin endpoint; the file watch and SIGHUP call
//! the same `Pipeline::reload`) swaps the whole configuration at once, refuses a bad one whole,
//! and names the settings that need a restart. Config files are checked at load.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use herald::config::ConfigSource;
use serde_json::Value;
use tower::ServiceExt;

/// A config file in a temp dir (probe provider, SQLite in the dir) with `extra` appended.
fn write_config(dir: &std::path::Path, api_key: &str, extra: &str) -> std::path::PathBuf {
    let cache = common::root().join("target/herald-cache");
    let key = common::root().join("target/herald-artifact.key");
    let probe = common::plugin("probe");
    let toml = format!(
        "[server]\nadmin_key = \"admin\"\napi_keys = [\"{api_key}\"]\n[storage]\nurl = \"sqlite://herald.db\"\n[runtime]\ncache_dir = {cache:?}\nartifact_key_file = {key:?}\nwatch = false\n[routing]\nprovider = \"probe\"\nrenderer = \"\"\n[plugins.probe]\npath = {probe:?}\n{extra}"
    );
    let file = dir.join("herald.toml");
    std::fs::write(&file, toml).unwrap();
    file
}

async fn call(router: &axum::Router, method: &str, path: &str, key: &str) -> (StatusCode, Value) {
    let request = Request::builder()
        .method(method)
        .uri(path)
        .header("authorization", format!("Bearer {key}"))
        .body(Body::empty())
        .unwrap();
    let response = router.clone().oneshot(request).await.unwrap();
    let status = response.status();
    let bytes = axum::body::to_bytes(response.into_body(), 1 << 20)
        .await
        .unwrap();
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

/// A rotated API key works after a reload and the old one stops at once; delivery and
/// compliance settings are swapped too; a bad file is refused whole with its reason while the
/// running configuration keeps serving; restart-only settings are named.
#[tokio::test]
async fn reload_swaps_the_whole_configuration() {
    let dir = tempfile::tempdir().unwrap();
    let file = write_config(dir.path(), "old-key", "");
    let source = ConfigSource {
        file: Some(file.clone()),
        env: false,
    };
    let herald = herald::Herald::builder()
        .source(source)
        .build()
        .await
        .unwrap();
    // The relative SQLite path was read from the file's folder, not the working directory.
    assert!(dir.path().join("herald.db").exists());
    let router = herald.router();
    assert_eq!(
        call(&router, "GET", "/api/v1/sms/messages", "old-key")
            .await
            .0,
        StatusCode::OK
    );

    write_config(
        dir.path(),
        "new-key",
        "[delivery]\nmax_attempts = 9\n[compliance]\nhelp_reply = \"Call us.\"\n",
    );
    let (status, report) = call(&router, "POST", "/admin/plugins/reload", "admin").await;
    assert_eq!(status, StatusCode::OK, "{report}");
    assert_eq!(report["restart_required"], serde_json::json!([]));
    assert_eq!(
        call(&router, "GET", "/api/v1/sms/messages", "old-key")
            .await
            .0,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        call(&router, "GET", "/api/v1/sms/messages", "new-key")
            .await
            .0,
        StatusCode::OK
    );
    let config = herald.pipeline().config();
    assert_eq!(config.delivery.max_attempts, 9);
    assert_eq!(config.compliance.help_reply, "Call us.");

    // A file that does not validate is refused whole: the new key it names does not start working.
    let broken = std::fs::read_to_string(&file)
        .unwrap()
        .replace("new-key", "newer-key")
        + "[server.nonsense]\n";
    std::fs::write(&file, broken).unwrap();
    let (status, body) = call(&router, "POST", "/admin/plugins/reload", "admin").await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(body["error"]["code"], "invalid_configuration");
    assert_eq!(
        call(&router, "GET", "/api/v1/sms/messages", "newer-key")
            .await
            .0,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        call(&router, "GET", "/api/v1/sms/messages", "new-key")
            .await
            .0,
        StatusCode::OK
    );

    // Settings only a restart applies are named, and the rest still applies.
    write_config(dir.path(), "new-key", "[delivery]\nworkers = 3\n");
    let text = std::fs::read_to_string(&file)
        .unwrap()
        .replace("[server]\n", "[server]\nlisten = \"127.0.0.1:9\"\n");
    std::fs::write(&file, text).unwrap();
    let (status, report) = call(&router, "POST", "/admin/plugins/reload", "admin").await;
    assert_eq!(status, StatusCode::OK, "{report}");
    assert_eq!(
        report["restart_required"],
        serde_json::json!(["server.listen", "delivery.workers"])
    );
    herald.close().await;
}

/// Load-time checks name what is wrong: the public URL, the storage scheme.
#[test]
fn config_files_are_checked_at_load() {
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        (
            "[server]\npublic_url = \"sms.example.com\"\n",
            "not an absolute URL",
        ),
        (
            "[server]\npublic_url = \"ftp://sms.example.com\"\n",
            "http or https",
        ),
        (
            "[server]\npublic_url = \"https://sms.example.com/?a=1\"\n",
            "no query or fragment",
        ),
        (
            "[server]\npublic_url = \"https://my_host.example.com\"\n",
            "`_`",
        ),
        (
            "[storage]\nurl = \"mysql://x\"\n",
            "unsupported storage URL scheme",
        ),
    ];
    for (toml, expected) in cases {
        let file = dir.path().join("bad.toml");
        std::fs::write(&file, toml).unwrap();
        let error = ConfigSource {
            file: Some(file),
            env: false,
        }
        .load()
        .unwrap_err()
        .to_string();
        assert!(error.contains(expected), "{toml}: {error}");
    }
    let file = dir.path().join("paths.toml");
    std::fs::write(
        &file,
        "[runtime]\nplugin_dir = \"plugins\"\n[plugins.x]\npath = \"x.wasm\"\n",
    )
    .unwrap();
    let config = ConfigSource {
        file: Some(file),
        env: false,
    }
    .load()
    .unwrap();
    assert_eq!(config.runtime.plugin_dir, dir.path().join("plugins"));
    assert_eq!(
        config.plugins["x"].path.as_deref(),
        Some(dir.path().join("x.wasm").as_path())
    );
    // Defaults that no file set stay as they are.
    assert_eq!(
        config.runtime.cache_dir,
        herald::config::RuntimeConfig::default().cache_dir
    );
}
