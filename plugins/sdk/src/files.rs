//! File metadata WASI does not carry, answered by the host.

use std::path::Path;

pub use crate::bindings::kiln::plugin::files::Metadata;

/// The Unix permission bits (`0o7777` mask) of `path`, a path inside one
/// of the step's mounted directories, and its target if it is a symlink
/// (a final symlink is not followed).
///
/// WASI reports no modes, and an image build must keep executable files
/// executable; it also refuses to read a symlink pointing outside the
/// mount, which an image build must copy as it is.
pub fn metadata(path: &Path) -> std::io::Result<Metadata> {
    let text = path.to_str().ok_or_else(|| {
        std::io::Error::new(std::io::ErrorKind::InvalidInput, "path is not UTF-8")
    })?;
    crate::bindings::kiln::plugin::files::stat(text).map_err(std::io::Error::other)
}

/// How the names of unfinished files begin. The host removes such files
/// from a step's writable directories when the step ends, however it ends
/// (a timeout or a crash leaves the plugin no chance to clean up), so a
/// plugin that writes through [`partial_path`] and renames into place
/// never leaves half a file behind. The contract (`wit/plugin.wit`,
/// `step-context`) states the convention.
pub const PARTIAL_PREFIX: &str = ".kiln-partial-";

/// A fresh sibling of `path` to write into before renaming it to `path`:
/// `.kiln-partial-<unique>-<name>` in the same directory, so the rename
/// stays within one directory and a concurrent writer gets another name.
pub fn partial_path(path: &Path) -> std::path::PathBuf {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    path.with_file_name(format!("{PARTIAL_PREFIX}{}-{name}", unique_suffix()))
}

/// A name unlikely to collide with a concurrent writer's (WASI has no
/// process id; the clock and a counter suffice).
fn unique_suffix() -> String {
    static COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    let count = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    format!("{}-{count}", now.as_nanos())
}
