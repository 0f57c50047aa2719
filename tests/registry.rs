//! The registry plugin against the real distribution registry
//! (`docker-registry`, Debian's 2.8) on 127.0.0.1, in three set-ups:
//! anonymous, htpasswd Basic auth, and token auth with a token service of
//! our own. `skopeo` and `umoci` are the independent readers and writers.

mod common;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::images::umoci_new;
use common::registry::{Auth, PASSWORD, Registry, USER};
use common::{Run, kiln, run_ok};

/// An OCI layout built by umoci, with one layer holding `files`.
fn umoci_layout(dir: &Path, files: &[(&str, &[u8])]) -> PathBuf {
    let layout = dir.join("umoci-layout");
    let bundle = dir.join("bundle");
    let image = umoci_new(&layout, "v1");
    run_ok(
        Command::new("umoci")
            .args(["unpack", "--rootless", "--image", &image])
            .arg(&bundle),
    );
    for (name, content) in files {
        std::fs::write(bundle.join("rootfs").join(name), content).unwrap();
    }
    run_ok(
        Command::new("umoci")
            .args(["repack", "--image", &image])
            .arg(&bundle),
    );
    run_ok(Command::new("umoci").args(["gc", "--layout"]).arg(&layout));
    layout
}

/// Every blob of a layout: name and contents.
fn blobs(layout: &Path) -> Vec<(String, Vec<u8>)> {
    let dir = layout.join("blobs/sha256");
    let mut all: Vec<(String, Vec<u8>)> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap())
        .filter(|e| !e.file_name().to_string_lossy().starts_with('.'))
        .map(|e| {
            (
                e.file_name().to_string_lossy().into_owned(),
                std::fs::read(e.path()).unwrap(),
            )
        })
        .collect();
    all.sort();
    all
}

/// A user whose docker config holds nothing, or what `kiln login` stored.
struct User {
    home: tempfile::TempDir,
}

impl User {
    fn new() -> User {
        User {
            home: tempfile::tempdir().unwrap(),
        }
    }

    fn kiln(&self, args: &[&str]) -> Command {
        let mut command = kiln(self.home.path(), args);
        command.env("DOCKER_CONFIG", self.home.path().join(".docker"));
        command
    }

    fn run(&self, args: &[&str]) -> Run {
        Run::of(self.kiln(args))
    }

    fn login(&self, host: &str, password: &str) -> Run {
        let mut command = self.kiln(&["login", host, "-u", USER, "--password-stdin"]);
        command
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let started = Instant::now();
        let mut child = command.spawn().unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(password.as_bytes())
            .unwrap();
        let output = child.wait_with_output().unwrap();
        Run {
            output,
            elapsed: started.elapsed(),
        }
    }
}

fn output_value(out: &str, key: &str) -> String {
    out.lines()
        .find_map(|l| l.strip_prefix(&format!("{key}=")))
        .unwrap_or_else(|| panic!("no {key}= in:\n{out}"))
        .to_owned()
}

