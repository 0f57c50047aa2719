//! Pull an image into an OCI layout: the manifest (an index narrowed to
//! one platform), then only the blobs the layout lacks, each checked
//! against its digest while it is written.

use std::io::Read;

use oci_spec::image::{Descriptor, ImageIndex, ImageManifest, MediaType};
use serde_json::{Map, Value};

use super::{Call, MANIFEST_ACCEPT, MAX_DOCUMENT, Registry, is_index, pull_scope};
use crate::blob::short;
use crate::image::Image;
use crate::layer::Layer;
use crate::layout::ImageLayout;
use crate::{OciError, Platform, Reference};

/// What a pull did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PullReport {
    /// Digest of the image manifest written to the layout.
    pub digest: String,
    /// Blobs downloaded.
    pub downloaded_blobs: usize,
    /// Blobs the layout already had.
    pub present_blobs: usize,
}

/// A fetched manifest: exact bytes, media type, digest.
struct Fetched {
    bytes: Vec<u8>,
    media_type: String,
    digest: String,
}

fn fetch_manifest(
    registry: &mut Registry,
    repository: &str,
    reference: &str,
) -> Result<Fetched, OciError> {
    let call = Call::new(
        "GET",
        registry.url(&format!("{repository}/manifests/{reference}")),
        format!("fetching manifest {reference}"),
    )
    .header("accept", MANIFEST_ACCEPT);
    let response = registry.send(call, &[pull_scope(repository)])?;
    let status = response.status();
    if status != 200 {
        return Err(registry.refusal(
            &format!("fetching manifest {repository}:{reference}"),
            status,
            response,
        ));
    }
    let media_type = response
        .header("content-type")
        .map(|v| v.split(';').next().unwrap_or_default().trim().to_owned())
        .unwrap_or_default();
    let announced = response.header("docker-content-digest").map(str::to_owned);
    let bytes = response.bytes(MAX_DOCUMENT)?;
    let digest = kiln_sdk::digest::sha256_oci(&bytes);
    if reference.contains(':') && digest != reference {
        return Err(OciError::DigestMismatch {
            what: format!("manifest {reference}"),
            expected: reference.to_owned(),
            actual: digest,
        });
    }
    if let Some(announced) = announced.filter(|a| a.starts_with("sha256:"))
        && announced != digest
    {
        return Err(OciError::DigestMismatch {
            what: format!("manifest {repository}:{reference}"),
            expected: announced,
            actual: digest,
        });
    }
    let declared: serde_json::Value = serde_json::from_slice(&bytes)
        .map_err(|e| OciError::Invalid(format!("manifest {reference} is not JSON: {e}")))?;
    if let Some(inner) = declared["mediaType"].as_str()
        && !media_type.is_empty()
        && inner != media_type
    {
        return Err(OciError::Invalid(format!(
            "manifest {reference} says mediaType {inner} but was served as {media_type}"
        )));
    }
    let media_type = if media_type.is_empty() {
        declared["mediaType"]
            .as_str()
            .unwrap_or_default()
            .to_owned()
    } else {
        media_type
    };
    Ok(Fetched {
        bytes,
        media_type,
        digest,
    })
}

/// Pick the manifest for `platform` from an index.
fn select_platform(index: &ImageIndex, platform: &Platform) -> Result<Descriptor, OciError> {
    index
        .manifests()
        .iter()
        .find(|d| {
            d.platform().as_ref().is_some_and(|p| {
                platform.matches(
                    &p.os().to_string(),
                    &p.architecture().to_string(),
                    p.variant().as_deref(),
                )
            })
        })
        .cloned()
        .ok_or_else(|| {
            let available: Vec<String> = index
                .manifests()
                .iter()
                .filter_map(|d| d.platform().as_ref())
                .map(|p| format!("{}/{}", p.os(), p.architecture()))
                .collect();
            OciError::Invalid(format!(
                "the image has no {platform} variant (it has: {})",
                available.join(", ")
            ))
        })
}

/// An image manifest resolved from a registry: for one platform when the
/// reference names an index.
pub struct ResolvedImage {
    /// The manifest's exact bytes.
    pub bytes: Vec<u8>,
    /// Its media type as served.
    pub media_type: String,
    /// Its digest.
    pub digest: String,
    /// The parsed manifest.
    pub manifest: ImageManifest,
}

