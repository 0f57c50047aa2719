//! Tier A: user, mount, pid, network, ipc and uts namespaces, `pivot_root`
//! into the image's root, a minimal `/dev`, `/proc`, then Landlock,
//! seccomp and Docker's default capabilities.
//!
//! Three processes: the helper stays in the host's namespaces (it writes
//! the id maps, which needs its privileges there, and relays the proxy);
//! its child unshares and waits for the maps; the grandchild is pid 1 of
//! the new pid namespace and becomes the command, so that when it ends
//! every process it left behind is killed with it.

use std::os::fd::OwnedFd;

use rustix::fs::OFlags;
use rustix::mount::{MountFlags, MountPropagationFlags, UnmountFlags};
use rustix::thread::UnshareFlags;

use super::stubs::{Stubs, open_in_root};
use super::{exec, fork_child, relay, wait};
use crate::confine;
use crate::ids::IdMap;
use crate::spec::{Network, RunSpec};
use crate::tier::Tier;

/// Device nodes bound from the host into the command's `/dev` (no `tty`:
/// a command has no terminal of kiln's to type into).
const DEVICES: [&str; 5] = ["null", "zero", "full", "random", "urandom"];

/// Run `spec` in tier A; the command's exit status.
pub(super) fn run(spec: &RunSpec) -> Result<i32, String> {
    let owner = match spec.ids {
        IdMap::Shift { base, .. } => Some((base, base)),
        IdMap::Single => None,
    };
    let mut stubs = Stubs::new(&spec.rootfs, owner)?;
    stubs.ensure("/proc", true)?;
    stubs.ensure("/dev", true)?;
    for mount in &spec.mounts {
        stubs.ensure(
            &mount.target,
            mount.source.as_ref().is_none_or(|s| s.is_dir()),
        )?;
    }
    let result = run_with(spec);
    stubs.remove();
    result
}

fn run_with(spec: &RunSpec) -> Result<i32, String> {
    let (ready_read, ready_write) = pipe()?;
    let (go_read, go_write) = pipe()?;
    let (channel_inside, channel_outside) = rustix::net::socketpair(
        rustix::net::AddressFamily::UNIX,
        rustix::net::SocketType::STREAM,
        rustix::net::SocketFlags::CLOEXEC,
        None,
    )
    .map_err(|e| format!("socketpair: {e}"))?;
    let proxy_port = match spec.network {
        Network::Proxy { port } => Some(port),
        _ => None,
    };
    let helper = rustix::process::getpid().as_raw_nonzero().get();
    let child = fork_child(|| {
        let mut flags = UnshareFlags::NEWUSER
            | UnshareFlags::NEWNS
            | UnshareFlags::NEWPID
            | UnshareFlags::NEWIPC
            | UnshareFlags::NEWUTS;
        if spec.network != Network::Host {
            flags |= UnshareFlags::NEWNET;
        }
        // SAFETY: this child is single-threaded.
        unsafe { rustix::thread::unshare_unsafe(flags) }.map_err(|e| format!("unshare: {e}"))?;
        rustix::io::write(&ready_write, b"u").map_err(|e| format!("signalling: {e}"))?;
        let mut byte = [0u8];
        if rustix::io::read(&go_read, &mut byte) != Ok(1) {
            return Err("the helper did not write the id maps".into());
        }
        // Become the namespace's root (as root, every id is mapped as it
        // is; otherwise kiln's one id is root inside).
        if matches!(spec.ids, IdMap::Shift { .. }) {
            rustix::thread::set_thread_groups(&[]).map_err(|e| format!("setgroups: {e}"))?;
        }
        become_root(helper)?;
        if spec.network != Network::Host {
            relay::inside(&channel_inside, proxy_port.is_some())?;
        }
        let command = fork_child(|| command(spec))?;
        wait(command)
    })?;
    drop((ready_write, go_read, channel_inside));
    let mut byte = [0u8];
    if rustix::io::read(&ready_read, &mut byte) != Ok(1) {
        // The child failed before unsharing; its error is in the file.
        return wait(child);
    }
    write_id_maps(child, &spec.ids)?;
    rustix::io::write(&go_write, b"g").map_err(|e| format!("signalling: {e}"))?;
    if let Some(port) = proxy_port {
        relay::outside(&channel_outside, port)?;
    }
    wait(child)
}

