//! Multi-tenant hardening: each test replays an attack a hostile
//! repository, plugin, Dockerfile or registry made on an earlier kiln, and
//! shows it contained (issue 10's findings, one test each), plus the
//! operator's policy and many kilns sharing one cache.

use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

mod common;

use common::{Run, Server, hostile, kiln};

const CANARY: &str = "canary-51c0ffee-not-for-steps";

/// A project directory with a pipeline, beside an `outside` directory
/// holding a canary.
struct Project {
    root: tempfile::TempDir,
}

impl Project {
    fn new() -> Project {
        let root = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(root.path().join("project")).unwrap();
        std::fs::create_dir_all(root.path().join("outside/victim")).unwrap();
        std::fs::write(root.path().join("outside/victim/keep.txt"), CANARY).unwrap();
        Project { root }
    }

    fn dir(&self) -> PathBuf {
        self.root.path().join("project")
    }

    fn outside(&self) -> PathBuf {
        self.root.path().join("outside")
    }

    fn write(&self, path: &str, text: &str) {
        let path = self.dir().join(path);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    }

    /// The hostile plugin copied into the project, for `uses: ./hostile.wasm`.
    fn with_hostile(&self) {
        std::fs::copy(hostile(), self.dir().join("hostile.wasm")).unwrap();
    }

    fn kiln(&self, args: &[&str]) -> Run {
        Run::of(kiln(&self.dir(), args))
    }

    fn attack(&self, attack: &str, target: &str, extra: &[&str]) -> Run {
        let hostile = hostile();
        let attack = format!("attack={attack}");
        let target = format!("target={target}");
        let mut args = vec![
            "step",
            hostile.to_str().unwrap(),
            "--input",
            &attack,
            "--input",
            &target,
        ];
        args.extend_from_slice(extra);
        self.kiln(&args)
    }
}

fn assert_failed(run: &Run, message: &str) {
    let all = run.all();
    assert_ne!(run.code(), Some(0), "expected a failure:\n{all}");
    assert!(all.contains(message), "expected `{message}` in:\n{all}");
    assert!(!all.contains(CANARY), "output leaks the canary:\n{all}");
}

const HELLO_PIPELINE: &str = "stages: [a]\nsteps:\n  greet:\n    stage: a\n    uses: hello\n";

#[test]
fn finding_1_a_symlinked_store_is_refused_not_followed() {
    // `.kiln` itself points outside the project.
    let p = Project::new();
    p.write("kiln.yml", HELLO_PIPELINE);
    std::os::unix::fs::symlink(p.outside(), p.dir().join(".kiln")).unwrap();
    let run = p.kiln(&["run", "--sandboxed-only"]);
    assert_failed(&run, "is a symlink");
    assert_eq!(
        std::fs::read_to_string(p.outside().join("victim/keep.txt")).unwrap(),
        CANARY
    );

    // `.kiln/out` points at a directory whose `greet` would be cleared.
    let p = Project::new();
    p.write("kiln.yml", HELLO_PIPELINE);
    std::fs::create_dir(p.dir().join(".kiln")).unwrap();
    std::fs::rename(p.outside().join("victim"), p.outside().join("greet")).unwrap();
    std::os::unix::fs::symlink(p.outside(), p.dir().join(".kiln/out")).unwrap();
    let run = p.kiln(&["run", "--sandboxed-only"]);
    assert_failed(&run, ".kiln/out is a symlink");
    assert!(p.outside().join("greet/keep.txt").exists());
    for part in ["artifacts", "work", "cache"] {
        let p = Project::new();
        p.write("kiln.yml", HELLO_PIPELINE);
        std::fs::create_dir(p.dir().join(".kiln")).unwrap();
        std::os::unix::fs::symlink(p.outside(), p.dir().join(".kiln").join(part)).unwrap();
        let run = p.kiln(&["run", "--sandboxed-only"]);
        assert_failed(&run, "is a symlink");
        assert_eq!(
            std::fs::read_dir(p.outside()).unwrap().count(),
            1,
            "kiln wrote through .kiln/{part}"
        );
    }

    // `kiln step`'s default output lies in the store too.
    let p = Project::new();
    std::fs::create_dir(p.dir().join(".kiln")).unwrap();
    std::os::unix::fs::symlink(p.outside(), p.dir().join(".kiln/out")).unwrap();
    assert_failed(&p.kiln(&["step", "hello"]), "is a symlink");
    assert!(!p.outside().join("hello").exists());

    // No step may be granted writes into kiln's cache, where compiled
    // plugins live (which are authenticated besides: see the runtime's
    // cache tests).
    let p = Project::new();
    let cache = std::env::temp_dir().join("kiln-test-cache");
    std::fs::create_dir_all(&cache).unwrap();
    let run = p.attack(
        "write-file",
        &cache.join("planted.cwasm").display().to_string(),
        &["--allow-write", cache.to_str().unwrap()],
    );
    assert_failed(&run, "kiln's own directory");
    assert!(!cache.join("planted.cwasm").exists());
}

