//! The WIT contract: bundled plugins load and describe themselves; components of every supported
//! contract version keep working; unknown versions are refused.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use herald::plugin::model::{DeliveryState, FetchOutcome, MissingVariables, SendOutcome};
use herald::plugin::{PluginKind, Plugins};

/// Both bundled plugins load, report their role, and describe their settings.
#[tokio::test]
async fn bundled_plugins_load_and_describe() {
    let twilio = common::twilio_settings("http://127.0.0.1:9", "ACtest", "secret-token");
    let mustache = common::plugin_config(common::plugin("mustache"));
    let config = common::config(
        vec![("twilio", twilio), ("mustache", mustache)],
        "twilio",
        "mustache",
    );
    let plugins = Plugins::start(&config).await.unwrap();

    let provider = plugins.provider().unwrap();
    assert_eq!(provider.kind(), PluginKind::Provider);
    assert_eq!(provider.info().name, "twilio");
    let token = provider
        .info()
        .config_keys
        .iter()
        .find(|k| k.name == "auth_token")
        .unwrap();
    assert!(token.secret, "auth_token must be declared secret");
    assert!(
        provider
            .info()
            .config_keys
            .iter()
            .any(|k| k.name == "account_sid" && k.required)
    );

    let renderer = plugins.renderer().unwrap();
    assert_eq!(renderer.kind(), PluginKind::Renderer);
    assert_eq!(renderer.info().name, "mustache");
    let listed: Vec<(String, String)> = plugins
        .list()
        .into_iter()
        .map(|p| (p.name, p.contract))
        .collect();
    assert_eq!(
        listed,
        [
            ("mustache".to_string(), "0.2.0".to_string()),
            ("twilio".to_string(), "0.2.0".to_string())
        ]
    );
}

/// A provider built against the frozen 0.1.0 contract still loads, describes itself and sends,
/// through the host's HTTP import too.
#[tokio::test]
async fn contract_0_1_0_component_still_works() {
    let base = common::serve(
        axum::Router::new().route("/hello", axum::routing::get(|| async { "hi there" })),
    )
    .await;
    let mut settings = common::plugin_config(common::plugin("contract-0.1.0"));
    settings.allowed_hosts = vec![base.trim_start_matches("http://").to_string()];
    let config = common::config(vec![("old", settings)], "old", "");
    let plugins = Plugins::start(&config).await.unwrap();

    let provider = plugins.provider().unwrap();
    assert_eq!(provider.kind(), PluginKind::Provider);
    assert_eq!(provider.contract(), "0.1.0");
    assert_eq!(provider.info().name, "contract-0.1.0");
    assert_eq!(provider.info().version, "1.0.0");
    match provider.send(&common::outbound("hello")).await {
        SendOutcome::Accepted(a) => {
            assert_eq!(a.provider_message_id, "contract-0.1.0-msg_test");
            assert_eq!(a.provider_status, "queued");
        }
        other => panic!("expected accepted, got {other:?}"),
    }
    match provider
        .send(&common::outbound(&format!("http:{base}/hello")))
        .await
    {
        SendOutcome::Accepted(a) => {
            assert_eq!(a.provider_message_id, "hi there");
            assert_eq!(a.provider_status, "200");
        }
        other => panic!("expected accepted, got {other:?}"),
    }
}

/// `fetch-status` is served by 0.2.0 providers with the answer they give, a trap or a limit hit
/// becomes retryable (a lookup changes nothing), and a 0.1.0 provider or a renderer is plainly
/// unsupported.
#[tokio::test]
async fn fetch_status_by_contract_version() {
    let mut probe = common::plugin_config(common::plugin("probe"));
    probe.cpu_ms = 50;
    probe.timeout_ms = 2_000;
    let config = common::config(
        vec![
            ("probe", probe),
            (
                "old",
                common::plugin_config(common::plugin("contract-0.1.0")),
            ),
            (
                "mustache",
                common::plugin_config(common::plugin("mustache")),
            ),
        ],
        "probe",
        "mustache",
    );
    let plugins = Plugins::start(&config).await.unwrap();
    let probe = plugins.get("probe").unwrap();
    assert!(probe.supports_fetch_status());
    match probe.fetch_status("SM1").await {
        FetchOutcome::Status(update) => {
            assert_eq!(update.provider_message_id, "SM1");
            assert_eq!(update.state, DeliveryState::Delivered);
            assert_eq!(update.sender.as_deref(), Some("probe-sender"));
        }
        other => panic!("expected a status, got {other:?}"),
    }
    assert!(matches!(
        probe.fetch_status("retryable").await,
        FetchOutcome::Retryable {
            retry_after_ms: Some(1_234),
            ..
        }
    ));
    assert!(matches!(
        probe.fetch_status("permanent").await,
        FetchOutcome::Permanent(e) if e.message == "probe: permanent requested"
    ));
    for (id, why) in [("trap", "trapped"), ("spin", "CPU budget")] {
        match probe.fetch_status(id).await {
            FetchOutcome::Retryable {
                error,
                retry_after_ms: None,
            } => assert!(error.message.contains(why), "{id}: {error:?}"),
            other => panic!("{id}: expected retryable, got {other:?}"),
        }
    }
    for name in ["old", "mustache"] {
        let plugin = plugins.get(name).unwrap();
        assert!(!plugin.supports_fetch_status(), "{name}");
        assert_eq!(plugin.fetch_status("SM1").await, FetchOutcome::Unsupported);
    }
}

