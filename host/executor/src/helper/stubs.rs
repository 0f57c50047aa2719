//! Paths inside the root file system, resolved as the command would see
//! them (symlinks stay inside the root), and the mount points kiln had to
//! create, removed again after the command so they never reach the layer
//! (BuildKit removes its mount stubs the same way).

use std::os::fd::{AsFd, OwnedFd};

use crate::rootfs::confined;
use crate::rootfs::relpath::RelPath;
use std::path::Path;

use rustix::fs::{AtFlags, Mode, OFlags};

/// Open `path` (absolute inside the image) beneath `root` with symlinks
/// resolved inside it, never through `/proc` magic links.
pub(super) fn open_in_root(root: impl AsFd, path: &str, flags: OFlags) -> Result<OwnedFd, String> {
    let relative = RelPath::normalise(path.as_bytes())
        .ok_or_else(|| format!("{path} climbs out of the root"))?;
    confined::open_in_root(root.as_fd(), &relative, flags).map_err(|e| format!("{path}: {e}"))
}

/// Mount points created for one command.
pub(super) struct Stubs {
    root: OwnedFd,
    /// Created paths, parents first, and whether each is a directory.
    created: Vec<(String, bool)>,
    /// Host owner for created paths (the mapped root).
    owner: Option<(u32, u32)>,
}

impl Stubs {
    /// Stubs beneath the root directory `root`, owned by `owner` on disk.
    pub(super) fn new(root: &Path, owner: Option<(u32, u32)>) -> Result<Stubs, String> {
        let root = rustix::fs::open(
            root,
            OFlags::DIRECTORY | OFlags::RDONLY | OFlags::CLOEXEC | OFlags::NOFOLLOW,
            Mode::empty(),
        )
        .map_err(|e| format!("opening the root file system {}: {e}", root.display()))?;
        Ok(Stubs {
            root,
            created: Vec::new(),
            owner,
        })
    }

    /// The root directory.
    pub(super) fn root(&self) -> &OwnedFd {
        &self.root
    }

    /// Make sure `target` exists (a directory, or an empty file when
    /// `dir` is false), creating missing parents, and return it opened
    /// with `O_PATH`.
    pub(super) fn ensure(&mut self, target: &str, dir: bool) -> Result<OwnedFd, String> {
        let clean = RelPath::normalise(target.as_bytes())
            .ok_or_else(|| format!("mount target {target} climbs out of the root"))?;
        let clean = format!("/{}", String::from_utf8_lossy(clean.as_bytes()));
        let mut so_far = String::new();
        let components: Vec<&str> = clean.split('/').filter(|c| !c.is_empty()).collect();
        for (i, name) in components.iter().enumerate() {
            let parent = open_in_root(&self.root, &so_far, OFlags::PATH | OFlags::DIRECTORY)?;
            so_far = format!("{so_far}/{name}");
            let last = i + 1 == components.len();
            if open_in_root(&self.root, &so_far, OFlags::PATH).is_ok() {
                continue;
            }
            let parent = open_in_root(&parent, ".", OFlags::RDONLY | OFlags::DIRECTORY)?;
            if last && !dir {
                let file = rustix::fs::openat(
                    &parent,
                    *name,
                    OFlags::CREATE
                        | OFlags::EXCL
                        | OFlags::WRONLY
                        | OFlags::NOFOLLOW
                        | OFlags::CLOEXEC,
                    Mode::from_raw_mode(0o644),
                )
                .map_err(|e| format!("creating the mount point {so_far}: {e}"))?;
                self.chown(&file)?;
            } else {
                rustix::fs::mkdirat(&parent, *name, Mode::from_raw_mode(0o755))
                    .map_err(|e| format!("creating the mount point {so_far}: {e}"))?;
                let created = rustix::fs::openat(
                    &parent,
                    *name,
                    OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                    Mode::empty(),
                )
                .map_err(|e| format!("{so_far}: {e}"))?;
                self.chown(&created)?;
            }
            self.created.push((so_far.clone(), !last || dir));
        }
        open_in_root(&self.root, &clean, OFlags::PATH)
    }

    fn chown(&self, fd: &OwnedFd) -> Result<(), String> {
        if let Some((uid, gid)) = self.owner {
            rustix::fs::fchown(
                fd,
                Some(rustix::fs::Uid::from_raw(uid)),
                Some(rustix::fs::Gid::from_raw(gid)),
            )
            .map_err(|e| format!("chown of a mount point: {e}"))?;
        }
        Ok(())
    }

    /// Remove the created paths that are still empty, deepest first.
    pub(super) fn remove(self) {
        for (path, dir) in self.created.iter().rev() {
            let Some((parent, name)) = path.rsplit_once('/') else {
                continue;
            };
            let Ok(parent) = open_in_root(&self.root, parent, OFlags::RDONLY | OFlags::DIRECTORY)
            else {
                continue;
            };
            if *dir {
                let _ = rustix::fs::unlinkat(&parent, name, AtFlags::REMOVEDIR);
            } else if rustix::fs::statat(&parent, name, AtFlags::SYMLINK_NOFOLLOW)
                .is_ok_and(|s| s.st_size == 0)
            {
                let _ = rustix::fs::unlinkat(&parent, name, AtFlags::empty());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stubs_stay_inside_and_are_removed() {
        let outside = tempfile::tempdir().unwrap();
        let root = tempfile::tempdir().unwrap();
        std::os::unix::fs::symlink(outside.path(), root.path().join("escape")).unwrap();
        let mut stubs = Stubs::new(root.path(), None).unwrap();
        // The symlink resolves inside the root, where its target does not
        // exist: refused, and nothing is created outside.
        assert!(stubs.ensure("/escape/cache/x", true).is_err());
        stubs.ensure("/run/secrets/token", false).unwrap();
        assert!(std::fs::read_dir(outside.path()).unwrap().next().is_none());
        assert!(root.path().join("run/secrets/token").is_file());
        stubs.remove();
        assert!(!root.path().join("run").exists());
        assert!(root.path().join("escape").is_symlink());
    }

    #[test]
    fn a_target_above_the_root_is_refused() {
        let root = tempfile::tempdir().unwrap();
        let mut stubs = Stubs::new(root.path(), None).unwrap();
        assert!(
            stubs
                .ensure("/../../etc/x", true)
                .unwrap_err()
                .contains("climbs out")
        );
    }
}
