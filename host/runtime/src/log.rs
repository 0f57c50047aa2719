//! The log channel of a running step: [`StepLog`] masks secrets, cuts long
//! lines and charges every byte against the step's output budget before a
//! [`Reporter`] sees it. A security mechanism as much as a display one: a
//! plugin can neither leak a secret nor flood the CI log through it.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use kiln_grant::SecretMask;

use crate::report::{Level, Reporter};

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

/// Longest field key or value shown.
const MAX_SHOWN_FIELD: usize = 1024;

/// Most fields shown per log record.
pub const MAX_FIELDS: usize = 32;

/// What a record costs the budget beyond its text: the step name, level
/// and separators every printed line carries.
const RECORD_COST: usize = 16;

/// What a field costs beyond its key and value (`key=value` and a space).
const FIELD_COST: usize = 4;

/// `line` cut to at most `max` bytes (on a character boundary), saying how
/// much was dropped.
fn shorten(mut line: String, max: usize) -> String {
    if line.len() > max {
        let mut cut = max;
        while !line.is_char_boundary(cut) {
            cut -= 1;
        }
        let dropped = line.len() - cut;
        line.truncate(cut);
        line.push_str(&format!(" … ({dropped} more bytes)"));
    }
    line
}

/// `text` with each guest path of `pairs` (longest first; whole path
/// components only: not `/workspaces`, not `/x/workspace`) replaced by its
/// host path, in one pass, so a replacement is never replaced again.
fn replace_paths(text: &str, pairs: &[(String, String)]) -> String {
    let part_of_path = |c: char| c.is_alphanumeric() || matches!(c, '_' | '-' | '.' | '/');
    let mut out = String::with_capacity(text.len());
    let mut at = 0;
    let mut copied = 0;
    while at < text.len() {
        let before = text[..at].chars().next_back();
        let found = (!before.is_some_and(part_of_path))
            .then(|| {
                pairs.iter().find(|(guest, _)| {
                    text[at..].starts_with(guest.as_str())
                        && text[at + guest.len()..]
                            .chars()
                            .next()
                            .is_none_or(|c| c == '/' || !part_of_path(c))
                })
            })
            .flatten();
        match found {
            Some((guest, host)) => {
                out.push_str(&text[copied..at]);
                out.push_str(host);
                at += guest.len();
                copied = at;
            }
            None => at += text[at..].chars().next().map_or(1, char::len_utf8),
        }
    }
    out.push_str(&text[copied..]);
    out
}

