//! What the host prints: step logs, progress and results, for humans or as
//! JSON lines, with every secret masked.
//!
//! Everything a plugin says reaches the terminal through [`StepLog`], which
//! masks secrets and enforces the step's output budget before handing the
//! line to a [`Reporter`].

use std::collections::HashMap;
use std::io::{IsTerminal, Write};
use std::sync::Mutex;

use indicatif::{MultiProgress, ProgressBar, ProgressStyle};
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

/// How a step of a pipeline run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum StepStatus {
    /// It succeeded.
    Ok,
    /// It failed.
    Failed,
    /// It was stopped because another step failed.
    Cancelled,
    /// It never started: a step it needs did not succeed, or its `rules:`
    /// left it out (then [`StepSummary::excluded`] says why).
    Skipped,
}

impl StepStatus {
    fn label(self) -> &'static str {
        match self {
            StepStatus::Ok => "ok",
            StepStatus::Failed => "failed",
            StepStatus::Cancelled => "cancelled",
            StepStatus::Skipped => "skipped",
        }
    }
}

/// One line of a pipeline run's summary.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StepSummary {
    /// The step.
    pub step: String,
    /// Its stage.
    pub stage: String,
    /// Whether it ran in the sandbox (`uses:`) or on the host (`run:`).
    pub sandboxed: bool,
    /// How it ended.
    pub status: StepStatus,
    /// How long it ran.
    pub duration_ms: u128,
    /// Why it failed, masked.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Why its `rules:` left it out of the run. Such a step is skipped
    /// without failing the pipeline, as GitLab does not create the job.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub excluded: Option<String>,
}

impl StepSummary {
    /// Whether the step leaves the pipeline successful: it succeeded, or
    /// its rules excluded it.
    pub fn passed(&self) -> bool {
        self.status == StepStatus::Ok || self.excluded.is_some()
    }
}

/// Where step events go. Implementations receive text that is already
/// masked, so they may print it as it is.
pub trait Reporter: Send + Sync {
    /// One log line of `step`.
    fn log(&self, step: &str, level: Level, message: &str, fields: &[(String, String)]);
    /// Progress of `task` in `step`.
    fn progress(&self, step: &str, task: &str, done: u64, total: Option<u64>);
    /// A pipeline step starts.
    fn step_started(&self, _step: &str, _stage: &str, _sandboxed: bool) {}
    /// A pipeline step ended (or was skipped).
    fn step_finished(&self, _summary: &StepSummary) {}
    /// The pipeline run ended.
    fn pipeline_finished(&self, _steps: &[StepSummary]) {}
}

/// Human output on stderr: `[step] message key=value`. On a terminal,
/// progress is drawn as bars; elsewhere (CI logs) as a line per tenth of the
/// work, so logs stay readable.
pub struct HumanReporter {
    verbose: bool,
    bars: Option<MultiProgress>,
    state: Mutex<ProgressState>,
}

#[derive(Default)]
struct ProgressState {
    last_tenth: HashMap<(String, String), u64>,
    bars: HashMap<(String, String), ProgressBar>,
}

