//! The capability policy: the one place that turns a step's grant into what
//! its plugin can touch.
//!
//! [`Sandbox::new`] builds, from a [`StepGrant`], the `WasiCtx` (preopened
//! directories, environment, no sockets), the outbound-HTTP hook, the
//! secrets the step may ask for, and its memory and time limits. Nothing
//! else in kiln creates a `WasiCtx`.

mod connect;
mod hidden;
mod memory;
mod net;
pub mod operator;
pub mod proxy;
pub mod run;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use wasmtime_wasi::{FsPerms, WasiCtx, WasiCtxBuilder};

pub use hidden::Hidden;
pub(crate) use hidden::add_to_linker as add_hidden_check_to_linker;
use kiln_grant::{HostPattern, StepGrant, ValueSource};
pub use memory::{MemoryCap, MemoryCapExceeded};
pub use net::{OutboundHttp, Refusal, is_public};

use crate::credentials;
use crate::log::StepLog;
use crate::report::Level;
use crate::stdio::GuestOutput;

/// Where the workspace is mounted inside every guest.
pub const GUEST_WORKSPACE: &str = "/workspace";
/// Where the step's output directory is mounted inside every guest.
pub const GUEST_OUTPUT: &str = "/output";

/// The host directories behind the default mounts.
#[derive(Debug, Clone)]
pub struct StepDirs {
    /// The project directory, mounted read-only at [`GUEST_WORKSPACE`].
    pub workspace: PathBuf,
    /// The step's output directory, mounted writable at [`GUEST_OUTPUT`].
    pub output: PathBuf,
    /// Further directories the host mounts for the step's own plumbing:
    /// artifacts of needed steps (read-only) and cache directories.
    pub mounts: Vec<Mount>,
    /// Directories the step may not open even where a mount covers them
    /// (kiln's store inside the workspace, kiln's cache), except through
    /// its own output and mounts that lie inside them. See [`Hidden`].
    pub hidden: Vec<PathBuf>,
}

impl StepDirs {
    /// Each guest directory and the host directory behind it (the
    /// workspace, the output, the plumbing mounts), so that what a plugin
    /// prints can name the directories the user knows.
    pub fn host_paths(&self) -> Vec<(String, String)> {
        let mut pairs = vec![
            (
                GUEST_WORKSPACE.to_owned(),
                self.workspace.display().to_string(),
            ),
            (GUEST_OUTPUT.to_owned(), self.output.display().to_string()),
        ];
        pairs.extend(
            self.mounts
                .iter()
                .map(|m| (m.guest.clone(), m.host.display().to_string())),
        );
        pairs
    }
}

/// A host directory mounted at a fixed guest path.
#[derive(Debug, Clone)]
pub struct Mount {
    /// The host directory.
    pub host: PathBuf,
    /// Where the guest sees it.
    pub guest: String,
    /// Whether the guest may write.
    pub writable: bool,
}

/// Where the artifact of the needed step `step` is mounted.
pub fn guest_artifact_path(step: &str) -> String {
    format!("/artifacts/{step}")
}

/// A grant that cannot be put in force; nothing has run.
#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    /// A directory to mount does not exist or cannot be opened.
    #[error("cannot mount {path}: {reason}")]
    Mount {
        /// The host path.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// A granted secret has no value in the environment.
    #[error("secret {0} is granted but not set; export {0} before running kiln")]
    SecretNotSet(String),
    /// A granted directory overlaps kiln's own store or cache.
    #[error(
        "cannot grant {path}: it {relation} kiln's own directory {kiln}, which steps may not write; grant a directory beside it"
    )]
    KilnDirectory {
        /// The granted directory.
        path: PathBuf,
        /// "contains" or "lies inside".
        relation: &'static str,
        /// kiln's directory.
        kiln: PathBuf,
    },
}

/// Everything a step may touch, ready to be moved into its `Store`.
pub struct Sandbox {
    /// WASI state: mounts, granted environment, captured stdio, no sockets.
    pub wasi: WasiCtx,
    /// The outbound HTTP hook.
    pub http: OutboundHttp,
    /// The linear-memory cap.
    pub memory: MemoryCap,
    /// The wall-clock limit.
    pub timeout: Duration,
    /// The secrets the step may read, by name.
    pub secrets: BTreeMap<String, String>,
    /// The step's log channel (masks these secrets).
    pub log: Arc<StepLog>,
    /// The guest's stdout and stderr, to flush their last partial lines.
    pub stdio: [GuestOutput; 2],
    /// The mounted directories, for the metadata WASI does not carry.
    pub mounts: MountTable,
    /// Executor access, for a step granted `run`.
    pub run: Option<run::RunAccess>,
}

