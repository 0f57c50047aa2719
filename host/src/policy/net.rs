//! Outbound HTTP: the `wasi:http` hook that lets a request leave only for a
//! host in the step's grant.
//!
//! Sockets are never granted to plugins; `wasi:http` is their only way out,
//! and every request passes [`OutboundHttp::send_request`]. A refused
//! request is answered with `HttpRequestDenied` before any connection is
//! made.

use std::net::IpAddr;
use std::sync::{Arc, Mutex};

use http::uri::Scheme;
use http_body_util::BodyExt;
use wasmtime_wasi_http::{RequestOptions, WasiBody, WasiHttpHooks};

use super::grant::{HostMatch, HostPattern, split_authority};
use crate::ui::{Level, StepLog};

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
/// A granted host may delegate, as registries do: when it answers 401
/// with a Bearer `realm`, the realm's host becomes reachable for the rest
/// of the step; when it redirects a request (blobs served from object
/// storage), the target becomes reachable if it is a public address.
/// Nothing else widens the grant.
pub struct OutboundHttp {
    grant: Arc<Mutex<Grant>>,
    log: Arc<StepLog>,
}

/// Hosts reachable now: the step's grant plus what granted hosts delegated.
#[derive(Debug, Default, Clone)]
struct Grant {
    /// Granted hosts and token realms.
    allowed: Vec<HostPattern>,
    /// Redirect targets, reachable on public addresses only.
    public_only: Vec<HostPattern>,
}

/// How a response widens what the step may reach.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Delegation {
    /// A Bearer challenge's token realm.
    TokenRealm(String),
    /// A redirect target.
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
            .and_then(|l| l.split_once("://"))
            .map(|(_, rest)| rest[..rest.find(['/', '?']).unwrap_or(rest.len())].to_owned())
            .filter(|a| !a.is_empty())
            .map(Delegation::Redirect)
            .into_iter()
            .collect();
    }
    Vec::new()
}

impl OutboundHttp {
    /// A policy allowing exactly `allowed`; denials are reported on `log`.
    pub fn new(allowed: Vec<HostPattern>, log: Arc<StepLog>) -> Self {
        OutboundHttp {
            grant: Arc::new(Mutex::new(Grant {
                allowed,
                public_only: Vec::new(),
            })),
            log,
        }
    }
}

/// The `realm` URL's `host[:port]` in a Bearer challenge, if any.
fn bearer_realm_authority(header: &str) -> Option<String> {
    let lower = header.to_ascii_lowercase();
    let start = lower.find("bearer")?;
    let realm = lower[start..].find("realm=")? + start + "realm=".len();
    let value = header[realm..].trim_start_matches('"');
    let end = value.find(['"', ',']).unwrap_or(value.len());
    let url = &value[..end];
    let rest = url.split_once("://")?.1;
    let authority = &rest[..rest.find(['/', '?']).unwrap_or(rest.len())];
    (!authority.is_empty()).then(|| authority.to_owned())
}

/// Why a request was refused, for the host's log line.
#[derive(Debug, PartialEq, Eq)]
pub enum Refusal {
    /// No pattern in the grant covers the host.
    NotGranted,
    /// Only a wildcard covers the host and it resolves to a loopback,
    /// private or link-local address.
    PrivateAddress(IpAddr),
    /// The URL has no usable host.
    NoHost,
}