/// Map ids for the child's user namespace. As root, every id as it is:
/// the namespace's root must reach the root file system and the mount
/// sources beneath kiln's private directories to set the mounts up; the
/// command itself runs in a namespace nested in it, with the shifted
/// range (see [`shifted`]). Otherwise the one id kiln runs as, as root
/// inside.
fn write_id_maps(child: libc::pid_t, ids: &IdMap) -> Result<(), String> {
    let write = |file: &str, text: String| write_proc(&child.to_string(), file, &text);
    match *ids {
        IdMap::Shift { .. } => {
            write("uid_map", "0 0 4294967295\n".into())?;
            write("gid_map", "0 0 4294967295\n".into())?;
        }
        IdMap::Single => {
            let uid = rustix::process::geteuid().as_raw();
            let gid = rustix::process::getegid().as_raw();
            write("setgroups", "deny".into())?;
            write("uid_map", format!("0 {uid} 1\n"))?;
            write("gid_map", format!("0 {gid} 1\n"))?;
        }
    }
    Ok(())
}

/// `/proc/self/fd/N` for `fd`: mounting onto it mounts onto exactly the
/// opened directory, whatever symlinks the image has.
fn fd_path(fd: &OwnedFd) -> String {
    format!("/proc/self/fd/{}", std::os::fd::AsRawFd::as_raw_fd(fd))
}

/// The grandchild, pid 1 of the new pid namespace: mounts, `pivot_root`,
/// confinement, then the command.
fn command(spec: &RunSpec) -> Result<i32, String> {
    rustix::mount::mount_change(
        "/",
        MountPropagationFlags::REC | MountPropagationFlags::PRIVATE,
    )
    .map_err(|e| format!("making mounts private: {e}"))?;
    // The root must be a mount point of its own for pivot_root. kiln
    // created its directory, so its host path is trusted; every path
    // inside it is resolved within it.
    rustix::mount::mount_bind(&spec.rootfs, &spec.rootfs)
        .map_err(|e| format!("binding the root file system: {e}"))?;
    let root = rustix::fs::open(
        &spec.rootfs,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        rustix::fs::Mode::empty(),
    )
    .map_err(|e| format!("opening the root file system: {e}"))?;
    let proc = open_in_root(&root, "/proc", OFlags::PATH)?;
    mount_proc(&fd_path(&proc))?;
    let dev = open_in_root(&root, "/dev", OFlags::PATH)?;
    mount_dev(&root, &fd_path(&dev))?;
    for mount in &spec.mounts {
        let target = open_in_root(&root, &mount.target, OFlags::PATH)?;
        let target_path = fd_path(&target);
        match &mount.source {
            Some(source) => {
                rustix::mount::mount_bind(source, &target_path)
                    .map_err(|e| format!("mounting {}: {e}", mount.target))?;
                if !mount.writable {
                    // The bind is on top of the opened target: reopen it
                    // to name the new mount.
                    let bound = open_in_root(&root, &mount.target, OFlags::PATH)?;
                    rustix::mount::mount_remount(
                        fd_path(&bound),
                        MountFlags::BIND
                            | MountFlags::RDONLY
                            | MountFlags::NOSUID
                            | MountFlags::NODEV,
                        "",
                    )
                    .map_err(|e| format!("making {} read-only: {e}", mount.target))?;
                }
            }
            None => rustix::mount::mount(
                "tmpfs",
                &target_path,
                "tmpfs",
                MountFlags::NOSUID | MountFlags::NODEV,
                c"mode=1777",
            )
            .map_err(|e| format!("mounting a tmpfs at {}: {e}", mount.target))?,
        }
    }
    let _ = rustix::system::sethostname(b"kiln");
    rustix::process::fchdir(&root).map_err(|e| format!("fchdir: {e}"))?;
    rustix::process::pivot_root(".", ".").map_err(|e| format!("pivot_root: {e}"))?;
    rustix::mount::unmount(".", UnmountFlags::DETACH)
        .map_err(|e| format!("detaching the old root: {e}"))?;
    drop((root, proc, dev));
    std::env::set_current_dir("/").map_err(|e| format!("chdir /: {e}"))?;
    match spec.ids {
        IdMap::Shift { base, count } if base != 0 => shifted(spec, base, count),
        _ => confined(spec, !matches!(spec.ids, IdMap::Single)),
    }
}

