//! A step's grant as plain data: what it may read, write, reach and know.
//!
//! These types deserialize from a pipeline's `allow:` block and are built
//! from `kiln step` flags, so both paths are validated the same way.

use std::fmt;
use std::net::IpAddr;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Default wall-clock limit of a step, so a stuck plugin cannot hold a CI
/// runner forever.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30 * 60);

/// Default memory cap of a step: enough for compressing large layers.
pub const DEFAULT_MEMORY: u64 = 2 << 30;

/// The largest memory cap a grant may ask for; the engine reserves address
/// space for every instance up to this size.
pub const MAX_MEMORY: u64 = 4 << 30;

/// What one step is allowed beyond the default: workspace read-only, one
/// writable output directory, no environment, no network, no sockets.
///
/// Directories (`D`) and hosts (`H`) are paths and [`HostPattern`]s once
/// in force; a pipeline file keeps them as written (with positions and
/// variables) until it runs, with the same fields.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(
    deny_unknown_fields,
    bound(
        deserialize = "D: Deserialize<'de>, H: Deserialize<'de>",
        serialize = "D: Serialize, H: Serialize"
    )
)]
pub struct StepGrant<D = PathBuf, H = HostPattern> {
    /// Extra directories the step may read, mounted at the same path inside
    /// the guest.
    #[serde(default = "Vec::new")]
    pub read: Vec<D>,
    /// Extra directories the step may write, mounted at the same path.
    #[serde(default = "Vec::new")]
    pub write: Vec<D>,
    /// Hosts the step may send HTTP requests to.
    #[serde(default = "Vec::new")]
    pub net: Vec<H>,
    /// Hosts that untrusted input named for the step (the registries of a
    /// Dockerfile's `FROM` lines): reachable on public addresses only,
    /// unless `net` grants them too. Never read from a pipeline file: the
    /// host computes them.
    #[serde(skip)]
    pub untrusted_net: Vec<H>,
    /// Environment variables passed through from the host.
    #[serde(default)]
    pub env: Vec<String>,
    /// Secrets the step may read through the `secrets` interface.
    #[serde(default)]
    pub secrets: Vec<String>,
    /// Wall-clock limit (default [`DEFAULT_TIMEOUT`]).
    #[serde(default)]
    pub timeout: Option<Timeout>,
    /// Linear-memory cap (default [`DEFAULT_MEMORY`]).
    #[serde(default)]
    pub memory: Option<MemorySize>,
    /// Whether the step may run native commands through the host's
    /// executor (Dockerfile `RUN`): the one way a plugin gets native code
    /// run, so it is off unless granted.
    #[serde(default)]
    pub run: bool,
    /// Whether such commands may use the host's network unfiltered
    /// (`RUN --network=host`); otherwise they reach only the hosts in
    /// `net`, through kiln's proxy.
    #[serde(default)]
    pub run_host_network: bool,
}

impl<D, H> Default for StepGrant<D, H> {
    fn default() -> Self {
        StepGrant {
            read: Vec::new(),
            write: Vec::new(),
            net: Vec::new(),
            untrusted_net: Vec::new(),
            env: Vec::new(),
            secrets: Vec::new(),
            timeout: None,
            memory: None,
            run: false,
            run_host_network: false,
        }
    }
}

impl<D, H> StepGrant<D, H> {
    /// The timeout in force.
    pub fn timeout(&self) -> Duration {
        self.timeout.map_or(DEFAULT_TIMEOUT, |t| t.0)
    }

    /// The memory cap in force, in bytes.
    pub fn memory(&self) -> u64 {
        self.memory.map_or(DEFAULT_MEMORY, |m| m.0)
    }
}

/// An invalid grant value; the message says what is expected.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum GrantError {
    /// A host pattern that is not `host[:port]` or `*.suffix[:port]`.
    #[error(
        "invalid host `{0}`: expected host[:port] or *.suffix[:port], e.g. registry.example.com:5000"
    )]
    Host(String),
    /// A duration humantime cannot read.
    #[error("invalid timeout `{0}`: expected a duration such as 90s, 10m or 1h")]
    Timeout(String),
    /// A size that is not a number with an optional unit.
    #[error("invalid memory size `{0}`: expected a size such as 512MiB or 2G (at most 4GiB)")]
    Memory(String),
}

/// A wall-clock limit, written like `90s`, `10m` or `1h 30m`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(try_from = "String", into = "String")]
pub struct Timeout(pub Duration);

impl FromStr for Timeout {
    type Err = GrantError;
    fn from_str(text: &str) -> Result<Self, GrantError> {
        match humantime::parse_duration(text.trim()) {
            Ok(d) if !d.is_zero() => Ok(Timeout(d)),
            _ => Err(GrantError::Timeout(text.to_owned())),
        }
    }
}

