//! Directories a step must not open even where one of its mounts covers
//! them: kiln's own store (artifacts of steps it does not need, caches,
//! other steps' live output) inside the project the workspace mounts, and
//! kiln's cache directory (compiled plugins, build layouts).
//!
//! WASI mounts whole directories; there is no way to mount the project
//! without the `.kiln/` inside it. So every `open-at` a plugin makes is
//! checked after the fact: the new descriptor's real path (the kernel's,
//! after every symlink and `..`) must not lie inside a hidden directory,
//! unless it lies inside one of the step's own mounts there (its output,
//! the artifacts it needs). A refused open is closed at once and answered
//! `no-entry`, as if the file did not exist, so a walk over the workspace
//! (a Docker build context at the project root) passes the store by.

use std::os::fd::{AsRawFd, BorrowedFd, RawFd};
use std::path::{Path, PathBuf};

use wasmtime::component::{Linker, Resource};
use wasmtime_wasi::filesystem::{Descriptor, WasiFilesystemView};
use wasmtime_wasi::p2::bindings::filesystem::types::{
    self, DescriptorFlags, ErrorCode, HostDescriptor, OpenFlags, PathFlags,
};

/// The directories hidden from one step, and the step's own mounts inside
/// them.
#[derive(Debug, Default, Clone)]
pub struct Hidden {
    roots: Vec<PathBuf>,
    own: Vec<PathBuf>,
}

impl Hidden {
    /// Hide `roots` (those that exist), except below `own` mounts that lie
    /// inside them. Paths are compared in canonical form.
    pub fn new(roots: &[PathBuf], own: &[PathBuf]) -> Hidden {
        let canonical = |p: &PathBuf| p.canonicalize().ok();
        // A root that does not exist yet is kept as written: it may be
        // created while the step runs.
        let roots: Vec<PathBuf> = roots
            .iter()
            .filter_map(|r| canonical(r).or_else(|| r.is_absolute().then(|| r.clone())))
            .collect();
        let own = own
            .iter()
            .filter_map(canonical)
            .filter(|mount| roots.iter().any(|root| mount.starts_with(root)))
            .collect();
        Hidden { roots, own }
    }

    /// Whether nothing is hidden (then no open needs checking).
    pub fn is_empty(&self) -> bool {
        self.roots.is_empty()
    }

    /// How the directory `dir` (canonical) overlaps a hidden directory:
    /// `("contains", root)` or `("lies inside", root)`, or `None`.
    pub fn overlap(&self, dir: &Path) -> Option<(&'static str, &Path)> {
        self.roots.iter().find_map(|root| {
            if root.starts_with(dir) {
                Some(("contains", root.as_path()))
            } else if dir.starts_with(root) {
                Some(("lies inside", root.as_path()))
            } else {
                None
            }
        })
    }

    /// Whether the host path `path` (canonical) is hidden from the step.
    pub fn covers(&self, path: &Path) -> bool {
        self.roots.iter().any(|root| path.starts_with(root))
            && !self.own.iter().any(|mount| path.starts_with(mount))
    }

    /// Whether the open file or directory `fd` is hidden. Its real path is
    /// read from `/proc/self/fd`; when that cannot be read, the answer is
    /// "hidden": a check that cannot be made refuses.
    pub fn covers_fd(&self, fd: BorrowedFd<'_>) -> bool {
        self.covers_raw_fd(fd.as_raw_fd())
    }

    /// [`Hidden::covers_fd`] for a descriptor number the caller keeps open.
    fn covers_raw_fd(&self, fd: RawFd) -> bool {
        if self.is_empty() {
            return false;
        }
        match std::fs::read_link(format!("/proc/self/fd/{fd}")) {
            Ok(path) => self.covers(&path),
            Err(_) => true,
        }
    }
}

/// Replace `wasi:filesystem/types#[method]descriptor.open-at` in `linker`
/// with one that refuses descriptors [`Hidden`] covers. `hidden` finds the
/// step's [`Hidden`] in its store.
pub(crate) fn add_to_linker<T, F>(linker: &mut Linker<T>, hidden: F) -> wasmtime::Result<()>
where
    T: WasiFilesystemView + 'static,
    F: Fn(&T) -> &Hidden + Send + Sync + Copy + 'static,
{
    linker.allow_shadowing(true);
    let mut instance = linker.instance("wasi:filesystem/types@0.2.12")?;
    instance.func_wrap_async(
        "[method]descriptor.open-at",
        move |mut store,
              (fd, path_flags, path, oflags, flags): (
            Resource<Descriptor>,
            PathFlags,
            String,
            OpenFlags,
            DescriptorFlags,
        )| {
            Box::new(async move {
                let state = store.data_mut();
                let mut view = state.filesystem();
                let opened =
                    HostDescriptor::open_at(&mut view, fd, path_flags, path, oflags, flags).await;
                let opened = match opened {
                    Ok(opened) => opened,
                    Err(error) => {
                        let code = types::Host::convert_error_code(&mut view, error)?;
                        return Ok((Err(code),));
                    }
                };
                // The descriptor stays open in the table while its number
                // is checked.
                let raw = match view.table.get(&opened)? {
                    Descriptor::File(file) => file.file.as_raw_fd(),
                    Descriptor::Dir(dir) => dir.dir.as_raw_fd(),
                };
                if hidden(store.data()).covers_raw_fd(raw) {
                    store.data_mut().filesystem().table.delete(opened)?;
                    return Ok((Err(ErrorCode::NoEntry),));
                }
                Ok((Ok(opened),))
            })
        },
    )?;
    linker.allow_shadowing(false);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsFd;

    #[test]
    fn hides_the_store_but_not_the_steps_own_mounts() {
        let project = tempfile::tempdir().unwrap();
        let store = project.path().join(".kiln");
        let out = store.join("out/step");
        std::fs::create_dir_all(&out).unwrap();
        std::fs::create_dir_all(store.join("artifacts/other")).unwrap();
        let hidden = Hidden::new(
            std::slice::from_ref(&store),
            &[project.path().to_owned(), out.clone()],
        );
        let canonical = |p: &Path| p.canonicalize().unwrap();
        assert!(hidden.covers(&canonical(&store.join("artifacts/other"))));
        assert!(!hidden.covers(&canonical(&out)));
        assert!(!hidden.covers(&canonical(project.path())));
        // Through a symlink, the real path decides.
        std::os::unix::fs::symlink(".kiln/artifacts", project.path().join("innocent")).unwrap();
        let file = std::fs::File::open(project.path().join("innocent/other")).unwrap();
        assert!(hidden.covers_fd(file.as_fd()));
        let own = std::fs::File::open(&out).unwrap();
        assert!(!hidden.covers_fd(own.as_fd()));
    }
}