impl HumanReporter {
    /// A reporter that hides `debug` and `trace` lines unless `verbose`.
    pub fn new(verbose: bool) -> Self {
        HumanReporter {
            verbose,
            bars: std::io::stderr().is_terminal().then(MultiProgress::new),
            state: Mutex::new(ProgressState::default()),
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, ProgressState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn line(&self, text: &str) {
        match &self.bars {
            Some(bars) => {
                let _ = bars.println(text);
            }
            // A closed stderr must not take the step down with it.
            None => {
                let _ = writeln!(std::io::stderr().lock(), "{text}");
            }
        }
    }

    fn bar(&self, bars: &MultiProgress, step: &str, task: &str, done: u64, total: u64) {
        let key = (step.to_owned(), task.to_owned());
        let mut state = self.state();
        let bar = state.bars.entry(key.clone()).or_insert_with(|| {
            let bar = bars.add(ProgressBar::new(total));
            bar.set_style(
                ProgressStyle::with_template(
                    "[{prefix}] {msg} {wide_bar} {bytes}/{total_bytes} {bytes_per_sec}",
                )
                .expect("a valid template"),
            );
            bar.set_prefix(step.to_owned());
            bar.set_message(task.to_owned());
            bar
        });
        bar.set_length(total);
        bar.set_position(done);
        if done >= total {
            bar.finish_and_clear();
            state.bars.remove(&key);
        }
    }
}

impl Reporter for HumanReporter {
    fn log(&self, step: &str, level: Level, message: &str, fields: &[(String, String)]) {
        if level < Level::Info && !self.verbose {
            return;
        }
        let mut line = format!("[{step}] ");
        if level != Level::Info {
            line.push_str(&format!("{}: ", level.label()));
        }
        line.push_str(message);
        for (key, value) in fields {
            line.push_str(&format!(" {key}={value}"));
        }
        self.line(&line);
    }

    fn progress(&self, step: &str, task: &str, done: u64, total: Option<u64>) {
        let Some(total) = total.filter(|t| *t > 0) else {
            return;
        };
        if let Some(bars) = &self.bars {
            return self.bar(bars, step, task, done, total);
        }
        let tenth = done.min(total) * 10 / total;
        let previous = self
            .state()
            .last_tenth
            .insert((step.to_owned(), task.to_owned()), tenth);
        if previous != Some(tenth) {
            self.line(&format!(
                "[{step}] {task}: {}% ({done}/{total})",
                tenth * 10
            ));
        }
    }

    fn step_started(&self, step: &str, stage: &str, sandboxed: bool) {
        let how = if sandboxed {
            "sandboxed"
        } else {
            "UNSANDBOXED: host commands"
        };
        self.line(&format!("── {step} ({stage}, {how}) ──"));
    }

    fn step_finished(&self, summary: &StepSummary) {
        let seconds = summary.duration_ms as f64 / 1000.0;
        let excluded = summary
            .excluded
            .as_ref()
            .map(|why| format!("excluded by its rules ({why})"));
        match (
            &summary.status,
            summary.error.as_ref().or(excluded.as_ref()),
        ) {
            (StepStatus::Ok, _) => {
                self.line(&format!("── {} ok in {seconds:.1}s ──", summary.step))
            }
            (status, Some(error)) => self.line(&format!(
                "── {} {}: {error} ──",
                summary.step,
                status.label()
            )),
            (status, None) => self.line(&format!("── {} {} ──", summary.step, status.label())),
        }
    }

    fn pipeline_finished(&self, steps: &[StepSummary]) {
        let width = steps.iter().map(|s| s.step.len()).max().unwrap_or(4).max(4);
        let stage_width = steps
            .iter()
            .map(|s| s.stage.len())
            .max()
            .unwrap_or(5)
            .max(5);
        let mut table = format!(
            "\n{:width$}  {:stage_width$}  {:9}  {:>9}  sandbox\n",
            "step", "stage", "status", "duration"
        );
        for s in steps {
            let duration = match s.status {
                StepStatus::Skipped => "-".to_owned(),
                _ => format!("{:.1}s", s.duration_ms as f64 / 1000.0),
            };
            table.push_str(&format!(
                "{:width$}  {:stage_width$}  {:9}  {:>9}  {}\n",
                s.step,
                s.stage,
                s.status.label(),
                duration,
                if s.sandboxed { "yes" } else { "no (run:)" }
            ));
        }
        self.line(table.trim_end());
    }
}

/// One JSON object per line on stdout, for machines.
pub struct JsonReporter;

#[derive(Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
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
    StepStart {
        step: &'a str,
        stage: &'a str,
        sandboxed: bool,
    },
    StepEnd(&'a StepSummary),
    Summary {
        ok: bool,
        steps: &'a [StepSummary],
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

    fn step_started(&self, step: &str, stage: &str, sandboxed: bool) {
        Self::emit(&JsonEvent::StepStart {
            step,
            stage,
            sandboxed,
        });
    }

    fn step_finished(&self, summary: &StepSummary) {
        Self::emit(&JsonEvent::StepEnd(summary));
    }

    fn pipeline_finished(&self, steps: &[StepSummary]) {
        Self::emit(&JsonEvent::Summary {
            ok: steps.iter().all(StepSummary::passed),
            steps,
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

    /// The length in bytes of the longest secret (0 when there is none).
    pub fn longest(&self) -> usize {
        self.values.first().map_or(0, String::len)
    }

    /// A position at or before `cut` where `bytes` can be split without
    /// splitting a secret, so that each part can be masked on its own.
    /// `bytes` must hold at least [`SecretMask::longest`] bytes past `cut`
    /// (or all there is) for a secret that starts before `cut` to be seen.
    /// When a secret longer than `cut` starts at 0, the split falls after
    /// it instead.
    pub fn safe_cut(&self, bytes: &[u8], mut cut: usize) -> usize {
        // The first secret found across the cut moves it to where that
        // secret starts; repeat until none crosses (the cut only moves
        // back, so this ends).
        let crossing = |cut: usize| {
            self.values.iter().find_map(|value| {
                let value = value.as_bytes();
                let from = cut.saturating_sub(value.len().saturating_sub(1));
                (from..cut)
                    .find(|&start| start + value.len() > cut && bytes[start..].starts_with(value))
                    .map(|start| (start, value.len()))
            })
        };
        while let Some((start, len)) = crossing(cut) {
            if start == 0 {
                return len.min(bytes.len());
            }
            cut = start;
        }
        cut
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
        let message = shorten(self.mask.apply(message), MAX_SHOWN_LINE);
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
            .log(&self.step, level, &self.mask.apply(message), &[]);
    }

    /// A line the host prints because of something the plugin did (a
    /// denied request, a delegation): masked, cut to size and charged like
    /// the plugin's own lines, so a plugin cannot make the host print for
    /// it without limit.
    pub fn caused_by_plugin(&self, level: Level, message: &str) -> Result<(), LogLimitExceeded> {
        let message = shorten(self.mask.apply(message), MAX_SHOWN_LINE);
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
        let task = shorten(self.mask.apply(task), MAX_SHOWN_FIELD);
        self.charge((task.len() + RECORD_COST) as u64)?;
        self.reporter.progress(&self.step, &task, done, total);
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
    fn cuts_never_split_a_secret() {
        let mut mask = SecretMask::default();
        mask.add("s3cr3t-value");
        let text = b"aaaaaaaas3cr3t-valuebbbb";
        // A cut inside the secret moves to where it starts.
        assert_eq!(mask.safe_cut(text, 12), 8);
        assert_eq!(mask.safe_cut(text, 8), 8);
        assert_eq!(mask.safe_cut(text, 20), 20);
        // A secret at the start, longer than the cut, is kept whole.
        assert_eq!(mask.safe_cut(b"s3cr3t-value...", 4), 12);
        assert_eq!(mask.longest(), 12);
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
