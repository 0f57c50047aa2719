//! `kiln build`: docker-buildx-like command line over the
//! `dockerfile-build` plugin, and the push of its result through the
//! `registry` plugin.
//!
//! The host decides the grant: the build context read-only as workspace,
//! the output layout writable, a directory of the Dockerfile when it lies
//! outside the context, and the registries named by `FROM` and
//! `COPY --from` (found by `kiln_dockerfile::check`, the stage evaluation
//! the plugin itself builds with) — nothing else.

use std::path::{Path, PathBuf};

use kiln_grant::plugin::DOCKERFILE_BUILD;
use kiln_grant::{HostPattern, ProcessEnv, StepGrant};
use kiln_oci::Reference;
use kiln_runtime::RuntimeConfig;
use kiln_runtime::plugins::PluginRef;
use kiln_runtime::policy::{GUEST_OUTPUT, Mount, StepDirs};
use kiln_runtime::report::StepResult;
use kiln_runtime::step::StepRequest;

use crate::registry::{PushOptions, RegistryOptions, file_in_dir};
use crate::{Error, Kiln};

/// Where an image goes, as `--output` names it: kiln's `oci:DIR` and
/// `docker-archive:FILE`, or buildx's `type=…,dest=…`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Output {
    /// `oci:DIR`: an OCI image layout.
    Oci(PathBuf),
    /// `docker-archive:FILE`: a `docker save` tar.
    DockerArchive(PathBuf),
    /// `type=registry`: push to every `-t` reference (as `--push`).
    Registry,
}

impl Output {
    /// buildx's form: `type=oci,dest=DIR,tar=false`, `type=docker,dest=FILE`,
    /// `type=registry` (or `type=image,push=true`). Types kiln does not
    /// write are refused naming what to use instead.
    fn from_buildx(text: &str) -> Result<Output, String> {
        let mut fields = std::collections::BTreeMap::new();
        for field in text.split(',') {
            let (key, value) = field
                .split_once('=')
                .ok_or_else(|| format!("`{field}` in `{text}` is not KEY=VALUE"))?;
            let key = key.trim();
            if !["type", "dest", "tar", "push"].contains(&key) {
                return Err(format!(
                    "`{key}` in `{text}` is not an output option kiln reads (it reads type, dest, tar and push); set the rest with kiln build's own flags"
                ));
            }
            fields.insert(key, value.trim());
        }
        let dest = || {
            fields
                .get("dest")
                .filter(|d| !d.is_empty())
                .map(PathBuf::from)
                .ok_or_else(|| format!("`{text}` needs dest=PATH"))
        };
        match fields.get("type").copied() {
            Some("oci") if fields.get("tar") == Some(&"false") => Ok(Output::Oci(dest()?)),
            Some("oci") => Err(format!(
                "`{text}`: kiln writes an OCI image layout directory, not a tar of one; add tar=false (or write oci:DIR)"
            )),
            Some("docker") => Ok(Output::DockerArchive(dest()?)),
            Some("registry") => Ok(Output::Registry),
            Some("image") if fields.get("push") == Some(&"true") => Ok(Output::Registry),
            Some(other) => Err(format!(
                "`{text}`: kiln does not write type={other}; use type=oci,dest=DIR,tar=false, type=docker,dest=FILE or type=registry"
            )),
            None => Err(format!("`{text}` names no type=")),
        }
    }
}

impl std::str::FromStr for Output {
    type Err = String;

    fn from_str(text: &str) -> Result<Output, String> {
        if text.starts_with("type=") || text.contains(",type=") {
            return Output::from_buildx(text);
        }
        match text.split_once(':') {
            Some(("oci", dir)) if !dir.is_empty() => Ok(Output::Oci(dir.into())),
            Some(("docker-archive", file)) if !file.is_empty() => {
                Ok(Output::DockerArchive(file.into()))
            }
            _ => Err(format!(
                "`{text}` is not an output; use oci:DIR, docker-archive:FILE or buildx's type=…,dest=…"
            )),
        }
    }
}

