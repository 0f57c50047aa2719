//! The `registry` step: `login` checks credentials against a registry,
//! `push` sends an OCI image layout to `REGISTRY/REPO:TAG`, `pull` brings
//! an image into a layout.
//!
//! Credentials come from the kiln host only ([`Registry::connect`]).

use kiln_oci::credential;
use kiln_oci::registry::{self, Registry};
use kiln_oci::{ImageLayout, Platform, Reference};
use kiln_sdk::input::{Boolean, Given, GuestPath, Input, Integer, Text};
use kiln_sdk::{
    CapabilityKind, Context, Error, Inputs, Outputs, PluginInfo, Step, StepContext, ValueKind,
    export_step,
};

const OPERATION: Input<Text, Given> = Input::text("operation", "login, push or pull").required();
const REFERENCE: Input<Text, Given> = Input::text(
    "reference",
    "REGISTRY/REPOSITORY[:TAG][@DIGEST] (for login: the registry host)",
)
.required();
const LAYOUT: Input<GuestPath> =
    Input::path("layout", "The OCI image layout to push from or pull into");
const IMAGE: Input<Text> = Input::text(
    "image",
    "Which image of the layout to push (its ref.name annotation) when it holds several",
);
const DIGEST_FILE: Input<GuestPath> = Input::path(
    "digest-file",
    "Write the pushed manifest digest to this file, like kaniko's --digest-file",
);
const PLATFORM: Input<Text, Given> = Input::text(
    "platform",
    "The platform to pull from a multi-platform image",
)
.default("linux/amd64");
const INSECURE: Input<Boolean, Given> = Input::boolean(
    "insecure",
    "Use plain HTTP (loopback registries always may)",
)
.default(false);
const CHUNK_SIZE: Input<Integer, Given> = Input::integer(
    "chunk-size",
    "Push blobs in chunks of this many bytes (0: one request per blob)",
)
.default(0);
const MOUNT_FROM: Input<Text, Given> = Input::text(
    "mount-from",
    "Comma-separated repositories of the same registry to mount existing blobs from (a base image's)",
)
.default("");

struct RegistryStep;

fn client(host: &str, inputs: &Inputs) -> Result<Registry, Error> {
    Ok(Registry::connect(host, INSECURE.get(inputs)?)?)
}

impl Step for RegistryStep {
    fn describe() -> PluginInfo {
        PluginInfo::new(
            "registry",
            env!("CARGO_PKG_VERSION"),
            "Logs in to a registry, pushes an OCI layout to it, or pulls an image into one",
        )
        .input(&OPERATION)
        .input(&REFERENCE)
        .input(&LAYOUT)
        .input(&IMAGE)
        .input(&DIGEST_FILE)
        .input(&PLATFORM)
        .input(&INSECURE)
        .input(&CHUNK_SIZE)
        .input(&MOUNT_FROM)
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
            REFERENCE.name(),
            "talks to the registry and its token service",
        )
        .needs(
            CapabilityKind::Secret,
            &credential::secret_name("HOST"),
            "the credentials the host holds for the registry",
        )
        .needs(
            CapabilityKind::Read,
            LAYOUT.name(),
            "reads the layout to push",
        )
        .needs(
            CapabilityKind::Write,
            LAYOUT.name(),
            "writes the pulled layout",
        )
    }

    fn run(_context: StepContext, inputs: Inputs) -> Result<Outputs, Error> {
        match OPERATION.get(&inputs)?.as_str() {
            "login" => {
                let host = REFERENCE.get(&inputs)?;
                let mut registry = client(&host, &inputs)?;
                registry.login()?;
                kiln_sdk::info!("credentials for {host} accepted");
                Ok(Outputs::new())
            }
            "push" => {
                let target = Reference::parse(&REFERENCE.get(&inputs)?)?;
                let layout = ImageLayout::open(LAYOUT.require(&inputs)?)?;
                let image = IMAGE.get(&inputs)?;
                let root = layout.root_descriptor(image.as_deref().or(target.tag.as_deref()))?;
                let mut registry = client(target.api_host(), &inputs)?;
                let chunk = CHUNK_SIZE.get(&inputs)?;
                if chunk < 0 {
                    return Err(Error::invalid_input(format!(
                        "input `{}` must be 0 or more bytes",
                        CHUNK_SIZE.name()
                    )));
                }
                let options = registry::PushOptions {
                    chunk_size: (chunk > 0).then_some(chunk as u64),
                    mount_from: MOUNT_FROM
                        .get(&inputs)?
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
                if let Some(file) = DIGEST_FILE.get(&inputs)? {
                    std::fs::write(&file, &report.digest).context(format!("writing {file}"))?;
                }
                Ok(Outputs::new()
                    .text("digest", report.digest)
                    .integer("uploaded-bytes", report.uploaded_bytes as i64))
            }
            "pull" => {
                let source = Reference::parse(&REFERENCE.get(&inputs)?)?;
                let layout = ImageLayout::open_or_create(LAYOUT.require(&inputs)?)?;
                let mut registry = client(source.api_host(), &inputs)?;
                let platform = Platform::parse(&PLATFORM.get(&inputs)?)?;
                let report = registry::pull(&mut registry, &source, &layout, &platform)?;
                kiln_sdk::info!(
                    "pulled {source}@{}: {} blobs downloaded, {} already present",
                    report.digest,
                    report.downloaded_blobs,
                    report.present_blobs
                );
                Ok(Outputs::new().text("digest", report.digest))
            }
            other => Err(Error::invalid_input(format!(
                "input `{}` must be login, push or pull, not `{other}`",
                OPERATION.name()
            ))),
        }
    }
}

export_step!(RegistryStep);