/// Decide whether `host:port` may be reached under `allowed` (or
/// `public_only`, redirect targets), resolving wildcard and redirect
/// matches to make sure they stay on public addresses.
pub async fn check(
    allowed: &[HostPattern],
    public_only: &[HostPattern],
    host: &str,
    port: u16,
) -> Result<HostMatch, Refusal> {
    let redirected = public_only
        .iter()
        .any(|p| p.matches(host, port).is_some())
        .then_some(HostMatch::ByWildcard);
    let best = allowed
        .iter()
        .filter_map(|p| p.matches(host, port))
        .chain(redirected)
        .min_by_key(|m| *m != HostMatch::ByName);
    match best {
        None => Err(Refusal::NotGranted),
        Some(HostMatch::ByName) => Ok(HostMatch::ByName),
        Some(HostMatch::ByWildcard) => {
            let addresses = tokio::net::lookup_host((host, port))
                .await
                .map_err(|_| Refusal::NotGranted)?;
            for address in addresses {
                if !is_public(address.ip()) {
                    return Err(Refusal::PrivateAddress(address.ip()));
                }
            }
            Ok(HostMatch::ByWildcard)
        }
    }
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
        let grant = self.grant.clone();
        let log = self.log.clone();
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
            let now = grant.lock().unwrap_or_else(|e| e.into_inner()).clone();
            let (request_host, verdict) = match split_authority(&authority) {
                Some((host, port)) => {
                    let verdict = check(
                        &now.allowed,
                        &now.public_only,
                        &host,
                        port.unwrap_or(default_port),
                    )
                    .await;
                    (host, verdict)
                }
                None => (String::new(), Err(Refusal::NoHost)),
            };
            let matched = match verdict {
                Ok(matched) => matched,
                Err(refusal) => {
                    let why = match refusal {
                        Refusal::NotGranted => "not in this step's grant".to_owned(),
                        Refusal::PrivateAddress(ip) => format!(
                            "resolves to the non-public address {ip}; grant the host by name to allow it"
                        ),
                        Refusal::NoHost => "the URL has no host".to_owned(),
                    };
                    log.host(
                        Level::Warn,
                        &format!("denied HTTP request to {authority}: {why}"),
                    );
                    return Err(wasmtime_wasi_http::Error::HttpRequestDenied);
                }
            };
            let (response, io) = wasmtime_wasi_http::default_send_request(request, options).await?;
            // Only a host the step was granted by name may delegate, and
            // only a token realm on that same host gets its standing; every
            // other delegated host is reachable on public addresses only.
            if matched == HostMatch::ByName {
                for delegation in delegations(response.status(), response.headers()) {
                    let (Delegation::TokenRealm(target) | Delegation::Redirect(target)) =
                        &delegation;
                    let Ok(pattern) = target.parse::<HostPattern>() else {
                        continue;
                    };
                    let same_host = split_authority(target).is_some_and(|(h, _)| h == request_host);
                    let mut grant = grant.lock().unwrap_or_else(|e| e.into_inner());
                    let list = match delegation {
                        Delegation::TokenRealm(_) if same_host => &mut grant.allowed,
                        _ => &mut grant.public_only,
                    };
                    if !list.contains(&pattern) {
                        log.host(
                            Level::Debug,
                            &format!("{authority} delegates to {target}; allowing it"),
                        );
                        list.push(pattern);
                    }
                }
            }
            Ok((
                response.map(BodyExt::boxed_unsync),
                Box::new(io) as Box<dyn Future<Output = _> + Send>,
            ))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn patterns(list: &[&str]) -> Vec<HostPattern> {
        list.iter().map(|p| p.parse().unwrap()).collect()
    }

    #[tokio::test]
    async fn loopback_needs_a_grant_by_name() {
        let by_name = patterns(&["127.0.0.1:5000", "localhost"]);
        assert_eq!(
            check(&by_name, &[], "127.0.0.1", 5000).await,
            Ok(HostMatch::ByName)
        );
        assert_eq!(
            check(&by_name, &[], "localhost", 80).await,
            Ok(HostMatch::ByName)
        );
        assert_eq!(
            check(&by_name, &[], "127.0.0.1", 5001).await,
            Err(Refusal::NotGranted)
        );
        // A redirect to a loopback address is not followed.
        assert!(matches!(
            check(&[], &patterns(&["127.0.0.1:9000"]), "127.0.0.1", 9000).await,
            Err(Refusal::PrivateAddress(_))
        ));
        // `*.localhost` resolves to loopback: a wildcard may not reach it.
        let wildcard = patterns(&["*.localhost"]);
        assert!(matches!(
            check(&wildcard, &[], "registry.localhost", 80).await,
            Err(Refusal::PrivateAddress(_)) | Err(Refusal::NotGranted)
        ));
        assert_eq!(
            check(&[], &[], "example.com", 443).await,
            Err(Refusal::NotGranted)
        );
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
            [Delegation::TokenRealm("auth.example.com".into())]
        );
        assert_eq!(
            delegations(http::StatusCode::TEMPORARY_REDIRECT, &headers),
            [Delegation::Redirect("blobs.example.net".into())]
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
