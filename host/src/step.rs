//! `kiln step`: one plugin under an explicit grant.

use std::path::{Path, PathBuf};

use kiln_grant::{HostPattern, MemorySize, ProcessEnv, StepGrant, Timeout};
use kiln_runtime::plugins::PluginRef;
use kiln_runtime::policy::StepDirs;
use kiln_runtime::report::StepResult;
use kiln_runtime::step::StepRequest;
use kiln_store::StoreRoot;

use crate::{Error, Kiln};

/// What `kiln step` runs, and under which grant.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct StepOptions {
    /// A built-in name or a path to a .wasm component.
    pub plugin: String,
    /// An input, as NAME=VALUE (repeatable).
    #[arg(long = "input", short = 'i', value_name = "NAME=VALUE", value_parser = parse_input)]
    pub inputs: Vec<(String, String)>,
    /// Let the step read DIR (mounted at the same path).
    #[arg(long, value_name = "DIR")]
    pub allow_read: Vec<PathBuf>,
    /// Let the step write DIR (mounted at the same path).
    #[arg(long, value_name = "DIR")]
    pub allow_write: Vec<PathBuf>,
    /// Let the step send HTTP requests to HOST[:PORT] or *.SUFFIX[:PORT].
    #[arg(long, value_name = "HOST")]
    pub allow_net: Vec<HostPattern>,
    /// Pass the environment variable NAME to the step.
    #[arg(long, value_name = "NAME")]
    pub env: Vec<String>,
    /// Let the step read the secret NAME (its value comes from $NAME and is masked).
    #[arg(long, value_name = "NAME")]
    pub secret: Vec<String>,
    /// Wall-clock limit, e.g. 90s or 10m [default: 30m].
    #[arg(long, value_name = "DURATION")]
    pub timeout: Option<Timeout>,
    /// Memory limit, e.g. 512MiB [default: 2GiB, at most 4GiB].
    #[arg(long, value_name = "SIZE")]
    pub memory: Option<MemorySize>,
    /// The workspace, mounted read-only at /workspace [default: the current directory].
    #[arg(long, value_name = "DIR")]
    pub workspace: Option<PathBuf>,
    /// The writable output directory, mounted at /output [default: .kiln/out/PLUGIN].
    #[arg(long, value_name = "DIR")]
    pub output: Option<PathBuf>,
}

fn parse_input(text: &str) -> Result<(String, String), String> {
    text.split_once('=')
        .map(|(name, value)| (name.to_owned(), value.to_owned()))
        .ok_or_else(|| format!("`{text}` is not NAME=VALUE"))
}

impl StepOptions {
    /// The grant the `--allow-*`, `--env`, `--secret`, `--timeout` and
    /// `--memory` options give.
    pub fn grant(&self) -> StepGrant {
        StepGrant {
            read: self.allow_read.clone(),
            write: self.allow_write.clone(),
            net: self.allow_net.clone(),
            env: self.env.clone(),
            secrets: self.secret.clone(),
            timeout: self.timeout,
            memory: self.memory,
            ..StepGrant::default()
        }
    }

    fn dirs(&self, name: &str) -> Result<StepDirs, Error> {
        let workspace = match &self.workspace {
            Some(dir) => dir.clone(),
            None => std::env::current_dir()
                .map_err(|e| Error::usage(format!("cannot read the current directory: {e}")))?,
        };
        // The default output lies in the workspace's store, which a checkout
        // could have made a symlink: it is reached without following one, and
        // the rest of the store stays hidden from the step.
        let store = workspace.join(".kiln");
        let output = match &self.output {
            Some(output) => {
                std::fs::create_dir_all(output).map_err(|e| {
                    Error::usage(format!(
                        "cannot create the output directory {}: {e}",
                        output.display()
                    ))
                })?;
                output.clone()
            }
            None => StoreRoot::open(&store)
                .and_then(|root| root.dir(Path::new("out").join(name)))
                .map_err(Error::usage)?,
        };
        Ok(StepDirs {
            workspace,
            output,
            mounts: Vec::new(),
            hidden: vec![store],
        })
    }
}

impl Kiln {
    /// `kiln step`: run one plugin under the grant `options` give, with
    /// granted variables and secrets from the process environment.
    pub async fn run_step(&self, options: &StepOptions) -> Result<StepResult, Error> {
        let plugin = PluginRef::parse(&options.plugin).map_err(Error::usage)?;
        let name = plugin.label();
        let dirs = options.dirs(&name)?;
        let request = StepRequest::new(name, plugin, options.inputs.clone(), options.grant(), dirs);
        self.run_request(request, &ProcessEnv).await
    }
}
