//! [`Kiln`]: what every operation shares — one wasm runtime (so plugins
//! are compiled once per process) and the reporter step events go to.

use std::sync::Arc;
use std::time::Instant;

use kiln_grant::ValueSource;
use kiln_runtime::inputs::display;
use kiln_runtime::plugins::{self, PluginRef};
use kiln_runtime::report::{Reporter, StepResult};
use kiln_runtime::step::{self, StepRequest};
use kiln_runtime::{PluginInfo, Runtime, RuntimeConfig, StepFailure};

use crate::Error;

/// A kiln session: the runtime and the reporter. Create one per process
/// and call the operations on it.
pub struct Kiln {
    runtime: Arc<Runtime>,
    reporter: Arc<dyn Reporter>,
}

impl Kiln {
    /// Start the runtime (compiled plugins cached under `$KILN_CACHE_DIR`);
    /// step events go to `reporter`.
    pub fn new(reporter: Arc<dyn Reporter>) -> Result<Kiln, Error> {
        let runtime = Runtime::new(RuntimeConfig::from_env())
            .map_err(|e| Error::Failed(format!("cannot start the wasm runtime: {e}")))?;
        Ok(Kiln {
            runtime: Arc::new(runtime),
            reporter,
        })
    }

    /// The runtime steps run in.
    pub fn runtime(&self) -> &Arc<Runtime> {
        &self.runtime
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
        let loaded = step::load(&self.runtime, plugin).map_err(failed)?;
        step::describe(
            &self.runtime,
            &loaded,
            &plugin.label(),
            self.reporter.clone(),
        )
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
    /// add to its outputs).
    pub(crate) async fn execute(
        &self,
        request: StepRequest,
        values: &dyn ValueSource,
    ) -> Result<StepResult, (StepResult, StepFailure)> {
        let started = Instant::now();
        let outcome = step::run(&self.runtime, &request, self.reporter.clone(), values).await;
        let mut result = StepResult {
            step: request.name,
            outputs: Vec::new(),
            error: None,
            duration_ms: started.elapsed().as_millis(),
        };
        match outcome {
            Ok(outputs) => {
                result.outputs = outputs
                    .iter()
                    .map(|o| (o.name.clone(), display(&o.value)))
                    .collect();
                Ok(result)
            }
            Err(failure) => {
                result.error = Some(failure.to_string());
                Err((result, failure))
            }
        }
    }

    /// Tell the reporter how a step ended; a failure becomes the error.
    pub(crate) fn report(
        &self,
        outcome: Result<StepResult, (StepResult, StepFailure)>,
    ) -> Result<StepResult, Error> {
        match outcome {
            Ok(result) => {
                self.reporter.step_result(&result);
                Ok(result)
            }
            Err((result, failure)) => {
                self.reporter.step_result(&result);
                Err(Error::Step {
                    step: result.step,
                    failure,
                })
            }
        }
    }
}