/// Fetch the manifest `reference` names, narrowed to `platform` when it is
/// an index; no blobs are downloaded.
pub fn resolve(
    registry: &mut Registry,
    reference: &Reference,
    platform: &Platform,
) -> Result<ResolvedImage, OciError> {
    let repository = &reference.repository;
    let mut fetched = fetch_manifest(registry, repository, reference.manifest_reference())?;
    if is_index(&fetched.media_type) {
        let index: ImageIndex = serde_json::from_slice(&fetched.bytes)
            .map_err(|e| OciError::Invalid(format!("index of {reference}: {e}")))?;
        let chosen = select_platform(&index, platform)?;
        fetched = fetch_manifest(registry, repository, chosen.digest().as_ref())?;
    }
    let manifest: ImageManifest = serde_json::from_slice(&fetched.bytes)
        .map_err(|e| OciError::Invalid(format!("manifest of {reference}: {e}")))?;
    Ok(ResolvedImage {
        bytes: fetched.bytes,
        media_type: fetched.media_type,
        digest: fetched.digest,
        manifest,
    })
}

/// Download the blobs of `blobs` that `layout` lacks, each verified against
/// its digest. Returns how many were downloaded and how many were present.
pub fn download<'a>(
    registry: &mut Registry,
    repository: &str,
    blobs: impl IntoIterator<Item = &'a Descriptor>,
    layout: &ImageLayout,
) -> Result<(usize, usize), OciError> {
    let (mut downloaded, mut present) = (0, 0);
    for blob in blobs {
        if layout.has_blob(blob) {
            present += 1;
            continue;
        }
        fetch_blob(registry, repository, blob, layout)?;
        downloaded += 1;
    }
    Ok((downloaded, present))
}

/// Pull `reference` into `layout`, naming it `reference`'s tag there.
pub fn pull(
    registry: &mut Registry,
    reference: &Reference,
    layout: &ImageLayout,
    platform: &Platform,
) -> Result<PullReport, OciError> {
    let fetched = resolve(registry, reference, platform)?;
    let manifest = &fetched.manifest;
    let (downloaded_blobs, present_blobs) = download(
        registry,
        &reference.repository,
        std::iter::once(manifest.config()).chain(manifest.layers().iter()),
        layout,
    )?;
    let report = PullReport {
        digest: fetched.digest.clone(),
        downloaded_blobs,
        present_blobs,
    };
    let descriptor =
        layout.write_descriptor(MediaType::from(fetched.media_type.as_str()), &fetched.bytes)?;
    let name = reference.tag.clone().unwrap_or(fetched.digest);
    layout.tag(&descriptor, &[name])?;
    Ok(report)
}

fn fetch_blob(
    registry: &mut Registry,
    repository: &str,
    blob: &Descriptor,
    layout: &ImageLayout,
) -> Result<(), OciError> {
    let digest = blob.digest().to_string();
    let call = Call::new(
        "GET",
        registry.url(&format!("{repository}/blobs/{digest}")),
        format!("downloading {digest}"),
    );
    let mut response = registry.send(call, &[pull_scope(repository)])?;
    let status = response.status();
    if status != 200 {
        return Err(registry.refusal(&format!("downloading {digest}"), status, response));
    }
    // Never store more than the descriptor promises: one byte past it is
    // enough to know the body is too long, however much more the registry
    // would send.
    let mut body = kiln_sdk::log::ProgressReader::new(
        response.body_reader(),
        format!("pull {}", short(&digest)),
        blob.size(),
    )
    .take(blob.size().saturating_add(1));
    let (_, size) = match layout.store_blob(&mut body, Some(&digest)) {
        Err(OciError::DigestMismatch { .. }) if body.limit() == 0 => {
            return Err(OciError::Invalid(format!(
                "blob {digest} is longer than the {} bytes its descriptor says; the registry's reply was cut there",
                blob.size()
            )));
        }
        stored => stored?,
    };
    if size != blob.size() {
        return Err(OciError::Invalid(format!(
            "blob {digest} has {size} bytes, its descriptor says {}",
            blob.size()
        )));
    }
    Ok(())
}

