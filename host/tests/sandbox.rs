//! The sandbox: runaway, greedy, nosy and crashing plugins cost one failed call, never the host.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::Arc;
use std::time::Duration;

use herald::plugin::Plugins;
use herald::plugin::model::SendOutcome;

async fn probe(cpu_ms: u64, timeout_ms: u64, allowed: Vec<String>) -> Plugins {
    let mut settings = common::plugin_config(common::plugin("probe"));
    settings.cpu_ms = cpu_ms;
    settings.timeout_ms = timeout_ms;
    settings.memory_mb = 16;
    settings.allowed_hosts = allowed;
    Plugins::start(&common::config(vec![("probe", settings)], "probe", ""))
        .await
        .unwrap()
}

/// A base URL on 127.0.0.1 that refuses connections while the returned socket lives
/// ([`common::refusing_address`]), and the grant for it.
fn nothing_listens() -> (String, String, tokio::net::TcpSocket) {
    let (socket, addr) = common::refusing_address();
    (format!("http://{addr}"), addr.to_string(), socket)
}

/// Asserts the plugin still answers a normal call.
async fn still_serving(plugins: &Plugins) {
    match plugins
        .provider()
        .unwrap()
        .send(&common::outbound("hello"))
        .await
    {
        SendOutcome::Accepted(a) => {
            assert!(a.provider_message_id.starts_with("probe-1.0.0-"), "{a:?}")
        }
        other => panic!("the plugin should still serve normal calls, got {other:?}"),
    }
}

/// A plugin that loops forever is stopped by its CPU budget and the call is retryable.
#[tokio::test]
async fn infinite_loop_hits_the_cpu_budget() {
    let plugins = probe(100, 5_000, vec![]).await;
    let outcome = plugins
        .provider()
        .unwrap()
        .send(&common::outbound("spin"))
        .await;
    match outcome {
        SendOutcome::Retryable { error, .. } => {
            assert!(error.message.contains("CPU budget"), "{error:?}")
        }
        other => panic!("expected retryable, got {other:?}"),
    }
    still_serving(&plugins).await;
}

/// With a generous CPU budget, the wall-clock deadline stops a spinning plugin.
#[tokio::test]
async fn infinite_loop_hits_the_deadline() {
    let plugins = probe(60_000, 200, vec![]).await;
    match plugins
        .provider()
        .unwrap()
        .send(&common::outbound("spin"))
        .await
    {
        SendOutcome::Retryable { error, .. } => {
            assert!(error.message.contains("timed out"), "{error:?}")
        }
        other => panic!("expected retryable, got {other:?}"),
    }
    still_serving(&plugins).await;
}

/// A spinning plugin does not stall other calls running at the same time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spinning_call_does_not_block_others() {
    let plugins = Arc::new(probe(400, 5_000, vec![]).await);
    let spinner = {
        let plugins = plugins.clone();
        tokio::spawn(async move {
            plugins
                .provider()
                .unwrap()
                .send(&common::outbound("spin"))
                .await
        })
    };
    tokio::time::sleep(Duration::from_millis(20)).await;
    for _ in 0..20 {
        still_serving(&plugins).await;
    }
    assert!(
        !spinner.is_finished(),
        "normal calls should complete while the spinner is still running"
    );
    assert!(matches!(
        spinner.await.unwrap(),
        SendOutcome::Retryable { .. }
    ));
}

/// A plugin that allocates without bound is stopped at its memory limit.
#[tokio::test]
async fn unbounded_allocation_hits_the_memory_limit() {
    let plugins = probe(5_000, 10_000, vec![]).await;
    match plugins
        .provider()
        .unwrap()
        .send(&common::outbound("alloc"))
        .await
    {
        SendOutcome::Retryable { error, .. } => {
            assert!(error.message.contains("memory limit"), "{error:?}")
        }
        other => panic!("expected retryable, got {other:?}"),
    }
    still_serving(&plugins).await;
}

/// A plugin that calls a host it was not granted gets a denial, and nothing is sent.
#[tokio::test]
async fn ungranted_host_is_denied() {
    let plugins = probe(500, 5_000, vec!["127.0.0.1:9".into()]).await;
    match plugins
        .provider()
        .unwrap()
        .send(&common::outbound("forbidden"))
        .await
    {
        SendOutcome::Refused(error) => {
            assert!(error.message.contains("allowed_hosts"), "{error:?}")
        }
        other => panic!("expected refused, got {other:?}"),
    }
    still_serving(&plugins).await;
}

