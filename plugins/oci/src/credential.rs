//! The registry-credential hand-off between the kiln host and the image
//! plugins, defined once for both sides.
//!
//! Plugins never read credentials from disk or the environment: the host
//! resolves them (docker `config.json`, credential helpers, GitLab's
//! `CI_REGISTRY*`) and offers each registry's as the secret named
//! [`secret_name`]`(HOST)`, only to steps granted that host. The secret's
//! value is a [`Credential`] as JSON ([`Credential::to_secret`]).

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde::{Deserialize, Serialize};

/// How the names of registry-credential secrets begin; the registry host
/// follows.
pub const SECRET_PREFIX: &str = "registry-auth:";

/// The secret name under which the host offers the credentials for
/// `host` (`host[:port]`, as the registry API is reached:
/// `registry-1.docker.io` for Docker Hub).
///
/// ```
/// assert_eq!(kiln_oci::credential::secret_name("127.0.0.1:5000"), "registry-auth:127.0.0.1:5000");
/// ```
pub fn secret_name(host: &str) -> String {
    format!("{SECRET_PREFIX}{host}")
}

/// Credentials for one registry, as the secret carries them.
///
/// Untagged: the JSON is `{"username":…,"password":…}` or
/// `{"identitytoken":…}`, the shapes docker's own `config.json` and
/// credential helpers use. An identity token wins when both are present.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Credential {
    /// An OAuth2 refresh token, as `docker login` stores for some
    /// registries.
    IdentityToken {
        /// The token.
        identitytoken: String,
    },
    /// Username and password (or a token used as one, like
    /// `CI_JOB_TOKEN`).
    Basic {
        /// The user.
        username: String,
        /// The password or token.
        password: String,
    },
}

/// A secret value that is not a [`Credential`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("registry credentials must be JSON with username and password, or identitytoken")]
pub struct MalformedCredential;

impl Credential {
    /// The secret's value: compact JSON, fields in declaration order.
    ///
    /// ```
    /// use kiln_oci::credential::Credential;
    /// let basic = Credential::Basic { username: "u".into(), password: "p".into() };
    /// assert_eq!(basic.to_secret(), r#"{"username":"u","password":"p"}"#);
    /// assert_eq!(Credential::from_secret(&basic.to_secret()), Ok(basic));
    /// ```
    pub fn to_secret(&self) -> String {
        serde_json::to_string(self).expect("credentials serialize")
    }

    /// Read a secret's value.
    pub fn from_secret(json: &str) -> Result<Credential, MalformedCredential> {
        serde_json::from_str(json).map_err(|_| MalformedCredential)
    }

    /// `Basic base64(user:password)`, when this is a username/password.
    pub fn basic_header(&self) -> Option<String> {
        match self {
            Credential::Basic { username, password } => Some(format!(
                "Basic {}",
                STANDARD.encode(format!("{username}:{password}"))
            )),
            Credential::IdentityToken { .. } => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_secret_format_is_what_the_host_writes() {
        let basic = Credential::from_secret(r#"{"username":"u","password":"p"}"#).unwrap();
        assert_eq!(basic.basic_header().unwrap(), "Basic dTpw");
        assert_eq!(basic.to_secret(), r#"{"username":"u","password":"p"}"#);
        let token = Credential::from_secret(r#"{"identitytoken":"t"}"#).unwrap();
        assert!(token.basic_header().is_none());
        assert_eq!(token.to_secret(), r#"{"identitytoken":"t"}"#);
        let both = r#"{"username":"u","password":"p","identitytoken":"t"}"#;
        assert_eq!(Credential::from_secret(both), Ok(token));
        assert_eq!(
            Credential::from_secret(r#"{"username":"u"}"#),
            Err(MalformedCredential)
        );
        assert_eq!(secret_name("docker.io"), "registry-auth:docker.io");
    }
}
