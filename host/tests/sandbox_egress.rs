//! Egress: a grant is scheme, host and port; a granted name reaches only public addresses unless
//! the grant says `allow_private`, checked at connect time; plugins cannot set the headers the
//! host owns, nor flood the request with headers.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::net::IpAddr;
use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use herald::plugin::Plugins;
use herald::plugin::egress::{AddressRefused, Egress, HostGrant, Lookup, check_headers};
use herald::plugin::model::SendOutcome;
use reqwest::dns::{Name, Resolve};

/// Starts `plugin` (`probe` or `hostile-egress`) with these grants.
async fn start(plugin: &str, allowed: Vec<String>) -> Plugins {
    let mut settings = common::plugin_config(common::plugin(plugin));
    settings.allowed_hosts = allowed;
    settings.http_timeout_ms = 2_000;
    Plugins::start(&common::config(vec![(plugin, settings)], plugin, ""))
        .await
        .unwrap()
}

/// A local server answering `hi there` on every path, counting the requests it gets; its port.
async fn counting_server() -> (u16, Arc<AtomicUsize>) {
    let hits = Arc::new(AtomicUsize::new(0));
    let counter = hits.clone();
    let router = axum::Router::new().fallback(move || {
        let counter = counter.clone();
        async move {
            counter.fetch_add(1, Ordering::SeqCst);
            "hi there"
        }
    });
    let base = common::serve(router).await;
    let port = url::Url::parse(&base).unwrap().port().unwrap();
    (port, hits)
}

/// Sends one message with `body` through the routed provider.
async fn send(plugins: &Plugins, body: &str) -> SendOutcome {
    plugins
        .provider()
        .unwrap()
        .send(&common::outbound(body))
        .await
}

/// Asserts the outcome is a refusal whose text contains `needle`.
fn assert_refused(outcome: SendOutcome, needle: &str) {
    match outcome {
        SendOutcome::Refused(error) => assert!(error.message.contains(needle), "{error:?}"),
        other => panic!("expected refused ({needle}), got {other:?}"),
    }
}

/// Asserts the outcome is the local server's answer.
fn assert_reached(outcome: SendOutcome) {
    match outcome {
        SendOutcome::Accepted(a) => assert_eq!(a.provider_message_id, "hi there", "{a:?}"),
        other => panic!("expected the server's answer, got {other:?}"),
    }
}

/// A host-name grant for `localhost` does not reach 127.0.0.1, unless it says `allow_private`.
#[tokio::test]
async fn hostname_grant_cannot_reach_loopback_without_allow_private() {
    let (port, hits) = counting_server().await;
    let url = format!("http://localhost:{port}/");
    let plugins = start("probe", vec![format!("http://localhost:{port}")]).await;
    assert_refused(
        send(&plugins, &format!("http:{url}")).await,
        "not a public address",
    );
    assert_eq!(
        hits.load(Ordering::SeqCst),
        0,
        "nothing may reach the server"
    );

    let plugins = start(
        "probe",
        vec![format!("http://localhost:{port} allow_private")],
    )
    .await;
    assert_reached(send(&plugins, &format!("http:{url}")).await);
}

/// The old `localhost:PORT` form is an https grant now: plain http to that host is refused.
#[tokio::test]
async fn scheme_less_hostname_grant_means_https() {
    let (port, hits) = counting_server().await;
    let plugins = start("probe", vec![format!("localhost:{port}")]).await;
    assert_refused(
        send(&plugins, &format!("http:http://localhost:{port}/")).await,
        "allowed_hosts",
    );
    assert_eq!(hits.load(Ordering::SeqCst), 0);
}

/// A grant without a port covers only the scheme's default port, not every port of the host.
#[tokio::test]
async fn grant_without_port_covers_only_the_default_port() {
    let (port, hits) = counting_server().await;
    for grant in ["127.0.0.1", "http://127.0.0.1"] {
        let plugins = start("probe", vec![grant.to_string()]).await;
        assert_refused(
            send(&plugins, &format!("http:http://127.0.0.1:{port}/")).await,
            "allowed_hosts",
        );
    }
    assert_eq!(hits.load(Ordering::SeqCst), 0);
}

