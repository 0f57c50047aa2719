//! Turn what a command changed into a layer, with the semantics of
//! BuildKit's and containers/storage's "naive diff".
//!
//! Planning (which paths become entries, whiteouts or opaque markers) is
//! kept apart from writing so that the rules can be read, and tested, on
//! their own.

use std::cmp::Ordering;
use std::collections::{HashMap, HashSet};
use std::io::{self, Read, Write};
use std::iter;
use std::os::fd::{AsFd, BorrowedFd};
use std::path::Path;

use rustix::fs::OFlags;
use tar::EntryType;

use super::Changes;
use super::apply::{OPAQUE, WHITEOUT};
use super::confined::{self, io_error};
use super::layer_tar::{LayerWriter, Record};
use super::owners::OwnerTable;
use super::relpath::RelPath;
use super::snapshot::{self, Kind, Meta, Snapshot};
use crate::error::Error;
use crate::ids::IdMap;

/// One thing the layer says about a path, in archive order.
#[derive(Debug, PartialEq, Eq)]
enum Step {
    /// The path as it is now.
    Entry(RelPath, Why),
    /// The path is gone: `PARENT/.wh.NAME`.
    Whiteout(RelPath),
    /// The directory was recreated; nothing below it from lower layers
    /// survives: `DIR/.wh..wh..opq`.
    Opaque(RelPath),
}

/// Why a path is in the layer, for the counts.
#[derive(Debug, PartialEq, Eq, Clone, Copy)]
enum Why {
    Added,
    Modified,
    /// Unchanged, but a parent of something that changed, so that extraction
    /// recreates it with its owner and mode.
    Parent,
}

/// The steps, and the paths whose file is no longer the one the side table
/// describes.
struct Plan {
    steps: Vec<Step>,
    replaced: Vec<RelPath>,
}

/// Write the layer of what changed in the tree at `dir` since `before`.
pub(super) fn diff(
    dir: &Path,
    ids: IdMap,
    owners: &mut OwnerTable,
    before: &Snapshot,
    skip: &[RelPath],
    epoch: Option<u64>,
    out: impl Write,
) -> Result<Changes, Error> {
    let root = confined::open_root(dir)?;
    let after = snapshot::take(root.as_fd(), skip)?;
    let plan = plan(before, &after, skip);
    let clamp = |mtime: i64| {
        let secs = u64::try_from(mtime).unwrap_or(0);
        epoch.map_or(secs, |epoch| secs.min(epoch))
    };
    let output = |source| Error::Output { source };

    let mut writer = LayerWriter::new(out);
    let mut changes = Changes::default();
    // The first path written for each (device, inode) of a multiply linked file.
    let mut first_path: HashMap<((u32, u32), u64), &RelPath> = HashMap::new();
    for step in &plan.steps {
        match step {
            Step::Entry(path, why) => {
                match why {
                    Why::Added => changes.added += 1,
                    Why::Modified => changes.modified += 1,
                    Why::Parent => {}
                }
                let meta = &after.entries[path];
                let owner =
                    ids.image_owner((meta.uid, meta.gid), || match before.entries.get(path) {
                        Some(was) if was.same_file(meta) => owners.get(path),
                        _ => (0, 0),
                    });
                let mut name = path.as_bytes().to_vec();
                if meta.kind == Kind::Dir {
                    name.push(b'/');
                }
                let mut record = Record {
                    path: &name,
                    kind: entry_type(meta.kind),
                    mode: meta.mode,
                    owner,
                    mtime: clamp(meta.mtime.0),
                    size: 0,
                    link: meta.target.as_deref(),
                    device: (0, 0),
                };
                match meta.kind {
                    Kind::File
                        if meta.nlink > 1 && first_path.contains_key(&(meta.dev, meta.ino)) =>
                    {
                        let first = first_path[&(meta.dev, meta.ino)];
                        record.kind = EntryType::Link;
                        record.link = Some(first.as_bytes());
                        writer.append(&record, io::empty()).map_err(output)?;
                    }
                    Kind::File => {
                        first_path.insert((meta.dev, meta.ino), path);
                        record.size = meta.size;
                        let content = Content::open(root.as_fd(), path, meta)?;
                        writer
                            .append(&record, content)
                            .map_err(|source| Error::Io {
                                op: "add to the layer",
                                path: path.to_string(),
                                source,
                            })?;
                    }
                    Kind::Char | Kind::Block => {
                        record.device = meta.rdev;
                        writer.append(&record, io::empty()).map_err(output)?;
                    }
                    _ => writer.append(&record, io::empty()).map_err(output)?,
                }
            }
            Step::Whiteout(path) => {
                changes.deleted += 1;
                let (parent, name) = path.split().expect("the root is never deleted");
                let mut marker = WHITEOUT.to_vec();
                marker.extend_from_slice(name);
                write_marker(&mut writer, &parent.join(&marker), epoch).map_err(output)?;
            }
            Step::Opaque(dir) => {
                write_marker(&mut writer, &dir.join(OPAQUE), epoch).map_err(output)?
            }
        }
    }
    changes.tar_size = writer.finish().map_err(output)?;
    for path in &plan.replaced {
        owners.forget(path);
    }
    Ok(changes)
}

