//! Platforms: the `os/arch[/variant]` an image is built for and an index
//! is narrowed to.
//!
//! Plain std, so the host and the Dockerfile crate (which derives
//! `TARGETOS`, `TARGETARCH`, ... from it) parse platforms the way the
//! image plugins do.

use std::fmt;

/// The platform of an image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Platform {
    /// `linux`.
    pub os: String,
    /// `amd64`, `arm64`, ...
    pub architecture: String,
    /// `v7`, `v8`, ... when the architecture has variants.
    pub variant: Option<String>,
}

/// A platform that is not `os/arch[/variant]`; the message says what was
/// given and what is expected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct PlatformError(pub String);

impl Platform {
    /// Parse `os/arch[/variant]`.
    ///
    /// ```
    /// let p = kiln_oci::Platform::parse("linux/arm/v7").unwrap();
    /// assert_eq!((p.os.as_str(), p.architecture.as_str()), ("linux", "arm"));
    /// assert_eq!(p.variant.as_deref(), Some("v7"));
    /// assert!(kiln_oci::Platform::parse("linux").is_err());
    /// ```
    pub fn parse(text: &str) -> Result<Platform, PlatformError> {
        if text.contains(',') {
            return Err(PlatformError(format!(
                "`{text}` names several platforms where one is expected"
            )));
        }
        let parts: Vec<&str> = text.split('/').collect();
        let word = |part: &str| {
            !part.is_empty()
                && part
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
        };
        match parts[..] {
            [os, architecture] | [os, architecture, _] if parts.iter().all(|p| word(p)) => {
                Ok(Platform {
                    os: os.to_owned(),
                    architecture: architecture.to_owned(),
                    variant: parts.get(2).map(|v| (*v).to_owned()),
                })
            }
            _ => Err(PlatformError(format!(
                "platform `{text}` is not OS/ARCH[/VARIANT] (for example linux/amd64)"
            ))),
        }
    }

    /// Parse buildx's list form, `linux/amd64,linux/arm64`: each platform
    /// once, in the order given.
    ///
    /// ```
    /// let list = kiln_oci::Platform::parse_list("linux/amd64, linux/arm64,linux/amd64").unwrap();
    /// assert_eq!(list.len(), 2);
    /// assert!(kiln_oci::Platform::parse_list("linux/amd64,").is_err());
    /// ```
    pub fn parse_list(text: &str) -> Result<Vec<Platform>, PlatformError> {
        let mut platforms: Vec<Platform> = Vec::new();
        for item in text.split(',') {
            let platform = Platform::parse(item.trim())?;
            if !platforms.contains(&platform) {
                platforms.push(platform);
            }
        }
        Ok(platforms)
    }

    /// Whether an image for `os`/`architecture`/`variant` (as an index's
    /// descriptor names it) runs here: os and architecture equal, and the
    /// variant too when this platform names one.
    pub fn matches(&self, os: &str, architecture: &str, variant: Option<&str>) -> bool {
        self.os == os
            && self.architecture == architecture
            && self
                .variant
                .as_deref()
                .is_none_or(|wanted| variant == Some(wanted))
    }
}

impl fmt::Display for Platform {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.os, self.architecture)?;
        if let Some(variant) = &self.variant {
            write!(f, "/{variant}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_matches() {
        let amd64 = Platform::parse("linux/amd64").unwrap();
        assert_eq!(amd64.to_string(), "linux/amd64");
        assert!(amd64.matches("linux", "amd64", None));
        assert!(amd64.matches("linux", "amd64", Some("v2")));
        let v7 = Platform::parse("linux/arm/v7").unwrap();
        assert!(v7.matches("linux", "arm", Some("v7")));
        assert!(!v7.matches("linux", "arm", Some("v6")));
        assert!(!v7.matches("linux", "arm", None));
        for bad in [
            "linux",
            "/amd64",
            "linux/",
            "a/b/c/d",
            "",
            "linux/amd64,linux/arm64",
            "linux/am d64",
        ] {
            assert!(Platform::parse(bad).is_err(), "{bad}");
        }
    }
}
