//! Everything kiln can know about a pipeline run before its first step:
//! the variables, the steps its rules and `--step` select, every `with:`
//! and grant expanded and held to the operator's policy, every plugin
//! loaded and its inputs checked against `describe()`, and the Dockerfiles
//! `dockerfile-build` steps name planned. `kiln check` stops here; `kiln
//! run` goes on only if all of it holds, so a mistake in the last step is
//! reported before the first one runs. Every error names file:line:column.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use kiln_grant::plugin::DOCKERFILE_BUILD;
use kiln_grant::{PluginSource, StepGrant, ValueSource};
use kiln_pipeline::{Action, Exclusion, Pipeline, PipelineError, Position, Step, Variables, rules};
use kiln_runtime::Runtime;
use kiln_runtime::inputs;
use kiln_runtime::plugins::PluginRef;
use kiln_runtime::policy::GUEST_WORKSPACE;
use kiln_runtime::policy::operator::OperatorPolicies;
use kiln_runtime::report::Reporter;
use kiln_runtime::step;

use super::RunOptions;

/// A pipeline that cannot start; nothing has run.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// A located problem in the pipeline file.
    #[error(transparent)]
    Pipeline(#[from] PipelineError),
    /// A problem with how kiln was asked to run it.
    #[error("{0}")]
    Usage(String),
}

impl From<RunError> for crate::Error {
    fn from(error: RunError) -> crate::Error {
        match error {
            RunError::Pipeline(e) => crate::Error::Pipeline(e),
            RunError::Usage(message) => crate::Error::Usage(message),
        }
    }
}

/// A run checked as far as it can be before it starts.
pub struct Checked {
    /// The run's variables.
    pub variables: Arc<Variables>,
    /// The steps rules leave out, and why.
    pub excluded: HashMap<String, Exclusion>,
    /// The steps to run, in pipeline order.
    pub selected: Vec<Step>,
    /// The same steps, expanded and checked.
    pub(super) prepared: Vec<Prepared>,
}

/// Check the run `options` ask for: see the module's documentation.
pub async fn check(
    pipeline: &Pipeline,
    options: &RunOptions,
    runtime: &Runtime,
    reporter: &Arc<dyn Reporter>,
    env: &dyn ValueSource,
) -> Result<Checked, RunError> {
    let variables = Arc::new(Variables::resolve(pipeline, env)?);
    // Rules see the run's variables, then the rest of the environment, as
    // GitLab's rules see every CI/CD variable of the job.
    let value = |name: &str| {
        variables
            .get(name)
            .map(str::to_owned)
            .or_else(|| env.get(name))
    };
    let excluded = rules::excluded_steps(pipeline, &value);
    let selected = select(pipeline, options, &excluded)?;
    let mut prepared = prepare(pipeline, &variables, &selected)?;
    check_operator_policy(pipeline, &mut prepared)?;
    for step in &prepared {
        check_plugin(pipeline, runtime, reporter, step).await?;
    }
    Ok(Checked {
        variables,
        excluded,
        selected,
        prepared,
    })
}

/// Load a plugin step's plugin, check its inputs against `describe()`
/// (asked once per plugin, and kept for the run), and plan the Dockerfile
/// of a `dockerfile-build` step.
async fn check_plugin(
    pipeline: &Pipeline,
    runtime: &Runtime,
    reporter: &Arc<dyn Reporter>,
    prepared: &Prepared,
) -> Result<(), RunError> {
    let step = &prepared.step;
    let Action::Plugin {
        plugin,
        uses_at,
        inputs: written,
        ..
    } = &step.action
    else {
        return Ok(());
    };
    let error = |position: Position, message: String| {
        RunError::Pipeline(pipeline.error(position, format!("step `{}`: {message}", step.name)))
    };
    // A component a `run:` step it declares it needs may build is not
    // there yet: it is checked when the step starts. (Without a written
    // need, a missing file is a mistake, reported now.)
    if let PluginSource::File(path) = plugin
        && !path.exists()
        && step.needs_declared
        && built_before(pipeline, step)
    {
        return Ok(());
    }
    let plugin = PluginRef::resolve(plugin).map_err(|e| error(*uses_at, e.to_string()))?;
    let loaded = step::load(runtime, &plugin).map_err(|e| error(*uses_at, e.to_string()))?;
    let info = step::describe(runtime, &loaded, &step.name, reporter.clone())
        .await
        .map_err(|e| error(*uses_at, e.to_string()))?;
    inputs::check(&info, &prepared.inputs).map_err(|message| {
        // At the `with:` entry the message is about, if it names one.
        let at = written
            .iter()
            .find(|(name, _)| message.contains(&format!("`{name}`")))
            .map_or(*uses_at, |(_, value)| value.position);
        error(at, message)
    })?;
    if matches!(&plugin, PluginRef::Builtin(b) if b.name == DOCKERFILE_BUILD) {
        check_dockerfile(&pipeline.project_dir, &prepared.inputs, prepared.grant.run)
            .map_err(|message| error(*uses_at, message))?;
    }
    Ok(())
}

