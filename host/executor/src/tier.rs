//! The isolation tiers and the probe that picks the strongest one this
//! environment allows.
//!
//! Whether a pod allows user namespaces, `chroot` or Landlock depends on
//! its seccomp profile, capabilities and kernel, none of which kiln can
//! read reliably; so each tier is probed by trying what it needs in a
//! throwaway child process, once per kiln process.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// How a command is isolated, strongest first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Tier {
    /// A: user, mount, pid, network, ipc and uts namespaces, `pivot_root`,
    /// Landlock, seccomp, capabilities cut to Docker's defaults.
    Namespaces,
    /// B: `chroot` with Landlock (files, TCP, signals) and seccomp, for
    /// root where namespaces are refused.
    ChrootLandlock,
    /// C: proot (ptrace) under Landlock, for unprivileged pods.
    Ptrace,
}

impl Tier {
    /// The name shown in summaries and accepted by `KILN_RUN_ISOLATION`.
    pub fn name(self) -> &'static str {
        match self {
            Tier::Namespaces => "namespaces",
            Tier::ChrootLandlock => "chroot-landlock",
            Tier::Ptrace => "ptrace",
        }
    }

    /// The tier called `name`.
    pub fn parse(name: &str) -> Option<Tier> {
        [Tier::Namespaces, Tier::ChrootLandlock, Tier::Ptrace]
            .into_iter()
            .find(|t| t.name() == name)
    }
}

/// The Landlock ABI the chroot tier needs: files (1), TCP ports (4), and
/// signal and abstract-socket scoping (6). Without them root in a `chroot`
/// could reach the network or kill kiln.
const CHROOT_LANDLOCK_ABI: u32 = 6;

/// No tier can run here; the message names what would unlock one.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{0}")]
pub struct NoIsolation(pub String);

/// What the environment allows, probed once.
#[derive(Debug, Clone)]
pub struct Probe {
    /// User namespaces with mount, pid and network namespaces work.
    pub namespaces: Result<(), String>,
    /// kiln runs as root and `chroot` works.
    pub chroot: Result<(), String>,
    /// The Landlock ABI version, 0 when Landlock is missing.
    pub landlock_abi: u32,
    /// The proot binary, if one was found.
    pub proot: Option<PathBuf>,
}

impl Probe {
    /// Probe this environment; `proot` is where to look for proot first.
    pub fn run(proot: Option<&Path>) -> Probe {
        Probe {
            namespaces: in_child(try_namespaces),
            chroot: if rustix::process::geteuid().is_root() {
                in_child(|| rustix::process::chroot("/").map_err(|e| format!("chroot: {e}")))
            } else {
                Err("kiln does not run as root".into())
            },
            landlock_abi: landlock_abi(),
            proot: proot
                .map(Path::to_path_buf)
                .filter(|p| p.is_file())
                .or_else(|| find_in_path("proot")),
        }
    }

    /// The strongest tier that works, or `wanted` if it works. Tier B
    /// needs Landlock: without it root escapes a `chroot`, so it is used
    /// only when `insecure_chroot` says the user accepts that.
    pub fn choose(&self, wanted: Option<Tier>, insecure_chroot: bool) -> Result<Tier, NoIsolation> {
        let works = |tier: Tier| -> Result<(), String> {
            match tier {
                Tier::Namespaces => self.namespaces.clone(),
                Tier::ChrootLandlock => {
                    self.chroot.clone()?;
                    if self.landlock_abi < CHROOT_LANDLOCK_ABI && !insecure_chroot {
                        return Err(format!(
                            "the kernel's Landlock (ABI {}) cannot hold root in a chroot: it needs \
                             ABI {CHROOT_LANDLOCK_ABI} (Linux 6.12) to keep a command from \
                             signalling kiln and reaching its network (pass --insecure-chroot to \
                             accept that)",
                            self.landlock_abi
                        ));
                    }
                    Ok(())
                }
                Tier::Ptrace => match &self.proot {
                    Some(_) => Ok(()),
                    None => Err("proot is not installed (Debian: apt-get install proot)".into()),
                },
            }
        };
        if let Some(tier) = wanted {
            return works(tier).map(|()| tier).map_err(|why| {
                NoIsolation(format!(
                    "RUN isolation {} cannot run here: {why}",
                    tier.name()
                ))
            });
        }
        for tier in [Tier::Namespaces, Tier::ChrootLandlock, Tier::Ptrace] {
            if works(tier).is_ok() {
                return Ok(tier);
            }
        }
        Err(NoIsolation(self.unlock_hint()))
    }

    /// Why nothing runs, and the one setting that unlocks tier A.
    fn unlock_hint(&self) -> String {
        let why = self.namespaces.clone().err().unwrap_or_default();
        let setting = if std::fs::read_to_string("/proc/sys/user/max_user_namespaces")
            .is_ok_and(|v| v.trim() == "0")
        {
            "set the node's sysctl user.max_user_namespaces above 0"
        } else {
            "run the job with an unconfined seccomp profile (Kubernetes: \
             securityContext.seccompProfile.type: Unconfined; Docker: --security-opt \
             seccomp=unconfined)"
        };
        format!(
            "RUN cannot be isolated here: user namespaces are refused ({why}), kiln is not root \
             for chroot, and proot is not installed. To unlock namespace isolation, {setting}; \
             or install proot for the slower ptrace isolation"
        )
    }
}

