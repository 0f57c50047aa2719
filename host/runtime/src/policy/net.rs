//! Outbound HTTP: the `wasi:http` hook that lets a request leave only for a
//! host in the step's grant.
//!
//! Sockets are never granted to plugins; `wasi:http` is their only way out,
//! and every request passes [`OutboundHttp::send_request`]. A refused
//! request is answered with `HttpRequestDenied` before any connection is
//! made. The proxy of `RUN` commands ([`super::proxy`]) asks the same
//! policy, through [`OutboundHttp::decide`].

use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};

use http::uri::Scheme;
use http_body_util::BodyExt;
use wasmtime_wasi_http::{RequestOptions, WasiBody, WasiHttpHooks};

use crate::log::StepLog;
use crate::report::Level;
use kiln_grant::{HostMatch, HostPattern, split_authority};

/// The future types `wasi:http` hooks return, named once.
type ResponseFuture = Box<
    dyn Future<
            Output = wasmtime_wasi_http::Result<(
                http::Response<WasiBody>,
                Box<dyn Future<Output = wasmtime_wasi_http::Result<()>> + Send>,
            )>,
        > + Send,
>;

/// The step's outbound HTTP policy.
///
/// Hosts have one of three standings. Hosts the user or operator granted
/// by name are reached as named, even on loopback or private addresses.
/// Hosts that untrusted input named (the registries a Dockerfile's `FROM`
/// lines point at) and everything delegated to are reachable only on
/// public addresses, and the connection goes to the address that was
/// checked. A host with standing may delegate, as registries do: its
/// Bearer token `realm` and its redirect targets become reachable for the
/// rest of the step, a realm on the same host and port as a host granted
/// by name with that standing, everything else on public addresses only.
/// Wildcard grants never delegate. Nothing else widens the grant.
#[derive(Clone)]
pub struct OutboundHttp {
    grant: Arc<Mutex<Grant>>,
    log: Arc<StepLog>,
}

/// Hosts reachable now: the step's grant plus what granted hosts delegated.
#[derive(Debug, Default, Clone)]
struct Grant {
    /// Granted by the user or operator (by name or wildcard), and token
    /// realms on the same host as one granted by name.
    allowed: Vec<HostPattern>,
    /// Named by untrusted input: public addresses only, may delegate.
    named_public: Vec<HostPattern>,
    /// Delegation targets: public addresses only, no further delegation.
    public_only: Vec<HostPattern>,
}

/// How a request's host stands in the grant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Standing {
    /// Granted by name: connect by name, may delegate.
    Named,
    /// Checked to resolve only to public addresses: connect to these,
    /// exactly; `delegates` says whether its answers may widen the grant.
    Public {
        /// The checked addresses.
        addresses: Vec<SocketAddr>,
        /// Whether its realm and redirects become reachable.
        delegates: bool,
    },
}

/// How a response widens what the step may reach.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Delegation {
    /// A Bearer challenge's token realm (`host:port`).
    TokenRealm(String),
    /// A redirect target (`host:port`).
    Redirect(String),
}