/// `kiln build`: what to build, from where, and where the image goes.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct BuildOptions {
    /// The build context directory.
    pub context: PathBuf,
    /// The Dockerfile (default: CONTEXT/Dockerfile; - reads it from standard
    /// input).
    #[arg(long, short = 'f')]
    pub file: Option<PathBuf>,
    /// Name the image REGISTRY/REPOSITORY:TAG (repeatable).
    #[arg(long = "tag", short = 't', value_name = "REFERENCE")]
    pub tags: Vec<String>,
    /// A build argument NAME=VALUE, or NAME to take its value from the
    /// environment (repeatable).
    #[arg(long = "build-arg", value_name = "NAME[=VALUE]")]
    pub build_args: Vec<String>,
    /// Set a label NAME=VALUE on the image (repeatable).
    #[arg(long = "label", value_name = "NAME=VALUE")]
    pub labels: Vec<String>,
    /// Build every layer anew instead of reusing those of earlier builds.
    #[arg(long)]
    pub no_cache: bool,
    /// Only check the Dockerfile: refuse what the build would refuse,
    /// build nothing (buildx's --call=check).
    #[arg(long)]
    pub check: bool,
    /// Write the image's digest (its manifest, or index for several
    /// platforms) to FILE.
    #[arg(long, value_name = "FILE")]
    pub iidfile: Option<PathBuf>,
    /// Write the build's result as JSON to FILE (buildx's keys:
    /// containerimage.digest, image.name).
    #[arg(long, value_name = "FILE")]
    pub metadata_file: Option<PathBuf>,
    /// The stage to build (default: the last).
    #[arg(long)]
    pub target: Option<String>,
    /// The platform to build for, or several separated by commas
    /// (linux/amd64,linux/arm64) for a multi-platform image.
    #[arg(long, default_value = "linux/amd64")]
    pub platform: String,
    /// Where to write the image: oci:DIR, docker-archive:FILE, or buildx's
    /// type=oci,dest=DIR,tar=false | type=docker,dest=FILE | type=registry
    /// (repeatable).
    #[arg(
        long = "output",
        short = 'o',
        value_name = "oci:DIR|docker-archive:FILE"
    )]
    pub outputs: Vec<Output>,
    /// Push the image to every -t reference.
    #[arg(long)]
    pub push: bool,
    /// Layer compression: gzip or zstd.
    #[arg(long, default_value = "gzip")]
    pub compression: String,
    /// Let the build reach HOST[:PORT] even on a loopback or private
    /// address (repeatable). Registries the Dockerfile names are otherwise
    /// reached on public addresses only: the Dockerfile is untrusted input.
    #[arg(long, value_name = "HOST[:PORT]")]
    pub allow_net: Vec<HostPattern>,
    /// Let RUN instructions run their commands natively, isolated as
    /// strongly as this environment allows (README: Building images).
    #[arg(long)]
    pub allow_run: bool,
    /// Let `RUN --network=host` use the host's network unfiltered.
    #[arg(long)]
    pub allow_run_host_network: bool,
    /// A secret for `RUN --mount=type=secret,id=ID` (repeatable), as buildx
    /// takes it: from the environment variable ENV, or the file SRC, or by
    /// default the variable named ID. Never written to a layer or the log.
    #[arg(long = "secret", value_name = "id=ID[,env=VAR|,src=FILE]")]
    pub secrets: Vec<SecretSpec>,
    // Flattened options carry their own help; a doc comment here would
    // replace it, hence no doc comment.
    #[command(flatten)]
    #[allow(missing_docs)]
    pub registry: RegistryOptions,
}

/// What `kiln build` did: the build step, the layout it wrote, and one
/// push per `-t` reference when asked to push.
#[derive(Debug, Clone)]
pub struct BuildReport {
    /// The build step.
    pub build: StepResult,
    /// The OCI image layout holding the image (`--output oci:DIR`, or
    /// kiln's cache layout for this context).
    pub layout: PathBuf,
    /// The pushes, in `-t` order.
    pub pushes: Vec<StepResult>,
}

