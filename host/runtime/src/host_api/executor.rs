//! `kiln:plugin/executor`: Dockerfile RUN commands run natively by
//! [`kiln_executor`], for steps granted `allow.run` only.
//!
//! Here the plugin's request meets the step's policy: guest paths become
//! host paths only through the step's mounts, secrets come only from its
//! grant, the network is kiln's allow-list proxy over exactly the step's
//! granted hosts, and the command's output is the step's log, masked and
//! charged to its budget.

use std::io::BufWriter;
use std::path::PathBuf;
use std::sync::Arc;

use kiln_executor::rootfs::Rootfs;
use kiln_executor::run::{Request, RunError, Stream};
use kiln_executor::spec::{MountSpec, Network as RunNetwork};
use kiln_executor::tier::Tier;
use sha2::Digest;
use wasmtime::component::Resource;

use super::StepState;
use super::bindings::kiln::plugin::executor::{
    Command, Host, HostRootfs, Isolation, Mount, MountSource, Network, Outcome, Sharing,
};
use crate::policy::proxy::Proxy;
use crate::policy::run::{RunAccess, id_map, isolation};
use crate::report::Level;

/// A root file system of the step's, removed when the plugin drops it or
/// the step ends.
pub struct RootfsState {
    rootfs: Rootfs,
    tier: Tier,
}

impl Drop for RootfsState {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(self.rootfs.path());
    }
}

/// The executor side of a step's state.
#[derive(Default)]
pub struct RunState {
    /// Present when the step is granted `allow.run`.
    pub access: Option<RunAccess>,
    /// The proxy RUN commands reach the network through, started at the
    /// first command that needs it.
    proxy: Option<Proxy>,
    /// The isolation used, for the step's summary.
    pub used: Option<Tier>,
}

/// Why a step without the grant cannot run commands.
const NOT_GRANTED: &str = "denied: running RUN commands needs the step to be granted `run` \
     (pipeline: `allow: { run: true }`; kiln build/step: --allow-run)";

impl RunState {
    /// The state of a step with `access` (granted `run`) or without.
    pub fn new(access: Option<RunAccess>) -> RunState {
        RunState {
            access,
            ..RunState::default()
        }
    }
}

impl StepState {
    fn access(&self) -> Result<RunAccess, String> {
        self.run
            .access
            .clone()
            .ok_or_else(|| NOT_GRANTED.to_owned())
    }

    /// The network for `network` under the step's grant; starts the proxy
    /// the first time a command may use one.
    fn network(&mut self, network: Network, access: &RunAccess) -> Result<RunNetwork, String> {
        match network {
            Network::None => Ok(RunNetwork::None),
            Network::Host if access.host_network => Ok(RunNetwork::Host),
            Network::Host => Err("denied: RUN --network=host needs the step to be granted \
                 `run_host_network` (pipeline: `allow: { run_host_network: true }`; kiln build: \
                 --allow-run-host-network)"
                .into()),
            Network::Default if !self.http.grants_any() => Ok(RunNetwork::None),
            Network::Default => {
                if self.run.proxy.is_none() {
                    let policy = Arc::new(self.http.clone());
                    let proxy = tokio::task::block_in_place(|| {
                        tokio::runtime::Handle::current().block_on(Proxy::start(policy))
                    })
                    .map_err(|e| format!("starting the RUN proxy: {e}"))?;
                    self.run.proxy = Some(proxy);
                }
                let port = self.run.proxy.as_ref().map_or(0, Proxy::port);
                Ok(RunNetwork::Proxy { port })
            }
        }
    }