fn scenario(auth: Auth) {
    let registry = Registry::start(auth);
    let host = registry.host();
    let work = tempfile::tempdir().unwrap();
    let user = User::new();

    if auth != Auth::Anonymous {
        // Wrong password: refused, and the password never printed.
        let wrong = "not-the-password-123";
        let refused = user.login(&host, wrong);
        assert_eq!(refused.code(), Some(1), "{}", refused.all());
        assert!(
            refused
                .all()
                .contains(&format!("authentication failed for {host}")),
            "{}",
            refused.all()
        );
        assert!(!refused.all().contains(wrong), "{}", refused.all());
        // Without credentials, a push is refused too.
        let layout = umoci_layout(&work.path().join("unauth"), &[("a.txt", b"a")]);
        let anonymous = user.run(&[
            "push",
            layout.to_str().unwrap(),
            &format!("{host}/test/app:v1"),
        ]);
        assert_eq!(anonymous.code(), Some(1));
        assert!(
            anonymous
                .all()
                .contains(&format!("authentication failed for {host}")),
            "{}",
            anonymous.all()
        );

        let accepted = user.login(&host, PASSWORD);
        assert_eq!(accepted.code(), Some(0), "{}", accepted.all());
        assert!(!accepted.all().contains(PASSWORD));
        let config = std::fs::read_to_string(user.home.path().join(".docker/config.json")).unwrap();
        assert!(config.contains(&host), "{config}");
    }

    // kiln pushes a layout; skopeo reads it back.
    let layout = umoci_layout(
        &work.path().join("kiln-push"),
        &[("hello.txt", b"hello from kiln\n")],
    );
    let reference = format!("{host}/test/app:v1");
    let digest_file = work.path().join("digest.txt");
    let pushed = user
        .run(&[
            "push",
            layout.to_str().unwrap(),
            &reference,
            "--digest-file",
            digest_file.to_str().unwrap(),
        ])
        .ok();
    let digest = output_value(&pushed, "digest");
    assert_eq!(std::fs::read_to_string(&digest_file).unwrap(), digest);
    let inspect = run_ok(
        Command::new("skopeo")
            .arg("inspect")
            .args(registry.skopeo_flags(""))
            .arg(format!("docker://{reference}")),
    );
    assert!(
        inspect.contains(&format!("\"Digest\": \"{digest}\"")),
        "{inspect}"
    );
    let copied = work.path().join("skopeo-copy");
    run_ok(
        Command::new("skopeo")
            .arg("copy")
            .args(registry.skopeo_flags("src-"))
            .arg(format!("docker://{reference}"))
            .arg(format!("oci:{}:v1", copied.display())),
    );
    let original: Vec<String> = blobs(&layout).into_iter().map(|(n, _)| n).collect();
    let via_skopeo: Vec<String> = blobs(&copied).into_iter().map(|(n, _)| n).collect();
    assert_eq!(original, via_skopeo);

    // Without a tag the image is pushed as `latest`, as docker does.
    let untagged = format!("{host}/test/untagged");
    user.run(&["push", layout.to_str().unwrap(), &untagged])
        .ok();
    let latest = run_ok(
        Command::new("skopeo")
            .arg("inspect")
            .args(registry.skopeo_flags(""))
            .arg(format!("docker://{untagged}:latest")),
    );
    assert!(
        latest.contains(&format!("\"Digest\": \"{digest}\"")),
        "{latest}"
    );

    // A second push of the same image sends no blob.
    let before = registry.blob_uploads();
    let again = user
        .run(&["push", layout.to_str().unwrap(), &reference])
        .ok();
    assert_eq!(output_value(&again, "uploaded-bytes"), "0");
    // JSON results carry integers as numbers.
    let json = user
        .run(&["push", "--json", layout.to_str().unwrap(), &reference])
        .ok();
    let result = json
        .lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .find(|event| event["event"] == "result")
        .unwrap_or_else(|| panic!("no result event in {json}"));
    assert_eq!(result["outputs"]["uploaded-bytes"], 0, "{result}");
    assert_eq!(result["outputs"]["digest"], digest.as_str(), "{result}");
    assert_eq!(
        registry.blob_uploads(),
        before,
        "the second push uploaded blobs"
    );

    // Chunked: PATCHes of 100 bytes, each at the newest Location.
    let patches_before = registry.count("\"PATCH /v2/test/chunked/blobs/uploads/");
    let chunked = user
        .run(&[
            "push",
            layout.to_str().unwrap(),
            &format!("{host}/test/chunked:v1"),
            "--chunk-size",
            "100",
        ])
        .ok();
    assert_eq!(output_value(&chunked, "digest"), digest);
    assert!(registry.count("\"PATCH /v2/test/chunked/blobs/uploads/") > patches_before + 2);

    // Mounted from the repository that has the blobs: none uploaded.
    let before = registry.blob_uploads();
    let mounted = user
        .run(&[
            "push",
            layout.to_str().unwrap(),
            &format!("{host}/test/mounted:v1"),
            "--mount-from",
            "test/app",
        ])
        .ok();
    assert_eq!(output_value(&mounted, "uploaded-bytes"), "0");
    assert!(mounted.contains("2 mounted"), "{mounted}");
    assert_eq!(
        registry.blob_uploads(),
        before,
        "a mountable blob was uploaded"
    );

    // skopeo pushes an image another tool made; kiln pulls it back
    // byte for byte.
    let other = umoci_layout(
        &work.path().join("other"),
        &[("other.txt", b"made by umoci\n")],
    );
    run_ok(
        Command::new("skopeo")
            .arg("copy")
            .args(registry.skopeo_flags("dest-"))
            .arg(format!("oci:{}:v1", other.display()))
            .arg(format!("docker://{host}/test/other:v1")),
    );
    let pulled = work.path().join("pulled");
    user.run(&[
        "pull",
        &format!("{host}/test/other:v1"),
        pulled.to_str().unwrap(),
    ])
    .ok();
    let expected: Vec<(String, Vec<u8>)> = blobs(&other);
    let got = blobs(&pulled);
    assert_eq!(
        got.iter().map(|(n, _)| n).collect::<Vec<_>>(),
        expected.iter().map(|(n, _)| n).collect::<Vec<_>>()
    );
    assert!(got == expected, "pulled blobs differ from the pushed ones");
    run_ok(Command::new("umoci").args(["ls", "--layout"]).arg(&pulled));
    // Pulling again downloads nothing.
    let before_pull = blobs(&pulled).len();
    user.run(&[
        "pull",
        &format!("{host}/test/other:v1"),
        pulled.to_str().unwrap(),
    ])
    .ok();
    assert_eq!(blobs(&pulled).len(), before_pull);

    interrupted_push(registry, &user, work.path());

    if auth != Auth::Anonymous {
        // `kiln logout` forgets what `kiln login` stored, as docker does.
        let config = user.home.path().join(".docker/config.json");
        let out = user.run(&["logout", &host]);
        assert_eq!(out.code(), Some(0), "{}", out.all());
        assert!(
            out.stderr().contains("Removed the credentials"),
            "{}",
            out.all()
        );
        let left = std::fs::read_to_string(&config).unwrap();
        assert!(!left.contains(&host), "{left}");
        let again = user.run(&["logout", &host]);
        assert!(again.stderr().contains("Not logged in"), "{}", again.all());
    }
}