impl TryFrom<String> for Timeout {
    type Error = GrantError;
    fn try_from(text: String) -> Result<Self, GrantError> {
        text.parse()
    }
}

impl From<Timeout> for String {
    fn from(t: Timeout) -> String {
        humantime::format_duration(t.0).to_string()
    }
}

/// A memory size in bytes, written like `512MiB`, `2G` or `1048576`.
///
/// `K`, `M` and `G` are binary multiples, with or without `i` and `B`, as in
/// `docker run --memory`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(try_from = "String", into = "String")]
pub struct MemorySize(pub u64);

impl FromStr for MemorySize {
    type Err = GrantError;
    fn from_str(text: &str) -> Result<Self, GrantError> {
        let bad = || GrantError::Memory(text.to_owned());
        let trimmed = text.trim();
        let split = trimmed
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(trimmed.len());
        let (digits, unit) = trimmed.split_at(split);
        let number: u64 = digits.parse().map_err(|_| bad())?;
        let shift = match unit.trim().to_ascii_lowercase().as_str() {
            "" | "b" => 0,
            "k" | "kb" | "ki" | "kib" => 10,
            "m" | "mb" | "mi" | "mib" => 20,
            "g" | "gb" | "gi" | "gib" => 30,
            _ => return Err(bad()),
        };
        let bytes = number.checked_mul(1 << shift).ok_or_else(bad)?;
        if bytes == 0 || bytes > MAX_MEMORY {
            return Err(bad());
        }
        Ok(MemorySize(bytes))
    }
}

impl TryFrom<String> for MemorySize {
    type Error = GrantError;
    fn try_from(text: String) -> Result<Self, GrantError> {
        text.parse()
    }
}

impl From<MemorySize> for String {
    fn from(m: MemorySize) -> String {
        m.to_string()
    }
}

impl fmt::Display for MemorySize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let bytes = self.0;
        if bytes.is_multiple_of(1 << 30) {
            write!(f, "{}GiB", bytes >> 30)
        } else if bytes.is_multiple_of(1 << 20) {
            write!(f, "{}MiB", bytes >> 20)
        } else if bytes.is_multiple_of(1 << 10) {
            write!(f, "{}KiB", bytes >> 10)
        } else {
            write!(f, "{bytes}B")
        }
    }
}

/// A host a step may reach: `name[:port]` exactly, or `*.suffix[:port]`
/// for every subdomain. Without a port, any port matches.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(try_from = "String", into = "String")]
pub struct HostPattern {
    host: HostName,
    port: Option<u16>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum HostName {
    /// The host exactly (lowercase; IPv6 without brackets).
    Exact(String),
    /// Any host ending in this suffix, which starts with a dot.
    Subdomains(String),
}

/// How a request's host matched the grant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HostMatch {
    /// The grant names this host: the operator chose it, even if it is a
    /// loopback or private address.
    ByName,
    /// A `*.suffix` pattern covers it: only public addresses are allowed.
    ByWildcard,
}

impl HostPattern {
    /// How `host:port` matches this pattern, if it does. `host` must be
    /// lowercase, IPv6 without brackets.
    pub fn matches(&self, host: &str, port: u16) -> Option<HostMatch> {
        if self.port.is_some_and(|p| p != port) {
            return None;
        }
        match &self.host {
            HostName::Exact(name) => (name == host).then_some(HostMatch::ByName),
            // Wildcards never cover address literals: `*.0.1` must not grant
            // 127.0.0.1.
            HostName::Subdomains(suffix) => (host.ends_with(suffix.as_str())
                && host.len() > suffix.len()
                && host.parse::<IpAddr>().is_err())
            .then_some(HostMatch::ByWildcard),
        }
    }
}

impl HostPattern {
    /// Whether every host and port `other` matches is matched by this
    /// pattern too (an operator's cap covering a pipeline's grant).
    pub fn covers(&self, other: &HostPattern) -> bool {
        let port_covered = match (self.port, other.port) {
            (None, _) => true,
            (Some(mine), Some(theirs)) => mine == theirs,
            (Some(_), None) => false,
        };
        port_covered
            && match (&self.host, &other.host) {
                (HostName::Exact(mine), HostName::Exact(theirs)) => mine == theirs,
                (HostName::Subdomains(suffix), HostName::Exact(host)) => {
                    host.ends_with(suffix.as_str()) && host.parse::<IpAddr>().is_err()
                }
                (HostName::Subdomains(mine), HostName::Subdomains(theirs)) => {
                    theirs.ends_with(mine.as_str())
                }
                (HostName::Exact(_), HostName::Subdomains(_)) => false,
            }
    }

    /// `host[:port]` when the pattern names one host exactly.
    pub fn exact_authority(&self) -> Option<String> {
        matches!(self.host, HostName::Exact(_)).then(|| self.to_string())
    }
}

