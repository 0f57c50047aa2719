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
    let mut placed = Vec::new();
    let result = spec
        .mounts
        .iter()
        .try_for_each(|mount| place(&mut stubs, mount).map(|p| placed.push(p)))
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
}

impl Placed {
    /// Take the source out again: a cache moves back, a copy is removed.
    fn take_out(self) {
        match &self.cache {
            Some(home) => {
                if let Some((home_parent, home_name)) = split(home)
                    && let Ok(home_parent) = rustix::fs::open(
                        home_parent,
                        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
                        Mode::empty(),
                    )
                {
                    let _ = rustix::fs::renameat(&self.parent, &self.name, &home_parent, home_name);
                }
                let _ = rustix::fs::mkdirat(&self.parent, &self.name, Mode::from_raw_mode(0o755));
            }
            None => remove_tree(&self.parent, &self.name),
        }
    }
}

/// Put `mount` at its target inside the root.
fn place(stubs: &mut Stubs, mount: &MountSpec) -> Result<Placed, String> {
    let is_dir = mount.source.as_ref().is_none_or(|s| s.is_dir());
    drop(stubs.ensure(&mount.target, is_dir)?);
    let (parent_path, name) = mount
        .target
        .trim_end_matches('/')
        .rsplit_once('/')
        .ok_or_else(|| format!("mount target {} is the root", mount.target))?;
    let parent = open_in_root(
        stubs.root(),
        parent_path,
        OFlags::RDONLY | OFlags::DIRECTORY,
    )?;
    let name = name.to_owned();
    match &mount.source {
        // A cache directory is moved in whole and back afterwards.
        Some(source) if mount.writable && source.is_dir() => {
            remove_tree(&parent, &name);
            let (source_parent, source_name) =
                split(source).ok_or_else(|| format!("bad cache path {}", source.display()))?;
            let source_parent = rustix::fs::open(
                source_parent,
                OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
                Mode::empty(),
            )
            .map_err(|e| format!("{}: {e}", source.display()))?;
            rustix::fs::renameat(&source_parent, source_name, &parent, &name).map_err(|e| {
                format!(
                    "moving the cache {} into the root for chroot isolation (it must be on the \
                     same file system as kiln's work directory): {e}",
                    source.display()
                )
            })?;
            Ok(Placed {
                parent,
                name,
                cache: Some(source.clone()),
            })
        }
        Some(source) => {
            remove_tree(&parent, &name);
            copy_tree(source, &parent, &name)?;
            Ok(Placed {
                parent,
                name,
                cache: None,
            })
        }
        None => Ok(Placed {
            parent,
            name,
            cache: None,
        }),
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
    } else {
        let out = rustix::fs::openat(
            parent,
            name,
            OFlags::CREATE | OFlags::EXCL | OFlags::WRONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            mode,
        )
        .map_err(|e| format!("{name}: {e}"))?;
        let mut out = std::fs::File::from(out);
        let mut input =
            std::fs::File::open(source).map_err(|e| format!("{}: {e}", source.display()))?;
        std::io::copy(&mut input, &mut out).map_err(|e| format!("{name}: {e}"))?;
    }
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
