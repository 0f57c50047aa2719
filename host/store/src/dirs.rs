//! The directories kiln creates, clears and writes in its store, reached
//! without following a symlink.
//!
//! The store (`.kiln/` by default) usually lies inside a checkout, which is
//! untrusted: a repository can commit `.kiln` or `.kiln/out` as a symlink to
//! anywhere. Every directory kiln itself writes or deletes is therefore
//! reached from a trusted anchor (the directory that holds the store, which
//! the user chose) one component at a time with `O_NOFOLLOW`: a symlink or
//! a non-directory on the way is refused, naming it, and nothing is written
//! or deleted through it.

use std::os::fd::OwnedFd;
use std::path::{Component, Path, PathBuf};

use rustix::fs::{AtFlags, FileType, Mode, OFlags};
use rustix::io::Errno;

use super::StoreError;

/// The store's areas (see the module documentation of [`super`]).
const AREAS: [&str; 4] = ["artifacts", "cache", "out", "work"];

/// The store's root directory, checked to be a real directory (not a
/// symlink) inside the directory the user named.
#[derive(Debug, Clone)]
pub struct StoreRoot {
    path: PathBuf,
}

impl StoreRoot {
    /// The store at `path`, created if missing. `path`'s parent is trusted
    /// (followed as the user wrote it); `path` itself must not be a
    /// symlink.
    pub fn open(path: &Path) -> Result<StoreRoot, StoreError> {
        let absolute = if path.is_absolute() {
            path.to_owned()
        } else {
            std::env::current_dir()
                .map_err(super::io_error(path))?
                .join(path)
        };
        let (Some(parent), Some(name)) = (absolute.parent(), absolute.file_name()) else {
            return Err(StoreError::Pattern(format!(
                "{} cannot hold kiln's store; name a directory",
                path.display()
            )));
        };
        let parent = parent.canonicalize().map_err(super::io_error(parent))?;
        let root = ensure_dir(&parent, Path::new(name))?;
        // Its areas are checked up front, so a planted symlink stops kiln
        // before any step runs, whichever area the run would touch.
        for area in AREAS {
            ensure_dir(&root, Path::new(area))?;
        }
        Ok(StoreRoot { path: root })
    }

    /// The root's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// `relative` under the root as a real directory, created if missing.
    pub fn dir(&self, relative: impl AsRef<Path>) -> Result<PathBuf, StoreError> {
        ensure_dir(&self.path, relative.as_ref())
    }

    /// `relative` under the root as a new, empty directory: whatever was
    /// there (a directory, a file, a symlink) is removed without being
    /// followed.
    pub fn fresh_dir(&self, relative: impl AsRef<Path>) -> Result<PathBuf, StoreError> {
        let relative = relative.as_ref();
        let (Some(parent), Some(name)) = (relative.parent(), relative.file_name()) else {
            return Err(StoreError::Pattern(format!(
                "{} is not a directory name",
                relative.display()
            )));
        };
        let parent = ensure_dir(&self.path, parent)?;
        let path = parent.join(name);
        match std::fs::symlink_metadata(&path) {
            // `remove_dir_all` never follows symlinks below `path`, and
            // `path`'s parents were just checked.
            Ok(meta) if meta.is_dir() => {
                std::fs::remove_dir_all(&path).map_err(super::io_error(&path))?
            }
            Ok(_) => std::fs::remove_file(&path).map_err(super::io_error(&path))?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(super::io_error(&path)(e)),
        }
        ensure_dir(&parent, Path::new(name))
    }
}

/// An advisory lock on a directory (`flock`), held until dropped: kiln
/// processes sharing a store or an image layout take turns instead of
/// writing over each other.
#[derive(Debug)]
pub struct DirLock {
    _fd: OwnedFd,
}

/// Lock the directory `path`, exclusively or shared. When another kiln
/// holds it, `waiting` is called once and the lock is awaited.
pub fn lock_dir(
    path: &Path,
    exclusive: bool,
    waiting: impl FnOnce(),
) -> Result<DirLock, StoreError> {
    use rustix::fs::FlockOperation;
    let fd = rustix::fs::open(
        path,
        OFlags::DIRECTORY | OFlags::RDONLY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| super::io_error(path)(e.into()))?;
    let (now, wait) = if exclusive {
        (
            FlockOperation::NonBlockingLockExclusive,
            FlockOperation::LockExclusive,
        )
    } else {
        (
            FlockOperation::NonBlockingLockShared,
            FlockOperation::LockShared,
        )
    };
    if rustix::fs::flock(&fd, now).is_err() {
        waiting();
        rustix::fs::flock(&fd, wait).map_err(|e| super::io_error(path)(e.into()))?;
    }
    Ok(DirLock { _fd: fd })
}

/// Lock the OCI image layout `layout` for writing, saying on standard
/// error when another kiln holds it (a build or pull into the same
/// directory), so two writers never interleave their blobs and index.
pub fn lock_layout(layout: &Path) -> Result<DirLock, StoreError> {
    lock_dir(layout, true, || {
        eprintln!(
            "kiln: waiting for another kiln writing {}",
            layout.display()
        )
    })
}

