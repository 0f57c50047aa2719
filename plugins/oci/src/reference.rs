//! Image references: `[registry/]repository[:tag][@digest]`, with Docker's
//! defaults and the distribution spec's name and tag grammar.
//!
//! Plain std: the host parses the references a build names (to grant
//! their registries and mount their blobs) exactly as the plugins do.

use std::fmt;

/// Docker Hub's name in references, and the host its API lives on.
const DOCKER_HUB: &str = "docker.io";
const DOCKER_HUB_API: &str = "registry-1.docker.io";

/// A parsed image reference.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reference {
    /// `host[:port]` of the registry as written (Docker Hub: `docker.io`).
    pub registry: String,
    /// The repository path, e.g. `group/app` (`library/busybox` for
    /// Docker Hub's `busybox`): what a cross-repository mount names.
    pub repository: String,
    /// The tag, if any.
    pub tag: Option<String>,
    /// The digest (`sha256:…`), if any.
    pub digest: Option<String>,
}

/// Why a reference is not valid; the message says what is expected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ReferenceError(pub String);

impl Reference {
    /// Parse `text`.
    pub fn parse(text: &str) -> Result<Reference, ReferenceError> {
        let bad = |why: &str| ReferenceError(format!("invalid image reference `{text}`: {why}"));
        let (rest, digest) = match text.split_once('@') {
            Some((rest, digest)) => {
                validate_digest(digest).map_err(|w| bad(&w))?;
                (rest, Some(digest.to_owned()))
            }
            None => (text, None),
        };
        let (name, tag) = match rest.rfind(':') {
            Some(colon) if !rest[colon..].contains('/') => {
                (&rest[..colon], Some(rest[colon + 1..].to_owned()))
            }
            _ => (rest, None),
        };
        let (registry, repository) = match name.split_once('/') {
            Some((first, rest)) if first.contains(['.', ':']) || first == "localhost" => {
                (first.to_owned(), rest.to_owned())
            }
            _ => (DOCKER_HUB.to_owned(), name.to_owned()),
        };
        let repository = if registry == DOCKER_HUB && !repository.contains('/') {
            format!("library/{repository}")
        } else {
            repository
        };
        validate_registry(&registry).map_err(|w| bad(&w))?;
        validate_repository(&repository).map_err(|w| bad(&w))?;
        if let Some(tag) = &tag {
            validate_tag(tag).map_err(|w| bad(&w))?;
        }
        if registry.len() + 1 + repository.len() > 255 {
            return Err(bad(
                "registry and repository together exceed 255 characters",
            ));
        }
        Ok(Reference {
            registry,
            repository,
            tag,
            digest,
        })
    }

    /// The host the registry API answers on (`registry-1.docker.io` for
    /// Docker Hub), by Docker's rules: the first path component when it
    /// has a `.` or `:` or is `localhost`, else Docker Hub. It is the host
    /// a step must be granted to reach the image, and the one credentials
    /// are offered for ([`crate::credential::secret_name`]).
    ///
    /// ```
    /// use kiln_oci::Reference;
    /// assert_eq!(Reference::parse("busybox:3").unwrap().api_host(), "registry-1.docker.io");
    /// assert_eq!(Reference::parse("127.0.0.1:5000/group/base:1").unwrap().api_host(), "127.0.0.1:5000");
    /// ```
    pub fn api_host(&self) -> &str {
        if self.registry == DOCKER_HUB {
            DOCKER_HUB_API
        } else {
            &self.registry
        }
    }

    /// What to ask for in `/manifests/<reference>`: the digest if given,
    /// else the tag, else `latest`.
    pub fn manifest_reference(&self) -> &str {
        self.digest
            .as_deref()
            .or(self.tag.as_deref())
            .unwrap_or("latest")
    }
}

impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.registry, self.repository)?;
        if let Some(tag) = &self.tag {
            write!(f, ":{tag}")?;
        }
        if let Some(digest) = &self.digest {
            write!(f, "@{digest}")?;
        }
        Ok(())
    }
}

/// Check a registry host as the distribution grammar defines it: dot-
/// separated labels of letters, digits and inner hyphens, or a bracketed
/// IPv6 address, with an optional numeric port.
pub fn validate_registry(host: &str) -> Result<(), String> {
    let bad = || {
        format!(
            "registry `{host}` is not a host name or address with an optional port (e.g. registry.example.com:5000)"
        )
    };
    let (name, port) = if let Some(rest) = host.strip_prefix('[') {
        let (address, after) = rest.split_once(']').ok_or_else(bad)?;
        if address.is_empty()
            || !address
                .chars()
                .all(|c| c.is_ascii_hexdigit() || c == ':' || c == '.')
        {
            return Err(bad());
        }
        (
            None,
            after
                .strip_prefix(':')
                .map(Some)
                .unwrap_or_else(|| (!after.is_empty()).then_some("")),
        )
    } else {
        match host.split_once(':') {
            Some((name, port)) => (Some(name), Some(port)),
            None => (Some(host), None),
        }
    };
    if let Some(port) = port
        && (port.is_empty() || port.len() > 5 || !port.chars().all(|c| c.is_ascii_digit()))
    {
        return Err(bad());
    }
    if let Some(name) = name {
        let label_ok = |label: &str| {
            !label.is_empty()
                && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        };
        if name.is_empty() || !name.split('.').all(label_ok) {
            return Err(bad());
        }
    }
    Ok(())
}

