//! The work behind each CLI subcommand. `main.rs` parses arguments and
//! calls these; they print results and return the process exit code.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Instant;

use serde::Serialize;

use crate::export;
use crate::inputs::display;
use crate::pipeline::Pipeline;
use crate::plugins::{self, PluginRef};
use crate::policy::{ProcessEnv, StepDirs, StepGrant};
use crate::runtime::{CapabilityKind, PluginInfo, Runtime, RuntimeConfig, StepFailure, ValueKind};
use crate::scheduler::{self, RunOptions};
use crate::step::{self, StepRequest};
use crate::ui::{HumanReporter, JsonReporter, Reporter, StepStatus};

/// Exit code when the step ran and failed.
pub const EXIT_FAILED: u8 = 1;
/// Exit code for bad usage, bad input or a plugin that cannot be loaded.
pub const EXIT_USAGE: u8 = 2;

fn reporter(json: bool) -> Arc<dyn Reporter> {
    if json {
        Arc::new(JsonReporter)
    } else {
        Arc::new(HumanReporter::new(
            std::env::var_os("KILN_VERBOSE").is_some(),
        ))
    }
}

fn runtime() -> Result<Runtime, ExitCode> {
    Runtime::new(RuntimeConfig::from_env()).map_err(|e| {
        eprintln!("kiln: cannot start the wasm runtime: {e}");
        ExitCode::from(EXIT_FAILED)
    })
}

fn fail(failure: &StepFailure) -> ExitCode {
    ExitCode::from(if failure.is_usage() {
        EXIT_USAGE
    } else {
        EXIT_FAILED
    })
}

/// `kiln plugin list`: built-ins with version and summary.
pub async fn plugin_list(json: bool) -> ExitCode {
    let runtime = match runtime() {
        Ok(r) => r,
        Err(code) => return code,
    };
    let mut infos = Vec::new();
    for builtin in plugins::builtins() {
        match describe(&runtime, &PluginRef::Builtin(builtin), json).await {
            Ok(info) => infos.push(info),
            Err(failure) => {
                eprintln!("kiln: built-in {}: {failure}", builtin.name);
                return fail(&failure);
            }
        }
    }
    if json {
        JsonReporter::emit(&infos);
    } else {
        let width = infos.iter().map(|i| i.name.len()).max().unwrap_or(0);
        for info in &infos {
            println!("{:width$}  {:8}  {}", info.name, info.version, info.summary);
        }
    }
    ExitCode::SUCCESS
}

async fn describe(
    runtime: &Runtime,
    plugin: &PluginRef,
    json: bool,
) -> Result<PluginInfo, StepFailure> {
    let loaded = step::load(runtime, plugin)?;
    step::describe(runtime, &loaded, &plugin.label(), reporter(json)).await
}

/// `kiln plugin inspect`: what `describe()` says.
pub async fn plugin_inspect(plugin: &str, json: bool) -> ExitCode {
    let plugin = match PluginRef::parse(plugin) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("kiln: {e}");
            return ExitCode::from(EXIT_USAGE);
        }
    };
    let runtime = match runtime() {
        Ok(r) => r,
        Err(code) => return code,
    };
    match describe(&runtime, &plugin, json).await {
        Ok(info) if json => {
            JsonReporter::emit(&info);
            ExitCode::SUCCESS
        }
        Ok(info) => {
            print!("{}", render_info(&info));
            ExitCode::SUCCESS
        }
        Err(failure) => {
            eprintln!("kiln: {}: {failure}", plugin.label());
            fail(&failure)
        }
    }
}

fn kind_name(kind: ValueKind) -> &'static str {
    match kind {
        ValueKind::Text => "text",
        ValueKind::Boolean => "boolean",
        ValueKind::Integer => "integer",
        ValueKind::Path => "path",
    }
}

fn capability_name(kind: CapabilityKind) -> &'static str {
    match kind {
        CapabilityKind::Read => "read",
        CapabilityKind::Write => "write",
        CapabilityKind::Net => "net",
        CapabilityKind::Env => "env",
        CapabilityKind::Secret => "secret",
    }
}

/// `describe()` data as the human-readable page `plugin inspect` prints.
pub fn render_info(info: &PluginInfo) -> String {
    let mut out = format!("{} {}\n{}\n", info.name, info.version, info.summary);
    out.push_str("\ninputs:\n");
    if info.inputs.is_empty() {
        out.push_str("  (none)\n");
    }
    for input in &info.inputs {
        let mut notes = Vec::new();
        if input.required {
            notes.push("required".to_owned());
        }
        if let Some(default) = &input.default {
            notes.push(format!("default {:?}", display(default)));
        }
        if input.secret {
            notes.push("secret".to_owned());
        }
        out.push_str(&format!(
            "  {:16} {:8} {}{}\n",
            input.name,
            kind_name(input.kind),
            input.description,
            if notes.is_empty() {
                String::new()
            } else {
                format!(" [{}]", notes.join(", "))
            }
        ));
    }
    out.push_str("\noutputs:\n");
    if info.outputs.is_empty() {
        out.push_str("  (none)\n");
    }
    for output in &info.outputs {
        out.push_str(&format!(
            "  {:16} {:8} {}\n",
            output.name,
            kind_name(output.kind),
            output.description
        ));
    }
    out.push_str("\ncapabilities:\n");
    if info.capabilities.is_empty() {
        out.push_str("  (none beyond the default grant)\n");
    }
    for capability in &info.capabilities {
        out.push_str(&format!(
            "  {:6} {:24} {}\n",
            capability_name(capability.kind),
            capability.target,
            capability.reason
        ));
    }
    out
}

