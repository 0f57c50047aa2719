//! Push an image from an OCI layout: blobs first (skipping those the
//! registry has), then manifests, children before the index, each with its
//! exact bytes and media type.

use oci_spec::image::{Descriptor, ImageIndex, ImageManifest, MediaType};

use super::{Call, Payload, Registry, push_scope, with_query};
use crate::layout::ImageLayout;
use crate::{OciError, Reference};

/// What a push did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PushReport {
    /// Digest of the pushed root manifest.
    pub digest: String,
    /// Blobs uploaded.
    pub uploaded_blobs: usize,
    /// Blob bytes uploaded.
    pub uploaded_bytes: u64,
    /// Blobs the registry already had.
    pub skipped_blobs: usize,
}

/// The annotation naming a manifest in a layout's index.
pub const REF_NAME: &str = "org.opencontainers.image.ref.name";

/// The manifest of `layout` to push: the only one, or the one whose
/// `ref.name` is `name`.
pub fn root_descriptor(layout: &ImageLayout, name: Option<&str>) -> Result<Descriptor, OciError> {
    let index = layout.index()?;
    let manifests = index.manifests();
    let named = |d: &&Descriptor| {
        d.annotations()
            .as_ref()
            .and_then(|a| a.get(REF_NAME))
            .is_some_and(|n| Some(n.as_str()) == name)
    };
    if let Some(found) = manifests.iter().find(named) {
        return Ok(found.clone());
    }
    match manifests.as_slice() {
        [only] => Ok(only.clone()),
        [] => Err(OciError::Invalid(format!(
            "{} holds no image (index.json lists no manifests)",
            layout.root().display()
        ))),
        many => Err(OciError::Invalid(format!(
            "{} holds {} images; name one with its {REF_NAME} annotation",
            layout.root().display(),
            many.len()
        ))),
    }
}

fn is_index(media_type: &MediaType) -> bool {
    match media_type {
        MediaType::ImageIndex => true,
        MediaType::Other(other) => {
            other == "application/vnd.docker.distribution.manifest.list.v2+json"
        }
        _ => false,
    }
}

/// Push the image `root` of `layout` to `target` (tag, or its digest when
/// the reference has none).
pub fn push(
    registry: &mut Registry,
    layout: &ImageLayout,
    root: &Descriptor,
    target: &Reference,
) -> Result<PushReport, OciError> {
    let mut report = PushReport::default();
    let reference = target
        .tag
        .clone()
        .unwrap_or_else(|| root.digest().to_string());
    push_manifest(
        registry,
        layout,
        root,
        &target.repository,
        &reference,
        &mut report,
    )?;
    report.digest = root.digest().to_string();
    Ok(report)
}

fn push_manifest(
    registry: &mut Registry,
    layout: &ImageLayout,
    descriptor: &Descriptor,
    repository: &str,
    reference: &str,
    report: &mut PushReport,
) -> Result<(), OciError> {
    let bytes = layout.read_blob(descriptor)?;
    let media_type = descriptor.media_type().to_string();
    if is_index(descriptor.media_type()) {
        let index: ImageIndex = serde_json::from_slice(&bytes)
            .map_err(|e| OciError::Invalid(format!("index {}: {e}", descriptor.digest())))?;
        for child in index.manifests() {
            push_manifest(
                registry,
                layout,
                child,
                repository,
                child.digest().as_ref(),
                report,
            )?;
        }
    } else {
        let manifest: ImageManifest = serde_json::from_slice(&bytes)
            .map_err(|e| OciError::Invalid(format!("manifest {}: {e}", descriptor.digest())))?;
        push_blob(registry, layout, manifest.config(), repository, report)?;
        for layer in manifest.layers() {
            push_blob(registry, layout, layer, repository, report)?;
        }
    }
    let url = registry.url(&format!("{repository}/manifests/{reference}"));
    let call = Call::new(
        "PUT",
        url,
        format!("pushing manifest {}", descriptor.digest()),
    )
    .header("content-type", media_type)
    .body(Payload::Bytes(bytes));
    let response = registry.send(call, &[push_scope(repository)])?;
    match response.status() {
        200..=202 => {
            if let Some(answered) = response.header("docker-content-digest")
                && answered.starts_with("sha256:")
                && answered != descriptor.digest().to_string()
            {
                return Err(OciError::DigestMismatch {
                    what: format!("manifest pushed as {reference}"),
                    expected: descriptor.digest().to_string(),
                    actual: answered.to_owned(),
                });
            }
            Ok(())
        }
        status => Err(registry.refusal(&format!("pushing manifest {reference}"), status, response)),
    }
}