/// What a response from a reachable host delegates to.
pub fn delegations(status: http::StatusCode, headers: &http::HeaderMap) -> Vec<Delegation> {
    if status == http::StatusCode::UNAUTHORIZED {
        return headers
            .get_all(http::header::WWW_AUTHENTICATE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .filter_map(bearer_realm_authority)
            .map(Delegation::TokenRealm)
            .collect();
    }
    if status.is_redirection() {
        return headers
            .get(http::header::LOCATION)
            .and_then(|v| v.to_str().ok())
            .and_then(url_authority_with_port)
            .map(Delegation::Redirect)
            .into_iter()
            .collect();
    }
    Vec::new()
}

/// Most hosts delegation may add to one step's grant: a registry needs a
/// token service and a storage host or two, not thousands.
const MAX_DELEGATED: usize = 64;

/// Longest host shown in a denial; the rest is cut.
const MAX_SHOWN_HOST: usize = 255;

impl OutboundHttp {
    /// A policy allowing exactly `allowed`, and `named_public` on public
    /// addresses only; denials are reported on `log`.
    pub fn new(
        allowed: Vec<HostPattern>,
        named_public: Vec<HostPattern>,
        log: Arc<StepLog>,
    ) -> Self {
        OutboundHttp {
            grant: Arc::new(Mutex::new(Grant {
                allowed,
                named_public,
                public_only: Vec::new(),
            })),
            log,
        }
    }

    /// How `host:port` stands in the step's grant now (what it was
    /// granted plus what granted hosts delegated), without widening it:
    /// one decision for `wasi:http` and the `RUN` commands' proxy alike.
    pub(crate) async fn decide(&self, host: &str, port: u16) -> Result<Standing, Refusal> {
        let now = self.grant.lock().unwrap_or_else(|e| e.into_inner()).clone();
        check(&now, host, port).await
    }

    /// Whether the step was granted any host at all (by the user or the
    /// operator): a RUN command gets a network only then.
    pub(crate) fn grants_any(&self) -> bool {
        !self
            .grant
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .allowed
            .is_empty()
    }

    /// Say on the step's log that a request to `authority` was refused.
    /// Charged to the step: whoever made the request must not make the
    /// host print without limit.
    pub(crate) fn log_refusal(&self, authority: &str, refusal: &Refusal) {
        let _ = self.log.caused_by_plugin(
            Level::Warn,
            &format!(
                "denied HTTP request to {}: {refusal}",
                shown_host(authority)
            ),
        );
    }
}

/// The `realm` URL's `host[:port]` in a Bearer challenge, if any.
fn bearer_realm_authority(header: &str) -> Option<String> {
    let lower = header.to_ascii_lowercase();
    let start = lower.find("bearer")?;
    let realm = lower[start..].find("realm=")? + start + "realm=".len();
    let value = header[realm..].trim_start_matches('"');
    let end = value.find(['"', ',']).unwrap_or(value.len());
    url_authority_with_port(&value[..end])
}

/// `host:port` of an absolute URL, the port made explicit from the scheme
/// when the URL has none: a delegation names one service, never every
/// port of its host.
fn url_authority_with_port(url: &str) -> Option<String> {
    let (scheme, rest) = url.split_once("://")?;
    let authority = &rest[..rest.find(['/', '?', '#']).unwrap_or(rest.len())];
    // Userinfo is not part of the host.
    let authority = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let (host, port) = split_authority(authority)?;
    let port = match port {
        Some(port) => port,
        None if scheme.eq_ignore_ascii_case("https") => 443,
        None if scheme.eq_ignore_ascii_case("http") => 80,
        None => return None,
    };
    Some(if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    })
}

/// Why a request was refused, for the host's log line.
#[derive(Debug, PartialEq, Eq)]
pub enum Refusal {
    /// No pattern in the grant covers the host.
    NotGranted,
    /// The host may be reached on public addresses only, and it resolves
    /// to a loopback, private or link-local address.
    PrivateAddress(IpAddr),
    /// The host may be reached on public addresses only and does not
    /// resolve.
    Unresolved,
    /// The URL has no usable host.
    NoHost,
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Refusal::NotGranted => f.write_str("not in this step's grant"),
            Refusal::PrivateAddress(ip) => write!(
                f,
                "resolves to the non-public address {ip}; grant the host by name to allow it"
            ),
            Refusal::Unresolved => f.write_str("the host does not resolve"),
            Refusal::NoHost => f.write_str("the URL has no host"),
        }
    }
}

