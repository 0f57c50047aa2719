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

use kiln_oci::{ImageLayout, Platform, Reference, registry, tarball};
use kiln_sdk::input::{Boolean, Given, GuestPath, Input, Integer, Text};
use kiln_sdk::{
    CapabilityKind, Error, Inputs, Outputs, PluginInfo, Step, StepContext, ValueKind, export_step,
};

use crate::context::Context;
use kiln_oci::archive::Scratch;
use kiln_oci::layer::Compression;

/// Extraction limit when the input does not say: 8 GiB.
const DEFAULT_EXTRACT_LIMIT_MB: i64 = 8 * 1024;

const CONTEXT: Input<GuestPath> = Input::path(
    "context",
    "The build context directory (default: the step's workspace)",
);
const DOCKERFILE: Input<Text> = Input::text(
    "dockerfile",
    "The Dockerfile, relative to the context unless absolute (default: CONTEXT/Dockerfile)",
);
const OUTPUT: Input<GuestPath> = Input::path(
    "output",
    "The OCI image layout to write, created or updated (default: `image` in the step's output directory)",
);
const TAGS: Input<Text> = Input::text(
    "tags",
    "References to name the image by, separated by spaces or newlines (REPO:TAG); their tags name it in the layout",
);
const BUILD_ARGS: Input<Text> =
    Input::text("build-args", "Build arguments, one NAME=VALUE per line");
const LABELS: Input<Text> = Input::text(
    "labels",
    "Labels set on the image after the Dockerfile's, one NAME=VALUE per line",
);
const NO_CACHE: Input<Boolean, Given> = Input::boolean(
    "no-cache",
    "Write every layer anew instead of reusing those of earlier builds",
)
.default(false);
const TARGET: Input<Text> = Input::text("target", "The stage to build (default: the last)");
const PLATFORM: Input<Text, Given> = Input::text(
    "platform",
    "OS/ARCH[/VARIANT] to build for, or several separated by commas for a multi-platform image (an OCI index)",
)
.default("linux/amd64");
const COMPRESSION: Input<Text, Given> =
    Input::text("compression", "Layer compression: gzip or zstd").default("gzip");
const SOURCE_DATE_EPOCH: Input<Integer, Given> = Input::integer(
    "source-date-epoch",
    "SOURCE_DATE_EPOCH: file times are clamped to it and the image's created time is it",
)
.default(0);
const DOCKER_ARCHIVE: Input<GuestPath> = Input::path(
    "docker-archive",
    "Also write the image as a `docker save` tar to this file (for docker/podman load)",
);
const INSECURE: Input<Boolean, Given> = Input::boolean(
    "insecure",
    "Pull base images over plain HTTP (loopback registries always may)",
)
.default(false);
const COMPLETE_LAYOUT: Input<Boolean, Given> = Input::boolean(
    "complete-layout",
    "Download base image layers into the layout; false when the layout is only pushed to the base's registry, which mounts them",
)
.default(true);
const EXTRACT_LIMIT_MB: Input<Integer, Given> = Input::integer(
    "extract-limit-mb",
    "At most this many MiB are extracted from ADD archives and base layers",
)
.default(DEFAULT_EXTRACT_LIMIT_MB);

struct DockerfileBuild;

impl Step for DockerfileBuild {
    fn describe() -> PluginInfo {
        PluginInfo::new(
            "dockerfile-build",
            env!("CARGO_PKG_VERSION"),
            "Builds a Dockerfile into an OCI image layout, with no daemon and no privileges",
        )
        .input(&CONTEXT)
        .input(&DOCKERFILE)
        .input(&OUTPUT)
        .input(&TAGS)
        .input(&BUILD_ARGS)
        .input(&LABELS)
        .input(&NO_CACHE)
        .input(&TARGET)
        .input(&PLATFORM)
        .input(&COMPRESSION)
        .input(&SOURCE_DATE_EPOCH)
        .input(&DOCKER_ARCHIVE)
        .input(&INSECURE)
        .input(&COMPLETE_LAYOUT)
        .input(&EXTRACT_LIMIT_MB)
        .output("digest", ValueKind::Text, "The image manifest digest")
        .needs(
            CapabilityKind::Read,
            CONTEXT.name(),
            "reads the build context",
        )
        .needs(
            CapabilityKind::Write,
            OUTPUT.name(),
            "writes the image layout",
        )
        .needs(
            CapabilityKind::Net,
            "FROM registries",
            "pulls base images named by FROM and COPY --from",
        )
    }

    fn run(context: StepContext, inputs: Inputs) -> Result<Outputs, Error> {
        build(&context, &inputs)
    }
}