/// Upload one blob unless the registry has it: HEAD, then POST and a
/// monolithic PUT to the newest `Location`.
fn push_blob(
    registry: &mut Registry,
    layout: &ImageLayout,
    descriptor: &Descriptor,
    repository: &str,
    report: &mut PushReport,
) -> Result<(), OciError> {
    let digest = descriptor.digest().to_string();
    let scopes = [push_scope(repository)];
    let head = Call::new(
        "HEAD",
        registry.url(&format!("{repository}/blobs/{digest}")),
        format!("checking blob {digest}"),
    );
    let response = registry.send(head, &scopes)?;
    if response.status() == 200 {
        report.skipped_blobs += 1;
        return Ok(());
    }
    let path = layout.blob_path(&digest)?;
    // Checks the size before anything is sent.
    layout.open_blob(descriptor)?;
    // A session that fails mid-upload is gone: start a new one.
    let mut attempt = 1;
    loop {
        match upload(registry, repository, &digest, &path, descriptor.size()) {
            Ok(()) => break,
            Err(error) if attempt < UPLOAD_ATTEMPTS && is_transient(&error) => {
                kiln_sdk::warn!("uploading {digest} failed ({error}); starting a new upload");
                attempt += 1;
            }
            Err(error) => return Err(error),
        }
    }
    report.uploaded_blobs += 1;
    report.uploaded_bytes += descriptor.size();
    kiln_sdk::info!("uploaded {digest} ({} bytes)", descriptor.size());
    Ok(())
}

/// Upload sessions tried for one blob.
const UPLOAD_ATTEMPTS: u32 = 3;

fn is_transient(error: &OciError) -> bool {
    match error {
        OciError::Http(kiln_sdk::http::HttpError::Transport(_)) => true,
        OciError::Registry { status, .. } => *status == 404 || *status == 429 || *status >= 500,
        _ => false,
    }
}

/// One upload session: POST, then a monolithic PUT of the whole blob to
/// the `Location` the POST returned, with its query kept.
fn upload(
    registry: &mut Registry,
    repository: &str,
    digest: &str,
    path: &std::path::Path,
    size: u64,
) -> Result<(), OciError> {
    let scopes = [push_scope(repository)];
    let uploads = registry.url(&format!("{repository}/blobs/uploads/"));
    let open = Call::new(
        "POST",
        uploads.clone(),
        format!("starting the upload of {digest}"),
    );
    let response = registry.send(open, &scopes)?;
    let status = response.status();
    let location = match (status, response.header("location")) {
        (202, Some(location)) => location.to_owned(),
        _ => {
            return Err(registry.refusal(
                &format!("starting the upload of {digest}"),
                status,
                response,
            ));
        }
    };
    let upload_url = registry.resolve(&uploads, &location);
    let put = Call::new(
        "PUT",
        with_query(&upload_url, "digest", digest),
        format!("uploading {digest}"),
    )
    .header("content-type", "application/octet-stream")
    .body(Payload::File {
        path: path.to_owned(),
        len: size,
    })
    .once();
    let response = registry.send(put, &scopes)?;
    match response.status() {
        201 | 204 => Ok(()),
        status => Err(registry.refusal(&format!("uploading {digest}"), status, response)),
    }
}
