//! Where a provider plugin's outbound HTTP may go: the operator's grants, the addresses a granted
//! name may resolve to, and the headers a plugin may set.
//!
//! A grant is a scheme, a host and a port (`https://api.twilio.com`, `http://127.0.0.1:4010`); a
//! missing port means the scheme's default. Without a scheme, a host name means `https` and an IP
//! literal means `http` or `https` on that port (the old `127.0.0.1:4010` form).
//!
//! Names are checked as addresses at connect time: each plugin's client resolves through
//! [`CheckedResolver`], which drops loopback, private, link-local, metadata and other non-public
//! addresses unless the grant ends in ` allow_private`, so the address the client connects to is
//! always one that was checked (a DNS answer that changes between calls gains nothing). An
//! IP-literal URL skips DNS; it can only match an IP-literal grant, which is explicit.

use std::collections::BTreeSet;
use std::future::Future;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;

use reqwest::dns::{Addrs, Name, Resolve, Resolving};

/// The flag that lets a host-name grant resolve to non-public addresses.
const ALLOW_PRIVATE: &str = "allow_private";
/// Most headers one outbound request may carry.
pub const MAX_HEADERS: usize = 64;
/// Most bytes of header names and values one outbound request may carry.
pub const MAX_HEADER_BYTES: usize = 8 * 1024;
/// Headers the host owns: framing, connection management and proxies (`proxy-*` too). A plugin
/// setting one could retarget or desynchronise the connection, so the request is refused.
const HOST_OWNED_HEADERS: &[&str] = &[
    "host",
    "connection",
    "upgrade",
    "transfer-encoding",
    "te",
    "keep-alive",
    "content-length",
    "trailer",
];

/// Which schemes a grant covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Schemes {
    /// Only this one (`http` or `https`).
    One(&'static str),
    /// Either: an IP literal granted without a scheme.
    Both,
}

/// One allow-list entry: scheme, host and port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostGrant {
    schemes: Schemes,
    host: String,
    /// `None`: the default port of the request's scheme.
    port: Option<u16>,
    ip_literal: bool,
    allow_private: bool,
}

impl HostGrant {
    /// Parses `scheme://host[:port]`, or `host[:port]` (IPv6 literals in brackets), optionally
    /// followed by ` allow_private`.
    pub fn parse(rule: &str) -> Result<Self, String> {
        let invalid = |why: &str| format!("invalid allowed host `{rule}`: {why}");
        let mut words = rule.split_whitespace();
        let target = words.next().ok_or_else(|| invalid("empty"))?;
        let mut allow_private = false;
        for flag in words {
            if flag != ALLOW_PRIVATE {
                return Err(invalid(&format!(
                    "unknown flag `{flag}` (the only one is `{ALLOW_PRIVATE}`)"
                )));
            }
            allow_private = true;
        }
        let explicit = target.contains("://");
        let text = if explicit {
            target.to_string()
        } else {
            format!("https://{target}")
        };
        let url = url::Url::parse(&text).map_err(|e| invalid(&e.to_string()))?;
        let scheme = match url.scheme() {
            "http" => "http",
            "https" => "https",
            other => return Err(invalid(&format!("scheme `{other}` (use http or https)"))),
        };
        if !url.username().is_empty()
            || url.password().is_some()
            || url.path() != "/"
            || url.query().is_some()
            || url.fragment().is_some()
            || (!explicit && target.contains('/'))
        {
            return Err(invalid("a grant is scheme, host and port only"));
        }
        let host = match url.host() {
            Some(url::Host::Domain(d)) => d.to_ascii_lowercase(),
            Some(host) => host.to_string(),
            None => return Err(invalid("no host")),
        };
        let ip_literal = !matches!(url.host(), Some(url::Host::Domain(_)));
        let schemes = match (explicit, ip_literal) {
            (true, _) | (false, false) => Schemes::One(scheme),
            (false, true) => Schemes::Both,
        };
        // `Url` drops a port equal to the scheme's default; keep the one written, if any, so a
        // scheme-less IP grant `1.2.3.4:443` stays pinned to 443 for http too.
        let port = if explicit {
            Some(url.port_or_known_default().unwrap_or(443))
        } else {
            url.port().or_else(|| written_port(target))
        };
        Ok(Self {
            schemes,
            host,
            port,
            ip_literal,
            allow_private,
        })
    }

    /// Whether a request to `scheme://host:port` is covered by this grant.
    pub fn allows(&self, scheme: &str, host: &str, port: u16) -> bool {
        let scheme_ok = match self.schemes {
            Schemes::One(s) => s == scheme,
            Schemes::Both => matches!(scheme, "http" | "https"),
        };
        let default = if scheme == "http" { 80 } else { 443 };
        scheme_ok && self.host == host && self.port.unwrap_or(default) == port
    }
}