/// The step's mounted directories, each opened as a capability, so that
/// `kiln:plugin/files` answers only inside them: paths are resolved
/// beneath the mount by `cap-std`, never through a symlink out of it.
#[derive(Default)]
pub struct MountTable {
    /// Guest path, directory, and whether the guest may write there.
    dirs: Vec<(String, cap_std::fs::Dir, bool)>,
    /// What no mount may reveal.
    hidden: Hidden,
    /// The writable mounts, where unfinished files are swept.
    writable: Vec<cap_std::fs::Dir>,
}

/// How deep below a writable mount unfinished files are looked for: an
/// image layout's `blobs/sha256/` inside an output subdirectory is at
/// depth 3.
const PARTIAL_DEPTH: usize = 4;

/// How unfinished files are named (the contract's `step-context`
/// documents it; `kiln_sdk::files::PARTIAL_PREFIX` is the plugin side).
const PARTIAL_PREFIX: &str = ".kiln-partial-";

impl MountTable {
    /// The directories the step may not open (checked on every open).
    pub fn hidden(&self) -> &Hidden {
        &self.hidden
    }

    fn add(&mut self, host: &Path, guest: &str, writable: bool) -> std::io::Result<()> {
        let dir = cap_std::fs::Dir::open_ambient_dir(host, cap_std::ambient_authority())?;
        if writable {
            self.writable.push(dir.try_clone()?);
        }
        self.dirs
            .push((guest.trim_end_matches('/').to_owned(), dir, writable));
        Ok(())
    }

    /// Remove the unfinished files (`.kiln-partial-*`) a step left in its
    /// writable mounts, up to [`PARTIAL_DEPTH`] levels down, never
    /// following a symlink. Called when a step ends, however it ended.
    pub fn remove_partial_files(&self, log: &StepLog) {
        fn sweep(dir: &cap_std::fs::Dir, depth: usize, removed: &mut usize) {
            let Ok(entries) = dir.entries() else { return };
            for entry in entries.flatten() {
                let name = entry.file_name();
                let Ok(kind) = entry.file_type() else {
                    continue;
                };
                if name.to_string_lossy().starts_with(PARTIAL_PREFIX) && !kind.is_dir() {
                    if dir.remove_file(&name).is_ok() {
                        *removed += 1;
                    }
                } else if kind.is_dir()
                    && depth > 1
                    && let Ok(child) = entry.open_dir()
                {
                    sweep(&child, depth - 1, removed);
                }
            }
        }
        let mut removed = 0;
        for dir in &self.writable {
            sweep(dir, PARTIAL_DEPTH, &mut removed);
        }
        if removed > 0 {
            log.host(
                Level::Debug,
                &format!("removed {removed} unfinished files the step left"),
            );
        }
    }

    /// What WASI does not tell about the guest path `path`: permission
    /// bits, a symlink's target, the change time; a final symlink is not
    /// followed.
    pub fn metadata(&self, path: &str) -> Result<PathFacts, String> {
        let (parent, name, path, _) = self.locate(path)?;
        let name = name.as_str();
        let failed = |e: std::io::Error| format!("{path}: {e}");
        let stat = rustix::fs::statat(&parent, name, rustix::fs::AtFlags::SYMLINK_NOFOLLOW)
            .map_err(|e| failed(e.into()))?;
        let is_symlink =
            rustix::fs::FileType::from_raw_mode(stat.st_mode) == rustix::fs::FileType::Symlink;
        let symlink_target = if is_symlink {
            let target =
                rustix::fs::readlinkat(&parent, name, Vec::new()).map_err(|e| failed(e.into()))?;
            Some(target.to_string_lossy().into_owned())
        } else {
            None
        };
        Ok(PathFacts {
            mode: stat.st_mode & 0o7777,
            symlink_target,
            change_time: (stat.st_ctime as u64)
                .saturating_mul(1_000_000_000)
                .saturating_add(stat.st_ctime_nsec as u64),
        })
    }
}

