//! The work behind each CLI subcommand. `main.rs` parses arguments and
//! calls these; they print results and return the process exit code.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Instant;

use serde::Serialize;

use crate::credentials;
use crate::export;
use crate::inputs::display;
use crate::pipeline::Pipeline;
use crate::plugins::{self, PluginRef};
use crate::policy::{HostPattern, Mount, ProcessEnv, StepDirs, StepGrant, ValueSource};
use crate::runtime::{CapabilityKind, PluginInfo, Runtime, RuntimeConfig, StepFailure, ValueKind};
use crate::scheduler::{self, RunOptions};
use crate::step::{self, StepRequest};
use crate::store::StoreRoot;
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
    let request = StepRequest {
        name,
        plugin,
        inputs: args.inputs,
        grant: args.grant,
        dirs,
        needs: Vec::new(),
        masked: Default::default(),
    };
    run_one(request, &ProcessEnv, args.json).await
}

/// Run one step request and print its outputs or its failure.
pub(crate) async fn run_one(
    request: StepRequest,
    values: &dyn ValueSource,
    json: bool,
) -> ExitCode {
    let runtime = match runtime() {
        Ok(r) => r,
        Err(code) => return code,
    };
    let name = request.name.clone();
    let started = Instant::now();
    let result = step::run(&runtime, &request, reporter(json), values).await;
    let duration_ms = started.elapsed().as_millis();
    let (outputs, error) = match &result {
        Ok(outputs) => (Some(outputs), None),
        Err(failure) => (None, Some(failure)),
    };
    if json {
        JsonReporter::emit(&StepResultEvent {
            step: &name,
            ok: error.is_none(),
            outputs: outputs.map(|o| {
                o.iter()
                    .map(|o| (o.name.as_str(), display(&o.value)))
                    .collect()
            }),
            error: error.map(ToString::to_string),
            duration_ms,
        });
    } else if let Some(outputs) = outputs {
        for output in outputs {
            println!("{}={}", output.name, display(&output.value));
        }
    }
    match error {
        None => ExitCode::SUCCESS,
        Some(failure) => {
            if !json {
                eprintln!("kiln: step {name} {failure}");
            }
            fail(failure)
        }
    }
}

