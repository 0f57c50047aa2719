//! Tier B: `chroot` into the image's root with Landlock and seccomp, for
//! root where namespaces are refused (Docker's default seccomp profile).
//!
//! Without a mount namespace nothing can be mounted, so `RUN --mount`
//! sources are put in place inside the root for the command and taken out
//! again: cache directories are moved in and back, secrets and binds are
//! copied, and the device nodes a build needs are created in `/dev`.
//! Landlock keeps the command (real root) inside the root, away from
//! other processes' signals and abstract sockets, and its TCP to the
//! proxy; seccomp refuses every socket but Unix and proxied TCP.

use std::os::fd::{AsFd, OwnedFd};
use std::path::Path;

use rustix::fs::{AtFlags, FileType, Mode, OFlags};

use super::stubs::{Stubs, open_in_root};
use super::{exec, fork_child, own_group, wait_group};
use crate::confine;
use crate::rootfs::confined;
use crate::rootfs::relpath::RelPath;
use crate::spec::{MountSpec, RunSpec};
use crate::tier::Tier;

/// Character devices a build expects, with their numbers.
const DEVICES: [(&str, u32, u32); 5] = [
    ("null", 1, 3),
    ("zero", 1, 5),
    ("full", 1, 7),
    ("random", 1, 8),
    ("urandom", 1, 9),
];

/// Run `spec` in tier B; the command's exit status.
pub(super) fn run(spec: &RunSpec) -> Result<i32, String> {
    super::adopt_orphans();
    let mut stubs = Stubs::new(&spec.rootfs, None)?;
    drop(stubs.ensure("/dev", true)?);
    let dev = open_in_root(stubs.root(), "/dev", OFlags::RDONLY | OFlags::DIRECTORY)?;
    let mut created_devices = Vec::new();
    for (name, major, minor) in DEVICES {
        if rustix::fs::statat(&dev, name, AtFlags::SYMLINK_NOFOLLOW).is_ok() {
            continue;
        }
        rustix::fs::mknodat(
            &dev,
            name,
            FileType::CharacterDevice,
            Mode::from_raw_mode(0o666),
            rustix::fs::makedev(major, minor),
        )
        .map_err(|e| format!("creating /dev/{name}: {e}"))?;
        created_devices.push(name);
    }
    let scratch = std::sync::Arc::new(
        rustix::fs::open(
            &spec.scratch,
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| format!("{}: {e}", spec.scratch.display()))?,
    );
    let mut placed = Vec::new();
    let result = spec
        .mounts
        .iter()
        .enumerate()
        .try_for_each(|(index, mount)| {
            place(&mut stubs, mount, &scratch, index).map(|p| placed.push(p))
        })
        .and_then(|()| {
            let child = fork_child(|| command(spec))?;
            wait_group(spec, child)
        });
    for placed in placed.into_iter().rev() {
        placed.take_out();
    }
    for name in created_devices {
        let _ = rustix::fs::unlinkat(&dev, name, AtFlags::empty());
    }
    stubs.remove();
    result
}

/// A mount source put in place inside the root.
struct Placed {
    /// The directory holding the target, and the target's name there.
    parent: OwnedFd,
    name: String,
    /// For a cache directory, where it goes back to.
    cache: Option<std::path::PathBuf>,
    /// What the image had at the target, moved into the scratch directory
    /// (`scratch`, name) while the mount stands in for it.
    aside: (std::sync::Arc<OwnedFd>, String),
}

impl Placed {
    /// Take the source out again (a cache moves back, a copy or tmpfs
    /// goes) and put back what the image had there.
    fn take_out(self) {
        match &self.cache {
            Some(home) => {
                // Only a directory goes back: a command may have put a
                // symlink (to `/`) or anything else in its place, which a
                // later build would follow.
                let is_dir =
                    rustix::fs::statat(&self.parent, &self.name, AtFlags::SYMLINK_NOFOLLOW)
                        .is_ok_and(|s| FileType::from_raw_mode(s.st_mode) == FileType::Directory);
                let moved = is_dir
                    && split(home).is_some_and(|(home_parent, home_name)| {
                        rustix::fs::open(
                            home_parent,
                            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
                            Mode::empty(),
                        )
                        .and_then(|home_parent| {
                            rustix::fs::renameat(&self.parent, &self.name, &home_parent, home_name)
                        })
                        .is_ok()
                    });
                if !moved {
                    remove_tree(&self.parent, &self.name);
                }
            }
            None => remove_tree(&self.parent, &self.name),
        }
        let (scratch, aside) = &self.aside;
        let _ = rustix::fs::renameat(scratch.as_ref(), aside.as_str(), &self.parent, &self.name);
    }
}

