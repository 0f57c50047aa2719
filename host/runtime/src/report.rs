//! Where step events go: the [`Reporter`] trait the host's front end
//! implements (human lines, JSON events), and the event types it receives.
//! Text reaching a reporter has been masked and charged to the step's
//! budget by [`crate::log::StepLog`].

use std::collections::BTreeMap;

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
    /// The lowercase name printed for it.
    pub fn label(self) -> &'static str {
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
    /// The lowercase name printed for it.
    pub fn label(self) -> &'static str {
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
    /// A plugin step's outputs, typed as in JSON (masked).
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub outputs: BTreeMap<String, serde_json::Value>,
    /// The isolation its RUN commands had, when it ran any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub isolation: Option<String>,
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
    /// A step run on its own (`kiln step`, and the steps behind `kiln
    /// build`, `push`, `pull` and `login`) ended.
    fn step_result(&self, _result: &StepResult) {}
}

/// How a step run on its own ended: its outputs as text, or its error,
/// masked.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StepResult {
    /// The step.
    pub step: String,
    /// Its outputs, name and value (typed as in JSON), in the plugin's
    /// order.
    pub outputs: Vec<(String, serde_json::Value)>,
    /// Why it failed.
    pub error: Option<String>,
    /// How long it ran.
    pub duration_ms: u128,
    /// The isolation its RUN commands had, when it ran any.
    pub isolation: Option<String>,
}