/// Decide what the layer holds. `before` and `after` are walked together in
/// path order, so a directory is always decided before what is in it.
fn plan(before: &Snapshot, after: &Snapshot, skip: &[RelPath]) -> Plan {
    let mut plan = Plan {
        steps: Vec::new(),
        replaced: Vec::new(),
    };
    let mut emitted: HashSet<RelPath> = HashSet::new();
    // Recreated directories enclosing the current path, innermost last.
    let mut opaque: Vec<&RelPath> = Vec::new();

    for (path, was, now) in join(before, after) {
        if skip.iter().any(|s| path.is_below(s)) {
            continue;
        }
        while opaque.last().is_some_and(|dir| !path.is_below(dir)) {
            opaque.pop();
        }
        let skipped = skip.contains(path);
        if let Some(was) = was
            && now.is_none_or(|now| !was.same_file(now))
        {
            plan.replaced.push(path.clone());
        }
        let why = match (was, now) {
            (None, None) => continue,
            (Some(_), None) => {
                // Below a removed, replaced or recreated directory the
                // directory's own step already hides it.
                let (parent, _) = path.split().expect("the root is not in a snapshot");
                let parent_stays = parent.is_root()
                    || present(after, &parent).is_some_and(|m| m.kind == Kind::Dir);
                if !skipped && opaque.is_empty() && parent_stays {
                    add_parents(&mut plan.steps, &mut emitted, path);
                    plan.steps.push(Step::Whiteout(path.clone()));
                }
                continue;
            }
            (None, Some(_)) => Why::Added,
            // A skipped path's own metadata is the mount on it, not the tree.
            (Some(_), Some(_)) if skipped => continue,
            (Some(was), Some(now)) if !opaque.is_empty() || was.changed(now) => Why::Modified,
            (Some(_), Some(_)) => continue,
        };
        add_parents(&mut plan.steps, &mut emitted, path);
        plan.steps.push(Step::Entry(path.clone(), why));
        emitted.insert(path.clone());
        if let (Some(was), Some(now)) = (was, now)
            && was.kind == Kind::Dir
            && now.kind == Kind::Dir
            && !was.same_file(now)
        {
            plan.steps.push(Step::Opaque(path.clone()));
            opaque.push(path);
        }
    }
    plan
}

/// The metadata of `path` in `snapshot`, if a layer can hold it.
fn present<'a>(snapshot: &'a Snapshot, path: &RelPath) -> Option<&'a Meta> {
    snapshot.entries.get(path).filter(|m| layer_can_hold(m))
}

/// Sockets cannot be put in a tar, so to a layer they do not exist.
fn layer_can_hold(meta: &Meta) -> bool {
    meta.kind != Kind::Socket
}

/// Every path of either snapshot in order, with its metadata before and
/// after: a merge of the two sorted maps, which spares a lookup per path.
fn join<'a>(
    before: &'a Snapshot,
    after: &'a Snapshot,
) -> impl Iterator<Item = (&'a RelPath, Option<&'a Meta>, Option<&'a Meta>)> {
    let mut old = before.entries.iter().peekable();
    let mut new = after.entries.iter().peekable();
    iter::from_fn(move || {
        let order = match (old.peek(), new.peek()) {
            (None, None) => return None,
            (Some(_), None) => Ordering::Less,
            (None, Some(_)) => Ordering::Greater,
            (Some((a, _)), Some((b, _))) => a.cmp(b),
        };
        let (path, was, now) = match order {
            Ordering::Less => {
                let (path, was) = old.next()?;
                (path, Some(was), None)
            }
            Ordering::Greater => {
                let (path, now) = new.next()?;
                (path, None, Some(now))
            }
            Ordering::Equal => {
                let (path, was) = old.next()?;
                (path, Some(was), new.next().map(|(_, now)| now))
            }
        };
        let can_hold = |m: &&Meta| layer_can_hold(m);
        Some((path, was.filter(can_hold), now.filter(can_hold)))
    })
}

