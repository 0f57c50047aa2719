//! What the host prints: step logs, progress and results, for humans or as
//! JSON lines, with every secret masked.
//!
//! Everything a plugin says reaches the terminal through [`StepLog`], which
//! masks secrets and enforces the step's output budget before handing the
//! line to a [`Reporter`].

use std::io::Write;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, atomic::AtomicBool};

use serde::Serialize;

/// Severity of a log line, from the plugin or from the host.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Level {
    /// Very detailed diagnostics.
    Trace,
    /// Diagnostics.
    Debug,
    /// Normal progress.
    Info,
    /// Something unexpected that did not stop the step.
    Warn,
    /// A failure.
    Error,
}

impl Level {
    fn label(self) -> &'static str {
        match self {
            Level::Trace => "trace",
            Level::Debug => "debug",
            Level::Info => "info",
            Level::Warn => "warn",
            Level::Error => "error",
        }
    }
}

/// Where step events go. Implementations receive text that is already
/// masked, so they may print it as it is.
pub trait Reporter: Send + Sync {
    /// One log line of `step`.
    fn log(&self, step: &str, level: Level, message: &str, fields: &[(String, String)]);
    /// Progress of `task` in `step`.
    fn progress(&self, step: &str, task: &str, done: u64, total: Option<u64>);
}

/// Human output on stderr: `[step] message key=value`, progress as a line
/// per tenth of the work so CI logs stay readable.
pub struct HumanReporter {
    verbose: bool,
    last_tenth: Mutex<Vec<(String, u64)>>,
}

impl HumanReporter {
    /// A reporter that hides `debug` and `trace` lines unless `verbose`.
    pub fn new(verbose: bool) -> Self {
        HumanReporter {
            verbose,
            last_tenth: Mutex::new(Vec::new()),
        }
    }
}

impl Reporter for HumanReporter {
    fn log(&self, step: &str, level: Level, message: &str, fields: &[(String, String)]) {
        if level < Level::Info && !self.verbose {
            return;
        }
        let mut line = String::new();
        line.push_str(&format!("[{step}] "));
        if level != Level::Info {
            line.push_str(&format!("{}: ", level.label()));
        }
        line.push_str(message);
        for (key, value) in fields {
            line.push_str(&format!(" {key}={value}"));
        }
        line.push('\n');
        // A closed stderr must not take the step down with it.
        let _ = std::io::stderr().lock().write_all(line.as_bytes());
    }

    fn progress(&self, step: &str, task: &str, done: u64, total: Option<u64>) {
        let Some(total) = total.filter(|t| *t > 0) else {
            return;
        };
        let tenth = done.min(total) * 10 / total;
        let key = format!("{step}\0{task}");
        {
            let mut seen = self.last_tenth.lock().unwrap_or_else(|e| e.into_inner());
            match seen.iter_mut().find(|(k, _)| *k == key) {
                Some((_, last)) if *last == tenth => return,
                Some((_, last)) => *last = tenth,
                None => seen.push((key, tenth)),
            }
        }
        let line = format!("[{step}] {task}: {}% ({done}/{total})\n", tenth * 10);
        let _ = std::io::stderr().lock().write_all(line.as_bytes());
    }
}

/// One JSON object per line on stdout, for machines.
pub struct JsonReporter;

#[derive(Serialize)]
#[serde(tag = "event", rename_all = "lowercase")]
enum JsonEvent<'a> {
    Log {
        step: &'a str,
        level: Level,
        message: &'a str,
        #[serde(skip_serializing_if = "<[_]>::is_empty")]
        fields: &'a [(String, String)],
    },
    Progress {
        step: &'a str,
        task: &'a str,
        done: u64,
        total: Option<u64>,
    },
}

impl JsonReporter {
    /// Print any serialisable event as one line.
    pub fn emit(value: &impl Serialize) {
        let mut line = serde_json::to_string(value).expect("events serialise");
        line.push('\n');
        let _ = std::io::stdout().lock().write_all(line.as_bytes());
    }
}

impl Reporter for JsonReporter {
    fn log(&self, step: &str, level: Level, message: &str, fields: &[(String, String)]) {
        Self::emit(&JsonEvent::Log {
            step,
            level,
            message,
            fields,
        });
    }

    fn progress(&self, step: &str, task: &str, done: u64, total: Option<u64>) {
        Self::emit(&JsonEvent::Progress {
            step,
            task,
            done,
            total,
        });
    }
}

/// Replaces every secret value in text with `[masked]`.
///
/// Longer secrets are replaced first so a secret that contains another is
/// not left half-visible.
#[derive(Debug, Clone, Default)]
pub struct SecretMask {
    values: Vec<String>,
}

/// What a masked secret is replaced with.
pub const MASK: &str = "[masked]";

impl SecretMask {
    /// Mask `value` from now on. Empty values are ignored: masking them would
    /// garble every line.
    pub fn add(&mut self, value: &str) {
        if !value.is_empty() && !self.values.iter().any(|v| v == value) {
            self.values.push(value.to_owned());
            self.values.sort_by_key(|v| std::cmp::Reverse(v.len()));
        }
    }

    /// `text` with every secret replaced.
    pub fn apply(&self, text: &str) -> String {
        let mut out = text.to_owned();
        for value in &self.values {
            if out.contains(value.as_str()) {
                out = out.replace(value.as_str(), MASK);
            }
        }
        out
    }
}