/// A layout with one large, incompressible layer, written directly.
fn big_layout(dir: &Path, megabytes: usize) -> PathBuf {
    use sha2_like::digest;
    let layout = dir.join("big");
    std::fs::create_dir_all(layout.join("blobs/sha256")).unwrap();
    let mut layer = vec![0u8; megabytes << 20];
    let mut state = 0x9e3779b97f4a7c15u64;
    for chunk in layer.chunks_mut(8) {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        chunk.copy_from_slice(&state.to_le_bytes()[..chunk.len()]);
    }
    let write = |bytes: &[u8]| -> String {
        let hex = digest(bytes);
        std::fs::write(layout.join("blobs/sha256").join(&hex), bytes).unwrap();
        format!("sha256:{hex}")
    };
    let layer_digest = write(&layer);
    let config =
        br#"{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}"#;
    let config_digest = write(config);
    let manifest = format!(
        r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{config_digest}","size":{}}},"layers":[{{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"{layer_digest}","size":{}}}]}}"#,
        config.len(),
        layer.len()
    );
    let manifest_digest = write(manifest.as_bytes());
    std::fs::write(
        layout.join("oci-layout"),
        r#"{"imageLayoutVersion":"1.0.0"}"#,
    )
    .unwrap();
    std::fs::write(
        layout.join("index.json"),
        format!(
            r#"{{"schemaVersion":2,"manifests":[{{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"{manifest_digest}","size":{}}}]}}"#,
            manifest.len()
        ),
    )
    .unwrap();
    layout
}

/// SHA-256 via the coreutils binary, so the test needs no hashing crate.
mod sha2_like {
    pub fn digest(bytes: &[u8]) -> String {
        use std::io::Write;
        let mut child = std::process::Command::new("sha256sum")
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let mut stdin = child.stdin.take().unwrap();
        let data = bytes.to_vec();
        let writer = std::thread::spawn(move || stdin.write_all(&data).unwrap());
        let output = child.wait_with_output().unwrap();
        writer.join().unwrap();
        String::from_utf8(output.stdout).unwrap()[..64].to_owned()
    }
}