/// The largest Dockerfile `kiln check` reads.
const MAX_DOCKERFILE: u64 = 4 << 20;

/// Whether a `run:` step runs before `step` (one it needs, directly or
/// not), which could write what `step` uses.
fn built_before(pipeline: &Pipeline, step: &Step) -> bool {
    let mut seen: Vec<&str> = Vec::new();
    let mut todo: Vec<&str> = step.needs.iter().map(String::as_str).collect();
    while let Some(name) = todo.pop() {
        if seen.contains(&name) {
            continue;
        }
        seen.push(name);
        if let Some(need) = pipeline.step(name) {
            if matches!(need.action, Action::Shell { .. }) {
                return true;
            }
            todo.extend(need.needs.iter().map(String::as_str));
        }
    }
    false
}

/// Plan the Dockerfile a `dockerfile-build` step names, when it lies in
/// the project (one an earlier step writes is checked by the build
/// itself).
fn check_dockerfile(project: &Path, inputs: &[(String, String)], run: bool) -> Result<(), String> {
    let input = |name: &str| {
        inputs
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    };
    // A guest path in the workspace is a path in the project (read
    // beneath it: the pipeline file is untrusted); other guest paths
    // (artifacts of earlier steps) exist only once those ran.
    let in_project = |guest: &str| {
        let rest = guest.strip_prefix(GUEST_WORKSPACE)?;
        (rest.is_empty() || rest.starts_with('/')).then(|| rest.trim_start_matches('/').to_owned())
    };
    let name = input("dockerfile")
        .filter(|d| !d.is_empty())
        .unwrap_or("Dockerfile");
    let relative = if name.starts_with('/') {
        in_project(name)
    } else {
        in_project(input("context").unwrap_or(GUEST_WORKSPACE))
            .map(|context| Path::new(&context).join(name).display().to_string())
    };
    let Some(relative) = relative else {
        return Ok(());
    };
    let mut source = String::new();
    let readable = kiln_pipeline::project::open_file(project, &relative, MAX_DOCKERFILE)
        .ok()
        .is_some_and(|mut file| std::io::Read::read_to_string(&mut file, &mut source).is_ok());
    // One an earlier step writes is not there yet: the build checks it.
    if !readable {
        return Ok(());
    }
    let dockerfile = project.join(&relative);
    // Malformed build arguments are the build's to report, naming the line.
    let Ok(build_args) =
        kiln_dockerfile::stages::name_values(input("build-args").unwrap_or_default())
    else {
        return Ok(());
    };
    let target = input("target").filter(|t| !t.is_empty());
    for platform in input("platform").unwrap_or("linux/amd64").split(',') {
        kiln_dockerfile::check(&source, &build_args, platform.trim(), target, run)
            .map_err(|e| e.in_file(&dockerfile.display().to_string()))?;
    }
    Ok(())
}

/// A step with everything expanded, ready to run.
pub(super) struct Prepared {
    /// The step.
    pub step: Step,
    /// Its `with:` values, expanded.
    pub inputs: Vec<(String, String)>,
    /// Its grant, expanded and held to the operator's policy.
    pub grant: StepGrant,
    /// Its cache key, expanded.
    pub cache_key: Option<String>,
}

