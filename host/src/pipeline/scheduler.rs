//! Running a pipeline: expand what the steps need up front, then run the
//! DAG with tokio — independent steps concurrently, at most `jobs` at once;
//! the first failure cancels running steps and skips their dependents.

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use tokio::task::JoinSet;

use kiln_grant::ValueSource;
use kiln_pipeline::{Action, Pipeline, Step, Variables};
use kiln_runtime::Runtime;
use kiln_runtime::inputs::{display, json};
use kiln_runtime::log::StepLog;
use kiln_runtime::plugins::PluginRef;
use kiln_runtime::policy::{GUEST_WORKSPACE, Mount, StepDirs, guest_artifact_path};
use kiln_runtime::report::{Level, Reporter, StepStatus, StepSummary};
use kiln_runtime::step::{self, StepRequest};
use kiln_store::{ArtifactStore, CacheStore, StoreRoot, select_files};

use super::RunOptions;
use super::check::{self, Checked, Prepared, RunError};
use super::shell;

/// A step's outputs by name, typed as in JSON.
type Outputs = std::collections::BTreeMap<String, serde_json::Value>;

/// What a finished step hands its summary: outputs, and the isolation its
/// RUN commands had.
type Finished = (Outputs, Option<String>);

/// What every step task shares.
struct Shared {
    pipeline: Arc<Pipeline>,
    variables: Arc<Variables>,
    runtime: Arc<Runtime>,
    reporter: Arc<dyn Reporter>,
    artifacts: ArtifactStore,
    cache: CacheStore,
    store: StoreRoot,
}

/// Run `pipeline`. Returns every selected step's summary (the run failed
/// if any is not ok), or why the pipeline could not start. Steps that
/// their `rules:` exclude are not selected: the reporter shows them as
/// skipped, and they do not fail the run.
pub async fn run(
    pipeline: Arc<Pipeline>,
    options: &RunOptions,
    runtime: Arc<Runtime>,
    reporter: Arc<dyn Reporter>,
    env: &dyn ValueSource,
) -> Result<Vec<StepSummary>, RunError> {
    let Checked {
        variables,
        excluded,
        selected,
        prepared,
    } = check::check(&pipeline, options, &runtime, &reporter, env).await?;
    // A checkout can hold a symlink where the store goes: the store is
    // opened without following one, and refused if it is one.
    let store = StoreRoot::open(
        &options
            .artifacts_dir
            .clone()
            .unwrap_or_else(|| pipeline.project_dir.join(".kiln")),
    )
    .map_err(|e| RunError::Usage(e.to_string()))?;
    let root = store.path().to_owned();
    // Two runs of one project would clear each other's work: they take
    // turns on the store.
    let _lock = kiln_store::lock_dir(&root, true, || {
        reporter.log(
            "kiln",
            Level::Info,
            &format!("waiting for another kiln run using {}", root.display()),
            &[],
        )
    })
    .map_err(|e| RunError::Usage(e.to_string()))?;
    let artifacts = ArtifactStore::new(&root);
    let chosen: HashSet<&str> = selected.iter().map(|s| s.name.as_str()).collect();
    for step in &selected {
        for need in step.needs.iter().filter(|n| !chosen.contains(n.as_str())) {
            artifacts.manifest(need).map_err(|e| {
                RunError::Usage(format!(
                    "step `{}` needs step `{need}`, which is not selected: {e}",
                    step.name
                ))
            })?;
        }
    }

    let shared = Arc::new(Shared {
        cache: CacheStore::new(&root),
        artifacts,
        pipeline: pipeline.clone(),
        variables,
        runtime,
        reporter: reporter.clone(),
        store,
    });
    // `--step` never names an excluded step (`select` refused it), so
    // excluded steps are shown only when the whole pipeline runs.
    let left_out: Vec<StepSummary> = pipeline
        .steps
        .iter()
        .filter(|_| options.only.is_empty())
        .filter_map(|s| {
            excluded
                .get(&s.name)
                .map(|why| skipped(s, Some(&why.reason)))
        })
        .collect();
    for summary in &left_out {
        reporter.step_finished(summary);
    }
    let summaries = schedule(shared, prepared, &chosen, options.jobs().max(1)).await;
    let mut all: Vec<StepSummary> = summaries.iter().cloned().chain(left_out).collect();
    all.sort_by_key(|s| pipeline.steps.iter().position(|p| p.name == s.step));
    reporter.pipeline_finished(&all);
    Ok(summaries)
}

