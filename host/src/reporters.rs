//! What the `kiln` command prints while steps run: step logs, progress and
//! results, for humans or as JSON lines. Text reaching a reporter is
//! already masked.

use std::collections::{BTreeMap, HashMap};
use std::io::{IsTerminal, Write};
use std::sync::Mutex;

use indicatif::{MultiProgress, ProgressBar, ProgressStyle};
use serde::Serialize;

use kiln_runtime::report::{Level, Reporter, StepResult, StepStatus, StepSummary};

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
    /// A reporter that hides `debug` and `trace` lines unless `verbose`,
    /// and draws progress bars when `bars` says so (else lines).
    pub fn new(verbose: bool, bars: bool) -> Self {
        HumanReporter {
            verbose,
            bars: bars.then(MultiProgress::new),
            state: Mutex::new(ProgressState::default()),
        }
    }

    /// Whether bars suit standard error: it is a terminal.
    pub fn on_terminal() -> bool {
        std::io::stderr().is_terminal()
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
                    "[{prefix}] {msg:20} {wide_bar} {bytes}/{total_bytes} {bytes_per_sec}",
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
            (StepStatus::Ok, _) => self.line(&format!(
                "── {} ok in {seconds:.1}s{} ──",
                summary.step,
                summary
                    .isolation
                    .as_ref()
                    .map(|tier| format!(", RUN isolated by {tier}"))
                    .unwrap_or_default()
            )),
            (status, Some(error)) => self.line(&format!(
                "── {} {}: {error} ──",
                summary.step,
                status.label()
            )),
            (status, None) => self.line(&format!("── {} {} ──", summary.step, status.label())),
        }
    }

    fn step_result(&self, result: &StepResult) {
        if let Some(tier) = &result.isolation {
            self.line(&format!("RUN isolation: {tier}"));
        }
        for (name, value) in &result.outputs {
            match value {
                serde_json::Value::String(text) => println!("{name}={text}"),
                other => println!("{name}={other}"),
            }
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
            "\n{:width$}  {:stage_width$}  {:9}  {:>9}  sandbox (RUN isolation)\n",
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
                match (&s.isolation, s.sandboxed) {
                    (Some(tier), _) => format!("yes ({tier})"),
                    (None, true) => "yes".to_owned(),
                    (None, false) => "no (run:)".to_owned(),
                }
            ));
        }
        self.line(table.trim_end());
    }
}

/// Nothing at all (`--quiet`): the command prints its result and errors
/// only.
pub struct QuietReporter;

impl Reporter for QuietReporter {
    fn log(&self, _: &str, _: Level, _: &str, _: &[(String, String)]) {}
    fn progress(&self, _: &str, _: &str, _: u64, _: Option<u64>) {}
    /// A pipeline step's failure is an error: it is said even when quiet.
    fn step_finished(&self, summary: &StepSummary) {
        if let Some(error) = summary.error.as_deref().filter(|_| !summary.passed()) {
            eprintln!("kiln: step {} {error}", summary.step);
        }
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
    Result {
        step: &'a str,
        ok: bool,
        #[serde(skip_serializing_if = "Option::is_none")]
        outputs: Option<BTreeMap<&'a str, &'a serde_json::Value>>,
        #[serde(skip_serializing_if = "Option::is_none")]
        error: Option<&'a str>,
        duration_ms: u128,
        #[serde(skip_serializing_if = "Option::is_none")]
        isolation: Option<&'a str>,
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

    fn step_result(&self, result: &StepResult) {
        Self::emit(&JsonEvent::Result {
            step: &result.step,
            ok: result.error.is_none(),
            outputs: result.error.is_none().then(|| {
                result
                    .outputs
                    .iter()
                    .map(|(name, value)| (name.as_str(), value))
                    .collect()
            }),
            error: result.error.as_deref(),
            duration_ms: result.duration_ms,
            isolation: result.isolation.as_deref(),
        });
    }

    fn pipeline_finished(&self, steps: &[StepSummary]) {
        Self::emit(&JsonEvent::Summary {
            ok: steps.iter().all(StepSummary::passed),
            steps,
        });
    }
}