/// Arguments of `kiln step`, already parsed.
#[derive(Debug, Clone)]
pub struct StepArgs {
    /// Built-in name or `.wasm` path.
    pub plugin: String,
    /// `name=value` pairs.
    pub inputs: Vec<(String, String)>,
    /// The grant from the `--allow-*`, `--env`, `--secret`, `--timeout`
    /// and `--memory` flags.
    pub grant: StepGrant,
    /// The workspace (default: the current directory).
    pub workspace: Option<PathBuf>,
    /// The output directory (default: `.kiln/out/<plugin>` in the workspace).
    pub output: Option<PathBuf>,
    /// JSON events instead of human output.
    pub json: bool,
}

#[derive(Serialize)]
#[serde(tag = "event", rename = "result")]
struct StepResultEvent<'a> {
    step: &'a str,
    ok: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    outputs: Option<std::collections::BTreeMap<&'a str, String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
    duration_ms: u128,
}

/// `kiln step`: run one plugin under a grant and print its outputs.
pub async fn step(args: StepArgs) -> ExitCode {
    let plugin = match PluginRef::parse(&args.plugin) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("kiln: {e}");
            return ExitCode::from(EXIT_USAGE);
        }
    };
    let name = plugin.label();
    let dirs = match step_dirs(&args, &name) {
        Ok(d) => d,
        Err(message) => {
            eprintln!("kiln: {message}");
            return ExitCode::from(EXIT_USAGE);
        }
    };
    let runtime = match runtime() {
        Ok(r) => r,
        Err(code) => return code,
    };
    let request = StepRequest {
        name: name.clone(),
        plugin,
        inputs: args.inputs,
        grant: args.grant,
        dirs,
        needs: Vec::new(),
        masked: Default::default(),
    };
    let started = Instant::now();
    let result = step::run(&runtime, &request, reporter(args.json), &ProcessEnv).await;
    let duration_ms = started.elapsed().as_millis();
    match result {
        Ok(outputs) => {
            if args.json {
                JsonReporter::emit(&StepResultEvent {
                    step: &name,
                    ok: true,
                    outputs: Some(
                        outputs
                            .iter()
                            .map(|o| (o.name.as_str(), display(&o.value)))
                            .collect(),
                    ),
                    error: None,
                    duration_ms,
                });
            } else {
                for output in &outputs {
                    println!("{}={}", output.name, display(&output.value));
                }
            }
            ExitCode::SUCCESS
        }
        Err(failure) => {
            if args.json {
                JsonReporter::emit(&StepResultEvent {
                    step: &name,
                    ok: false,
                    outputs: None,
                    error: Some(failure.to_string()),
                    duration_ms,
                });
            } else {
                eprintln!("kiln: step {name} {failure}");
            }
            fail(&failure)
        }
    }
}

fn step_dirs(args: &StepArgs, name: &str) -> Result<StepDirs, String> {
    let workspace = match &args.workspace {
        Some(dir) => dir.clone(),
        None => std::env::current_dir()
            .map_err(|e| format!("cannot read the current directory: {e}"))?,
    };
    let output = args
        .output
        .clone()
        .unwrap_or_else(|| workspace.join(".kiln").join("out").join(name));
    std::fs::create_dir_all(&output).map_err(|e| {
        format!(
            "cannot create the output directory {}: {e}",
            output.display()
        )
    })?;
    Ok(StepDirs {
        workspace,
        output,
        mounts: Vec::new(),
    })
}

/// Arguments of `kiln run`, already parsed.
#[derive(Debug, Clone)]
pub struct RunArgs {
    /// The pipeline file.
    pub file: PathBuf,
    /// How to run it.
    pub options: RunOptions,
    /// JSON events instead of human output.
    pub json: bool,
}

fn load_pipeline(file: &Path) -> Result<Pipeline, ExitCode> {
    Pipeline::load(file).map_err(|e| {
        eprintln!("kiln: {e}");
        ExitCode::from(EXIT_USAGE)
    })
}

/// `kiln run`: run a pipeline's steps.
pub async fn run(args: RunArgs) -> ExitCode {
    let pipeline = match load_pipeline(&args.file) {
        Ok(p) => Arc::new(p),
        Err(code) => return code,
    };
    let runtime = match runtime() {
        Ok(r) => Arc::new(r),
        Err(code) => return code,
    };
    match scheduler::run(
        pipeline,
        args.options,
        runtime,
        reporter(args.json),
        &ProcessEnv,
    )
    .await
    {
        Ok(steps) if steps.iter().all(|s| s.status == StepStatus::Ok) => ExitCode::SUCCESS,
        Ok(_) => ExitCode::from(EXIT_FAILED),
        Err(e) => {
            eprintln!("kiln: {e}");
            ExitCode::from(EXIT_USAGE)
        }
    }
}

/// `kiln export gitlab`: print the pipeline as a `.gitlab-ci.yml`.
pub fn export_gitlab(file: &Path) -> ExitCode {
    let pipeline = match load_pipeline(file) {
        Ok(p) => p,
        Err(code) => return code,
    };
    match export::gitlab(&pipeline) {
        Ok(yaml) => {
            print!("{yaml}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("kiln: {e}");
            ExitCode::from(EXIT_USAGE)
        }
    }
}
