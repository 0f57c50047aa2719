//! Push an image from an OCI layout: blobs first (skipping those the
//! registry has), then manifests, children before the index, each with its
//! exact bytes and media type.

use oci_spec::image::{Descriptor, ImageIndex, ImageManifest};

use super::{Call, Payload, Registry, is_index, pull_scope, push_scope, with_query};
use crate::blob::short;
use crate::layout::ImageLayout;
use crate::{OciError, Reference};

/// How to push.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PushOptions {
    /// Upload blobs in chunks of this many bytes (PATCH), instead of one
    /// PUT each.
    pub chunk_size: Option<u64>,
    /// Repositories of the same registry that may hold the blobs already
    /// (a base image's): tried as cross-repository mounts first.
    pub mount_from: Vec<String>,
}

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
    /// Blobs mounted from another repository.
    pub mounted_blobs: usize,
}

/// Push the image `root` of `layout` to `target`: under its tag, by its
/// digest when the reference names only a digest, and as `latest` when it
/// names neither (as `docker push` and `skopeo copy` do).
pub fn push(
    registry: &mut Registry,
    layout: &ImageLayout,
    root: &Descriptor,
    target: &Reference,
    options: &PushOptions,
) -> Result<PushReport, OciError> {
    let mut pusher = Pusher {
        registry,
        layout,
        repository: &target.repository,
        options,
        report: PushReport::default(),
    };
    let reference = match (&target.tag, &target.digest) {
        (Some(tag), _) => tag.clone(),
        (None, Some(_)) => root.digest().to_string(),
        (None, None) => "latest".to_owned(),
    };
    pusher.manifest(root, &reference)?;
    pusher.report.digest = root.digest().to_string();
    Ok(pusher.report)
}

/// Upload sessions tried for one blob.
const UPLOAD_ATTEMPTS: u32 = 3;

/// Blob uploads in flight at once.
pub const PARALLEL_UPLOADS: usize = 4;

/// Chunk size used when a registry refuses a blob in one piece (413).
const FALLBACK_CHUNK: u64 = 16 << 20;

/// How one blob is sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// One PUT with the whole blob.
    Monolithic,
    /// PATCHes of this many bytes, then an empty PUT.
    Chunked(u64),
}

struct Pusher<'a> {
    registry: &'a mut Registry,
    layout: &'a ImageLayout,
    repository: &'a str,
    options: &'a PushOptions,
    report: PushReport,
}

