//! The `kiln` command line: parses arguments, calls the library's
//! operations, prints their reports and maps errors to exit codes. The
//! only place that prints or exits.

mod render;
mod reporters;

use std::io::Read;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use clap::{Parser, Subcommand};

use kiln::image_build::BuildOptions;
use kiln::pipeline::{self, ExportOptions, RunOptions};
use kiln::registry::{LoginOptions, PullOptions, PushOptions};
use kiln::step::StepOptions;
use kiln::{Error, Kiln};
use kiln_runtime::report::Reporter;

use reporters::{HumanReporter, JsonReporter, QuietReporter};

/// Exit code when the work ran and failed.
const EXIT_FAILED: u8 = 1;
/// Exit code for bad usage, bad input or a plugin that cannot be loaded.
const EXIT_USAGE: u8 = 2;

/// Run CI build steps as sandboxed WebAssembly plugins.
#[derive(Parser)]
#[command(name = "kiln", version, about)]
struct Cli {
    /// An operator policy file capping what any step may be granted
    /// (repeatable; added to /etc/kiln/policy.yml and $KILN_POLICY).
    #[arg(long, global = true, value_name = "FILE")]
    policy: Vec<PathBuf>,
    /// Isolate RUN commands with this tier only (namespaces,
    /// chroot-landlock or ptrace); it must work here. Default: the
    /// strongest that works ($KILN_RUN_ISOLATION).
    #[arg(long, global = true, value_name = "TIER", value_parser = tier_name)]
    run_isolation: Option<String>,
    /// Accept chroot isolation without Landlock, which root can escape
    /// ($KILN_INSECURE_CHROOT=1).
    #[arg(long, global = true)]
    insecure_chroot: bool,
    #[command(subcommand)]
    command: Command,
}

/// `--run-isolation`'s value, checked when the command line is read.
fn tier_name(name: &str) -> Result<String, String> {
    kiln_executor::tier::Tier::parse(name)
        .map(|tier| tier.name().to_owned())
        .ok_or_else(|| "use namespaces, chroot-landlock or ptrace".to_owned())
}

/// How results are printed.
#[derive(clap::Args)]
struct Format {
    /// Print one JSON event per line instead of human output.
    #[arg(long)]
    json: bool,
    /// Print only the result (a build's image digest) and errors.
    #[arg(long, short = 'q', conflicts_with = "json")]
    quiet: bool,
    /// How to show progress: bars on a terminal (auto), bars (tty), lines
    /// (plain), or nothing (quiet, as -q).
    #[arg(long, value_enum, default_value_t = Progress::Auto)]
    progress: Progress,
}

/// `--progress` as buildx spells it.
#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Progress {
    /// Bars when standard error is a terminal, lines otherwise.
    Auto,
    /// Bars.
    Tty,
    /// Lines.
    Plain,
    /// Nothing but the result and errors.
    Quiet,
}

impl Format {
    fn quiet(&self) -> bool {
        self.quiet || self.progress == Progress::Quiet
    }

    fn reporter(&self) -> Arc<dyn Reporter> {
        if self.json {
            Arc::new(JsonReporter)
        } else if self.quiet() {
            Arc::new(QuietReporter)
        } else {
            let bars = match self.progress {
                Progress::Auto => HumanReporter::on_terminal(),
                Progress::Tty => true,
                Progress::Plain | Progress::Quiet => false,
            };
            Arc::new(HumanReporter::new(
                std::env::var_os("KILN_VERBOSE").is_some(),
                bars,
            ))
        }
    }
}