async fn schedule(
    shared: Arc<Shared>,
    steps: Vec<Prepared>,
    chosen: &HashSet<&str>,
    jobs: usize,
) -> Vec<StepSummary> {
    let order: Vec<String> = steps.iter().map(|p| p.step.name.clone()).collect();
    let mut pending: Vec<Prepared> = steps;
    let mut status: HashMap<String, StepSummary> = HashMap::new();
    let mut running = JoinSet::new();
    let mut running_names: HashMap<tokio::task::Id, (String, String, bool, Instant)> =
        HashMap::new();
    let mut failed = false;

    loop {
        if !failed {
            let mut index = 0;
            while index < pending.len() && running.len() < jobs {
                let ready = pending[index]
                    .step
                    .needs
                    .iter()
                    .filter(|n| chosen.contains(n.as_str()))
                    .all(|n| status.get(n).is_some_and(|s| s.status == StepStatus::Ok));
                if !ready {
                    index += 1;
                    continue;
                }
                let prepared = pending.remove(index);
                let step = &prepared.step;
                shared
                    .reporter
                    .step_started(&step.name, &step.stage, step.is_sandboxed());
                let meta = (
                    step.name.clone(),
                    step.stage.clone(),
                    step.is_sandboxed(),
                    Instant::now(),
                );
                let task_shared = shared.clone();
                let handle = running.spawn(async move { execute(&task_shared, &prepared).await });
                running_names.insert(handle.id(), meta);
            }
        }
        let Some(joined) = running.join_next_with_id().await else {
            break;
        };
        let (id, result) = match joined {
            Ok((id, result)) => (id, result.map_err(Some)),
            // A step whose task panicked failed; one that was aborted was
            // cancelled.
            Err(error) if error.is_panic() => (
                error.id(),
                Err(Some(
                    "kiln itself panicked while running the step".to_owned(),
                )),
            ),
            Err(error) => (error.id(), Err(None)),
        };
        let (name, stage, sandboxed, started) =
            running_names.remove(&id).expect("every task is named");
        let (status_now, error, (outputs, isolation)) = match result {
            Ok(finished) => (StepStatus::Ok, None, finished),
            Err(Some(message)) => (StepStatus::Failed, Some(message), Finished::default()),
            Err(None) => (
                StepStatus::Cancelled,
                Some("cancelled: another step failed".to_owned()),
                Finished::default(),
            ),
        };
        let summary = StepSummary {
            step: name.clone(),
            stage,
            sandboxed,
            status: status_now,
            duration_ms: started.elapsed().as_millis(),
            error,
            excluded: None,
            outputs,
            isolation,
        };
        shared.reporter.step_finished(&summary);
        if status_now == StepStatus::Failed && !failed {
            failed = true;
            running.abort_all();
        }
        status.insert(name, summary);
    }
    for prepared in pending {
        let summary = skipped(&prepared.step, None);
        shared.reporter.step_finished(&summary);
        status.insert(prepared.step.name.clone(), summary);
    }
    order
        .into_iter()
        .filter_map(|name| status.remove(&name))
        .collect()
}

/// The summary of a step that did not start: a step it needs failed, or
/// its rules `excluded` it.
fn skipped(step: &Step, excluded: Option<&str>) -> StepSummary {
    StepSummary {
        step: step.name.clone(),
        stage: step.stage.clone(),
        sandboxed: step.is_sandboxed(),
        status: StepStatus::Skipped,
        duration_ms: 0,
        error: None,
        excluded: excluded.map(str::to_owned),
        outputs: Outputs::new(),
        isolation: None,
    }
}