/// Run the command in a user namespace nested in the setup's, where the
/// image's ids are the shifted range on the host: the command's root is
/// never the host's root, so what the kernel grants uid 0 alone (writing
/// `/proc/sys`, `/proc/sysrq-trigger`, files of the host's root) stays
/// out of reach even if every other fence failed.
fn shifted(spec: &RunSpec, base: u32, count: u32) -> Result<i32, String> {
    let (ready_read, ready_write) = pipe()?;
    let (go_read, go_write) = pipe()?;
    let child = fork_child(|| {
        // SAFETY: this child is single-threaded.
        unsafe { rustix::thread::unshare_unsafe(UnshareFlags::NEWUSER) }
            .map_err(|e| format!("unshare: {e}"))?;
        // Its pid as the mounted /proc names it (the fresh one of the pid
        // namespace, or the pod's, bound).
        let me = std::fs::read_link("/proc/self").map_err(|e| format!("/proc/self: {e}"))?;
        rustix::io::write(&ready_write, me.to_string_lossy().as_bytes())
            .map_err(|e| format!("signalling: {e}"))?;
        let mut byte = [0u8];
        if rustix::io::read(&go_read, &mut byte) != Ok(1) {
            return Err("the id maps of the command's namespace were not written".into());
        }
        // Its parent is the pid namespace's init, whose end ends it.
        become_root(1)?;
        confined(spec, true)
    })?;
    drop((ready_write, go_read));
    let mut pid = [0u8; 32];
    let n = rustix::io::read(&ready_read, &mut pid).map_err(|e| format!("reading: {e}"))?;
    if n == 0 {
        return wait(child);
    }
    let pid = String::from_utf8_lossy(&pid[..n]).into_owned();
    for file in ["uid_map", "gid_map"] {
        write_proc(&pid, file, &format!("0 {base} {count}\n"))?;
    }
    rustix::io::write(&go_write, b"g").map_err(|e| format!("signalling: {e}"))?;
    wait(child)
}

/// The last steps in the command's own process: a session of its own (no
/// controlling terminal to push input into), the working directory,
/// Docker's capabilities, the user, Landlock, seccomp, the command.
fn confined(spec: &RunSpec, groups: bool) -> Result<i32, String> {
    rustix::process::setsid().map_err(|e| format!("setsid: {e}"))?;
    exec::enter_workdir(&spec.workdir)?;
    confine::capabilities(Tier::Namespaces)?;
    exec::become_user(spec, groups)?;
    confine::landlock(Tier::Namespaces, None, &[])?;
    confine::seccomp(Tier::Namespaces, true)?;
    Ok(exec::exec(&spec.args, &spec.env))
}