    /// Host sources for the command's mounts; secret files are written to
    /// `secrets` (a private directory removed after the command); other
    /// stages' files and cache locks are kept in `held` until then.
    fn mounts(
        &self,
        mounts: &[Mount],
        access: &RunAccess,
        ids: &kiln_executor::ids::IdMap,
        secrets: &std::path::Path,
        held: &mut Held,
    ) -> Result<Vec<MountSpec>, String> {
        let tier = isolation()?.tier;
        let owner = |uid: Option<u32>, gid: Option<u32>| match *ids {
            kiln_executor::ids::IdMap::Shift { base, .. } => Some((
                base.saturating_add(uid.unwrap_or(0)),
                base.saturating_add(gid.unwrap_or(0)),
            )),
            kiln_executor::ids::IdMap::Single => None,
        };
        let chown = |path: &std::path::Path, owner: Option<(u32, u32)>| -> Result<(), String> {
            if let Some((uid, gid)) = owner {
                std::os::unix::fs::lchown(path, Some(uid), Some(gid))
                    .map_err(|e| format!("{}: {e}", path.display()))?;
            }
            Ok(())
        };
        let mut specs = Vec::new();
        for (index, mount) in mounts.iter().enumerate() {
            if !mount.target.starts_with('/') {
                return Err(format!(
                    "RUN --mount target {} must be absolute",
                    mount.target
                ));
            }
            // `.` and `..` folded away: the executor places mounts by the
            // target's last component, which must name something below `/`.
            let target = kiln_oci::path::clean(&mount.target);
            if target == "/" {
                return Err(format!(
                    "RUN --mount target {} is the root; mount below it",
                    mount.target
                ));
            }
            let source = match &mount.source {
                MountSource::Tmpfs => None,
                MountSource::Cache((id, sharing)) => {
                    // One directory per id and per id map: its files are
                    // owned as the command's users are on disk, which
                    // differs between isolations.
                    let owners = match *ids {
                        kiln_executor::ids::IdMap::Shift { base, .. } => format!("u{base}"),
                        kiln_executor::ids::IdMap::Single => "single".to_owned(),
                    };
                    let name = format!(
                        "{}-{owners}",
                        hex::encode(&sha2::Sha256::digest(id.as_bytes())[..16])
                    );
                    std::fs::create_dir_all(&access.caches)
                        .map_err(|e| format!("{}: {e}", access.caches.display()))?;
                    // The same cache twice in one RUN is one directory and
                    // one lock (a second lock would wait for the first).
                    // Without a mount namespace (chroot) the cache is moved
                    // into the root: nobody else may use it meanwhile.
                    let sharing = if tier == Tier::ChrootLandlock {
                        Sharing::Locked
                    } else {
                        *sharing
                    };
                    let dir = match held.caches.iter().find(|(n, _)| *n == name) {
                        Some((_, dir)) => dir.clone(),
                        None => {
                            let (dir, lock) = lock_cache(&access.caches, &name, sharing)
                                .map_err(|e| format!("cache {id}: {e}"))?;
                            held.locks.push(lock);
                            held.caches.push((name.clone(), dir.clone()));
                            dir
                        }
                    };
                    // What a command left there must be a directory: never
                    // a symlink a later mount would follow.
                    if std::fs::symlink_metadata(&dir).is_ok_and(|m| !m.is_dir()) {
                        std::fs::remove_file(&dir)
                            .map_err(|e| format!("cache {id}: {}: {e}", dir.display()))?;
                    }
                    if !dir.is_dir() {
                        std::fs::create_dir_all(&dir)
                            .map_err(|e| format!("cache {id}: {}: {e}", dir.display()))?;
                        let mode = mount.mode.unwrap_or(0o755);
                        std::fs::set_permissions(
                            &dir,
                            std::os::unix::fs::PermissionsExt::from_mode(mode),
                        )
                        .map_err(|e| format!("cache {id}: {e}"))?;
                        chown(&dir, owner(mount.uid, mount.gid))?;
                    }
                    Some(dir)
                }
                MountSource::Secret(name) => match self.secrets.get(name) {
                    Some(value) => {
                        let file = secrets.join(format!("secret-{index}"));
                        std::fs::write(&file, value.as_bytes())
                            .map_err(|e| format!("secret {name}: {e}"))?;
                        std::fs::set_permissions(
                            &file,
                            std::os::unix::fs::PermissionsExt::from_mode(
                                mount.mode.unwrap_or(0o400),
                            ),
                        )
                        .map_err(|e| format!("secret {name}: {e}"))?;
                        chown(&file, owner(mount.uid, mount.gid))?;
                        Some(file)
                    }
                    None if mount.required => {
                        return Err(format!(
                            "denied: RUN needs the secret {name}, which the step is not granted \
                             (allow.secrets, or kiln build --secret id={name})"
                        ));
                    }
                    None => continue,
                },
                MountSource::Bind(guest) => {
                    if mount.writable {
                        return Err(format!(
                            "RUN --mount=type=bind,target={}: writable binds are not supported; \
                             copy the files in an earlier step instead",
                            mount.target
                        ));
                    }
                    Some(self.mounts.host_path(guest)?)
                }
                MountSource::Layered(source) => {
                    let mut rootfs = Rootfs::create(unique_dir(&access.work)?, *ids)
                        .map_err(|e| e.to_string())?;
                    for layer in &source.layers {
                        let file = self.mounts.open_file(layer)?;
                        rootfs
                            .apply(std::io::BufReader::with_capacity(1 << 20, file))
                            .map_err(|e| format!("{layer}: {e}"))?;
                    }
                    let path = rootfs.host_path(&source.path).map_err(|e| {
                        format!("RUN --mount from another stage: {}: {e}", source.path)
                    })?;
                    held.layered.push(RootfsState { rootfs, tier });
                    Some(path)
                }
            };
            specs.push(MountSpec {
                source,
                target,
                writable: matches!(mount.source, MountSource::Cache(_) | MountSource::Tmpfs)
                    && mount.writable,
            });
        }
        Ok(specs)
    }
}

