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
