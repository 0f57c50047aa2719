//! The whole scenario kiln exists for, end to end: `examples/java-app`
//! (a Maven project, a Dockerfile like the seed's, and `kiln.yml` mirroring
//! the seed's `.gitlab-ci.yml`) run with GitLab's `CI_*` variables pointing
//! at a real `docker-registry` with Basic auth; `skopeo` checks what
//! arrived. Then the layered variant: one class changed, only the classes
//! layer is uploaded again. Needs Maven and Debian's Maven plugins
//! (tests/run installs them).

mod common;

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;

use serde_json::Value;

use common::example::{java_example, push_base};
use common::registry::{Auth, PASSWORD, Registry, USER};
use common::{Run, kiln, run_ok};

/// `kiln run kiln.yml` in `project` as a GitLab job of commit `sha` would.
fn run_pipeline(project: &Path, registry: &Registry, sha: &str, extra: &[(&str, &str)]) -> Run {
    let mut command = kiln(project, &["run", "kiln.yml"]);
    command
        .env("CI_REGISTRY", registry.host())
        .env(
            "CI_REGISTRY_IMAGE",
            format!("{}/group/project", registry.host()),
        )
        .env("CI_REGISTRY_USER", USER)
        .env("CI_REGISTRY_PASSWORD", PASSWORD)
        .env(
            "CI_COMMIT_SHA",
            format!("{sha}{}", "0".repeat(40 - sha.len())),
        )
        .env("CI_COMMIT_SHORT_SHA", sha)
        .env(
            "BASE_IMAGE",
            format!("{}/base/busybox:latest", registry.host()),
        );
    for (name, value) in extra {
        command.env(name, value);
    }
    let run = Run::of(command);
    run.ok();
    run
}

/// `output NAME=VALUE` lines of a run's log.
fn logged_output(run: &Run, name: &str) -> String {
    let needle = format!("output {name}=");
    run.all()
        .lines()
        .find_map(|l| l.split_once(&needle).map(|(_, v)| v.trim().to_owned()))
        .unwrap_or_else(|| panic!("no `{needle}` in {}", run.all()))
}

/// Digests of the blobs uploaded to `repository` per the access log.
fn uploaded(registry: &Registry, repository: &str) -> BTreeSet<String> {
    let log = std::fs::read_to_string(registry.dir.path().join("registry.log")).unwrap_or_default();
    log.lines()
        .filter(|l| l.contains(&format!("\"PUT /v2/{repository}/blobs/uploads/")))
        .filter_map(|l| l.split("digest=").nth(1))
        .map(|d| d.split(['&', ' ', '"']).next().unwrap().replace("%3A", ":"))
        .collect()
}

fn skopeo(registry: &Registry, args: &[&str], reference: &str) -> String {
    let mut command = Command::new("skopeo");
    command.args(args).args(registry.skopeo_flags(""));
    command.arg(format!("docker://{reference}"));
    run_ok(&mut command)
}