/// Run one step and store what it hands on. A plugin step's outputs come
/// back (typed, masked); a failure is a masked one-line reason.
async fn execute(shared: &Shared, prepared: &Prepared) -> Result<Finished, String> {
    let step = &prepared.step;
    let project = &shared.pipeline.project_dir;
    let mask = shared.variables.mask();
    let log = Arc::new(StepLog::new(
        &step.name,
        shared.reporter.clone(),
        mask.clone(),
        u64::MAX,
    ));
    let result: Result<Finished, String> = match &step.action {
        Action::Shell { commands, timeout } => {
            for need in &step.needs {
                let manifest = shared.artifacts.manifest(need).map_err(|e| e.to_string())?;
                shared
                    .artifacts
                    .restore(&manifest, project)
                    .map_err(|e| e.to_string())?;
            }
            restore_cache(shared, prepared, project, &log);
            let env = shared
                .variables
                .iter()
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .collect::<Vec<_>>();
            shell::run(commands, project, env.into_iter(), *timeout, log.clone()).await?;
            save_artifacts(shared, step, project, &log)?;
            save_cache(shared, prepared, project, &log);
            Ok(Finished::default())
        }
        Action::Plugin { plugin, .. } => {
            let fresh = |area: &str| {
                shared
                    .store
                    .fresh_dir(Path::new(area).join(&step.name))
                    .map_err(|e| e.to_string())
            };
            let work = fresh("work")?;
            let output = fresh("out")?;
            let mut mounts = Vec::new();
            for need in &step.needs {
                let host = work.join("needs").join(need);
                let manifest = shared.artifacts.manifest(need).map_err(|e| e.to_string())?;
                shared
                    .artifacts
                    .restore(&manifest, &host)
                    .map_err(|e| e.to_string())?;
                std::fs::create_dir_all(&host).map_err(|e| format!("{}: {e}", host.display()))?;
                mounts.push(Mount {
                    host,
                    guest: guest_artifact_path(need),
                    writable: false,
                });
            }
            let cache_dir = work.join("cache");
            if let Some(cache) = &step.cache {
                restore_cache(shared, prepared, &cache_dir, &log);
                for path in &cache.paths {
                    let host = cache_dir.join(path);
                    std::fs::create_dir_all(&host)
                        .map_err(|e| format!("{}: {e}", host.display()))?;
                    mounts.push(Mount {
                        host,
                        guest: format!("{}/{path}", GUEST_WORKSPACE),
                        writable: true,
                    });
                }
            }
            let plugin = PluginRef::resolve(plugin).map_err(|e| e.to_string())?;
            let mut request = StepRequest::new(
                &step.name,
                plugin,
                prepared.inputs.clone(),
                prepared.grant.clone(),
                StepDirs {
                    workspace: project.clone(),
                    output: output.clone(),
                    mounts,
                    // Other steps' artifacts, output and caches stay out of
                    // sight: the step sees its needs at /artifacts only.
                    hidden: vec![shared.store.path().to_owned()],
                },
            );
            request.needs = step.needs.clone();
            request.masked = mask.clone();
            let values: &dyn ValueSource = shared.variables.as_ref();
            let called = step::run(&shared.runtime, &request, shared.reporter.clone(), values)
                .await
                .map_err(|e| e.to_string())?;
            let outputs = called.value;
            for output in &outputs {
                log.host(
                    Level::Info,
                    &format!("output {}={}", output.name, display(&output.value)),
                );
            }
            save_artifacts(shared, step, &output, &log)?;
            save_cache(shared, prepared, &cache_dir, &log);
            Ok((
                outputs
                    .iter()
                    .map(|o| (o.name.clone(), json(&o.value)))
                    .collect(),
                called.isolation.map(str::to_owned),
            ))
        }
    };
    result.map_err(|message| mask.apply(&message))
}

/// Store the step's artifact: `artifacts.paths` under `base`, or, for a
/// plugin step without `artifacts:`, its whole output directory. A `run:`
/// step without `artifacts:` stores an empty one, which records that it
/// ran, so steps that need it can run elsewhere.
fn save_artifacts(shared: &Shared, step: &Step, base: &Path, log: &StepLog) -> Result<(), String> {
    let (paths, exclude, name) = match &step.artifacts {
        Some(a) => (a.paths.clone(), a.exclude.clone(), a.name.clone()),
        None if step.is_sandboxed() => (vec!["**".to_owned()], Vec::new(), None),
        None => (Vec::new(), Vec::new(), None),
    };
    let files = select_files(base, &paths, &exclude).map_err(|e| e.to_string())?;
    if files.is_empty() && step.artifacts.is_some() {
        return Err(format!(
            "`artifacts.paths` ({}) matched no files in {}",
            paths.join(", "),
            base.display()
        ));
    }
    let manifest = shared
        .artifacts
        .save(&step.name, name, base, &files)
        .map_err(|e| e.to_string())?;
    if !manifest.files.is_empty() {
        let bytes: u64 = manifest.files.iter().map(|f| f.size).sum();
        log.host(
            Level::Info,
            &format!("artifact: {} files, {bytes} bytes", manifest.files.len()),
        );
    }
    Ok(())
}

/// Restore the step's cache into `into`; a missing or unreadable entry is
/// a cold start, not a failure.
fn restore_cache(shared: &Shared, prepared: &Prepared, into: &Path, log: &StepLog) {
    let (Some(cache), Some(key)) = (&prepared.step.cache, &prepared.cache_key) else {
        return;
    };
    match shared.cache.restore(key, &cache.paths, into) {
        Ok(true) => log.host(Level::Info, &format!("cache {key} restored")),
        Ok(false) => log.host(Level::Info, &format!("cache {key} is empty; starting cold")),
        Err(e) => log.host(Level::Warn, &format!("cache {key} not restored: {e}")),
    }
}

/// The cache is only a speed-up: failing to save it is a warning.
fn save_cache(shared: &Shared, prepared: &Prepared, from: &Path, log: &StepLog) {
    if let (Some(cache), Some(key)) = (&prepared.step.cache, &prepared.cache_key)
        && let Err(e) = shared.cache.save(key, &cache.paths, from)
    {
        log.host(Level::Warn, &format!("cache {key} not saved: {e}"));
    }
}
