//! End-to-end tests of `kiln run` and `kiln export gitlab` against the real
//! binary, real `sh` and real git.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

mod common;

use common::{Run, Server, hostile, kiln};

fn hostile_path() -> String {
    hostile().display().to_string()
}

struct Project {
    dir: tempfile::TempDir,
}

impl Project {
    fn new(pipeline: &str) -> Project {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("kiln.yml"), pipeline).unwrap();
        Project { dir }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    fn kiln(&self, args: &[&str]) -> Command {
        kiln(self.path(), args)
    }

    fn run(&self, args: &[&str]) -> Run {
        Run::of(self.kiln(args))
    }
}

fn mixed_pipeline() -> String {
    format!(
        r#"
stages: [build, inspect, use]
variables:
  GREETEE: pipeline
steps:
  package:
    stage: build
    run:
      - mkdir -p target
      - printf 'jar-bytes-%s' "$GREETEE" > target/app.jar
    artifacts:
      paths: [target/*.jar]
  read-jar:
    stage: inspect
    uses: {hostile}
    with:
      attack: read-file
      target: /artifacts/package/target/app.jar
  greet:
    stage: inspect
    uses: hello
    needs: []
    with:
      name: ${{GREETEE}}
  show:
    stage: use
    needs: [greet]
    run: cat greeting.txt
"#,
        hostile = hostile_path()
    )
}

#[test]
fn run_steps_and_sandboxed_steps_exchange_artifacts() {
    let project = Project::new(&mixed_pipeline());
    let out = project.run(&["run"]).ok();
    // The sandboxed step read the run: step's artifact through its mount.
    assert!(
        out.contains("[read-jar] output loot=jar-bytes-pipeline"),
        "{out}"
    );
    // The run: step got the plugin's output restored into the workspace.
    assert!(out.contains("[show] hello, pipeline!"), "{out}");
    assert!(out.contains("UNSANDBOXED"), "{out}");
    let manifest =
        std::fs::read_to_string(project.path().join(".kiln/artifacts/package/manifest.json"))
            .unwrap();
    assert!(
        manifest.contains("\"path\": \"target/app.jar\"")
            && manifest.contains("\"sha256\": \"sha256:"),
        "{manifest}"
    );

    // With --json, each plugin step's end event carries its outputs as
    // structured values.
    let json = project.run(&["run", "--json"]).ok();
    let greet = json
        .lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .find(|event| event["event"] == "step_end" && event["step"] == "greet")
        .unwrap_or_else(|| panic!("no step_end for greet in {json}"));
    assert_eq!(greet["outputs"]["message"], "hello, pipeline!", "{greet}");
    assert!(greet["outputs"]["file"].is_string(), "{greet}");
}

#[test]
fn independent_steps_run_concurrently() {
    let project = Project::new(
        "stages: [only]\nsteps:\n  a:\n    stage: only\n    run: sleep 1\n  b:\n    stage: only\n    run: sleep 1\n",
    );
    let ran = project.run(&["run", "--jobs", "2"]);
    ran.ok();
    assert!(
        ran.elapsed < Duration::from_millis(1800),
        "took {:?}",
        ran.elapsed
    );
}

#[test]
fn the_first_failure_cancels_running_steps_and_skips_dependents() {
    let project = Project::new(
        r#"
stages: [one, two]
steps:
  fails:
    stage: one
    run: sleep 0.3; exit 3
  slow:
    stage: one
    run: sleep 2; touch finished-anyway
  later:
    stage: two
    run: touch should-not-run
"#,
    );
    let ran = project.run(&["run", "--jobs", "2", "--json"]);
    assert_eq!(ran.code(), Some(1), "{}", ran.all());
    assert!(
        ran.elapsed < Duration::from_millis(1800),
        "took {:?}",
        ran.elapsed
    );
    let out = ran.all();
    assert!(
        out.contains(r#""step":"fails","stage":"one","sandboxed":false,"status":"failed""#),
        "{out}"
    );
    assert!(
        out.contains(r#""step":"slow","stage":"one","sandboxed":false,"status":"cancelled""#),
        "{out}"
    );
    assert!(
        out.contains(r#""step":"later","stage":"two","sandboxed":false,"status":"skipped""#),
        "{out}"
    );
    assert!(out.contains("a command exited with status 3"), "{out}");
    std::thread::sleep(Duration::from_millis(2500));
    assert!(
        !project.path().join("finished-anyway").exists(),
        "the cancelled step kept running"
    );
    assert!(!project.path().join("should-not-run").exists());
}

/// `kiln run` on `pipeline` fails with exit 2 and exactly `error`.
fn invalid(pipeline: &str, error: &str) {
    let project = Project::new(pipeline);
    let ran = project.run(&["run"]);
    assert_eq!(ran.code(), Some(2), "{}", ran.all());
    let first = ran.all().lines().next().unwrap_or_default().to_owned();
    assert!(
        first.starts_with(&format!("kiln: {error}")),
        "expected `{error}`, got `{first}`"
    );
}

/// What the last step would refuse is found before the first step runs,
/// by `kiln check` and by `kiln run`, at its line.
#[test]
fn mistakes_in_late_steps_stop_the_run_before_it_starts() {
    let case = |late: &str, files: &[(&str, &str)], error: &str| {
        let pipeline = format!(
            "stages: [first, late]\nsteps:\n  first:\n    stage: first\n    run: touch first-ran\n  later:\n    stage: late\n{late}"
        );
        let project = Project::new(&pipeline);
        for (path, text) in files {
            let path = project.dir.path().join(path);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, text).unwrap();
        }
        for command in ["check", "run"] {
            let ran = project.run(&[command]);
            assert_eq!(ran.code(), Some(2), "{command}: {}", ran.all());
            assert!(
                ran.stderr().contains(error),
                "{command}: expected `{error}` in {}",
                ran.stderr()
            );
            assert!(
                !project.dir.path().join("first-ran").exists(),
                "{command} ran a step"
            );
        }
    };
    case(
        "    uses: hello\n    with:\n      nmae: x\n",
        &[],
        "kiln.yml:10:13: step `later`: unknown input `nmae` for plugin hello",
    );
    case(
        "    uses: hello\n    with:\n      repeat: many\n",
        &[],
        "kiln.yml:10:15: step `later`: input `repeat`",
    );
    case(
        "    uses: ./missing.wasm\n",
        &[],
        "kiln.yml:8:11: step `later`: cannot start plugin: cannot read plugin",
    );
    case(
        "    uses: dockerfile-build\n    with:\n      context: /workspace/docker\n",
        &[("docker/Dockerfile", "FROM scratch\nCOPY a /a\n\nRUN make\n")],
        "docker/Dockerfile:4: RUN: RUN runs a command in the image, which this build is not granted",
    );
    // The Java example's shape: the context is an earlier step's artifact,
    // the Dockerfile is in the project.
    case(
        "    uses: dockerfile-build\n    with:\n      context: /artifacts/first\n      dockerfile: /workspace/docker/Dockerfile\n",
        &[("docker/Dockerfile", "FROM scratch\nRUN make\n")],
        "docker/Dockerfile:2: RUN: RUN runs a command in the image, which this build is not granted",
    );
    // The pipeline file is untrusted: the Dockerfile it names is read only
    // inside the project, never through a symlink or `..` out of it.
    let outside = tempfile::tempdir().unwrap();
    std::fs::write(outside.path().join("secret"), "TOPSECRET-dockerfile\n").unwrap();
    for dockerfile in ["/workspace/link/secret", "/workspace/../outside/secret"] {
        let project = Project::new(&format!(
            "stages: [a]\nsteps:\n  b:\n    stage: a\n    uses: dockerfile-build\n    with:\n      dockerfile: {dockerfile}\n"
        ));
        std::os::unix::fs::symlink(outside.path(), project.path().join("link")).unwrap();
        let checked = project.run(&["check"]);
        assert!(!checked.all().contains("TOPSECRET"), "{}", checked.all());
    }
    // A component a `run:` step it needs builds is checked when it starts.
    let builds_plugin = Project::new(
        "stages: [a, b]\nsteps:\n  make:\n    stage: a\n    run: cp \"$KILN_HELLO\" built.wasm\n  use:\n    stage: b\n    needs: [make]\n    uses: ./built.wasm\n",
    );
    let checked = builds_plugin.run(&["check"]);
    assert_eq!(checked.code(), Some(0), "{}", checked.all());
    // A pipeline without mistakes checks clean, running nothing.
    let project = Project::new(&mixed_pipeline());
    let checked = project.run(&["check"]);
    assert_eq!(checked.code(), Some(0), "{}", checked.all());
    assert!(
        checked.stderr().contains("4 steps checked"),
        "{}",
        checked.stderr()
    );
    assert!(!project.dir.path().join(".kiln/artifacts").exists());
}

#[test]
fn invalid_pipelines_are_located() {
    invalid(
        "stages: [a]\nsteps:\n  x:\n    stag: a\n    run: true\n",
        "kiln.yml:4:5: unknown field `stag`",
    );
    invalid(
        "stages: [a]\nsteps:\n  x:\n    stage: a\n    run: true\n    artifacts:\n      paths: 3\n",
        "kiln.yml:7:14:",
    );
    invalid(
        "stages: [a]\nsteps:\n  x:\n    stage: a\n    needs: [y]\n    run: true\n  y:\n    stage: a\n    needs: [x]\n    run: true\n",
        "kiln.yml:5:13: `needs` form a cycle: x → y → x",
    );
    invalid(
        "stages: [a]\nsteps:\n  image:\n    stage: a\n    run: true\n",
        "kiln.yml:4:5: step `image`: `image` is a reserved GitLab keyword",
    );
    invalid(
        "stages: [a]\nsteps:\n  x:\n    stage: b\n    run: true\n",
        "kiln.yml:4:12: step `x`: stage `b` is not declared in `stages:` (declared: a)",
    );
    invalid(
        "stages: [a]\nsteps:\n  x:\n    stage: a\n    uses: hello\n    with:\n      name: ${NOBODY}\n",
        "kiln.yml:7:13: step `x`: with.name: variable `NOBODY` is not set",
    );
    invalid(
        "stages: [a]\nsteps:\n  x:\n    stage: a\n    uses: oci://example.com/p@sha256:00\n",
        "kiln.yml:5:11: step `x`: `oci://example.com/p@sha256:00`: plugins from OCI registries",
    );
    invalid(
        "stages: [a]\nsteps:\n  x:\n    stage: a\n    run: true\n    allow:\n      net: [example.com]\n",
        "kiln.yml:7:7: step `x`: `allow.net` has no effect on a `run:` step",
    );
    invalid(
        "stages: [a]\nsteps:\n  x:\n    stage: a\n    uses: hello\n    allow:\n      timeout: soon\n",
        "kiln.yml:7:16: invalid timeout `soon`",
    );
}

#[test]
fn sandboxed_only_refuses_host_commands() {
    let project = Project::new(&mixed_pipeline());
    let ran = project.run(&["run", "--sandboxed-only"]);
    assert_eq!(ran.code(), Some(2));
    assert!(
        ran.all()
            .contains("step `package` runs host commands (`run:`), which --sandboxed-only refuses"),
        "{}",
        ran.all()
    );
}

fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_tree(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
}

#[test]
fn a_step_runs_on_another_machine_from_a_copied_artifacts_dir() {
    let pipeline = mixed_pipeline();
    let first = Project::new(&pipeline);
    let store_a = first.path().join("store-a");
    first
        .run(&[
            "run",
            "--step",
            "package",
            "--artifacts-dir",
            store_a.to_str().unwrap(),
        ])
        .ok();

    // The second machine has the project (no build output) and a copy of
    // the store, nothing else.
    let second = Project::new(&pipeline);
    let store_b: PathBuf = second.path().join("store-b");
    copy_tree(&store_a, &store_b);
    let out = second
        .run(&[
            "run",
            "--step",
            "read-jar",
            "--artifacts-dir",
            store_b.to_str().unwrap(),
        ])
        .ok();
    assert!(out.contains("output loot=jar-bytes-pipeline"), "{out}");
    assert!(!second.path().join("target").exists());

    // Without the artifact, the step cannot start.
    let empty = second.path().join("empty");
    let ran = second.run(&[
        "run",
        "--step",
        "read-jar",
        "--artifacts-dir",
        empty.to_str().unwrap(),
    ]);
    assert_eq!(ran.code(), Some(2));
    assert!(
        ran.all().contains("run step `package` first"),
        "{}",
        ran.all()
    );

    // A tampered or truncated artifact is refused, never used.
    let blobs = store_b.join("artifacts/package/blobs/sha256");
    let blob = std::fs::read_dir(&blobs)
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    for corruption in [&b"jar-bytes-evil!!"[..], &b"jar"[..]] {
        std::fs::write(&blob, corruption).unwrap();
        let ran = second.run(&[
            "run",
            "--step",
            "read-jar",
            "--artifacts-dir",
            store_b.to_str().unwrap(),
        ]);
        assert_eq!(ran.code(), Some(1), "{}", ran.all());
        let out = ran.all();
        assert!(
            out.contains("artifact of step `package` is corrupt: target/app.jar has"),
            "{out}"
        );
        assert!(!out.contains("jar-bytes-evil"), "{out}");
    }
}

fn git(dir: &Path, args: &[&str]) -> String {
    let output = Command::new("git")
        .args([
            "-c",
            "user.name=kiln",
            "-c",
            "user.email=kiln@example.invalid",
            "-c",
            "init.defaultBranch=main",
        ])
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap().trim().to_owned()
}

#[test]
fn gitlab_variables_come_from_the_environment_or_from_git() {
    let project = Project::new(
        r#"
stages: [show]
steps:
  vars:
    stage: show
    run: echo "sha=$CI_COMMIT_SHORT_SHA ref=$CI_COMMIT_REF_NAME dir=$CI_PROJECT_DIR password=$CI_REGISTRY_PASSWORD"
"#,
    );
    git(project.path(), &["init", "-q"]);
    git(project.path(), &["add", "kiln.yml"]);
    git(project.path(), &["commit", "-q", "-m", "pipeline"]);
    let sha = git(project.path(), &["rev-parse", "HEAD"]);

    let mut local = project.kiln(&["run"]);
    local.env("CI_REGISTRY_PASSWORD", "s3cr3t-registry-password");
    let out = Run::of(local).ok();
    let dir = project.path().canonicalize().unwrap();
    assert!(
        out.contains(&format!(
            "sha={} ref=main dir={} password=[masked]",
            &sha[..8],
            dir.display()
        )),
        "{out}"
    );
    assert!(!out.contains("s3cr3t"), "{out}");

    let mut in_gitlab = project.kiln(&["run"]);
    in_gitlab
        .env("CI_COMMIT_SHA", "0123456789abcdef0123456789abcdef01234567")
        .env("CI_COMMIT_REF_NAME", "feature/x");
    let out = Run::of(in_gitlab).ok();
    assert!(out.contains("sha=01234567 ref=feature/x"), "{out}");
}

/// GitLab's CI schema, or `None` (skip) without the conformance data.
fn gitlab_schema() -> Option<jsonschema::Validator> {
    let conformance = common::conformance::dir()?;
    let schema: serde_json::Value =
        serde_json::from_slice(&std::fs::read(conformance.join("gitlab-ci/ci.json")).unwrap())
            .unwrap();
    Some(jsonschema::draft7::new(&schema).unwrap())
}

/// `kiln export gitlab` of `pipeline`, checked against the schema and
/// kiln's own checks.
fn export_valid(validator: &jsonschema::Validator, pipeline: &str) -> serde_json::Value {
    export_valid_with(validator, pipeline, &[])
}

/// [`export_valid`] with more `kiln export gitlab` arguments.
fn export_valid_with(
    validator: &jsonschema::Validator,
    pipeline: &str,
    args: &[&str],
) -> serde_json::Value {
    let project = Project::new(pipeline);
    let mut all = vec!["export", "gitlab"];
    all.extend_from_slice(args);
    let yaml = project.run(&all).ok();
    let document: serde_json::Value = serde_saphyr::from_str(&yaml).unwrap();
    let errors: Vec<String> = validator
        .iter_errors(&document)
        .map(|e| format!("{e} at {}", e.instance_path()))
        .collect();
    assert!(errors.is_empty(), "schema errors: {errors:#?}\n{yaml}");
    kiln_pipeline::export::check(&document).unwrap();
    document
}

#[test]
fn the_gitlab_export_validates_against_gitlabs_schema() {
    let Some(validator) = gitlab_schema() else {
        return;
    };
    let mut pipeline = mixed_pipeline();
    pipeline.push_str("    cache:\n      key: maven-${hash:kiln.yml}\n      paths: [.m2/repository]\n    artifacts:\n      name: greeting\n      paths: [greeting.txt]\n    rules:\n      - if: $CI_COMMIT_REF_NAME == \"main\" && ($DRY_RUN || $TARGET != null)\n        when: never\n      - when: on_success\n");
    let document = export_valid(&validator, &pipeline);

    let jobs = document.as_object().unwrap();
    assert_eq!(jobs["read-jar"]["needs"], serde_json::json!(["package"]));
    assert_eq!(jobs["greet"]["needs"], serde_json::json!([]));
    assert_eq!(
        jobs["show"]["script"][0],
        "kiln run kiln.yml --step show --artifacts-dir .kiln"
    );
    assert_eq!(
        jobs["show"]["artifacts"]["paths"][0],
        ".kiln/artifacts/show/"
    );
    // kiln's own cache travels between jobs; the step's cache beside it.
    assert_eq!(
        jobs["show"]["cache"][0],
        serde_json::json!({"key": "kiln", "paths": [".kiln-cache/"]})
    );
    assert_eq!(jobs["show"]["cache"][1]["key"]["files"][0], "kiln.yml");
    assert_eq!(
        jobs["variables"]["KILN_CACHE_DIR"],
        "$CI_PROJECT_DIR/.kiln-cache"
    );
    assert_eq!(jobs["show"]["artifacts"]["expire_in"], "1 day");
    assert!(jobs.get("default").is_none());
    let with_image = export_valid_with(
        &validator,
        &pipeline,
        &[
            "--image",
            "registry.example.com/tools/kiln:1",
            "--expire-in",
            "2 hours",
        ],
    );
    assert_eq!(
        with_image["default"]["image"],
        "registry.example.com/tools/kiln:1"
    );
    assert_eq!(with_image["show"]["artifacts"]["expire_in"], "2 hours");
    assert_eq!(
        jobs["show"]["rules"],
        serde_json::json!([
            {"if": "$CI_COMMIT_REF_NAME == \"main\" && ($DRY_RUN || $TARGET != null)", "when": "never"},
            {"when": "on_success"}
        ])
    );
    assert!(jobs["greet"].get("rules").is_none());

    // The schema does not see a broken `needs`; kiln's own check does.
    let mut broken = document.clone();
    broken["show"]["needs"] = serde_json::json!(["nope"]);
    assert!(validator.is_valid(&broken));
    assert!(kiln_pipeline::export::check(&broken).is_err());
}

#[test]
fn the_cache_carries_directories_between_runs() {
    let project = Project::new(&format!(
        r#"
stages: [a, b]
steps:
  count:
    stage: a
    run:
      - mkdir -p .m2
      - echo run >> .m2/runs
      - echo "runs=$(wc -l < .m2/runs)"
    cache:
      key: maven-${{hash:kiln.yml}}
      paths: [.m2]
  plugin-writes:
    stage: a
    uses: {hostile}
    with: {{ attack: write-file, target: /workspace/.state/file }}
    cache: {{ key: state, paths: [.state] }}
  plugin-reads:
    stage: b
    uses: {hostile}
    with: {{ attack: read-file, target: /workspace/.state/file }}
    cache: {{ key: state, paths: [.state] }}
"#,
        hostile = hostile_path()
    ));
    let first = project.run(&["run"]).ok();
    assert!(
        first.contains("[count] runs=1") && first.contains("is empty; starting cold"),
        "{first}"
    );
    // The sandboxed steps shared the cache without touching the workspace.
    assert!(
        first.contains("[plugin-reads] output loot=overwritten by hostile plugin"),
        "{first}"
    );
    assert!(!project.path().join(".state").exists());

    // A fresh checkout: the workspace has no .m2, the cache restores it.
    std::fs::remove_dir_all(project.path().join(".m2")).unwrap();
    let second = project.run(&["run"]).ok();
    assert!(second.contains("[count] runs=2"), "{second}");
}

#[test]
fn the_readme_example_is_the_shipped_example_and_runs() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let example = std::fs::read_to_string(root.join("examples/hello/kiln.yml")).unwrap();
    let readme = std::fs::read_to_string(root.join("README.md")).unwrap();
    assert!(
        readme.contains(&example),
        "README.md must show examples/hello/kiln.yml verbatim"
    );
    let project = Project::new(&example);
    let out = project.run(&["run"]).ok();
    assert!(out.contains("[report] hello, kiln!"), "{out}");
}

/// A step fetching from `server`, granted `net: [$LOCAL_REGISTRY]`, with
/// `LOCAL_REGISTRY` declared as `registry`.
fn fetch_project(server: &Server, registry: &str) -> Project {
    Project::new(&format!(
        r#"
stages: [fetch]
variables:
  LOCAL_REGISTRY: "{registry}"
steps:
  fetch:
    stage: fetch
    uses: {hostile}
    with:
      attack: http
      target: http://127.0.0.1:{port}/v2/
    allow:
      net: [$LOCAL_REGISTRY]
"#,
        port = server.port,
        hostile = hostile_path()
    ))
}

#[test]
fn grants_may_name_variables() {
    let server = Server::start();
    let project = fetch_project(&server, &format!("127.0.0.1:{}", server.port));
    let out = project.run(&["run"]).ok();
    assert!(out.contains("output loot=200 hello from loopback"), "{out}");
    let mut unset = project.kiln(&["run"]);
    unset.env("LOCAL_REGISTRY", "not a host");
    let ran = Run::of(unset);
    assert_eq!(ran.code(), Some(2));
    assert!(
        ran.all()
            .contains("kiln.yml:13:13: step `fetch`: allow: invalid host `not a host`"),
        "{}",
        ran.all()
    );
}

/// The `status` (and `excluded` reason, if any) of every `step_end` event
/// in `--json` output, by step.
fn statuses(out: &str) -> std::collections::BTreeMap<String, String> {
    out.lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .filter(|event| event["event"] == "step_end")
        .map(|event| {
            let mut status = event["status"].as_str().unwrap().to_owned();
            if let Some(why) = event["excluded"].as_str() {
                status = format!("{status}: {why}");
            }
            (event["step"].as_str().unwrap().to_owned(), status)
        })
        .collect()
}

const RULES_PIPELINE: &str = r#"
stages: [a, b]
variables:
  DEPLOY: ""
  TARGET: staging
  EXPECTED: staging
steps:
  always:
    stage: a
    run: true
  if-set:
    stage: a
    run: true
    rules:
      - if: $DEPLOY
  if-empty:
    stage: a
    run: true
    rules:
      - if: $DEPLOY == "" && ${TARGET} != 'production'
  if-null:
    stage: a
    run: true
    rules:
      - if: $UNDECLARED == null && $TARGET == $EXPECTED
  never-first:
    stage: a
    run: true
    rules:
      - if: $TARGET == "production" || $DEPLOY && ($TARGET == "staging")
        when: never
      - when: on_success
  after:
    stage: b
    run: true
"#;

#[test]
fn rules_include_or_exclude_steps_by_the_runs_variables() {
    let project = Project::new(RULES_PIPELINE);
    // DEPLOY is declared empty in the file.
    let ran = project.run(&["run", "--json"]);
    let out = ran.ok();
    let expected = [
        ("after", "ok"),
        ("always", "ok"),
        ("if-empty", "ok"),
        ("if-null", "ok"),
        ("if-set", "skipped: none of its rules matches"),
        ("never-first", "ok"),
    ];
    let expected: std::collections::BTreeMap<String, String> = expected
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    assert_eq!(statuses(&out), expected, "{out}");
    assert!(out.contains(r#""event":"summary","ok":true"#), "{out}");

    // The environment overrides the file, as for every variable.
    let mut deploying = project.kiln(&["run"]);
    deploying.env("DEPLOY", "yes");
    let out = Run::of(deploying).ok();
    assert!(
        out.contains("── if-empty skipped: excluded by its rules (none of its rules matches) ──"),
        "{out}"
    );
    assert!(
        out.contains(r#"── never-first skipped: excluded by its rules (its rule `if: $TARGET == "production" || $DEPLOY && ($TARGET == "staging")` says `when: never`) ──"#),
        "{out}"
    );
    assert!(out.contains("── if-set ok in"), "{out}");
    let row = out.lines().find(|l| l.starts_with("never-first ")).unwrap();
    assert!(row.contains(" skipped ") && row.contains(" - "), "{row}");
}

#[test]
fn a_malformed_rule_is_located() {
    invalid(
        "stages: [a]\nsteps:\n  x:\n    stage: a\n    run: true\n    rules:\n      - if: $A == \"x\" &&\n",
        "kiln.yml:7:13: step `x`: rules: if: `$A == \"x\" &&` is not a rule expression: expected `$VAR`, a quoted string, `null` or `(` at the end",
    );
    invalid(
        "stages: [a]\nsteps:\n  x:\n    stage: a\n    run: true\n    rules:\n      - if: $A =~ /x/\n",
        "kiln.yml:7:13: step `x`: rules: if: `$A =~ /x/` is not a rule expression: expected `==` or `!=` (kiln does not match regular expressions)",
    );
    invalid(
        "stages: [a]\nsteps:\n  x:\n    stage: a\n    run: true\n    rules:\n      - when: manual\n",
        "kiln.yml:7:15: unknown variant `manual`",
    );
}

#[test]
fn needing_a_step_that_rules_exclude_is_an_error() {
    let project = Project::new(
        "stages: [a, b]\nsteps:\n  build:\n    stage: a\n    run: true\n    rules:\n      - if: $RELEASE\n  deploy:\n    stage: b\n    needs: [build]\n    run: true\n",
    );
    let ran = project.run(&["run"]);
    assert_eq!(ran.code(), Some(2), "{}", ran.all());
    assert!(
        ran.all().starts_with("kiln: kiln.yml:7:9: step `deploy` needs `build`, but `build` is excluded from this run: none of its rules matches; give `deploy` rules that exclude it too, or drop `build` from its `needs:`"),
        "{}",
        ran.all()
    );
    let ran = project.run(&["run", "--step", "build"]);
    assert_eq!(ran.code(), Some(2), "{}", ran.all());
    assert!(
        ran.all().contains("step `build` is excluded from this run by its rules: none of its rules matches; --step runs a step only where its rules include it"),
        "{}",
        ran.all()
    );
    let mut release = project.kiln(&["run"]);
    release.env("RELEASE", "1");
    Run::of(release).ok();
}

#[test]
fn exported_needs_on_steps_with_rules_are_optional_unless_written() {
    let Some(validator) = gitlab_schema() else {
        return;
    };
    let document = export_valid(
        &validator,
        "stages: [a, b]\nsteps:\n  docs:\n    stage: a\n    run: true\n    rules:\n      - if: $CI_COMMIT_REF_NAME == 'main'\n  build:\n    stage: a\n    run: true\n  test:\n    stage: b\n    run: true\n  publish:\n    stage: b\n    needs: [docs]\n    run: true\n    rules:\n      - if: $CI_COMMIT_REF_NAME == 'main'\n",
    );
    assert_eq!(
        document["test"]["needs"],
        serde_json::json!([{"job": "docs", "optional": true}, "build"])
    );
    assert_eq!(document["publish"]["needs"], serde_json::json!(["docs"]));
    assert_eq!(
        document["docs"]["rules"],
        serde_json::json!([{"if": "$CI_COMMIT_REF_NAME == 'main'"}])
    );
}

#[test]
fn grant_entries_that_expand_to_nothing_grant_nothing() {
    let server = Server::start();
    let ran = fetch_project(&server, "").run(&["run"]);
    // The step started (exit 1, not 2) and was granted no host.
    assert_eq!(ran.code(), Some(1), "{}", ran.all());
    assert!(
        ran.all().contains(&format!(
            "denied: 127.0.0.1:{} not in this step's grant",
            server.port
        )),
        "{}",
        ran.all()
    );
    assert_eq!(
        server.connections.load(std::sync::atomic::Ordering::SeqCst),
        0
    );
}
