//! Unpack one OCI layer onto the tree, as Docker and containerd do.
//!
//! Every entry is treated as hostile: its path is normalised and refused if
//! it climbs out, its parent directory is resolved inside the root (so a
//! symlink left by an earlier entry or layer cannot carry the write out), and
//! the final component is created with `*at` calls that never follow it.

use std::collections::HashSet;
use std::fs::File;
use std::io::{self, Read, Write};
use std::iter;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::Path;

use rustix::fs::{
    AtFlags, FileType, Mode, OFlags, Timespec, Timestamps, chmodat, chownat, fchmod, fchown,
    futimens, linkat, mkdirat, mknodat, openat, statat, symlinkat, unlinkat, utimensat,
};
use rustix::io::Errno;
use rustix::process::{Gid, Uid};
use tar::EntryType;

use super::Applied;
use super::confined::{self, io_error};
use super::decompress;
use super::owners::OwnerTable;
use super::relpath::RelPath;
use crate::error::Error;
use crate::ids::{IdMap, Placement};

/// The whiteout prefix: `DIR/.wh.NAME` deletes `NAME` from lower layers.
pub(crate) const WHITEOUT: &[u8] = b".wh.";
/// The opaque marker: `DIR/.wh..wh..opq` hides everything lower layers put in `DIR`.
pub(crate) const OPAQUE: &[u8] = b".wh..wh..opq";

/// How much file content is copied per write: large enough that a 300 MB
/// base image costs few system calls.
const COPY_BUFFER: usize = 128 * 1024;

/// Apply the layer `blob` to the tree at `dir`.
pub(super) fn apply(
    dir: &Path,
    ids: IdMap,
    owners: &mut OwnerTable,
    blob: impl Read,
) -> Result<Applied, Error> {
    let stream = |source| Error::Stream { source };
    let root = confined::open_root(dir)?;
    let mut archive = tar::Archive::new(decompress::open(blob).map_err(stream)?);
    let mut layer = Layer {
        root,
        ids,
        owners,
        unpacked: HashSet::new(),
        dir_times: Vec::new(),
        applied: Applied::default(),
        buffer: vec![0; COPY_BUFFER],
    };
    for entry in archive.entries().map_err(stream)? {
        layer.entry(&mut entry.map_err(stream)?)?;
    }
    layer.set_dir_times()?;
    Ok(layer.applied)
}

/// The state of applying one layer.
struct Layer<'a> {
    root: OwnedFd,
    ids: IdMap,
    owners: &'a mut OwnerTable,
    /// Paths this layer created and their parents, which an opaque marker
    /// must not hide.
    unpacked: HashSet<RelPath>,
    /// Directory times, set once the layer is done because creating the
    /// directory's children would bump them again.
    dir_times: Vec<(RelPath, Timestamps)>,
    applied: Applied,
    /// Reused for every file's content.
    buffer: Vec<u8>,
}

/// The metadata a layer entry asks for.
struct Wanted {
    mode: u32,
    uid: u64,
    gid: u64,
    times: Timestamps,
}