/// Repository names: `/`-separated components of `[a-z0-9]` runs joined by
/// `.`, `_`, `__` or runs of `-`.
pub fn validate_repository(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("the repository name is empty".into());
    }
    for component in name.split('/') {
        let bytes = component.as_bytes();
        let alnum = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit();
        let mut ok = !bytes.is_empty() && alnum(bytes[0]) && alnum(bytes[bytes.len() - 1]);
        let mut i = 0;
        while ok && i < bytes.len() {
            if alnum(bytes[i]) {
                i += 1;
                continue;
            }
            let start = i;
            while i < bytes.len() && !alnum(bytes[i]) {
                i += 1;
            }
            let sep = &component[start..i];
            ok = sep == "." || sep == "_" || sep == "__" || sep.bytes().all(|b| b == b'-');
        }
        if !ok {
            return Err(format!(
                "repository component `{component}` must be lowercase letters and digits, joined by `.`, `_`, `__` or `-`"
            ));
        }
    }
    Ok(())
}

/// Tags: up to 128 characters, `[A-Za-z0-9_]` then `[A-Za-z0-9._-]`.
pub fn validate_tag(tag: &str) -> Result<(), String> {
    let mut chars = tag.chars();
    let first_ok = chars
        .next()
        .is_some_and(|c| c.is_ascii_alphanumeric() || c == '_');
    if tag.len() <= 128
        && first_ok
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
    {
        Ok(())
    } else {
        Err(format!(
            "tag `{tag}` must be 1-128 characters of letters, digits, `_`, `.` and `-`, not starting with `.` or `-`"
        ))
    }
}

/// Digests: `algorithm:encoded`; sha256 is checked strictly.
pub fn validate_digest(digest: &str) -> Result<(), String> {
    match digest.split_once(':') {
        Some(("sha256", hex))
            if hex.len() == 64
                && hex
                    .bytes()
                    .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)) =>
        {
            Ok(())
        }
        Some((algorithm, encoded))
            if algorithm != "sha256" && !algorithm.is_empty() && !encoded.is_empty() =>
        {
            Ok(())
        }
        _ => Err(format!(
            "digest `{digest}` must be sha256: followed by 64 lowercase hex digits"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_docker_style_references() {
        let r = Reference::parse("127.0.0.1:5000/group/app:1.0").unwrap();
        assert_eq!(
            (r.registry.as_str(), r.repository.as_str(), r.tag.as_deref()),
            ("127.0.0.1:5000", "group/app", Some("1.0"))
        );
        let r = Reference::parse("busybox").unwrap();
        assert_eq!(
            (r.api_host(), r.repository.as_str(), r.manifest_reference()),
            ("registry-1.docker.io", "library/busybox", "latest")
        );
        let digest = format!("sha256:{}", "a".repeat(64));
        let r = Reference::parse(&format!("localhost:5000/app@{digest}")).unwrap();
        assert_eq!(r.manifest_reference(), digest);
        assert_eq!(r.to_string(), format!("localhost:5000/app@{digest}"));
        for bad in ["Upper/case", "app:-tag", "app@sha256:short", "a//b", "app:"] {
            assert!(Reference::parse(bad).is_err(), "{bad}");
        }
        assert!(validate_repository("a.b_c__d---e/f").is_ok());
        assert!(validate_repository("a..b").is_err());
        // The registry part follows the grammar too (found by fuzzing).
        for good in [
            "registry.example.com",
            "localhost:5000",
            "[::1]:5000",
            "[fd00::1]",
            "a-b.c",
        ] {
            assert!(validate_registry(good).is_ok(), "{good}");
            assert!(Reference::parse(&format!("{good}/app:1")).is_ok(), "{good}");
        }
        for bad in [
            "a..b",
            "-a.com",
            "a.com:",
            "a.com:x",
            "a.com:123456",
            "a_b.com",
            "[::1",
            "[]:5",
            "a.com:5:6",
            "[::1]x",
        ] {
            assert!(validate_registry(bad).is_err(), "{bad}");
            assert!(Reference::parse(&format!("{bad}/app:1")).is_err(), "{bad}");
        }
    }

    #[test]
    fn what_the_host_asks_of_a_reference() {
        let hub = Reference::parse("busybox:3").unwrap();
        assert_eq!(
            (
                hub.registry.as_str(),
                hub.api_host(),
                hub.repository.as_str()
            ),
            ("docker.io", "registry-1.docker.io", "library/busybox")
        );
        assert_eq!(hub.tag.as_deref(), Some("3"));
        let local = Reference::parse("127.0.0.1:5000/group/base:1").unwrap();
        assert_eq!(
            (local.api_host(), local.repository.as_str()),
            ("127.0.0.1:5000", "group/base")
        );
        let named = Reference::parse("docker.io/someone/tool").unwrap();
        assert_eq!(
            (named.api_host(), named.repository.as_str()),
            ("registry-1.docker.io", "someone/tool")
        );
        let digest = format!("sha256:{}", "0".repeat(64));
        let pinned = Reference::parse(&format!("localhost/app:1@{digest}")).unwrap();
        assert_eq!(
            (pinned.api_host(), pinned.repository.as_str()),
            ("localhost", "app")
        );
        assert_eq!(
            (pinned.tag.as_deref(), pinned.digest.as_deref()),
            (Some("1"), Some(digest.as_str()))
        );
        assert_eq!(pinned.manifest_reference(), digest);
        assert!(Reference::parse("app@sha256:xyz").is_err());
        assert!(validate_registry("registry.example.com:5000").is_ok());
        assert!(validate_registry("bad_host").is_err());
    }
}
