//! `kiln build` and the `dockerfile-build` step, checked by real readers:
//! `oci-image-tool`, the OCI JSON schemas, `umoci unpack`, `skopeo`,
//! `podman` running the image, and a registry of the test's own.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

use common::images::{Entry, busybox_layout, podman_run, push_layout, unpack};
use common::registry::{Auth, Registry};
use common::{Run, kiln, run_ok};

/// A build context in a temporary directory.
struct Project {
    dir: tempfile::TempDir,
}

impl Project {
    fn new(files: &[(&str, &str)]) -> Project {
        let project = Project {
            dir: tempfile::tempdir().unwrap(),
        };
        for (path, text) in files {
            project.write(path, text);
        }
        project
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    fn write(&self, path: &str, text: &str) {
        let path = self.path().join(path);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    }

    fn chmod(&self, path: &str, mode: u32) {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(
            self.path().join(path),
            std::fs::Permissions::from_mode(mode),
        )
        .unwrap();
    }

    /// `kiln build ARGS ctx` run from the project directory, the context
    /// being its `ctx/` folder. The tests' registries run on loopback,
    /// which a Dockerfile may name only when the user allows it.
    fn build(&self, args: &[&str]) -> Run {
        let mut all = vec!["build", "--allow-net", "127.0.0.1"];
        all.extend_from_slice(args);
        all.push("ctx");
        Run::of(kiln(self.path(), &all))
    }
}

/// Whether an optional reader is installed; under `KILN_REQUIRE_CONFORMANCE`
/// (CI) a missing one fails the test instead.
fn have(tool: &str) -> bool {
    let found = Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .output()
        .is_ok_and(|o| o.status.success());
    assert!(
        found || std::env::var_os("KILN_REQUIRE_CONFORMANCE").is_none(),
        "{tool} is required (KILN_REQUIRE_CONFORMANCE is set)"
    );
    if !found {
        eprintln!("skipping the {tool} checks: not installed");
    }
    found
}

/// `name=` value printed by a successful build.
fn output_value(run: &Run, name: &str) -> String {
    run.ok()
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{name}=")))
        .unwrap_or_else(|| panic!("no {name}= in {}", run.all()))
        .to_owned()
}

/// A blob of a layout, parsed.
fn blob(layout: &Path, digest: &str) -> Value {
    let path = layout
        .join("blobs/sha256")
        .join(digest.trim_start_matches("sha256:"));
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

/// Validate a document against one of the OCI image-spec schemas in the
/// shared conformance data (draft-04, cross-file `$ref`s resolved locally).
fn validate(schema: &str, document: &Value) {
    let Some(conformance) = common::conformance::dir() else {
        return;
    };
    let dir = conformance.join("oci-image-spec/schema");
    struct Local(PathBuf);
    impl jsonschema::Retrieve for Local {
        fn retrieve(
            &self,
            uri: &jsonschema::Uri<String>,
        ) -> Result<Value, Box<dyn std::error::Error + Send + Sync>> {
            let path = uri.path().as_str();
            let file = match path.rsplit('/').next().unwrap_or_default() {
                name if name.ends_with(".json") => name.to_owned(),
                "descriptor" => "content-descriptor.json".to_owned(),
                "mediaType" => "defs-descriptor.json".to_owned(),
                "manifest" => "image-manifest-schema.json".to_owned(),
                "index" => "image-index-schema.json".to_owned(),
                "config" => "config-schema.json".to_owned(),
                "layout" => "image-layout-schema.json".to_owned(),
                other => return Err(format!("no local schema for {other}").into()),
            };
            Ok(serde_json::from_slice(&std::fs::read(self.0.join(file))?)?)
        }
    }
    let schema: Value = serde_json::from_slice(&std::fs::read(dir.join(schema)).unwrap()).unwrap();
    let validator = jsonschema::draft4::options()
        .with_retriever(Local(dir))
        .build(&schema)
        .unwrap();
    let errors: Vec<String> = validator
        .iter_errors(document)
        .map(|e| format!("{e} at {}", e.instance_path()))
        .collect();
    assert!(errors.is_empty(), "{errors:#?}\nin {document:#}");
}

fn file(mode: u32, uid: u32, gid: u32, content: &str) -> Entry {
    Entry {
        kind: "file",
        mode,
        uid,
        gid,
        content: content.as_bytes().to_vec(),
    }
}

fn dir(mode: u32, uid: u32, gid: u32) -> Entry {
    Entry {
        kind: "dir",
        mode,
        uid,
        gid,
        content: Vec::new(),
    }
}

fn symlink(target: &str) -> Entry {
    Entry {
        kind: "symlink",
        mode: 0o777,
        uid: 0,
        gid: 0,
        content: target.as_bytes().to_vec(),
    }
}

const SCRATCH_APP: &str = "\
FROM scratch
WORKDIR /app
COPY run.sh lib/ ./
COPY --chown=10:20 --chmod=640 conf.txt /etc/app/
COPY dir /data/
ENV MODE=prod
LABEL org.opencontainers.image.title=\"kiln test\"
EXPOSE 8080
SHELL [\"/bin/ash\", \"-eo\", \"pipefail\", \"-c\"]
CMD run.sh --serve
";

fn scratch_project() -> Project {
    let project = Project::new(&[
        ("ctx/Dockerfile", SCRATCH_APP),
        ("ctx/run.sh", "#!/bin/sh\necho run\n"),
        ("ctx/lib/util.sh", "util\n"),
        ("ctx/conf.txt", "conf\n"),
        ("ctx/dir/a.txt", "a\n"),
        ("ctx/dir/nested/b.txt", "b\n"),
    ]);
    project.chmod("ctx/run.sh", 0o755);
    std::os::unix::fs::symlink("/etc/passwd", project.path().join("ctx/dir/outside")).unwrap();
    std::os::unix::fs::symlink("a.txt", project.path().join("ctx/dir/inside")).unwrap();
    project
}

#[test]
fn a_scratch_image_is_valid_oci_and_unpacks_to_exactly_its_files() {
    let project = scratch_project();
    let run = project.build(&["-t", "registry.example/app:latest", "--output", "oci:out"]);
    let digest = output_value(&run, "digest");
    let layout = project.path().join("out");

    if have("oci-image-tool") {
        let check = Command::new("oci-image-tool")
            .args(["validate", "--type", "image", "--ref", "name=latest"])
            .arg(&layout)
            .output()
            .unwrap();
        assert!(
            check.status.success(),
            "{}",
            String::from_utf8_lossy(&check.stderr)
        );
    }
    let index: Value =
        serde_json::from_slice(&std::fs::read(layout.join("index.json")).unwrap()).unwrap();
    validate("image-index-schema.json", &index);
    assert_eq!(index["manifests"][0]["digest"], digest.as_str());
    let manifest = blob(&layout, &digest);
    validate("image-manifest-schema.json", &manifest);
    let config = blob(&layout, manifest["config"]["digest"].as_str().unwrap());
    validate("config-schema.json", &config);
    let layout_marker: Value =
        serde_json::from_slice(&std::fs::read(layout.join("oci-layout")).unwrap()).unwrap();
    validate("image-layout-schema.json", &layout_marker);

    // The config: BuildKit's defaults for scratch, the shell form run by
    // SHELL, history with a layer per COPY/WORKDIR.
    let c = &config["config"];
    assert_eq!(
        c["Env"],
        serde_json::json!([
            "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            "MODE=prod"
        ])
    );
    assert_eq!(
        c["Cmd"],
        serde_json::json!(["/bin/ash", "-eo", "pipefail", "-c", "run.sh --serve"])
    );
    assert_eq!(c["WorkingDir"], "/app");
    assert_eq!(c["Labels"]["org.opencontainers.image.title"], "kiln test");
    assert_eq!(c["ExposedPorts"], serde_json::json!({"8080/tcp": {}}));
    assert_eq!(config["created"], "1970-01-01T00:00:00Z");
    let history = config["history"].as_array().unwrap();
    let with_layers = history
        .iter()
        .filter(|h| h.get("empty_layer").is_none())
        .count();
    assert_eq!(with_layers, manifest["layers"].as_array().unwrap().len());
    assert_eq!(history[1]["created_by"], "COPY run.sh lib/ ./ # buildkit");

    // Unpacked by umoci: exactly these paths, modes, owners and contents.
    let tree = unpack(&layout, &project.path().join("bundle")).unwrap();
    let expected: BTreeMap<String, Entry> = [
        ("/", dir(0o755, 0, 0)),
        ("/app", dir(0o755, 0, 0)),
        ("/app/run.sh", file(0o755, 0, 0, "#!/bin/sh\necho run\n")),
        ("/app/util.sh", file(0o644, 0, 0, "util\n")),
        ("/etc", dir(0o755, 10, 20)),
        ("/etc/app", dir(0o755, 10, 20)),
        ("/etc/app/conf.txt", file(0o640, 10, 20, "conf\n")),
        ("/data", dir(0o755, 0, 0)),
        ("/data/a.txt", file(0o644, 0, 0, "a\n")),
        ("/data/inside", symlink("a.txt")),
        ("/data/outside", symlink("/etc/passwd")),
        ("/data/nested", dir(0o755, 0, 0)),
        ("/data/nested/b.txt", file(0o644, 0, 0, "b\n")),
    ]
    .into_iter()
    .map(|(p, e)| (p.to_owned(), e))
    .collect();
    let shown = |t: &BTreeMap<String, Entry>| -> Vec<String> {
        t.iter().map(|(p, e)| format!("{p}: {e}")).collect()
    };
    assert_eq!(shown(&tree), shown(&expected));
}

#[test]
fn the_same_sources_give_the_same_digest_whatever_their_mtimes() {
    let first = scratch_project();
    let second = scratch_project();
    let touch = |project: &Project, stamp: &str| {
        run_ok(
            Command::new("find")
                .arg(project.path().join("ctx"))
                .args(["-exec", "touch", "-h", "-d", stamp, "{}", "+"]),
        );
    };
    touch(&first, "2001-02-03 04:05:06");
    touch(&second, "2024-06-07 08:09:10");
    let a = output_value(&first.build(&["--output", "oci:out"]), "digest");
    let b = output_value(&second.build(&["--output", "oci:out"]), "digest");
    assert_eq!(a, b, "two checkouts differing only in mtimes");

    // SOURCE_DATE_EPOCH sets `created` and clamps file times; the layers
    // do not change when the sources are older than it.
    let mut command = kiln(second.path(), &["build", "--output", "oci:epoch", "ctx"]);
    command.env("SOURCE_DATE_EPOCH", "1700000000");
    let run = Run::of(command);
    let digest = output_value(&run, "digest");
    let layout = second.path().join("epoch");
    let manifest = blob(&layout, &digest);
    let config = blob(&layout, manifest["config"]["digest"].as_str().unwrap());
    assert_eq!(config["created"], "2023-11-14T22:13:20Z");
    let listing = run_ok(
        Command::new("tar")
            .args(["--list", "--verbose", "--full-time", "--gzip", "--file"])
            .arg(
                layout.join("blobs/sha256").join(
                    manifest["layers"][1]["digest"]
                        .as_str()
                        .unwrap()
                        .trim_start_matches("sha256:"),
                ),
            ),
    );
    assert!(listing.contains("2023-11-14 22:13:20"), "{listing}");
}

#[test]
fn a_rebuild_with_nothing_changed_writes_no_layer() {
    let project = scratch_project();
    let first = project.build(&["--output", "oci:out"]);
    let second = project.build(&["--output", "oci:out"]);
    assert_eq!(
        output_value(&first, "digest"),
        output_value(&second, "digest")
    );
    assert!(
        second.all().contains("(0 layers written, 4 reused)"),
        "{}",
        second.all()
    );
    // A rewrite that keeps the size and the mtime (`cp -p`) is noticed:
    // the change time is part of the key.
    let conf = project.path().join("ctx/conf.txt");
    let stamp = project.path().join("stamp");
    std::fs::write(&stamp, "").unwrap();
    run_ok(Command::new("touch").arg("-r").arg(&conf).arg(&stamp));
    std::fs::write(&conf, "CONF\n").unwrap();
    run_ok(Command::new("touch").arg("-r").arg(&stamp).arg(&conf));
    let same_size = project.build(&["--output", "oci:out"]);
    assert!(
        same_size.all().contains("(1 layers written, 3 reused)"),
        "{}",
        same_size.all()
    );
    // A changed file is noticed (size and time are part of the key).
    project.write("ctx/conf.txt", "changed\n");
    let third = project.build(&["--output", "oci:out"]);
    assert!(
        third.all().contains("(1 layers written, 3 reused)"),
        "{}",
        third.all()
    );
    assert_ne!(
        output_value(&first, "digest"),
        output_value(&third, "digest")
    );
}

#[test]
fn the_build_context_is_a_wall() {
    let project = Project::new(&[
        ("secret.txt", "top secret\n"),
        ("ctx/Dockerfile", "FROM scratch\nCOPY ../secret.txt /x\n"),
    ]);
    let run = project.build(&["--output", "oci:out"]);
    assert_eq!(run.code(), Some(2), "{}", run.all());
    assert!(
        run.stderr()
            .contains("Dockerfile:2: COPY: `../secret.txt` is outside the build context"),
        "{}",
        run.stderr()
    );

    // A symlink leading out is followed only inside the context: `/etc`
    // means the context's own `etc`, which does not exist.
    std::os::unix::fs::symlink("/etc/passwd", project.path().join("ctx/passwd")).unwrap();
    project.write("ctx/Dockerfile", "FROM scratch\nCOPY passwd /passwd\n");
    let run = project.build(&["--output", "oci:out"]);
    assert_eq!(run.code(), Some(2), "{}", run.all());
    assert!(
        run.stderr().contains("`passwd` matches nothing"),
        "{}",
        run.stderr()
    );

    // Archive entries may not climb out of their destination.
    let evil = project.path().join("evil");
    std::fs::create_dir_all(evil.join("a")).unwrap();
    std::fs::write(evil.join("x"), "x").unwrap();
    run_ok(Command::new("tar").current_dir(evil.join("a")).args([
        "--create",
        "--file",
        "../../ctx/evil.tar",
        "--absolute-names",
        "../x",
    ]));
    project.write("ctx/Dockerfile", "FROM scratch\nADD evil.tar /dest/\n");
    let run = project.build(&["--output", "oci:out"]);
    assert_eq!(run.code(), Some(2), "{}", run.all());
    assert!(
        run.stderr()
            .contains("entry `../x` would be written outside its destination"),
        "{}",
        run.stderr()
    );

    // Decompression is bounded: 8 MiB of zeros against a 1 MiB limit.
    run_ok(Command::new("sh").current_dir(project.path().join("ctx")).args([
        "-c",
        "mkdir -p big && head -c 8388608 /dev/zero > big/zeros && tar -czf big.tar.gz big && rm -r big",
    ]));
    project.write("ctx/Dockerfile", "FROM scratch\nADD big.tar.gz /\n");
    std::fs::create_dir_all(project.path().join("out")).unwrap();
    let run = Run::of(kiln(
        project.path(),
        &[
            "step",
            "dockerfile-build",
            "--workspace",
            "ctx",
            "--output",
            "out",
            "--input",
            "output=/output",
            "--input",
            "extract-limit-mb=1",
        ],
    ));
    assert_ne!(run.code(), Some(0), "{}", run.all());
    assert!(
        run.all().contains("would exceed the extraction limit"),
        "{}",
        run.all()
    );
}

#[test]
fn a_copy_from_completed_by_a_stage_arg_builds_and_the_layout_is_named() {
    // The host sees `${S}-x` with the global scope only (`-x`, not an image
    // reference); the plugin completes it with the stage's ARG.
    let project = Project::new(&[
        (
            "ctx/Dockerfile",
            "FROM scratch AS tools-x\nCOPY a.txt /a.txt\nFROM scratch\nARG S=tools\nCOPY --from=${S}-x /a.txt /b.txt\n",
        ),
        ("ctx/a.txt", "a\n"),
    ]);
    let run = project.build(&["--output", "oci:out"]);
    let layout = output_value(&run, "layout");
    assert_eq!(
        Path::new(&layout),
        project.path().join("out").canonicalize().unwrap()
    );
    // The layout is named with the build's outputs, before anything else.
    let stdout = run.ok();
    let lines: Vec<&str> = stdout.lines().collect();
    assert!(lines[0].starts_with("digest="), "{lines:?}");
    assert!(lines[1].starts_with("layout="), "{lines:?}");
}

#[test]
fn buildx_habits_work() {
    let project = Project::new(&[
        (
            "ctx/Dockerfile",
            "ARG GREETING\nFROM scratch\nARG GREETING\nLABEL greeting=$GREETING\nCOPY a.txt /\n",
        ),
        ("ctx/a.txt", "a\n"),
    ]);
    // --build-arg NAME takes the value from the environment; an argument
    // no ARG declares is named in a warning; --label adds to the
    // Dockerfile's; buildx's -o form; --iidfile and --metadata-file.
    let mut command = kiln(
        project.path(),
        &[
            "build",
            "--build-arg",
            "GREETING",
            "--build-arg",
            "GRETING=typo",
            "--label",
            "team=ci",
            "-o",
            "type=oci,dest=out,tar=false",
            "--iidfile",
            "id.txt",
            "--metadata-file",
            "meta.json",
            "--progress",
            "plain",
            "ctx",
        ],
    );
    command.env("GREETING", "hello from the environment");
    let run = Run::of(command);
    let digest = output_value(&run, "digest");
    assert!(
        run.stderr()
            .contains("build argument GRETING is not declared by any ARG in Dockerfile"),
        "{}",
        run.stderr()
    );
    let layout = project.path().join("out");
    let manifest = blob(&layout, &digest);
    let config = blob(&layout, manifest["config"]["digest"].as_str().unwrap());
    assert_eq!(
        config["config"]["Labels"]["greeting"],
        "hello from the environment"
    );
    assert_eq!(config["config"]["Labels"]["team"], "ci");
    assert_eq!(
        std::fs::read_to_string(project.path().join("id.txt")).unwrap(),
        digest
    );
    let meta: Value =
        serde_json::from_slice(&std::fs::read(project.path().join("meta.json")).unwrap()).unwrap();
    assert_eq!(meta["containerimage.digest"], digest.as_str());

    // -q prints the digest alone; --no-cache writes every layer anew.
    let quiet = project.build(&[
        "-q",
        "--no-cache",
        "--output",
        "oci:out",
        "--iidfile",
        "q.txt",
    ]);
    let printed = std::fs::read_to_string(project.path().join("q.txt")).unwrap();
    assert!(printed.starts_with("sha256:"), "{printed}");
    assert_eq!(quiet.ok(), format!("{printed}\n"));
    assert_eq!(quiet.stderr(), "");
    let verbose = project.build(&["--no-cache", "--output", "oci:out"]);
    assert!(
        verbose.stderr().contains("wrote layer"),
        "{}",
        verbose.stderr()
    );
    let cached = project.build(&["--output", "oci:out"]);
    assert!(
        cached.stderr().contains("reused layer"),
        "{}",
        cached.stderr()
    );

    // -f - reads the Dockerfile from standard input.
    let mut piped = kiln(
        project.path(),
        &["build", "-f", "-", "-o", "oci:piped", "ctx"],
    );
    piped
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let mut child = piped.spawn().unwrap();
    std::io::Write::write_all(
        &mut child.stdin.take().unwrap(),
        b"FROM scratch\nCOPY a.txt /from-stdin.txt\n",
    )
    .unwrap();
    let output = child.wait_with_output().unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );

    // buildx outputs kiln does not write say what to use.
    let tar = project.build(&["-o", "type=oci,dest=image.tar"]);
    assert_eq!(tar.code(), Some(2), "{}", tar.all());
    assert!(tar.stderr().contains("add tar=false"), "{}", tar.stderr());
    let local = project.build(&["-o", "type=local,dest=dir"]);
    assert!(
        local.stderr().contains("kiln does not write type=local"),
        "{}",
        local.stderr()
    );
}

#[test]
fn a_misspelt_stage_and_an_empty_from_say_what_was_meant() {
    let project = Project::new(&[
        (
            "ctx/Dockerfile",
            "FROM scratch AS build\nCOPY a.txt /\nFROM scratch\nCOPY --from=buildr /a.txt /\n",
        ),
        ("ctx/a.txt", "a\n"),
    ]);
    let typo = project.build(&["--output", "oci:out"]);
    assert_eq!(typo.code(), Some(2), "{}", typo.all());
    assert!(
        typo.stderr().contains("Dockerfile:4: COPY:")
            && typo.stderr().contains("did you mean the stage `build`?"),
        "{}",
        typo.stderr()
    );
    project.write("ctx/Dockerfile", "ARG BASE\nFROM ${BASE}\n");
    let empty = project.build(&["--output", "oci:out"]);
    assert_eq!(empty.code(), Some(2), "{}", empty.all());
    assert!(
        empty
            .stderr()
            .contains("Dockerfile:2: FROM: `${BASE}` expands to an empty image name"),
        "{}",
        empty.stderr()
    );
}

/// Writing, pushing and pulling large blobs report progress with short
/// labels, ending at their totals.
#[test]
fn long_work_reports_progress() {
    let project = Project::new(&[("ctx/Dockerfile", "FROM scratch\nCOPY big.bin /\n")]);
    // 9 MiB that gzip cannot shrink below the 8 MiB progress threshold.
    let mut state = 0x2545f4914f6cdd1du64;
    let big: Vec<u8> = (0..9 << 20)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state as u8
        })
        .collect();
    std::fs::write(project.path().join("ctx/big.bin"), big).unwrap();
    let registry = Registry::start(Auth::Anonymous);
    let tag = format!("{}/big:1", registry.host());
    let progress = |run: &Run| -> BTreeMap<String, (u64, u64)> {
        run.ok()
            .lines()
            .filter_map(|line| serde_json::from_str::<Value>(line).ok())
            .filter(|event| event["event"] == "progress")
            .map(|event| {
                (
                    event["task"].as_str().unwrap().to_owned(),
                    (
                        event["done"].as_u64().unwrap(),
                        event["total"].as_u64().unwrap(),
                    ),
                )
            })
            .collect()
    };
    let built = progress(&project.build(&["--json", "-o", "oci:out", "-t", &tag, "--push"]));
    let (done, total) = built["write layer"];
    assert_eq!(done, total, "{built:?}");
    let pushed: Vec<&String> = built
        .keys()
        .filter(|t| t.starts_with("push sha256:"))
        .collect();
    assert_eq!(pushed.len(), 1, "{built:?}");
    assert_eq!(pushed[0].len(), "push sha256:".len() + 12, "a short label");
    let pulled = progress(&Run::of(kiln(
        project.path(),
        &["pull", "--json", &tag, "pulled"],
    )));
    assert!(
        pulled
            .iter()
            .any(|(task, (done, total))| task.starts_with("pull sha256:") && done == total),
        "{pulled:?}"
    );
}

