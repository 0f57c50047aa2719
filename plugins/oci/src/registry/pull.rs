//! Pull an image into an OCI layout: the manifest (an index narrowed to
//! one platform), then only the blobs the layout lacks, each checked
//! against its digest while it is written.

use std::collections::HashMap;
use std::io::Read;

use oci_spec::image::{Descriptor, ImageIndex, ImageManifest, MediaType};

use super::push::REF_NAME;
use super::{Call, MANIFEST_ACCEPT, MAX_DOCUMENT, Registry, pull_scope};
use crate::layout::ImageLayout;
use crate::{OciError, Reference};

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

fn is_index_type(media_type: &str) -> bool {
    media_type == "application/vnd.oci.image.index.v1+json"
        || media_type == "application/vnd.docker.distribution.manifest.list.v2+json"
}

/// Pick the manifest for `platform` (`os/arch[/variant]`) from an index.
fn select_platform(index: &ImageIndex, platform: &str) -> Result<Descriptor, OciError> {
    let mut parts = platform.split('/');
    let (os, arch, variant) = (
        parts.next().unwrap_or_default(),
        parts.next().unwrap_or_default(),
        parts.next(),
    );
    index
        .manifests()
        .iter()
        .find(|d| {
            d.platform().as_ref().is_some_and(|p| {
                p.os().to_string() == os
                    && p.architecture().to_string() == arch
                    && variant.is_none_or(|v| p.variant().as_deref() == Some(v))
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

/// Fetch the manifest `reference` names, narrowed to `platform`
/// (`os/arch[/variant]`) when it is an index; no blobs are downloaded.
pub fn resolve(
    registry: &mut Registry,
    reference: &Reference,
    platform: &str,
) -> Result<ResolvedImage, OciError> {
    let repository = &reference.repository;
    let mut fetched = fetch_manifest(registry, repository, reference.manifest_reference())?;
    if is_index_type(&fetched.media_type) {
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
    platform: &str,
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
    layout.write_blob(&fetched.bytes)?;

    let mut annotations = HashMap::new();
    let name = reference
        .tag
        .clone()
        .unwrap_or_else(|| fetched.digest.clone());
    annotations.insert(REF_NAME.to_owned(), name.clone());
    let mut descriptor = Descriptor::new(
        MediaType::from(fetched.media_type.as_str()),
        fetched.bytes.len() as u64,
        fetched
            .digest
            .parse::<oci_spec::image::Digest>()
            .map_err(|e| OciError::Invalid(e.to_string()))?,
    );
    descriptor.set_annotations(Some(annotations));
    let mut index = layout.index()?;
    let mut manifests: Vec<Descriptor> = index
        .manifests()
        .iter()
        .filter(|d| d.annotations().as_ref().and_then(|a| a.get(REF_NAME)) != Some(&name))
        .cloned()
        .collect();
    manifests.push(descriptor);
    index.set_manifests(manifests);
    layout.commit(&index)?;
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
    let mut body = response.body_reader().take(blob.size().saturating_add(1));
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