#[test]
fn finding_2_the_output_budget_counts_what_is_printed() {
    let p = Project::new();
    let run = p.attack("empty-fields", "", &["--timeout", "60s"]);
    assert_failed(&run, "exceeded its output limit");
    assert!(
        run.all().len() < 6 << 20,
        "printed {} bytes",
        run.all().len()
    );

    // 2,000 denials naming a 60,000-character host: each line is cut and
    // charged, so this prints a few hundred kilobytes, not 120 MB.
    let run = p.attack("deny-flood", "", &["--timeout", "120s"]);
    assert!(
        run.all().contains("denied HTTP request to aaaa"),
        "{}",
        &run.all()[..run.all().len().min(2000)]
    );
    assert!(
        run.all().len() < 2 << 20,
        "printed {} bytes",
        run.all().len()
    );
}

#[test]
fn finding_4_a_secret_across_the_line_cut_is_masked() {
    let p = Project::new();
    let secret = "Zq8vN3pL0xK7wR5t";
    let mut command = kiln(
        &p.dir(),
        &[
            "step",
            hostile().to_str().unwrap(),
            "--input",
            "attack=split-secret",
            "--input",
            "target=HARDENING_SECRET",
            "--secret",
            "HARDENING_SECRET",
        ],
    );
    command.env("HARDENING_SECRET", secret);
    let run = Run::of(command);
    let all = run.ok();
    for part in [secret, &secret[..8], &secret[8..]] {
        assert!(!all.contains(part), "`{part}` printed");
    }
    assert!(all.contains("[masked]"), "{}", &all[..all.len().min(500)]);
}

#[test]
fn finding_5_stat_answers_nothing_above_a_mount() {
    let p = Project::new();
    for path in [
        "/workspace/..",
        "..",
        "/workspace/../outside/victim",
        "/output/../..",
    ] {
        let run = p.attack("stat", path, &[]);
        assert_failed(&run, "is not inside a mounted directory");
    }
    p.attack("stat", "/workspace/.", &[]).ok();
}

/// A registry that answers a manifest whose layer is 100 bytes, then sends
/// an endless body for it.
fn endless_registry() -> (u16, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let sent = Arc::new(AtomicUsize::new(0));
    let counter = sent.clone();
    let config = b"{\"architecture\":\"amd64\",\"os\":\"linux\",\"rootfs\":{\"type\":\"layers\",\"diff_ids\":[]}}";
    let config_digest = format!("sha256:{}", sha256_hex(config));
    let layer_digest = format!("sha256:{}", "ab".repeat(32));
    let manifest = format!(
        r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{config_digest}","size":{}}},"layers":[{{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":"{layer_digest}","size":100}}]}}"#,
        config.len()
    );
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let manifest = manifest.clone();
            let config_digest = config_digest.clone();
            let counter = counter.clone();
            std::thread::spawn(move || {
                let mut request = [0u8; 8192];
                let n = stream.read(&mut request).unwrap_or(0);
                let head = String::from_utf8_lossy(&request[..n]).into_owned();
                let path = head.split_whitespace().nth(1).unwrap_or("/").to_owned();
                let reply = |stream: &mut std::net::TcpStream, kind: &str, body: &[u8]| {
                    let _ = write!(
                        stream,
                        "HTTP/1.1 200 OK\r\ncontent-type: {kind}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
                        body.len()
                    );
                    let _ = stream.write_all(body);
                };
                if path.contains("/manifests/") {
                    reply(
                        &mut stream,
                        "application/vnd.oci.image.manifest.v1+json",
                        manifest.as_bytes(),
                    );
                } else if path.ends_with(&config_digest) {
                    reply(&mut stream, "application/octet-stream", config);
                } else if path.contains("/blobs/") {
                    let _ = write!(
                        stream,
                        "HTTP/1.1 200 OK\r\ncontent-type: application/octet-stream\r\nconnection: close\r\n\r\n"
                    );
                    let chunk = vec![0x5a; 64 * 1024];
                    while stream.write_all(&chunk).is_ok() {
                        counter.fetch_add(chunk.len(), Ordering::Relaxed);
                        if counter.load(Ordering::Relaxed) > 4 << 30 {
                            break;
                        }
                    }
                } else {
                    reply(&mut stream, "application/json", b"{}");
                }
            });
        }
    });
    (port, sent)
}

fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(bytes))
}

fn disk_usage(dir: &Path) -> u64 {
    let mut total = 0;
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let meta = entry.metadata().unwrap();
        total += if meta.is_dir() {
            disk_usage(&entry.path())
        } else {
            meta.len()
        };
    }
    total
}

fn partial_files(dir: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        if entry
            .file_name()
            .to_string_lossy()
            .starts_with(".kiln-partial-")
        {
            found.push(entry.path());
        } else if entry.file_type().unwrap().is_dir() {
            found.extend(partial_files(&entry.path()));
        }
    }
    found
}

#[test]
fn finding_6_an_endless_blob_stops_at_its_descriptor_size() {
    let p = Project::new();
    let (port, _sent) = endless_registry();
    let run = p.kiln(&["pull", &format!("127.0.0.1:{port}/evil/app:1"), "layout"]);
    assert_failed(&run, "longer than the 100 bytes its descriptor says");
    let layout = p.dir().join("layout");
    assert!(
        disk_usage(&layout) < 1 << 20,
        "the pull wrote {} bytes",
        disk_usage(&layout)
    );
    assert!(
        partial_files(&layout).is_empty(),
        "{:?}",
        partial_files(&layout)
    );

    // Stopped by its timeout mid-write: the host removes what the step
    // left unfinished.
    let run = p.attack("write-partial", "", &["--timeout", "1s"]);
    assert_failed(&run, "timed out after 1s");
    let output = p.dir().join(".kiln/out/kiln_test_hostile");
    assert!(output.join("kept.txt").exists());
    assert!(
        partial_files(&output).is_empty(),
        "{:?}",
        partial_files(&output)
    );
}

#[test]
fn finding_7_a_step_cannot_take_every_file_descriptor() {
    let p = Project::new();
    p.write("file.txt", "x");
    let run = p.attack("open-files", "/workspace/file.txt", &["--memory", "64MiB"]);
    assert_failed(&run, "held more than 1024 open files");
}

#[test]
fn finding_8_a_dockerfile_cannot_reach_loopback_services() {
    let p = Project::new();
    // A loopback service that is not a registry.
    let service = Server::answering(
        "404 Not Found",
        "text/html",
        format!("<html>admin console {CANARY}</html>"),
    );
    let (port, hits) = (service.port, service.connections.clone());
    p.write(
        "ctx/Dockerfile",
        &format!("FROM 127.0.0.1:{port}/internal/admin\nCOPY Dockerfile /\n"),
    );
    let run = p.kiln(&["build", "--output", "oci:out", "ctx"]);
    assert_failed(&run, "non-public address 127.0.0.1");
    assert_eq!(hits.load(Ordering::SeqCst), 0, "the service was reached");

    // The user may point at it by name; its non-registry reply is still
    // not echoed.
    let run = p.kiln(&[
        "build",
        "--allow-net",
        &format!("127.0.0.1:{port}"),
        "--output",
        "oci:out",
        "ctx",
    ]);
    assert_failed(&run, "not a registry error reply");
    assert!(hits.load(Ordering::SeqCst) > 0);
}