/// An https grant does not allow plain http to the same host and port.
#[tokio::test]
async fn https_grant_refuses_http() {
    let (port, hits) = counting_server().await;
    let plugins = start("probe", vec![format!("https://127.0.0.1:{port}")]).await;
    assert_refused(
        send(&plugins, &format!("http:http://127.0.0.1:{port}/")).await,
        "allowed_hosts",
    );
    assert_eq!(hits.load(Ordering::SeqCst), 0);
}

/// IP-literal grants are explicit: `http://127.0.0.1:PORT` and the scheme-less `127.0.0.1:PORT`
/// (as the demo and the carrier tests write it) both reach the local server.
#[tokio::test]
async fn ip_literal_grants_reach_their_port() {
    let (port, hits) = counting_server().await;
    for grant in [
        format!("http://127.0.0.1:{port}"),
        format!("127.0.0.1:{port}"),
    ] {
        let plugins = start("probe", vec![grant]).await;
        assert_reached(send(&plugins, &format!("http:http://127.0.0.1:{port}/")).await);
    }
    assert_eq!(hits.load(Ordering::SeqCst), 2);
}

/// A name that answers a public address and then a private one (DNS rebinding) is refused the
/// second time: the resolver the client connects through checks every answer.
#[tokio::test]
async fn rebinding_answer_is_refused_at_resolve_time() {
    let answers = Arc::new(AtomicUsize::new(0));
    let counter = answers.clone();
    let lookup: Lookup = Arc::new(move |_name: String| {
        let n = counter.fetch_add(1, Ordering::SeqCst);
        Box::pin(async move {
            let ip = if n == 0 { "93.184.216.34" } else { "127.0.0.1" };
            Ok(vec![IpAddr::from_str(ip).unwrap()])
        })
    });
    let grants = Egress::parse(&["https://rebind.example".to_string()]).unwrap();
    let resolver = grants.resolver(lookup);

    let first: Vec<_> = resolver
        .resolve(Name::from_str("rebind.example").unwrap())
        .await
        .unwrap()
        .collect();
    assert_eq!(first.len(), 1);
    assert_eq!(first[0].ip(), IpAddr::from_str("93.184.216.34").unwrap());

    let second = match resolver
        .resolve(Name::from_str("rebind.example").unwrap())
        .await
    {
        Ok(addrs) => panic!(
            "a private answer must be refused, got {:?}",
            addrs.collect::<Vec<_>>()
        ),
        Err(e) => e,
    };
    let refused = second
        .downcast_ref::<AddressRefused>()
        .expect("refused by the address check");
    assert!(refused.to_string().contains("127.0.0.1"), "{refused}");
}

/// Every kind of non-public address is refused for a host-name grant; mixed answers keep only
/// the public addresses; `allow_private` keeps them all.
#[tokio::test]
async fn non_public_addresses_are_filtered() {
    let refused = [
        "127.0.0.1",
        "10.1.2.3",
        "172.16.0.1",
        "192.168.1.1",
        "169.254.169.254",
        "100.64.0.1",
        "0.0.0.0",
        "255.255.255.255",
        "224.0.0.1",
        "::1",
        "::",
        "fe80::1",
        "fd00:ec2::254",
        "fc00::1",
        "ff02::1",
        "::ffff:127.0.0.1",
        "::ffff:169.254.169.254",
        "64:ff9b::a00:1",
        "2002:c0a8:101::1",
    ];
    for ip in refused {
        let lookup: Lookup =
            Arc::new(move |_| Box::pin(async move { Ok(vec![IpAddr::from_str(ip).unwrap()]) }));
        let strict = Egress::parse(&["https://api.example".into()]).unwrap();
        let err = strict
            .resolver(lookup.clone())
            .addresses("api.example")
            .await;
        assert!(
            err.is_err_and(|e| e.is::<AddressRefused>()),
            "{ip} must be refused"
        );
        let lax = Egress::parse(&["https://api.example allow_private".into()]).unwrap();
        assert_eq!(
            lax.resolver(lookup).addresses("api.example").await.unwrap(),
            vec![IpAddr::from_str(ip).unwrap()],
            "{ip} is allowed with allow_private"
        );
    }
    let mixed: Lookup = Arc::new(|_| {
        Box::pin(async {
            Ok(vec![
                IpAddr::from_str("10.0.0.1").unwrap(),
                IpAddr::from_str("2606:4700::1").unwrap(),
            ])
        })
    });
    let strict = Egress::parse(&["https://api.example".into()]).unwrap();
    assert_eq!(
        strict
            .resolver(mixed)
            .addresses("api.example")
            .await
            .unwrap(),
        vec![IpAddr::from_str("2606:4700::1").unwrap()]
    );
}

