//! Running one step from start to end: resolve the plugin, check inputs
//! against `describe()`, build the sandbox from the grant, run, and mask
//! what comes back.

use std::sync::Arc;

use kiln_grant::{SecretMask, StepGrant, ValueSource};

use crate::engine::{Called, LoadedPlugin, Runtime, StepFailure};
use crate::host_api::{NamedValue, NeededArtifact, PluginInfo, StepContext, Value};
use crate::inputs;
use crate::log::{DEFAULT_LOG_LIMIT, StepLog};
use crate::plugins::PluginRef;
use crate::policy::operator::OperatorPolicies;
use crate::policy::run::RunAccess;
use crate::policy::{GUEST_OUTPUT, GUEST_WORKSPACE, Sandbox, StepDirs, guest_artifact_path};
use crate::report::Reporter;

/// Everything needed to run one step.
#[derive(Debug, Clone)]
pub struct StepRequest {
    /// The step's name, prefixed to its log lines.
    pub name: String,
    /// The plugin to run.
    pub plugin: PluginRef,
    /// Inputs as `name`, raw text; typed against `describe()`.
    pub inputs: Vec<(String, String)>,
    /// What the step may touch beyond the default.
    pub grant: StepGrant,
    /// The workspace and output directories on the host.
    pub dirs: StepDirs,
    /// Steps whose artifacts `dirs.mounts` provides (see
    /// [`guest_artifact_path`]).
    pub needs: Vec<String>,
    /// Values to mask beyond the step's own secrets (a pipeline's secret
    /// variables, which `with:` may have expanded into inputs).
    pub masked: SecretMask,
}

impl StepRequest {
    /// A step that needs no other step's artifacts and masks only its own
    /// secrets; set [`StepRequest::needs`] and [`StepRequest::masked`]
    /// for more.
    pub fn new(
        name: impl Into<String>,
        plugin: PluginRef,
        inputs: Vec<(String, String)>,
        grant: StepGrant,
        dirs: StepDirs,
    ) -> StepRequest {
        StepRequest {
            name: name.into(),
            plugin,
            inputs,
            grant,
            dirs,
            needs: Vec::new(),
            masked: SecretMask::default(),
        }
    }
}

/// Load the plugin a reference names.
pub fn load(runtime: &Runtime, plugin: &PluginRef) -> Result<Arc<LoadedPlugin>, StepFailure> {
    let wasm = plugin
        .wasm()
        .map_err(|e| StepFailure::Setup(e.to_string()))?;
    runtime.load(&wasm).map_err(|e| {
        StepFailure::Setup(format!(
            "{} is not a kiln plugin component: {}",
            plugin.label(),
            why_not_loadable(&wasm, &e.to_string())
        ))
    })
}

/// The contract version this kiln implements, named when a plugin wants
/// another.
const CONTRACT: &str = "kiln:plugin@0.1.0";

/// Why bytes did not load as a plugin, in terms of what the author does
/// next. `error` is wasmtime's message, kept where nothing better is known.
fn why_not_loadable(wasm: &[u8], error: &str) -> String {
    // A WebAssembly binary starts `\0asm`, then its version (4 bytes): 1
    // for a core module, 0x0d and layer 1 for a component.
    match wasm.get(..8) {
        Some([0, b'a', b's', b'm', 1, 0, 0, 0]) => {
            return "it is a core WebAssembly module, not a component; build it for \
                    wasm32-wasip2 (cargo build --target wasm32-wasip2), or make one with \
                    `wasm-tools component new`"
                .into();
        }
        Some([0, b'a', b's', b'm', _, _, 1, 0]) => {}
        _ => return "it is not a WebAssembly file (a plugin is a .wasm component)".into(),
    }
    if let Some(at) = error.find("kiln:plugin/") {
        let interface: String = error[at..]
            .chars()
            .take_while(|c| !c.is_whitespace() && !matches!(c, '`' | '\'' | '"'))
            .collect();
        if !interface.ends_with("@0.1.0") {
            return format!(
                "it uses {interface}, and this kiln implements {CONTRACT}; build it against that contract (wit/plugin.wit) or use a kiln that supports its version"
            );
        }
        if error.contains("no exported instance") || error.contains("export") {
            return format!(
                "it does not export {interface}; a plugin implements the `step` interface of {CONTRACT} (kiln_sdk::export_step!)"
            );
        }
    }
    error.to_owned()
}