/// Decide whether `host:port` may be reached under `allowed`,
/// `named_public` and `public_only` (see [`OutboundHttp`]). Hosts reachable
/// on public addresses only are resolved here, and every address must be
/// public; the caller connects to those addresses, never to the name.
async fn check(grant: &Grant, host: &str, port: u16) -> Result<Standing, Refusal> {
    let matched = |list: &[HostPattern]| {
        list.iter()
            .filter_map(|p| p.matches(host, port))
            .min_by_key(|m| *m != HostMatch::ByName)
    };
    let delegates = match matched(&grant.allowed) {
        Some(HostMatch::ByName) => return Ok(Standing::Named),
        Some(HostMatch::ByWildcard) => false,
        None => match matched(&grant.named_public) {
            Some(_) => true,
            None if matched(&grant.public_only).is_some() => false,
            None => return Err(Refusal::NotGranted),
        },
    };
    let addresses: Vec<SocketAddr> = tokio::net::lookup_host((host, port))
        .await
        .map_err(|_| Refusal::Unresolved)?
        .collect();
    if addresses.is_empty() {
        return Err(Refusal::Unresolved);
    }
    if let Some(private) = addresses.iter().find(|a| !is_public(a.ip())) {
        return Err(Refusal::PrivateAddress(private.ip()));
    }
    Ok(Standing::Public {
        addresses,
        delegates,
    })
}

/// Whether `ip` is a public unicast address (not loopback, private,
/// link-local, shared, unspecified or multicast).
pub fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let [a, b, c, _] = v4.octets();
            !(v4.is_loopback()
                || v4.is_private()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_broadcast()
                || v4.is_multicast()
                || a == 0
                || a >= 240
                || (a == 100 && (64..128).contains(&b))
                || (a == 198 && (18..20).contains(&b))
                || (a == 192 && b == 0 && c == 0))
        }
        IpAddr::V6(v6) => {
            let s = v6.segments();
            let v4 = |hi: u16, lo: u16| {
                IpAddr::V4(std::net::Ipv4Addr::new(
                    (hi >> 8) as u8,
                    hi as u8,
                    (lo >> 8) as u8,
                    lo as u8,
                ))
            };
            // Addresses that carry an IPv4 address are judged by it:
            // mapped, compatible, NAT64 and 6to4.
            if let Some(mapped) = v6.to_ipv4_mapped() {
                return is_public(IpAddr::V4(mapped));
            }
            if s[..6] == [0; 6] && !v6.is_loopback() && !v6.is_unspecified() {
                return is_public(v4(s[6], s[7]));
            }
            if s[..6] == [0x64, 0xff9b, 0, 0, 0, 0] {
                return is_public(v4(s[6], s[7]));
            }
            if s[0] == 0x2002 {
                return is_public(v4(s[1], s[2]));
            }
            !(v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || (s[0] & 0xfe00) == 0xfc00
                || (s[0] & 0xffc0) == 0xfe80
                || (s[0] & 0xffc0) == 0xfec0)
        }
    }
}

/// Body chunks buffered between the guest and the connection: enough that
/// a plugin streaming a layer is never waiting on one chunk's round trip.
const BODY_BUFFER_CHUNKS: usize = 16;

impl WasiHttpHooks for OutboundHttp {
    fn p2_outgoing_body_buffer_chunks(&mut self) -> usize {
        BODY_BUFFER_CHUNKS
    }