#[test]
fn run_is_refused_naming_the_file_and_line() {
    let project = Project::new(&[("ctx/Dockerfile", "FROM scratch\n\nRUN echo hi\n")]);
    // --check refuses it without building, and so does every build,
    // before it writes a layer.
    let check = project.build(&["--check"]);
    assert_eq!(check.code(), Some(2), "{}", check.all());
    assert!(
        check.stderr().contains(
            "Dockerfile:3: RUN: RUN runs a command in the image, which this build is not granted"
        ),
        "{}",
        check.stderr()
    );
    project.write(
        "ctx/Dockerfile",
        "FROM scratch AS tools\nRUN make\nFROM scratch\nCOPY --from=tools /a /a\n",
    );
    let needed = project.build(&["--check"]);
    assert!(
        needed.stderr().contains("Dockerfile:2: RUN:"),
        "{}",
        needed.stderr()
    );
    project.write(
        "ctx/Dockerfile",
        "FROM scratch AS tools\nRUN make\nFROM scratch\nLABEL a=b\n",
    );
    let unneeded = project.build(&["--check"]);
    assert_eq!(unneeded.code(), Some(0), "{}", unneeded.all());
    assert!(
        unneeded.stderr().contains("nothing the build would refuse"),
        "{}",
        unneeded.stderr()
    );
    assert!(
        !project.path().join("out").exists(),
        "--check builds nothing"
    );
    project.write("ctx/Dockerfile", "FROM scratch\n\nRUN echo hi\n");
    let run = project.build(&["--output", "oci:out"]);
    assert_eq!(run.code(), Some(2), "{}", run.all());
    assert!(
        run.stderr().contains(
            "Dockerfile:3: RUN: RUN runs a command in the image, which this build is not granted"
        ),
        "{}",
        run.stderr()
    );
    assert!(
        !project.path().join("out/index.json").exists(),
        "nothing half-written"
    );
}