/// Kill the registry in the middle of a push: a clear error, no tag; then
/// restart it and push again: complete.
fn interrupted_push(mut registry: Registry, user: &User, work: &Path) {
    let host = registry.host();
    let layout = big_layout(work, 256);
    let reference = format!("{host}/test/big:v1");
    let mut push = user.kiln(&["push", layout.to_str().unwrap(), &reference]);
    push.stdout(Stdio::piped()).stderr(Stdio::piped());
    let child = push.spawn().unwrap();
    let log = registry.dir.path().join("registry.log");
    let deadline = Instant::now() + Duration::from_secs(30);
    while !std::fs::read_to_string(&log)
        .unwrap_or_default()
        .contains("POST /v2/test/big/blobs/uploads/")
    {
        assert!(
            Instant::now() < deadline,
            "the push never started uploading"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    registry.stop();
    let output = child.wait_with_output().unwrap();
    let all = String::from_utf8_lossy(&output.stdout).into_owned()
        + &String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{all}");
    assert!(
        all.contains(&format!("127.0.0.1:{}", registry.port)) && all.contains("request failed"),
        "{all}"
    );

    registry.serve();
    let missing = Command::new("skopeo")
        .arg("inspect")
        .args(registry.skopeo_flags(""))
        .arg(format!("docker://{reference}"))
        .output()
        .unwrap();
    assert!(
        !missing.status.success(),
        "the tag points at a partial image"
    );

    let done = user
        .run(&["push", layout.to_str().unwrap(), &reference])
        .ok();
    let digest = output_value(&done, "digest");
    let inspect = run_ok(
        Command::new("skopeo")
            .arg("inspect")
            .arg("--raw")
            .args(registry.skopeo_flags(""))
            .arg(format!("docker://{reference}")),
    );
    assert!(
        inspect.contains(&format!("\"size\":{}", 256u64 << 20)),
        "{inspect}"
    );
    assert!(digest.starts_with("sha256:"));
}

#[test]
fn anonymous_registry() {
    scenario(Auth::Anonymous);
}

#[test]
fn htpasswd_basic_auth() {
    scenario(Auth::Basic);
}

#[test]
fn token_auth() {
    scenario(Auth::Token);
}

/// The seed's last steps as a pipeline, inside a "GitLab job": a build
/// step hands an image layout on, the registry step pushes it with the
/// credentials GitLab's `CI_REGISTRY*` variables give, and the password
/// shows nowhere.
#[test]
fn a_pipeline_pushes_with_gitlab_credentials() {
    let registry = Registry::start(Auth::Basic);
    let host = registry.host();
    let project = tempfile::tempdir().unwrap();
    let layout = umoci_layout(project.path(), &[("app.txt", b"built by the pipeline\n")]);
    std::fs::rename(&layout, project.path().join("image")).unwrap();
    std::fs::write(
        project.path().join("kiln.yml"),
        r#"
stages: [build, image]
steps:
  build:
    stage: build
    run: test -f image/index.json
    artifacts:
      paths: [image/]
  push:
    stage: image
    uses: registry
    with:
      operation: push
      layout: /artifacts/build/image
      reference: ${CI_REGISTRY_IMAGE}/sample:${CI_COMMIT_SHORT_SHA}
    allow:
      net: [$CI_REGISTRY]
"#,
    )
    .unwrap();
    let mut run = kiln(project.path(), &["run"]);
    run.env("CI_REGISTRY", &host)
        .env("CI_REGISTRY_IMAGE", format!("{host}/group/project"))
        .env("CI_REGISTRY_USER", USER)
        .env("CI_REGISTRY_PASSWORD", PASSWORD)
        .env("CI_COMMIT_SHORT_SHA", "0123abcd")
        .env("DOCKER_CONFIG", project.path().join("no-docker-config"));
    let out = Run::of(run).ok();
    assert!(!out.contains(PASSWORD), "{out}");
    assert!(out.contains("[push] output digest=sha256:"), "{out}");
    // Which credentials the registry saw is said, so a refusal is fixed
    // at the right place.
    assert!(
        out.contains(&format!(
            "credentials for {host}: GitLab's CI_REGISTRY_USER and CI_REGISTRY_PASSWORD"
        )),
        "{out}"
    );
    let inspect = run_ok(
        Command::new("skopeo")
            .arg("inspect")
            .args(registry.skopeo_flags(""))
            .arg(format!("docker://{host}/group/project/sample:0123abcd")),
    );
    assert!(inspect.contains("\"Digest\": \"sha256:"), "{inspect}");
}