impl Pusher<'_> {
    fn manifest(&mut self, descriptor: &Descriptor, reference: &str) -> Result<(), OciError> {
        let bytes = self.layout.read_blob(descriptor)?;
        let media_type = descriptor.media_type().to_string();
        if is_index(&media_type) {
            let index: ImageIndex = serde_json::from_slice(&bytes)
                .map_err(|e| OciError::Invalid(format!("index {}: {e}", descriptor.digest())))?;
            for child in index.manifests() {
                self.manifest(child, child.digest().as_ref())?;
            }
        } else {
            let manifest: ImageManifest = serde_json::from_slice(&bytes)
                .map_err(|e| OciError::Invalid(format!("manifest {}: {e}", descriptor.digest())))?;
            let mut blobs = vec![manifest.config().clone()];
            blobs.extend(manifest.layers().iter().cloned());
            self.blobs(&blobs)?;
        }
        let url = self
            .registry
            .url(&format!("{}/manifests/{reference}", self.repository));
        let call = Call::new(
            "PUT",
            url,
            format!("pushing manifest {}", descriptor.digest()),
        )
        .header("content-type", media_type)
        .body(Payload::Bytes(bytes));
        let response = self.registry.send(call, &[push_scope(self.repository)])?;
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
            status => Err(self.registry.refusal(
                &format!("pushing manifest {reference}"),
                status,
                response,
            )),
        }
    }

    /// Send the blobs the registry lacks: those it has are skipped (HEAD),
    /// those it can mount are mounted, and the rest are uploaded side by
    /// side, at most [`PARALLEL_UPLOADS`] at once.
    fn blobs(&mut self, blobs: &[Descriptor]) -> Result<(), OciError> {
        let mut to_upload = Vec::new();
        for descriptor in blobs {
            let digest = descriptor.digest().to_string();
            let head = Call::new(
                "HEAD",
                self.registry
                    .url(&format!("{}/blobs/{digest}", self.repository)),
                format!("checking blob {digest}"),
            );
            if self
                .registry
                .send(head, &[push_scope(self.repository)])?
                .status()
                == 200
            {
                self.report.skipped_blobs += 1;
                continue;
            }
            // A layout may lack a base image's blobs that the registry
            // mounts; any other blob must be there, with its size, before
            // an upload starts.
            let mounted = self.mount(&digest)?;
            if !matches!(mounted, Mounted::Yes) {
                self.layout.open_blob(descriptor)?;
            }
            match mounted {
                Mounted::Yes => self.report.mounted_blobs += 1,
                Mounted::SessionOpened(location) => {
                    to_upload.push((descriptor.clone(), Some(location)))
                }
                Mounted::No => to_upload.push((descriptor.clone(), None)),
            }
        }
        let failed = match self.options.chunk_size {
            Some(size) if size > 0 => to_upload,
            _ => self.upload_side_by_side(to_upload)?,
        };
        for (descriptor, session) in failed {
            self.upload_with_retries(&descriptor, session)?;
        }
        Ok(())
    }

    /// Monolithic uploads of `blobs` at once; returns those that failed,
    /// to be retried one by one.
    fn upload_side_by_side(
        &mut self,
        blobs: Vec<(Descriptor, Option<String>)>,
    ) -> Result<Vec<(Descriptor, Option<String>)>, OciError> {
        if blobs.len() < 2 {
            return Ok(blobs);
        }
        let scopes = [push_scope(self.repository)];
        let mut calls = Vec::new();
        for (descriptor, session) in &blobs {
            let digest = descriptor.digest().to_string();
            let location = match session {
                Some(location) => location.clone(),
                None => self.open_session(&digest)?,
            };
            calls.push(self.final_put(&digest, &location, self.monolithic_body(descriptor)?));
        }
        let results = self
            .registry
            .send_concurrently(&calls, &scopes, PARALLEL_UPLOADS);
        let mut failed = Vec::new();
        for ((descriptor, _), result) in blobs.into_iter().zip(results) {
            match result {
                Ok(response) if matches!(response.status(), 201 | 204) => {
                    self.uploaded(&descriptor)
                }
                Ok(response) => {
                    kiln_sdk::warn!(
                        "uploading {} answered {}; retrying it alone",
                        descriptor.digest(),
                        response.status()
                    );
                    failed.push((descriptor, None));
                }
                Err(error) => {
                    kiln_sdk::warn!(
                        "uploading {} failed ({error}); retrying it alone",
                        descriptor.digest()
                    );
                    failed.push((descriptor, None));
                }
            }
        }
        Ok(failed)
    }

    fn uploaded(&mut self, descriptor: &Descriptor) {
        self.report.uploaded_blobs += 1;
        self.report.uploaded_bytes += descriptor.size();
        kiln_sdk::info!(
            "uploaded {} ({} bytes)",
            descriptor.digest(),
            descriptor.size()
        );
    }

    fn monolithic_body(&self, descriptor: &Descriptor) -> Result<Payload, OciError> {
        Ok(Payload::File {
            path: self.layout.blob_path(descriptor.digest().as_ref())?,
            offset: 0,
            len: descriptor.size(),
            progress: Some(format!("push {}", short(descriptor.digest().as_ref()))),
        })
    }

    /// One blob, alone: a session that fails mid-upload is gone, so each
    /// try starts a new one; a registry that refuses one mode gets the
    /// other.
    fn upload_with_retries(
        &mut self,
        descriptor: &Descriptor,
        mut session: Option<String>,
    ) -> Result<(), OciError> {
        let digest = descriptor.digest().to_string();
        let mut mode = match self.options.chunk_size {
            Some(size) if size > 0 => Mode::Chunked(size),
            _ => Mode::Monolithic,
        };
        let mut attempt = 1;
        loop {
            match self.upload(descriptor, mode, session.take()) {
                Ok(()) => break,
                Err(error) if attempt < UPLOAD_ATTEMPTS => {
                    let fallback = match (mode, &error) {
                        (Mode::Monolithic, OciError::Registry { status: 413, .. }) => {
                            Some(Mode::Chunked(FALLBACK_CHUNK))
                        }
                        (
                            Mode::Chunked(_),
                            OciError::Registry {
                                status: 400 | 405 | 416,
                                ..
                            },
                        ) => Some(Mode::Monolithic),
                        _ if is_transient(&error) => Some(mode),
                        _ => None,
                    };
                    let Some(next) = fallback else {
                        return Err(error);
                    };
                    kiln_sdk::warn!("uploading {digest} failed ({error}); starting a new upload");
                    mode = next;
                    attempt += 1;
                }
                Err(error) => return Err(error),
            }
        }
        self.uploaded(descriptor);
        Ok(())
    }

    /// Open an upload session; returns its `Location`.
    fn open_session(&mut self, digest: &str) -> Result<String, OciError> {
        let uploads = self
            .registry
            .url(&format!("{}/blobs/uploads/", self.repository));
        let open = Call::new(
            "POST",
            uploads.clone(),
            format!("starting the upload of {digest}"),
        );
        let response = self.registry.send(open, &[push_scope(self.repository)])?;
        let status = response.status();
        match (status, response.header("location")) {
            (202, Some(location)) => Ok(self.registry.resolve(&uploads, location)),
            _ => Err(self.registry.refusal(
                &format!("starting the upload of {digest}"),
                status,
                response,
            )),
        }
    }

    /// The PUT that closes a session with the blob's digest (the digest is
    /// added to the query `Location` already has).
    fn final_put(&self, digest: &str, location: &str, body: Payload) -> Call {
        Call::new(
            "PUT",
            with_query(location, "digest", digest),
            format!("uploading {digest}"),
        )
        .header("content-type", "application/octet-stream")
        .body(body)
        .once()
    }

    /// Try each `mount_from` repository: 201 means mounted; 202 means the
    /// registry opened an upload session instead, to be used as is.
    fn mount(&mut self, digest: &str) -> Result<Mounted, OciError> {
        for from in &self.options.mount_from {
            let uploads = self
                .registry
                .url(&format!("{}/blobs/uploads/", self.repository));
            let url = with_query(&with_query(&uploads, "mount", digest), "from", from);
            let scopes = [push_scope(self.repository), pull_scope(from)];
            let response = self.registry.send(
                Call::new("POST", url, format!("mounting {digest} from {from}")),
                &scopes,
            )?;
            match (response.status(), response.header("location")) {
                (201, _) => return Ok(Mounted::Yes),
                (202, Some(location)) => {
                    return Ok(Mounted::SessionOpened(
                        self.registry.resolve(&uploads, location),
                    ));
                }
                _ => continue,
            }
        }
        Ok(Mounted::No)
    }

    /// One upload session (opened here unless `session` is given).
    fn upload(
        &mut self,
        descriptor: &Descriptor,
        mode: Mode,
        session: Option<String>,
    ) -> Result<(), OciError> {
        let digest = descriptor.digest().to_string();
        let size = descriptor.size();
        let scopes = [push_scope(self.repository)];
        let mut location = match session {
            Some(location) => location,
            None => self.open_session(&digest)?,
        };
        let final_body = match mode {
            Mode::Monolithic => self.monolithic_body(descriptor)?,
            Mode::Chunked(chunk) => {
                let path = self.layout.blob_path(&digest)?;
                let mut offset = 0;
                while offset < size {
                    let len = chunk.min(size - offset);
                    let patch = Call::new("PATCH", location.clone(), format!("uploading {digest}"))
                        .header("content-type", "application/octet-stream")
                        .header("content-range", format!("{offset}-{}", offset + len - 1))
                        .body(Payload::File {
                            path: path.clone(),
                            offset,
                            len,
                            progress: None,
                        })
                        .once();
                    let response = self.registry.send(patch, &scopes)?;
                    let status = response.status();
                    match (status, response.header("location")) {
                        // Always continue at the newest Location.
                        (202, Some(next)) => location = self.registry.resolve(&location, next),
                        _ => {
                            return Err(self.registry.refusal(
                                &format!("uploading {digest}"),
                                status,
                                response,
                            ));
                        }
                    }
                    offset += len;
                    kiln_sdk::log::progress(&format!("push {}", short(&digest)), offset, Some(size));
                }
                Payload::Empty
            }
        };
        let response = self
            .registry
            .send(self.final_put(&digest, &location, final_body), &scopes)?;
        match response.status() {
            201 | 204 => Ok(()),
            status => Err(self
                .registry
                .refusal(&format!("uploading {digest}"), status, response)),
        }
    }
}

enum Mounted {
    Yes,
    SessionOpened(String),
    No,
}

fn is_transient(error: &OciError) -> bool {
    match error {
        OciError::Http(kiln_sdk::http::HttpError::Transport(_)) => true,
        OciError::Registry { status, .. } => *status == 404 || *status == 429 || *status >= 500,
        _ => false,
    }
}