/// The port written after the last `:` of a scheme-less grant outside brackets, if any.
fn written_port(target: &str) -> Option<u16> {
    let after = target.rsplit_once(']').map_or(target, |(_, rest)| rest);
    after.rsplit_once(':').and_then(|(_, p)| p.parse().ok())
}

/// A plugin's grants: what its outbound requests may reach.
#[derive(Debug, Clone, Default)]
pub struct Egress {
    grants: Vec<HostGrant>,
}

impl Egress {
    /// Parses the operator's `allowed_hosts`. A host name must be `allow_private` in all of its
    /// grants or in none: addresses are checked per name, not per port.
    pub fn parse(rules: &[String]) -> Result<Self, String> {
        let grants: Vec<HostGrant> = rules
            .iter()
            .map(|r| HostGrant::parse(r))
            .collect::<Result<_, _>>()?;
        for g in &grants {
            if grants
                .iter()
                .any(|o| o.host == g.host && o.allow_private != g.allow_private)
            {
                return Err(format!(
                    "allowed host `{}` is granted both with and without `{ALLOW_PRIVATE}`; use one",
                    g.host
                ));
            }
        }
        Ok(Self { grants })
    }

    /// Refuses a URL no grant covers (scheme, host and port), saying why.
    pub fn check_url(&self, url: &url::Url) -> Result<(), String> {
        let scheme = url.scheme();
        if !matches!(scheme, "http" | "https") {
            return Err(format!("scheme `{scheme}` is not allowed"));
        }
        let host = match url.host() {
            Some(url::Host::Domain(d)) => d.to_ascii_lowercase(),
            Some(host) => host.to_string(),
            None => return Err("the URL has no host".into()),
        };
        let port = url.port_or_known_default().unwrap_or(0);
        if self.grants.iter().any(|g| g.allows(scheme, &host, port)) {
            Ok(())
        } else {
            Err(format!(
                "{scheme}://{host}:{port} is not in this plugin's allowed_hosts"
            ))
        }
    }

    /// A client for this plugin: redirects off (a redirect could leave the grants), no proxy, and
    /// every host name resolved through a [`CheckedResolver`] for these grants.
    pub fn client(&self) -> Result<reqwest::Client, String> {
        reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .user_agent(concat!("herald/", env!("CARGO_PKG_VERSION")))
            .dns_resolver(Arc::new(self.resolver(system_lookup())))
            .build()
            .map_err(|e| format!("HTTP client: {e}"))
    }

    /// A resolver for these grants over `lookup`.
    pub fn resolver(&self, lookup: Lookup) -> CheckedResolver {
        let private_ok = self
            .grants
            .iter()
            .filter(|g| g.allow_private && !g.ip_literal)
            .map(|g| g.host.clone())
            .collect();
        CheckedResolver {
            private_ok: Arc::new(private_ok),
            lookup,
        }
    }
}

/// Refuses headers a plugin may not set, and more than [`MAX_HEADERS`] headers or
/// [`MAX_HEADER_BYTES`] bytes of them, before any header map is built.
pub fn check_headers(headers: &[(String, String)]) -> Result<(), String> {
    if headers.len() > MAX_HEADERS {
        return Err(format!(
            "{} headers; at most {MAX_HEADERS} are allowed",
            headers.len()
        ));
    }
    let bytes: usize = headers.iter().map(|(n, v)| n.len() + v.len()).sum();
    if bytes > MAX_HEADER_BYTES {
        return Err(format!(
            "{bytes} bytes of headers; at most {MAX_HEADER_BYTES} are allowed"
        ));
    }
    for (name, _) in headers {
        let lower = name.trim().to_ascii_lowercase();
        if HOST_OWNED_HEADERS.contains(&lower.as_str()) || lower.starts_with("proxy-") {
            return Err(format!(
                "header `{name}` is set by the host; plugins may not set it"
            ));
        }
    }
    Ok(())
}

/// Why the resolver refused a name; found again in a client error by [`refused_address`].
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct AddressRefused(String);

/// The resolver's refusal inside a client error, if that is what the error is.
pub fn refused_address(error: &reqwest::Error) -> Option<String> {
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        if let Some(refused) = cause.downcast_ref::<AddressRefused>() {
            return Some(refused.0.clone());
        }
        source = cause.source();
    }
    None
}