/// Emit the directories above `path` that are not in the layer yet.
fn add_parents(steps: &mut Vec<Step>, emitted: &mut HashSet<RelPath>, path: &RelPath) {
    for parent in path.ancestors() {
        if !emitted.contains(&parent) {
            steps.push(Step::Entry(parent.clone(), Why::Parent));
            emitted.insert(parent);
        }
    }
}

fn entry_type(kind: Kind) -> EntryType {
    match kind {
        Kind::File | Kind::Socket => EntryType::Regular,
        Kind::Dir => EntryType::Directory,
        Kind::Symlink => EntryType::Symlink,
        Kind::Char => EntryType::Char,
        Kind::Block => EntryType::Block,
        Kind::Fifo => EntryType::Fifo,
    }
}

/// A whiteout or opaque marker: an empty file owned by root, dated at the
/// epoch (or 0) so that it never varies.
fn write_marker<W: Write>(
    writer: &mut LayerWriter<W>,
    path: &RelPath,
    epoch: Option<u64>,
) -> io::Result<()> {
    let record = Record {
        path: path.as_bytes(),
        kind: EntryType::Regular,
        mode: 0,
        owner: (0, 0),
        mtime: epoch.unwrap_or(0),
        size: 0,
        link: None,
        device: (0, 0),
    };
    writer.append(&record, io::empty())
}

/// A regular file's content, checked to be the file the snapshot saw and to
/// yield exactly the size the header announces (a short read would
/// otherwise shift every later entry in the archive).
struct Content {
    file: std::fs::File,
    left: u64,
}

impl Content {
    fn open(root: BorrowedFd<'_>, path: &RelPath, meta: &Meta) -> Result<Content, Error> {
        let fd = confined::open_in_root(root, path, OFlags::RDONLY | OFlags::NOFOLLOW)
            .map_err(io_error("open", path))?;
        let stat = snapshot::look(fd.as_fd(), "").map_err(io_error("inspect", path))?;
        if stat.stx_ino != meta.ino || (stat.stx_dev_major, stat.stx_dev_minor) != meta.dev {
            return Err(Error::Io {
                op: "add to the layer",
                path: path.to_string(),
                source: io::Error::other("the file was replaced after the snapshot"),
            });
        }
        Ok(Content {
            file: fd.into(),
            left: meta.size,
        })
    }
}

