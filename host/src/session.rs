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

/// A plugin as `kiln plugin inspect` shows it.
#[derive(Debug, serde::Serialize)]
pub struct Inspection {
    /// What its `describe()` says.
    #[serde(flatten)]
    pub info: PluginInfo,
    /// Present when the plugin imports the executor interface.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub run: Option<RunSupport>,
}

/// What running native commands takes, for a plugin that may ask.
#[derive(Debug, serde::Serialize)]
pub struct RunSupport {
    /// The grant a step needs.
    pub grant: &'static str,
    /// The isolation tier this machine gives RUN commands.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub isolation: Option<&'static str>,
    /// Why no tier works here, naming what would unlock one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub unavailable: Option<String>,
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

    /// What `kiln plugin inspect` shows: the plugin's description and,
    /// when it can ask the host to run commands (Dockerfile RUN), the
    /// grant that takes and the isolation this machine gives them.
    pub async fn inspect(&self, plugin: &PluginRef) -> Result<Inspection, Error> {
        let failed = |failure| Error::Plugin {
            plugin: plugin.label(),
            failure,
        };
        let runtime = self.runtime()?;
        let loaded = step::load(runtime, plugin).map_err(failed)?;
        let info = step::describe(runtime, &loaded, &plugin.label(), self.reporter.clone())
            .await
            .map_err(failed)?;
        let run = loaded.runs_commands().then(|| {
            let probed = kiln_runtime::policy::run::isolation();
            RunSupport {
                grant: "allow.run (kiln build/step: --allow-run)",
                isolation: probed.as_ref().ok().map(|i| i.tier.name()),
                unavailable: probed.err(),
            }
        });
        Ok(Inspection { info, run })
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
            isolation: None,
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
            Ok(called) => {
                result.isolation = called.isolation.map(str::to_owned);
                result.outputs = called
                    .value
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
