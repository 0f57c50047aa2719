//! `run:` steps: host shell commands, for work that cannot be sandboxed
//! (`mvn package`). They run like GitLab's `script:`: one `sh -e` per step
//! in the project directory, each command echoed as `$ command`, with the
//! pipeline's variables in the environment. Their output goes through the
//! step's log, so secrets are masked here too.

use std::path::Path;
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::process::Command;

use kiln_runtime::log::StepLog;
use kiln_runtime::report::Level;

/// Quote `text` for a POSIX shell.
fn quote(text: &str) -> String {
    format!("'{}'", text.replace('\'', r"'\''"))
}

/// The script `sh -e` runs: every command echoed, then run.
pub fn script(commands: &[String]) -> String {
    let mut script = String::new();
    for command in commands {
        script.push_str(&format!("printf '$ %s\\n' {}\n{command}\n", quote(command)));
    }
    script
}

/// Kills the whole process group when dropped, so a cancelled or timed-out
/// step leaves no `mvn` running behind it.
struct GroupGuard(Option<u32>);

impl Drop for GroupGuard {
    fn drop(&mut self) {
        if let Some(pid) = self.0
            && let Ok(pid) = i32::try_from(pid)
        {
            // SAFETY: plain syscall; a stale group id only fails with ESRCH.
            unsafe {
                libc::kill(-pid, libc::SIGKILL);
            }
        }
    }
}

/// Run `commands` in `dir` with `env` added to kiln's environment.
/// Returns a one-line reason on failure.
pub async fn run(
    commands: &[String],
    dir: &Path,
    env: impl Iterator<Item = (String, String)>,
    timeout: Option<Duration>,
    log: Arc<StepLog>,
) -> Result<(), String> {
    let mut child = Command::new("sh")
        .arg("-e")
        .arg("-c")
        .arg(script(commands))
        .current_dir(dir)
        .envs(env)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| format!("cannot start sh: {e}"))?;
    // Dropped on every way out of this function, including cancellation.
    let _group = GroupGuard(child.id());
    let stdout = forward(
        child.stdout.take().expect("piped"),
        log.clone(),
        Level::Info,
    );
    let stderr = forward(
        child.stderr.take().expect("piped"),
        log.clone(),
        Level::Warn,
    );

    let waited = async {
        let (status, _, _) = tokio::join!(child.wait(), stdout, stderr);
        status
    };
    let status = match timeout {
        Some(limit) => match tokio::time::timeout(limit, waited).await {
            Ok(status) => status,
            Err(_) => {
                return Err(format!(
                    "timed out after {} (raise it with allow.timeout)",
                    humantime::format_duration(limit)
                ));
            }
        },
        None => waited.await,
    }
    .map_err(|e| format!("waiting for sh: {e}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(match status.code() {
            Some(code) => format!("a command exited with status {code}"),
            None => "the shell was killed by a signal".to_owned(),
        })
    }
}

async fn forward(stream: impl AsyncRead + Unpin, log: Arc<StepLog>, level: Level) {
    // Bytes, not UTF-8 lines: a tool printing invalid UTF-8 must not stop
    // the forwarding (and then die of SIGPIPE).
    let mut reader = BufReader::new(stream);
    let mut line = Vec::new();
    loop {
        line.clear();
        match reader.read_until(b'\n', &mut line).await {
            Ok(0) | Err(_) => break,
            Ok(_) => {
                let text = String::from_utf8_lossy(&line);
                // Host commands are not budgeted: only masked.
                log.host(level, text.trim_end_matches(['\n', '\r']));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quotes_commands_for_echo() {
        assert_eq!(quote("it's"), r"'it'\''s'");
        let script = script(&["echo a".into(), "ls 'x y'".into()]);
        assert!(script.contains("printf '$ %s\\n' 'echo a'\necho a\n"));
    }
}