#[test]
fn zstd_layers_decompress_to_their_diff_ids() {
    let project = scratch_project();
    let run = project.build(&["--compression", "zstd", "--output", "oci:out"]);
    let layout = project.path().join("out");
    let manifest = blob(&layout, &output_value(&run, "digest"));
    let config = blob(&layout, manifest["config"]["digest"].as_str().unwrap());
    for (layer, diff_id) in manifest["layers"]
        .as_array()
        .unwrap()
        .iter()
        .zip(config["rootfs"]["diff_ids"].as_array().unwrap())
    {
        assert_eq!(
            layer["mediaType"],
            "application/vnd.oci.image.layer.v1.tar+zstd"
        );
        let path = layout.join("blobs/sha256").join(
            layer["digest"]
                .as_str()
                .unwrap()
                .trim_start_matches("sha256:"),
        );
        let hash = run_ok(
            Command::new("sh")
                .arg("-c")
                .arg(format!("zstd -dc {} | sha256sum", path.display())),
        );
        assert_eq!(format!("sha256:{}", &hash[..64]), diff_id.as_str().unwrap());
    }
}

/// The busybox base on a registry of the test's own, as `HOST/busybox`.
fn busybox_registry(work: &Path) -> Registry {
    let registry = Registry::start(Auth::Anonymous);
    let layout = busybox_layout(work);
    push_layout(&layout, "latest", &registry.host(), "busybox");
    registry
}

