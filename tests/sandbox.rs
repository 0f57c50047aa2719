//! End-to-end containment tests: the real `kiln` binary runs the
//! deliberately hostile plugin (`tests/plugins/hostile`) and must contain
//! every attack, say clearly what it stopped, and leak nothing.

use std::path::PathBuf;
use std::process::Command;
use std::sync::atomic::Ordering;
use std::time::Duration;

mod common;

use common::{Run, Server, hostile, kiln};

/// A workspace of its own, and a directory beside it that the step is not
/// granted, holding a canary.
struct Fixture {
    root: tempfile::TempDir,
}

const CANARY: &str = "canary-7f3a9c-not-for-plugins";

impl Fixture {
    fn new() -> Self {
        let root = tempfile::tempdir().unwrap();
        std::fs::create_dir(root.path().join("workspace")).unwrap();
        std::fs::create_dir(root.path().join("outside")).unwrap();
        std::fs::write(root.path().join("outside/secret.txt"), CANARY).unwrap();
        Fixture { root }
    }

    fn workspace(&self) -> PathBuf {
        self.root.path().join("workspace")
    }

    fn kiln(&self, args: &[&str]) -> Command {
        let mut command = kiln(&self.workspace(), args);
        command.env("KILN_CANARY", CANARY);
        command
    }

    fn attack(&self, attack: &str, target: &str, grant: &[&str]) -> Run {
        let hostile = hostile();
        let mut args = vec!["step", hostile.to_str().unwrap()];
        let attack = format!("attack={attack}");
        let target = format!("target={target}");
        args.extend(["--input", &attack, "--input", &target]);
        args.extend(grant);
        Run::of(self.kiln(&args))
    }
}

/// Assertions about a contained attack.
trait Contained {
    fn contained(&self, message: &str, leak: &str);
    fn succeeded(&self) -> String;
}

impl Contained for Run {
    /// The step failed with `message` in its last line, and `leak` is
    /// nowhere in the output.
    fn contained(&self, message: &str, leak: &str) {
        let all = self.all();
        assert_eq!(
            self.output.status.code(),
            Some(1),
            "expected failure, got:\n{all}"
        );
        let last = self.stderr().lines().last().unwrap_or_default().to_owned();
        assert!(
            last.contains(message),
            "last line should say `{message}`: {last}"
        );
        assert!(!all.contains(leak), "output leaks `{leak}`:\n{all}");
    }

    fn succeeded(&self) -> String {
        self.ok();
        self.stdout()
    }
}

#[test]
fn a_reading_outside_the_preopens_is_refused() {
    let f = Fixture::new();
    let outside = f.root.path().join("outside/secret.txt");
    f.attack("read-file", outside.to_str().unwrap(), &[])
        .contained("denied: reading", CANARY);
    f.attack("read-file", "/workspace/../outside/secret.txt", &[])
        .contained("denied: reading", CANARY);
    // Granting the directory is what makes it readable.
    let granted = f.attack(
        "read-file",
        outside.to_str().unwrap(),
        &[
            "--allow-read",
            f.root.path().join("outside").to_str().unwrap(),
        ],
    );
    assert!(granted.succeeded().contains(CANARY));
}

#[test]
fn a_writing_the_read_only_workspace_is_refused() {
    let f = Fixture::new();
    f.attack("write-file", "/workspace/new.txt", &[])
        .contained("denied: writing", "overwritten");
    assert!(!f.workspace().join("new.txt").exists());
    f.attack("write-file", "/output/new.txt", &[]).succeeded();
}

#[test]
fn b_symlinks_planted_in_the_workspace_are_not_followed_out() {
    let f = Fixture::new();
    std::os::unix::fs::symlink(
        f.root.path().join("outside/secret.txt"),
        f.workspace().join("link"),
    )
    .unwrap();
    std::os::unix::fs::symlink("../outside", f.workspace().join("dirlink")).unwrap();
    f.attack("read-file", "/workspace/link", &[])
        .contained("denied: reading", CANARY);
    f.attack("read-file", "/workspace/dirlink/secret.txt", &[])
        .contained("denied: reading", CANARY);
}

#[test]
fn c_environment_variables_need_a_grant() {
    let f = Fixture::new();
    f.attack("env", "KILN_CANARY", &[])
        .contained("denied: reading $KILN_CANARY", CANARY);
    let granted = f.attack("env", "KILN_CANARY", &["--env", "KILN_CANARY"]);
    assert!(granted.succeeded().contains(CANARY));
}

