//! Why a kiln operation did not succeed, classified so the front end can
//! map it to an exit code: the caller's input (usage) or the work itself.

use kiln_pipeline::PipelineError;
use kiln_runtime::StepFailure;

/// An operation that did not succeed. Each message is one line naming the
/// cause and, where the user can act, the fix; secrets are masked.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Bad arguments or input files; nothing ran.
    #[error("{0}")]
    Usage(String),
    /// A located problem in the pipeline file; nothing ran.
    #[error(transparent)]
    Pipeline(#[from] PipelineError),
    /// A step ran (or could not start) and did not succeed.
    #[error("step {step} {failure}")]
    Step {
        /// The step's name.
        step: String,
        /// How it failed.
        failure: StepFailure,
    },
    /// A plugin could not be loaded or described.
    #[error("{plugin}: {failure}")]
    Plugin {
        /// The plugin's name.
        plugin: String,
        /// Why.
        failure: StepFailure,
    },
    /// The work failed outside any step (the runtime, storing credentials).
    #[error("{0}")]
    Failed(String),
}

impl Error {
    /// Whether the cause is the caller's input rather than the work: a
    /// front end exits differently for the two.
    pub fn is_usage(&self) -> bool {
        match self {
            Error::Usage(_) | Error::Pipeline(_) => true,
            Error::Step { failure, .. } | Error::Plugin { failure, .. } => failure.is_usage(),
            Error::Failed(_) => false,
        }
    }

    /// A usage error from anything printable.
    pub(crate) fn usage(message: impl std::fmt::Display) -> Error {
        Error::Usage(message.to_string())
    }
}
