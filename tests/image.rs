//! kiln's own image (`host/image`), as a GitLab job uses it: built by
//! kiln from a static (musl) kiln and busybox's static shell, FROM
//! scratch; podman runs a shell in it that runs kiln, including a
//! sandboxed step.

mod common;

use std::path::Path;
use std::process::Command;

use common::images::podman_run;
use common::run_ok;

#[test]
fn kiln_builds_its_own_image_and_a_job_shell_runs_kiln_in_it() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let musl = root.join("target/x86_64-unknown-linux-musl/release/kiln");
    if !musl.exists() {
        assert!(
            std::env::var_os("KILN_REQUIRE_CONFORMANCE").is_none(),
            "{} is missing (tests/run builds it; KILN_REQUIRE_CONFORMANCE is set)",
            musl.display()
        );
        eprintln!(
            "skipped: no static kiln (cargo build --release --target x86_64-unknown-linux-musl)"
        );
        return;
    }
    let work = tempfile::tempdir().unwrap();
    let archive = work.path().join("kiln-image.tar");
    run_ok(
        Command::new(root.join("host/image/build"))
            .args(["-t", "localhost/kiln:test", "-o"])
            .arg(format!("docker-archive:{}", archive.display()))
            .env("KILN_CACHE_DIR", work.path().join("cache")),
    );
    // A job's script: its shell runs kiln, and kiln runs a sandboxed step.
    let out = podman_run(
        &work.path().join("podman"),
        &archive,
        "localhost/kiln:test",
        &[
            "sh",
            "-c",
            "kiln --version && kiln plugin list && mkdir -p /tmp/job && cd /tmp/job && kiln step hello -i name=job",
        ],
    );
    assert!(out.contains("kiln 0.1.0"), "{out}");
    assert!(out.contains("dockerfile-build"), "{out}");
    assert!(out.contains("message=hello, job!"), "{out}");
}