    fn send_request(
        &mut self,
        request: http::Request<WasiBody>,
        options: Option<RequestOptions>,
        _response_done: Box<dyn Future<Output = wasmtime_wasi_http::Result<()>> + Send>,
    ) -> ResponseFuture {
        let policy = self.clone();
        Box::new(async move {
            let uri = request.uri();
            let default_port = if uri.scheme() == Some(&Scheme::HTTPS) {
                443
            } else {
                80
            };
            let authority = uri
                .authority()
                .map(|a| a.as_str().to_owned())
                .unwrap_or_default();
            let (request_host, verdict) = match split_authority(&authority) {
                Some((host, port)) => {
                    let verdict = policy.decide(&host, port.unwrap_or(default_port)).await;
                    (host, verdict)
                }
                None => (String::new(), Err(Refusal::NoHost)),
            };
            let standing = match verdict {
                Ok(standing) => standing,
                Err(refusal) => {
                    policy.log_refusal(&authority, &refusal);
                    return Err(wasmtime_wasi_http::Error::HttpRequestDenied);
                }
            };
            let (response, io) = match &standing {
                Standing::Named => {
                    let (response, io) =
                        wasmtime_wasi_http::default_send_request(request, options).await?;
                    (
                        response.map(BodyExt::boxed_unsync),
                        Box::new(io) as Box<dyn Future<Output = _> + Send>,
                    )
                }
                Standing::Public { addresses, .. } => {
                    super::connect::send_to_checked(request, addresses, options).await?
                }
            };
            let delegates = match standing {
                Standing::Named => true,
                Standing::Public { delegates, .. } => delegates,
            };
            if delegates {
                let found = delegations(response.status(), response.headers());
                let mut grant = policy.grant.lock().unwrap_or_else(|e| e.into_inner());
                for delegation in found {
                    let (Delegation::TokenRealm(target) | Delegation::Redirect(target)) =
                        &delegation;
                    let Ok(pattern) = target.parse::<HostPattern>() else {
                        continue;
                    };
                    // Only a realm on the same host as one granted by name
                    // keeps that standing (a local registry's local token
                    // service), and only for the realm's own port.
                    let same_service = matches!(standing, Standing::Named)
                        && split_authority(target).is_some_and(|(h, _)| h == request_host);
                    let grant = &mut *grant;
                    let known =
                        grant.allowed.len() + grant.named_public.len() + grant.public_only.len();
                    let list = match delegation {
                        Delegation::TokenRealm(_) if same_service => &mut grant.allowed,
                        _ => &mut grant.public_only,
                    };
                    if list.contains(&pattern) {
                        continue;
                    }
                    if known >= MAX_DELEGATED {
                        let _ = policy.log.caused_by_plugin(
                            Level::Warn,
                            &format!(
                                "{} delegates to too many hosts; not allowing {}",
                                shown_host(&authority),
                                shown_host(target)
                            ),
                        );
                        continue;
                    }
                    let _ = policy.log.caused_by_plugin(
                        Level::Debug,
                        &format!(
                            "{} delegates to {}; allowing it",
                            shown_host(&authority),
                            shown_host(target)
                        ),
                    );
                    list.push(pattern);
                }
            }
            Ok((response, io))
        })
    }
}

