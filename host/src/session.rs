//! [`Kiln`]: what every operation shares — one wasm runtime (so plugins
//! are compiled once per process) and the reporter step events go to.

use std::sync::{Arc, OnceLock};
use std::time::Instant;

use kiln_grant::ValueSource;
use kiln_runtime::inputs::json;
use kiln_runtime::plugins::{self, PluginRef};
use kiln_runtime::report::{Reporter, StepResult};
use kiln_runtime::step::{self, StepRequest};
use kiln_runtime::{PluginInfo, Runtime, RuntimeConfig};

use crate::Error;

/// A kiln session: the runtime and the reporter. Create one per process
/// and call the operations on it.
pub struct Kiln {
    runtime: OnceLock<Arc<Runtime>>,
    reporter: Arc<dyn Reporter>,
}

impl Kiln {
    /// A session whose step events go to `reporter`. The runtime starts
    /// when the first step needs it, so an operation checks its arguments
    /// first and a usage error is reported as one.
    pub fn new(reporter: Arc<dyn Reporter>) -> Kiln {
        Kiln {
            runtime: OnceLock::new(),
            reporter,
        }
    }

    /// The runtime steps run in (compiled plugins cached under
    /// `$KILN_CACHE_DIR`), started on first use.
    pub fn runtime(&self) -> Result<&Arc<Runtime>, Error> {
        if let Some(runtime) = self.runtime.get() {
            return Ok(runtime);
        }
        let runtime = Runtime::new(RuntimeConfig::from_env())
            .map_err(|e| Error::Failed(format!("cannot start the wasm runtime: {e}")))?;
        Ok(self.runtime.get_or_init(|| Arc::new(runtime)))
    }

    /// Where step events go.
    pub fn reporter(&self) -> &Arc<dyn Reporter> {
        &self.reporter
    }

    /// What a plugin's `describe()` says.
    pub async fn describe(&self, plugin: &PluginRef) -> Result<PluginInfo, Error> {
        let failed = |failure| Error::Plugin {
            plugin: plugin.label(),
            failure,
        };
        let runtime = self.runtime()?;
        let loaded = step::load(runtime, plugin).map_err(failed)?;
        step::describe(runtime, &loaded, &plugin.label(), self.reporter.clone())
            .await
            .map_err(failed)
    }

    /// What every built-in's `describe()` says, in name order.
    pub async fn builtins(&self) -> Result<Vec<PluginInfo>, Error> {
        let mut infos = Vec::new();
        for builtin in plugins::builtins() {
            infos.push(self.describe(&PluginRef::Builtin(builtin)).await?);
        }
        Ok(infos)
    }

    /// Run one step on its own and report how it ended, to the reporter
    /// and as the result.
    pub(crate) async fn run_request(
        &self,
        request: StepRequest,
        values: &dyn ValueSource,
    ) -> Result<StepResult, Error> {
        let outcome = self.execute(request, values).await;
        self.report(outcome)
    }

    /// Run one step on its own without reporting it yet (the caller may
    /// add to its outputs). A failure comes with the result to report.
    pub(crate) async fn execute(
        &self,
        request: StepRequest,
        values: &dyn ValueSource,
    ) -> Result<StepResult, (StepResult, Error)> {
        let started = Instant::now();
        let mut result = StepResult {
            step: request.name.clone(),
            outputs: Vec::new(),
            error: None,
            duration_ms: 0,
        };
        let outcome = match self.runtime() {
            Ok(runtime) => step::run(runtime, &request, self.reporter.clone(), values)
                .await
                .map_err(|failure| Error::Step {
                    step: request.name,
                    failure,
                }),
            Err(error) => Err(error),
        };
        result.duration_ms = started.elapsed().as_millis();
        match outcome {
            Ok(outputs) => {
                result.outputs = outputs
                    .iter()
                    .map(|o| (o.name.clone(), json(&o.value)))
                    .collect();
                Ok(result)
            }
            Err(error) => {
                result.error = Some(match &error {
                    Error::Step { failure, .. } => failure.to_string(),
                    other => other.to_string(),
                });
                Err((result, error))
            }
        }
    }

    /// Tell the reporter how a step ended; a failure becomes the error.
    pub(crate) fn report(
        &self,
        outcome: Result<StepResult, (StepResult, Error)>,
    ) -> Result<StepResult, Error> {
        let (Ok(result) | Err((result, _))) = &outcome;
        self.reporter.step_result(result);
        outcome.map_err(|(_, error)| error)
    }
}