impl Kiln {
    /// `kiln build`: build the Dockerfile with the `dockerfile-build`
    /// plugin under a grant computed here, then push to every `-t`
    /// reference when asked.
    pub async fn build(&self, args: &BuildOptions) -> Result<BuildReport, Error> {
        let Checked {
            context,
            dockerfile,
            build_args,
            bases,
        } = check(args)?;
        // `type=registry` is buildx's spelling of --push.
        let push = args.push || args.outputs.contains(&Output::Registry);
        let files: Vec<&Output> = args
            .outputs
            .iter()
            .filter(|o| **o != Output::Registry)
            .collect();
        if files.is_empty() && !push {
            return Err(Error::usage(
                "nothing to do: give --output oci:DIR, --output docker-archive:FILE or --push",
            ));
        }
        if push && args.tags.is_empty() {
            return Err(Error::usage(
                "--push needs at least one -t REGISTRY/REPOSITORY:TAG",
            ));
        }

        let mut mounts = Vec::new();
        let dockerfile_input = match dockerfile.strip_prefix(&context) {
            Ok(relative) => relative.display().to_string(),
            Err(_) => {
                let (Some(dir), Some(name)) = (dockerfile.parent(), dockerfile.file_name()) else {
                    return Err(Error::usage("the Dockerfile path has no file name"));
                };
                mounts.push(Mount {
                    host: dir.to_owned(),
                    guest: "/dockerfile".into(),
                    writable: false,
                });
                format!("/dockerfile/{}", name.to_string_lossy())
            }
        };
        let layout = match files.iter().find_map(|o| match o {
            Output::Oci(dir) => Some(dir.clone()),
            _ => None,
        }) {
            Some(dir) => dir,
            None => build_cache_layout(&context)
                .ok_or_else(|| {
                    Error::usage(
                        "no cache directory for the intermediate layout; set KILN_CACHE_DIR",
                    )
                })?
                .map_err(Error::usage)?,
        };
        std::fs::create_dir_all(&layout)
            .map_err(|e| Error::usage(format!("{}: {e}", layout.display())))?;
        let layout = layout
            .canonicalize()
            .map_err(|_| Error::usage(format!("{}: cannot resolve", layout.display())))?;
        // Builds into one layout (the same context's cache layout, or one
        // `--output oci:DIR`) take turns: each reads the layer cache and
        // writes index.json, and interleaving them could lose a build.
        let _lock = kiln_store::lock_layout(&layout).map_err(Error::usage)?;

        let mut inputs = vec![
            ("dockerfile".to_owned(), dockerfile_input),
            // The layout is the output directory itself (the plugin's
            // default is a directory inside it).
            ("output".to_owned(), GUEST_OUTPUT.to_owned()),
            ("tags".to_owned(), args.tags.join("\n")),
            (
                "build-args".to_owned(),
                build_args
                    .iter()
                    .map(|(name, value)| format!("{name}={value}"))
                    .collect::<Vec<_>>()
                    .join("\n"),
            ),
            ("labels".to_owned(), args.labels.join("\n")),
            ("no-cache".to_owned(), args.no_cache.to_string()),
            ("platform".to_owned(), args.platform.clone()),
            ("compression".to_owned(), args.compression.clone()),
            ("insecure".to_owned(), args.registry.insecure.to_string()),
        ];
        if let Some(target) = &args.target {
            inputs.push(("target".into(), target.clone()));
        }
        if let Ok(epoch) = std::env::var("SOURCE_DATE_EPOCH") {
            inputs.push(("source-date-epoch".into(), epoch));
        }
        for output in &files {
            if let Output::DockerArchive(file) = output {
                let (dir, name) = file_in_dir(file, "")?;
                mounts.push(Mount {
                    host: dir,
                    guest: "/archive".into(),
                    writable: true,
                });
                inputs.push(("docker-archive".into(), format!("/archive/{name}")));
            }
        }

        let tags = args
            .tags
            .iter()
            .map(|tag| Reference::parse(tag).map_err(Error::usage))
            .collect::<Result<Vec<_>, _>>()?;
        // Base layers need not be downloaded when the layout is only pushed,
        // to the registry the bases come from: the push mounts them.
        let push_only = files.is_empty()
            && tags
                .iter()
                .all(|tag| bases.iter().all(|b| b.api_host() == tag.api_host()));
        inputs.push(("complete-layout".into(), (!push_only).to_string()));
        // The registries the Dockerfile names are untrusted input: reachable
        // on public addresses only. Those the user named (`--allow-net`, or a
        // `-t` reference, whose registry the build pushes to) are trusted by
        // name, so a local registry works when the user points at it.
        let mut untrusted_net = Vec::new();
        for host in bases.iter().map(Reference::api_host) {
            let pattern: HostPattern = host.parse().map_err(Error::usage)?;
            if !untrusted_net.contains(&pattern) {
                untrusted_net.push(pattern);
            }
        }
        let mut net = args.allow_net.clone();
        for host in tags.iter().map(Reference::api_host) {
            let pattern: HostPattern = host.parse().map_err(Error::usage)?;
            if untrusted_net.contains(&pattern) && !net.contains(&pattern) {
                net.push(pattern);
            }
        }
        let plugin = PluginRef::parse(DOCKERFILE_BUILD).map_err(Error::usage)?;
        let secrets = BuildSecrets::read(&args.secrets)?;
        let grant = StepGrant {
            net,
            untrusted_net,
            secrets: secrets.values.keys().cloned().collect(),
            run: args.allow_run,
            run_host_network: args.allow_run_host_network,
            ..StepGrant::default()
        };
        let dirs = StepDirs {
            workspace: context,
            output: layout.clone(),
            mounts,
            hidden: Vec::new(),
        };
        let request = StepRequest::new("build", plugin, inputs, grant, dirs);
        // The layout is named with the build's outputs, before any push, so
        // a failed push still says where the image is.
        let mut outcome = self.execute(request, &secrets).await;
        if let Ok(build) = &mut outcome
            && files.iter().any(|o| matches!(o, Output::Oci(_)))
        {
            build
                .outputs
                .push(("layout".into(), layout.display().to_string().into()));
        }
        let build = self.report(outcome)?;
        let mut report = BuildReport {
            build,
            layout: layout.clone(),
            pushes: Vec::new(),
        };
        if push {
            for (tag, reference) in args.tags.iter().zip(&tags) {
                let mount_from = bases
                    .iter()
                    .filter(|b| b.api_host() == reference.api_host())
                    .map(|b| b.repository.clone())
                    .collect();
                let push = PushOptions {
                    layout: layout.clone(),
                    reference: tag.clone(),
                    digest_file: None,
                    chunk_size: None,
                    mount_from,
                    registry: args.registry.clone(),
                };
                report.pushes.push(self.push(&push).await?);
            }
        }
        report.write_files(args)?;
        Ok(report)
    }
}

