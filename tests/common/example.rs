//! The Java example (`examples/java-app`) as the end-to-end tests run it:
//! a clean copy, and a registry holding the base image it builds on.

use std::path::{Path, PathBuf};
use std::process::Command;

use super::images::busybox_layout;
use super::registry::{PASSWORD, Registry, USER};
use super::run_ok;

/// A copy of `examples/java-app` in `into`, without build leftovers.
pub fn java_example(into: &Path) -> PathBuf {
    let source = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/java-app");
    let project = into.join("java-app");
    run_ok(Command::new("cp").arg("-r").arg(&source).arg(&project));
    for leftover in ["target", ".kiln", "image"] {
        let _ = std::fs::remove_dir_all(project.join(leftover));
    }
    project
}

/// Push a busybox image made offline to `registry` as
/// `base/busybox:latest` (the example's `BASE_IMAGE`), with the test
/// registry's credentials; returns the reference.
pub fn push_base(registry: &Registry, work: &Path) -> String {
    let base = busybox_layout(work);
    let reference = format!("{}/base/busybox:latest", registry.host());
    run_ok(
        Command::new("skopeo")
            .args(["copy", "--dest-tls-verify=false"])
            .arg(format!("--dest-creds={USER}:{PASSWORD}"))
            .arg(format!("oci:{}:latest", base.display()))
            .arg(format!("docker://{reference}")),
    );
    reference
}
