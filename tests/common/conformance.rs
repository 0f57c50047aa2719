//! Where the external conformance data is: `$KILN_CONFORMANCE_DIR`, or
//! `shared/conformance` beside the clone. Shared by every crate's tests
//! (included by path), so the rule is written once.

use std::path::{Path, PathBuf};

/// The conformance directory, or `None` (with a note) when it is absent
/// and not required. Under `KILN_REQUIRE_CONFORMANCE` (CI) absence fails.
pub fn dir() -> Option<PathBuf> {
    let dir = std::env::var_os("KILN_CONFORMANCE_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("../shared/conformance"));
    if dir.is_dir() {
        return Some(dir);
    }
    assert!(
        std::env::var_os("KILN_REQUIRE_CONFORMANCE").is_none(),
        "KILN_REQUIRE_CONFORMANCE is set but {} does not exist",
        dir.display()
    );
    eprintln!(
        "skipping: no conformance data at {} (set KILN_CONFORMANCE_DIR)",
        dir.display()
    );
    None
}

/// The workspace root: the nearest ancestor of the crate holding
/// `Cargo.lock`.
fn workspace_root() -> PathBuf {
    let crate_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    crate_dir
        .ancestors()
        .find(|d| d.join("Cargo.lock").is_file())
        .unwrap_or(crate_dir)
        .to_owned()
}
