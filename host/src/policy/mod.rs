//! The capability policy: the one place that turns a step's grant into what
//! its plugin can touch.
//!
//! [`Sandbox::new`] builds, from a [`StepGrant`], the `WasiCtx` (preopened
//! directories, environment, no sockets), the outbound-HTTP hook, the
//! secrets the step may ask for, and its memory and time limits. Nothing
//! else in kiln creates a `WasiCtx`.

mod grant;
mod memory;
mod net;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use wasmtime_wasi::{FsPerms, WasiCtx, WasiCtxBuilder};

pub use grant::{
    DEFAULT_MEMORY, DEFAULT_TIMEOUT, GrantError, HostMatch, HostPattern, MAX_MEMORY, MemorySize,
    StepGrant, Timeout,
};
pub use memory::{MemoryCap, MemoryCapExceeded};
pub use net::{OutboundHttp, Refusal, is_public};

use crate::credentials;
use crate::host_api::GuestOutput;
use crate::ui::{Level, StepLog};

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
}

/// The step's mounted directories, each opened as a capability, so that
/// `kiln:plugin/files` answers only inside them: paths are resolved
/// beneath the mount by `cap-std`, never through a symlink out of it.
#[derive(Default)]
pub struct MountTable {
    dirs: Vec<(String, cap_std::fs::Dir)>,
}

impl MountTable {
    fn add(&mut self, host: &Path, guest: &str) -> std::io::Result<()> {
        let dir = cap_std::fs::Dir::open_ambient_dir(host, cap_std::ambient_authority())?;
        self.dirs
            .push((guest.trim_end_matches('/').to_owned(), dir));
        Ok(())
    }

    /// What WASI does not tell about the guest path `path`: permission
    /// bits, a symlink's target, the change time; a final symlink is not
    /// followed.
    pub fn metadata(&self, path: &str) -> Result<PathFacts, String> {
        // Relative paths start where the guest does: the workspace.
        let absolute;
        let path = if path.starts_with('/') {
            path
        } else {
            absolute = format!("{GUEST_WORKSPACE}/{path}");
            &absolute
        };
        let (dir, rest) = self
            .dirs
            .iter()
            .filter_map(|(guest, dir)| {
                let rest = path.strip_prefix(guest.as_str())?;
                (rest.is_empty() || rest.starts_with('/')).then_some((guest.len(), dir, rest))
            })
            .max_by_key(|(len, _, _)| *len)
            .map(|(_, dir, rest)| (dir, rest.trim_start_matches('/')))
            .ok_or_else(|| format!("{path} is not inside a mounted directory"))?;
        let relative = if rest.is_empty() { "." } else { rest };
        let failed = |e: std::io::Error| format!("{path}: {e}");
        // The parent is opened beneath the mount by cap-std; the last
        // component is examined there without following it (cap-std also
        // refuses to read absolute link targets, which must be copied).
        let (parent, name) = relative.rsplit_once('/').unwrap_or((".", relative));
        let parent = dir.open_dir(parent).map_err(failed)?;
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

/// Where the values of granted environment variables and secrets come
/// from: the process environment for `kiln step`, pipeline variables later.
pub trait ValueSource: Sync {
    /// The value of `name`, if set.
    fn get(&self, name: &str) -> Option<String>;
}

/// Values from the process environment.
pub struct ProcessEnv;

impl ValueSource for ProcessEnv {
    fn get(&self, name: &str) -> Option<String> {
        std::env::var(name).ok()
    }
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
        for host in grant.net.iter().filter_map(HostPattern::exact_authority) {
            if let Some(credential) = credentials::resolve(&host, values) {
                masked.extend(credential.sensitive());
                secrets.insert(credentials::secret_name(&host), credential.to_secret());
            }
        }
        let masked: Vec<&str> = masked.iter().map(String::as_str).collect();
        let log = make_log(&masked);

        let (mut wasi, stdio) = confined(&log);
        let mut mounts = MountTable::default();
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
        for (dirs, writable) in [(&grant.read, false), (&grant.write, true)] {
            for dir in dirs {
                let canonical = canonical_dir(dir)?;
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
            http: OutboundHttp::new(grant.net.clone(), log.clone()),
            memory: MemoryCap::new(grant.memory()),
            timeout: grant.timeout(),
            secrets,
            log,
            stdio,
            mounts,
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
            http: OutboundHttp::new(Vec::new(), log.clone()),
            memory: MemoryCap::new(memory),
            timeout,
            secrets: BTreeMap::new(),
            log,
            stdio,
            mounts: MountTable::default(),
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
    table.add(&host, guest).map_err(|e| failed(&e))
}
