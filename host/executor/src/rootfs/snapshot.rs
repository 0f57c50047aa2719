//! What the tree looks like at one moment, as `lstat` sees it.
//!
//! A command's effect is found by comparing a snapshot taken before it ran
//! with one taken after, the way BuildKit and containers/storage compute a
//! "naive diff" when no overlay file system records the changes for them.

use std::collections::BTreeMap;
use std::os::fd::{AsFd, BorrowedFd};

use rustix::fs::{AtFlags, Dir, FileType, Statx, StatxFlags, StatxTimestamp, statx};

use super::confined::{self, MAX_DEPTH, io_error};
use super::relpath::RelPath;
use crate::error::Error;

/// The `lstat` metadata of every path in the tree, sorted by path (parents
/// before children). Taken by [`Rootfs::snapshot`](super::Rootfs::snapshot)
/// and compared by [`Rootfs::diff`](super::Rootfs::diff).
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    pub(crate) entries: BTreeMap<RelPath, Meta>,
}

/// The type of a file, as far as a layer can tell types apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    File,
    Dir,
    Symlink,
    Char,
    Block,
    Fifo,
    Socket,
}

/// One path's metadata, as on disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Meta {
    pub(crate) kind: Kind,
    /// Permission bits including setuid, setgid and sticky (`0o7777`).
    pub(crate) mode: u32,
    pub(crate) uid: u32,
    pub(crate) gid: u32,
    pub(crate) size: u64,
    pub(crate) mtime: (i64, u32),
    pub(crate) ctime: (i64, u32),
    /// When the file was created, where the file system says: it tells a
    /// recreated file from a rewritten one when the inode number is reused.
    pub(crate) btime: Option<(i64, u32)>,
    /// The device (major, minor) and inode together identify the file, for
    /// hard links.
    pub(crate) dev: (u32, u32),
    pub(crate) ino: u64,
    pub(crate) nlink: u64,
    /// A device node's (major, minor).
    pub(crate) rdev: (u32, u32),
    /// A symlink's target, verbatim.
    pub(crate) target: Option<Vec<u8>>,
}

impl Meta {
    fn from_statx(stat: &Statx, target: Option<Vec<u8>>) -> Meta {
        let kind = match FileType::from_raw_mode(stat.stx_mode.into()) {
            FileType::Directory => Kind::Dir,
            FileType::Symlink => Kind::Symlink,
            FileType::CharacterDevice => Kind::Char,
            FileType::BlockDevice => Kind::Block,
            FileType::Fifo => Kind::Fifo,
            FileType::Socket => Kind::Socket,
            _ => Kind::File,
        };
        let time = |t: &StatxTimestamp| (t.tv_sec, t.tv_nsec);
        let has_btime = StatxFlags::from_bits_retain(stat.stx_mask).contains(StatxFlags::BTIME);
        Meta {
            kind,
            mode: u32::from(stat.stx_mode) & 0o7777,
            uid: stat.stx_uid,
            gid: stat.stx_gid,
            size: stat.stx_size,
            mtime: time(&stat.stx_mtime),
            ctime: time(&stat.stx_ctime),
            btime: has_btime.then(|| time(&stat.stx_btime)),
            dev: (stat.stx_dev_major, stat.stx_dev_minor),
            ino: stat.stx_ino,
            nlink: stat.stx_nlink.into(),
            rdev: (stat.stx_rdev_major, stat.stx_rdev_minor),
            target,
        }
    }

    /// Whether `self` (before) and `after` differ in anything a layer
    /// records or that betrays a rewrite (ctime, inode).
    pub(crate) fn changed(&self, after: &Meta) -> bool {
        self.kind != after.kind
            || self.mode != after.mode
            || self.uid != after.uid
            || self.gid != after.gid
            || self.size != after.size
            || self.mtime != after.mtime
            || self.ctime != after.ctime
            || !self.same_file(after)
            || self.rdev != after.rdev
            || self.target != after.target
    }

    /// Whether `after` is still the same file as `self` (not deleted and
    /// recreated), so that what was known about it (its image owner) holds.
    pub(crate) fn same_file(&self, after: &Meta) -> bool {
        self.kind == after.kind
            && self.ino == after.ino
            && self.dev == after.dev
            && self.btime == after.btime
    }
}