impl HostRootfs for StepState {
    fn create(&mut self) -> wasmtime::Result<Result<Resource<RootfsState>, String>> {
        let created = (|| {
            let access = self.access()?;
            let isolation = isolation()?;
            std::fs::create_dir_all(&access.work)
                .map_err(|e| format!("{}: {e}", access.work.display()))?;
            // Private: roots hold the image's setuid files and secrets.
            std::fs::set_permissions(
                &access.work,
                std::os::unix::fs::PermissionsExt::from_mode(0o700),
            )
            .map_err(|e| format!("{}: {e}", access.work.display()))?;
            static SWEPT: std::sync::Once = std::sync::Once::new();
            SWEPT.call_once(|| tokio::task::block_in_place(|| sweep_stale(&access.work)));
            let dir = unique_dir(&access.work)?;
            let rootfs = Rootfs::create(dir, id_map(isolation.tier)).map_err(|e| e.to_string())?;
            Ok(RootfsState {
                rootfs,
                tier: isolation.tier,
            })
        })();
        Ok(match created {
            Ok(state) => Ok(self.table.push(state)?),
            Err(e) => Err(e),
        })
    }

    fn apply(
        &mut self,
        this: Resource<RootfsState>,
        layer: String,
    ) -> wasmtime::Result<Result<(), String>> {
        let file = match self.mounts.open_file(&layer) {
            Ok(file) => file,
            Err(e) => return Ok(Err(e)),
        };
        let state = self.table.get_mut(&this)?;
        let applied = tokio::task::block_in_place(|| {
            state
                .rootfs
                .apply(std::io::BufReader::with_capacity(1 << 20, file))
        });
        Ok(applied.map(|_| ()).map_err(|e| format!("{layer}: {e}")))
    }