/// Resolve `reference` for `platform` and download its config into
/// `layout`: the image a build starts from. Its layers are fetched later,
/// only if something needs them ([`fetch_layers`]): a pushed image can
/// name them unread, and the registry mounts them.
pub fn pull_image(
    reference: &Reference,
    platform: &Platform,
    layout: &ImageLayout,
    insecure: bool,
) -> Result<Image, OciError> {
    let mut client = Registry::connect(reference.api_host(), insecure)?;
    let resolved = resolve(&mut client, reference, platform)?;
    let manifest = resolved.manifest;
    download(
        &mut client,
        &reference.repository,
        std::iter::once(manifest.config()),
        layout,
    )?;
    let config = layout.read_blob(manifest.config())?;
    let document: Map<String, Value> = serde_json::from_slice(&config).map_err(|e| {
        OciError::Inconsistent(format!(
            "the config of {reference} is not an image config: {e}"
        ))
    })?;
    // A reference to one image (no index) is taken as it is only where
    // it is for the platform asked for: an amd64 image must not become
    // the arm64 entry of a multi-platform build.
    let field = |name: &str| document.get(name).and_then(Value::as_str);
    if let (Some(os), Some(architecture)) = (field("os"), field("architecture"))
        && !platform.matches(os, architecture, field("variant"))
    {
        let variant = field("variant").map(|v| format!("/{v}")).unwrap_or_default();
        return Err(OciError::Invalid(format!(
            "{reference} is an image for {os}/{architecture}{variant}, not {platform}; build for its platform, or use a multi-platform base"
        )));
    }
    let mut image = Image {
        document,
        layers: Vec::new(),
    };
    let diff_ids = image.diff_ids();
    if diff_ids.len() != manifest.layers().len() {
        return Err(OciError::Inconsistent(format!(
            "{reference}: its config lists {} diff_ids for {} layers",
            diff_ids.len(),
            manifest.layers().len()
        )));
    }
    let origin = format!("{}/{}", reference.registry, reference.repository);
    image.layers = manifest
        .layers()
        .iter()
        .zip(diff_ids)
        .map(|(descriptor, diff_id)| Layer {
            descriptor: oci_layer(descriptor),
            diff_id,
            tar_size: None,
            origin: Some(origin.clone()),
        })
        .collect();
    kiln_sdk::info!("base {reference}@{}", resolved.digest);
    Ok(image)
}

/// Download the layers of `layers` that `layout` lacks from the
/// registries they came from ([`Layer::origin`]).
pub fn fetch_layers(
    layers: &[Layer],
    layout: &ImageLayout,
    insecure: bool,
) -> Result<(), OciError> {
    for layer in layers.iter().filter(|l| !layout.has_blob(&l.descriptor)) {
        let origin = layer.origin.as_deref().ok_or_else(|| {
            OciError::Inconsistent(format!(
                "layer {} is neither in the layout nor from a registry",
                layer.descriptor.digest()
            ))
        })?;
        let reference =
            Reference::parse(origin).map_err(|e| OciError::Inconsistent(e.to_string()))?;
        let mut client = Registry::connect(reference.api_host(), insecure)?;
        kiln_sdk::info!(
            "fetching base layer {} from {origin}",
            layer.descriptor.digest()
        );
        download(
            &mut client,
            &reference.repository,
            std::iter::once(&layer.descriptor),
            layout,
        )?;
    }
    Ok(())
}

/// A base layer's descriptor with Docker media types turned into their OCI
/// equivalents (the bytes are the same), so the built manifest is pure OCI.
fn oci_layer(descriptor: &Descriptor) -> Descriptor {
    let media_type = match descriptor.media_type().to_string().as_str() {
        "application/vnd.docker.image.rootfs.diff.tar.gzip" => MediaType::ImageLayerGzip,
        "application/vnd.docker.image.rootfs.diff.tar" => MediaType::ImageLayer,
        _ => descriptor.media_type().clone(),
    };
    let mut converted = descriptor.clone();
    converted.set_media_type(media_type);
    converted
}
