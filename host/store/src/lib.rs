//! Content-addressed artifacts and the cache, on local disk.
//!
//! Layout under the artifacts directory (`.kiln/` by default):
//!
//! ```text
//! artifacts/<step>/manifest.json          what the step handed on
//! artifacts/<step>/blobs/sha256/<hex>     file contents, by digest
//! cache/<key>/...                         restored and saved directories
//! work/<step>/...                         scratch: materialised inputs
//! ```
//!
//! Each step's artifacts are one self-contained directory, so GitLab can
//! carry exactly `artifacts/<step>/` from one job to the next. Writes go to
//! a temporary directory renamed into place; reads re-hash every byte and
//! refuse anything that does not match the manifest.

#![deny(missing_docs)]

mod artifacts;
mod cache;
mod dirs;
mod select;

pub use artifacts::{ArtifactStore, FileEntry, Manifest};
pub use cache::CacheStore;
pub use dirs::{DirLock, StoreRoot, ensure_dir, existing_dir, lock_dir, lock_layout};
pub use select::{check_relative, select_files};

use std::path::PathBuf;

/// A store operation that failed; the message names the file and the fix.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// Reading or writing failed.
    #[error("{path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// An artifact does not match its manifest.
    #[error(
        "artifact of step `{step}` is corrupt: {detail}; rerun step `{step}` or copy its artifact directory again"
    )]
    Corrupt {
        /// The producing step.
        step: String,
        /// What does not match.
        detail: String,
    },
    /// A needed artifact is absent.
    #[error(
        "no artifact of step `{step}` in {dir}: run step `{step}` first, or copy its `artifacts/{step}/` directory there"
    )]
    Missing {
        /// The producing step.
        step: String,
        /// The artifacts directory.
        dir: PathBuf,
    },
    /// A glob that cannot be compiled, or a path leaving the project.
    #[error("{0}")]
    Pattern(String),
    /// A path in the store that kiln refuses to write through (a symlink,
    /// a file where a directory belongs).
    #[error("{0}")]
    Unsafe(String),
}

pub(crate) fn io_error(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> StoreError {
    let path = path.into();
    move |source| StoreError::Io { path, source }
}