fn step_dirs(args: &StepArgs, name: &str) -> Result<StepDirs, String> {
    let workspace = match &args.workspace {
        Some(dir) => dir.clone(),
        None => std::env::current_dir()
            .map_err(|e| format!("cannot read the current directory: {e}"))?,
    };
    // The default output lies in the workspace's store, which a checkout
    // could have made a symlink: it is reached without following one, and
    // the rest of the store stays hidden from the step.
    let store = workspace.join(".kiln");
    let output = match &args.output {
        Some(output) => {
            std::fs::create_dir_all(output).map_err(|e| {
                format!(
                    "cannot create the output directory {}: {e}",
                    output.display()
                )
            })?;
            output.clone()
        }
        None => StoreRoot::open(&store)
            .and_then(|root| root.dir(Path::new("out").join(name)))
            .map_err(|e| e.to_string())?,
    };
    Ok(StepDirs {
        workspace,
        output,
        mounts: Vec::new(),
        hidden: vec![store],
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

/// The registry host of an image reference, by docker's rules: the first
/// path component when it looks like a host, Docker Hub otherwise. The
/// plugin parses the reference fully; the host needs the registry only to
/// grant it.
pub(crate) fn registry_host(reference: &str) -> String {
    let name = reference.split('@').next().unwrap_or_default();
    match name.split_once('/') {
        Some((first, _)) if first.contains(['.', ':']) || first == "localhost" => first.to_owned(),
        _ => "registry-1.docker.io".to_owned(),
    }
}

/// Options shared by `kiln login`, `push` and `pull`.
#[derive(Debug, Clone, Default)]
pub struct RegistryOptions {
    /// Plain HTTP for a registry that is not on loopback.
    pub insecure: bool,
    /// JSON events instead of human output.
    pub json: bool,
}

/// Run the built-in `registry` plugin granted `host` by name, with a
/// scratch directory as workspace and output (it writes only where its
/// grant says).
async fn run_registry(
    host: &str,
    mut inputs: Vec<(String, String)>,
    grant: StepGrant,
    mounts: Vec<Mount>,
    options: &RegistryOptions,
    values: &dyn ValueSource,
) -> ExitCode {
    let pattern: HostPattern = match host.parse() {
        Ok(pattern) => pattern,
        Err(e) => return usage(e),
    };
    let plugin = match PluginRef::parse("registry") {
        Ok(plugin) => plugin,
        Err(e) => return usage(e),
    };
    let Ok(scratch) = tempfile::tempdir() else {
        return usage("cannot create a scratch directory");
    };
    inputs.push(("insecure".into(), options.insecure.to_string()));
    let request = StepRequest {
        name: "registry".into(),
        plugin,
        inputs,
        grant: StepGrant {
            net: vec![pattern],
            ..grant
        },
        dirs: StepDirs {
            workspace: scratch.path().to_owned(),
            output: scratch.path().to_owned(),
            mounts,
            hidden: Vec::new(),
        },
        needs: Vec::new(),
        masked: Default::default(),
    };
    run_one(request, values, options.json).await
}

fn usage(message: impl std::fmt::Display) -> ExitCode {
    eprintln!("kiln: {message}");
    ExitCode::from(EXIT_USAGE)
}

/// Arguments of `kiln push`, already parsed.
#[derive(Debug, Clone)]
pub struct PushArgs {
    /// The OCI image layout.
    pub layout: PathBuf,
    /// Where to push.
    pub reference: String,
    /// Where to write the pushed digest.
    pub digest_file: Option<PathBuf>,
    /// Chunked upload with chunks of this many bytes.
    pub chunk_size: Option<u64>,
    /// Repositories to mount existing blobs from.
    pub mount_from: Vec<String>,
}

/// `kiln push LAYOUT REF`: push an OCI image layout.
pub async fn push(args: PushArgs, options: RegistryOptions) -> ExitCode {
    let Ok(layout) = args.layout.canonicalize() else {
        return usage(format!(
            "{}: no such image layout directory",
            args.layout.display()
        ));
    };
    let mut inputs = vec![
        ("operation".to_owned(), "push".to_owned()),
        ("reference".to_owned(), args.reference.clone()),
        ("layout".to_owned(), layout.display().to_string()),
        (
            "chunk-size".to_owned(),
            args.chunk_size.unwrap_or(0).to_string(),
        ),
        ("mount-from".to_owned(), args.mount_from.join(",")),
    ];
    // A layout in kiln's own cache (what `kiln build --push` wrote there)
    // is mounted by kiln as plumbing; any other is the user's, granted and
    // held to the operator's policy like every grant.
    let in_kiln_cache = RuntimeConfig::from_env()
        .cache_dir
        .and_then(|dir| dir.canonicalize().ok())
        .is_some_and(|dir| layout.starts_with(dir));
    let mut mounts = Vec::new();
    let mut grant = StepGrant::default();
    if in_kiln_cache {
        mounts.push(Mount {
            guest: layout.display().to_string(),
            host: layout,
            writable: false,
        });
    } else {
        grant.read.push(layout);
    }
    if let Some(file) = &args.digest_file {
        let (dir, name) = match (
            file.parent().filter(|p| !p.as_os_str().is_empty()),
            file.file_name(),
        ) {
            (dir, Some(name)) => (dir.unwrap_or(Path::new(".")), name),
            _ => return usage(format!("--digest-file {}: not a file name", file.display())),
        };
        let Ok(dir) = dir.canonicalize() else {
            return usage(format!(
                "--digest-file {}: its directory does not exist",
                file.display()
            ));
        };
        inputs.push(("digest-file".into(), dir.join(name).display().to_string()));
        grant.write.push(dir);
    }
    run_registry(
        &registry_host(&args.reference),
        inputs,
        grant,
        mounts,
        &options,
        &ProcessEnv,
    )
    .await
}

/// `kiln pull REF LAYOUT`: pull an image into an OCI image layout.
pub async fn pull(
    reference: &str,
    layout: &Path,
    platform: &str,
    options: RegistryOptions,
) -> ExitCode {
    if let Err(e) = std::fs::create_dir_all(layout) {
        return usage(format!("{}: {e}", layout.display()));
    }
    let Ok(layout) = layout.canonicalize() else {
        return usage(format!("{}: cannot resolve", layout.display()));
    };
    let _lock = match crate::store::lock_layout(&layout) {
        Ok(lock) => lock,
        Err(e) => return usage(e),
    };
    let inputs = vec![
        ("operation".to_owned(), "pull".to_owned()),
        ("reference".to_owned(), reference.to_owned()),
        ("layout".to_owned(), layout.display().to_string()),
        ("platform".to_owned(), platform.to_owned()),
    ];
    let grant = StepGrant {
        write: vec![layout],
        ..StepGrant::default()
    };
    run_registry(
        &registry_host(reference),
        inputs,
        grant,
        Vec::new(),
        &options,
        &ProcessEnv,
    )
    .await
}

/// The process environment, plus the credentials being logged in with.
struct LoginValues {
    secret_name: String,
    secret: String,
}

impl ValueSource for LoginValues {
    fn get(&self, name: &str) -> Option<String> {
        if name == self.secret_name {
            Some(self.secret.clone())
        } else {
            ProcessEnv.get(name)
        }
    }
}

/// `kiln login REGISTRY -u USER --password-stdin`: check the credentials
/// against the registry, then store them as `docker login` does.
pub async fn login(
    registry: &str,
    username: &str,
    password: &str,
    options: RegistryOptions,
) -> ExitCode {
    let host = registry
        .split_once("://")
        .map_or(registry, |(_, rest)| rest)
        .trim_end_matches('/')
        .to_owned();
    let credential = credentials::Credential::Basic {
        username: username.to_owned(),
        password: password.to_owned(),
    };
    let values = LoginValues {
        secret_name: credentials::secret_name(&host),
        secret: credential.to_secret(),
    };
    let inputs = vec![
        ("operation".to_owned(), "login".to_owned()),
        ("reference".to_owned(), host.clone()),
    ];
    let code = run_registry(
        &host,
        inputs,
        StepGrant::default(),
        Vec::new(),
        &options,
        &values,
    )
    .await;
    if code != ExitCode::SUCCESS {
        return code;
    }
    match credentials::store(&host, username, password, &ProcessEnv) {
        Ok(path) => {
            eprintln!("Login Succeeded (credentials stored in {})", path.display());
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("kiln: the credentials work but could not be stored: {e}");
            ExitCode::from(EXIT_FAILED)
        }
    }
}
