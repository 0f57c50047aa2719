//! The `dockerfile-build` step: a Dockerfile and its build context to an
//! OCI image layout, without a daemon, privileges or a root file system to
//! overwrite.
//!
//! The step sees only the build context (read-only) and its output
//! directory; base images come through the registry client, on the hosts
//! the step is granted. Every instruction except RUN is evaluated here:
//! metadata instructions edit the image config, COPY/ADD/WORKDIR produce
//! one reproducible layer each (see [`layer`]).

mod build;
mod cache;
mod context;

use std::path::{Path, PathBuf};

use kiln_oci::{ImageLayout, OciError, Platform, Reference, registry, tarball};
use kiln_sdk::{
    CapabilityKind, InputSpec, Inputs, Outputs, PluginInfo, Step, StepContext, StepError,
    ValueKind, export_step,
};

use crate::context::Context;
use kiln_oci::archive::Scratch;
use kiln_oci::layer::Compression;

/// Why a build failed; the message names the file, line or input.
#[derive(Debug)]
pub enum BuildError {
    /// The Dockerfile, context or an input is wrong.
    Input(String),
    /// Reading or writing a file failed.
    Io(String),
    /// Anything else (a registry, a corrupt base image).
    Failed(String),
}

impl BuildError {
    fn input(message: impl Into<String>) -> Self {
        BuildError::Input(message.into())
    }

    fn failed(message: impl Into<String>) -> Self {
        BuildError::Failed(message.into())
    }

    fn io(path: &Path, error: std::io::Error) -> Self {
        BuildError::Io(format!("{}: {error}", path.display()))
    }
}

impl std::fmt::Display for BuildError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            BuildError::Input(m) | BuildError::Io(m) | BuildError::Failed(m) => f.write_str(m),
        }
    }
}

impl From<OciError> for BuildError {
    fn from(error: OciError) -> Self {
        match error {
            // Bad archives, layouts or references: the user's input.
            OciError::Invalid(message) => BuildError::Input(message),
            other => BuildError::Failed(other.to_string()),
        }
    }
}

impl From<BuildError> for StepError {
    fn from(error: BuildError) -> Self {
        match error {
            BuildError::Input(m) => StepError::invalid_input(m),
            BuildError::Io(m) | BuildError::Failed(m) => StepError::failed(m),
        }
    }
}

/// Extraction limit when the input does not say: 8 GiB.
const DEFAULT_EXTRACT_LIMIT_MB: i64 = 8 * 1024;

struct DockerfileBuild;

impl Step for DockerfileBuild {
    fn describe() -> PluginInfo {
        PluginInfo::new(
            "dockerfile-build",
            env!("CARGO_PKG_VERSION"),
            "Builds a Dockerfile into an OCI image layout, with no daemon and no privileges",
        )
        .input(InputSpec::path("context", "The build context directory").default_path("/workspace"))
        .input(InputSpec::text(
            "dockerfile",
            "The Dockerfile, relative to the context unless absolute (default: CONTEXT/Dockerfile)",
        ))
        .input(
            InputSpec::path("output", "The OCI image layout to write (created or updated)")
                .default_path("/output/image"),
        )
        .input(InputSpec::text(
            "tags",
            "References to name the image by, separated by spaces or newlines (REPO:TAG); their tags name it in the layout",
        ))
        .input(InputSpec::text(
            "build-args",
            "Build arguments, one NAME=VALUE per line",
        ))
        .input(InputSpec::text("target", "The stage to build (default: the last)"))
        .input(InputSpec::text("platform", "OS/ARCH[/VARIANT] to build for").default_text("linux/amd64"))
        .input(InputSpec::text("compression", "Layer compression: gzip or zstd").default_text("gzip"))
        .input(
            InputSpec::integer(
                "source-date-epoch",
                "SOURCE_DATE_EPOCH: file times are clamped to it and the image's created time is it",
            )
            .default_int(0),
        )
        .input(InputSpec::path(
            "docker-archive",
            "Also write the image as a `docker save` tar to this file (for docker/podman load)",
        ))
        .input(
            InputSpec::boolean(
                "insecure",
                "Pull base images over plain HTTP (loopback registries always may)",
            )
            .default_bool(false),
        )
        .input(
            InputSpec::boolean(
                "complete-layout",
                "Download base image layers into the layout; false when the layout is only pushed to the base's registry, which mounts them",
            )
            .default_bool(true),
        )
        .input(
            InputSpec::integer(
                "extract-limit-mb",
                "At most this many MiB are extracted from ADD archives and base layers",
            )
            .default_int(DEFAULT_EXTRACT_LIMIT_MB),
        )
        .output("digest", ValueKind::Text, "The image manifest digest")
        .needs(CapabilityKind::Read, "context", "reads the build context")
        .needs(CapabilityKind::Write, "output", "writes the image layout")
        .needs(
            CapabilityKind::Net,
            "FROM registries",
            "pulls base images named by FROM and COPY --from",
        )
    }

