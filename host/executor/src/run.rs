//! Running one command from kiln's side: snapshot the root, start the
//! helper with the spec, stream its output, stop it at the deadline, and
//! write what changed as a layer tar.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Instant;

use crate::helper::{HELPER_ARG, SETUP_FAILED, error_file, group_file};
use crate::rootfs::{Changes, Rootfs};
use crate::spec::{MountSpec, Network, RunSpec};
use crate::tier::Tier;
use crate::user;

/// What to run, as the plugin asked and the host's policy allowed.
#[derive(Debug, Clone)]
pub struct Request {
    /// The program and its arguments.
    pub args: Vec<String>,
    /// `NAME=VALUE` pairs.
    pub env: Vec<String>,
    /// Absolute working directory inside the image.
    pub workdir: String,
    /// `USER` as written; empty for root.
    pub user: String,
    /// The network the command gets.
    pub network: Network,
    /// Mounts for this command only.
    pub mounts: Vec<MountSpec>,
    /// File times in the layer are clamped to this.
    pub epoch: Option<u64>,
}

/// Where the helper comes from and how it isolates.
#[derive(Debug, Clone)]
pub struct Isolation {
    /// The tier to use (probed).
    pub tier: Tier,
    /// The kiln binary, started as the helper.
    pub helper: PathBuf,
    /// proot, for tier C.
    pub proot: Option<PathBuf>,
}

/// Which of the command's streams a line came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    /// Standard output.
    Stdout,
    /// Standard error.
    Stderr,
}

/// A finished command.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// 0 for success, the command's code, or 128+N for signal N.
    pub exit_code: i32,
    /// What it changed, as written to the layer tar.
    pub changes: Changes,
}

/// Why a command could not be run (its own failure is an [`Outcome`]).
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// The sandbox could not be set up.
    #[error("RUN could not be isolated ({tier}): {reason}")]
    Setup {
        /// The tier tried.
        tier: &'static str,
        /// Why.
        reason: String,
    },
    /// The step's time ran out while the command ran.
    #[error("RUN was stopped: the step's time limit ran out")]
    Timeout,
    /// The command printed more than the step's log may hold.
    #[error("RUN was stopped: it printed more than the step's log may hold")]
    LogBudget,
    /// Reading or writing the root file system.
    #[error(transparent)]
    Rootfs(#[from] crate::error::Error),
    /// Starting or talking to the helper.
    #[error("RUN helper: {0}")]
    Helper(String),
}

/// Run `request` in `rootfs` and write what it changed to `diff`. Lines
/// the command prints go to `output` as they come (at most [`MAX_LINE`]
/// bytes each); when `output` answers false (the step's log budget is
/// spent) the command is stopped.
pub fn run(
    rootfs: &mut Rootfs,
    isolation: &Isolation,
    request: &Request,
    deadline: Instant,
    diff: impl Write,
    mut output: impl FnMut(Stream, &str) -> bool,
) -> Result<Outcome, RunError> {
    let user = user::resolve(rootfs.path(), &request.user).map_err(|reason| RunError::Setup {
        tier: isolation.tier.name(),
        reason,
    })?;
    let scratch = tempfile_dir(rootfs.path())?;
    let mut env = request.env.clone();
    if !env.iter().any(|e| e.starts_with("HOME=")) {
        env.push(format!("HOME={}", user.home));
    }
    let spec = RunSpec {
        tier: isolation.tier,
        rootfs: rootfs.path().to_path_buf(),
        ids: *rootfs.ids(),
        args: request.args.clone(),
        env,
        workdir: request.workdir.clone(),
        uid: user.uid,
        gid: user.gid,
        groups: user.groups,
        network: request.network,
        mounts: request.mounts.clone(),
        scratch: scratch.clone(),
        proot: isolation.proot.clone(),
    };
    let skip = skipped(&request.mounts);
    let before = rootfs.snapshot(&skip)?;
    let result = run_helper(&spec, isolation, deadline, &mut output);
    let _ = std::fs::remove_dir_all(&scratch);
    let exit_code = result?;
    let changes = rootfs.diff(&before, &skip, request.epoch, diff)?;
    Ok(Outcome { exit_code, changes })
}

/// Paths whose contents never reach a layer: the kernel's file systems and
/// the command's mounts.
fn skipped(mounts: &[MountSpec]) -> Vec<String> {
    let mut skip: Vec<String> = ["proc", "sys", "dev"].map(String::from).to_vec();
    skip.extend(
        mounts
            .iter()
            .map(|m| m.target.trim_matches('/').to_owned())
            .filter(|t| !t.is_empty()),
    );
    skip
}

