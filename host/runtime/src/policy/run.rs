//! What a step granted `allow.run` may do with the host's executor, and
//! which isolation this machine gives it.
//!
//! The isolation is probed once per kiln process (see
//! [`kiln_executor::tier`]). `KILN_RUN_ISOLATION=namespaces|chroot-landlock|ptrace`
//! (or `--run-isolation`) asks for one tier (it must work here);
//! `KILN_INSECURE_CHROOT=1` (or `--insecure-chroot`) accepts
//! `chroot` without Landlock, which root can escape.

use std::path::PathBuf;
use std::sync::OnceLock;
use std::time::Instant;

use kiln_executor::ids::IdMap;
use kiln_executor::run::Isolation;
use kiln_executor::tier::{Probe, Tier};

/// The executor access of one step.
#[derive(Debug, Clone)]
pub struct RunAccess {
    /// Where root file systems are built (removed with each).
    pub work: PathBuf,
    /// Where `RUN --mount=type=cache` directories are kept between builds.
    pub caches: PathBuf,
    /// Whether `RUN --network=host` is granted.
    pub host_network: bool,
    /// When the step's time runs out.
    pub deadline: Instant,
}

impl RunAccess {
    /// Access for a step with kiln's cache at `cache_root` (kept between
    /// builds, and carried by GitLab's cache on exported jobs) or, without
    /// one, in the system's temporary directory.
    pub fn new(
        cache_root: Option<&std::path::Path>,
        host_network: bool,
        deadline: Instant,
    ) -> Self {
        let base = cache_root
            .map(|c| c.join("run"))
            .unwrap_or_else(|| std::env::temp_dir().join("kiln-run"));
        RunAccess {
            work: base.join("roots"),
            caches: base.join("caches"),
            host_network,
            deadline,
        }
    }
}

/// The user's choices from the command line, set once at start-up.
static CHOSEN: OnceLock<(Option<String>, bool)> = OnceLock::new();

/// Take `--run-isolation` and `--insecure-chroot` (which win over
/// `KILN_RUN_ISOLATION` and `KILN_INSECURE_CHROOT`); called once, before
/// any step runs.
pub fn configure(tier: Option<String>, insecure_chroot: bool) {
    let _ = CHOSEN.set((tier, insecure_chroot));
}

/// The isolation this machine gives RUN commands: probed once, then the
/// same for every command of the process.
pub fn isolation() -> Result<Isolation, String> {
    static PROBED: OnceLock<Result<Isolation, String>> = OnceLock::new();
    PROBED
        .get_or_init(|| {
            let (flag, insecure_flag) = CHOSEN.get().cloned().unwrap_or_default();
            let named = flag
                .map(|name| ("--run-isolation", name))
                .or_else(|| {
                    std::env::var("KILN_RUN_ISOLATION")
                        .ok()
                        .map(|name| ("KILN_RUN_ISOLATION", name))
                })
                .filter(|(_, name)| !name.is_empty());
            let wanted = match named {
                Some((source, name)) => Some(Tier::parse(&name).ok_or_else(|| {
                    format!(
                        "{source} {name} is not a tier; use namespaces, chroot-landlock or ptrace"
                    )
                })?),
                None => None,
            };
            let insecure =
                insecure_flag || std::env::var("KILN_INSECURE_CHROOT").is_ok_and(|v| v == "1");
            let probe = Probe::run(None);
            let tier = probe.choose(wanted, insecure).map_err(|e| e.to_string())?;
            // kiln's own binary, even if it was replaced on disk while
            // running (an upgrade, a rebuild): the kernel keeps it.
            let own = std::path::Path::new("/proc/self/exe");
            let helper = if own.exists() {
                own.to_path_buf()
            } else {
                std::env::current_exe()
                    .map_err(|e| format!("cannot find kiln's own binary for the RUN helper: {e}"))?
            };
            Ok(Isolation {
                tier,
                helper,
                proot: probe.proot,
            })
        })
        .clone()
}

/// How image owners are kept on disk for `tier`. As root with namespaces,
/// shifted into a private range (root's `/etc/subuid` range, or from
/// 100000 as podman does): the command's root is then no host user at
/// all, and the files the image's root owns belong to no host user either.
/// As root without a user namespace (chroot, ptrace) they are as they
/// are; when kiln is not root, every id inside is kiln's own user and the
/// image's owners are kept in a side table.
pub fn id_map(tier: Tier) -> IdMap {
    if !rustix::process::geteuid().is_root() {
        return IdMap::Single;
    }
    match tier {
        Tier::Namespaces => IdMap::Shift {
            base: subordinate_base().unwrap_or(DEFAULT_BASE),
            count: 65536,
        },
        Tier::ChrootLandlock | Tier::Ptrace => IdMap::Shift {
            base: 0,
            count: u32::MAX,
        },
    }
}

/// Where root's range starts when `/etc/subuid` names none.
const DEFAULT_BASE: u32 = 100_000;

/// The start of root's range in `/etc/subuid`, if it has one of 65536 ids.
fn subordinate_base() -> Option<u32> {
    let text = std::fs::read_to_string("/etc/subuid").ok()?;
    text.lines().find_map(|line| {
        let mut fields = line.split(':');
        let user = fields.next()?;
        let start = fields.next()?.parse().ok()?;
        let count: u32 = fields.next()?.parse().ok()?;
        (matches!(user, "root" | "0") && count >= 65536 && start > 0).then_some(start)
    })
}
