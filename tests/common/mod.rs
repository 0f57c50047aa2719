//! Helpers shared by the end-to-end tests: the `kiln` binary, the test
//! plugins, captured runs, a registry of the test's own and images to put
//! in it.
// Each test crate uses a different subset of these helpers.
#![allow(dead_code)]

pub mod buildah;
pub mod conformance;
pub mod debian;
pub mod example;
pub mod images;
pub mod registry;

use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// The `kiln` binary under test.
pub const KILN: &str = env!("CARGO_BIN_EXE_kiln");

/// The hostile test plugin.
pub fn hostile() -> PathBuf {
    Path::new(kiln_runtime::plugins::GUEST_BUILD_DIR).join("kiln_test_hostile.wasm")
}

/// `kiln ARGS` in `dir`, with a shared test compile cache and none of the
/// GitLab variables of the machine running the tests.
pub fn kiln(dir: &Path, args: &[&str]) -> Command {
    let mut command = Command::new(KILN);
    command.args(args).current_dir(dir).env(
        "KILN_CACHE_DIR",
        std::env::temp_dir().join("kiln-test-cache"),
    );
    for name in [
        "CI_COMMIT_SHA",
        "CI_COMMIT_SHORT_SHA",
        "CI_COMMIT_REF_NAME",
        "CI_REGISTRY_PASSWORD",
        "CI_JOB_TOKEN",
    ] {
        command.env_remove(name);
    }
    command
}

/// Run a peer tool (skopeo, umoci, tar, ...) and assert it succeeded;
/// returns its standard output.
pub fn run_ok(command: &mut Command) -> String {
    let output = command
        .output()
        .unwrap_or_else(|e| panic!("{command:?}: {e} (tests/run installs the tools)"));
    assert!(
        output.status.success(),
        "{command:?} failed: {}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// A finished command, timed.
pub struct Run {
    /// What it printed and how it exited.
    pub output: Output,
    /// How long it took.
    pub elapsed: Duration,
}

impl Run {
    /// Run `command` to completion.
    pub fn of(mut command: Command) -> Run {
        let started = Instant::now();
        let output = command.output().unwrap();
        Run {
            output,
            elapsed: started.elapsed(),
        }
    }

    /// The exit code.
    pub fn code(&self) -> Option<i32> {
        self.output.status.code()
    }

    /// Standard output.
    pub fn stdout(&self) -> String {
        String::from_utf8_lossy(&self.output.stdout).into_owned()
    }

    /// Standard error.
    pub fn stderr(&self) -> String {
        String::from_utf8_lossy(&self.output.stderr).into_owned()
    }

    /// Both.
    pub fn all(&self) -> String {
        self.stdout() + &self.stderr()
    }

    /// Assert success; returns everything printed.
    pub fn ok(&self) -> String {
        assert_eq!(self.code(), Some(0), "kiln failed:\n{}", self.all());
        self.all()
    }
}

/// A loopback HTTP server counting the connections it accepts.
pub struct Server {
    /// Its port on 127.0.0.1.
    pub port: u16,
    /// Connections accepted so far.
    pub connections: Arc<AtomicUsize>,
}

impl Server {
    /// Start serving `hello from loopback` to every request.
    pub fn start() -> Server {
        Server::answering("200 OK", "text/plain", "hello from loopback".to_owned())
    }

    /// Start answering every request with `status`, a body of `kind`.
    pub fn answering(status: &'static str, kind: &'static str, body: String) -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let connections = Arc::new(AtomicUsize::new(0));
        let counter = connections.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { continue };
                counter.fetch_add(1, Ordering::SeqCst);
                let mut request = [0u8; 4096];
                let _ = stream.read(&mut request);
                let _ = write!(
                    stream,
                    "HTTP/1.1 {status}\r\ncontent-type: {kind}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
            }
        });
        Server { port, connections }
    }
}