#[test]
fn finding_10_a_step_sees_only_its_needs() {
    let p = Project::new();
    p.with_hostile();
    p.write(
        "kiln.yml",
        "stages: [a, b]\nsteps:\n  greet:\n    stage: a\n    uses: hello\n  other:\n    stage: a\n    uses: hello\n  snoop:\n    stage: b\n    needs: [greet]\n    uses: ./hostile.wasm\n    with:\n      attack: read-file\n      target: /workspace/.kiln/artifacts/other/manifest.json\n",
    );
    let run = p.kiln(&["run", "--sandboxed-only"]);
    // The message names the project's own path, not the guest's.
    assert_failed(&run, "denied: reading /");
    assert!(
        run.all().contains("/.kiln/artifacts/other/manifest.json")
            && !run.all().contains("/workspace/"),
        "{}",
        run.all()
    );
    assert!(!run.all().contains("\"step\""), "{}", run.all());
    // Its own need is where the contract says.
    p.write(
        "kiln.yml",
        "stages: [a, b]\nsteps:\n  greet:\n    stage: a\n    uses: hello\n  read:\n    stage: b\n    needs: [greet]\n    uses: ./hostile.wasm\n    with:\n      attack: read-file\n      target: /artifacts/greet/greeting.txt\n",
    );
    let run = p.kiln(&["run", "--sandboxed-only"]);
    assert!(run.ok().contains("hello, world"), "{}", run.all());
    // Through a symlink the repository holds, the store stays hidden.
    std::os::unix::fs::symlink(".kiln/artifacts", p.dir().join("innocent")).unwrap();
    p.write(
        "kiln.yml",
        "stages: [b]\nsteps:\n  snoop:\n    stage: b\n    uses: ./hostile.wasm\n    with:\n      attack: read-file\n      target: /workspace/innocent/greet/manifest.json\n",
    );
    assert_failed(&p.kiln(&["run", "--sandboxed-only"]), "denied: reading");

    // A Docker build context at the project root passes the store by: the
    // build works and the image holds none of it.
    p.write("Dockerfile", "FROM scratch\nCOPY . /app/\n");
    p.write("unique.txt", "project root\n");
    p.write(
        "kiln.yml",
        "stages: [a]\nsteps:\n  img:\n    stage: a\n    uses: dockerfile-build\n    with:\n      context: /workspace\n",
    );
    p.kiln(&["run", "--sandboxed-only"]).ok();
    let layout = p.dir().join(".kiln/out/img/image");
    let tar = layout.join("layer.tar");
    std::fs::write(&tar, last_layer(&layout)).unwrap();
    let names = common::run_ok(Command::new("tar").arg("-tf").arg(&tar));
    assert!(names.contains("app/unique.txt"), "{names}");
    assert!(
        !names.contains(".kiln"),
        "the store went into the image: {names}"
    );
}

#[test]
fn finding_11_cache_keys_hash_only_project_files() {
    let p = Project::new();
    for key in [
        "${hash:/etc/shadow}",
        "${hash:../outside/victim/keep.txt}",
        "${hash:/dev/zero}",
    ] {
        p.write(
            "kiln.yml",
            &format!(
                "stages: [a]\nsteps:\n  greet:\n    stage: a\n    uses: hello\n    cache:\n      key: k-{key}\n      paths: [c]\n"
            ),
        );
        let run = p.kiln(&["run"]);
        assert_eq!(run.code(), Some(2), "{}", run.all());
        assert!(run.stderr().contains("kiln.yml:"), "{}", run.stderr());
        assert!(!run.all().contains(CANARY));
    }
}