/// A 0.1.0 component sees a refused connection as 0.1.0's `transport`, the shape it was built for.
#[tokio::test]
async fn contract_0_1_0_sees_the_old_http_error() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    let mut settings = common::plugin_config(common::plugin("contract-0.1.0"));
    settings.allowed_hosts = vec![addr.to_string()];
    let config = common::config(vec![("old", settings)], "old", "");
    let plugins = Plugins::start(&config).await.unwrap();
    match plugins
        .provider()
        .unwrap()
        .send(&common::outbound(&format!("http:http://{addr}/")))
        .await
    {
        SendOutcome::Unknown(error) => {
            assert!(
                error.message.starts_with("HttpError::Transport("),
                "{error:?}"
            )
        }
        other => panic!("a 0.1.0 plugin maps transport to unknown, got {other:?}"),
    }
}

/// A component built against `herald:plugin@0.9.0` is refused with an error naming the version
/// (routed, so its refusal stops the start).
#[tokio::test]
async fn unknown_contract_is_refused() {
    let future = common::plugin_config(common::plugin("future-contract"));
    let config = common::config(vec![("future", future)], "future", "");
    let err = Plugins::start(&config)
        .await
        .err()
        .expect("must be refused")
        .to_string();
    assert!(err.contains("herald:plugin@0.9.0"), "{err}");
    assert!(err.contains("supported: 0.1.0, 0.2.0"), "{err}");
}

/// A file that is not a component at all is refused with a clear error (routed, so its
/// refusal stops the start).
#[tokio::test]
async fn garbage_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("junk.wasm");
    std::fs::write(&path, b"not wasm").unwrap();
    let config = common::config(vec![("junk", common::plugin_config(path))], "junk", "");
    let err = Plugins::start(&config)
        .await
        .err()
        .expect("must be refused")
        .to_string();
    assert!(err.contains("not a loadable component"), "{err}");
}

/// A provider whose required setting is missing is refused with an error naming the setting.
#[tokio::test]
async fn missing_required_setting_is_named() {
    let mut twilio = common::twilio_settings("http://127.0.0.1:9", "ACtest", "tok");
    twilio.config.remove("account_sid");
    let config = common::config(vec![("twilio", twilio)], "twilio", "");
    let err = Plugins::start(&config)
        .await
        .err()
        .expect("must be refused")
        .to_string();
    assert!(err.contains("plugins.twilio.config.account_sid"), "{err}");
}

/// A renderer cannot be granted network access.
#[tokio::test]
async fn renderer_gets_no_network() {
    let mut mustache = common::plugin_config(common::plugin("mustache"));
    mustache.allowed_hosts = vec!["example.com".into()];
    let config = common::config(vec![("mustache", mustache)], "", "mustache");
    let err = Plugins::start(&config)
        .await
        .err()
        .expect("must be refused")
        .to_string();
    assert!(err.contains("renderers get no network"), "{err}");
}

/// The mustache renderer validates, renders, and names a missing variable (refusing it for a
/// send, reporting it for a preview).
#[tokio::test]
async fn mustache_renders_strictly() {
    let mustache = common::plugin_config(common::plugin("mustache"));
    let config = common::config(vec![("mustache", mustache)], "", "mustache");
    let plugins = Plugins::start(&config).await.unwrap();
    let r = plugins.renderer().unwrap();
    let vars = r
        .validate("Hi {{name}}, order {{ order }} for {{name}}")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(vars, ["name", "order"]);
    let variables = [("name".into(), "Ann".into()), ("order".into(), 42.into())]
        .into_iter()
        .collect();
    let rendered = r
        .render(
            "Hi {{name}}, order {{ order }}",
            &variables,
            MissingVariables::Refuse,
        )
        .await
        .unwrap()
        .unwrap();
    assert_eq!(rendered.text, "Hi Ann, order 42");
    let none = Default::default();
    let missing = r
        .render("Hi {{name}}", &none, MissingVariables::Refuse)
        .await
        .unwrap()
        .unwrap_err();
    assert_eq!(
        missing,
        herald::plugin::model::RenderError::MissingVariable("name".into())
    );
    let reported = r
        .render("Hi {{name}}", &none, MissingVariables::Report)
        .await
        .unwrap()
        .unwrap();
    assert_eq!((rendered.missing.len(), reported.text.as_str()), (0, "Hi "));
    assert_eq!(reported.missing, ["name"]);
    let invalid = r.validate("Hi {{name").await.unwrap().unwrap_err();
    assert!(invalid.position.is_some(), "{invalid:?}");
}