/// The steps to run: those `--step` names (all by default) that their
/// rules include, without needs on excluded steps.
fn select(
    pipeline: &Pipeline,
    options: &RunOptions,
    excluded: &HashMap<String, Exclusion>,
) -> Result<Vec<Step>, RunError> {
    for name in &options.only {
        if pipeline.step(name).is_none() {
            let known: Vec<&str> = pipeline.steps.iter().map(|s| s.name.as_str()).collect();
            return Err(RunError::Usage(format!(
                "no step named `{name}` in {} (steps: {})",
                pipeline.file,
                known.join(", ")
            )));
        }
    }
    if let Some((name, why)) = options
        .only
        .iter()
        .find_map(|n| excluded.get(n).map(|e| (n, e)))
    {
        return Err(RunError::Pipeline(pipeline.error(
            why.position,
            format!(
                "step `{name}` is excluded from this run by its rules: {}; --step runs a step only where its rules include it",
                why.reason
            ),
        )));
    }
    let selected: Vec<&Step> = pipeline
        .steps
        .iter()
        .filter(|s| options.only.is_empty() || options.only.contains(&s.name))
        .filter(|s| !excluded.contains_key(&s.name))
        .collect();
    rules::check_needs(pipeline, selected.iter().copied(), excluded)?;
    let selected: Vec<Step> = selected
        .into_iter()
        .map(|s| {
            let mut step = s.clone();
            // Only needs from stage order are left to drop.
            step.needs.retain(|n| !excluded.contains_key(n));
            step
        })
        .collect();
    if options.sandboxed_only
        && let Some(step) = selected.iter().find(|s| !s.is_sandboxed())
    {
        return Err(RunError::Pipeline(pipeline.error(
            step.position,
            format!(
                "step `{}` runs host commands (`run:`), which --sandboxed-only refuses",
                step.name
            ),
        )));
    }
    Ok(selected)
}

/// Hold every step to the operator's policy before anything runs: a
/// pipeline asking for more than the machine allows fails at the step
/// that asks, naming the rule.
fn check_operator_policy(pipeline: &Pipeline, prepared: &mut [Prepared]) -> Result<(), RunError> {
    let policies = OperatorPolicies::load().map_err(|e| RunError::Usage(e.to_string()))?;
    for step in prepared {
        let verdict = if step.step.is_sandboxed() {
            policies.check(&mut step.grant)
        } else {
            policies.check_run_steps()
        };
        verdict.map_err(|violation| {
            pipeline.error(
                step.step.position,
                format!("step `{}`: {violation}", step.step.name),
            )
        })?;
    }
    Ok(())
}

/// Expand every `with:` value and cache key before anything runs, so a
/// missing variable stops the pipeline before its first step.
fn prepare(
    pipeline: &Pipeline,
    variables: &Variables,
    steps: &[Step],
) -> Result<Vec<Prepared>, RunError> {
    let mut prepared = Vec::new();
    for step in steps {
        let mut inputs = Vec::new();
        let mut grant = StepGrant::default();
        if let Action::Plugin {
            inputs: raw,
            grant: template,
            ..
        } = &step.action
        {
            grant =
                template
                    .expand(variables, &pipeline.project_dir)
                    .map_err(|(position, m)| {
                        pipeline.error(position, format!("step `{}`: allow: {m}", step.name))
                    })?;
            for (name, value) in raw {
                let expanded = variables.expand(&value.text).map_err(|m| {
                    pipeline.error(
                        value.position,
                        format!("step `{}`: with.{name}: {m}", step.name),
                    )
                })?;
                inputs.push((name.clone(), expanded));
            }
        }
        let cache_key = match &step.cache {
            Some(cache) => Some(
                variables
                    .expand_cache_key(&cache.key.text, &pipeline.project_dir)
                    .map_err(|m| {
                        pipeline.error(
                            cache.key.position,
                            format!("step `{}`: cache.key: {m}", step.name),
                        )
                    })?,
            ),
            None => None,
        };
        prepared.push(Prepared {
            step: step.clone(),
            inputs,
            grant,
            cache_key,
        });
    }
    Ok(prepared)
}