    fn run(
        &mut self,
        this: Resource<RootfsState>,
        command: Command,
        diff: String,
    ) -> wasmtime::Result<Result<Outcome, String>> {
        let prepared = (|| {
            let access = self.access()?;
            let isolation = isolation()?;
            let network = self.network(command.network, &access)?;
            let secrets = private_dir(&access.work)?;
            let ids = *self
                .table
                .get(&this)
                .map_err(|e| e.to_string())?
                .rootfs
                .ids();
            let mut held = Held::default();
            let mounts = self.mounts(&command.mounts, &access, &ids, &secrets, &mut held);
            let out = self.mounts.create_file(&diff);
            Ok::<_, String>((access, isolation, network, secrets, mounts, out, held))
        })();
        let (access, mut isolation, network, secrets, mounts, out, held) = match prepared {
            Ok(p) => p,
            Err(e) => return Ok(Err(e)),
        };
        let (mounts, out) = match (mounts, out) {
            (Ok(m), Ok(o)) => (m, o),
            (Err(e), _) | (_, Err(e)) => {
                let _ = std::fs::remove_dir_all(&secrets);
                return Ok(Err(e));
            }
        };
        let mut env = command.env.clone();
        for (variable, secret) in &command.secret_env {
            match self.secrets.get(secret) {
                Some(value) => env.push(format!("{variable}={value}")),
                None => {
                    let _ = std::fs::remove_dir_all(&secrets);
                    return Ok(Err(format!(
                        "denied: RUN needs the secret {secret}, which the step is not granted"
                    )));
                }
            }
        }
        if !env.iter().any(|e| e.starts_with("PATH=")) {
            env.push(format!("PATH={}", kiln_executor::helper::DEFAULT_PATH));
        }
        let state = self.table.get_mut(&this)?;
        isolation.tier = state.tier;
        if let Some(port) = network.proxy_port(state.tier) {
            let proxy = format!("http://127.0.0.1:{port}");
            for name in ["http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY"] {
                env.push(format!("{name}={proxy}"));
            }
        }
        let request = Request {
            args: command.args,
            env,
            workdir: command.workdir,
            user: command.user,
            network,
            mounts,
            epoch: command.source_date_epoch,
        };
        let log = self.log.clone();
        let result = tokio::task::block_in_place(|| {
            kiln_executor::run::run(
                &mut state.rootfs,
                &isolation,
                &request,
                access.deadline,
                BufWriter::with_capacity(1 << 20, out),
                |stream, line| {
                    let level = match stream {
                        Stream::Stdout => Level::Info,
                        Stream::Stderr => Level::Warn,
                    };
                    log.plugin(level, line, &[]).is_ok()
                },
            )
        });
        let _ = std::fs::remove_dir_all(&secrets);
        tokio::task::block_in_place(|| drop(held));
        let tier = state.tier;
        self.run.used = Some(tier);
        Ok(match result {
            Ok(outcome) => Ok(Outcome {
                exit_code: u32::try_from(outcome.exit_code).unwrap_or(u32::MAX),
                isolation: match tier {
                    Tier::Namespaces => Isolation::Namespaces,
                    Tier::ChrootLandlock => Isolation::ChrootLandlock,
                    Tier::Ptrace => Isolation::Ptrace,
                },
                added: outcome.changes.added,
                modified: outcome.changes.modified,
                deleted: outcome.changes.deleted,
                diff_size: outcome.changes.tar_size,
            }),
            Err(RunError::Timeout) => {
                return Err(wasmtime::format_err!(
                    "the step's time limit ran out during RUN"
                ));
            }
            Err(e) => Err(e.to_string()),
        })
    }

    fn drop(&mut self, this: Resource<RootfsState>) -> wasmtime::Result<()> {
        let state = self.table.delete(this)?;
        tokio::task::block_in_place(|| drop(state));
        Ok(())
    }
}

impl Host for StepState {}

/// What a command's mounts hold until it ends: other stages' files and
/// locks on its cache directories.
#[derive(Default)]
struct Held {
    layered: Vec<RootfsState>,
    locks: Vec<std::fs::File>,
    /// Cache directories locked for this command, by name.
    caches: Vec<(String, PathBuf)>,
}

/// The cache directory for `name` under `caches` and the lock that
/// `sharing` takes on it, as BuildKit shares caches between concurrent
/// builds: `shared` alongside others (a shared lock, so that a `locked`
/// user waits for them), `locked` alone, `private` in a directory of its
/// own when the usual one is in use.
fn lock_cache(
    caches: &std::path::Path,
    name: &str,
    sharing: Sharing,
) -> std::io::Result<(PathBuf, std::fs::File)> {
    use rustix::fs::FlockOperation as Op;
    let lock = |suffix: &str, op: Op| -> std::io::Result<Option<(PathBuf, std::fs::File)>> {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(caches.join(format!("{name}{suffix}.lock")))?;
        match tokio::task::block_in_place(|| rustix::fs::flock(&file, op)) {
            Ok(()) => Ok(Some((caches.join(format!("{name}{suffix}")), file))),
            Err(rustix::io::Errno::WOULDBLOCK) => Ok(None),
            Err(e) => Err(e.into()),
        }
    };
    let found = match sharing {
        Sharing::Shared => lock("", Op::LockShared)?,
        Sharing::Locked => lock("", Op::LockExclusive)?,
        Sharing::Private => {
            let mut found = None;
            for n in 0..64 {
                let suffix = if n == 0 {
                    String::new()
                } else {
                    format!("-{n}")
                };
                if let Some(held) = lock(&suffix, Op::NonBlockingLockExclusive)? {
                    found = Some(held);
                    break;
                }
            }
            found
        }
    };
    found.ok_or_else(|| std::io::Error::other("every private copy of the cache is in use"))
}

