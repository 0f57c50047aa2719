//! The `kiln` command line: parses arguments and calls the library.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use std::io::Read;

use kiln::commands::{self, PushArgs, RegistryOptions, RunArgs, StepArgs};
use kiln::image_build;
use kiln::policy::{HostPattern, MemorySize, StepGrant, Timeout};
use kiln::scheduler::RunOptions;

/// Run CI build steps as sandboxed WebAssembly plugins.
#[derive(Parser)]
#[command(name = "kiln", version, about)]
struct Cli {
    /// An operator policy file capping what any step may be granted
    /// (repeatable; added to /etc/kiln/policy.yml and $KILN_POLICY).
    #[arg(long, global = true, value_name = "FILE")]
    policy: Vec<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Inspect the available plugins.
    Plugin {
        #[command(subcommand)]
        command: PluginCommand,
    },
    /// Run one plugin as a step, under an explicit grant.
    Step(Box<StepCli>),
    /// Run a pipeline file.
    Run(RunCli),
    /// Check credentials against a registry and store them like `docker login`.
    Login {
        /// The registry host, e.g. registry.example.com:5000.
        registry: String,
        /// The user name.
        #[arg(long, short = 'u')]
        username: String,
        /// Read the password from standard input (the only way: never on the command line).
        #[arg(long, required = true)]
        password_stdin: bool,
        #[command(flatten)]
        options: RegistryCli,
    },
    /// Push an OCI image layout to a registry.
    Push {
        /// The OCI image layout directory.
        layout: PathBuf,
        /// Where to push: REGISTRY/REPOSITORY[:TAG].
        reference: String,
        /// Write the pushed manifest digest to this file.
        #[arg(long, value_name = "FILE")]
        digest_file: Option<PathBuf>,
        /// Upload blobs in chunks of this size (e.g. 8MiB) instead of one request each.
        #[arg(long, value_name = "SIZE")]
        chunk_size: Option<MemorySize>,
        /// A repository of the same registry to mount existing blobs from (repeatable).
        #[arg(long, value_name = "REPOSITORY")]
        mount_from: Vec<String>,
        #[command(flatten)]
        options: RegistryCli,
    },
    /// Pull an image into an OCI image layout (only the blobs it lacks).
    Pull {
        /// What to pull: REGISTRY/REPOSITORY[:TAG][@DIGEST].
        reference: String,
        /// The OCI image layout directory (created if missing).
        layout: PathBuf,
        /// The platform to pick from a multi-platform image.
        #[arg(long, default_value = "linux/amd64")]
        platform: String,
        #[command(flatten)]
        options: RegistryCli,
    },
    /// Build a Dockerfile into an image, with no daemon and no privileges.
    Build(Box<BuildCli>),
    /// Translate a pipeline file for another CI system.
    Export {
        #[command(subcommand)]
        target: ExportTarget,
    },
}

#[derive(Subcommand)]
enum ExportTarget {
    /// Print a .gitlab-ci.yml with one job per step.
    Gitlab {
        /// The pipeline file.
        #[arg(default_value = "kiln.yml")]
        file: PathBuf,
    },
}

#[derive(clap::Args)]
struct BuildCli {
    /// The build context directory.
    context: PathBuf,
    /// The Dockerfile (default: CONTEXT/Dockerfile).
    #[arg(long, short = 'f')]
    file: Option<PathBuf>,
    /// Name the image REGISTRY/REPOSITORY:TAG (repeatable).
    #[arg(long, short = 't', value_name = "REFERENCE")]
    tag: Vec<String>,
    /// A build argument NAME=VALUE (repeatable).
    #[arg(long, value_name = "NAME=VALUE")]
    build_arg: Vec<String>,
    /// The stage to build (default: the last).
    #[arg(long)]
    target: Option<String>,
    /// The platform to build for.
    #[arg(long, default_value = "linux/amd64")]
    platform: String,
    /// Where to write the image: oci:DIR or docker-archive:FILE (repeatable).
    #[arg(long, short = 'o', value_name = "oci:DIR|docker-archive:FILE")]
    output: Vec<image_build::Output>,
    /// Push the image to every -t reference.
    #[arg(long)]
    push: bool,
    /// Layer compression: gzip or zstd.
    #[arg(long, default_value = "gzip")]
    compression: String,
    /// Let the build reach HOST[:PORT] even on a loopback or private
    /// address (repeatable). Registries the Dockerfile names are otherwise
    /// reached on public addresses only: the Dockerfile is untrusted input.
    #[arg(long, value_name = "HOST[:PORT]")]
    allow_net: Vec<HostPattern>,
    #[command(flatten)]
    options: RegistryCli,
}

#[derive(clap::Args)]
struct RegistryCli {
    /// Use plain HTTP (loopback registries always may).
    #[arg(long)]
    insecure: bool,
    /// Print one JSON event per line instead of human output.
    #[arg(long)]
    json: bool,
}

impl RegistryCli {
    fn options(&self) -> RegistryOptions {
        RegistryOptions {
            insecure: self.insecure,
            json: self.json,
        }
    }
}