/// Put `mount` at its target inside the root, what the image had there
/// moved aside into `scratch` (as `aside-INDEX`).
fn place(
    stubs: &mut Stubs,
    mount: &MountSpec,
    scratch: &std::sync::Arc<OwnedFd>,
    index: usize,
) -> Result<Placed, String> {
    let is_dir = mount.source.as_ref().is_none_or(|s| s.is_dir());
    drop(stubs.ensure(&mount.target, is_dir)?);
    // The host checked that the target is clean (no `.` or `..`) and not
    // the root, so its last component is a name in its parent.
    let (parent_path, name) = mount
        .target
        .rsplit_once('/')
        .filter(|(_, name)| !matches!(*name, "" | "." | ".."))
        .ok_or_else(|| format!("mount target {} is not a path below the root", mount.target))?;
    let parent = open_in_root(
        stubs.root(),
        parent_path,
        OFlags::RDONLY | OFlags::DIRECTORY,
    )?;
    let name = name.to_owned();
    let aside = format!("aside-{index}");
    rustix::fs::renameat(&parent, name.as_str(), scratch.as_ref(), aside.as_str())
        .map_err(|e| format!("moving {} aside: {e}", mount.target))?;
    let placed = Placed {
        parent,
        name,
        cache: None,
        aside: (scratch.clone(), aside),
    };
    let put = match &mount.source {
        // A cache directory is moved in whole and back afterwards.
        Some(source) if mount.writable && source.is_dir() => {
            let (source_parent, source_name) =
                split(source).ok_or_else(|| format!("bad cache path {}", source.display()))?;
            rustix::fs::open(
                source_parent,
                OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
                Mode::empty(),
            )
            .and_then(|source_parent| {
                rustix::fs::renameat(
                    &source_parent,
                    source_name,
                    &placed.parent,
                    placed.name.as_str(),
                )
            })
            .map(|()| Some(source.clone()))
            .map_err(|e| {
                format!(
                    "moving the cache {} into the root for chroot isolation (it must be on the \
                     same file system as kiln's work directory): {e}",
                    source.display()
                )
            })
        }
        Some(source) => copy_tree(source, &placed.parent, &placed.name).map(|()| None),
        None => rustix::fs::mkdirat(
            &placed.parent,
            placed.name.as_str(),
            Mode::from_raw_mode(0o1777),
        )
        .map(|()| None)
        .map_err(|e| format!("{}: {e}", mount.target)),
    };
    match put {
        Ok(cache) => Ok(Placed { cache, ..placed }),
        Err(e) => {
            placed.take_out();
            Err(e)
        }
    }
}

/// `path`'s parent and last component.
fn split(path: &Path) -> Option<(&Path, &str)> {
    Some((path.parent()?, path.file_name()?.to_str()?))
}

/// Copy the host file or directory `source` to `name` in `parent`:
/// files, directories and symlinks with their modes.
fn copy_tree(source: &Path, parent: &OwnedFd, name: &str) -> Result<(), String> {
    let meta =
        std::fs::symlink_metadata(source).map_err(|e| format!("{}: {e}", source.display()))?;
    let mode =
        Mode::from_raw_mode(std::os::unix::fs::PermissionsExt::mode(&meta.permissions()) & 0o7777);
    if meta.is_dir() {
        rustix::fs::mkdirat(parent, name, mode).map_err(|e| format!("{name}: {e}"))?;
        let dir = rustix::fs::openat(
            parent,
            name,
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| format!("{name}: {e}"))?;
        for entry in std::fs::read_dir(source).map_err(|e| format!("{}: {e}", source.display()))? {
            let entry = entry.map_err(|e| format!("{}: {e}", source.display()))?;
            let child = entry.file_name();
            copy_tree(&entry.path(), &dir, &child.to_string_lossy())?;
        }
    } else if meta.file_type().is_symlink() {
        let target =
            std::fs::read_link(source).map_err(|e| format!("{}: {e}", source.display()))?;
        rustix::fs::symlinkat(&target, parent, name).map_err(|e| format!("{name}: {e}"))?;
    } else if meta.is_file() {
        // Regular files only, opened without blocking (a FIFO would hang)
        // and checked once open (nothing swapped in meanwhile).
        let input = rustix::fs::open(
            source,
            OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| format!("{}: {e}", source.display()))?;
        let opened = rustix::fs::fstat(&input).map_err(|e| format!("{}: {e}", source.display()))?;
        if FileType::from_raw_mode(opened.st_mode) != FileType::RegularFile {
            return Err(format!("{} is not a regular file", source.display()));
        }
        let out = rustix::fs::openat(
            parent,
            name,
            OFlags::CREATE | OFlags::EXCL | OFlags::WRONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            mode,
        )
        .map_err(|e| format!("{name}: {e}"))?;
        std::io::copy(
            &mut std::fs::File::from(input),
            &mut std::fs::File::from(out),
        )
        .map_err(|e| format!("{name}: {e}"))?;
    } else {
        // Devices, FIFOs and sockets of a source are not copied.
        return Ok(());
    }
    // Owners as the source has them (a secret's mount uid/gid).
    let _ = rustix::fs::chownat(
        parent,
        name,
        Some(rustix::fs::Uid::from_raw(
            std::os::unix::fs::MetadataExt::uid(&meta),
        )),
        Some(rustix::fs::Gid::from_raw(
            std::os::unix::fs::MetadataExt::gid(&meta),
        )),
        AtFlags::SYMLINK_NOFOLLOW,
    );
    Ok(())
}

/// Remove `name` in `parent` and everything under it, never following a
/// symlink; what cannot be removed stays (the root is thrown away later).
fn remove_tree(parent: &OwnedFd, name: &str) {
    let _ = confined::remove_tree(parent.as_fd(), name.as_bytes(), &RelPath::root());
}

/// The command's process: `chroot`, confinement, the command.
fn command(spec: &RunSpec) -> Result<i32, String> {
    own_group()?;
    rustix::process::chroot(&spec.rootfs).map_err(|e| format!("chroot: {e}"))?;
    std::env::set_current_dir("/").map_err(|e| format!("chdir /: {e}"))?;
    exec::enter_workdir(&spec.workdir)?;
    confine::capabilities(Tier::ChrootLandlock)?;
    exec::become_user(spec, true)?;
    let proxy = spec.network.proxy_port(Tier::ChrootLandlock);
    confine::landlock(Tier::ChrootLandlock, proxy, &[])?;
    confine::seccomp(Tier::ChrootLandlock, proxy.is_some())?;
    Ok(exec::exec(&spec.args, &spec.env))
}