/// The running kernel's Landlock ABI version, 0 without Landlock.
pub fn landlock_abi() -> u32 {
    const LANDLOCK_CREATE_RULESET_VERSION: libc::c_long = 1;
    // SAFETY: with a null attribute and the VERSION flag the call only
    // returns a number.
    let version = unsafe {
        libc::syscall(
            libc::SYS_landlock_create_ruleset,
            std::ptr::null::<libc::c_void>(),
            0usize,
            LANDLOCK_CREATE_RULESET_VERSION,
        )
    };
    u32::try_from(version).unwrap_or(0)
}

/// The namespaces tier A needs, and a mount inside them.
fn try_namespaces() -> Result<(), String> {
    use rustix::thread::UnshareFlags as F;
    // SAFETY: the probe child is single-threaded and exits right after.
    unsafe {
        rustix::thread::unshare_unsafe(
            F::NEWUSER | F::NEWNS | F::NEWPID | F::NEWNET | F::NEWIPC | F::NEWUTS,
        )
    }
    .map_err(|e| format!("unshare: {e}"))?;
    rustix::mount::mount_change(
        "/",
        rustix::mount::MountPropagationFlags::REC | rustix::mount::MountPropagationFlags::PRIVATE,
    )
    .map_err(|e| format!("mount: {e}"))
}

/// Run `probe` in a forked child, so nothing it changes stays with kiln.
fn in_child(probe: fn() -> Result<(), String>) -> Result<(), String> {
    let (read, write) = rustix::pipe::pipe().map_err(|e| format!("pipe: {e}"))?;
    // SAFETY: the child only makes system calls, writes to a pipe and
    // exits; it never returns into Rust code shared with other threads.
    match unsafe { libc::fork() } {
        -1 => Err(format!("fork: {}", std::io::Error::last_os_error())),
        0 => {
            drop(read);
            let code = match probe() {
                Ok(()) => 0,
                Err(why) => {
                    let _ = rustix::io::write(&write, why.as_bytes());
                    1
                }
            };
            // SAFETY: leaving the child without running destructors.
            unsafe { libc::_exit(code) }
        }
        child => {
            drop(write);
            let mut why = Vec::new();
            let mut buf = [0u8; 256];
            while let Ok(n @ 1..) = rustix::io::read(&read, &mut buf) {
                why.extend_from_slice(&buf[..n]);
            }
            let mut status = 0;
            // SAFETY: waiting for our own child.
            unsafe { libc::waitpid(child, &mut status, 0) };
            if libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0 {
                Ok(())
            } else if why.is_empty() {
                Err(format!("the probe ended with status {status}"))
            } else {
                Err(String::from_utf8_lossy(&why).into_owned())
            }
        }
    }
}

/// `name` in `$PATH`, as a shell would find it.
fn find_in_path(name: &str) -> Option<PathBuf> {
    std::env::var_os("PATH")?
        .to_str()?
        .split(':')
        .map(|dir| Path::new(dir).join(name))
        .find(|p| p.is_file())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for tier in [Tier::Namespaces, Tier::ChrootLandlock, Tier::Ptrace] {
            assert_eq!(Tier::parse(tier.name()), Some(tier));
        }
        assert_eq!(Tier::parse("chroot"), None);
    }

    #[test]
    fn a_wanted_tier_that_cannot_run_says_why() {
        let probe = Probe {
            namespaces: Err("unshare: EPERM".into()),
            chroot: Err("kiln does not run as root".into()),
            landlock_abi: 0,
            proot: None,
        };
        let error = probe.choose(Some(Tier::Ptrace), false).unwrap_err();
        assert!(error.0.contains("apt-get install proot"), "{error}");
        let error = probe.choose(None, false).unwrap_err();
        assert!(error.0.contains("seccomp"), "{error}");
    }

    #[test]
    fn chroot_without_landlock_needs_consent() {
        let mut probe = Probe {
            namespaces: Err("unshare: EPERM".into()),
            chroot: Ok(()),
            landlock_abi: 0,
            proot: None,
        };
        assert!(probe.choose(None, false).is_err());
        assert_eq!(probe.choose(None, true).unwrap(), Tier::ChrootLandlock);
        // Landlock without signal scoping is not enough either.
        probe.landlock_abi = 5;
        let refused = probe.choose(Some(Tier::ChrootLandlock), false).unwrap_err();
        assert!(refused.0.contains("ABI 5"), "{refused}");
        assert!(probe.choose(None, false).is_err());
        probe.landlock_abi = 6;
        assert_eq!(probe.choose(None, false).unwrap(), Tier::ChrootLandlock);
    }
}