#[derive(clap::Args)]
struct RunCli {
    /// The pipeline file.
    #[arg(default_value = "kiln.yml")]
    file: PathBuf,
    /// Run only this step (repeatable); the artifacts of steps it needs must already be in the artifacts directory.
    #[arg(long = "step", value_name = "NAME")]
    steps: Vec<String>,
    /// Where artifacts, cache and scratch files live [default: .kiln in the project].
    #[arg(long, value_name = "DIR")]
    artifacts_dir: Option<PathBuf>,
    /// How many steps may run at once [default: the number of CPUs].
    #[arg(long, short = 'j', value_name = "N")]
    jobs: Option<usize>,
    /// Refuse steps that run host commands (`run:`).
    #[arg(long)]
    sandboxed_only: bool,
    /// Print one JSON event per line instead of human output.
    #[arg(long)]
    json: bool,
}

#[derive(Subcommand)]
enum PluginCommand {
    /// List the built-in plugins.
    List {
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Show a plugin's inputs, outputs and the capabilities it needs.
    Inspect {
        /// A built-in name or a path to a .wasm component.
        plugin: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

#[derive(clap::Args)]
struct StepCli {
    /// A built-in name or a path to a .wasm component.
    plugin: String,
    /// An input, as NAME=VALUE (repeatable).
    #[arg(long = "input", short = 'i', value_name = "NAME=VALUE", value_parser = parse_input)]
    inputs: Vec<(String, String)>,
    /// Let the step read DIR (mounted at the same path).
    #[arg(long, value_name = "DIR")]
    allow_read: Vec<PathBuf>,
    /// Let the step write DIR (mounted at the same path).
    #[arg(long, value_name = "DIR")]
    allow_write: Vec<PathBuf>,
    /// Let the step send HTTP requests to HOST[:PORT] or *.SUFFIX[:PORT].
    #[arg(long, value_name = "HOST")]
    allow_net: Vec<HostPattern>,
    /// Pass the environment variable NAME to the step.
    #[arg(long, value_name = "NAME")]
    env: Vec<String>,
    /// Let the step read the secret NAME (its value comes from $NAME and is masked).
    #[arg(long, value_name = "NAME")]
    secret: Vec<String>,
    /// Wall-clock limit, e.g. 90s or 10m [default: 30m].
    #[arg(long, value_name = "DURATION")]
    timeout: Option<Timeout>,
    /// Memory limit, e.g. 512MiB [default: 2GiB, at most 4GiB].
    #[arg(long, value_name = "SIZE")]
    memory: Option<MemorySize>,
    /// The workspace, mounted read-only at /workspace [default: the current directory].
    #[arg(long, value_name = "DIR")]
    workspace: Option<PathBuf>,
    /// The writable output directory, mounted at /output [default: .kiln/out/PLUGIN].
    #[arg(long, value_name = "DIR")]
    output: Option<PathBuf>,
    /// Print one JSON event per line instead of human output.
    #[arg(long)]
    json: bool,
}

fn parse_input(text: &str) -> Result<(String, String), String> {
    text.split_once('=')
        .map(|(name, value)| (name.to_owned(), value.to_owned()))
        .ok_or_else(|| format!("`{text}` is not NAME=VALUE"))
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    kiln::policy::operator::set_extra_files(cli.policy);
    match cli.command {
        Command::Plugin {
            command: PluginCommand::List { json },
        } => commands::plugin_list(json).await,
        Command::Plugin {
            command: PluginCommand::Inspect { plugin, json },
        } => commands::plugin_inspect(&plugin, json).await,
        Command::Run(run) => {
            let jobs = run
                .jobs
                .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
            commands::run(RunArgs {
                file: run.file,
                options: RunOptions {
                    only: run.steps,
                    artifacts_dir: run.artifacts_dir,
                    jobs,
                    sandboxed_only: run.sandboxed_only,
                },
                json: run.json,
            })
            .await
        }
        Command::Login {
            registry,
            username,
            password_stdin: _,
            options,
        } => {
            let mut password = String::new();
            if let Err(e) = std::io::stdin().read_to_string(&mut password) {
                eprintln!("kiln: reading the password from standard input: {e}");
                return ExitCode::from(commands::EXIT_USAGE);
            }
            let password = password.trim_end_matches(['\n', '\r']);
            commands::login(&registry, &username, password, options.options()).await
        }
        Command::Push {
            layout,
            reference,
            digest_file,
            chunk_size,
            mount_from,
            options,
        } => {
            let push = PushArgs {
                layout,
                reference,
                digest_file,
                chunk_size: chunk_size.map(|size| size.0),
                mount_from,
            };
            commands::push(push, options.options()).await
        }
        Command::Pull {
            reference,
            layout,
            platform,
            options,
        } => commands::pull(&reference, &layout, &platform, options.options()).await,
        Command::Build(cli) => {
            let cli = *cli;
            image_build::build(image_build::BuildArgs {
                context: cli.context,
                file: cli.file,
                tags: cli.tag,
                build_args: cli.build_arg,
                target: cli.target,
                platform: cli.platform,
                outputs: cli.output,
                push: cli.push,
                compression: cli.compression,
                allow_net: cli.allow_net,
                registry: cli.options.options(),
            })
            .await
        }
        Command::Export {
            target: ExportTarget::Gitlab { file },
        } => commands::export_gitlab(&file),
        Command::Step(step) => {
            let step = *step;
            let grant = StepGrant {
                read: step.allow_read,
                write: step.allow_write,
                net: step.allow_net,
                env: step.env,
                secrets: step.secret,
                timeout: step.timeout,
                memory: step.memory,
                ..StepGrant::default()
            };
            commands::step(StepArgs {
                plugin: step.plugin,
                inputs: step.inputs,
                grant,
                workspace: step.workspace,
                output: step.output,
                json: step.json,
            })
            .await
        }
    }
}