#[derive(Subcommand)]
enum Command {
    /// Inspect the available plugins.
    Plugin {
        #[command(subcommand)]
        command: PluginCommand,
    },
    /// Run one plugin as a step, under an explicit grant.
    Step {
        #[command(flatten)]
        options: Box<StepOptions>,
        #[command(flatten)]
        format: Format,
    },
    /// Check a pipeline file as `kiln run` does before its first step
    /// (plugins, inputs, variables, grants, Dockerfiles), running nothing.
    Check {
        #[command(flatten)]
        options: RunOptions,
        #[command(flatten)]
        format: Format,
    },
    /// Run a pipeline file.
    Run {
        #[command(flatten)]
        options: RunOptions,
        #[command(flatten)]
        format: Format,
    },
    /// Check credentials against a registry and store them like `docker login`.
    Login {
        #[command(flatten)]
        options: LoginOptions,
        #[command(flatten)]
        format: Format,
    },
    /// Push an OCI image layout to a registry.
    Push {
        #[command(flatten)]
        options: PushOptions,
        #[command(flatten)]
        format: Format,
    },
    /// Pull an image into an OCI image layout (only the blobs it lacks).
    Pull {
        #[command(flatten)]
        options: PullOptions,
        #[command(flatten)]
        format: Format,
    },
    /// Build a Dockerfile into an image, with no daemon and no privileges.
    Build {
        #[command(flatten)]
        options: Box<BuildOptions>,
        #[command(flatten)]
        format: Format,
    },
    /// Forget the credentials stored for a registry, like `docker logout`.
    Logout {
        /// The registry host, e.g. registry.example.com:5000.
        registry: String,
    },
    /// Translate a pipeline file for another CI system.
    Export {
        #[command(subcommand)]
        target: ExportTarget,
    },
}

#[derive(Subcommand)]
enum ExportTarget {
    /// Print a .gitlab-ci.yml: a job per step (an image build runs in the
    /// job of the push that needs it).
    Gitlab(ExportOptions),
}

#[derive(Subcommand)]
enum PluginCommand {
    /// List the built-in plugins.
    List(Format),
    /// Show a plugin's inputs, outputs and the capabilities it needs.
    Inspect {
        /// A built-in name or a path to a .wasm component.
        plugin: String,
        #[command(flatten)]
        format: Format,
    },
}

impl Command {
    /// How this command prints (`kiln export` has one way).
    fn format(&self) -> Option<&Format> {
        match self {
            Command::Step { format, .. }
            | Command::Check { format, .. }
            | Command::Run { format, .. }
            | Command::Login { format, .. }
            | Command::Push { format, .. }
            | Command::Pull { format, .. }
            | Command::Build { format, .. }
            | Command::Plugin {
                command: PluginCommand::List(format) | PluginCommand::Inspect { format, .. },
            } => Some(format),
            Command::Export { .. } | Command::Logout { .. } => None,
        }
    }
}

fn main() -> ExitCode {
    // kiln started as its own RUN helper: single-threaded, before any
    // runtime thread exists (see kiln_executor::helper).
    let mut args = std::env::args_os().skip(1);
    if args.next().as_deref() == Some(std::ffi::OsStr::new(kiln_executor::helper::HELPER_ARG)) {
        let spec = args.next().unwrap_or_default();
        let status = kiln_executor::helper::main(std::path::Path::new(&spec));
        return ExitCode::from(u8::try_from(status).unwrap_or(u8::MAX));
    }
    match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime.block_on(cli_main()),
        Err(e) => {
            eprintln!("kiln: cannot start: {e}");
            ExitCode::from(EXIT_FAILED)
        }
    }
}

async fn cli_main() -> ExitCode {
    let cli = Cli::parse();
    kiln_runtime::policy::operator::set_extra_files(cli.policy);
    kiln_runtime::policy::run::configure(cli.run_isolation, cli.insecure_chroot);
    let json = cli.command.format().is_some_and(|f| f.json);
    match run(cli.command).await {
        Ok(code) => code,
        Err(error) => {
            // In JSON mode a failed step has already been reported as a
            // result event.
            if !(json && matches!(error, Error::Step { .. })) {
                eprintln!("kiln: {error}");
            }
            ExitCode::from(if error.is_usage() {
                EXIT_USAGE
            } else {
                EXIT_FAILED
            })
        }
    }
}

