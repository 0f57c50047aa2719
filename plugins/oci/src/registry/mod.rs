//! A registry client over `wasi:http`, following the distribution spec's
//! client checklist: ping, Basic and Bearer authentication driven by
//! `WWW-Authenticate`, redirects that never carry credentials to another
//! host, and bounded retries with backoff on 429, 5xx and lost connections.

pub mod auth;
mod pull;
mod push;

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Duration;

use kiln_sdk::http::{HttpError, Request, Response};

use auth::{Challenge, TokenResponse, form_escape, parse_challenges};
pub use pull::{PullReport, ResolvedImage, download, fetch_layers, pull, pull_image, resolve};
pub use push::{PushOptions, PushReport, push};

use crate::OciError;
use crate::credential::{self, Credential};

/// Attempts of one request before giving up on 429, 5xx or a lost
/// connection.
const MAX_ATTEMPTS: u32 = 4;
/// First backoff; doubled each retry.
const FIRST_BACKOFF: Duration = Duration::from_millis(250);
/// Longest `Retry-After` honoured.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(30);
/// Redirects followed for one request.
const MAX_REDIRECTS: usize = 5;
/// Largest body read into memory (manifests, errors, tokens).
pub const MAX_DOCUMENT: u64 = 4 << 20;

/// The manifest media types kiln accepts, for `Accept`.
pub const MANIFEST_ACCEPT: &str = "application/vnd.oci.image.index.v1+json, application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.list.v2+json, application/vnd.docker.distribution.manifest.v2+json";

/// Whether a manifest of `media_type` is an index (OCI's or Docker's
/// manifest list) rather than one image's manifest.
fn is_index(media_type: &str) -> bool {
    media_type == "application/vnd.oci.image.index.v1+json"
        || media_type == "application/vnd.docker.distribution.manifest.list.v2+json"
}

/// A request body that can be sent again on retry.
#[derive(Debug, Clone)]
pub enum Payload {
    /// No body.
    Empty,
    /// Bytes in memory (manifests).
    Bytes(Vec<u8>),
    /// Part of a file (blobs), reopened for every attempt.
    File {
        /// Where it is.
        path: PathBuf,
        /// Where the part starts.
        offset: u64,
        /// Its size.
        len: u64,
        /// A progress label, when this part is a whole blob sent in one
        /// request (a chunked upload reports per chunk instead).
        progress: Option<String>,
    },
}

/// One request to the registry, before authentication.
#[derive(Debug, Clone)]
pub struct Call {
    method: &'static str,
    url: String,
    headers: Vec<(String, String)>,
    body: Payload,
    /// What is being done, for error messages.
    operation: String,
    /// Whether sending it again can help (not for an upload session that
    /// a failed attempt may have consumed).
    retry: bool,
}

impl Call {
    /// A request with no body.
    pub fn new(method: &'static str, url: String, operation: impl Into<String>) -> Call {
        Call {
            method,
            url,
            headers: Vec::new(),
            body: Payload::Empty,
            operation: operation.into(),
            retry: true,
        }
    }

    /// Send it once: the caller retries at a higher level.
    pub fn once(mut self) -> Call {
        self.retry = false;
        self
    }

    /// Add a header.
    pub fn header(mut self, name: &str, value: impl Into<String>) -> Call {
        self.headers.push((name.to_owned(), value.into()));
        self
    }

    /// Set the body.
    pub fn body(mut self, body: Payload) -> Call {
        self.body = body;
        self
    }
}

/// A client for one registry host.
pub struct Registry {
    host: String,
    scheme: &'static str,
    credential: Option<Credential>,
    /// `Authorization` values by token scope; `""` holds Basic.
    authorizations: HashMap<String, String>,
}