    fn run(_context: StepContext, inputs: Inputs) -> Result<Outputs, StepError> {
        Ok(build(&inputs)?)
    }
}

fn build(inputs: &Inputs) -> Result<Outputs, BuildError> {
    let input = |e: StepError| BuildError::input(format!("{e:?}"));
    let epoch = u64::try_from(inputs.integer("source-date-epoch").map_err(input)?)
        .map_err(|_| BuildError::input("input `source-date-epoch` must not be negative"))?;
    let context_dir = PathBuf::from(inputs.path("context").map_err(input)?);
    // Messages name the Dockerfile as the user gave it.
    let name = inputs
        .optional_text("dockerfile")
        .map_err(input)?
        .filter(|p| !p.is_empty())
        .unwrap_or_else(|| "Dockerfile".into());
    let dockerfile = context_dir.join(&name);
    let source = std::fs::read_to_string(&dockerfile).map_err(|e| {
        BuildError::input(format!(
            "cannot read the Dockerfile {}: {e}",
            dockerfile.display()
        ))
    })?;
    let context = Context::open(&context_dir, epoch)?;
    let build_args = parse_build_args(
        &inputs
            .optional_text("build-args")
            .map_err(input)?
            .unwrap_or_default(),
    )?;
    let tags: Vec<Reference> = inputs
        .optional_text("tags")
        .map_err(input)?
        .unwrap_or_default()
        .split_whitespace()
        .map(|t| Reference::parse(t).map_err(|e| BuildError::input(format!("tag `{t}`: {e}"))))
        .collect::<Result<_, _>>()?;
    let target = inputs
        .optional_text("target")
        .map_err(input)?
        .filter(|t| !t.is_empty());
    let output = PathBuf::from(inputs.path("output").map_err(input)?);
    let layout = ImageLayout::open_or_create(&output)?;
    let insecure = inputs.boolean("insecure").map_err(input)?;
    let limit = inputs.integer("extract-limit-mb").map_err(input)?.max(0) as u64;
    // Inside the layout: the step may write nowhere else.
    let started = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_nanos();
    // One per build, so builds sharing a layout never share extracted files.
    let scratch_dir = output.join(format!(".kiln-scratch-{started}"));
    let scratch = Scratch::create(scratch_dir, limit << 20)?;
    let request = build::Build {
        dockerfile_name: &name,
        source: &source,
        context: &context,
        build_args: &build_args,
        target: target.as_deref(),
        platform: Platform::parse(&inputs.text("platform").map_err(input)?)
            .map_err(|e| BuildError::input(e.to_string()))?,
        compression: Compression::parse(&inputs.text("compression").map_err(input)?)?,
        epoch,
        layout: &layout,
        scratch: &scratch,
        insecure,
    };
    let result = build::run(&request);
    let built = match result {
        Ok(built) => built,
        Err(e) => {
            scratch.remove();
            return Err(e);
        }
    };
    scratch.remove();
    // A layout is complete unless the caller only pushes to the registry
    // the base images come from, which mounts their layers.
    let archive = inputs.optional_path("docker-archive").map_err(input)?;
    if inputs.boolean("complete-layout").map_err(input)? || archive.is_some() {
        registry::fetch_layers(&built.image.layers, &layout, insecure)?;
    }
    let created = kiln_oci::image::rfc3339(epoch);
    let manifest = built.image.write(&layout, &created)?;
    let mut names: Vec<String> = tags
        .iter()
        .map(|t| t.tag.clone().unwrap_or_else(|| "latest".into()))
        .collect();
    if names.is_empty() {
        names.push("latest".into());
    }
    names.dedup();
    layout.tag(&manifest, &names)?;
    if let Some(archive) = archive {
        let repo_tags: Vec<String> = tags.iter().map(ToString::to_string).collect();
        tarball::write(
            &built.image,
            &manifest,
            &layout,
            &repo_tags,
            Path::new(&archive),
        )?;
    }
    kiln_sdk::info!(
        "built {} ({} layers written, {} reused) into {}",
        manifest.digest(),
        built.written,
        built.reused,
        output.display()
    );
    Ok(Outputs::new().text("digest", manifest.digest().to_string()))
}

/// `NAME=VALUE` lines (blank lines ignored); a line without `=` is an
/// error naming it.
fn parse_build_args(text: &str) -> Result<Vec<(String, String)>, BuildError> {
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|line| {
            line.split_once('=')
                .map(|(k, v)| (k.trim().to_owned(), v.to_owned()))
                .filter(|(k, _)| !k.is_empty())
                .ok_or_else(|| {
                    BuildError::input(format!("build argument `{line}` is not NAME=VALUE"))
                })
        })
        .collect()
}

export_step!(DockerfileBuild);