/// The Dockerfile `-f -` names, read from standard input into a
/// directory of its own (which the build mounts like any Dockerfile
/// outside the context).
fn dockerfile_from_stdin() -> Result<tempfile::TempDir, Error> {
    let dir = tempfile::tempdir()
        .map_err(|e| Error::Failed(format!("cannot create a scratch directory: {e}")))?;
    let mut text = String::new();
    std::io::stdin()
        .read_to_string(&mut text)
        .map_err(|e| Error::Usage(format!("reading the Dockerfile from standard input: {e}")))?;
    std::fs::write(dir.path().join("Dockerfile"), text)
        .map_err(|e| Error::Failed(format!("writing the Dockerfile from standard input: {e}")))?;
    Ok(dir)
}

async fn run(command: Command) -> Result<ExitCode, Error> {
    let format = command.format();
    let json = format.is_some_and(|f| f.json);
    let quiet = format.is_some_and(Format::quiet);
    let kiln = Kiln::new(format.map_or_else(|| Arc::new(QuietReporter) as _, Format::reporter));
    match command {
        Command::Export {
            target: ExportTarget::Gitlab(options),
        } => print!("{}", pipeline::export_gitlab(&options)?),
        Command::Logout { registry } => match kiln::registry::logout(&registry)? {
            Some(file) => eprintln!(
                "Removed the credentials for {registry} from {}",
                file.display()
            ),
            None => eprintln!("Not logged in to {registry}"),
        },
        Command::Plugin {
            command: PluginCommand::List(_),
        } => {
            let infos = kiln.builtins().await?;
            if json {
                JsonReporter::emit(&infos);
            } else {
                print!("{}", render::plugin_table(&infos));
            }
        }
        Command::Plugin {
            command: PluginCommand::Inspect { plugin, .. },
        } => {
            let plugin = kiln_runtime::plugins::PluginRef::parse(&plugin)
                .map_err(|e| Error::Usage(e.to_string()))?;
            let inspection = kiln.inspect(&plugin).await?;
            if json {
                JsonReporter::emit(&inspection);
            } else {
                print!("{}", render::inspection(&inspection));
            }
        }
        Command::Step { options, .. } => {
            kiln.run_step(&options).await?;
        }
        Command::Check { options, .. } => {
            let steps = kiln.check_pipeline(&options).await?;
            if !quiet {
                eprintln!(
                    "{}: {} steps checked ({}), nothing kiln run would refuse before they start",
                    options.file.display(),
                    steps.len(),
                    steps.join(", ")
                );
            }
        }
        Command::Run { options, .. } => {
            if !kiln.run_pipeline(&options).await?.passed() {
                return Ok(ExitCode::from(EXIT_FAILED));
            }
        }
        Command::Login { options, .. } => {
            let mut password = String::new();
            std::io::stdin()
                .read_to_string(&mut password)
                .map_err(|e| {
                    Error::Usage(format!("reading the password from standard input: {e}"))
                })?;
            let password = password.trim_end_matches(['\n', '\r']);
            let stored = kiln.login(&options, password).await?;
            if !quiet {
                eprintln!(
                    "Login Succeeded (credentials stored in {})",
                    stored.display()
                );
            }
        }
        Command::Push { options, .. } => {
            kiln.push(&options).await?;
        }
        Command::Pull { options, .. } => {
            kiln.pull(&options).await?;
        }
        Command::Build { mut options, .. } => {
            let _stdin = match options.file.as_deref() {
                Some(path) if path == std::path::Path::new("-") => {
                    let dir = dockerfile_from_stdin()?;
                    options.file = Some(dir.path().join("Dockerfile"));
                    Some(dir)
                }
                _ => None,
            };
            if options.check {
                let dockerfile = kiln::image_build::check_only(&options)?;
                if !quiet {
                    eprintln!("{}: nothing the build would refuse", dockerfile.display());
                }
            } else {
                let report = kiln.build(&options).await?;
                if quiet {
                    println!("{}", report.digest().unwrap_or_default());
                }
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