#[test]
fn maven_project_to_image_to_registry() {
    let work = tempfile::tempdir().unwrap();
    let project = java_example(work.path());
    let registry = Registry::start(Auth::Basic);
    push_base(&registry, work.path());

    // The seed's flow: mvn package, maven-artifact, dockerfile-build,
    // login, push.
    let run = run_pipeline(&project, &registry, "abc1234", &[]);
    let recorded = logged_output(&run, "sha256");
    let target = format!("{}/group/project/sample:abc1234", registry.host());
    let config: Value =
        serde_json::from_str(&skopeo(&registry, &["inspect", "--config"], &target)).unwrap();
    assert_eq!(
        config["config"]["Entrypoint"],
        serde_json::json!(["java", "-jar", "/app/sample.jar"])
    );

    // Its top layer holds the JAR maven-artifact recorded, byte for byte.
    let manifest: Value =
        serde_json::from_str(&skopeo(&registry, &["inspect", "--raw"], &target)).unwrap();
    let top = manifest["layers"].as_array().unwrap().last().unwrap()["digest"]
        .as_str()
        .unwrap()
        .to_owned();
    let copy = work.path().join("pulled");
    run_ok(
        Command::new("skopeo")
            .args(["copy", "--src-tls-verify=false"])
            .arg(format!("--src-creds={USER}:{PASSWORD}"))
            .arg(format!("docker://{target}"))
            .arg(format!("oci:{}:latest", copy.display())),
    );
    let layer = copy
        .join("blobs/sha256")
        .join(top.trim_start_matches("sha256:"));
    let jar_hash = run_ok(Command::new("sh").arg("-c").arg(format!(
        "tar -xzOf {} app/sample.jar | sha256sum",
        layer.display()
    )));
    assert_eq!(format!("sha256:{}", &jar_hash[..64]), recorded);

    // Layered: build once, change one class, build again: only the
    // classes layer (and the config naming it) is uploaded.
    run_pipeline(&project, &registry, "1a1a1a1", &[("LAYERED", "true")]);
    let before = uploaded(&registry, "group/project/sample");
    let source = project.join("src/main/java/com/example/App.java");
    let code = std::fs::read_to_string(&source).unwrap();
    std::fs::write(
        &source,
        code.replace(
            "System.out.println(greeting());",
            "System.out.println(\"> \" + greeting());",
        ),
    )
    .unwrap();
    run_pipeline(&project, &registry, "2b2b2b2", &[("LAYERED", "true")]);
    let after = uploaded(&registry, "group/project/sample");
    let new: BTreeSet<String> = after.difference(&before).cloned().collect();
    let layered = format!("{}/group/project/sample:2b2b2b2", registry.host());
    let manifest: Value =
        serde_json::from_str(&skopeo(&registry, &["inspect", "--raw"], &layered)).unwrap();
    let layers = manifest["layers"].as_array().unwrap();
    let classes = layers.last().unwrap()["digest"]
        .as_str()
        .unwrap()
        .to_owned();
    let config = manifest["config"]["digest"].as_str().unwrap().to_owned();
    assert_eq!(
        new,
        BTreeSet::from([classes, config]),
        "uploaded by the one-class change"
    );
    let config: Value =
        serde_json::from_str(&skopeo(&registry, &["inspect", "--config"], &layered)).unwrap();
    assert_eq!(config["config"]["Entrypoint"][1], "-cp");

    // The pipeline exports to a GitLab file that GitLab's schema accepts.
    let Some(conformance) = common::conformance::dir() else {
        return;
    };
    let exported = Run::of(kiln(&project, &["export", "gitlab", "kiln.yml"])).ok();
    let document: Value = serde_saphyr::from_str(&exported).unwrap();
    let schema: Value =
        serde_json::from_slice(&std::fs::read(conformance.join("gitlab-ci/ci.json")).unwrap())
            .unwrap();
    let validator = jsonschema::draft7::new(&schema).unwrap();
    let errors: Vec<String> = validator
        .iter_errors(&document)
        .map(|e| format!("{e} at {}", e.instance_path()))
        .collect();
    assert!(errors.is_empty(), "{errors:#?}\n{exported}");
    assert!(
        exported.contains("kiln run kiln.yml --step build-image --step push"),
        "{exported}"
    );
}

#[test]
fn without_a_registry_the_image_stays_a_layout_and_the_run_says_how_to_push() {
    let work = tempfile::tempdir().unwrap();
    let project = java_example(work.path());
    let mut command = kiln(&project, &["run", "kiln.yml"]);
    command
        .env_remove("CI_REGISTRY")
        .env_remove("CI_REGISTRY_IMAGE")
        .env("CI_COMMIT_SHA", "feedbeef".repeat(5))
        .env("CI_COMMIT_SHORT_SHA", "feedbee");
    let run = Run::of(command);
    let out = run.ok();
    assert!(out.contains("Push it with: kiln push"), "{out}");
    let umoci = run_ok(
        Command::new("umoci")
            .args(["stat", "--image"])
            .arg(format!("{}:feedbee", project.join("image").display())),
    );
    assert!(
        umoci.contains("COPY sample.jar /app/sample.jar # buildkit"),
        "{umoci}"
    );
}

#[test]
fn maven_artifact_names_the_pom_and_the_fix() {
    let work = tempfile::tempdir().unwrap();
    let project = java_example(work.path());
    let collect = || Run::of(kiln(&project, &["step", "maven-artifact"]));

    let run = collect();
    assert_eq!(run.code(), Some(2), "{}", run.all());
    assert!(
        run.stderr().contains("pom.xml says the artifact is target/sample.jar, but there is no such file; run `mvn package` first"),
        "{}",
        run.stderr()
    );

    // Not a JAR: a file with the right name but no zip inside.
    std::fs::create_dir_all(project.join("target")).unwrap();
    std::fs::write(project.join("target/sample.jar"), "not a zip").unwrap();
    let run = collect();
    assert!(
        run.stderr()
            .contains("target/sample.jar is not a valid JAR/WAR (zip)"),
        "{}",
        run.stderr()
    );

    // An undefined property names the file, line and element.
    std::fs::write(
        project.join("pom.xml"),
        "<project>\n  <groupId>g</groupId><artifactId>a</artifactId>\n  <version>${release}</version>\n</project>\n",
    )
    .unwrap();
    let run = collect();
    assert!(
        run.stderr().contains("pom.xml:3: <version>${release}</version>: the property ${release} is not defined; define it in <properties>"),
        "{}",
        run.stderr()
    );
}