impl BuildReport {
    /// The image's digest: its manifest's, or its index's for several
    /// platforms.
    pub fn digest(&self) -> Option<&str> {
        self.build
            .outputs
            .iter()
            .find(|(name, _)| name == "digest")
            .and_then(|(_, value)| value.as_str())
    }

    /// `--iidfile` and `--metadata-file`, each written whole or not at all.
    fn write_files(&self, args: &BuildOptions) -> Result<(), Error> {
        let digest = self.digest().unwrap_or_default();
        if let Some(file) = &args.iidfile {
            write_whole(file, digest.as_bytes())?;
        }
        if let Some(file) = &args.metadata_file {
            let metadata = serde_json::json!({
                "containerimage.digest": digest,
                "image.name": args.tags.join(","),
            });
            write_whole(file, &serde_json::to_vec_pretty(&metadata).expect("JSON"))?;
        }
        Ok(())
    }
}

/// Write `bytes` to `file` through a temporary file beside it, renamed
/// into place, so a reader never sees half of it.
fn write_whole(file: &Path, bytes: &[u8]) -> Result<(), Error> {
    let (dir, name) = file_in_dir(file, "")?;
    let failed = |e: std::io::Error| Error::Failed(format!("{}: {e}", file.display()));
    let mut staged = tempfile::NamedTempFile::new_in(&dir).map_err(failed)?;
    // Readable as a file the user wrote would be (the temporary file is
    // private until renamed).
    use std::os::unix::fs::PermissionsExt;
    staged
        .as_file()
        .set_permissions(std::fs::Permissions::from_mode(0o644))
        .map_err(failed)?;
    std::io::Write::write_all(&mut staged, bytes).map_err(failed)?;
    staged
        .persist(dir.join(name))
        .map_err(|e| failed(e.error))?;
    Ok(())
}

