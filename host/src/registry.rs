//! `kiln push`, `pull` and `login`: the built-in `registry` plugin run with
//! a grant the host computes from the reference (its registry by name, the
//! layout, the digest file's directory) — nothing else.

use std::path::{Path, PathBuf};

use kiln_grant::plugin::REGISTRY;
use kiln_grant::{HostPattern, MemorySize, ProcessEnv, StepGrant, ValueSource};
use kiln_oci::Reference;
use kiln_runtime::RuntimeConfig;
use kiln_runtime::credentials;
use kiln_runtime::plugins::PluginRef;
use kiln_runtime::policy::{Mount, StepDirs};
use kiln_runtime::report::StepResult;
use kiln_runtime::step::StepRequest;

use crate::{Error, Kiln};

/// Options every registry operation takes.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct RegistryOptions {
    /// Use plain HTTP (loopback registries always may).
    #[arg(long)]
    pub insecure: bool,
}

/// `kiln push`: an OCI image layout to a registry.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct PushOptions {
    /// The OCI image layout directory.
    pub layout: PathBuf,
    /// Where to push: REGISTRY/REPOSITORY[:TAG].
    pub reference: String,
    /// Write the pushed manifest digest to this file.
    #[arg(long, value_name = "FILE")]
    pub digest_file: Option<PathBuf>,
    /// Upload blobs in chunks of this size (e.g. 8MiB) instead of one request each.
    #[arg(long, value_name = "SIZE")]
    pub chunk_size: Option<MemorySize>,
    /// A repository of the same registry to mount existing blobs from (repeatable).
    #[arg(long, value_name = "REPOSITORY")]
    pub mount_from: Vec<String>,
    // Flattened options carry their own help; a doc comment here would
    // replace it, hence no doc comment.
    #[command(flatten)]
    #[allow(missing_docs)]
    pub registry: RegistryOptions,
}

/// `kiln pull`: an image into an OCI image layout.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct PullOptions {
    /// What to pull: REGISTRY/REPOSITORY[:TAG][@DIGEST].
    pub reference: String,
    /// The OCI image layout directory (created if missing).
    pub layout: PathBuf,
    /// The platform to pick from a multi-platform image.
    #[arg(long, default_value = "linux/amd64")]
    pub platform: String,
    // Flattened options carry their own help; a doc comment here would
    // replace it, hence no doc comment.
    #[command(flatten)]
    #[allow(missing_docs)]
    pub registry: RegistryOptions,
}

/// `kiln login`: credentials checked against a registry, then stored.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct LoginOptions {
    /// The registry host, e.g. registry.example.com:5000.
    pub registry: String,
    /// The user name.
    #[arg(long, short = 'u')]
    pub username: String,
    /// Read the password from standard input (the only way: never on the command line).
    #[arg(long, required = true)]
    pub password_stdin: bool,
    // Flattened options carry their own help; a doc comment here would
    // replace it, hence no doc comment.
    #[command(flatten)]
    #[allow(missing_docs)]
    pub registry_options: RegistryOptions,
}

/// The registry host a reference's API lives on, which the step is
/// granted by name: parsed as the plugin parses it (one reference type).
fn registry_of(reference: &str) -> Result<String, Error> {
    Ok(Reference::parse(reference)
        .map_err(Error::usage)?
        .api_host()
        .to_owned())
}

/// The directory and file name of a file the step writes, its directory
/// resolved (the step is granted that directory).
pub(crate) fn file_in_dir(file: &Path, what: &str) -> Result<(PathBuf, String), Error> {
    let (dir, name) = match (
        file.parent().filter(|p| !p.as_os_str().is_empty()),
        file.file_name(),
    ) {
        (dir, Some(name)) => (dir.unwrap_or(Path::new(".")), name),
        _ => {
            return Err(Error::usage(format!(
                "{what}{}: not a file name",
                file.display()
            )));
        }
    };
    let dir = dir.canonicalize().map_err(|_| {
        Error::usage(format!(
            "{what}{}: its directory does not exist",
            file.display()
        ))
    })?;
    Ok((dir, name.to_string_lossy().into_owned()))
}

