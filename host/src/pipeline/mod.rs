//! `kiln run` and `kiln export`: a pipeline file, loaded and checked
//! against the built-ins this binary embeds, then checked ([`check`]: all
//! that can be known before a step runs), run ([`scheduler`], with
//! [`shell`] for `run:` steps) or translated.

pub mod check;
pub mod scheduler;
pub mod shell;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use kiln_grant::ProcessEnv;
use kiln_pipeline::{Pipeline, export};
use kiln_runtime::plugins;
use kiln_runtime::report::{StepStatus, StepSummary};

use crate::{Error, Kiln};

/// `kiln run`: which pipeline, which of its steps, and how.
#[derive(Debug, Clone, clap::Args)]
pub struct RunOptions {
    /// The pipeline file.
    #[arg(default_value = "kiln.yml")]
    pub file: PathBuf,
    /// Run only this step (repeatable); the artifacts of steps it needs must already be in the artifacts directory.
    #[arg(long = "step", value_name = "NAME")]
    pub only: Vec<String>,
    /// Where artifacts, cache and scratch files live [default: .kiln in the project].
    #[arg(long, value_name = "DIR")]
    pub artifacts_dir: Option<PathBuf>,
    /// How many steps may run at once [default: the number of CPUs].
    #[arg(long, short = 'j', value_name = "N")]
    pub jobs: Option<usize>,
    /// Refuse steps that run host commands (`run:`).
    #[arg(long)]
    pub sandboxed_only: bool,
}

impl RunOptions {
    /// The steps that may run at once.
    pub fn jobs(&self) -> usize {
        self.jobs
            .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
    }
}

/// What `kiln run` did: each selected step's summary.
#[derive(Debug, Clone)]
pub struct PipelineReport {
    /// Every selected step, in pipeline order.
    pub steps: Vec<StepSummary>,
}

impl PipelineReport {
    /// Whether every step succeeded.
    pub fn passed(&self) -> bool {
        self.steps.iter().all(|s| s.status == StepStatus::Ok)
    }
}

/// Read the pipeline at `file` and check the built-ins it names.
pub fn load_pipeline(file: &Path) -> Result<Pipeline, Error> {
    let pipeline = Pipeline::load(file)?;
    pipeline.check_builtins(&plugins::names())?;
    Ok(pipeline)
}

/// `kiln export gitlab`: which pipeline, and how its jobs run on GitLab.
#[derive(Debug, Clone, clap::Args)]
pub struct ExportOptions {
    /// The pipeline file.
    #[arg(default_value = "kiln.yml")]
    pub file: PathBuf,
    /// The image every job runs in, one with kiln on its PATH (written as
    /// `default: image:`).
    #[arg(long, value_name = "REFERENCE")]
    pub image: Option<String>,
    /// How long GitLab keeps each job's hand-off to the next.
    #[arg(long, value_name = "DURATION", default_value = "1 day")]
    pub expire_in: String,
}

/// `kiln export gitlab`: the pipeline as a `.gitlab-ci.yml`.
pub fn export_gitlab(options: &ExportOptions) -> Result<String, Error> {
    let gitlab = export::GitlabOptions {
        image: options.image.clone(),
        expire_in: options.expire_in.clone(),
    };
    Ok(export::gitlab(&load_pipeline(&options.file)?, &gitlab)?)
}

impl Kiln {
    /// `kiln run`: run a pipeline's steps; granted variables and secrets
    /// come from its variables and the process environment.
    pub async fn run_pipeline(&self, options: &RunOptions) -> Result<PipelineReport, Error> {
        let pipeline = Arc::new(load_pipeline(&options.file)?);
        let steps = scheduler::run(
            pipeline,
            options,
            self.runtime()?.clone(),
            self.reporter().clone(),
            &ProcessEnv,
        )
        .await?;
        Ok(PipelineReport { steps })
    }

    /// `kiln check`: everything `kiln run` checks before its first step
    /// (see [`check`]), running nothing. Returns the steps checked.
    pub async fn check_pipeline(&self, options: &RunOptions) -> Result<Vec<String>, Error> {
        let pipeline = load_pipeline(&options.file)?;
        let checked = check::check(
            &pipeline,
            options,
            self.runtime()?,
            self.reporter(),
            &ProcessEnv,
        )
        .await?;
        Ok(checked.selected.into_iter().map(|s| s.name).collect())
    }
}