/// A build's inputs, read and checked: what `kiln build --check` verifies
/// and what a build starts from.
struct Checked {
    context: PathBuf,
    dockerfile: PathBuf,
    build_args: Vec<(String, String)>,
    /// The images the Dockerfile builds on, for every platform.
    bases: Vec<Reference>,
}

/// `kiln build --check` (buildx's `--call=check`): read the context and
/// Dockerfile and refuse what the build would refuse, building nothing.
/// Returns the Dockerfile checked.
pub fn check_only(args: &BuildOptions) -> Result<PathBuf, Error> {
    Ok(check(args)?.dockerfile)
}

fn check(args: &BuildOptions) -> Result<Checked, Error> {
    let context = match args.context.canonicalize() {
        Ok(dir) if dir.is_dir() => dir,
        _ => {
            return Err(Error::usage(format!(
                "the build context {} is not a directory",
                args.context.display()
            )));
        }
    };
    let dockerfile = args
        .file
        .clone()
        .unwrap_or_else(|| context.join("Dockerfile"));
    let dockerfile = dockerfile
        .canonicalize()
        .map_err(|_| Error::usage(format!("{}: no such Dockerfile", dockerfile.display())))?;
    let source = std::fs::read_to_string(&dockerfile)
        .map_err(|e| Error::usage(format!("{}: {e}", dockerfile.display())))?;
    // `--build-arg NAME` takes NAME's value from the environment, and
    // is left out when it is not set there (as docker does).
    let build_args: Vec<(String, String)> = args
        .build_args
        .iter()
        .filter_map(|arg| match arg.split_once('=') {
            Some((name, value)) => Some((name.to_owned(), value.to_owned())),
            None => std::env::var(arg).ok().map(|value| (arg.clone(), value)),
        })
        .collect();
    // Each travels to the plugin as one line.
    if let Some((name, _)) = build_args.iter().find(|(_, value)| value.contains('\n')) {
        return Err(Error::usage(format!(
            "--build-arg {name}: a value cannot span lines"
        )));
    }
    if let Some(label) = args.labels.iter().find(|label| label.contains('\n')) {
        let name = label.split('=').next().unwrap_or_default();
        return Err(Error::usage(format!(
            "--label {name}: a value cannot span lines"
        )));
    }
    let platforms = kiln_oci::Platform::parse_list(&args.platform)
        .map_err(|e| Error::usage(format!("--platform: {e}")))?;
    // What the build would refuse is refused before it starts; the same
    // plan, the one the plugin builds with (ARGs, predefined platform
    // ARGs, stages), names the images the build must reach.
    let dockerfile_name = dockerfile.display().to_string();
    let mut bases: Vec<Reference> = Vec::new();
    for platform in &platforms {
        let named = kiln_dockerfile::check(
            &source,
            &build_args,
            &platform.to_string(),
            args.target.as_deref(),
            args.allow_run,
        )
        .map_err(|e| Error::usage(e.in_file(&dockerfile_name)))?;
        // A name the host cannot read as a reference (a `--from` that only
        // the stage's own ARGs complete) is left to the plugin, whose pull
        // the sandbox refuses if it names an ungranted host.
        for base in named.iter().filter_map(|b| Reference::parse(b).ok()) {
            if !bases.contains(&base) {
                bases.push(base);
            }
        }
    }
    Ok(Checked {
        context,
        dockerfile,
        build_args,
        bases,
    })
}