/// A granted host is reachable through the host's HTTP import.
#[tokio::test]
async fn granted_host_is_reachable() {
    let base = common::serve(
        axum::Router::new().route("/hello", axum::routing::get(|| async { "hi there" })),
    )
    .await;
    let grant = base.trim_start_matches("http://").to_string();
    let plugins = probe(500, 5_000, vec![grant]).await;
    match plugins
        .provider()
        .unwrap()
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

/// A plugin that traps costs one retryable failure, and its panic message is reported.
#[tokio::test]
async fn trap_is_contained() {
    let plugins = probe(500, 5_000, vec![]).await;
    match plugins
        .provider()
        .unwrap()
        .send(&common::outbound("trap"))
        .await
    {
        SendOutcome::Retryable { error, .. } => {
            assert!(error.message.contains("trapped"), "{error:?}")
        }
        other => panic!("expected retryable, got {other:?}"),
    }
    still_serving(&plugins).await;
}

/// A plugin that fails after making an outbound request is classified unknown, not retryable.
#[tokio::test]
async fn failure_after_a_request_is_unknown() {
    let slow = axum::Router::new().route(
        "/slow",
        axum::routing::get(|| async {
            tokio::time::sleep(Duration::from_secs(5)).await;
            "late"
        }),
    );
    let base = common::serve(slow).await;
    let grant = base.trim_start_matches("http://").to_string();
    let plugins = probe(500, 300, vec![grant]).await;
    match plugins
        .provider()
        .unwrap()
        .send(&common::outbound(&format!("http:{base}/slow")))
        .await
    {
        SendOutcome::Unknown(error) => assert!(error.message.contains("timed out"), "{error:?}"),
        other => panic!("expected unknown, got {other:?}"),
    }
}

/// A request refused at connect reaches the plugin as `not-sent`, which the probe maps to
/// retryable.
#[tokio::test]
async fn refused_connection_is_not_sent() {
    let (base, grant, _refusing) = nothing_listens();
    let plugins = probe(500, 5_000, vec![grant]).await;
    match plugins
        .provider()
        .unwrap()
        .send(&common::outbound(&format!("http:{base}/")))
        .await
    {
        SendOutcome::Retryable { error, .. } => {
            assert!(
                error.message.contains("NotSentReason::Unreachable("),
                "{error:?}"
            )
        }
        other => panic!("expected retryable, got {other:?}"),
    }
}

/// A plugin that traps after a request refused at connect is retryable: that request cannot have
/// reached the server, so it does not make the failure unknown.
#[tokio::test]
async fn trap_after_a_refused_connection_is_retryable() {
    let (base, grant, _refusing) = nothing_listens();
    let plugins = probe(500, 5_000, vec![grant]).await;
    match plugins
        .provider()
        .unwrap()
        .send(&common::outbound(&format!("http-then-trap:{base}/")))
        .await
    {
        SendOutcome::Retryable { error, .. } => {
            assert!(error.message.contains("trapped"), "{error:?}");
            assert!(error.message.contains("Unreachable"), "{error:?}");
        }
        other => panic!("expected retryable, got {other:?}"),
    }
    still_serving(&plugins).await;
}

/// A plugin that traps after a request that reached the server is unknown.
#[tokio::test]
async fn trap_after_a_sent_request_is_unknown() {
    let base = common::serve(
        axum::Router::new().route("/hello", axum::routing::get(|| async { "hi there" })),
    )
    .await;
    let grant = base.trim_start_matches("http://").to_string();
    let plugins = probe(500, 5_000, vec![grant]).await;
    match plugins
        .provider()
        .unwrap()
        .send(&common::outbound(&format!("http-then-trap:{base}/hello")))
        .await
    {
        SendOutcome::Unknown(error) => assert!(error.message.contains("trapped"), "{error:?}"),
        other => panic!("expected unknown, got {other:?}"),
    }
}

/// No environment variables or files reach a plugin.
#[tokio::test]
async fn no_ambient_authority() {
    let plugins = probe(500, 5_000, vec![]).await;
    match plugins
        .provider()
        .unwrap()
        .send(&common::outbound("env"))
        .await
    {
        SendOutcome::Accepted(a) => {
            assert_eq!(
                a.provider_message_id, "0",
                "environment variables leaked into the plugin"
            );
            assert_eq!(a.provider_status, "fs-denied");
        }
        other => panic!("expected accepted, got {other:?}"),
    }
}