#[test]
fn d_http_to_hosts_not_granted_is_refused_and_never_sent() {
    let f = Fixture::new();
    let server = Server::start();
    let url = format!("http://127.0.0.1:{}/", server.port);

    let none = f.attack("http", "http://registry.example.invalid/v2/", &[]);
    none.contained(
        "denied: registry.example.invalid not in this step's grant",
        "hello from",
    );

    let other = f.attack("http", &url, &["--allow-net", "registry.example.com"]);
    other.contained(
        &format!("denied: 127.0.0.1:{} not in this step's grant", server.port),
        "hello from",
    );
    // A wildcard never covers an address literal, and the wrong port is not the port.
    let wrong_port = f.attack(
        "http",
        &url,
        &["--allow-net", &format!("127.0.0.1:{}", server.port + 1)],
    );
    wrong_port.contained("not in this step's grant", "hello from");
    assert_eq!(
        server.connections.load(Ordering::SeqCst),
        0,
        "a denied request reached the server"
    );

    let granted = f.attack(
        "http",
        &url,
        &["--allow-net", &format!("127.0.0.1:{}", server.port)],
    );
    assert!(granted.succeeded().contains("loot=200 hello from loopback"));
    assert_eq!(server.connections.load(Ordering::SeqCst), 1);
}

/// A body sent with `Request::body` reaches a server that reads only
/// `content-length` bodies: Python's `http.server`, which answers with
/// what it read.
#[test]
fn a_request_body_reaches_pythons_http_server() {
    let f = Fixture::new();
    let script = r#"
import http.server, sys
class Echo(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        self.send_response(200)
        self.send_header("Content-Length", str(len(body) + 5))
        self.end_headers()
        self.wfile.write(b"read " + body)
    def log_message(self, *args):
        pass
server = http.server.HTTPServer(("127.0.0.1", 0), Echo)
print(server.server_address[1], flush=True)
server.handle_request()
"#;
    let mut python = Command::new("python3")
        .args(["-c", script])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("python3 (tests/run installs it)");
    let mut port = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(python.stdout.as_mut().unwrap()),
        &mut port,
    )
    .unwrap();
    let authority = format!("127.0.0.1:{}", port.trim());
    let run = f.attack(
        "post",
        &format!("http://{authority}/"),
        &["--allow-net", &authority],
    );
    let _ = python.kill();
    let _ = python.wait();
    assert!(
        run.succeeded().contains("loot=200 read exfiltrated"),
        "{}",
        run.all()
    );
}

/// Failures read as words: no WASI errno, no Debug dump of an error code.
#[test]
fn failures_are_worded_for_people() {
    let f = Fixture::new();
    let missing = f.attack("read-file", "/workspace/missing.txt", &[]);
    assert_eq!(missing.code(), Some(1), "{}", missing.all());
    // The user's own directory, not the guest's `/workspace`.
    let host_path = format!("{}/missing.txt", f.workspace().display());
    assert!(
        missing.stderr().contains(&host_path) && !missing.stderr().contains("os error"),
        "{}",
        missing.stderr()
    );
    let unresolvable = f.attack(
        "http",
        "http://kiln-test.invalid/",
        &["--allow-net", "kiln-test.invalid"],
    );
    let stderr = unresolvable.stderr();
    assert!(
        stderr.contains("kiln-test.invalid")
            && !stderr.contains("Payload")
            && !stderr.contains("ErrorCode"),
        "{stderr}"
    );
}

#[test]
fn e_an_endless_loop_is_stopped_by_the_timeout() {
    let f = Fixture::new();
    let spin = f.attack("spin", "", &["--timeout", "1s"]);
    spin.contained("timed out after 1s", CANARY);
    assert!(
        spin.elapsed < Duration::from_secs(15),
        "took {:?}",
        spin.elapsed
    );
    // Blocked in a host call rather than spinning: stopped all the same.
    let sleep = f.attack("sleep", "", &["--timeout", "1s"]);
    sleep.contained("timed out after 1s", CANARY);
    assert!(
        sleep.elapsed < Duration::from_secs(15),
        "took {:?}",
        sleep.elapsed
    );
}

#[test]
fn f_allocating_past_the_memory_cap_is_stopped() {
    let f = Fixture::new();
    f.attack("alloc", "", &["--memory", "64MiB"])
        .contained("exceeded its memory limit of 64MiB", CANARY);
}

#[test]
fn g_a_trap_fails_the_step_with_the_panic_message() {
    let f = Fixture::new();
    let run = f.attack("trap", "", &[]);
    run.contained("plugin crashed: wasm trap", CANARY);
    assert!(run.stderr().contains("hostile plugin panics on purpose"));
}

#[test]
fn h_a_gigabyte_of_logs_is_cut_off() {
    let f = Fixture::new();
    for attack in ["log-flood", "stdout-flood"] {
        let run = f.attack(attack, "", &[]);
        run.contained("exceeded its output limit", CANARY);
        let printed = run.output.stdout.len() + run.output.stderr.len();
        // Bounded by the step's 4 MiB output budget (plus the host's lines).
        assert!(
            printed < (4 << 20) + (64 << 10),
            "{attack} printed {printed} bytes"
        );
    }
}