#[test]
fn an_image_on_a_busybox_base_runs_under_podman_and_pushes() {
    let project = Project::new(&[
        (
            "ctx/Dockerfile",
            "ARG BASE\nFROM $BASE\nCOPY --chown=app:app greet.sh /home/app/\nUSER app\nWORKDIR /home/app\nENTRYPOINT [\"/bin/sh\", \"/home/app/greet.sh\"]\nCMD [\"world\"]\n",
        ),
        ("ctx/greet.sh", "echo \"hello, $1 from $(id -un)\"\n"),
    ]);
    let registry = busybox_registry(project.path());
    let base = format!("BASE={}/busybox:latest", registry.host());

    // Pushed only, to the base's registry, by a Dockerfile that needs none
    // of the base's files: the base layer is referenced and mounted, never
    // downloaded.
    project.write(
        "lazy.Dockerfile",
        "ARG BASE\nFROM $BASE\nENV GREETING=hello\nCMD [\"echo\", \"hello\"]\n",
    );
    let lazy = format!("{}/greeter:lazy", registry.host());
    let run = project.build(&[
        "-f",
        "lazy.Dockerfile",
        "--build-arg",
        &base,
        "-t",
        &lazy,
        "--push",
    ]);
    run.ok();
    assert_eq!(
        registry.count("\"GET /v2/busybox/blobs/"),
        1,
        "only the config is read: {}",
        run.all()
    );
    assert!(run.all().contains("1 mounted"), "{}", run.all());

    let target = format!("{}/greeter:1", registry.host());
    let run = project.build(&[
        "--build-arg",
        &base,
        "-t",
        &target,
        "--output",
        "docker-archive:greeter.tar",
        "--push",
    ]);
    let digest = output_value(&run, "digest");

    let inspected: Value = serde_json::from_str(&run_ok(
        Command::new("skopeo")
            .args(["inspect", "--tls-verify=false", "--config"])
            .arg(format!("docker://{target}")),
    ))
    .unwrap();
    assert_eq!(
        inspected["config"]["Entrypoint"],
        serde_json::json!(["/bin/sh", "/home/app/greet.sh"])
    );
    assert_eq!(inspected["config"]["User"], "app");
    assert!(run.all().contains(&digest));

    if have("podman") {
        let out = podman_run(
            &project.path().join("podman"),
            &project.path().join("greeter.tar"),
            &target,
            &[],
        );
        assert_eq!(out.trim(), "hello, world from app");
    }
}