impl Layer<'_> {
    fn entry<R: Read>(&mut self, entry: &mut tar::Entry<'_, R>) -> Result<(), Error> {
        let kind = entry.header().entry_type();
        if kind.is_pax_global_extensions() || kind.is_pax_local_extensions() {
            return Ok(());
        }
        self.applied.entries += 1;
        let raw = entry.path_bytes().into_owned();
        let shown = String::from_utf8_lossy(&raw).into_owned();
        let refuse = |reason: &str| Error::Layer {
            entry: shown.clone(),
            reason: reason.to_owned(),
        };
        let path =
            RelPath::normalise(&raw).ok_or_else(|| refuse("climbs above the root with `..`"))?;

        if let Some((parent, name)) = path.split()
            && let Some(hidden) = name.strip_prefix(WHITEOUT)
        {
            if name == OPAQUE {
                return self.opaque(&parent);
            }
            // `.wh..` would remove the parent, `.wh...` the grandparent
            // (above the root, for a top-level entry).
            if matches!(hidden, b"" | b"." | b"..") {
                return Err(refuse("whiteout of no valid name"));
            }
            // Other `.wh..wh.` names are aufs bookkeeping, meaningless here.
            if !hidden.starts_with(WHITEOUT) {
                self.remove(&parent.join(hidden))?;
            }
            return Ok(());
        }

        let times = mtime(entry).map_err(|_| refuse("unreadable mtime"))?;
        let header = entry.header().clone();
        let wanted = Wanted {
            mode: header.mode().map_err(|_| refuse("unreadable mode"))? & 0o7777,
            uid: header.uid().map_err(|_| refuse("unreadable uid"))?,
            gid: header.gid().map_err(|_| refuse("unreadable gid"))?,
            times,
        };
        let placement = self.ids.place(wanted.uid, wanted.gid).ok_or_else(|| {
            refuse(&format!(
                "owner {}:{} is outside the id map",
                wanted.uid, wanted.gid
            ))
        })?;

        if path.is_root() {
            if kind != EntryType::Directory {
                return Err(refuse("replaces the root directory with a non-directory"));
            }
            return self.root_dir(&path, &wanted, placement);
        }
        let (parent, name) = path.split().expect("not the root");
        match kind {
            EntryType::Regular | EntryType::Continuous | EntryType::GNUSparse => {
                let (parent_fd, _) = self.prepare(&parent, name, &path, false)?;
                self.file(parent_fd.as_fd(), name, &path, entry, &wanted, placement)?;
            }
            EntryType::Directory => {
                let (parent_fd, kept) = self.prepare(&parent, name, &path, true)?;
                if !kept {
                    mkdirat(&parent_fd, name, Mode::from_raw_mode(0o700))
                        .map_err(io_error("create directory", &path))?;
                }
                self.own(parent_fd.as_fd(), name, &path, placement, Some(wanted.mode))?;
                self.dir_times.push((path.clone(), wanted.times.clone()));
            }
            EntryType::Symlink => {
                let target = entry
                    .link_name_bytes()
                    .ok_or_else(|| refuse("symlink without a target"))?;
                let (parent_fd, _) = self.prepare(&parent, name, &path, false)?;
                symlinkat(target.as_ref(), &parent_fd, name)
                    .map_err(io_error("create symlink", &path))?;
                self.own(parent_fd.as_fd(), name, &path, placement, None)?;
                self.set_times(parent_fd.as_fd(), name, &path, &wanted.times)?;
            }
            EntryType::Link => {
                let raw_target = entry
                    .link_name_bytes()
                    .ok_or_else(|| refuse("hard link without a target"))?;
                let target = RelPath::normalise(&raw_target)
                    .filter(|t| !t.is_root())
                    .ok_or_else(|| refuse("hard link target is not a file inside the root"))?;
                if target == path {
                    return Ok(());
                }
                let (parent_fd, _) = self.prepare(&parent, name, &path, false)?;
                self.hard_link(parent_fd.as_fd(), name, &path, &target)
                    .map_err(|errno| {
                        refuse(&format!(
                            "hard link to {target}: {}",
                            io::Error::from(errno)
                        ))
                    })?;
            }
            // Device nodes from a layer are never created: the host's root
            // would make them, and a command could open a host disk through
            // one. A command gets its devices from the executor's /dev.
            EntryType::Char | EntryType::Block => {
                self.applied.skipped_devices += 1;
                return Ok(());
            }
            EntryType::Fifo => {
                let (parent_fd, _) = self.prepare(&parent, name, &path, false)?;
                mknodat(
                    &parent_fd,
                    name,
                    FileType::Fifo,
                    Mode::from_raw_mode(0o600),
                    0,
                )
                .map_err(io_error("create fifo", &path))?;
                self.own(parent_fd.as_fd(), name, &path, placement, Some(wanted.mode))?;
                self.set_times(parent_fd.as_fd(), name, &path, &wanted.times)?;
            }
            _ => {
                return Err(refuse(&format!(
                    "unsupported entry type {:?}",
                    kind.as_byte() as char
                )));
            }
        }
        // Its parents count as the layer's too: an opaque marker hides what
        // lower layers put in them, not the directories themselves.
        self.unpacked.extend(path.ancestors());
        self.unpacked.insert(path);
        Ok(())
    }

    /// A regular file: written through a descriptor, then owned and dated.
    fn file<R: Read>(
        &mut self,
        parent: BorrowedFd<'_>,
        name: &[u8],
        path: &RelPath,
        data: &mut R,
        wanted: &Wanted,
        placement: Placement,
    ) -> Result<(), Error> {
        let fd = openat(
            parent,
            name,
            OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::from_raw_mode(0o600),
        )
        .map_err(io_error("create file", path))?;
        let mut file = File::from(fd);
        loop {
            let n = match data.read(&mut self.buffer) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(source) => return Err(Error::Stream { source }),
            };
            file.write_all(&self.buffer[..n])
                .map_err(|source| Error::Io {
                    op: "write",
                    path: path.to_string(),
                    source,
                })?;
        }
        if let Placement::Disk(uid, gid) = placement {
            fchown(&file, Some(Uid::from_raw(uid)), Some(Gid::from_raw(gid)))
                .map_err(io_error("chown", path))?;
        }
        fchmod(&file, Mode::from_raw_mode(wanted.mode)).map_err(io_error("chmod", path))?;
        futimens(&file, &wanted.times).map_err(io_error("set times of", path))?;
        self.record(path, placement);
        Ok(())
    }

    /// The root directory itself (a `./` entry): only its metadata changes.
    fn root_dir(
        &mut self,
        path: &RelPath,
        wanted: &Wanted,
        placement: Placement,
    ) -> Result<(), Error> {
        if let Placement::Disk(uid, gid) = placement {
            fchown(
                &self.root,
                Some(Uid::from_raw(uid)),
                Some(Gid::from_raw(gid)),
            )
            .map_err(io_error("chown", path))?;
        }
        fchmod(&self.root, Mode::from_raw_mode(wanted.mode)).map_err(io_error("chmod", path))?;
        self.record(path, placement);
        self.dir_times.push((path.clone(), wanted.times.clone()));
        Ok(())
    }

    /// Link `name` in `parent` to `target`, which must already be in the tree.
    fn hard_link(
        &mut self,
        parent: BorrowedFd<'_>,
        name: &[u8],
        path: &RelPath,
        target: &RelPath,
    ) -> Result<(), Errno> {
        let (target_parent, target_name) = target.split().expect("not the root");
        let target_dir = confined::open_dir(self.root.as_fd(), &target_parent)?;
        // Flags 0: a symlink at the target is linked itself, never followed.
        linkat(&target_dir, target_name, parent, name, AtFlags::empty())?;
        // A hard link has no metadata of its own; the inode keeps the
        // target's, and so does the side table.
        let owner = self.owners.get(target);
        self.owners.set(path.clone(), owner);
        Ok(())
    }

    /// Make way for a new entry at `name` in `parent`: open the parent
    /// (creating missing directories) and remove what is in the way, keeping
    /// an existing directory when a directory replaces it (then `true`).
    fn prepare(
        &mut self,
        parent: &RelPath,
        name: &[u8],
        path: &RelPath,
        is_dir: bool,
    ) -> Result<(OwnedFd, bool), Error> {
        let parent_fd = self.parent_dir(parent, path)?;
        let stat = match statat(&parent_fd, name, AtFlags::SYMLINK_NOFOLLOW) {
            Err(Errno::NOENT) => return Ok((parent_fd, false)),
            result => result.map_err(io_error("inspect", path))?,
        };
        if FileType::from_raw_mode(stat.st_mode) != FileType::Directory {
            unlinkat(&parent_fd, name, AtFlags::empty()).map_err(io_error("remove", path))?;
            self.owners.forget(path);
        } else if !is_dir {
            confined::remove_tree(parent_fd.as_fd(), name, path)?;
            self.owners.forget_tree(path);
        }
        let kept = is_dir && FileType::from_raw_mode(stat.st_mode) == FileType::Directory;
        Ok((parent_fd, kept))
    }

    /// Open directory `parent` inside the root, creating missing directories
    /// (mode 0755, owned by root inside) as Docker does for layers that omit
    /// them.
    fn parent_dir(&mut self, parent: &RelPath, path: &RelPath) -> Result<OwnedFd, Error> {
        match confined::open_dir(self.root.as_fd(), parent) {
            Err(Errno::NOENT) => {}
            result => return result.map_err(io_error("open parent directory of", path)),
        }
        let mut fd = confined::open_dir(self.root.as_fd(), &RelPath::root())
            .map_err(io_error("open root of", path))?;
        for dir in parent.ancestors().chain(iter::once(parent.clone())) {
            fd = match confined::open_dir(self.root.as_fd(), &dir) {
                Err(Errno::NOENT) => {
                    let (_, name) = dir.split().expect("not the root");
                    mkdirat(&fd, name, Mode::from_raw_mode(0o755))
                        .map_err(io_error("create directory", &dir))?;
                    let placement = self.ids.place(0, 0).ok_or_else(|| Error::Layer {
                        entry: path.to_string(),
                        reason: "the id map has no root to own its parent directories".into(),
                    })?;
                    self.own(fd.as_fd(), name, &dir, placement, Some(0o755))?;
                    confined::open_dir(self.root.as_fd(), &dir)
                        .map_err(io_error("open directory", &dir))?
                }
                result => result.map_err(io_error("open directory", &dir))?,
            };
        }
        Ok(fd)
    }

    /// Give `name` in `parent` its owner and, unless it is a symlink, its
    /// mode. chmod comes after chown because chown clears setuid and setgid.
    fn own(
        &mut self,
        parent: BorrowedFd<'_>,
        name: &[u8],
        path: &RelPath,
        placement: Placement,
        mode: Option<u32>,
    ) -> Result<(), Error> {
        if let Placement::Disk(uid, gid) = placement {
            chownat(
                parent,
                name,
                Some(Uid::from_raw(uid)),
                Some(Gid::from_raw(gid)),
                AtFlags::SYMLINK_NOFOLLOW,
            )
            .map_err(io_error("chown", path))?;
        }
        if let Some(mode) = mode {
            // Not a symlink (the caller just created or checked the entry),
            // so fchmodat without AT_SYMLINK_NOFOLLOW stays on it.
            chmodat(parent, name, Mode::from_raw_mode(mode), AtFlags::empty())
                .map_err(io_error("chmod", path))?;
        }
        self.record(path, placement);
        Ok(())
    }

    fn set_times(
        &self,
        parent: BorrowedFd<'_>,
        name: &[u8],
        path: &RelPath,
        times: &Timestamps,
    ) -> Result<(), Error> {
        utimensat(parent, name, times, AtFlags::SYMLINK_NOFOLLOW)
            .map_err(io_error("set times of", path))
    }

    fn record(&mut self, path: &RelPath, placement: Placement) {
        if let Placement::Table(uid, gid) = placement {
            self.owners.set(path.clone(), (uid, gid));
        }
    }

    /// A whiteout: remove `path` and everything below it.
    fn remove(&mut self, path: &RelPath) -> Result<(), Error> {
        let (parent, name) = path.split().expect("a whiteout names a child");
        let parent_fd = match confined::open_dir(self.root.as_fd(), &parent) {
            // Nothing to hide when the parent is missing or not a directory.
            Err(Errno::NOENT | Errno::NOTDIR) => return Ok(()),
            result => result.map_err(io_error("open parent directory of", path))?,
        };
        confined::remove_tree(parent_fd.as_fd(), name, path)?;
        self.owners.forget_tree(path);
        Ok(())
    }

    /// An opaque marker: remove everything in `dir` that this layer did not
    /// create itself (Docker's semantics; the marker may come after entries).
    fn opaque(&mut self, dir: &RelPath) -> Result<(), Error> {
        let dir_fd = match confined::open_in_root(
            self.root.as_fd(),
            dir,
            OFlags::RDONLY | OFlags::DIRECTORY,
        ) {
            Err(Errno::NOENT | Errno::NOTDIR) => return Ok(()),
            result => result.map_err(io_error("open directory", dir))?,
        };
        let listing = rustix::fs::Dir::new(dir_fd).map_err(io_error("list directory", dir))?;
        self.hide_lower(listing, dir, 0)
    }

    fn hide_lower(
        &mut self,
        mut listing: rustix::fs::Dir,
        dir: &RelPath,
        depth: usize,
    ) -> Result<(), Error> {
        if depth >= confined::MAX_DEPTH {
            return Err(Error::TooDeep {
                path: dir.to_string(),
                limit: confined::MAX_DEPTH,
            });
        }
        let children = confined::list(&mut listing).map_err(io_error("list directory", dir))?;
        let fd = listing.fd().map_err(io_error("list directory", dir))?;
        for (name, listed) in children {
            let child = dir.join(&name);
            if !self.unpacked.contains(&child) {
                confined::remove_tree(fd, &name, &child)?;
                self.owners.forget_tree(&child);
            } else if confined::is_dir(fd, name.as_slice(), listed)
                .map_err(io_error("inspect", &child))?
            {
                let sub = confined::open_child_dir(fd, name.as_slice())
                    .map_err(io_error("open directory", &child))?;
                self.hide_lower(sub, &child, depth + 1)?;
            }
        }
        Ok(())
    }

    /// Set the times of the layer's directories, now that nothing more is
    /// created in them. A directory removed or replaced later in the layer
    /// is passed over.
    fn set_dir_times(&self) -> Result<(), Error> {
        let root = self.root.as_fd();
        for (path, times) in &self.dir_times {
            let Some((parent, name)) = path.split() else {
                futimens(root, times).map_err(io_error("set times of", path))?;
                continue;
            };
            let parent_fd = match confined::open_dir(root, &parent) {
                Err(Errno::NOENT | Errno::NOTDIR) => continue,
                result => result.map_err(io_error("open parent directory of", path))?,
            };
            match utimensat(&parent_fd, name, times, AtFlags::SYMLINK_NOFOLLOW) {
                Err(Errno::NOENT) => {}
                result => result.map_err(io_error("set times of", path))?,
            }
        }
        Ok(())
    }
}