impl MountTable {
    /// The directory holding the guest path `path` (opened beneath its
    /// mount), the last component, the cleaned absolute guest path, and
    /// whether the mount is writable. Relative paths start where the guest
    /// does: the workspace. `.` and `..` are resolved on the guest path
    /// before a mount is chosen, so nothing above a mount can be named
    /// (`/workspace/..` is `/`, which no mount covers).
    fn locate(&self, path: &str) -> Result<(cap_std::fs::Dir, String, String, bool), String> {
        let absolute = if path.starts_with('/') {
            kiln_oci::path::clean(path)
        } else {
            kiln_oci::path::clean(&format!("{GUEST_WORKSPACE}/{path}"))
        };
        let path = absolute.as_str();
        let (dir, rest, writable) = self
            .dirs
            .iter()
            .filter_map(|(guest, dir, writable)| {
                let rest = path.strip_prefix(guest.as_str())?;
                (rest.is_empty() || rest.starts_with('/')).then_some((
                    guest.len(),
                    dir,
                    rest,
                    *writable,
                ))
            })
            .max_by_key(|(len, _, _, _)| *len)
            .map(|(_, dir, rest, writable)| (dir, rest.trim_start_matches('/'), writable))
            .ok_or_else(|| format!("{path} is not inside a mounted directory"))?;
        let relative = if rest.is_empty() { "." } else { rest };
        let failed = |e: std::io::Error| format!("{path}: {e}");
        // The parent is opened beneath the mount by cap-std; the last
        // component is examined there without following it (cap-std also
        // refuses to read absolute link targets, which must be copied).
        let (parent, name) = relative.rsplit_once('/').unwrap_or((".", relative));
        let parent = dir.open_dir(parent).map_err(failed)?;
        if self.hidden.covers_fd(std::os::fd::AsFd::as_fd(&parent)) {
            return Err(failed(std::io::ErrorKind::PermissionDenied.into()));
        }
        Ok((parent, name.to_owned(), absolute.clone(), writable))
    }

    /// Open the guest file `path` for reading, as the guest could.
    pub fn open_file(&self, path: &str) -> Result<std::fs::File, String> {
        let (parent, name, path, _) = self.locate(path)?;
        let file = parent.open(&name).map_err(|e| format!("{path}: {e}"))?;
        Ok(file.into_std())
    }

    /// Create (or truncate) the guest file `path` for writing, in a
    /// writable mount only.
    pub fn create_file(&self, path: &str) -> Result<std::fs::File, String> {
        let (parent, name, path, writable) = self.locate(path)?;
        if !writable {
            return Err(format!("{path} is not in a writable directory of the step"));
        }
        let file = parent.create(&name).map_err(|e| format!("{path}: {e}"))?;
        Ok(file.into_std())
    }

    /// The host path of the guest file or directory `path`, resolved
    /// beneath its mount (for binding it into a RUN command read-only).
    pub fn host_path(&self, path: &str) -> Result<PathBuf, String> {
        let (parent, name, path, _) = self.locate(path)?;
        let failed = |e: std::io::Error| format!("{path}: {e}");
        let opened: std::os::fd::OwnedFd = match parent.open_dir(&name) {
            Ok(dir) => dir.into_std_file().into(),
            Err(_) => parent.open(&name).map_err(failed)?.into_std().into(),
        };
        if self.hidden.covers_fd(std::os::fd::AsFd::as_fd(&opened)) {
            return Err(failed(std::io::ErrorKind::PermissionDenied.into()));
        }
        let fd = std::os::fd::AsRawFd::as_raw_fd(&opened);
        std::fs::read_link(format!("/proc/self/fd/{fd}")).map_err(failed)
    }
}

/// What [`MountTable::metadata`] tells about a path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PathFacts {
    /// Permission bits (`0o7777`).
    pub mode: u32,
    /// A symlink's target, as written.
    pub symlink_target: Option<String>,
    /// The inode change time, in nanoseconds since the epoch.
    pub change_time: u64,
}