#[test]
fn a_pipeline_step_builds_an_image_layout_artifact() {
    let project = Project::new(&[
        (
            "kiln.yml",
            "stages: [image, check]\nsteps:\n  build-image:\n    stage: image\n    uses: dockerfile-build\n    with:\n      context: /workspace/ctx\n      tags: app:1\n      build-args: |\n        GREETING=hi\n  check:\n    stage: check\n    needs: [build-image]\n    run: umoci stat --image image:1 > stat.txt\n",
        ),
        (
            "ctx/Dockerfile",
            "FROM scratch\nARG GREETING=hello\nENV GREETING=$GREETING\nCOPY a.txt /\n",
        ),
        ("ctx/a.txt", "a\n"),
    ]);
    let run = Run::of(kiln(project.path(), &["run", "kiln.yml"]));
    run.ok();
    // The next step got the layout as its artifact and umoci read it.
    let stat = std::fs::read_to_string(project.path().join("stat.txt")).unwrap();
    assert!(stat.contains("COPY a.txt / # buildkit"), "{stat}");
    let config = image_config_named(&project.path().join("image"), "1");
    assert!(
        config["config"]["Env"].to_string().contains("GREETING=hi"),
        "{config}"
    );
}

/// The config of the image named `name` in a layout.
fn image_config_named(layout: &Path, name: &str) -> Value {
    let index: Value =
        serde_json::from_slice(&std::fs::read(layout.join("index.json")).unwrap()).unwrap();
    let entry = index["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["annotations"]["org.opencontainers.image.ref.name"] == name)
        .unwrap();
    let manifest = blob(layout, entry["digest"].as_str().unwrap());
    blob(layout, manifest["config"]["digest"].as_str().unwrap())
}

/// Write `value` as a blob of `layout`; returns its descriptor fields.
fn put_blob(layout: &Path, value: &Value) -> (String, usize) {
    use sha2::Digest;
    let bytes = serde_json::to_vec(value).unwrap();
    let hex = hex::encode(sha2::Sha256::digest(&bytes));
    std::fs::write(layout.join("blobs/sha256").join(&hex), &bytes).unwrap();
    (format!("sha256:{hex}"), bytes.len())
}

#[test]
fn bases_by_digest_by_platform_and_with_onbuild_triggers() {
    let project = Project::new(&[("ctx/hello.txt", "hello\n")]);
    let registry = busybox_registry(project.path());
    let host = registry.host();

    // A two-platform index of busybox: the arm64 entry is the same image
    // with its config saying arm64.
    let layout = project.path().join("busybox-layout");
    let index: Value =
        serde_json::from_slice(&std::fs::read(layout.join("index.json")).unwrap()).unwrap();
    let amd64 = index["manifests"][0].clone();
    let mut manifest = blob(&layout, amd64["digest"].as_str().unwrap());
    let mut config = blob(&layout, manifest["config"]["digest"].as_str().unwrap());
    config["architecture"] = "arm64".into();
    let (config_digest, config_size) = put_blob(&layout, &config);
    manifest["config"]["digest"] = config_digest.into();
    manifest["config"]["size"] = config_size.into();
    let (arm_digest, arm_size) = put_blob(&layout, &manifest);
    let platforms = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [
            {"mediaType": amd64["mediaType"], "digest": amd64["digest"], "size": amd64["size"],
             "platform": {"os": "linux", "architecture": "amd64"}},
            {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": arm_digest, "size": arm_size,
             "platform": {"os": "linux", "architecture": "arm64"}},
        ],
    });
    let (index_digest, index_size) = put_blob(&layout, &platforms);
    let top = serde_json::json!({"schemaVersion": 2, "manifests": [{
        "mediaType": "application/vnd.oci.image.index.v1+json", "digest": index_digest, "size": index_size,
        "annotations": {"org.opencontainers.image.ref.name": "multi"}}]});
    std::fs::write(layout.join("index.json"), serde_json::to_vec(&top).unwrap()).unwrap();
    run_ok(
        Command::new("skopeo")
            .args(["copy", "--all", "--dest-tls-verify=false"])
            .arg(format!("oci:{}:multi", layout.display()))
            .arg(format!("docker://{host}/multi:latest")),
    );

    project.write(
        "ctx/Dockerfile",
        &format!("FROM {host}/multi:latest\nCOPY hello.txt /\n"),
    );
    for (platform, architecture) in [("linux/amd64", "amd64"), ("linux/arm64", "arm64")] {
        let out = format!("oci:{architecture}");
        let run = project.build(&["--platform", platform, "--output", &out]);
        let built = project.path().join(architecture);
        let manifest = blob(&built, &output_value(&run, "digest"));
        let config = blob(&built, manifest["config"]["digest"].as_str().unwrap());
        assert_eq!(config["architecture"], architecture);
    }
    // Both at once (buildx's list form): one index naming each platform's
    // image, the COPY layer written once and shared, pushed as an index.
    let app = format!("{host}/app:2");
    let both = project.build(&[
        "--platform",
        "linux/amd64,linux/arm64",
        "--output",
        "oci:both",
        "-t",
        &app,
        "--push",
        "--build-arg",
        "TYPO=1",
    ]);
    // A warning about the Dockerfile is said once, not per platform.
    assert_eq!(
        both.stderr()
            .matches("build argument TYPO is not declared")
            .count(),
        1,
        "{}",
        both.stderr()
    );
    let built = project.path().join("both");
    let index = blob(&built, &output_value(&both, "digest"));
    assert_eq!(
        index["mediaType"],
        "application/vnd.oci.image.index.v1+json"
    );
    let entries = index["manifests"].as_array().unwrap();
    let architectures: Vec<&str> = entries
        .iter()
        .map(|e| e["platform"]["architecture"].as_str().unwrap())
        .collect();
    assert_eq!(architectures, ["amd64", "arm64"]);
    let top_layers: Vec<Value> = entries
        .iter()
        .map(|e| {
            let manifest = blob(&built, e["digest"].as_str().unwrap());
            let config = blob(&built, manifest["config"]["digest"].as_str().unwrap());
            assert_eq!(config["architecture"], e["platform"]["architecture"]);
            manifest["layers"].as_array().unwrap().last().unwrap()["digest"].clone()
        })
        .collect();
    assert_eq!(top_layers[0], top_layers[1], "the COPY layer is shared");
    let raw: Value = serde_json::from_str(&run_ok(
        Command::new("skopeo")
            .args(["inspect", "--raw"])
            .args(registry.skopeo_flags(""))
            .arg(format!("docker://{app}")),
    ))
    .unwrap();
    assert_eq!(raw["manifests"].as_array().unwrap().len(), 2, "{raw}");
    let arm: Value = serde_json::from_str(&run_ok(
        Command::new("skopeo")
            .args(["inspect", "--override-arch", "arm64"])
            .args(registry.skopeo_flags(""))
            .arg(format!("docker://{app}")),
    ))
    .unwrap();
    assert_eq!(arm["Architecture"], "arm64", "{arm}");
    // A docker archive holds one image; a malformed list says which entry.
    let archive = project.build(&[
        "--platform",
        "linux/amd64,linux/arm64",
        "--output",
        "docker-archive:both.tar",
    ]);
    assert_eq!(archive.code(), Some(2), "{}", archive.all());
    assert!(
        archive
            .stderr()
            .contains("a docker archive holds one image"),
        "{}",
        archive.stderr()
    );
    let typo = project.build(&["--platform", "linux/amd64,linux", "--output", "oci:none"]);
    assert_eq!(typo.code(), Some(2), "{}", typo.all());
    assert!(
        typo.stderr().contains("platform `linux` is not OS/ARCH"),
        "{}",
        typo.stderr()
    );
    // A single-platform base is refused for another platform, not
    // relabelled as it.
    project.write(
        "ctx/Dockerfile",
        &format!("FROM {host}/busybox:latest\nCOPY hello.txt /\n"),
    );
    let wrong = project.build(&["--platform", "linux/arm64", "--output", "oci:wrong"]);
    assert_eq!(wrong.code(), Some(2), "{}", wrong.all());
    assert!(
        wrong
            .stderr()
            .contains("is an image for linux/amd64, not linux/arm64"),
        "{}",
        wrong.stderr()
    );
    project.write(
        "ctx/Dockerfile",
        &format!("FROM {host}/multi:latest\nCOPY hello.txt /\n"),
    );
    let run = project.build(&["--platform", "linux/s390x", "--output", "oci:none"]);
    assert!(
        run.stderr()
            .contains("has no linux/s390x variant (it has: linux/amd64, linux/arm64)"),
        "{}",
        run.stderr()
    );

    // By digest, and with ONBUILD triggers that run in the child build.
    project.write(
        "ctx/Dockerfile",
        &format!("FROM {host}/multi@{}\nONBUILD COPY hello.txt /from-trigger.txt\nONBUILD ENV TRIGGERED=yes\n", amd64["digest"].as_str().unwrap()),
    );
    let parent = format!("{host}/parent:1");
    project.build(&["-t", &parent, "--push"]).ok();
    project.write("ctx/Dockerfile", &format!("FROM {parent}\nLABEL child=1\n"));
    let run = project.build(&["-t", "child:latest", "--output", "oci:child"]);
    let child = project.path().join("child");
    let manifest = blob(&child, &output_value(&run, "digest"));
    let config = blob(&child, manifest["config"]["digest"].as_str().unwrap());
    assert!(
        config["config"]["Env"]
            .to_string()
            .contains("TRIGGERED=yes"),
        "{config}"
    );
    assert!(
        config["config"].get("OnBuild").is_none(),
        "triggers run once: {config}"
    );
    let tree = unpack(&child, &project.path().join("child-bundle")).unwrap();
    assert_eq!(tree["/from-trigger.txt"].content, b"hello\n");
    assert!(tree.contains_key("/bin/busybox"));
}

