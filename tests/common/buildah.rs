//! What the buildah differentials share: whether buildah is there, and how
//! a case's differences are said.

use std::path::{Path, PathBuf};
use std::process::Command;

/// Whether buildah can run; when it cannot, a skip, or a failure under
/// `KILN_REQUIRE_CONFORMANCE` (CI).
pub fn installed() -> bool {
    if Command::new("buildah")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
    {
        return true;
    }
    assert!(
        std::env::var_os("KILN_REQUIRE_CONFORMANCE").is_none(),
        "KILN_REQUIRE_CONFORMANCE is set but buildah is not installed (apt-get install buildah)"
    );
    eprintln!("skipping: buildah is not installed (apt-get install buildah)");
    false
}

/// The differences of one case, said as it finishes and kept for the end.
pub fn record(failures: &mut Vec<String>, case: &str, found: Vec<String>) {
    if found.is_empty() {
        eprintln!("{case}: same as buildah");
    } else {
        eprintln!("{case}: differs from buildah");
        failures.push(format!(
            "case `{case}` (kiln | buildah):\n  {}",
            found.join("\n  ")
        ));
    }
}

/// Fail with every case that differed, out of `total`.
pub fn assert_none_differ(failures: &[String], total: usize) {
    assert!(
        failures.is_empty(),
        "{} of {total} cases differ from buildah:\n\n{}",
        failures.len(),
        failures.join("\n\n")
    );
}

/// The case directories under `root`, by name, narrowed to those whose
/// name contains `$only_var` when it is set.
pub fn case_dirs(root: &Path, only_var: &str) -> Vec<(String, PathBuf)> {
    let only = std::env::var(only_var).unwrap_or_default();
    let mut cases: Vec<(String, PathBuf)> = std::fs::read_dir(root)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_dir())
        .map(|dir| (dir.file_name().unwrap().to_string_lossy().into_owned(), dir))
        .filter(|(name, _)| name.contains(&only))
        .collect();
    cases.sort();
    cases
}
