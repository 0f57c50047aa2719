//! File system operations that cannot leave the root.
//!
//! Layers come from untrusted registries and commands leave arbitrary
//! symlinks behind, so the host never resolves a path inside the tree
//! through the kernel's ordinary lookup. Directories are opened with
//! `openat2(RESOLVE_IN_ROOT)` from a descriptor of the root, which treats the
//! root as `/` for every symlink and `..` on the way, and the final component
//! is always handled with an `*at` call that does not follow it.

use std::ffi::CStr;
use std::os::fd::{BorrowedFd, OwnedFd};
use std::path::Path;

use rustix::fs::{
    AtFlags, CWD, Dir, FileType, Mode, OFlags, ResolveFlags, openat, openat2, statat, unlinkat,
};
use rustix::io::Errno;

use super::relpath::RelPath;
use crate::error::Error;

/// How deep the tree walks go. Each level holds one descriptor and a stack
/// frame; real images stay far below this, and refusing deeper trees keeps a
/// hostile layer or command from exhausting either.
pub(crate) const MAX_DEPTH: usize = 256;

/// An error from operation `op` on `path`.
pub(crate) fn io_error<'a>(
    op: &'static str,
    path: &'a RelPath,
) -> impl FnOnce(Errno) -> Error + 'a {
    move |errno| Error::Io {
        op,
        path: path.to_string(),
        source: errno.into(),
    }
}

/// Open the root directory at host path `dir` for reading, refusing a
/// symlink in its place.
pub(crate) fn open_root(dir: &Path) -> Result<OwnedFd, Error> {
    openat(
        CWD,
        dir,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(|errno| Error::Io {
        op: "open root directory",
        path: dir.display().to_string(),
        source: errno.into(),
    })
}

/// Open `path` inside the root, resolving symlinks and `..` as if the root
/// were `/`. `flags` decide what the descriptor is for (`O_PATH` for a base
/// of `*at` calls, `O_RDONLY` for reading).
pub(crate) fn open_in_root(
    root: BorrowedFd<'_>,
    path: &RelPath,
    flags: OFlags,
) -> Result<OwnedFd, Errno> {
    let resolve = ResolveFlags::IN_ROOT | ResolveFlags::NO_MAGICLINKS;
    // The kernel answers EAGAIN when a concurrent rename might have moved a
    // `..` out of the root; nothing renames inside the tree while kiln works
    // on it, so a few retries suffice.
    let mut attempts = 0;
    loop {
        match openat2(
            root,
            path.as_arg(),
            flags | OFlags::CLOEXEC,
            Mode::empty(),
            resolve,
        ) {
            Err(Errno::AGAIN) if attempts < 8 => attempts += 1,
            result => return result,
        }
    }
}

/// Open directory `path` inside the root as a base for `*at` calls.
pub(crate) fn open_dir(root: BorrowedFd<'_>, path: &RelPath) -> Result<OwnedFd, Errno> {
    open_in_root(root, path, OFlags::PATH | OFlags::DIRECTORY)
}

/// Open the directory `name` in `parent` for listing, refusing a symlink.
pub(crate) fn open_child_dir<P: rustix::path::Arg>(
    parent: BorrowedFd<'_>,
    name: P,
) -> Result<Dir, Errno> {
    let fd = openat(
        parent,
        name,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )?;
    Dir::new(fd)
}

/// The entries of `dir` other than `.` and `..`, with their types as the
/// directory reports them (possibly `Unknown`).
pub(crate) fn list(dir: &mut Dir) -> Result<Vec<(Vec<u8>, FileType)>, Errno> {
    let mut names = Vec::new();
    for entry in dir {
        let entry = entry?;
        let name = entry.file_name().to_bytes();
        if name != b"." && name != b".." {
            names.push((name.to_vec(), entry.file_type()));
        }
    }
    Ok(names)
}

/// Whether `name` in `parent` is a directory (not following a symlink),
/// trusting the type a directory listing reported when it is known.
pub(crate) fn is_dir<P: rustix::path::Arg>(
    parent: BorrowedFd<'_>,
    name: P,
    listed: FileType,
) -> Result<bool, Errno> {
    if listed != FileType::Unknown {
        return Ok(listed == FileType::Directory);
    }
    let stat = statat(parent, name, AtFlags::SYMLINK_NOFOLLOW)?;
    Ok(FileType::from_raw_mode(stat.st_mode) == FileType::Directory)
}

/// Remove `name` from `parent` and, if it is a directory, everything in it,
/// never following a symlink. `path` is where `name` is, for errors.
/// A missing entry is not an error.
pub(crate) fn remove_tree(
    parent: BorrowedFd<'_>,
    name: &[u8],
    path: &RelPath,
) -> Result<(), Error> {
    let stat = match statat(parent, name, AtFlags::SYMLINK_NOFOLLOW) {
        Err(Errno::NOENT) => return Ok(()),
        result => result.map_err(io_error("inspect", path))?,
    };
    if FileType::from_raw_mode(stat.st_mode) == FileType::Directory {
        remove_children(parent, name, path, 0)?;
        unlinkat(parent, name, AtFlags::REMOVEDIR).map_err(io_error("remove directory", path))
    } else {
        unlinkat(parent, name, AtFlags::empty()).map_err(io_error("remove", path))
    }
}

/// Empty the directory `name` in `parent` (at `path`, `depth` levels below
/// the removal's start).
fn remove_children(
    parent: BorrowedFd<'_>,
    name: &[u8],
    path: &RelPath,
    depth: usize,
) -> Result<(), Error> {
    if depth >= MAX_DEPTH {
        return Err(Error::TooDeep {
            path: path.to_string(),
            limit: MAX_DEPTH,
        });
    }
    let mut dir = open_child_dir(parent, name).map_err(io_error("open directory", path))?;
    let children = list(&mut dir).map_err(io_error("list directory", path))?;
    let fd = dir.fd().map_err(io_error("list directory", path))?;
    for (child, listed) in children {
        let child_path = path.join(&child);
        if is_dir(fd, child.as_slice(), listed).map_err(io_error("inspect", &child_path))? {
            remove_children(fd, &child, &child_path, depth + 1)?;
            unlinkat(fd, child.as_slice(), AtFlags::REMOVEDIR)
                .map_err(io_error("remove directory", &child_path))?;
        } else {
            unlinkat(fd, child.as_slice(), AtFlags::empty())
                .map_err(io_error("remove", &child_path))?;
        }
    }
    Ok(())
}

/// Read the target of symlink `name` in `dir`.
pub(crate) fn read_link(dir: BorrowedFd<'_>, name: &CStr) -> Result<Vec<u8>, Errno> {
    Ok(rustix::fs::readlinkat(dir, name, Vec::new())?.into_bytes())
}
