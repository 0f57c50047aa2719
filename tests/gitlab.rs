//! The exported pipeline run as GitLab runs it: `examples/java-app`,
//! exported with `kiln export gitlab`, run by `gitlab-ci-local` (a
//! GitLab-compatible runner, shell executor, each job in its own copy of
//! the project with artifacts and caches carried between jobs), against a
//! real `docker-registry` with Basic auth; `skopeo` checks what arrived.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::example::{java_example, push_base};
use common::registry::{Auth, PASSWORD, Registry, USER};
use common::{KILN, Run, kiln, run_ok};

/// `gitlab-ci-local`: `$GITLAB_CI_LOCAL`, else on the PATH. Missing, the
/// test says so in one line and passes only outside CI
/// (`KILN_REQUIRE_CONFORMANCE`, which CI sets, makes it fail).
fn gitlab_ci_local() -> Option<PathBuf> {
    let found = std::env::var_os("GITLAB_CI_LOCAL")
        .map(PathBuf::from)
        .or_else(|| {
            let output = Command::new("sh")
                .args(["-c", "command -v gitlab-ci-local"])
                .output()
                .ok()?;
            let path = String::from_utf8(output.stdout).ok()?;
            (!path.trim().is_empty()).then(|| PathBuf::from(path.trim()))
        })
        .filter(|path| path.exists());
    assert!(
        found.is_some() || std::env::var_os("KILN_REQUIRE_CONFORMANCE").is_none(),
        "gitlab-ci-local is required (tests/run installs it; KILN_REQUIRE_CONFORMANCE is set)"
    );
    if found.is_none() {
        eprintln!("skipped: gitlab-ci-local is not installed (npm install gitlab-ci-local@4.60.0)");
    }
    found
}

/// Make `project` a git checkout of one commit, as a runner sees it;
/// returns the commit's short SHA as GitLab computes it.
fn commit(project: &Path) -> String {
    let git = |args: &[&str]| {
        run_ok(
            Command::new("git")
                .args([
                    "-c",
                    "user.name=kiln",
                    "-c",
                    "user.email=kiln@example.invalid",
                ])
                .args(args)
                .current_dir(project),
        )
    };
    git(&["init", "-q"]);
    git(&["add", "-A"]);
    git(&["commit", "-q", "-m", "the example"]);
    git(&["rev-parse", "--short=8", "HEAD"]).trim().to_owned()
}

#[test]
fn the_exported_java_example_runs_on_a_gitlab_runner() {
    let Some(runner) = gitlab_ci_local() else {
        return;
    };
    let work = tempfile::tempdir().unwrap();
    let project = java_example(work.path());
    let registry = Registry::start(Auth::Basic);
    let base = push_base(&registry, work.path());

    let exported = Run::of(kiln(&project, &["export", "gitlab", "kiln.yml"])).ok();
    // The image build runs in the push's job: its layout, base layers and
    // all, is not a GitLab artifact.
    assert!(!exported.contains("\nbuild-image:"), "{exported}");
    assert!(
        exported.contains("kiln run kiln.yml --step build-image --step push --artifacts-dir .kiln"),
        "{exported}"
    );
    std::fs::write(project.join(".gitlab-ci.yml"), exported).unwrap();
    let short_sha = commit(&project);

    let host = registry.host();
    let kiln_dir = Path::new(KILN).parent().unwrap();
    let path = format!(
        "{}:{}",
        kiln_dir.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let mut command = Command::new(&runner);
    command
        .current_dir(&project)
        .env("PATH", path)
        .env("KILN_CACHE_DIR", work.path().join("unused-outside-jobs"))
        .arg("--shell-isolation");
    for (name, value) in [
        ("CI_REGISTRY", host.clone()),
        ("CI_REGISTRY_IMAGE", format!("{host}/group/project")),
        ("CI_REGISTRY_USER", USER.to_owned()),
        ("CI_REGISTRY_PASSWORD", PASSWORD.to_owned()),
        ("BASE_IMAGE", base),
    ] {
        command.args(["--variable", &format!("{name}={value}")]);
    }
    let run = Run::of(command);
    let log = run.all();
    assert_eq!(run.code(), Some(0), "{log}");
    for job in ["package", "jar", "login", "push"] {
        assert!(
            log.contains(&format!("PASS  {job}")),
            "{job} did not pass:\n{log}"
        );
    }
    assert!(!log.contains(PASSWORD), "the password was printed:\n{log}");

    // The image arrived where the seed's .gitlab-ci.yml puts it.
    let target = format!("{host}/group/project/sample:{short_sha}");
    let inspect = run_ok(
        Command::new("skopeo")
            .arg("inspect")
            .args(registry.skopeo_flags(""))
            .arg(format!("docker://{target}")),
    );
    assert!(inspect.contains("\"Digest\": \"sha256:"), "{inspect}");
}