/// `anchor/relative` when it exists as a chain of real directories (none
/// created), for reading: a symlink on the way is refused like in
/// [`ensure_dir`].
pub fn existing_dir(anchor: &Path, relative: &Path) -> Result<PathBuf, StoreError> {
    walk(anchor, relative, false)
}

/// `anchor/relative` as a chain of real directories: each component of
/// `relative` is opened below the previous one with `O_NOFOLLOW`, created
/// when missing, and refused when it is a symlink or not a directory.
/// `anchor` is trusted. Returns the joined path.
pub fn ensure_dir(anchor: &Path, relative: &Path) -> Result<PathBuf, StoreError> {
    walk(anchor, relative, true)
}

fn walk(anchor: &Path, relative: &Path, create: bool) -> Result<PathBuf, StoreError> {
    let failed = |path: &Path, e: Errno| super::io_error(path)(e.into());
    let mut current: OwnedFd = rustix::fs::open(
        anchor,
        OFlags::DIRECTORY | OFlags::RDONLY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| failed(anchor, e))?;
    let mut path = anchor.to_owned();
    for component in relative.components() {
        let name = match component {
            Component::Normal(name) => name,
            Component::CurDir => continue,
            _ => {
                return Err(StoreError::Pattern(format!(
                    "{} leaves kiln's store",
                    relative.display()
                )));
            }
        };
        path.push(name);
        let flags = OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::RDONLY | OFlags::CLOEXEC;
        let next = match rustix::fs::openat(&current, name, flags, Mode::empty()) {
            Ok(fd) => fd,
            Err(Errno::NOENT) if create => {
                match rustix::fs::mkdirat(&current, name, Mode::from_raw_mode(0o755)) {
                    Ok(()) | Err(Errno::EXIST) => {}
                    Err(e) => return Err(failed(&path, e)),
                }
                rustix::fs::openat(&current, name, flags, Mode::empty())
                    .map_err(|e| refusal(&current, name, &path, e))?
            }
            Err(e) => return Err(refusal(&current, name, &path, e)),
        };
        current = next;
    }
    Ok(path)
}

/// Why `name` below `parent` could not be opened as a directory: a symlink
/// or a file gets a message saying what to remove.
fn refusal(parent: &OwnedFd, name: &std::ffi::OsStr, path: &Path, error: Errno) -> StoreError {
    let kind = rustix::fs::statat(parent, name, AtFlags::SYMLINK_NOFOLLOW)
        .map(|s| FileType::from_raw_mode(s.st_mode));
    match kind {
        Ok(FileType::Symlink) => StoreError::Unsafe(format!(
            "{} is a symlink; kiln never writes its store through a symlink (a checkout could point it anywhere). Remove it, or give --artifacts-dir a real directory",
            path.display()
        )),
        Ok(FileType::Directory) | Err(_) => super::io_error(path)(error.into()),
        Ok(_) => StoreError::Unsafe(format!(
            "{} is not a directory; remove it so kiln can create its store there",
            path.display()
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_a_symlinked_store_and_its_parts() {
        let project = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        std::fs::create_dir(outside.path().join("victim")).unwrap();
        std::fs::write(outside.path().join("victim/keep.txt"), "precious").unwrap();

        // `.kiln` itself a symlink.
        std::os::unix::fs::symlink(outside.path(), project.path().join(".kiln")).unwrap();
        let err = StoreRoot::open(&project.path().join(".kiln")).unwrap_err();
        assert!(err.to_string().contains("is a symlink"), "{err}");

        // `.kiln/out` a symlink: fresh_dir must not delete through it.
        std::fs::remove_file(project.path().join(".kiln")).unwrap();
        let root = StoreRoot::open(&project.path().join(".kiln")).unwrap();
        std::fs::remove_dir(project.path().join(".kiln/out")).unwrap();
        std::os::unix::fs::symlink(outside.path(), project.path().join(".kiln/out")).unwrap();
        let err = root.fresh_dir("out/victim").unwrap_err();
        assert!(err.to_string().contains(".kiln/out is a symlink"), "{err}");
        assert!(outside.path().join("victim/keep.txt").exists());

        // A symlink where the fresh directory goes is removed, not followed.
        std::fs::remove_file(project.path().join(".kiln/out")).unwrap();
        std::fs::create_dir(project.path().join(".kiln/out")).unwrap();
        std::os::unix::fs::symlink(
            outside.path().join("victim"),
            project.path().join(".kiln/out/step"),
        )
        .unwrap();
        let fresh = root.fresh_dir("out/step").unwrap();
        assert!(std::fs::symlink_metadata(&fresh).unwrap().is_dir());
        assert!(outside.path().join("victim/keep.txt").exists());
        assert!(root.dir("../x").is_err());
    }
}