#[test]
fn the_operator_policy_caps_what_a_pipeline_grants() {
    let p = Project::new();
    let policy = p.root.path().join("policy.yml");
    std::fs::write(
        &policy,
        format!(
            "read: [{0}]\nwrite: [{0}]\nnet: [registry.example.com]\nmax_memory: 256MiB\nrun_steps: false\n",
            p.dir().display()
        ),
    )
    .unwrap();
    let with_policy = |args: &[&str]| {
        let mut command = kiln(&p.dir(), args);
        command.env("KILN_POLICY", &policy);
        Run::of(command)
    };
    let cases = [
        ("    allow:\n      write: [/tmp]\n", "write access to /tmp"),
        (
            "    allow:\n      net: [evil.example.org]\n",
            "network access to evil.example.org",
        ),
        ("    allow:\n      memory: 1GiB\n", "max_memory: 256MiB"),
    ];
    for (allow, message) in cases {
        p.write(
            "kiln.yml",
            &format!("stages: [a]\nsteps:\n  first:\n    stage: a\n    run: touch ran.txt\n  greet:\n    stage: a\n    uses: hello\n{allow}"),
        );
        let run = with_policy(&["run", "--step", "greet"]);
        assert_eq!(run.code(), Some(2), "{}", run.all());
        assert!(run.stderr().contains(message), "{}", run.stderr());
        assert!(run.stderr().contains("kiln.yml:"), "{}", run.stderr());
        assert!(!p.dir().join(".kiln/out/greet").exists(), "the step ran");
    }
    // `run:` steps refused before anything runs.
    let run = with_policy(&["run"]);
    assert_eq!(run.code(), Some(2), "{}", run.all());
    assert!(
        run.stderr().contains("run_steps: false"),
        "{}",
        run.stderr()
    );
    assert!(!p.dir().join("ran.txt").exists());
    // `kiln step` flags are held to it too, and `--policy` adds a policy.
    let run = with_policy(&["step", "hello", "--allow-read", "/etc"]);
    assert_failed(&run, "read access to /etc");
    let run = Run::of(kiln(
        &p.dir(),
        &[
            "--policy",
            policy.to_str().unwrap(),
            "step",
            "hello",
            "--allow-net",
            "x.example.org",
        ],
    ));
    assert_failed(&run, "network access to x.example.org");
    // Within the caps, steps run; a broken policy file stops kiln.
    with_policy(&["step", "hello"]).ok();
    std::fs::write(&policy, "writ: []\n").unwrap();
    let run = with_policy(&["step", "hello"]);
    assert_ne!(run.code(), Some(0));
    assert!(run.all().contains("unknown field"), "{}", run.all());
}

#[test]
fn fifty_pipelines_share_one_cache_without_cross_talk() {
    let cache = tempfile::tempdir().unwrap();
    let projects: Vec<Project> = (0..50).map(|_| Project::new()).collect();
    let run_all = |projects: &[Project], offset: usize| {
        let children: Vec<_> = projects
            .iter()
            .map(|p| {
                let mut command = kiln(&p.dir(), &["run"]);
                command.env("KILN_CACHE_DIR", cache.path());
                command
                    .stdout(std::process::Stdio::piped())
                    .stderr(std::process::Stdio::piped());
                command.spawn().unwrap()
            })
            .collect();
        for (index, child) in children.into_iter().enumerate() {
            let output = child.wait_with_output().unwrap();
            let index = index + offset;
            assert!(
                output.status.success(),
                "project {index}: {}",
                String::from_utf8_lossy(&output.stderr)
            );
            let layout = projects[index - offset]
                .dir()
                .join(".kiln/out/build-image/image");
            assert_eq!(unique_file(&layout), format!("project {index}\n"));
        }
    };
    for (index, p) in projects.iter().enumerate() {
        p.write(
            "ctx/Dockerfile",
            "FROM scratch\nCOPY unique.txt /unique.txt\n",
        );
        p.write("ctx/unique.txt", &format!("project {index}\n"));
        p.write(
            "kiln.yml",
            "stages: [image]\nsteps:\n  build-image:\n    stage: image\n    uses: dockerfile-build\n    with:\n      context: /workspace/ctx\n",
        );
    }
    // A cold cache first, four at once (they race to create its key and
    // entries), then all fifty on the warm cache.
    run_all(&projects[..4], 0);
    run_all(&projects, 0);

    // Builds into one layout take turns; the layout stays valid.
    let shared = tempfile::tempdir().unwrap();
    let children: Vec<_> = projects[..8]
        .iter()
        .enumerate()
        .map(|(index, p)| {
            let mut command = kiln(
                &p.dir(),
                &[
                    "build",
                    "-t",
                    &format!("example.com/app:build-{}", (b'a' + index as u8) as char),
                    "--output",
                    &format!("oci:{}", shared.path().display()),
                    "ctx",
                ],
            );
            command.env("KILN_CACHE_DIR", cache.path());
            command
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::piped());
            command.spawn().unwrap()
        })
        .collect();
    for child in children {
        let output = child.wait_with_output().unwrap();
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    let text = unique_file(shared.path());
    assert!(text.starts_with("project "), "{text}");
    let index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(shared.path().join("index.json")).unwrap()).unwrap();
    let manifests = index["manifests"].as_array().unwrap();
    assert_eq!(manifests.len(), 8, "{index:#}");
    for manifest in manifests {
        let name = manifest["annotations"]["org.opencontainers.image.ref.name"]
            .as_str()
            .unwrap();
        // An independent reader opens every image the builds tagged.
        common::run_ok(Command::new("skopeo").args([
            "inspect",
            &format!("oci:{}:{name}", shared.path().display()),
        ]));
    }
    // No blob was torn by a concurrent writer: each holds what its name says.
    for entry in std::fs::read_dir(shared.path().join("blobs/sha256")).unwrap() {
        let entry = entry.unwrap();
        let name = entry.file_name().to_string_lossy().into_owned();
        assert!(!name.starts_with(".kiln-partial-"), "{name} left behind");
        assert_eq!(sha256_hex(&std::fs::read(entry.path()).unwrap()), name);
    }
}