fn build(step: &StepContext, inputs: &Inputs) -> Result<Outputs, Error> {
    let epoch = u64::try_from(SOURCE_DATE_EPOCH.get(inputs)?).map_err(|_| {
        Error::invalid_input(format!(
            "input `{}` must not be negative",
            SOURCE_DATE_EPOCH.name()
        ))
    })?;
    let context_dir = PathBuf::from(
        CONTEXT
            .get(inputs)?
            .unwrap_or_else(|| step.workspace.clone()),
    );
    // Messages name the Dockerfile as the user gave it.
    let name = DOCKERFILE
        .get(inputs)?
        .filter(|p| !p.is_empty())
        .unwrap_or_else(|| "Dockerfile".into());
    let dockerfile = context_dir.join(&name);
    let source = std::fs::read_to_string(&dockerfile).map_err(|e| {
        Error::invalid_input(format!(
            "cannot read the Dockerfile {}: {e}",
            dockerfile.display()
        ))
    })?;
    let context = Context::open(&context_dir, epoch)?;
    let build_args = parse_pairs(
        &BUILD_ARGS.get(inputs)?.unwrap_or_default(),
        "build argument",
    )?;
    let labels = parse_pairs(&LABELS.get(inputs)?.unwrap_or_default(), "label")?;
    let no_cache = NO_CACHE.get(inputs)?;
    let tags: Vec<Reference> = TAGS
        .get(inputs)?
        .unwrap_or_default()
        .split_whitespace()
        .map(|t| Reference::parse(t).map_err(|e| Error::invalid_input(format!("tag `{t}`: {e}"))))
        .collect::<Result<_, _>>()?;
    let target = TARGET.get(inputs)?.filter(|t| !t.is_empty());
    let output = match OUTPUT.get(inputs)? {
        Some(output) => PathBuf::from(output),
        None => Path::new(&step.output).join("image"),
    };
    let layout = ImageLayout::open_or_create(&output)?;
    let insecure = INSECURE.get(inputs)?;
    let limit = EXTRACT_LIMIT_MB.get(inputs)?.max(0) as u64;
    // Inside the layout: the step may write nowhere else.
    let started = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_nanos();
    // One per build, so builds sharing a layout never share extracted files.
    let scratch_dir = output.join(format!(".kiln-scratch-{started}"));
    let scratch = Scratch::create(scratch_dir, limit << 20)?;
    let platforms = Platform::parse_list(&PLATFORM.get(inputs)?)?;
    let archive = DOCKER_ARCHIVE.get(inputs)?;
    if platforms.len() > 1 && archive.is_some() {
        scratch.remove();
        return Err(Error::invalid_input(format!(
            "a docker archive holds one image, and `{}` names {} platforms: write the multi-platform image with --output oci:DIR or --push, or build the archive for one platform",
            PLATFORM.get(inputs)?,
            platforms.len()
        )));
    }
    let compression = Compression::parse(&COMPRESSION.get(inputs)?)?;
    // One image per platform, each from its own base; layers with the same
    // content (a COPY of the application) are written once, through the
    // layer cache.
    let mut builds = Vec::new();
    for (index, platform) in platforms.into_iter().enumerate() {
        let request = build::Build {
            // Warnings about the Dockerfile are said once, not per platform.
            warn: index == 0,
            dockerfile_name: &name,
            source: &source,
            context: &context,
            build_args: &build_args,
            target: target.as_deref(),
            platform: platform.clone(),
            compression,
            epoch,
            layout: &layout,
            scratch: &scratch,
            insecure,
            no_cache,
            labels: &labels,
        };
        match build::run(&request) {
            Ok(built) => builds.push((platform, built)),
            Err(e) => {
                scratch.remove();
                return Err(e);
            }
        }
    }
    scratch.remove();
    // A layout is complete unless the caller only pushes to the registry
    // the base images come from, which mounts their layers.
    let complete = COMPLETE_LAYOUT.get(inputs)? || archive.is_some();
    let created = kiln_oci::image::rfc3339(epoch);
    let mut images = Vec::new();
    for (platform, built) in &builds {
        if complete {
            registry::fetch_layers(&built.image.layers, &layout, insecure)?;
        }
        images.push((platform.clone(), built.image.write(&layout, &created)?));
    }
    let root = match &images[..] {
        [(_, manifest)] => manifest.clone(),
        _ => kiln_oci::image::write_index(&layout, &images)?,
    };
    let mut names: Vec<String> = tags
        .iter()
        .map(|t| t.tag.clone().unwrap_or_else(|| "latest".into()))
        .collect();
    if names.is_empty() {
        names.push("latest".into());
    }
    names.dedup();
    layout.tag(&root, &names)?;
    if let (Some(archive), [(_, built)]) = (archive, &builds[..]) {
        let repo_tags: Vec<String> = tags.iter().map(ToString::to_string).collect();
        tarball::write(
            &built.image,
            &root,
            &layout,
            &repo_tags,
            Path::new(&archive),
        )?;
    }
    let (written, reused) = builds.iter().fold((0, 0), |(w, r), (_, built)| {
        (w + built.written, r + built.reused)
    });
    kiln_sdk::info!(
        "built {} ({written} layers written, {reused} reused) into {}",
        root.digest(),
        output.display()
    );
    Ok(Outputs::new().text("digest", root.digest().to_string()))
}

/// `NAME=VALUE` lines (blank lines ignored); a line without `=` is an
/// error naming it as a `what`.
fn parse_pairs(text: &str, what: &str) -> Result<Vec<(String, String)>, Error> {
    kiln_dockerfile::stages::name_values(text)
        .map_err(|line| Error::invalid_input(format!("{what} `{line}` is not NAME=VALUE")))
}

export_step!(DockerfileBuild);