/// Split `authority` (`host`, `host:port`, `[v6]:port`) into a lowercase
/// host without brackets and an optional port.
pub fn split_authority(authority: &str) -> Option<(String, Option<u16>)> {
    let (host, port) = if let Some(rest) = authority.strip_prefix('[') {
        let (v6, after) = rest.split_once(']')?;
        let port = match after {
            "" => None,
            p => Some(p.strip_prefix(':')?.parse().ok()?),
        };
        (v6.to_owned(), port)
    } else {
        match authority.rsplit_once(':') {
            Some((h, p)) if !h.contains(':') => (h.to_owned(), Some(p.parse().ok()?)),
            Some(_) => return None,
            None => (authority.to_owned(), None),
        }
    };
    let host = host.to_ascii_lowercase();
    let valid = !host.is_empty()
        && host
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_' | ':'));
    valid.then_some((host, port))
}

impl FromStr for HostPattern {
    type Err = GrantError;
    fn from_str(text: &str) -> Result<Self, GrantError> {
        let bad = || GrantError::Host(text.to_owned());
        let (wildcard, rest) = match text.trim().strip_prefix("*.") {
            Some(rest) => (true, rest),
            None => (false, text.trim()),
        };
        let (host, port) = split_authority(rest).ok_or_else(bad)?;
        if host.contains('*') || port == Some(0) {
            return Err(bad());
        }
        let host = if wildcard {
            if host.parse::<IpAddr>().is_ok() {
                return Err(bad());
            }
            HostName::Subdomains(format!(".{host}"))
        } else {
            HostName::Exact(host)
        };
        Ok(HostPattern { host, port })
    }
}

impl TryFrom<String> for HostPattern {
    type Error = GrantError;
    fn try_from(text: String) -> Result<Self, GrantError> {
        text.parse()
    }
}

impl From<HostPattern> for String {
    fn from(p: HostPattern) -> String {
        p.to_string()
    }
}

impl fmt::Display for HostPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.host {
            HostName::Exact(h) if h.contains(':') => write!(f, "[{h}]")?,
            HostName::Exact(h) => write!(f, "{h}")?,
            HostName::Subdomains(s) => write!(f, "*{s}")?,
        }
        if let Some(port) = self.port {
            write!(f, ":{port}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pattern(text: &str) -> HostPattern {
        text.parse().unwrap()
    }

    #[test]
    fn exact_and_wildcard_hosts() {
        assert_eq!(
            pattern("Registry.Example.com").matches("registry.example.com", 443),
            Some(HostMatch::ByName)
        );
        assert_eq!(
            pattern("registry.example.com:5000").matches("registry.example.com", 443),
            None
        );
        assert_eq!(
            pattern("*.example.com").matches("a.b.example.com", 443),
            Some(HostMatch::ByWildcard)
        );
        assert_eq!(pattern("*.example.com").matches("example.com", 443), None);
        assert_eq!(
            pattern("*.example.com").matches("evilexample.com", 443),
            None
        );
        assert_eq!(
            pattern("127.0.0.1:5000").matches("127.0.0.1", 5000),
            Some(HostMatch::ByName)
        );
        assert_eq!(
            pattern("[::1]:5000").matches("::1", 5000),
            Some(HostMatch::ByName)
        );
        assert_eq!(pattern("[::1]:5000").to_string(), "[::1]:5000");
    }

    #[test]
    fn rejects_malformed_hosts() {
        for bad in [
            "",
            "*.",
            "a*b.com",
            "host:port",
            "host:0",
            "*.127.0.0.1",
            "http://x",
            "a/b",
        ] {
            assert!(
                bad.parse::<HostPattern>().is_err(),
                "{bad} should be refused"
            );
        }
    }

    #[test]
    fn sizes_and_durations() {
        assert_eq!("64MiB".parse::<MemorySize>().unwrap().0, 64 << 20);
        assert_eq!("2g".parse::<MemorySize>().unwrap().0, 2 << 30);
        assert_eq!("4096".parse::<MemorySize>().unwrap().0, 4096);
        assert!("5GiB".parse::<MemorySize>().is_err());
        assert!("lots".parse::<MemorySize>().is_err());
        assert_eq!(
            "1m 30s".parse::<Timeout>().unwrap().0,
            Duration::from_secs(90)
        );
        assert!("0s".parse::<Timeout>().is_err());
    }

    #[test]
    fn grant_rejects_unknown_fields() {
        let grant: StepGrant =
            serde_json::from_str(r#"{"net":["*.example.com"],"timeout":"10s","memory":"64MiB"}"#)
                .unwrap();
        assert_eq!(grant.timeout(), Duration::from_secs(10));
        assert_eq!(grant.memory(), 64 << 20);
        assert!(serde_json::from_str::<StepGrant>(r#"{"network":[]}"#).is_err());
    }
}