/// The log channel of one running step: masks secrets, counts bytes against
/// the step's budget, and forwards to the reporter.
pub struct StepLog {
    step: String,
    reporter: Arc<dyn Reporter>,
    mask: SecretMask,
    /// Guest directories and the host directories behind them, longest
    /// guest path first.
    paths: Vec<(String, String)>,
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
            paths: Vec::new(),
            limit,
            used: AtomicU64::new(0),
            exceeded: AtomicBool::new(false),
        }
    }

    /// Show the host directory wherever a line names a guest one (`pairs`
    /// of guest and host paths): a plugin only knows `/workspace`, the
    /// user only their own directories.
    pub fn with_host_paths(mut self, mut pairs: Vec<(String, String)>) -> Self {
        pairs.retain(|(guest, host)| guest != host && !guest.is_empty());
        pairs.sort_by_key(|(guest, _)| std::cmp::Reverse(guest.len()));
        self.paths = pairs;
        self
    }

    /// `text` from the plugin as it is shown: guest paths as host paths,
    /// then secrets masked (so no secret survives in a host path).
    pub fn show(&self, text: &str) -> String {
        self.mask.apply(&replace_paths(text, &self.paths))
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

    /// A line from the plugin: masked, cut to size, then charged to the
    /// budget — the larger of what the plugin sent and what is printed,
    /// plus a fixed cost per record and per field, so that neither empty
    /// records nor masking that lengthens text print for free. At most
    /// [`MAX_FIELDS`] fields are kept.
    pub fn plugin(
        &self,
        level: Level,
        message: &str,
        fields: &[(String, String)],
    ) -> Result<(), LogLimitExceeded> {
        let sent = message.len()
            + fields
                .iter()
                .map(|(k, v)| k.len() + v.len() + FIELD_COST)
                .sum::<usize>();
        // Refuse a flood before spending time masking it.
        if self.used.load(Ordering::Relaxed) + sent as u64 > self.limit {
            return self.charge(sent as u64 + RECORD_COST as u64);
        }
        let mut shown: Vec<(String, String)> = fields
            .iter()
            .take(MAX_FIELDS)
            .map(|(k, v)| {
                (
                    shorten(self.mask.apply(k), MAX_SHOWN_FIELD),
                    shorten(self.mask.apply(v), MAX_SHOWN_FIELD),
                )
            })
            .collect();
        if fields.len() > MAX_FIELDS {
            shown.push((
                "kiln".to_owned(),
                format!("{} more fields dropped", fields.len() - MAX_FIELDS),
            ));
        }
        let message = shorten(self.show(message), MAX_SHOWN_LINE);
        let printed = message.len()
            + shown
                .iter()
                .map(|(k, v)| k.len() + v.len() + FIELD_COST)
                .sum::<usize>();
        self.charge((sent.max(printed) + RECORD_COST) as u64)?;
        self.reporter.log(&self.step, level, &message, &shown);
        Ok(())
    }

    /// A line from the host about this step that the host chose to print
    /// (limits, settings); masked, not charged.
    pub fn host(&self, level: Level, message: &str) {
        self.reporter
            .log(&self.step, level, &self.show(message), &[]);
    }

    /// A line the host prints because of something the plugin did (a
    /// denied request, a delegation): masked, cut to size and charged like
    /// the plugin's own lines, so a plugin cannot make the host print for
    /// it without limit.
    pub fn caused_by_plugin(&self, level: Level, message: &str) -> Result<(), LogLimitExceeded> {
        let message = shorten(self.show(message), MAX_SHOWN_LINE);
        self.charge((message.len() + RECORD_COST) as u64)?;
        self.reporter.log(&self.step, level, &message, &[]);
        Ok(())
    }

    /// Progress from the plugin.
    pub fn progress(
        &self,
        task: &str,
        done: u64,
        total: Option<u64>,
    ) -> Result<(), LogLimitExceeded> {
        let task = shorten(self.show(task), MAX_SHOWN_FIELD);
        self.charge((task.len() + RECORD_COST) as u64)?;
        self.reporter.progress(&self.step, &task, done, total);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Count(AtomicU64);
    impl Reporter for Count {
        fn log(&self, _: &str, _: Level, _: &str, _: &[(String, String)]) {
            self.0.fetch_add(1, Ordering::Relaxed);
        }
        fn progress(&self, _: &str, _: &str, _: u64, _: Option<u64>) {}
    }

    #[test]
    fn empty_fields_and_host_lines_are_charged() {
        let reporter = Arc::new(Count(AtomicU64::new(0)));
        let log = StepLog::new("s", reporter.clone(), SecretMask::default(), 4096);
        let empty: Vec<(String, String)> = vec![(String::new(), String::new()); 1000];
        let mut printed = 0;
        while log.plugin(Level::Info, "", &empty).is_ok() {
            printed += 1;
        }
        // Each record costs at least its fixed part: a few records, not
        // thousands.
        assert!(printed < 40, "{printed} empty records printed");
        let log = StepLog::new("s", reporter, SecretMask::default(), 4096);
        let host = "h".repeat(60_000);
        assert!(
            log.caused_by_plugin(Level::Warn, &format!("denied {host}"))
                .is_err()
        );
        assert!(log.limit_exceeded());
    }

    #[test]
    fn guest_paths_are_shown_as_host_paths() {
        let pairs = |guest: &str, host: &str| vec![(guest.to_owned(), host.to_owned())];
        assert_eq!(
            replace_paths(
                "reading /workspace/a and /workspace",
                &pairs("/workspace", "/home/me/p")
            ),
            "reading /home/me/p/a and /home/me/p"
        );
        assert_eq!(
            replace_paths(
                "/workspaces /x/workspace /workspace.txt",
                &pairs("/workspace", "/h")
            ),
            "/workspaces /x/workspace /workspace.txt"
        );
        assert_eq!(
            replace_paths("at=/output:", &pairs("/output", "/o")),
            "at=/o:"
        );
        // One pass: a host path that holds a guest path is not rewritten
        // again.
        let both = vec![
            ("/workspace".to_owned(), "/workspace/src".to_owned()),
            (
                "/output".to_owned(),
                "/workspace/src/.kiln/out/x".to_owned(),
            ),
        ];
        assert_eq!(
            replace_paths("/output/a /workspace/b", &both),
            "/workspace/src/.kiln/out/x/a /workspace/src/b"
        );
    }

    #[test]
    fn budget_stops_a_flood() {
        let reporter = Arc::new(Count(AtomicU64::new(0)));
        // Each record costs its text plus RECORD_COST (16).
        let log = StepLog::new("s", reporter.clone(), SecretMask::default(), 40);
        assert!(log.plugin(Level::Info, "12345", &[]).is_ok());
        assert!(log.plugin(Level::Info, "123456", &[]).is_err());
        assert!(log.limit_exceeded());
        // One plugin line plus the host's one notice.
        assert_eq!(reporter.0.load(Ordering::Relaxed), 2);
    }
}