#[test]
fn symlinks_lead_inside_the_context_and_the_image_only() {
    // A context below the step's workspace (as in a pipeline): a symlinked
    // directory pointing up must not reach the workspace's other files,
    // and .dockerignore applies to where a symlink leads.
    let project = Project::new(&[
        ("secret.txt", "top secret\n"),
        ("ctx/secret.env", "TOKEN=1\n"),
        ("ctx/.dockerignore", "secret.env\n"),
        ("ctx/rootfs/usr/bin/tool", "tool\n"),
        ("ctx/extra.sh", "extra\n"),
    ]);
    let ctx = project.path().join("ctx");
    std::os::unix::fs::symlink("..", ctx.join("up")).unwrap();
    std::os::unix::fs::symlink("secret.env", ctx.join("k")).unwrap();
    std::os::unix::fs::symlink("usr/bin", ctx.join("rootfs/bin")).unwrap();
    let step = |dockerfile: &str| {
        project.write("ctx/Dockerfile", dockerfile);
        Run::of(kiln(
            project.path(),
            &[
                "step",
                "dockerfile-build",
                "--input",
                "context=/workspace/ctx",
                "--input",
                "output=/output/image",
            ],
        ))
    };
    for escape in ["COPY up/secret.txt /x", "COPY up/*.txt /x/", "COPY k /k"] {
        let run = step(&format!("FROM scratch\n{escape}\n"));
        assert_ne!(run.code(), Some(0), "{escape}: {}", run.all());
        assert!(
            run.all().contains("matches nothing"),
            "{escape}: {}",
            run.all()
        );
    }

    // In the image, `/bin` → `usr/bin` leads a COPY destination, as the
    // kernel would; ADD extracts into an existing directory; ARG defaults
    // see earlier ARGs.
    run_ok(
        Command::new("tar")
            .current_dir(&ctx)
            .args(["-czf", "app.tar.gz", "extra.sh"]),
    );
    let run = project.build(&["--output", "oci:out"]);
    assert_ne!(
        run.code(),
        Some(0),
        "the previous Dockerfile still escapes: {}",
        run.all()
    );
    project.write(
        "ctx/Dockerfile",
        "FROM scratch\nARG DIR=opt\nARG FULL=/${DIR}/app\nCOPY rootfs/ /\nCOPY extra.sh /bin/\nWORKDIR $FULL\nADD app.tar.gz .\n",
    );
    project
        .build(&["-t", "x:latest", "--output", "oci:out"])
        .ok();
    let tree = unpack(&project.path().join("out"), &project.path().join("bundle")).unwrap();
    assert_eq!(tree["/bin"].content, b"usr/bin", "still a symlink");
    assert_eq!(tree["/usr/bin/extra.sh"].content, b"extra\n");
    assert_eq!(tree["/opt/app/extra.sh"].content, b"extra\n");
    assert!(!tree.contains_key("/opt/app/app.tar.gz"));
}

