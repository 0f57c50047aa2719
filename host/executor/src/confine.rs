//! The last layers of confinement, applied by the command's own process
//! right before it executes the command: capabilities, Landlock and a
//! seccomp filter. Each tier stacks them on what its namespaces or `chroot`
//! already give; together they hold where one alone has a gap (root
//! escapes a plain `chroot`; a bound host `/proc` shows host processes).

use std::collections::BTreeMap;

use landlock::{
    ABI, Access, AccessFs, AccessNet, CompatLevel, Compatible, NetPort, PathBeneath, PathFd,
    Ruleset, RulesetAttr, RulesetCreatedAttr, RulesetStatus, Scope,
};
use rustix::thread::CapabilitySet;
use seccompiler::{
    BpfProgram, SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition, SeccompFilter,
    SeccompRule, TargetArch, sock_filter,
};

use crate::tier::Tier;

/// The newest Landlock ABI kiln asks for; older kernels get what they
/// support (best effort), except that tier B refuses to run without the
/// file system rules.
const LANDLOCK_ABI: ABI = ABI::V6;

/// Docker's 14 default capabilities, which BuildKit also gives RUN: inside
/// a user namespace they apply to the namespace's own files only.
const DOCKER_DEFAULT: CapabilitySet = CapabilitySet::CHOWN
    .union(CapabilitySet::DAC_OVERRIDE)
    .union(CapabilitySet::FSETID)
    .union(CapabilitySet::FOWNER)
    .union(CapabilitySet::MKNOD)
    .union(CapabilitySet::NET_RAW)
    .union(CapabilitySet::SETGID)
    .union(CapabilitySet::SETUID)
    .union(CapabilitySet::SETFCAP)
    .union(CapabilitySet::SETPCAP)
    .union(CapabilitySet::NET_BIND_SERVICE)
    .union(CapabilitySet::SYS_CHROOT)
    .union(CapabilitySet::KILL)
    .union(CapabilitySet::AUDIT_WRITE);

/// Without namespaces the command is the host's real root: it keeps what
/// package managers need (owners, modes, dropping to their own users) and
/// loses device nodes, raw sockets and nested `chroot`.
const CHROOT_KEPT: CapabilitySet = DOCKER_DEFAULT
    .difference(CapabilitySet::MKNOD)
    .difference(CapabilitySet::NET_RAW)
    .difference(CapabilitySet::SYS_CHROOT)
    .difference(CapabilitySet::SETPCAP);

/// Cut capabilities to what `tier` keeps: the bounding set (what any
/// later `execve` can regain) and the current sets.
pub fn capabilities(tier: Tier) -> Result<(), String> {
    let kept = match tier {
        Tier::Namespaces => DOCKER_DEFAULT,
        Tier::ChrootLandlock => CHROOT_KEPT,
        // proot runs unprivileged: nothing to keep.
        Tier::Ptrace => CapabilitySet::empty(),
    };
    let current = rustix::thread::capabilities(None).map_err(|e| format!("capget: {e}"))?;
    for bit in 0..64 {
        let cap = CapabilitySet::from_bits_retain(1 << bit);
        if kept.contains(cap) {
            continue;
        }
        match rustix::thread::remove_capability_from_bounding_set(cap) {
            // EINVAL: the kernel does not know this capability.
            Ok(()) | Err(rustix::io::Errno::INVAL) => {}
            // Without CAP_SETPCAP the bounding set cannot shrink; the
            // permitted set below still drops them for this process, and
            // an unprivileged process regains nothing on exec.
            Err(rustix::io::Errno::PERM) => {}
            Err(e) => return Err(format!("dropping capability {bit}: {e}")),
        }
    }
    let _ = rustix::thread::clear_ambient_capability_set();
    let keep = current.permitted & kept;
    rustix::thread::set_capabilities(
        None,
        rustix::thread::CapabilitySets {
            effective: keep,
            permitted: keep,
            inheritable: CapabilitySet::empty(),
        },
    )
    .map_err(|e| format!("capset: {e}"))
}