/// Grants that are not scheme, host and port, or that mix `allow_private`, are refused.
#[test]
fn malformed_grants_are_refused() {
    for bad in [
        "ftp://example.com",
        "https://example.com/path",
        "https://user:pw@example.com",
        "example.com/path",
        "example.com allow_everything",
        "",
    ] {
        assert!(Egress::parse(&[bad.to_string()]).is_err(), "`{bad}`");
    }
    let mixed = [
        "https://a.example".to_string(),
        "http://a.example allow_private".to_string(),
    ];
    assert!(Egress::parse(&mixed).is_err());
}

/// Headers the host owns are refused before anything is sent, in any case.
#[tokio::test]
async fn host_owned_headers_are_refused() {
    let (port, hits) = counting_server().await;
    let plugins = start("hostile-egress", vec![format!("http://127.0.0.1:{port}")]).await;
    let url = format!("http://127.0.0.1:{port}/");
    for header in [
        "Host: evil.example",
        "host: evil.example",
        "Connection: Upgrade",
        "Upgrade: h2c",
        "Transfer-Encoding: chunked",
        "TE: trailers",
        "Keep-Alive: timeout=5",
        "Proxy-Authorization: Basic eA==",
        "Content-Length: 5",
    ] {
        assert_refused(
            send(&plugins, &format!("GET {url}\n{header}")).await,
            "set by the host",
        );
    }
    assert_eq!(
        hits.load(Ordering::SeqCst),
        0,
        "nothing may reach the server"
    );
    // An ordinary header still goes through.
    assert_reached(send(&plugins, &format!("GET {url}\nAccept: text/plain")).await);
}

/// 40,000 header names are refused as a denial, without a panic, and the plugin keeps serving.
#[tokio::test]
async fn header_flood_is_refused_without_a_panic() {
    let (port, hits) = counting_server().await;
    let plugins = start("hostile-egress", vec![format!("http://127.0.0.1:{port}")]).await;
    let url = format!("http://127.0.0.1:{port}/");
    assert_refused(
        send(&plugins, &format!("GET {url}\n*40000 x-h")).await,
        "at most 64",
    );
    assert_refused(
        send(
            &plugins,
            &format!("GET {url}\nX-Big: {}", "a".repeat(9_000)),
        )
        .await,
        "bytes of headers",
    );
    assert_eq!(hits.load(Ordering::SeqCst), 0);
    assert_reached(send(&plugins, &format!("GET {url}\n*60 x-h")).await);
}

/// The header rules on their own: counts, sizes and names.
#[test]
fn header_rules() {
    let h = |n: &str| (n.to_string(), "v".to_string());
    assert!(check_headers(&[h("Authorization"), h("Content-Type")]).is_ok());
    assert!(check_headers(&[h("Proxy-Connection")]).is_err());
    assert!(check_headers(&vec![h("x"); 65]).is_err());
    assert!(check_headers(&vec![h("x"); 64]).is_ok());
}

/// What each grant form covers: scheme, host and port.
#[test]
fn grant_forms() {
    let g = |rule: &str| HostGrant::parse(rule).unwrap();
    let https = g("https://API.twilio.com");
    assert!(https.allows("https", "api.twilio.com", 443));
    assert!(!https.allows("http", "api.twilio.com", 80));
    assert!(!https.allows("https", "api.twilio.com", 8443));
    assert!(!https.allows("https", "evil.twilio.com.example", 443));
    let bare = g("api.twilio.com");
    assert!(bare.allows("https", "api.twilio.com", 443));
    assert!(!bare.allows("http", "api.twilio.com", 80));
    let ip = g("127.0.0.1:4010");
    assert!(ip.allows("http", "127.0.0.1", 4010));
    assert!(ip.allows("https", "127.0.0.1", 4010));
    assert!(!ip.allows("http", "127.0.0.1", 4011));
    let ip_default = g("127.0.0.1:443");
    assert!(ip_default.allows("http", "127.0.0.1", 443));
    assert!(!ip_default.allows("http", "127.0.0.1", 80));
    let http = g("http://127.0.0.1:4010");
    assert!(!http.allows("https", "127.0.0.1", 4010));
    let v6 = g("[::1]:4010");
    assert!(v6.allows("http", "[::1]", 4010));
}