/// The entry's modification time, from a PAX record when there is one
/// (sub-second precision), else from the header. The access time is set to
/// the same, as the layer does not carry a meaningful one.
fn mtime<R: Read>(entry: &mut tar::Entry<'_, R>) -> io::Result<Timestamps> {
    let mut time = (
        i64::try_from(entry.header().mtime()?).unwrap_or(i64::MAX),
        0,
    );
    if let Some(records) = entry.pax_extensions()? {
        for record in records.flatten() {
            if record.key_bytes() == b"mtime"
                && let Some(parsed) = parse_pax_time(record.value_bytes())
            {
                time = parsed;
            }
        }
    }
    let spec = Timespec {
        tv_sec: time.0,
        tv_nsec: time.1,
    };
    Ok(Timestamps {
        last_access: spec,
        last_modification: spec,
    })
}

/// Parse a PAX time such as `1700000000.25`; negative times are left to the
/// header.
fn parse_pax_time(value: &[u8]) -> Option<(i64, i64)> {
    let text = std::str::from_utf8(value).ok()?;
    let (secs, frac) = text.split_once('.').unwrap_or((text, ""));
    if !frac.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let secs: i64 = secs.parse().ok().filter(|s| *s >= 0)?;
    let digits: String = frac.chars().chain(iter::repeat('0')).take(9).collect();
    Some((secs, digits.parse().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rootfs::Rootfs;
    use crate::rootfs::testing::{LayerBuilder, owner_mode};
    use std::io::Write;
    use std::os::unix::fs::{FileTypeExt, MetadataExt};

    const SHIFT: IdMap = IdMap::Shift {
        base: 100_000,
        count: 65_536,
    };

    fn rootfs(tmp: &tempfile::TempDir, ids: IdMap) -> Rootfs {
        Rootfs::create(tmp.path().join("root"), ids).unwrap()
    }

    fn base_layer() -> Vec<u8> {
        LayerBuilder::new()
            .dir("./", 0o755, (0, 0))
            .dir("etc/", 0o755, (0, 0))
            .file("etc/passwd", "root:x:0:0\n", 0o644, (0, 0))
            .file("/usr/bin/su", "su", 0o4755, (0, 0))
            .hardlink("usr/bin/su2", "usr/bin/su")
            .symlink("bin", "usr/bin")
            .dir("home/user", 0o700, (1000, 1001))
            .file("home/user/notes", "hi", 0o600, (1000, 1001))
            .symlink_owned("home/user/link", "notes", (1000, 1001))
            .node("run/fifo", EntryType::Fifo, (0, 0))
            .node("dev/null", EntryType::Char, (1, 3))
            .tar()
    }

    #[test]
    fn applies_every_kind_with_shifted_owners_and_modes() {
        let tmp = tempfile::tempdir().unwrap();
        let mut fs = rootfs(&tmp, SHIFT);
        let applied = fs.apply(base_layer().as_slice()).unwrap();
        assert_eq!(
            applied,
            Applied {
                entries: 11,
                skipped_devices: 1
            }
        );
        let root = fs.path();

        assert_eq!(
            std::fs::read_to_string(root.join("etc/passwd")).unwrap(),
            "root:x:0:0\n"
        );
        assert_eq!(owner_mode(root), (100_000, 100_000, 0o755));
        assert_eq!(
            owner_mode(&root.join("usr/bin/su")),
            (100_000, 100_000, 0o4755)
        );
        // Implicit parents: root-owned 0755.
        assert_eq!(owner_mode(&root.join("usr")), (100_000, 100_000, 0o755));
        assert_eq!(
            owner_mode(&root.join("home/user")),
            (101_000, 101_001, 0o700)
        );
        assert_eq!(
            owner_mode(&root.join("home/user/notes")),
            (101_000, 101_001, 0o600)
        );
        assert_eq!(owner_mode(&root.join("home/user/link")).0, 101_000);
        assert_eq!(
            std::fs::read_link(root.join("bin")).unwrap(),
            Path::new("usr/bin")
        );
        let su = std::fs::metadata(root.join("usr/bin/su")).unwrap();
        assert_eq!(
            su.ino(),
            std::fs::metadata(root.join("usr/bin/su2")).unwrap().ino()
        );
        assert!(
            std::fs::symlink_metadata(root.join("run/fifo"))
                .unwrap()
                .file_type()
                .is_fifo()
        );
        // A layer's device node is never made on the host.
        assert!(std::fs::symlink_metadata(root.join("dev/null")).is_err());
        // Times, directories' included (set after their children).
        assert_eq!(su.mtime(), 1_600_000_000);
        assert_eq!(
            std::fs::metadata(root.join("home/user")).unwrap().mtime(),
            1_600_000_000
        );
        assert_eq!(
            std::fs::metadata(root.join("etc")).unwrap().mtime(),
            1_600_000_000
        );
    }

    #[test]
    fn single_keeps_owners_in_the_side_table() {
        let tmp = tempfile::tempdir().unwrap();
        let mut fs = rootfs(&tmp, IdMap::Single);
        fs.apply(base_layer().as_slice()).unwrap();
        let me = (
            rustix::process::geteuid().as_raw(),
            rustix::process::getegid().as_raw(),
        );
        let (uid, gid, mode) = owner_mode(&fs.path().join("home/user/notes"));
        assert_eq!(((uid, gid), mode), (me, 0o600));
        let p = |s: &str| RelPath::normalise(s.as_bytes()).unwrap();
        assert_eq!(fs.owners.get(&p("home/user/notes")), (1000, 1001));
        assert_eq!(fs.owners.get(&p("home/user/link")), (1000, 1001));
        assert_eq!(fs.owners.get(&p("etc/passwd")), (0, 0));

        // Replacing the file with a root-owned one and removing the
        // directory drop their recorded owners.
        let layer = LayerBuilder::new()
            .file("home/user/notes", "new", 0o644, (0, 0))
            .empty("home/user/.wh.link")
            .tar();
        fs.apply(layer.as_slice()).unwrap();
        assert_eq!(fs.owners.get(&p("home/user/notes")), (0, 0));
        assert_eq!(fs.owners.get(&p("home/user/link")), (0, 0));
        assert_eq!(fs.owners.get(&p("home/user")), (1000, 1001));
    }

    #[test]
    fn refuses_owners_outside_the_map() {
        let tmp = tempfile::tempdir().unwrap();
        let mut fs = rootfs(&tmp, SHIFT);
        let layer = LayerBuilder::new().file("f", "x", 0o644, (70_000, 0)).tar();
        let err = fs.apply(layer.as_slice()).unwrap_err();
        assert!(
            matches!(&err, Error::Layer { entry, .. } if entry == "f"),
            "{err}"
        );
    }

    #[test]
    fn reads_gzip_and_zstd_layers() {
        let tmp = tempfile::tempdir().unwrap();
        let mut fs = rootfs(&tmp, SHIFT);
        let tar = LayerBuilder::new().file("gz", "gzip", 0o644, (0, 0)).tar();
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        gz.write_all(&tar).unwrap();
        fs.apply(gz.finish().unwrap().as_slice()).unwrap();
        let tar = LayerBuilder::new().file("zst", "zstd", 0o644, (0, 0)).tar();
        let mut zst = Vec::new();
        ruzstd::encoding::compress(
            tar.as_slice(),
            &mut zst,
            ruzstd::encoding::CompressionLevel::Fastest,
        );
        fs.apply(zst.as_slice()).unwrap();
        assert_eq!(
            std::fs::read_to_string(fs.path().join("gz")).unwrap(),
            "gzip"
        );
        assert_eq!(
            std::fs::read_to_string(fs.path().join("zst")).unwrap(),
            "zstd"
        );
    }

    #[test]
    fn whiteouts_and_opaque_directories_hide_lower_layers() {
        let tmp = tempfile::tempdir().unwrap();
        let mut fs = rootfs(&tmp, SHIFT);
        let lower = LayerBuilder::new()
            .file("a/b/c", "c", 0o644, (0, 0))
            .file("a/d", "d", 0o644, (0, 0))
            .file("x/y", "y", 0o644, (0, 0))
            .file("keep/old", "old", 0o644, (0, 0))
            .file("keep/sub/old", "old", 0o644, (0, 0))
            .tar();
        fs.apply(lower.as_slice()).unwrap();
        let upper = LayerBuilder::new()
            .empty("a/.wh.b")
            .empty(".wh.x")
            .empty("missing/.wh.nothing")
            .file("keep/new", "new", 0o644, (0, 0))
            .file("keep/sub/new", "new", 0o644, (0, 0))
            .empty("keep/.wh..wh..opq")
            .tar();
        fs.apply(upper.as_slice()).unwrap();
        let root = fs.path();
        let exists = |p: &str| std::fs::symlink_metadata(root.join(p)).is_ok();
        assert!(!exists("a/b") && exists("a/d") && !exists("x"));
        assert!(!exists("keep/old") && !exists("keep/sub/old"));
        assert!(exists("keep/new") && exists("keep/sub/new"));
        assert!(!exists("keep/.wh..wh..opq") && !exists("a/.wh.b") && !exists("missing"));
    }

    #[test]
    fn replaces_existing_entries_like_docker() {
        let tmp = tempfile::tempdir().unwrap();
        let mut fs = rootfs(&tmp, SHIFT);
        let lower = LayerBuilder::new()
            .file("d/inner", "i", 0o644, (0, 0))
            .file("f", "f", 0o644, (0, 0))
            .file("keep/inner", "i", 0o644, (0, 0))
            .tar();
        fs.apply(lower.as_slice()).unwrap();
        let upper = LayerBuilder::new()
            .file("d", "now a file", 0o600, (0, 0))
            .dir("f", 0o750, (0, 0))
            .dir("keep", 0o711, (5, 5))
            .tar();
        fs.apply(upper.as_slice()).unwrap();
        let root = fs.path();
        assert_eq!(
            std::fs::read_to_string(root.join("d")).unwrap(),
            "now a file"
        );
        assert!(std::fs::metadata(root.join("f")).unwrap().is_dir());
        assert_eq!(owner_mode(&root.join("keep")), (100_005, 100_005, 0o711));
        assert!(root.join("keep/inner").exists());
    }

    #[test]
    fn hostile_layers_cannot_write_outside_the_root() {
        let outside = tempfile::Builder::new()
            .prefix("outside-")
            .tempdir()
            .unwrap();
        std::fs::write(outside.path().join("precious"), "keep").unwrap();
        let tmp = tempfile::tempdir().unwrap();
        let mut fs = rootfs(&tmp, SHIFT);
        let target = outside.path().to_str().unwrap();

        // Through a symlink to an absolute host path: resolved inside the
        // root, where that path does not exist.
        let layer = LayerBuilder::new()
            .symlink("evil", target)
            .file("evil/x", "pwned", 0o644, (0, 0))
            .tar();
        assert!(fs.apply(layer.as_slice()).is_err());
        // Through a relative symlink climbing out, and `..` in names.
        let layer = LayerBuilder::new()
            .symlink("up", "../../../../../../../..")
            .file(&format!("up{target}/y"), "pwned", 0o644, (0, 0))
            .tar();
        fs.apply(layer.as_slice()).unwrap();
        let landed = fs.path().join(target.trim_start_matches('/')).join("y");
        assert_eq!(std::fs::read_to_string(landed).unwrap(), "pwned");
        for hostile in [".wh..", ".wh..."] {
            let layer = LayerBuilder::new().empty(hostile).tar();
            assert!(matches!(
                fs.apply(layer.as_slice()),
                Err(Error::Layer { .. })
            ));
        }
        for hostile in ["../x", "a/../../x"] {
            let layer = LayerBuilder::new()
                .file(hostile, "pwned", 0o644, (0, 0))
                .tar();
            let err = fs.apply(layer.as_slice()).unwrap_err();
            assert!(
                matches!(&err, Error::Layer { entry, .. } if entry == hostile),
                "{err}"
            );
        }
        let layer = LayerBuilder::new().hardlink("h", "../../etc/passwd").tar();
        assert!(matches!(
            fs.apply(layer.as_slice()),
            Err(Error::Layer { .. })
        ));
        // A hard link through a symlink leaving the root lands inside it.
        std::fs::write(outside.path().join("secret"), "s").unwrap();
        let layer = LayerBuilder::new()
            .symlink("out", target)
            .hardlink("h", "out/secret")
            .tar();
        assert!(fs.apply(layer.as_slice()).is_err());
        // Whiteouts through symlinks stay inside too.
        let layer = LayerBuilder::new()
            .symlink("w", target)
            .empty("w/.wh.precious")
            .tar();
        fs.apply(layer.as_slice()).unwrap();

        let names: Vec<_> = std::fs::read_dir(outside.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .collect();
        assert_eq!(names, ["precious", "secret"]);
        assert_eq!(
            std::fs::read_to_string(outside.path().join("precious")).unwrap(),
            "keep"
        );
        assert_eq!(
            std::fs::metadata(outside.path().join("secret"))
                .unwrap()
                .nlink(),
            1
        );
    }

    #[test]
    fn long_names_are_applied() {
        let tmp = tempfile::tempdir().unwrap();
        let mut fs = rootfs(&tmp, SHIFT);
        let long = format!("{}/{}", "d".repeat(150), "f".repeat(120));
        let layer = LayerBuilder::new().file(&long, "long", 0o644, (0, 0)).tar();
        fs.apply(layer.as_slice()).unwrap();
        assert_eq!(
            std::fs::read_to_string(fs.path().join(&long)).unwrap(),
            "long"
        );
    }

    #[test]
    fn parses_pax_times() {
        assert_eq!(
            parse_pax_time(b"1700000000.25"),
            Some((1_700_000_000, 250_000_000))
        );
        assert_eq!(parse_pax_time(b"12"), Some((12, 0)));
        assert_eq!(parse_pax_time(b"-1.5"), None);
        assert_eq!(parse_pax_time(b"1.x"), None);
    }
}