/// An error of the resolver, as the HTTP client takes it.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;
/// A future of the addresses of one name.
pub type LookupFuture = Pin<Box<dyn Future<Output = io::Result<Vec<IpAddr>>> + Send>>;
/// A DNS lookup: the system's, or a test's.
pub type Lookup = Arc<dyn Fn(String) -> LookupFuture + Send + Sync>;

/// The system resolver, through tokio.
pub fn system_lookup() -> Lookup {
    Arc::new(|name: String| {
        Box::pin(async move {
            let addrs = tokio::net::lookup_host((name.as_str(), 0)).await?;
            Ok(addrs.map(|a| a.ip()).collect())
        })
    })
}

/// Resolves names for one plugin's client and keeps only the addresses its grants allow, so a
/// connection only ever goes to a checked address.
#[derive(Clone)]
pub struct CheckedResolver {
    private_ok: Arc<BTreeSet<String>>,
    lookup: Lookup,
}

impl CheckedResolver {
    /// The addresses of `name` a connection may use. A failed lookup is the lookup's error;
    /// addresses all refused are an [`AddressRefused`].
    pub async fn addresses(&self, name: &str) -> Result<Vec<IpAddr>, BoxError> {
        let name = name.to_ascii_lowercase();
        let found = (self.lookup)(name.clone()).await?;
        if self.private_ok.contains(&name) {
            return Ok(found);
        }
        let (public, other): (Vec<IpAddr>, Vec<IpAddr>) =
            found.into_iter().partition(|ip| is_public(*ip));
        match (public.is_empty(), other.first()) {
            (false, _) => Ok(public),
            (true, Some(ip)) => Err(Box::new(AddressRefused(format!(
                "{name} resolves to {ip}, which is not a public address; grant it with `{ALLOW_PRIVATE}` to allow that"
            )))),
            (true, None) => Err(format!("{name} has no addresses").into()),
        }
    }
}

impl Resolve for CheckedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let this = self.clone();
        let name = name.as_str().to_string();
        Box::pin(async move {
            let ips = this.addresses(&name).await?;
            // Port 0: the client puts the URL's port in.
            let addrs: Addrs = Box::new(ips.into_iter().map(|ip| SocketAddr::new(ip, 0)));
            Ok(addrs)
        })
    }
}

/// Whether `ip` is a public unicast address: not loopback, private (RFC 1918, RFC 4193),
/// shared (RFC 6598), link-local (cloud metadata included), unspecified, documentation,
/// benchmarking, multicast, broadcast or reserved. IPv6 forms that embed an IPv4 address
/// (mapped, compatible, NAT64, 6to4) are judged by that address.
pub fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => is_public_v4(v4),
        IpAddr::V6(v6) => is_public_v6(v6),
    }
}

fn is_public_v4(ip: Ipv4Addr) -> bool {
    let [a, b, c, _] = ip.octets();
    !(a == 0
        || a == 10
        || a == 127
        || (a == 100 && (b & 0xc0) == 64)
        || (a == 169 && b == 254)
        || (a == 172 && (b & 0xf0) == 16)
        || (a == 192 && b == 168)
        || (a == 192 && b == 0 && (c == 0 || c == 2))
        || (a == 198 && (b & 0xfe) == 18)
        || (a == 198 && b == 51 && c == 100)
        || (a == 203 && b == 0 && c == 113)
        || a >= 224)
}

fn is_public_v6(ip: Ipv6Addr) -> bool {
    let s = ip.segments();
    let embedded =
        |hi: u16, lo: u16| Ipv4Addr::new((hi >> 8) as u8, hi as u8, (lo >> 8) as u8, lo as u8);
    if let Some(v4) = ip.to_ipv4_mapped() {
        return is_public_v4(v4);
    }
    if s[..6] == [0, 0, 0, 0, 0, 0] || s[..6] == [0x64, 0xff9b, 0, 0, 0, 0] {
        // `::a.b.c.d` (with `::` and `::1`) and NAT64: the embedded IPv4 address decides.
        return !(s[..6] == [0, 0, 0, 0, 0, 0] && s[6] == 0) && is_public_v4(embedded(s[6], s[7]));
    }
    if s[0] == 0x2002 {
        return is_public_v4(embedded(s[1], s[2]));
    }
    !((s[0] & 0xfe00) == 0xfc00 // unique local, fd00:ec2::254 (metadata) included
        || (s[0] & 0xffc0) == 0xfe80 // link-local
        || (s[0] & 0xffc0) == 0xfec0 // site-local (deprecated)
        || (s[0] & 0xff00) == 0xff00 // multicast
        || (s[0] == 0x2001 && s[1] == 0x0db8)) // documentation
}