/// Root of the current user namespace, and still ended with `parent`
/// (changing credentials clears the parent-death signal).
fn become_root(parent: libc::pid_t) -> Result<(), String> {
    let root_gid = rustix::process::Gid::from_raw(0);
    let root_uid = rustix::process::Uid::from_raw(0);
    rustix::thread::set_thread_res_gid(root_gid, root_gid, root_gid)
        .map_err(|e| format!("setresgid in the namespace: {e}"))?;
    rustix::thread::set_thread_res_uid(root_uid, root_uid, root_uid)
        .map_err(|e| format!("setresuid in the namespace: {e}"))?;
    super::die_with_parent(parent);
    Ok(())
}

/// A pipe for the handshakes between the helper's processes; closed on
/// exec, so the command never holds it.
fn pipe() -> Result<(OwnedFd, OwnedFd), String> {
    rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC).map_err(|e| format!("pipe: {e}"))
}

/// Write `text` to `/proc/PID/FILE`.
fn write_proc(pid: &str, file: &str, text: &str) -> Result<(), String> {
    std::fs::write(format!("/proc/{pid}/{file}"), text.as_bytes())
        .map_err(|e| format!("writing {file} ({}): {e}", text.trim()))
}

/// A fresh `/proc` for the new pid namespace, or, where the outer `/proc`
/// is masked (the kernel then refuses a fresh one), the outer one bound
/// read-only with its masks.
fn mount_proc(target: &str) -> Result<(), String> {
    let flags = MountFlags::NOSUID | MountFlags::NODEV | MountFlags::NOEXEC;
    if rustix::mount::mount("proc", target, "proc", flags, None).is_ok() {
        return Ok(());
    }
    rustix::mount::mount_bind_recursive("/proc", target)
        .map_err(|e| format!("binding /proc: {e}"))?;
    let _ = rustix::mount::mount_remount(target, MountFlags::BIND | MountFlags::RDONLY | flags, "");
    Ok(())
}

/// `/dev` as a small tmpfs with the usual device nodes bound from the
/// host, the standard links, and `/dev/shm` and `/dev/pts` directories.
fn mount_dev(root: &OwnedFd, target: &str) -> Result<(), String> {
    rustix::mount::mount(
        "tmpfs",
        target,
        "tmpfs",
        MountFlags::NOSUID | MountFlags::NOEXEC,
        c"mode=755,size=65536k",
    )
    .map_err(|e| format!("mounting /dev: {e}"))?;
    let dev = open_in_root(root, "/dev", OFlags::RDONLY | OFlags::DIRECTORY)?;
    for name in DEVICES {
        let node = rustix::fs::openat(
            &dev,
            name,
            OFlags::CREATE | OFlags::WRONLY | OFlags::CLOEXEC,
            rustix::fs::Mode::from_raw_mode(0o666),
        )
        .map_err(|e| format!("/dev/{name}: {e}"))?;
        let node_path = fd_path(&node);
        // A device the host lacks (no /dev/tty in a pod) is left out.
        if rustix::mount::mount_bind(format!("/dev/{name}"), &node_path).is_err() {
            let _ = rustix::fs::unlinkat(&dev, name, rustix::fs::AtFlags::empty());
        }
    }
    for (link, target) in [
        ("fd", "/proc/self/fd"),
        ("stdin", "/proc/self/fd/0"),
        ("stdout", "/proc/self/fd/1"),
        ("stderr", "/proc/self/fd/2"),
        ("ptmx", "pts/ptmx"),
    ] {
        rustix::fs::symlinkat(target, &dev, link).map_err(|e| format!("/dev/{link}: {e}"))?;
    }
    for dir in ["shm", "pts"] {
        rustix::fs::mkdirat(&dev, dir, rustix::fs::Mode::from_raw_mode(0o1777))
            .map_err(|e| format!("/dev/{dir}: {e}"))?;
    }
    let shm = open_in_root(root, "/dev/shm", OFlags::PATH)?;
    let _ = rustix::mount::mount(
        "shm",
        fd_path(&shm),
        "tmpfs",
        MountFlags::NOSUID | MountFlags::NODEV,
        c"mode=1777,size=65536k",
    );
    Ok(())
}