/// Default cap on what one step may print (logs, stdout and stderr
/// together): GitLab's default job log limit, 4 MiB. A hostile or broken
/// plugin printing gigabytes would otherwise fill CI logs.
pub const DEFAULT_LOG_LIMIT: u64 = 4 << 20;

/// The step's log volume went past its limit.
#[derive(Debug, thiserror::Error)]
#[error("step printed more than its log limit of {limit} bytes")]
pub struct LogLimitExceeded {
    /// The limit in bytes.
    pub limit: u64,
}

/// Longest line shown; longer lines are cut (after masking, so a cut can
/// never expose part of a secret).
const MAX_SHOWN_LINE: usize = 16 * 1024;

fn shorten(mut line: String) -> String {
    if line.len() > MAX_SHOWN_LINE {
        let mut cut = MAX_SHOWN_LINE;
        while !line.is_char_boundary(cut) {
            cut -= 1;
        }
        let dropped = line.len() - cut;
        line.truncate(cut);
        line.push_str(&format!(" … ({dropped} more bytes)"));
    }
    line
}

/// The log channel of one running step: masks secrets, counts bytes against
/// the step's budget, and forwards to the reporter.
pub struct StepLog {
    step: String,
    reporter: Arc<dyn Reporter>,
    mask: SecretMask,
    limit: u64,
    used: AtomicU64,
    exceeded: AtomicBool,
}

impl StepLog {
    /// A log channel for `step`, masking `mask` and allowing `limit` bytes.
    pub fn new(step: &str, reporter: Arc<dyn Reporter>, mask: SecretMask, limit: u64) -> Self {
        StepLog {
            step: step.to_owned(),
            reporter,
            mask,
            limit,
            used: AtomicU64::new(0),
            exceeded: AtomicBool::new(false),
        }
    }

    /// The step name lines are prefixed with.
    pub fn step(&self) -> &str {
        &self.step
    }

    /// The secrets this channel masks; used to mask error messages too.
    pub fn mask(&self) -> &SecretMask {
        &self.mask
    }

    /// The budget in bytes.
    pub fn limit(&self) -> u64 {
        self.limit
    }

    /// Whether the plugin went past its budget at any point.
    pub fn limit_exceeded(&self) -> bool {
        self.exceeded.load(Ordering::Relaxed)
    }

    /// Charge `bytes` of plugin output to the budget.
    pub fn charge(&self, bytes: u64) -> Result<(), LogLimitExceeded> {
        let used = self.used.fetch_add(bytes, Ordering::Relaxed) + bytes;
        if used > self.limit {
            if !self.exceeded.swap(true, Ordering::Relaxed) {
                self.host(
                    Level::Error,
                    &format!(
                        "output limit of {} bytes reached; stopping the step",
                        self.limit
                    ),
                );
            }
            return Err(LogLimitExceeded { limit: self.limit });
        }
        Ok(())
    }

    /// A line from the plugin: charged to the budget, masked, reported.
    pub fn plugin(
        &self,
        level: Level,
        message: &str,
        fields: &[(String, String)],
    ) -> Result<(), LogLimitExceeded> {
        let size = message.len() + fields.iter().map(|(k, v)| k.len() + v.len()).sum::<usize>();
        self.charge(size as u64)?;
        let fields: Vec<(String, String)> = fields
            .iter()
            .map(|(k, v)| (self.mask.apply(k), self.mask.apply(v)))
            .collect();
        let message = shorten(self.mask.apply(message));
        self.reporter.log(&self.step, level, &message, &fields);
        Ok(())
    }

    /// A line from the host about this step (denials, limits); masked, not
    /// charged.
    pub fn host(&self, level: Level, message: &str) {
        self.reporter
            .log(&self.step, level, &self.mask.apply(message), &[]);
    }

    /// Progress from the plugin.
    pub fn progress(
        &self,
        task: &str,
        done: u64,
        total: Option<u64>,
    ) -> Result<(), LogLimitExceeded> {
        self.charge(task.len() as u64 + 16)?;
        self.reporter
            .progress(&self.step, &self.mask.apply(task), done, total);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks_longest_secret_first() {
        let mut mask = SecretMask::default();
        mask.add("abc");
        mask.add("abcdef");
        mask.add("");
        assert_eq!(mask.apply("x abcdef y abc z"), "x [masked] y [masked] z");
        assert_eq!(mask.apply("nothing here"), "nothing here");
    }

    struct Count(AtomicU64);
    impl Reporter for Count {
        fn log(&self, _: &str, _: Level, _: &str, _: &[(String, String)]) {
            self.0.fetch_add(1, Ordering::Relaxed);
        }
        fn progress(&self, _: &str, _: &str, _: u64, _: Option<u64>) {}
    }

    #[test]
    fn budget_stops_a_flood() {
        let reporter = Arc::new(Count(AtomicU64::new(0)));
        let log = StepLog::new("s", reporter.clone(), SecretMask::default(), 10);
        assert!(log.plugin(Level::Info, "12345", &[]).is_ok());
        assert!(log.plugin(Level::Info, "123456", &[]).is_err());
        assert!(log.limit_exceeded());
        // One plugin line plus the host's one notice.
        assert_eq!(reporter.0.load(Ordering::Relaxed), 2);
    }
}
