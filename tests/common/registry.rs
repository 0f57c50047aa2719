//! The real distribution registry (`docker-registry`, Debian's 2.8) on
//! 127.0.0.1, in three set-ups: anonymous, htpasswd Basic auth, and token
//! auth with a token service of our own. Shared by every test crate that
//! pushes or pulls.

use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::run_ok;

/// The user the Basic and token set-ups accept.
pub const USER: &str = "kiln-user";
/// `USER`'s password.
pub const PASSWORD: &str = "correct-horse-battery-staple";

/// How the registry authenticates clients.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Auth {
    /// Anyone may push and pull.
    Anonymous,
    /// htpasswd Basic auth for `USER`.
    Basic,
    /// Bearer tokens from a token service of the test's own.
    Token,
}

/// A registry (and token service) of the test's own, stopped on drop.
pub struct Registry {
    /// Its configuration, storage and log (`registry.log`).
    pub dir: tempfile::TempDir,
    /// Its port on 127.0.0.1.
    pub port: u16,
    registry: Option<Child>,
    token_service: Option<Child>,
    auth: Auth,
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn wait_for(port: u16) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            Instant::now() < deadline,
            "nothing listens on 127.0.0.1:{port}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

impl Registry {
    /// Start a registry on a free port of 127.0.0.1, authenticating as
    /// `auth` says; it listens when this returns.
    pub fn start(auth: Auth) -> Registry {
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let auth_config = match auth {
            Auth::Anonymous => String::new(),
            Auth::Basic => {
                let htpasswd = dir.path().join("htpasswd");
                run_ok(
                    Command::new("htpasswd")
                        .args(["-Bbc"])
                        .arg(&htpasswd)
                        .args([USER, PASSWORD]),
                );
                format!(
                    "auth:\n  htpasswd:\n    realm: kiln-test\n    path: {}\n",
                    htpasswd.display()
                )
            }
            Auth::Token => {
                let key = dir.path().join("key.pem");
                let cert = dir.path().join("cert.pem");
                run_ok(
                    Command::new("openssl")
                        .args([
                            "req",
                            "-x509",
                            "-newkey",
                            "rsa:2048",
                            "-nodes",
                            "-days",
                            "1",
                            "-subj",
                            "/CN=kiln-test-token",
                        ])
                        .arg("-keyout")
                        .arg(&key)
                        .arg("-out")
                        .arg(&cert)
                        .stderr(Stdio::null()),
                );
                format!(
                    "auth:\n  token:\n    realm: http://127.0.0.1:{{TOKEN_PORT}}/token\n    service: kiln-test-registry\n    issuer: kiln-test-issuer\n    rootcertbundle: {}\n",
                    cert.display()
                )
            }
        };
        let config = format!(
            "version: 0.1\nlog:\n  level: info\n  accesslog:\n    disabled: false\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\nhttp:\n  addr: 127.0.0.1:{port}\n  secret: kiln-test-secret\n{auth_config}",
            dir.path().join("data").display()
        );
        let mut registry = Registry {
            dir,
            port,
            registry: None,
            token_service: None,
            auth,
        };
        let config = if auth == Auth::Token {
            let token_port = free_port();
            let script =
                Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/registry/token_server.py");
            let child = Command::new("python3")
                .arg(script)
                .arg(token_port.to_string())
                .arg(registry.dir.path().join("key.pem"))
                .arg(registry.dir.path().join("cert.pem"))
                .args([USER, PASSWORD, "kiln-test-issuer", "kiln-test-registry"])
                .stderr(Stdio::null())
                .spawn()
                .unwrap();
            registry.token_service = Some(child);
            wait_for(token_port);
            config.replace("{TOKEN_PORT}", &token_port.to_string())
        } else {
            config
        };
        std::fs::write(registry.dir.path().join("config.yml"), config).unwrap();
        registry.serve();
        registry
    }

    /// (Re)start the registry process; it listens when this returns.
    pub fn serve(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join("registry.log"))
            .unwrap();
        let child = Command::new("docker-registry")
            .arg("serve")
            .arg(self.dir.path().join("config.yml"))
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("docker-registry is installed (tests/run installs it)");
        self.registry = Some(child);
        wait_for(self.port);
    }

    /// Kill the registry process (its storage stays for `serve`).
    pub fn stop(&mut self) {
        if let Some(mut child) = self.registry.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// `127.0.0.1:PORT`, the host part of this registry's references.
    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Access-log lines containing `needle`.
    pub fn count(&self, needle: &str) -> usize {
        std::fs::read_to_string(self.dir.path().join("registry.log"))
            .unwrap_or_default()
            .lines()
            .filter(|l| l.contains(needle))
            .count()
    }

    /// Blob upload requests the registry has served so far.
    pub fn blob_uploads(&self) -> usize {
        std::fs::read_to_string(self.dir.path().join("registry.log"))
            .unwrap_or_default()
            .lines()
            .filter(|l| {
                (l.contains("\"PUT /v2/") || l.contains("\"PATCH /v2/"))
                    && l.contains("/blobs/uploads/")
            })
            .count()
    }

    /// `skopeo` flags to reach this registry.
    pub fn skopeo_flags(&self, prefix: &str) -> Vec<String> {
        let mut flags = vec![format!("--{prefix}tls-verify=false")];
        if self.auth != Auth::Anonymous {
            flags.push(format!("--{prefix}creds={USER}:{PASSWORD}"));
        }
        flags
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        self.stop();
        if std::thread::panicking() {
            let log =
                std::fs::read_to_string(self.dir.path().join("registry.log")).unwrap_or_default();
            let errors: Vec<&str> = log
                .lines()
                .filter(|l| l.contains("level=error") || l.contains("panic"))
                .collect();
            eprintln!(
                "registry log errors:\n{}",
                errors[errors.len().saturating_sub(10)..].join("\n")
            );
        }
        if let Some(mut child) = self.token_service.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