/// Restrict the process with Landlock: it may use every file beneath `/`
/// as it is now (the image's root after `pivot_root` or `chroot`, plus
/// `extra_read` paths the tracer needs in tier C) except to create device
/// nodes; it may not signal processes outside, nor reach abstract Unix
/// sockets outside; and where there is no network namespace, TCP may only
/// connect to `proxy_port`.
pub fn landlock(
    tier: Tier,
    proxy_port: Option<u16>,
    extra: &[(String, bool)],
) -> Result<(), String> {
    let all = AccessFs::from_all(LANDLOCK_ABI);
    let inside = all & !(AccessFs::MakeBlock | AccessFs::MakeChar);
    let mut ruleset = Ruleset::default()
        .set_compatibility(CompatLevel::BestEffort)
        .handle_access(all)
        .map_err(|e| format!("landlock: {e}"))?
        .scope(Scope::from_all(LANDLOCK_ABI))
        .map_err(|e| format!("landlock: {e}"))?;
    let filter_tcp = tier != Tier::Namespaces;
    if filter_tcp {
        ruleset = ruleset
            .handle_access(AccessNet::from_all(LANDLOCK_ABI))
            .map_err(|e| format!("landlock: {e}"))?;
    }
    let root = match tier {
        // proot keeps the host's `/` and rewrites paths itself: the rules
        // name the root file system and the tracer's own needs.
        Tier::Ptrace => None,
        _ => Some("/".to_owned()),
    };
    let mut created = ruleset.create().map_err(|e| format!("landlock: {e}"))?;
    if let Some(root) = root {
        created = created
            .add_rule(PathBeneath::new(
                PathFd::new(&root).map_err(|e| format!("landlock {root}: {e}"))?,
                inside,
            ))
            .map_err(|e| format!("landlock: {e}"))?;
    }
    for (path, writable) in extra {
        let access = if *writable {
            inside
        } else {
            AccessFs::from_read(LANDLOCK_ABI)
        };
        let Ok(fd) = PathFd::new(path) else { continue };
        created = created
            .add_rule(PathBeneath::new(fd, access))
            .map_err(|e| format!("landlock: {e}"))?;
    }
    if filter_tcp && let Some(port) = proxy_port {
        created = created
            .add_rule(NetPort::new(port, AccessNet::ConnectTcp))
            .map_err(|e| format!("landlock: {e}"))?;
    }
    let status = created
        .restrict_self()
        .map_err(|e| format!("landlock: {e}"))?;
    if status.ruleset == RulesetStatus::NotEnforced && tier != Tier::Namespaces {
        return Err("Landlock is not enforced by this kernel".into());
    }
    Ok(())
}