/// The content of `/unique.txt` in the image of the OCI layout `layout`
/// (its first manifest's last layer), checking every digest on the way.
fn unique_file(layout: &Path) -> String {
    let bytes = last_layer(layout);
    let tar = String::from_utf8_lossy(&bytes);
    let start = tar.find("project ").expect("unique.txt in the layer");
    tar[start..start + tar[start..].find('\n').unwrap() + 1].to_owned()
}

/// The uncompressed last layer of the first image in `layout`, every
/// digest on the way checked.
fn last_layer(layout: &Path) -> Vec<u8> {
    let blob = |digest: &str| {
        let bytes = std::fs::read(layout.join("blobs/sha256").join(&digest[7..])).unwrap();
        assert_eq!(format!("sha256:{}", sha256_hex(&bytes)), digest);
        bytes
    };
    let index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(layout.join("index.json")).unwrap()).unwrap();
    let manifest: serde_json::Value =
        serde_json::from_slice(&blob(index["manifests"][0]["digest"].as_str().unwrap())).unwrap();
    let layers = manifest["layers"].as_array().unwrap();
    let layer = blob(layers.last().unwrap()["digest"].as_str().unwrap());
    let mut bytes = Vec::new();
    flate2::read::GzDecoder::new(&layer[..])
        .read_to_end(&mut bytes)
        .unwrap();
    bytes
}

#[test]
fn a_dockerfile_nested_to_overflow_the_stack_is_an_error() {
    // Found by fuzzing: nesting that once aborted the kiln process itself.
    let p = Project::new();
    for dockerfile in [
        format!("FROM scratch\n{}LABEL a=b\n", "ONBUILD ".repeat(20_000)),
        format!(
            "FROM scratch\nENV X={}x{}\n",
            "${a:-".repeat(30_000),
            "}".repeat(30_000)
        ),
        format!("FROM {}x{}\n", "${a:-".repeat(30_000), "}".repeat(30_000)),
    ] {
        p.write("ctx/Dockerfile", &dockerfile);
        let run = p.kiln(&["build", "--output", "oci:out", "ctx"]);
        assert!(
            matches!(run.code(), Some(1 | 2)),
            "kiln did not exit cleanly: {:?}\n{}",
            run.output.status,
            &run.all()[..run.all().len().min(2000)]
        );
        assert!(
            run.all().contains("ONBUILD ONBUILD") || run.all().contains("nested more than 64"),
            "{}",
            &run.all()[..run.all().len().min(2000)]
        );
    }
}
