//! The `registry` step: `login` checks credentials against a registry,
//! `push` sends an OCI image layout to `REGISTRY/REPO:TAG`, `pull` brings
//! an image into a layout.
//!
//! Credentials come from the kiln host only ([`Registry::connect`]).

use kiln_oci::credential;
use kiln_oci::registry::{self, Registry};
use kiln_oci::{ImageLayout, Platform, Reference};
use kiln_sdk::{
    CapabilityKind, InputSpec, Inputs, Outputs, PluginInfo, Step, StepContext, StepError,
    ValueKind, export_step,
};

struct RegistryStep;

fn client(host: &str, inputs: &Inputs) -> Result<Registry, StepError> {
    Ok(Registry::connect(host, inputs.boolean("insecure")?)?)
}

fn reference(inputs: &Inputs) -> Result<Reference, StepError> {
    let text = inputs.text("reference")?;
    Reference::parse(&text).map_err(|e| StepError::invalid_input(e.to_string()))
}

impl Step for RegistryStep {
    fn describe() -> PluginInfo {
        PluginInfo::new(
            "registry",
            env!("CARGO_PKG_VERSION"),
            "Logs in to a registry, pushes an OCI layout to it, or pulls an image into one",
        )
        .input(InputSpec::text("operation", "login, push or pull").required())
        .input(
            InputSpec::text(
                "reference",
                "REGISTRY/REPOSITORY[:TAG][@DIGEST] (for login: the registry host)",
            )
            .required(),
        )
        .input(InputSpec::path(
            "layout",
            "The OCI image layout to push from or pull into",
        ))
        .input(InputSpec::text(
            "image",
            "Which image of the layout to push (its ref.name annotation) when it holds several",
        ))
        .input(InputSpec::path(
            "digest-file",
            "Write the pushed manifest digest to this file, like kaniko's --digest-file",
        ))
        .input(
            InputSpec::text(
                "platform",
                "The platform to pull from a multi-platform image",
            )
            .default_text("linux/amd64"),
        )
        .input(
            InputSpec::boolean(
                "insecure",
                "Use plain HTTP (loopback registries always may)",
            )
            .default_bool(false),
        )
        .input(
            InputSpec::integer(
                "chunk-size",
                "Push blobs in chunks of this many bytes (0: one request per blob)",
            )
            .default_int(0),
        )
        .input(
            InputSpec::text(
                "mount-from",
                "Comma-separated repositories of the same registry to mount existing blobs from (a base image's)",
            )
            .default_text(""),
        )
        .output(
            "digest",
            ValueKind::Text,
            "The manifest digest pushed or pulled",
        )
        .output(
            "uploaded-bytes",
            ValueKind::Integer,
            "Blob bytes sent to the registry by a push",
        )
        .needs(
            CapabilityKind::Net,
            "reference",
            "talks to the registry and its token service",
        )
        .needs(
            CapabilityKind::Secret,
            &credential::secret_name("HOST"),
            "the credentials the host holds for the registry",
        )
        .needs(CapabilityKind::Read, "layout", "reads the layout to push")
        .needs(CapabilityKind::Write, "layout", "writes the pulled layout")
    }

    fn run(_context: StepContext, inputs: Inputs) -> Result<Outputs, StepError> {
        match inputs.text("operation")?.as_str() {
            "login" => {
                let host = inputs.text("reference")?;
                let mut registry = client(&host, &inputs)?;
                registry.login().map_err(StepError::from)?;
                kiln_sdk::info!("credentials for {host} accepted");
                Ok(Outputs::new())
            }
            "push" => {
                let target = reference(&inputs)?;
                let layout = ImageLayout::open(inputs.path("layout")?).map_err(StepError::from)?;
                let image = inputs.optional_text("image")?;
                let root = layout.root_descriptor(image.as_deref().or(target.tag.as_deref()))?;
                let mut registry = client(target.api_host(), &inputs)?;
                let chunk = inputs.integer("chunk-size")?;
                if chunk < 0 {
                    return Err(StepError::invalid_input(
                        "input `chunk-size` must be 0 or more bytes",
                    ));
                }
                let options = registry::PushOptions {
                    chunk_size: (chunk > 0).then_some(chunk as u64),
                    mount_from: inputs
                        .text("mount-from")?
                        .split(',')
                        .map(str::trim)
                        .filter(|r| !r.is_empty())
                        .map(str::to_owned)
                        .collect(),
                };
                let report = registry::push(&mut registry, &layout, &root, &target, &options)?;
                kiln_sdk::info!(
                    "pushed {target}@{}: {} blobs uploaded ({} bytes), {} mounted, {} already there",
                    report.digest,
                    report.uploaded_blobs,
                    report.uploaded_bytes,
                    report.mounted_blobs,
                    report.skipped_blobs
                );
                if let Some(file) = inputs.optional_path("digest-file")? {
                    std::fs::write(&file, &report.digest)
                        .map_err(|e| StepError::failed(format!("writing {file}: {e}")))?;
                }
                Ok(Outputs::new()
                    .text("digest", report.digest)
                    .integer("uploaded-bytes", report.uploaded_bytes as i64))
            }
            "pull" => {
                let source = reference(&inputs)?;
                let layout =
                    ImageLayout::open_or_create(inputs.path("layout")?).map_err(StepError::from)?;
                let mut registry = client(source.api_host(), &inputs)?;
                let platform = Platform::parse(&inputs.text("platform")?)
                    .map_err(|e| StepError::invalid_input(e.to_string()))?;
                let report = registry::pull(&mut registry, &source, &layout, &platform)?;
                kiln_sdk::info!(
                    "pulled {source}@{}: {} blobs downloaded, {} already present",
                    report.digest,
                    report.downloaded_blobs,
                    report.present_blobs
                );
                Ok(Outputs::new().text("digest", report.digest))
            }
            other => Err(StepError::invalid_input(format!(
                "input `operation` must be login, push or pull, not `{other}`"
            ))),
        }
    }
}

export_step!(RegistryStep);