/// Install the seccomp filters: system calls a build never needs and that
/// widen the kernel's attack surface or reach outside the sandbox fail with
/// EPERM; `clone3` fails with ENOSYS so that libc falls back to `clone`,
/// whose flags can be checked. Without a network namespace, only Unix
/// sockets and, when a proxy is granted, TCP sockets may be created.
pub fn seccomp(tier: Tier, network: bool) -> Result<(), String> {
    let fail = |e: seccompiler::BackendError| format!("seccomp: {e}");
    let arch = TargetArch::try_from(std::env::consts::ARCH).map_err(|e| format!("seccomp: {e}"))?;
    let arg = |index: u8, op: SeccompCmpOp, value: u64| {
        SeccompCondition::new(index, SeccompCmpArgLen::Dword, op, value)
    };
    let mut denied: BTreeMap<i64, Vec<SeccompRule>> = [
        libc::SYS_add_key,
        libc::SYS_keyctl,
        libc::SYS_request_key,
        libc::SYS_bpf,
        libc::SYS_perf_event_open,
        libc::SYS_userfaultfd,
        libc::SYS_kexec_load,
        libc::SYS_kexec_file_load,
        libc::SYS_init_module,
        libc::SYS_finit_module,
        libc::SYS_delete_module,
        libc::SYS_open_by_handle_at,
        libc::SYS_name_to_handle_at,
        libc::SYS_iopl,
        libc::SYS_ioperm,
        libc::SYS_swapon,
        libc::SYS_swapoff,
        libc::SYS_reboot,
        libc::SYS_settimeofday,
        libc::SYS_clock_settime,
        libc::SYS_clock_adjtime,
        libc::SYS_adjtimex,
        libc::SYS_acct,
        libc::SYS_quotactl,
        libc::SYS_syslog,
        libc::SYS_vhangup,
        libc::SYS_process_vm_readv,
        libc::SYS_process_vm_writev,
        libc::SYS_kcmp,
        libc::SYS_pidfd_getfd,
        libc::SYS_setns,
        libc::SYS_unshare,
        libc::SYS_mount,
        libc::SYS_umount2,
        libc::SYS_pivot_root,
        libc::SYS_fsopen,
        libc::SYS_fsmount,
        libc::SYS_move_mount,
        libc::SYS_open_tree,
        libc::SYS_mount_setattr,
        libc::SYS_io_uring_setup,
        libc::SYS_io_uring_enter,
        libc::SYS_io_uring_register,
    ]
    .into_iter()
    .map(|call| (call, Vec::new()))
    .collect();
    if tier != Tier::Ptrace {
        // proot itself traces; everywhere else nothing may.
        denied.insert(libc::SYS_ptrace, Vec::new());
    }
    // No new namespaces from inside.
    let namespaces = [
        libc::CLONE_NEWUSER,
        libc::CLONE_NEWNS,
        libc::CLONE_NEWPID,
        libc::CLONE_NEWNET,
        libc::CLONE_NEWIPC,
        libc::CLONE_NEWUTS,
        libc::CLONE_NEWCGROUP,
    ];
    let mut clone_rules = Vec::new();
    for flag in namespaces {
        let flag = flag as u64;
        clone_rules.push(
            SeccompRule::new(vec![
                arg(0, SeccompCmpOp::MaskedEq(flag), flag).map_err(fail)?,
            ])
            .map_err(fail)?,
        );
    }
    denied.insert(libc::SYS_clone, clone_rules);
    // vsock is not network-namespaced: on a VM it would lead out of any
    // tier.
    let mut socket_rules = vec![
        SeccompRule::new(vec![
            arg(0, SeccompCmpOp::Eq, libc::AF_VSOCK as u64).map_err(fail)?,
        ])
        .map_err(fail)?,
    ];
    if tier != Tier::Namespaces {
        let mut other = vec![arg(0, SeccompCmpOp::Ne, libc::AF_UNIX as u64).map_err(fail)?];
        if network {
            for family in [libc::AF_INET, libc::AF_INET6] {
                other.push(arg(0, SeccompCmpOp::Ne, family as u64).map_err(fail)?);
                // Plain TCP only: Landlock filters TCP alone, so every other
                // socket type, and TCP-like protocols (SCTP, MPTCP), are
                // refused.
                for kind in [
                    libc::SOCK_DGRAM,
                    libc::SOCK_RAW,
                    libc::SOCK_RDM,
                    libc::SOCK_SEQPACKET,
                    libc::SOCK_DCCP,
                    // SOCK_PACKET, obsolete (libc deprecates the name).
                    10,
                ] {
                    socket_rules.push(
                        SeccompRule::new(vec![
                            arg(0, SeccompCmpOp::Eq, family as u64).map_err(fail)?,
                            arg(1, SeccompCmpOp::MaskedEq(0xf), kind as u64).map_err(fail)?,
                        ])
                        .map_err(fail)?,
                    );
                }
                socket_rules.push(
                    SeccompRule::new(vec![
                        arg(0, SeccompCmpOp::Eq, family as u64).map_err(fail)?,
                        arg(2, SeccompCmpOp::Ne, 0).map_err(fail)?,
                        arg(2, SeccompCmpOp::Ne, libc::IPPROTO_TCP as u64).map_err(fail)?,
                    ])
                    .map_err(fail)?,
                );
            }
        }
        socket_rules.push(SeccompRule::new(other).map_err(fail)?);
    }
    denied.insert(libc::SYS_socket, socket_rules);
    let eperm = SeccompFilter::new(
        denied,
        SeccompAction::Allow,
        SeccompAction::Errno(libc::EPERM as u32),
        arch,
    )
    .map_err(fail)?;
    let enosys = SeccompFilter::new(
        [(libc::SYS_clone3, Vec::new())].into_iter().collect(),
        SeccompAction::Allow,
        SeccompAction::Errno(libc::ENOSYS as u32),
        arch,
    )
    .map_err(fail)?;
    for filter in [eperm, enosys] {
        let program: BpfProgram = filter.try_into().map_err(|e| format!("seccomp: {e}"))?;
        seccompiler::apply_filter(&program).map_err(|e| format!("seccomp: {e}"))?;
    }
    seccompiler::apply_filter(&no_x32()).map_err(|e| format!("seccomp: {e}"))
}

/// A filter refusing x32 system calls: on kernels that enable the x32 ABI
/// their numbers (`nr | 0x40000000`) would pass the rules above, which
/// name x86-64 numbers.
fn no_x32() -> BpfProgram {
    const LD_W_ABS: u16 = 0x20;
    const JEQ_K: u16 = 0x15;
    const JGE_K: u16 = 0x35;
    const RET_K: u16 = 0x06;
    const AUDIT_ARCH_X86_64: u32 = 0xc000_003e;
    const X32_SYSCALL_BIT: u32 = 0x4000_0000;
    const RET_ERRNO: u32 = 0x0005_0000;
    const RET_ALLOW: u32 = 0x7fff_0000;
    let op = |code, jt, jf, k| sock_filter { code, jt, jf, k };
    vec![
        // arch (seccomp_data.arch, offset 4); other architectures pass.
        op(LD_W_ABS, 0, 0, 4),
        op(JEQ_K, 0, 3, AUDIT_ARCH_X86_64),
        // nr (offset 0)
        op(LD_W_ABS, 0, 0, 0),
        op(JGE_K, 0, 1, X32_SYSCALL_BIT),
        op(RET_K, 0, 0, RET_ERRNO | libc::EPERM as u32),
        op(RET_K, 0, 0, RET_ALLOW),
    ]
}