/// `authority` cut to [`MAX_SHOWN_HOST`] bytes for a log line.
pub(super) fn shown_host(authority: &str) -> String {
    if authority.len() <= MAX_SHOWN_HOST {
        return authority.to_owned();
    }
    let mut cut = MAX_SHOWN_HOST;
    while !authority.is_char_boundary(cut) {
        cut -= 1;
    }
    format!("{}… ({} bytes)", &authority[..cut], authority.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn patterns(list: &[&str]) -> Vec<HostPattern> {
        list.iter().map(|p| p.parse().unwrap()).collect()
    }

    fn grant(allowed: &[&str], named_public: &[&str], public_only: &[&str]) -> Grant {
        Grant {
            allowed: patterns(allowed),
            named_public: patterns(named_public),
            public_only: patterns(public_only),
        }
    }

    #[tokio::test]
    async fn loopback_needs_a_grant_by_name() {
        let by_name = grant(&["127.0.0.1:5000", "localhost"], &[], &[]);
        assert_eq!(
            check(&by_name, "127.0.0.1", 5000).await,
            Ok(Standing::Named)
        );
        assert_eq!(check(&by_name, "localhost", 80).await, Ok(Standing::Named));
        assert_eq!(
            check(&by_name, "127.0.0.1", 5001).await,
            Err(Refusal::NotGranted)
        );
        // A redirect to a loopback address is not followed.
        assert!(matches!(
            check(&grant(&[], &[], &["127.0.0.1:9000"]), "127.0.0.1", 9000).await,
            Err(Refusal::PrivateAddress(_))
        ));
        // A registry an untrusted Dockerfile names on loopback is refused.
        assert!(matches!(
            check(&grant(&[], &["127.0.0.1:8099"], &[]), "127.0.0.1", 8099).await,
            Err(Refusal::PrivateAddress(_))
        ));
        // ... unless the user also granted it by name.
        assert_eq!(
            check(
                &grant(&["127.0.0.1:8099"], &["127.0.0.1:8099"], &[]),
                "127.0.0.1",
                8099
            )
            .await,
            Ok(Standing::Named)
        );
        // `*.localhost` resolves to loopback: a wildcard may not reach it.
        assert!(matches!(
            check(&grant(&["*.localhost"], &[], &[]), "registry.localhost", 80).await,
            Err(Refusal::PrivateAddress(_)) | Err(Refusal::Unresolved)
        ));
        assert_eq!(
            check(&grant(&[], &[], &[]), "example.com", 443).await,
            Err(Refusal::NotGranted)
        );
    }

    #[test]
    fn long_hosts_are_cut_for_the_log() {
        let long = "a".repeat(60_000);
        assert!(shown_host(&long).len() < 300);
        assert_eq!(shown_host("registry:5000"), "registry:5000");
    }

    #[test]
    fn responses_delegate_realms_and_redirects() {
        let mut headers = http::HeaderMap::new();
        headers.insert(
            http::header::WWW_AUTHENTICATE,
            r#"Bearer realm="https://auth.example.com/token",service="r""#
                .parse()
                .unwrap(),
        );
        headers.insert(
            http::header::LOCATION,
            "https://blobs.example.net/x?sig=1".parse().unwrap(),
        );
        assert_eq!(
            delegations(http::StatusCode::UNAUTHORIZED, &headers),
            [Delegation::TokenRealm("auth.example.com:443".into())]
        );
        assert_eq!(
            delegations(http::StatusCode::TEMPORARY_REDIRECT, &headers),
            [Delegation::Redirect("blobs.example.net:443".into())]
        );
        assert!(delegations(http::StatusCode::OK, &headers).is_empty());
    }

    #[test]
    fn finds_the_bearer_realm() {
        assert_eq!(
            bearer_realm_authority(r#"Bearer realm="http://127.0.0.1:5001/token",service="r""#),
            Some("127.0.0.1:5001".to_owned())
        );
        assert_eq!(bearer_realm_authority(r#"Basic realm="x""#), None);
        // A realm without a port names the scheme's port, not every port.
        assert_eq!(
            bearer_realm_authority(r#"Bearer realm="http://127.0.0.1/token""#),
            Some("127.0.0.1:80".to_owned())
        );
        assert_eq!(
            bearer_realm_authority(r#"Bearer realm="https://u:p@Auth.Example.com/t""#),
            Some("auth.example.com:443".to_owned())
        );
        assert_eq!(bearer_realm_authority(r#"Bearer realm="ftp://x/""#), None);
    }

    #[test]
    fn classifies_addresses() {
        for private in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.1.1",
            "100.64.0.1",
            "0.0.0.0",
            "::1",
            "fd00::1",
            "fe80::1",
            "::ffff:10.0.0.1",
        ] {
            assert!(!is_public(private.parse().unwrap()), "{private}");
        }
        for private in [
            "::10.0.0.1",
            "64:ff9b::a00:1",
            "2002:a00:1::1",
            "fec0::1",
            "198.18.0.1",
            "240.0.0.1",
        ] {
            assert!(!is_public(private.parse().unwrap()), "{private}");
        }
        for public in ["93.184.216.34", "2606:2800:220:1::1", "64:ff9b::5db8:d822"] {
            assert!(is_public(public.parse().unwrap()), "{public}");
        }
    }
}