impl Kiln {
    /// Run the built-in `registry` plugin granted `host` by name, with a
    /// scratch directory as workspace and output (it writes only where its
    /// grant says).
    async fn run_registry(
        &self,
        host: &str,
        mut inputs: Vec<(String, String)>,
        grant: StepGrant,
        mounts: Vec<Mount>,
        options: &RegistryOptions,
        values: &dyn ValueSource,
    ) -> Result<StepResult, Error> {
        let pattern: HostPattern = host.parse().map_err(Error::usage)?;
        let plugin = PluginRef::parse(REGISTRY).map_err(Error::usage)?;
        let scratch = tempfile::tempdir()
            .map_err(|e| Error::usage(format!("cannot create a scratch directory: {e}")))?;
        inputs.push(("insecure".into(), options.insecure.to_string()));
        let grant = StepGrant {
            net: vec![pattern],
            ..grant
        };
        let dirs = StepDirs {
            workspace: scratch.path().to_owned(),
            output: scratch.path().to_owned(),
            mounts,
            hidden: Vec::new(),
        };
        let request = StepRequest::new(REGISTRY, plugin, inputs, grant, dirs);
        self.run_request(request, values).await
    }

    /// `kiln push LAYOUT REF`: push an OCI image layout.
    pub async fn push(&self, options: &PushOptions) -> Result<StepResult, Error> {
        let layout = options.layout.canonicalize().map_err(|_| {
            Error::usage(format!(
                "{}: no such image layout directory",
                options.layout.display()
            ))
        })?;
        let mut inputs = vec![
            ("operation".to_owned(), "push".to_owned()),
            ("reference".to_owned(), options.reference.clone()),
            ("layout".to_owned(), layout.display().to_string()),
            (
                "chunk-size".to_owned(),
                options.chunk_size.map_or(0, |size| size.0).to_string(),
            ),
            ("mount-from".to_owned(), options.mount_from.join(",")),
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
        if let Some(file) = &options.digest_file {
            let (dir, name) = file_in_dir(file, "--digest-file ")?;
            inputs.push(("digest-file".into(), dir.join(name).display().to_string()));
            grant.write.push(dir);
        }
        self.run_registry(
            &registry_of(&options.reference)?,
            inputs,
            grant,
            mounts,
            &options.registry,
            &ProcessEnv,
        )
        .await
    }

    /// `kiln pull REF LAYOUT`: pull an image into an OCI image layout.
    pub async fn pull(&self, options: &PullOptions) -> Result<StepResult, Error> {
        let layout = &options.layout;
        std::fs::create_dir_all(layout)
            .map_err(|e| Error::usage(format!("{}: {e}", layout.display())))?;
        let layout = layout
            .canonicalize()
            .map_err(|_| Error::usage(format!("{}: cannot resolve", layout.display())))?;
        let _lock = kiln_store::lock_layout(&layout).map_err(Error::usage)?;
        let inputs = vec![
            ("operation".to_owned(), "pull".to_owned()),
            ("reference".to_owned(), options.reference.clone()),
            ("layout".to_owned(), layout.display().to_string()),
            ("platform".to_owned(), options.platform.clone()),
        ];
        let grant = StepGrant {
            write: vec![layout],
            ..StepGrant::default()
        };
        self.run_registry(
            &registry_of(&options.reference)?,
            inputs,
            grant,
            Vec::new(),
            &options.registry,
            &ProcessEnv,
        )
        .await
    }

    /// `kiln login REGISTRY -u USER --password-stdin`: check the
    /// credentials against the registry, then store them as `docker login`
    /// does. Returns where they were stored.
    pub async fn login(&self, options: &LoginOptions, password: &str) -> Result<PathBuf, Error> {
        let host = registry_host_of(&options.registry);
        let credential = credentials::Credential::Basic {
            username: options.username.clone(),
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
        self.run_registry(
            &host,
            inputs,
            StepGrant::default(),
            Vec::new(),
            &options.registry_options,
            &values,
        )
        .await?;
        credentials::store(&host, &options.username, password, &ProcessEnv).map_err(|e| {
            Error::Failed(format!("the credentials work but could not be stored: {e}"))
        })
    }
}

/// `kiln logout REGISTRY`: forget the credentials `kiln login` (or
/// `docker login`) stored for it. Returns the file they were removed
/// from, or `None` when there were none.
pub fn logout(registry: &str) -> Result<Option<PathBuf>, Error> {
    let host = registry_host_of(registry);
    credentials::remove(&host, &ProcessEnv)
        .map_err(|e| Error::Failed(format!("cannot remove the credentials for {host}: {e}")))
}

/// The host a `login`/`logout` argument names: `https://HOST/` → `HOST`.
fn registry_host_of(registry: &str) -> String {
    registry
        .split_once("://")
        .map_or(registry, |(_, rest)| rest)
        .trim_end_matches('/')
        .to_owned()
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