impl Sandbox {
    /// The sandbox for a step under `grant`. `make_log` receives the
    /// secret values that must be masked and returns the step's log.
    pub fn new(
        grant: &StepGrant,
        dirs: &StepDirs,
        values: &dyn ValueSource,
        make_log: impl FnOnce(&[&str]) -> Arc<StepLog>,
    ) -> Result<Sandbox, PolicyError> {
        let mut secrets = BTreeMap::new();
        for name in &grant.secrets {
            let value = values
                .get(name)
                .ok_or_else(|| PolicyError::SecretNotSet(name.clone()))?;
            secrets.insert(name.clone(), value);
        }
        let mut masked: Vec<String> = secrets.values().cloned().collect();
        // Registry credentials go to the hosts granted by name, and only
        // to them, as the secret `registry-auth:HOST`.
        let mut offered = Vec::new();
        for host in grant
            .net
            .iter()
            .chain(&grant.untrusted_net)
            .filter_map(HostPattern::exact_authority)
        {
            if let Some(found) = credentials::resolve(&host, values) {
                masked.extend(credentials::sensitive(&found.credential));
                secrets.insert(
                    credentials::secret_name(&host),
                    found.credential.to_secret(),
                );
                offered.push((host, found.source));
            }
        }
        let masked: Vec<&str> = masked.iter().map(String::as_str).collect();
        let log = make_log(&masked);
        // Which credentials a registry sees is said up front: a refusal is
        // then fixed where they came from.
        for (host, source) in offered {
            log.host(Level::Info, &format!("credentials for {host}: {source}"));
        }

        let (mut wasi, stdio) = confined(&log);
        let own: Vec<PathBuf> = std::iter::once(dirs.output.clone())
            .chain(dirs.mounts.iter().map(|m| m.host.clone()))
            .collect();
        let mut mounts = MountTable {
            hidden: Hidden::new(&dirs.hidden, &own),
            ..MountTable::default()
        };
        mount(
            &mut wasi,
            &mut mounts,
            &dirs.workspace,
            GUEST_WORKSPACE,
            false,
        )?;
        mount(&mut wasi, &mut mounts, &dirs.output, GUEST_OUTPUT, true)?;
        for extra in &dirs.mounts {
            mount(
                &mut wasi,
                &mut mounts,
                &extra.host,
                &extra.guest,
                extra.writable,
            )?;
        }
        for (granted, writable) in [(&grant.read, false), (&grant.write, true)] {
            for dir in granted {
                let canonical = canonical_dir(dir)?;
                // Reads below a granted directory are checked on every open;
                // writes (renames, deletes) are not, so a writable grant
                // may not overlap kiln's own directories at all.
                if writable && let Some((relation, kiln)) = mounts.hidden.overlap(&canonical) {
                    return Err(PolicyError::KilnDirectory {
                        path: canonical,
                        relation,
                        kiln: kiln.to_owned(),
                    });
                }
                let guest = canonical.to_str().ok_or_else(|| PolicyError::Mount {
                    path: dir.clone(),
                    reason: "the path is not UTF-8".into(),
                })?;
                mount(&mut wasi, &mut mounts, &canonical, guest, writable)?;
            }
        }
        for name in &grant.env {
            match values.get(name) {
                Some(value) => {
                    wasi.env(name, value);
                }
                None => log.host(
                    Level::Debug,
                    &format!("granted environment variable {name} is not set"),
                ),
            }
        }
        wasi.initial_cwd(GUEST_WORKSPACE);

        Ok(Sandbox {
            wasi: wasi.build(),
            http: OutboundHttp::new(grant.net.clone(), grant.untrusted_net.clone(), log.clone()),
            memory: MemoryCap::new(grant.memory()),
            timeout: grant.timeout(),
            secrets,
            log,
            stdio,
            mounts,
            run: None,
        })
    }
}

impl Sandbox {
    /// A sandbox with nothing mounted, no environment and no network: for
    /// calls such as `describe()` that need no grant at all.
    pub fn isolated(log: Arc<StepLog>, memory: u64, timeout: Duration) -> Sandbox {
        let (mut wasi, stdio) = confined(&log);
        Sandbox {
            wasi: wasi.build(),
            http: OutboundHttp::new(Vec::new(), Vec::new(), log.clone()),
            memory: MemoryCap::new(memory),
            timeout,
            secrets: BTreeMap::new(),
            log,
            stdio,
            mounts: MountTable::default(),
            run: None,
        }
    }
}

/// What every sandbox starts from: no sockets, no environment, nothing
/// mounted, stdout and stderr captured into the step's log.
fn confined(log: &Arc<StepLog>) -> (WasiCtxBuilder, [GuestOutput; 2]) {
    let stdio = [
        GuestOutput::new(log.clone(), Level::Info),
        GuestOutput::new(log.clone(), Level::Warn),
    ];
    let mut wasi = WasiCtxBuilder::new();
    // File reads (64 KiB each) run on the step's own thread instead of
    // hopping to tokio's blocking pool: layers are read in thousands of
    // them.
    wasi.allow_blocking_current_thread(true)
        .stdout(stdio[0].clone())
        .stderr(stdio[1].clone())
        .allow_tcp(false)
        .allow_udp(false)
        .allow_ip_name_lookup(false);
    (wasi, stdio)
}

fn canonical_dir(dir: &Path) -> Result<PathBuf, PolicyError> {
    let canonical = dir.canonicalize().map_err(|e| PolicyError::Mount {
        path: dir.to_owned(),
        reason: e.to_string(),
    })?;
    if !canonical.is_dir() {
        return Err(PolicyError::Mount {
            path: dir.to_owned(),
            reason: "not a directory".into(),
        });
    }
    Ok(canonical)
}

fn mount(
    wasi: &mut WasiCtxBuilder,
    table: &mut MountTable,
    host: &Path,
    guest: &str,
    writable: bool,
) -> Result<(), PolicyError> {
    let host = canonical_dir(host)?;
    let perms = if writable {
        FsPerms::ReadWrite
    } else {
        FsPerms::ReadOnly
    };
    let failed = |e: &dyn std::fmt::Display| PolicyError::Mount {
        path: host.clone(),
        reason: e.to_string(),
    };
    wasi.preopened_dir(&host, guest, perms)
        .map_err(|e| failed(&e))?;
    table.add(&host, guest, writable).map_err(|e| failed(&e))
}