impl Read for Content {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.left == 0 {
            return Ok(0);
        }
        let want = buf
            .len()
            .min(usize::try_from(self.left).unwrap_or(usize::MAX));
        let n = self.file.read(&mut buf[..want])?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the file shrank after the snapshot",
            ));
        }
        self.left -= n as u64;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rootfs::Rootfs;
    use crate::rootfs::testing::{LayerBuilder, Seen, read_layer};
    use std::fs;
    use std::os::unix::fs::{MetadataExt, PermissionsExt, lchown};

    const BASE: u32 = 100_000;
    const SHIFT: IdMap = IdMap::Shift {
        base: BASE,
        count: 65_536,
    };

    fn base_layer() -> Vec<u8> {
        LayerBuilder::new()
            .dir("etc/", 0o755, (0, 0))
            .file("etc/passwd", "root", 0o644, (0, 0))
            .file("etc/hosts", "h", 0o644, (0, 0))
            .file("etc/chmodme", "c", 0o644, (0, 0))
            .file("old/a", "a", 0o644, (0, 0))
            .file("old/sub/b", "b", 0o644, (0, 0))
            .file("swap/x", "x", 0o644, (0, 0))
            .file("recreate/keep", "k", 0o644, (0, 0))
            .file("recreate/gone", "g", 0o644, (0, 0))
            .dir("proc", 0o555, (0, 0))
            .file("var/lib/deep/file", "f", 0o644, (0, 0))
            .dir("home/u", 0o750, (1000, 1000))
            .tar()
    }

    /// Write `data` at `path` as root inside the command would (owned by
    /// the shifted root), or as `owner` when given.
    fn write(root: &Path, path: &str, data: &str, owner: Option<u32>) {
        let path = root.join(path);
        fs::write(&path, data).unwrap();
        let id = owner.unwrap_or(BASE);
        lchown(&path, Some(id), Some(id)).unwrap();
    }

    /// What a `RUN` command might do.
    fn command(root: &Path) {
        write(root, "etc/new", "n", None);
        write(root, "etc/passwd", "root2", None);
        fs::set_permissions(root.join("etc/chmodme"), fs::Permissions::from_mode(0o600)).unwrap();
        fs::remove_file(root.join("etc/hosts")).unwrap();
        fs::remove_dir_all(root.join("old")).unwrap();
        fs::remove_dir_all(root.join("swap")).unwrap();
        write(root, "swap", "now a file", None);
        fs::hard_link(root.join("etc/new"), root.join("etc/new2")).unwrap();
        fs::create_dir(root.join("proc/1")).unwrap();
        write(root, "proc/1/status", "running", None);
        fs::remove_dir_all(root.join("recreate")).unwrap();
        fs::create_dir(root.join("recreate")).unwrap();
        lchown(root.join("recreate"), Some(BASE), Some(BASE)).unwrap();
        write(root, "recreate/keep", "k2", None);
        write(root, "var/lib/deep/new", "new", None);
        write(root, "home/u/f", "mine", Some(BASE + 1000));
        std::os::unix::fs::symlink("etc/passwd", root.join("link")).unwrap();
        lchown(root.join("link"), Some(BASE), Some(BASE)).unwrap();
        let null = root.join("null");
        let char_dev = rustix::fs::FileType::CharacterDevice;
        let mode = rustix::fs::Mode::from_raw_mode(0o666);
        rustix::fs::mknodat(
            rustix::fs::CWD,
            &null,
            char_dev,
            mode,
            rustix::fs::makedev(1, 3),
        )
        .unwrap();
        fs::set_permissions(&null, fs::Permissions::from_mode(0o666)).unwrap();
        lchown(&null, Some(BASE), Some(BASE)).unwrap();
    }

    fn shifted_rootfs(tmp: &tempfile::TempDir, name: &str) -> Rootfs {
        let mut rootfs = Rootfs::create(tmp.path().join(name), SHIFT).unwrap();
        rootfs.apply(base_layer().as_slice()).unwrap();
        rootfs
    }

    fn diff_after_command(rootfs: &mut Rootfs, epoch: Option<u64>) -> (Changes, Vec<u8>) {
        let skip = ["/proc/".to_owned()];
        let before = rootfs.snapshot(&skip).unwrap();
        command(rootfs.path());
        let mut tar = Vec::new();
        let changes = rootfs.diff(&before, &skip, epoch, &mut tar).unwrap();
        (changes, tar)
    }

    fn summary(seen: &[Seen]) -> Vec<String> {
        seen.iter()
            .map(|e| {
                let link = e
                    .link
                    .as_deref()
                    .map(|l| format!(" -> {l}"))
                    .unwrap_or_default();
                format!(
                    "{} {} {:o} {}:{}{link}",
                    e.kind, e.path, e.mode, e.owner.0, e.owner.1
                )
            })
            .collect()
    }

    #[test]
    fn writes_what_the_command_changed() {
        let tmp = tempfile::tempdir().unwrap();
        let mut rootfs = shifted_rootfs(&tmp, "root");
        let (changes, tar) = diff_after_command(&mut rootfs, None);
        let seen = read_layer(&tar);
        assert_eq!(
            summary(&seen),
            [
                "5 etc/ 755 0:0",
                "0 etc/chmodme 600 0:0",
                "0 etc/.wh.hosts 0 0:0",
                "0 etc/new 644 0:0",
                "1 etc/new2 644 0:0 -> etc/new",
                "0 etc/passwd 644 0:0",
                "5 home/ 755 0:0",
                "5 home/u/ 750 1000:1000",
                "0 home/u/f 644 1000:1000",
                "2 link 777 0:0 -> etc/passwd",
                "3 null 666 0:0",
                "0 .wh.old 0 0:0",
                "5 recreate/ 755 0:0",
                "0 recreate/.wh..wh..opq 0 0:0",
                "0 recreate/keep 644 0:0",
                "0 swap 644 0:0",
                "5 var/ 755 0:0",
                "5 var/lib/ 755 0:0",
                "5 var/lib/deep/ 755 0:0",
                "0 var/lib/deep/new 644 0:0",
            ]
        );
        let data = |path: &str| seen.iter().find(|e| e.path == path).unwrap().data.clone();
        assert_eq!(
            (data("etc/passwd"), data("swap"), data("etc/new2")),
            ("root2".into(), "now a file".into(), "".into())
        );
        assert_eq!(
            changes,
            Changes {
                added: 6,
                modified: 8,
                deleted: 2,
                tar_size: tar.len() as u64,
            }
        );
        assert_eq!(
            seen.iter().find(|e| e.path == "null").unwrap().device,
            (1, 3)
        );
        let old = fs::metadata(rootfs.path().join("var/lib")).unwrap().mtime();
        assert_eq!(
            seen.iter().find(|e| e.path == "var/lib/").unwrap().mtime,
            old as u64
        );

        // The layer recreates the tree on top of the base.
        let mut copy = shifted_rootfs(&tmp, "copy");
        copy.apply(tar.as_slice()).unwrap();
        let skip = ["proc".to_owned()];
        let (want, got) = (
            rootfs.snapshot(&skip).unwrap(),
            copy.snapshot(&skip).unwrap(),
        );
        // Device nodes are never applied from a layer (see apply).
        let view = |s: &Snapshot| -> Vec<_> {
            s.entries
                .iter()
                .filter(|(_, m)| !matches!(m.kind, Kind::Char | Kind::Block))
                .map(|(p, m)| {
                    (
                        p.clone(),
                        m.kind,
                        m.mode,
                        m.uid,
                        m.gid,
                        m.size,
                        m.rdev,
                        m.target.clone(),
                    )
                })
                .collect()
        };
        assert_eq!(view(&got), view(&want));
        for path in ["etc/passwd", "swap", "recreate/keep", "home/u/f"] {
            assert_eq!(
                fs::read(copy.path().join(path)).unwrap(),
                fs::read(rootfs.path().join(path)).unwrap()
            );
        }
    }

    #[test]
    fn same_changes_give_the_same_bytes() {
        let tmp = tempfile::tempdir().unwrap();
        let (_, first) = diff_after_command(&mut shifted_rootfs(&tmp, "a"), Some(1_000));
        let (_, second) = diff_after_command(&mut shifted_rootfs(&tmp, "b"), Some(1_000));
        assert!(first == second, "layers differ");
        assert!(read_layer(&first).iter().all(|e| e.mtime == 1_000));
    }

    #[test]
    fn clamps_times_to_the_epoch() {
        let tmp = tempfile::tempdir().unwrap();
        let epoch = 1_650_000_000;
        let (_, tar) = diff_after_command(&mut shifted_rootfs(&tmp, "root"), Some(epoch));
        let seen = read_layer(&tar);
        let mtime = |path: &str| seen.iter().find(|e| e.path == path).unwrap().mtime;
        // Older than the epoch: kept; newer: clamped.
        assert_eq!(mtime("etc/chmodme"), 1_600_000_000);
        assert_eq!(mtime("etc/new"), epoch);
        assert_eq!(mtime("etc/.wh.hosts"), epoch);
    }

    #[test]
    fn single_writes_recorded_owners_for_surviving_files() {
        let tmp = tempfile::tempdir().unwrap();
        let mut rootfs = Rootfs::create(tmp.path().join("root"), IdMap::Single).unwrap();
        let layer = LayerBuilder::new()
            .dir("home/u", 0o750, (1000, 1000))
            .file("home/u/kept", "k", 0o644, (1000, 1000))
            .file("home/u/replaced", "r", 0o644, (1000, 1000))
            .tar();
        rootfs.apply(layer.as_slice()).unwrap();
        let before = rootfs.snapshot(&[]).unwrap();
        let root = rootfs.path().to_owned();
        fs::write(root.join("home/u/kept"), "k2").unwrap();
        fs::remove_file(root.join("home/u/replaced")).unwrap();
        fs::write(root.join("home/u/replaced"), "r2").unwrap();
        fs::write(root.join("home/u/new"), "n").unwrap();
        let mut tar = Vec::new();
        rootfs.diff(&before, &[], None, &mut tar).unwrap();
        assert_eq!(
            summary(&read_layer(&tar)),
            [
                "5 home/ 755 0:0",
                "5 home/u/ 750 1000:1000",
                "0 home/u/kept 644 1000:1000",
                "0 home/u/new 644 0:0",
                "0 home/u/replaced 644 0:0",
            ]
        );
        let p = |s: &str| RelPath::normalise(s.as_bytes()).unwrap();
        assert_eq!(rootfs.owners.get(&p("home/u/replaced")), (0, 0));
        assert_eq!(rootfs.owners.get(&p("home/u/kept")), (1000, 1000));
    }

    #[test]
    fn no_changes_give_an_empty_layer() {
        let tmp = tempfile::tempdir().unwrap();
        let mut rootfs = shifted_rootfs(&tmp, "root");
        let before = rootfs.snapshot(&[]).unwrap();
        let mut tar = Vec::new();
        let changes = rootfs.diff(&before, &[], None, &mut tar).unwrap();
        assert_eq!(
            changes,
            Changes {
                tar_size: 1024,
                ..Changes::default()
            }
        );
        assert!(read_layer(&tar).is_empty());
    }
}