/// What a snapshot asks of `statx`: the `lstat` fields and the birth time.
const WANTED: StatxFlags = StatxFlags::BASIC_STATS.union(StatxFlags::BTIME);

/// `statx` of `name` in `dir` (or of `dir` itself for `""`), not following
/// a symlink.
pub(crate) fn look<P: rustix::path::Arg>(
    dir: BorrowedFd<'_>,
    name: P,
) -> Result<Statx, rustix::io::Errno> {
    statx(
        dir,
        name,
        AtFlags::SYMLINK_NOFOLLOW | AtFlags::EMPTY_PATH,
        WANTED,
    )
}

/// Walk the tree under `root`, not descending into the paths in `skip`.
pub(crate) fn take(root: BorrowedFd<'_>, skip: &[RelPath]) -> Result<Snapshot, Error> {
    let mut snapshot = Snapshot::default();
    let top = RelPath::root();
    if skip.contains(&top) {
        return Ok(snapshot);
    }
    let dir = confined::open_child_dir(root, ".").map_err(io_error("open directory", &top))?;
    walk(dir, &top, 0, skip, &mut snapshot.entries)?;
    Ok(snapshot)
}

fn walk(
    mut dir: Dir,
    path: &RelPath,
    depth: usize,
    skip: &[RelPath],
    out: &mut BTreeMap<RelPath, Meta>,
) -> Result<(), Error> {
    if depth >= MAX_DEPTH {
        return Err(Error::TooDeep {
            path: path.to_string(),
            limit: MAX_DEPTH,
        });
    }
    while let Some(entry) = dir.read() {
        let entry = entry.map_err(io_error("list directory", path))?;
        let name = entry.file_name();
        if name == c"." || name == c".." {
            continue;
        }
        let child = path.join(name.to_bytes());
        let fd = dir.fd().map_err(io_error("list directory", path))?;
        let stat = look(fd, name).map_err(io_error("inspect", &child))?;
        let kind = FileType::from_raw_mode(stat.stx_mode.into());
        let target = match kind {
            FileType::Symlink => {
                Some(confined::read_link(fd, name).map_err(io_error("read link", &child))?)
            }
            _ => None,
        };
        if kind == FileType::Directory && !skip.contains(&child) {
            let sub = confined::open_child_dir(fd.as_fd(), name)
                .map_err(io_error("open directory", &child))?;
            walk(sub, &child, depth + 1, skip, out)?;
        }
        out.insert(child, Meta::from_statx(&stat, target));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    fn p(s: &str) -> RelPath {
        RelPath::normalise(s.as_bytes()).unwrap()
    }

    #[test]
    fn records_every_path_and_skips_contents() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path();
        std::fs::create_dir_all(root.join("a/b")).unwrap();
        std::fs::write(root.join("a/b/f"), "hello").unwrap();
        std::fs::create_dir_all(root.join("proc/1")).unwrap();
        symlink("/etc/passwd", root.join("link")).unwrap();
        let fd = confined::open_root(root).unwrap();
        let snap = take(fd.as_fd(), &[p("proc")]).unwrap();
        let paths: Vec<String> = snap.entries.keys().map(|k| k.to_string()).collect();
        assert_eq!(paths, ["a", "a/b", "a/b/f", "link", "proc"]);
        let file = &snap.entries[&p("a/b/f")];
        assert_eq!((file.kind, file.size), (Kind::File, 5));
        let link = &snap.entries[&p("link")];
        assert_eq!(link.target.as_deref(), Some(&b"/etc/passwd"[..]));
    }

    #[test]
    fn refuses_absurdly_deep_trees() {
        let tmp = tempfile::tempdir().unwrap();
        let deep: std::path::PathBuf = std::iter::repeat_n("d", MAX_DEPTH + 1).collect();
        std::fs::create_dir_all(tmp.path().join(deep)).unwrap();
        let fd = confined::open_root(tmp.path()).unwrap();
        assert!(matches!(take(fd.as_fd(), &[]), Err(Error::TooDeep { .. })));
    }
}