/// A fresh private directory beside the root for the helper.
fn tempfile_dir(root: &Path) -> Result<PathBuf, RunError> {
    let parent = root.parent().unwrap_or(Path::new("/tmp"));
    for attempt in 0..100u32 {
        // Named after the root: whoever sweeps the root's leftovers
        // sweeps these too.
        let name = root.file_name().unwrap_or_default().to_string_lossy();
        let dir = parent.join(format!("{name}-scratch-{attempt}"));
        match std::fs::create_dir(&dir) {
            Ok(()) => {
                let _ = std::fs::set_permissions(
                    &dir,
                    std::os::unix::fs::PermissionsExt::from_mode(0o700),
                );
                return Ok(dir);
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(RunError::Helper(format!("{}: {e}", dir.display()))),
        }
    }
    Err(RunError::Helper(
        "no scratch directory could be created".into(),
    ))
}

/// The longest line of a command's output kept whole; longer ones are cut
/// into pieces this long, so that a line without end cannot fill memory.
pub const MAX_LINE: u64 = 64 * 1024;

/// Kill the helper `pid` and, where the command shares the host's pid
/// namespace, its process group (tiers B and C).
fn stop(pid: u32, spec: &RunSpec) {
    // SAFETY: signalling our own child, which is not reaped until the
    // waiter thread sees it end, and a group of processes the helper made.
    unsafe { libc::kill(pid as libc::pid_t, libc::SIGKILL) };
    if let Some(group) = std::fs::read_to_string(group_file(spec))
        .ok()
        .and_then(|g| g.trim().parse::<libc::pid_t>().ok())
        .filter(|g| *g > 1)
    {
        // SAFETY: as above.
        unsafe { libc::kill(-group, libc::SIGKILL) };
    }
}

/// What the helper's threads report.
enum Event {
    /// A line the command printed.
    Line(Stream, String),
    /// The helper ended.
    Exited(std::io::Result<std::process::ExitStatus>),
}

/// Start the helper, relay its output, wait for it until `deadline`.
fn run_helper(
    spec: &RunSpec,
    isolation: &Isolation,
    deadline: Instant,
    output: &mut impl FnMut(Stream, &str) -> bool,
) -> Result<i32, RunError> {
    let spec_path = spec.scratch.join("spec.json");
    let json = serde_json::to_vec(spec).map_err(|e| RunError::Helper(e.to_string()))?;
    std::fs::write(&spec_path, json)
        .map_err(|e| RunError::Helper(format!("{}: {e}", spec_path.display())))?;
    let mut child = Command::new(&isolation.helper)
        .arg(HELPER_ARG)
        .arg(&spec_path)
        .env_clear()
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| RunError::Helper(format!("starting {}: {e}", isolation.helper.display())))?;
    let (send, receive) = mpsc::channel();
    for (stream, pipe) in [
        (
            Stream::Stdout,
            child
                .stdout
                .take()
                .map(|s| Box::new(s) as Box<dyn std::io::Read + Send>),
        ),
        (
            Stream::Stderr,
            child
                .stderr
                .take()
                .map(|s| Box::new(s) as Box<dyn std::io::Read + Send>),
        ),
    ]
    .into_iter()
    .filter_map(|(stream, pipe)| pipe.map(|p| (stream, p)))
    {
        let send = send.clone();
        std::thread::spawn(move || {
            let mut reader = BufReader::new(pipe);
            let mut line = Vec::new();
            while std::io::Read::take(&mut reader, MAX_LINE)
                .read_until(b'\n', &mut line)
                .is_ok_and(|n| n > 0)
            {
                let text = String::from_utf8_lossy(&line)
                    .trim_end_matches(['\n', '\r'])
                    .to_owned();
                if send.send(Event::Line(stream, text)).is_err() {
                    break;
                }
                line.clear();
            }
        });
    }
    // The helper's end is the command's end, even if something the
    // command started still holds its output open.
    let pid = child.id();
    std::thread::spawn(move || {
        let _ = send.send(Event::Exited(child.wait()));
    });
    let status = loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match receive.recv_timeout(left) {
            Ok(Event::Line(stream, line)) => {
                if !output(stream, &line) {
                    stop(pid, spec);
                    return Err(RunError::LogBudget);
                }
            }
            Ok(Event::Exited(status)) => break status,
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                return Err(RunError::Helper("the helper's waiter ended".into()));
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {
                stop(pid, spec);
                return Err(RunError::Timeout);
            }
        }
    }
    .map_err(|e| RunError::Helper(e.to_string()))?;
    // What the command printed last may still be in the pipes; a
    // process that keeps writing is not waited for.
    let drained = Instant::now() + std::time::Duration::from_secs(1);
    while Instant::now() < drained
        && let Ok(Event::Line(stream, line)) =
            receive.recv_timeout(std::time::Duration::from_millis(100))
    {
        if !output(stream, &line) {
            return Err(RunError::LogBudget);
        }
    }
    let code = status.code().unwrap_or_else(|| {
        128 + std::os::unix::process::ExitStatusExt::signal(&status).unwrap_or(0)
    });
    if code == SETUP_FAILED
        && let Ok(reason) = std::fs::read_to_string(error_file(spec))
        && !reason.is_empty()
    {
        return Err(RunError::Setup {
            tier: isolation.tier.name(),
            reason,
        });
    }
    Ok(code)
}