#[test]
fn add_of_a_root_file_system_tar_to_the_root_keeps_its_tree() {
    // As mmdebstrap and `tar -C DIR -cf x.tar .` write them: the first
    // entry is `./`, the root itself.
    let project = Project::new(&[("ctx/Dockerfile", "FROM scratch\nADD rootfs.tar /\n")]);
    let tree = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(tree.path().join("etc")).unwrap();
    std::fs::write(tree.path().join("etc/os-release"), "ID=test\n").unwrap();
    std::os::unix::fs::symlink("etc", tree.path().join("link")).unwrap();
    run_ok(
        Command::new("tar")
            .arg("-C")
            .arg(tree.path())
            .arg("-cf")
            .arg(project.path().join("ctx/rootfs.tar"))
            .arg("."),
    );
    let run = project.build(&["--output", "oci:out"]);
    assert_eq!(run.code(), Some(0), "{}", run.all());
    let bundle = project.path().join("bundle");
    run_ok(
        Command::new("umoci")
            .args(["unpack", "--image"])
            .arg(format!("{}:latest", project.path().join("out").display()))
            .arg(&bundle),
    );
    assert_eq!(
        std::fs::read_to_string(bundle.join("rootfs/etc/os-release")).unwrap(),
        "ID=test\n"
    );
    assert!(bundle.join("rootfs/link").is_symlink());
}