#[test]
fn secrets_are_masked_everywhere_even_when_the_plugin_prints_them() {
    let f = Fixture::new();
    let value = "hunter2-secret-value";
    for format in [&[][..], &["--json"][..]] {
        let mut args = vec![
            "step",
            "__hostile__",
            "--input",
            "attack=leak-secret",
            "--input",
            "target=REGISTRY_PASSWORD",
            "--secret",
            "REGISTRY_PASSWORD",
        ];
        let hostile = hostile();
        args[1] = hostile.to_str().unwrap();
        args.extend(format);
        let mut command = f.kiln(&args);
        command.env("REGISTRY_PASSWORD", value);
        let run = Run::of(command);
        let all = run.all();
        assert!(!all.contains(value), "secret leaked:\n{all}");
        assert!(
            !all.contains("hunter2"),
            "part of the secret leaked:\n{all}"
        );
        assert!(
            all.matches("[masked]").count() >= 4,
            "expected the masked lines:\n{all}"
        );
        assert_eq!(run.output.status.code(), Some(1));
    }
    // Not granted: the plugin is told no, and says what to grant.
    let mut command = f.kiln(&[
        "step",
        hostile().to_str().unwrap(),
        "--input",
        "attack=leak-secret",
        "--input",
        "target=REGISTRY_PASSWORD",
    ]);
    command.env("REGISTRY_PASSWORD", value);
    Run::of(command).contained("denied: secret REGISTRY_PASSWORD is not granted", value);
}

#[test]
fn inspect_shows_inputs_and_capabilities() {
    let f = Fixture::new();
    let hostile = hostile();
    let run = Run::of(f.kiln(&["plugin", "inspect", hostile.to_str().unwrap()]));
    let out = run.succeeded();
    assert!(
        out.contains("attack") && out.contains("[required]"),
        "{out}"
    );
    assert!(out.contains("net    target"), "{out}");
    let run = Run::of(f.kiln(&["plugin", "inspect", "hello"]));
    let out = run.succeeded();
    assert!(
        out.contains("name") && out.contains("default \"world\""),
        "{out}"
    );
    assert!(out.contains("write  output"), "{out}");
}

#[test]
fn the_example_step_runs_and_writes_its_output() {
    let f = Fixture::new();
    let run = Run::of(f.kiln(&["step", "hello", "--input", "name=kiln"]));
    let out = run.succeeded();
    assert!(out.contains("message=hello, kiln!"), "{out}");
    let written =
        std::fs::read_to_string(f.workspace().join(".kiln/out/hello/greeting.txt")).unwrap();
    assert_eq!(written, "hello, kiln!\n");
}

#[test]
fn bad_usage_exits_2_with_the_fix() {
    let f = Fixture::new();
    std::fs::write(f.workspace().join("garbage.wasm"), b"\0asm garbage").unwrap();
    std::fs::write(f.workspace().join("core.wasm"), b"\0asm\x01\0\0\0").unwrap();
    std::fs::write(f.workspace().join("empty.wasm"), b"\0asm\x0d\0\x01\0").unwrap();
    let unknown = format!(
        "no built-in plugin named `helo` (built-ins: {})",
        kiln_runtime::plugins::names().join(", ")
    );
    let cases: [(&[&str], &str); 7] = [
        (
            &["step", "hello", "--input", "nmae=x"],
            "unknown input `nmae` for plugin hello (it accepts: name, repeat)",
        ),
        (&["step", "helo"], &unknown),
        (
            &["step", "oci://example.com/p@sha256:00"],
            "plugins from OCI registries (oci://…@sha256:…) are not yet supported",
        ),
        (
            &["step", "./garbage.wasm"],
            "garbage is not a kiln plugin component: it is not a WebAssembly file",
        ),
        (
            &["step", "./core.wasm"],
            "it is a core WebAssembly module, not a component; build it for wasm32-wasip2",
        ),
        (
            &["step", "./empty.wasm"],
            "it does not export kiln:plugin/step@0.1.0",
        ),
        (
            &["step", "hello", "--memory", "lots"],
            "invalid memory size `lots`",
        ),
    ];
    for (args, message) in cases {
        let run = Run::of(f.kiln(args));
        assert_eq!(run.output.status.code(), Some(2), "{args:?}");
        assert!(run.stderr().contains(message), "{args:?}: {}", run.stderr());
    }
}

#[test]
fn plugin_list_shows_every_built_in_its_manifest_declares() {
    let f = Fixture::new();
    let run = Run::of(f.kiln(&["plugin", "list", "--json"]));
    let infos: serde_json::Value = serde_json::from_str(&run.ok()).unwrap();
    let listed: Vec<&str> = infos
        .as_array()
        .unwrap()
        .iter()
        .map(|info| info["name"].as_str().unwrap())
        .collect();
    // The build script embeds each crate under plugins/ whose manifest
    // declares `[package.metadata.kiln] builtin`, under that name.
    assert_eq!(listed, kiln_runtime::plugins::names());
    for name in ["hello", "registry", "dockerfile-build", "maven-artifact"] {
        assert!(listed.contains(&name), "{name} missing from {listed:?}");
    }
}