/// This process's claim on what it creates under kiln's RUN work
/// directory: a file `PREFIX.lock` it holds locked while it runs; its root
/// file systems, secrets and scratch are named `PREFIX-…`. A claim whose
/// lock is free belongs to a kiln that ended, and its leftovers may go.
fn claim(work: &std::path::Path) -> Result<&'static str, String> {
    static CLAIM: std::sync::OnceLock<Result<(String, std::fs::File), String>> =
        std::sync::OnceLock::new();
    CLAIM
        .get_or_init(|| {
            let nanos = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos());
            let prefix = format!("{}-{nanos:x}", std::process::id());
            let path = work.join(format!("{prefix}.lock"));
            let file = std::fs::OpenOptions::new()
                .create_new(true)
                .write(true)
                .open(&path)
                .map_err(|e| format!("{}: {e}", path.display()))?;
            rustix::fs::flock(&file, rustix::fs::FlockOperation::NonBlockingLockExclusive)
                .map_err(|e| format!("{}: {e}", path.display()))?;
            Ok((prefix, file))
        })
        .as_ref()
        .map(|(prefix, _)| prefix.as_str())
        .map_err(Clone::clone)
}

/// Remove what kilns that ended (killed, or out of power) left under
/// `work`: their claims' locks are free. They would fill the disk and, in
/// kiln's cache, GitLab's cache archive.
fn sweep_stale(work: &std::path::Path) {
    let Ok(entries) = std::fs::read_dir(work) else {
        return;
    };
    let entries: Vec<_> = entries.flatten().map(|e| e.file_name()).collect();
    for lock in entries
        .iter()
        .filter_map(|n| n.to_str()?.strip_suffix(".lock"))
    {
        let path = work.join(format!("{lock}.lock"));
        let Ok(file) = std::fs::OpenOptions::new().write(true).open(&path) else {
            continue;
        };
        if rustix::fs::flock(&file, rustix::fs::FlockOperation::NonBlockingLockExclusive).is_err() {
            continue;
        }
        let leftovers = format!("{lock}-");
        for name in entries.iter().filter_map(|n| n.to_str()) {
            if name.starts_with(&leftovers) || name.starts_with(&format!("{lock}.")) {
                let path = work.join(name);
                if path.is_dir() {
                    let _ = std::fs::remove_dir_all(&path);
                }
            }
        }
        let _ = std::fs::remove_file(&path);
    }
}

/// A new name under `work` for one root file system (or, with an
/// extension, its secrets), inside this process's claim.
fn unique_dir(work: &std::path::Path) -> Result<PathBuf, String> {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    Ok(work.join(format!("{}-{n}", claim(work)?)))
}

/// A new private (0700) directory under `parent`.
fn private_dir(parent: &std::path::Path) -> Result<PathBuf, String> {
    let dir = unique_dir(parent)?.with_extension("secrets");
    std::fs::create_dir(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    std::fs::set_permissions(&dir, std::os::unix::fs::PermissionsExt::from_mode(0o700))
        .map_err(|e| format!("{}: {e}", dir.display()))?;
    Ok(dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(flavor = "multi_thread")]
    async fn cache_sharing_follows_buildkit() {
        let caches = tempfile::tempdir().unwrap();
        let (shared, _a) = lock_cache(caches.path(), "c", Sharing::Shared).unwrap();
        let (also_shared, _b) = lock_cache(caches.path(), "c", Sharing::Shared).unwrap();
        assert_eq!(shared, also_shared, "shared users share one directory");
        let (private, held) = lock_cache(caches.path(), "c", Sharing::Private).unwrap();
        assert_eq!(
            private,
            caches.path().join("c-1"),
            "the usual one is in use"
        );
        drop(held);
        drop((_a, _b));
        let (free, _c) = lock_cache(caches.path(), "c", Sharing::Private).unwrap();
        assert_eq!(free, caches.path().join("c"));
    }
}