/// Whether `host` is a loopback address or `localhost`, which may use
/// plain HTTP.
fn is_loopback(host: &str) -> bool {
    let name = match host.strip_prefix('[') {
        Some(rest) => rest.split(']').next().unwrap_or_default(),
        None => host.rsplit_once(':').map_or(host, |(h, _)| h),
    };
    name == "localhost"
        || name.ends_with(".localhost")
        || name
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

impl Registry {
    /// A client for `host` (`name[:port]`). Plain HTTP is used when
    /// `insecure` or the host is loopback; HTTPS otherwise.
    pub fn new(host: &str, insecure: bool, credential: Option<Credential>) -> Registry {
        Registry {
            host: host.to_owned(),
            scheme: if insecure || is_loopback(host) {
                "http"
            } else {
                "https"
            },
            credential,
            authorizations: HashMap::new(),
        }
    }

    /// A client for `host` with the credentials the kiln host offers for
    /// it, if any (see [`credential`]).
    pub fn connect(host: &str, insecure: bool) -> Result<Registry, OciError> {
        let credential = match kiln_sdk::secret(&credential::secret_name(host)) {
            Ok(json) => Some(Credential::from_secret(&json).map_err(|_| {
                OciError::Invalid(format!("the credentials offered for {host} are malformed"))
            })?),
            Err(_) => None,
        };
        Ok(Registry::new(host, insecure, credential))
    }

    /// The host this client talks to.
    pub fn host(&self) -> &str {
        &self.host
    }

    /// `scheme://host/v2/` + `path`.
    pub fn url(&self, path: &str) -> String {
        format!("{}://{}/v2/{path}", self.scheme, self.host)
    }

    /// Resolve a `Location` header against the URL it answered.
    pub fn resolve(&self, base: &str, location: &str) -> String {
        let lower = location.get(..8).unwrap_or(location).to_ascii_lowercase();
        if lower.starts_with("http://") || lower.starts_with("https://") {
            return location.to_owned();
        }
        // A scheme-relative `//host/path` names another host (RFC 3986),
        // not a path on this one.
        if location.starts_with("//") {
            let scheme = base.split_once("://").map_or("https", |(s, _)| s);
            return format!("{scheme}:{location}");
        }
        let origin_end = base
            .find("://")
            .and_then(|s| base[s + 3..].find('/').map(|p| s + 3 + p))
            .unwrap_or(base.len());
        if location.starts_with('/') {
            return format!("{}{location}", &base[..origin_end]);
        }
        let path = &base[..base.find('?').unwrap_or(base.len())];
        let dir = &path[..path.rfind('/').map_or(path.len(), |i| i + 1)];
        format!("{dir}{location}")
    }

    /// Check that the registry speaks the API and accepts our credentials.
    pub fn login(&mut self) -> Result<(), OciError> {
        let response = self.send(
            Call::new("GET", self.url(""), "checking the credentials"),
            &[],
        )?;
        match response.status() {
            200 => Ok(()),
            404 => Err(OciError::Invalid(format!(
                "{} does not speak the registry API (GET /v2/ is 404)",
                self.host
            ))),
            status => Err(self.refusal("checking the credentials", status, response)),
        }
    }

    /// Send `call`, authenticating for `scopes` when challenged, following
    /// redirects, and retrying on 429, 5xx and lost connections.
    pub fn send(&mut self, call: Call, scopes: &[String]) -> Result<Response, OciError> {
        let scope_key = scopes.join(" ");
        let mut authenticated = false;
        let mut attempt = 0;
        loop {
            attempt += 1;
            let result = self.send_following_redirects(&call, &scope_key);
            let retry_after = match &result {
                Err(OciError::Http(HttpError::Transport(_))) => None,
                Ok(response) if response.status() == 429 || response.status() >= 500 => response
                    .header("retry-after")
                    .and_then(|v| v.trim().parse::<u64>().ok()),
                _ => {
                    let response = result?;
                    if response.status() == 401 && !authenticated {
                        let challenges = response
                            .header("www-authenticate")
                            .map(parse_challenges)
                            .unwrap_or_default();
                        self.authenticate(&challenges, scopes, &scope_key)?;
                        authenticated = true;
                        attempt -= 1;
                        continue;
                    }
                    if response.status() == 401 {
                        let detail = error_detail(response);
                        return Err(OciError::AuthenticationFailed {
                            registry: self.host.clone(),
                            detail,
                        });
                    }
                    return Ok(response);
                }
            };
            if attempt >= MAX_ATTEMPTS || !call.retry {
                return match result {
                    Ok(response) => {
                        let status = response.status();
                        Err(self.refusal(&call.operation, status, response))
                    }
                    Err(error) => Err(error),
                };
            }
            let backoff = match retry_after {
                Some(seconds) => Duration::from_secs(seconds).min(MAX_RETRY_AFTER),
                None => FIRST_BACKOFF * 2u32.pow(attempt - 1),
            };
            kiln_sdk::warn!(
                "{}: retrying in {:?} (attempt {attempt} of {MAX_ATTEMPTS})",
                call.operation,
                backoff
            );
            std::thread::sleep(backoff);
        }
    }

    fn send_following_redirects(&self, call: &Call, scope_key: &str) -> Result<Response, OciError> {
        let mut url = call.url.clone();
        for _ in 0..=MAX_REDIRECTS {
            let response = self.request(call, &url, scope_key)?.send()?;
            let redirect = matches!(response.status(), 301 | 302 | 303 | 307 | 308);
            if redirect
                && matches!(call.method, "GET" | "HEAD")
                && let Some(location) = response.header("location")
            {
                url = self.resolve(&url, location);
                continue;
            }
            return Ok(response);
        }
        Err(OciError::Invalid(format!(
            "{}: more than {MAX_REDIRECTS} redirects",
            call.operation
        )))
    }

    /// `call` as an HTTP request to `url`, with the credentials cached for
    /// `scope_key` when `url` is on the registry host (never elsewhere).
    fn request(&self, call: &Call, url: &str, scope_key: &str) -> Result<Request, OciError> {
        let mut request = Request::new(call.method, url);
        for (name, value) in &call.headers {
            request = request.header(name, value);
        }
        // Credentials go only to the registry itself, over the scheme it
        // was reached with: never to another host, never downgraded.
        if authority(url) == self.host
            && url.starts_with(self.scheme)
            && url[self.scheme.len()..].starts_with("://")
            && let Some(value) = self
                .authorizations
                .get(scope_key)
                .or_else(|| self.authorizations.get(""))
        {
            request = request.header("authorization", value);
        }
        Ok(match &call.body {
            Payload::Empty => request.header("content-length", "0"),
            Payload::Bytes(bytes) => request
                .header("content-length", bytes.len().to_string())
                .body(bytes.clone()),
            Payload::File {
                path,
                offset,
                len,
                progress,
            } => {
                use std::io::{Read, Seek, SeekFrom};
                let mut file = std::fs::File::open(path).map_err(crate::error::io(path))?;
                file.seek(SeekFrom::Start(*offset))
                    .map_err(crate::error::io(path))?;
                let request = request.header("content-length", len.to_string());
                match progress {
                    Some(task) => request.body_reader(kiln_sdk::log::ProgressReader::new(
                        file.take(*len),
                        task.clone(),
                        *len,
                    )),
                    None => request.body_reader(file.take(*len)),
                }
            }
        })
    }

    /// Send `calls` side by side (at most `limit` at once), each once, with
    /// the credentials already obtained for `scopes`: for uploads whose
    /// sessions are open. Callers retry failures one by one with
    /// [`Registry::send`], which re-authenticates.
    pub fn send_concurrently(
        &self,
        calls: &[Call],
        scopes: &[String],
        limit: usize,
    ) -> Vec<Result<Response, OciError>> {
        let scope_key = scopes.join(" ");
        let mut results: Vec<Option<Result<Response, OciError>>> = Vec::new();
        let mut requests = Vec::new();
        let mut slots = Vec::new();
        for call in calls {
            match self.request(call, &call.url, &scope_key) {
                Ok(request) => {
                    slots.push(results.len());
                    results.push(None);
                    requests.push(request);
                }
                Err(error) => results.push(Some(Err(error))),
            }
        }
        for (slot, result) in slots
            .into_iter()
            .zip(kiln_sdk::http::send_all(requests, limit))
        {
            results[slot] = Some(result.map_err(OciError::from));
        }
        results
            .into_iter()
            .map(|r| r.expect("every call has a result"))
            .collect()
    }

    /// Answer a 401: Basic with our credentials, or a Bearer token from the
    /// challenge's realm.
    fn authenticate(
        &mut self,
        challenges: &[Challenge],
        scopes: &[String],
        scope_key: &str,
    ) -> Result<(), OciError> {
        let failed = |detail: &str| OciError::AuthenticationFailed {
            registry: self.host.clone(),
            detail: detail.to_owned(),
        };
        if let Some(bearer) = challenges.iter().find(|c| c.scheme == "bearer") {
            let token = self.fetch_token(bearer, scopes)?;
            self.authorizations
                .insert(scope_key.to_owned(), format!("Bearer {token}"));
            return Ok(());
        }
        if challenges.iter().any(|c| c.scheme == "basic") {
            let header = self
                .credential
                .as_ref()
                .and_then(Credential::basic_header)
                .ok_or_else(|| failed("the registry wants a username and password; run `kiln login` or set CI_REGISTRY_USER and CI_REGISTRY_PASSWORD"))?;
            self.authorizations.insert(String::new(), header);
            return Ok(());
        }
        Err(failed(
            "the registry asked for credentials in a way kiln does not support",
        ))
    }

    fn fetch_token(&self, challenge: &Challenge, scopes: &[String]) -> Result<String, OciError> {
        let realm = challenge
            .param("realm")
            .ok_or_else(|| OciError::AuthenticationFailed {
                registry: self.host.clone(),
                detail: "the Bearer challenge has no realm".into(),
            })?;
        let realm = self.resolve(&self.url(""), realm);
        let service = challenge.param("service");
        let mut scope_list: Vec<String> = scopes.to_vec();
        if scope_list.is_empty()
            && let Some(scope) = challenge.param("scope")
        {
            scope_list.push(scope.to_owned());
        }
        let mut query = Vec::new();
        if let Some(service) = service {
            query.push(format!("service={}", form_escape(service)));
        }
        for scope in &scope_list {
            query.push(format!("scope={}", form_escape(scope)));
        }
        if self.credential.is_some() && realm.starts_with("http://") && self.scheme == "https" {
            return Err(OciError::AuthenticationFailed {
                registry: self.host.clone(),
                detail: format!(
                    "the registry sends credentials to a plain-HTTP token service ({realm}); refusing"
                ),
            });
        }
        let request = match &self.credential {
            Some(Credential::IdentityToken { identitytoken }) => {
                let mut form = query.clone();
                form.push("grant_type=refresh_token".into());
                form.push("client_id=kiln".into());
                form.push(format!("refresh_token={}", form_escape(identitytoken)));
                Request::new("POST", &realm)
                    .header("content-type", "application/x-www-form-urlencoded")
                    .body(form.join("&").into_bytes())
            }
            credential => {
                let separator = if realm.contains('?') { '&' } else { '?' };
                let mut request =
                    Request::new("GET", &format!("{realm}{separator}{}", query.join("&")));
                if let Some(header) = credential.as_ref().and_then(Credential::basic_header) {
                    request = request.header("authorization", header);
                }
                request
            }
        };
        let response = request.send()?;
        let status = response.status();
        if status != 200 {
            let detail = error_detail(response);
            return Err(OciError::AuthenticationFailed {
                registry: self.host.clone(),
                detail: format!("the token service answered {status} {detail}")
                    .trim()
                    .to_owned(),
            });
        }
        let body = response.bytes(MAX_DOCUMENT)?;
        serde_json::from_slice::<TokenResponse>(&body)
            .ok()
            .and_then(TokenResponse::into_token)
            .ok_or_else(|| OciError::AuthenticationFailed {
                registry: self.host.clone(),
                detail: "the token service's answer has no token".into(),
            })
    }

    /// The error for an unexpected status.
    pub fn refusal(&self, operation: &str, status: u16, response: Response) -> OciError {
        let detail = error_detail(response);
        match status {
            401 | 403 => OciError::AuthenticationFailed {
                registry: self.host.clone(),
                detail,
            },
            _ => OciError::Registry {
                operation: operation.to_owned(),
                status,
                detail,
            },
        }
    }
}

/// `host[:port]` of an absolute URL.
fn authority(url: &str) -> &str {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    &rest[..rest.find(['/', '?']).unwrap_or(rest.len())]
}

/// The `errors[].code: message` list of a registry error body. A body that
/// is not one is described, never echoed: the reply may come from a service
/// that is not a registry (a Dockerfile can name any host), and its bytes
/// must not travel into logs.
fn error_detail(response: Response) -> String {
    #[derive(serde::Deserialize)]
    struct Errors {
        errors: Vec<ErrorEntry>,
    }
    #[derive(serde::Deserialize)]
    struct ErrorEntry {
        #[serde(default)]
        code: String,
        #[serde(default)]
        message: String,
    }
    /// Registry error lists shown, and the length of each text.
    const SHOWN_ERRORS: usize = 5;
    const SHOWN_TEXT: usize = 200;
    let content_type = response
        .header("content-type")
        .unwrap_or("no content type")
        .chars()
        .take(64)
        .collect::<String>();
    let body = response.bytes(64 * 1024).unwrap_or_default();
    let cut = |text: &str| text.chars().take(SHOWN_TEXT).collect::<String>();
    match serde_json::from_slice::<Errors>(&body) {
        Ok(errors) if !errors.errors.is_empty() => errors
            .errors
            .iter()
            .take(SHOWN_ERRORS)
            .map(|e| format!("{}: {}", cut(&e.code), cut(&e.message)))
            .collect::<Vec<_>>()
            .join("; "),
        _ if body.is_empty() => String::new(),
        _ => format!(
            "(not a registry error reply: {} bytes of {content_type}, not shown)",
            body.len()
        ),
    }
}

/// Scope to pull from `repository`.
pub fn pull_scope(repository: &str) -> String {
    format!("repository:{repository}:pull")
}

/// Scope to push to `repository`.
pub fn push_scope(repository: &str) -> String {
    format!("repository:{repository}:pull,push")
}

/// `url` with `key=value` added to its query.
pub fn with_query(url: &str, key: &str, value: &str) -> String {
    let separator = if url.contains('?') { '&' } else { '?' };
    format!("{url}{separator}{key}={}", form_escape(value))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolves_locations_and_queries() {
        let r = Registry::new("127.0.0.1:5000", false, None);
        assert_eq!(
            r.url("a/blobs/uploads/"),
            "http://127.0.0.1:5000/v2/a/blobs/uploads/"
        );
        let base = "http://127.0.0.1:5000/v2/a/blobs/uploads/";
        assert_eq!(
            r.resolve(base, "/v2/a/blobs/uploads/x?_state=s"),
            "http://127.0.0.1:5000/v2/a/blobs/uploads/x?_state=s"
        );
        assert_eq!(
            r.resolve(base, "https://s3.example.com/b?sig=1"),
            "https://s3.example.com/b?sig=1"
        );
        assert_eq!(
            r.resolve(base, "x"),
            "http://127.0.0.1:5000/v2/a/blobs/uploads/x"
        );
        // Scheme-relative and upper-case schemes name other hosts.
        assert_eq!(
            r.resolve(base, "//blobs.example.com/b?sig=1"),
            "http://blobs.example.com/b?sig=1"
        );
        assert_eq!(
            r.resolve(base, "HTTPS://blobs.example.com/b"),
            "HTTPS://blobs.example.com/b"
        );
        assert_eq!(
            with_query("http://h/u?_state=s", "digest", "sha256:ab"),
            "http://h/u?_state=s&digest=sha256%3Aab"
        );
        assert_eq!(
            Registry::new("registry.example.com", false, None).scheme,
            "https"
        );
        assert_eq!(authority("https://h:1/x?y"), "h:1");
        assert!(
            is_loopback("127.0.0.1:5000") && is_loopback("localhost") && is_loopback("[::1]:5000")
        );
        assert!(!is_loopback("127.evil.com") && !is_loopback("registry.example.com"));
    }
}
