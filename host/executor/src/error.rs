//! Errors from building a root file system and diffing it into a layer.
//!
//! Every variant names the path or layer entry it is about, because the
//! layers come from registries the user does not control and a refusal has to
//! point at the offending entry to be actionable.

use std::io;

/// What went wrong while applying a layer, snapshotting or diffing a tree.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A file system operation on the tree failed.
    #[error("{op} {path}: {source}")]
    Io {
        /// What was being done, e.g. "create directory".
        op: &'static str,
        /// The path relative to the root (or the host path of the root).
        path: String,
        /// The underlying error.
        source: io::Error,
    },
    /// The layer stream could not be read or decompressed.
    #[error("reading the layer stream: {source}")]
    Stream {
        /// The underlying error.
        source: io::Error,
    },
    /// A layer entry is refused (escapes the root, names an unmapped owner,
    /// has an unsupported type, ...).
    #[error("layer entry {entry}: {reason}")]
    Layer {
        /// The entry's path as written in the layer.
        entry: String,
        /// Why it is refused.
        reason: String,
    },
    /// A directory tree is nested deeper than kiln walks; refusing it keeps
    /// the walk's open descriptors and stack bounded.
    #[error("{path}: directories nested deeper than {limit} levels")]
    TooDeep {
        /// The path relative to the root where the limit was hit.
        path: String,
        /// The nesting limit.
        limit: usize,
    },
    /// A skip path given by the caller is not a relative path inside the root.
    #[error("skip path {path:?} is not a path inside the root")]
    BadSkip {
        /// The path as given.
        path: String,
    },
    /// Writing the layer tar failed.
    #[error("writing the layer tar: {source}")]
    Output {
        /// The underlying error.
        source: io::Error,
    },
}