/// `describe()` of a plugin, logging as `label`.
pub async fn describe(
    runtime: &Runtime,
    plugin: &LoadedPlugin,
    label: &str,
    reporter: Arc<dyn Reporter>,
) -> Result<PluginInfo, StepFailure> {
    let log = Arc::new(StepLog::new(
        label,
        reporter,
        SecretMask::default(),
        DEFAULT_LOG_LIMIT,
    ));
    runtime.describe(plugin, log).await
}

/// Run the step described by `request`; values of granted variables and
/// secrets come from `values`. Every string returned is masked.
pub async fn run(
    runtime: &Runtime,
    request: &StepRequest,
    reporter: Arc<dyn Reporter>,
    values: &dyn ValueSource,
) -> Result<Called<Vec<NamedValue>>, StepFailure> {
    let plugin = load(runtime, &request.plugin)?;
    let info = describe(runtime, &plugin, &request.name, reporter.clone()).await?;
    let checked = inputs::check(&info, &request.inputs).map_err(StepFailure::InvalidInput)?;
    let mut mask = request.masked.clone();
    for value in &checked.secret_values {
        mask.add(value);
    }
    // The operator's policy has the last word on every grant, whichever
    // command or file asked for it.
    let mut grant = request.grant.clone();
    OperatorPolicies::load()
        .map_err(|e| StepFailure::Setup(e.to_string()))?
        .check(&mut grant)
        .map_err(|v| StepFailure::Denied(format!("denied: {v}")))?;
    let mut dirs = request.dirs.clone();
    dirs.hidden
        .extend(runtime.cache_root().map(ToOwned::to_owned));
    let sandbox = Sandbox::new(&grant, &dirs, values, |secrets| {
        for secret in secrets {
            mask.add(secret);
        }
        Arc::new(
            StepLog::new(&request.name, reporter, mask.clone(), DEFAULT_LOG_LIMIT)
                .with_host_paths(request.dirs.host_paths()),
        )
    })
    .map_err(|e| StepFailure::Setup(e.to_string()))?;
    let mut sandbox = sandbox;
    if grant.run {
        sandbox.run = Some(RunAccess::new(
            runtime.cache_root(),
            grant.run_host_network,
            std::time::Instant::now() + sandbox.timeout,
        ));
    }
    let log = sandbox.log.clone();
    let context = StepContext {
        step_name: request.name.clone(),
        workspace: GUEST_WORKSPACE.to_owned(),
        output: GUEST_OUTPUT.to_owned(),
        artifacts: request
            .needs
            .iter()
            .map(|step| NeededArtifact {
                step: step.clone(),
                path: guest_artifact_path(step),
            })
            .collect(),
    };
    let result = runtime.run(&plugin, sandbox, context, checked.values).await;
    match result {
        Ok(Called { value, isolation }) => Ok(Called {
            value: value
                .into_iter()
                .map(|output| NamedValue {
                    name: output.name,
                    value: mask_value(log.mask(), output.value),
                })
                .collect(),
            isolation,
        }),
        Err(failure) => Err(show_failure(&log, failure)),
    }
}

fn mask_value(mask: &SecretMask, value: Value) -> Value {
    match value {
        Value::Text(text) => Value::Text(mask.apply(&text)),
        Value::Path(text) => Value::Path(mask.apply(&text)),
        other => other,
    }
}

/// A failure as the user sees it: masked, with host paths.
fn show_failure(log: &StepLog, failure: StepFailure) -> StepFailure {
    match failure {
        StepFailure::InvalidInput(m) => StepFailure::InvalidInput(log.show(&m)),
        StepFailure::Denied(m) => StepFailure::Denied(log.show(&m)),
        StepFailure::Failed(m) => StepFailure::Failed(log.show(&m)),
        StepFailure::Trapped(m) => StepFailure::Trapped(log.show(&m)),
        StepFailure::Setup(m) => StepFailure::Setup(log.show(&m)),
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn load_errors_say_what_to_do() {
        const COMPONENT: &[u8] = b"\0asm\x0d\0\x01\0";
        let newer = why_not_loadable(
            COMPONENT,
            "component imports instance `kiln:plugin/log@0.2.0`, but a matching implementation was not found in the linker",
        );
        assert!(
            newer
                .contains("uses kiln:plugin/log@0.2.0, and this kiln implements kiln:plugin@0.1.0"),
            "{newer}"
        );
        assert!(why_not_loadable(b"\0asm\x01\0\0\0", "").contains("core WebAssembly module"));
        assert!(why_not_loadable(b"PK\x03\x04....", "").contains("not a WebAssembly file"));
        assert_eq!(
            why_not_loadable(COMPONENT, "something else"),
            "something else"
        );
    }
}
