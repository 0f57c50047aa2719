//! The image's root file system, materialised in a host directory.
//!
//! kiln runs `RUN` commands natively, so the image has to exist as a real
//! tree: layers are applied to it one by one ([`Rootfs::apply`]), a command
//! runs inside it, and what the command changed is found by comparing
//! snapshots and written out as the next layer ([`Rootfs::diff`]).
//!
//! ```no_run
//! use kiln_executor::ids::IdMap;
//! use kiln_executor::rootfs::Rootfs;
//!
//! # fn main() -> Result<(), kiln_executor::error::Error> {
//! let mut rootfs = Rootfs::create("/var/tmp/kiln/rootfs".into(), IdMap::Single)?;
//! rootfs.apply(std::fs::File::open("base-layer.tar.gz").unwrap())?;
//! let skip = ["proc".to_owned(), "sys".to_owned(), "dev".to_owned()];
//! let before = rootfs.snapshot(&skip)?;
//! // ... run the command in rootfs.path() ...
//! let layer = std::fs::File::create("layer.tar").unwrap();
//! let changes = rootfs.diff(&before, &skip, Some(0), layer)?;
//! println!("{} added, {} bytes", changes.added, changes.tar_size);
//! # Ok(())
//! # }
//! ```

mod apply;
pub(crate) mod confined;
mod decompress;
mod diff;
mod layer_tar;
mod owners;
pub(crate) mod relpath;
mod snapshot;
#[cfg(test)]
mod testing;

use std::io::{Read, Write};
use std::os::fd::AsFd;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt, chown};
use std::path::{Path, PathBuf};

pub use snapshot::Snapshot;

use crate::error::Error;
use crate::ids::IdMap;
use owners::OwnerTable;
use relpath::RelPath;

/// A root file system being built on the host, layer by layer.
///
/// Under [`IdMap::Single`] the owners the image names cannot be stored on
/// disk, so a side table keeps them; it lives here, which is why applying
/// and diffing take `&mut self`.
#[derive(Debug)]
pub struct Rootfs {
    dir: PathBuf,
    ids: IdMap,
    owners: OwnerTable,
}

/// What applying a layer did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Applied {
    /// Entries read from the layer, whiteouts included.
    pub entries: u64,
    /// Device nodes and fifos the kernel refused to create (`EPERM`, as in
    /// a user namespace); a runtime provides `/dev` anyway.
    pub skipped_devices: u64,
}

/// What a diff found and wrote.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Changes {
    /// Paths that did not exist before.
    pub added: u64,
    /// Paths that existed and changed (parent directories written only for
    /// context are not counted).
    pub modified: u64,
    /// Whiteouts written; a deleted directory counts once, whatever it held.
    pub deleted: u64,
    /// Size of the tar written, in bytes.
    pub tar_size: u64,
}

impl Rootfs {
    /// Create the root directory `dir` (must not exist; its parent must) and
    /// start empty. Under [`IdMap::Shift`] the directory is owned by the
    /// shifted root, so that root inside the command can write to `/`.
    pub fn create(dir: PathBuf, ids: IdMap) -> Result<Rootfs, Error> {
        let io = |op| {
            let path = dir.display().to_string();
            move |source| Error::Io { op, path, source }
        };
        std::fs::DirBuilder::new()
            .mode(0o755)
            .create(&dir)
            .map_err(io("create root directory"))?;
        // The umask may have narrowed the mode.
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755))
            .map_err(io("chmod root directory"))?;
        if let IdMap::Shift { base, .. } = ids {
            chown(&dir, Some(base), Some(base)).map_err(io("chown root directory"))?;
        }
        Ok(Rootfs {
            dir,
            ids,
            owners: OwnerTable::default(),
        })
    }

    /// The host directory holding the tree.
    pub fn path(&self) -> &Path {
        &self.dir
    }

    /// The id map in use.
    pub fn ids(&self) -> &IdMap {
        &self.ids
    }

    /// The host path of `path` (absolute inside the image), symlinks
    /// resolved as a command would see them and never out of the root:
    /// what a read-only bind of another stage's files names.
    pub fn host_path(&self, path: &str) -> Result<PathBuf, Error> {
        let failed = |source: std::io::Error| Error::Io {
            op: "resolve inside the root",
            path: path.to_owned(),
            source,
        };
        let relative = RelPath::normalise(path.as_bytes()).ok_or_else(|| Error::Layer {
            entry: path.to_owned(),
            reason: "climbs out of the root".into(),
        })?;
        let root = confined::open_root(&self.dir)?;
        let opened = confined::open_in_root(
            std::os::fd::AsFd::as_fd(&root),
            &relative,
            rustix::fs::OFlags::PATH,
        )
        .map_err(|e| failed(e.into()))?;
        let fd = std::os::fd::AsRawFd::as_raw_fd(&opened);
        std::fs::read_link(format!("/proc/self/fd/{fd}")).map_err(failed)
    }

    /// Apply one layer: `blob` is a tar, tar+gzip or tar+zstd stream (told
    /// apart by magic bytes, since media types lie). Whiteouts and opaque
    /// markers remove what lower layers put there; no entry can write
    /// outside the root, whatever symlinks the tree holds.
    pub fn apply(&mut self, blob: impl Read) -> Result<Applied, Error> {
        apply::apply(&self.dir, self.ids, &mut self.owners, blob)
    }

    /// An `lstat` snapshot of the tree, skipping the contents of `skip`
    /// (relative paths like `"proc"` or `"run/secrets/x"`, typically mount
    /// targets whose contents are not the image's); the skipped directories
    /// themselves are recorded.
    pub fn snapshot(&self, skip: &[String]) -> Result<Snapshot, Error> {
        let skip = normalise_skip(skip)?;
        let root = confined::open_root(&self.dir)?;
        snapshot::take(root.as_fd(), &skip)
    }

    /// Write what changed since `before` as an uncompressed layer tar to
    /// `out`. Nothing below a `skip` path is written or whited out, and a
    /// skip path itself is written only when it is new. Times are clamped to
    /// `epoch` when given (reproducible builds). Under [`IdMap::Single`] the
    /// side table is updated: replaced and deleted paths lose their recorded
    /// owner.
    pub fn diff(
        &mut self,
        before: &Snapshot,
        skip: &[String],
        epoch: Option<u64>,
        out: impl Write,
    ) -> Result<Changes, Error> {
        let skip = normalise_skip(skip)?;
        diff::diff(
            &self.dir,
            self.ids,
            &mut self.owners,
            before,
            &skip,
            epoch,
            out,
        )
    }
}

/// The caller's skip paths as paths inside the root.
fn normalise_skip(skip: &[String]) -> Result<Vec<RelPath>, Error> {
    skip.iter()
        .map(|path| {
            RelPath::normalise(path.as_bytes()).ok_or_else(|| Error::BadSkip { path: path.clone() })
        })
        .collect()
}