/// A persistent layout for builds that only push or write an archive, so
/// rebuilds reuse their layers: one per context directory, created below
/// kiln's cache directory without following a symlink.
fn build_cache_layout(context: &Path) -> Option<Result<PathBuf, kiln_store::StoreError>> {
    use sha2::Digest;
    let key = hex::encode(sha2::Sha256::digest(context.as_os_str().as_encoded_bytes()));
    let root = RuntimeConfig::from_env().cache_dir?;
    Some(
        std::fs::create_dir_all(&root)
            .map_err(|source| kiln_store::StoreError::Io {
                path: root.clone(),
                source,
            })
            .and_then(|()| kiln_store::ensure_dir(&root, &Path::new("builds").join(&key[..16]))),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outputs_name_their_kind() {
        assert_eq!("oci:out".parse::<Output>(), Ok(Output::Oci("out".into())));
        assert_eq!(
            "docker-archive:a.tar".parse::<Output>(),
            Ok(Output::DockerArchive("a.tar".into()))
        );
        assert!("tar:x".parse::<Output>().is_err());
        assert!("oci:".parse::<Output>().is_err());
    }
}

/// `--secret id=ID[,env=VAR|,src=FILE]`: where one build secret comes from.
#[derive(Debug, Clone)]
pub struct SecretSpec {
    /// The name `RUN --mount=type=secret,id=` uses.
    pub id: String,
    /// Where its value is read.
    pub source: SecretSource,
}

/// Where a build secret's value is read, when the build starts.
#[derive(Debug, Clone)]
pub enum SecretSource {
    /// An environment variable.
    Env(String),
    /// A file.
    File(PathBuf),
}

impl std::str::FromStr for SecretSpec {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let mut id = None;
        let mut source = None;
        let mut kind = None;
        for part in text.split(',') {
            let (key, value) = part
                .split_once('=')
                .ok_or_else(|| format!("`{part}`: write KEY=VALUE (id=, env=, src=)"))?;
            match key {
                "id" => id = Some(value.to_owned()),
                "env" => source = Some(SecretSource::Env(value.to_owned())),
                "src" | "source" => source = Some(SecretSource::File(PathBuf::from(value))),
                "type" => kind = Some(value.to_owned()),
                other => return Err(format!("unknown key `{other}`; use id=, env= or src=")),
            }
        }
        let id = id
            .or_else(|| match &source {
                Some(SecretSource::Env(name)) => Some(name.clone()),
                Some(SecretSource::File(path)) => {
                    path.file_name().map(|n| n.to_string_lossy().into_owned())
                }
                None => None,
            })
            .ok_or("a secret needs id=")?;
        let source = match (source, kind.as_deref()) {
            (Some(source), _) => source,
            (None, Some("file")) => SecretSource::File(PathBuf::from(&id)),
            (None, _) => SecretSource::Env(id.clone()),
        };
        Ok(SecretSpec { id, source })
    }
}

/// The build's secrets, read once, answered by id; any other name (a
/// registry credential) comes from the environment as for every step.
struct BuildSecrets {
    values: std::collections::BTreeMap<String, String>,
}

impl BuildSecrets {
    fn read(specs: &[SecretSpec]) -> Result<BuildSecrets, Error> {
        let mut values = std::collections::BTreeMap::new();
        for spec in specs {
            let value = match &spec.source {
                SecretSource::Env(name) => std::env::var(name).map_err(|_| {
                    Error::usage(format!(
                        "--secret id={}: the environment variable {name} is not set",
                        spec.id
                    ))
                })?,
                SecretSource::File(path) => std::fs::read_to_string(path).map_err(|e| {
                    Error::usage(format!(
                        "--secret id={}: cannot read {}: {e}",
                        spec.id,
                        path.display()
                    ))
                })?,
            };
            values.insert(spec.id.clone(), value);
        }
        Ok(BuildSecrets { values })
    }
}

impl kiln_grant::ValueSource for BuildSecrets {
    fn get(&self, name: &str) -> Option<String> {
        self.values
            .get(name)
            .cloned()
            .or_else(|| ProcessEnv.get(name))
    }
}
