//! The helper process: kiln runs itself again (`kiln __kiln-run SPEC`) to
//! set up the sandbox and execute one command.
//!
//! A separate process because the setup needs a single-threaded process
//! (`unshare(CLONE_NEWUSER)` refuses threaded callers, and `fork` in a
//! threaded process allows only async-signal-safe work), and kiln runs
//! tokio. The helper reads its [`RunSpec`], forks the command's process
//! for its tier, relays its exit status as its own, and reports a setup
//! failure in the spec's error file with exit status [`SETUP_FAILED`].

mod chroot;
mod exec;
pub use exec::DEFAULT_PATH;
mod namespaces;
mod ptrace;
mod relay;
mod stubs;

use std::path::Path;

use crate::spec::RunSpec;
use crate::tier::Tier;

/// The argument that makes the kiln binary act as the helper.
pub const HELPER_ARG: &str = "__kiln-run";

/// The helper's exit status when the sandbox could not be set up (the
/// reason is in the error file); podman and Docker use 125 alike.
pub const SETUP_FAILED: i32 = 125;

/// The helper's `main`: run the spec at `spec_path`, return the exit
/// status to leave with.
pub fn main(spec_path: &Path) -> i32 {
    let spec: RunSpec = match std::fs::read(spec_path)
        .map_err(|e| e.to_string())
        .and_then(|bytes| serde_json::from_slice(&bytes).map_err(|e| e.to_string()))
    {
        Ok(spec) => spec,
        Err(e) => {
            eprintln!(
                "kiln: cannot read the RUN spec {}: {e}",
                spec_path.display()
            );
            return SETUP_FAILED;
        }
    };
    let error_file = error_file(&spec);
    // Opened now: a child that fails after pivot_root or chroot can no
    // longer name the file, but still holds this descriptor.
    if let Ok(file) = std::fs::File::create(&error_file) {
        let _ = SETUP_ERRORS.set(file);
    }
    let result = match spec.tier {
        Tier::Namespaces => namespaces::run(&spec),
        Tier::ChrootLandlock => chroot::run(&spec),
        Tier::Ptrace => ptrace::run(&spec),
    };
    match result {
        Ok(status) => status,
        Err(why) => {
            report(&why);
            SETUP_FAILED
        }
    }
}

/// The helper's setup error file, open for every process it forks.
static SETUP_ERRORS: std::sync::OnceLock<std::fs::File> = std::sync::OnceLock::new();

/// Say why the sandbox could not be set up (the first reason wins).
fn report(why: &str) {
    if let Some(mut file) = SETUP_ERRORS.get()
        && file.metadata().is_ok_and(|m| m.len() == 0)
    {
        let _ = std::io::Write::write_all(&mut file, why.as_bytes());
    }
}

/// Where the helper writes the process group of a command that shares
/// the host's pid namespace (tiers B and C), so that kiln can end it and
/// whatever it left running when the step's time runs out.
pub fn group_file(spec: &RunSpec) -> std::path::PathBuf {
    spec.scratch.join("group")
}

/// The command `child` leads its own process group: say so, run until it
/// ends, then end what it left behind (a daemon it started would
/// otherwise outlive the build and hold its output open).
fn wait_group(spec: &RunSpec, child: libc::pid_t) -> Result<i32, String> {
    let _ = std::fs::write(group_file(spec), child.to_string());
    let status = wait(child);
    // SAFETY: signalling the process group the child created.
    unsafe { libc::kill(-child, libc::SIGKILL) };
    end_descendants();
    status
}

/// Adopt every process the command leaves behind: with this, one that
/// left the command's process group (`setsid`) becomes the helper's child
/// when its parent ends, and [`end_descendants`] ends it.
fn adopt_orphans() {
    // SAFETY: prctl with constant arguments.
    unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1) };
}

/// Kill and reap every child the helper has (the command's leftovers it
/// adopted), until none is left.
fn end_descendants() {
    for _ in 0..64 {
        let children = std::fs::read_to_string(format!(
            "/proc/self/task/{}/children",
            rustix::thread::gettid().as_raw_nonzero()
        ))
        .unwrap_or_default();
        let pids: Vec<libc::pid_t> = children
            .split_whitespace()
            .filter_map(|p| p.parse().ok())
            .collect();
        if pids.is_empty() {
            return;
        }
        for pid in pids {
            // SAFETY: our own (adopted) child.
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
        let mut status = 0;
        // SAFETY: reaping our own children.
        while unsafe { libc::waitpid(-1, &mut status, libc::WNOHANG) } > 0 {}
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
}

/// Make the calling process the leader of a new session and process
/// group: killed as a group when it ends, and without kiln's controlling
/// terminal (whose input a command could otherwise push keys into).
fn own_group() -> Result<(), String> {
    rustix::process::setsid()
        .map(drop)
        .map_err(|e| format!("setsid: {e}"))
}

/// Where the helper writes why the sandbox could not be set up.
pub fn error_file(spec: &RunSpec) -> std::path::PathBuf {
    spec.scratch.join("setup-error")
}

/// Wait for `child` and turn its end into an exit status: its own code, or
/// 128+N for signal N, as shells report it.
fn wait(child: libc::pid_t) -> Result<i32, String> {
    let mut status = 0;
    loop {
        // SAFETY: waiting for our own child.
        let rc = unsafe { libc::waitpid(child, &mut status, 0) };
        if rc == child {
            break;
        }
        let error = std::io::Error::last_os_error();
        if error.kind() != std::io::ErrorKind::Interrupted {
            return Err(format!("waitpid: {error}"));
        }
    }
    Ok(if libc::WIFEXITED(status) {
        libc::WEXITSTATUS(status)
    } else {
        128 + libc::WTERMSIG(status)
    })
}

/// Be killed when the process that forked this one (`parent`) ends;
/// called again after changing credentials, which clears it. If the
/// parent has already gone, end now.
fn die_with_parent(parent: libc::pid_t) {
    // SAFETY: prctl with constant arguments; getppid cannot fail.
    unsafe {
        libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
        if libc::getppid() != parent {
            libc::_exit(SETUP_FAILED);
        }
    }
}

/// Fork; the child runs `child` and exits with what it returns (a setup
/// error is written to the error file first). The child dies with its
/// parent, so killing the helper ends the command.
fn fork_child(child: impl FnOnce() -> Result<i32, String>) -> Result<libc::pid_t, String> {
    // SAFETY: the helper is single-threaded when it forks.
    match unsafe { libc::fork() } {
        -1 => Err(format!("fork: {}", std::io::Error::last_os_error())),
        0 => {
            // SAFETY: prctl with constant arguments.
            unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) };
            let code = match child() {
                Ok(code) => code,
                Err(why) => {
                    report(&why);
                    SETUP_FAILED
                }
            };
            // SAFETY: leave without unwinding into the parent's state.
            unsafe { libc::_exit(code) }
        }
        pid => Ok(pid),
    }
}