/// Compiled artifacts are cached on disk: a restart reuses them, a damaged one is recompiled.
#[tokio::test]
async fn artifact_cache_survives_restart() {
    let cache = tempfile::tempdir().unwrap();
    let mustache = common::plugin_config(common::plugin("mustache"));
    let mut config = common::config(vec![("mustache", mustache)], "", "mustache");
    config.runtime.cache_dir = cache.path().to_path_buf();
    let artifacts = || -> Vec<std::path::PathBuf> {
        std::fs::read_dir(cache.path())
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect()
    };

    drop(Plugins::start(&config).await.unwrap());
    let first = artifacts();
    assert_eq!(first.len(), 1, "{first:?}");
    assert!(first[0].extension().is_some_and(|e| e == "cwasm"));
    let written = std::fs::metadata(&first[0]).unwrap().modified().unwrap();

    let plugins = Plugins::start(&config).await.unwrap();
    assert_eq!(artifacts(), first, "a restart must not compile again");
    assert_eq!(
        std::fs::metadata(&first[0]).unwrap().modified().unwrap(),
        written
    );
    assert!(
        plugins
            .renderer()
            .unwrap()
            .validate("{{a}}")
            .await
            .unwrap()
            .is_ok()
    );
    drop(plugins);

    std::fs::write(&first[0], b"damaged").unwrap();
    let plugins = Plugins::start(&config).await.unwrap();
    assert!(
        plugins
            .renderer()
            .unwrap()
            .validate("{{a}}")
            .await
            .unwrap()
            .is_ok()
    );
    assert!(
        std::fs::read(&first[0]).unwrap().len() > 1000,
        "a damaged artifact is replaced"
    );
}

/// A cached artifact is native code: one copied under another plugin's name (here the v2
/// probe's over the v1 probe's) fails authentication and is recompiled from the real source,
/// and a cache directory that others may write to is not used at all.
#[tokio::test]
async fn artifact_cache_is_authenticated() {
    use std::os::unix::fs::PermissionsExt;
    let cache = tempfile::tempdir().unwrap();
    let dir = cache.path().join("artifacts");
    let run = |name: &'static str| {
        let mut config = common::config(
            vec![("probe", common::plugin_config(common::plugin(name)))],
            "probe",
            "",
        );
        config.runtime.cache_dir = dir.clone();
        config
    };
    let artifacts = || -> Vec<std::path::PathBuf> {
        let mut found: Vec<_> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        found.sort();
        found
    };
    drop(Plugins::start(&run("probe")).await.unwrap());
    let v1 = artifacts();
    assert_eq!(
        std::fs::metadata(&dir).unwrap().permissions().mode() & 0o777,
        0o700
    );
    drop(Plugins::start(&run("probe-v2")).await.unwrap());
    let v2: Vec<_> = artifacts()
        .into_iter()
        .filter(|p| !v1.contains(p))
        .collect();
    assert_eq!((v1.len(), v2.len()), (1, 1));

    std::fs::copy(&v2[0], &v1[0]).unwrap();
    let plugins = Plugins::start(&run("probe")).await.unwrap();
    let version = match plugins
        .provider()
        .unwrap()
        .send(&common::outbound("hello"))
        .await
    {
        herald::plugin::model::SendOutcome::Accepted(a) => a.provider_message_id,
        other => panic!("{other:?}"),
    };
    assert!(
        version.starts_with("probe-1.0.0-"),
        "the copied artifact ran: {version}"
    );
    assert_ne!(
        std::fs::read(&v1[0]).unwrap(),
        std::fs::read(&v2[0]).unwrap(),
        "healed"
    );
    drop(plugins);

    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o777)).unwrap();
    std::fs::copy(&v2[0], &v1[0]).unwrap();
    let before = std::fs::read(&v1[0]).unwrap();
    let plugins = Plugins::start(&run("probe")).await.unwrap();
    assert!(plugins.provider().is_ok());
    assert_eq!(
        std::fs::read(&v1[0]).unwrap(),
        before,
        "a world-writable cache is not touched"
    );
}
