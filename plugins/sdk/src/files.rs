//! File metadata WASI does not carry, answered by the host.

use std::path::Path;

/// The Unix permission bits (`0o7777` mask) of `path`, a path inside one
/// of the step's mounted directories; a final symlink is not followed.
///
/// WASI reports no modes, and an image build must keep executable files
/// executable.
pub fn permissions(path: &Path) -> std::io::Result<u32> {
    let text = path.to_str().ok_or_else(|| {
        std::io::Error::new(std::io::ErrorKind::InvalidInput, "path is not UTF-8")
    })?;
    crate::bindings::kiln::plugin::files::permissions(text).map_err(std::io::Error::other)
}
