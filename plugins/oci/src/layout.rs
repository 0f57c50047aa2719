//! The OCI image layout on disk: `oci-layout`, `index.json` and
//! `blobs/<algorithm>/<encoded>` — kiln's hand-off format between steps.
//!
//! Blobs are written to a temporary file, hashed as they are written, and
//! renamed into place only when their digest is right. `oci-layout` and
//! `index.json` are written last, each by rename, so an interrupted write
//! never leaves a layout that looks complete.

use std::collections::HashMap;
use std::fs::File;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use oci_spec::image::{Descriptor, ImageIndex, MediaType};

use crate::OciError;
use crate::error::io;
use crate::blob::{copy, parse_digest};
use kiln_sdk::digest::Sha256;

/// The `oci-layout` file's contents.
const LAYOUT_MARKER: &str = r#"{"imageLayoutVersion":"1.0.0"}"#;

/// The annotation naming a manifest in a layout's index: a layout's tags.
pub const REF_NAME: &str = "org.opencontainers.image.ref.name";

/// An image layout directory.
#[derive(Debug, Clone)]
pub struct ImageLayout {
    root: PathBuf,
}

impl ImageLayout {
    /// Open an existing layout; refuses a directory without `oci-layout`.
    pub fn open(root: impl Into<PathBuf>) -> Result<ImageLayout, OciError> {
        let root = root.into();
        let marker = root.join("oci-layout");
        let text = std::fs::read_to_string(&marker).map_err(|e| {
            OciError::Invalid(format!(
                "{} is not an OCI image layout (no readable oci-layout file: {e})",
                root.display()
            ))
        })?;
        let version: serde_json::Value = serde_json::from_str(&text)
            .map_err(|e| OciError::Invalid(format!("{}: {e}", marker.display())))?;
        if version["imageLayoutVersion"] != "1.0.0" {
            return Err(OciError::Invalid(format!(
                "{}: unsupported imageLayoutVersion {}",
                marker.display(),
                version["imageLayoutVersion"]
            )));
        }
        Ok(ImageLayout { root })
    }

    /// Open the layout at `root`, or prepare an empty one there. Nothing
    /// marks it complete until [`ImageLayout::commit`].
    pub fn open_or_create(root: impl Into<PathBuf>) -> Result<ImageLayout, OciError> {
        let root = root.into();
        if root.join("oci-layout").exists() {
            return ImageLayout::open(root);
        }
        let blobs = root.join("blobs").join("sha256");
        std::fs::create_dir_all(&blobs).map_err(io(&blobs))?;
        Ok(ImageLayout { root })
    }

    /// The layout directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// `index.json`, or an empty index for a layout not yet committed.
    pub fn index(&self) -> Result<ImageIndex, OciError> {
        let path = self.root.join("index.json");
        if !path.exists() && !self.root.join("oci-layout").exists() {
            return Ok(ImageIndex::default());
        }
        let bytes = std::fs::read(&path).map_err(io(&path))?;
        serde_json::from_slice(&bytes).map_err(|e| {
            OciError::Invalid(format!("{}: not an OCI image index: {e}", path.display()))
        })
    }

    /// Where the blob with `digest` lives.
    pub fn blob_path(&self, digest: &str) -> Result<PathBuf, OciError> {
        let (algorithm, encoded) = digest
            .split_once(':')
            .filter(|(a, e)| {
                !a.is_empty() && !e.is_empty() && !e.contains(['/', '.']) && !a.contains(['/', '.'])
            })
            .ok_or_else(|| OciError::Invalid(format!("malformed digest `{digest}`")))?;
        Ok(self.root.join("blobs").join(algorithm).join(encoded))
    }

    /// Whether the blob of `descriptor` is present with the right size.
    pub fn has_blob(&self, descriptor: &Descriptor) -> bool {
        self.blob_path(descriptor.digest().as_ref())
            .ok()
            .and_then(|p| std::fs::metadata(p).ok())
            .is_some_and(|m| m.len() == descriptor.size())
    }

    /// Open a blob for reading (its size is checked, its digest is not:
    /// readers that hand the bytes on let the receiver check them).
    pub fn open_blob(&self, descriptor: &Descriptor) -> Result<File, OciError> {
        let path = self.blob_path(descriptor.digest().as_ref())?;
        let file = File::open(&path).map_err(io(&path))?;
        let size = file.metadata().map_err(io(&path))?.len();
        if size != descriptor.size() {
            return Err(OciError::Invalid(format!(
                "{} has {size} bytes but its descriptor says {}",
                path.display(),
                descriptor.size()
            )));
        }
        Ok(file)
    }

    /// Read a small blob (a manifest or config) whole, verifying its digest.
    pub fn read_blob(&self, descriptor: &Descriptor) -> Result<Vec<u8>, OciError> {
        let mut bytes = Vec::new();
        let path = self.blob_path(descriptor.digest().as_ref())?;
        self.open_blob(descriptor)?
            .read_to_end(&mut bytes)
            .map_err(io(&path))?;
        verify(
            &path.display().to_string(),
            &bytes,
            descriptor.digest().as_ref(),
        )?;
        Ok(bytes)
    }

    /// Write `bytes` as a blob; returns its digest.
    pub fn write_blob(&self, bytes: &[u8]) -> Result<String, OciError> {
        self.store_blob(&mut &bytes[..], None).map(|(d, _)| d)
    }

    /// Write `bytes` (a config or manifest) as a blob; returns its
    /// descriptor with `media_type`.
    pub fn write_descriptor(
        &self,
        media_type: MediaType,
        bytes: &[u8],
    ) -> Result<Descriptor, OciError> {
        let digest = self.write_blob(bytes)?;
        Ok(Descriptor::new(
            media_type,
            bytes.len() as u64,
            parse_digest(&digest)?,
        ))
    }

    /// The manifest of the layout that `name` tags, or the only one when
    /// `name` is `None` or tags nothing: what a push sends.
    pub fn root_descriptor(&self, name: Option<&str>) -> Result<Descriptor, OciError> {
        let index = self.index()?;
        let manifests = index.manifests();
        if let Some(found) = manifests
            .iter()
            .find(|d| name.is_some() && tag_of(d) == name)
        {
            return Ok(found.clone());
        }
        match manifests.as_slice() {
            [only] => Ok(only.clone()),
            [] => Err(OciError::Invalid(format!(
                "{} holds no image (index.json lists no manifests)",
                self.root.display()
            ))),
            many => Err(OciError::Invalid(format!(
                "{} holds {} images; name one with its {REF_NAME} annotation",
                self.root.display(),
                many.len()
            ))),
        }
    }

    /// Name `manifest` in the index once per name in `names`, replacing
    /// what those names tagged before, then commit the layout.
    pub fn tag(&self, manifest: &Descriptor, names: &[String]) -> Result<(), OciError> {
        let mut index = self.index()?;
        let mut manifests: Vec<Descriptor> = index
            .manifests()
            .iter()
            .filter(|d| !tag_of(d).is_some_and(|n| names.iter().any(|name| name == n)))
            .cloned()
            .collect();
        for name in names {
            let mut descriptor = manifest.clone();
            descriptor.set_annotations(Some(HashMap::from([(REF_NAME.to_owned(), name.clone())])));
            manifests.push(descriptor);
        }
        index.set_schema_version(2);
        index.set_media_type(Some(MediaType::ImageIndex));
        index.set_manifests(manifests);
        self.commit(&index)
    }

    /// Stream `reader` into a blob, hashing on the way. When `expected` is
    /// given, a different digest is an error and nothing is stored.
    /// Returns the digest and size.
    pub fn store_blob(
        &self,
        reader: &mut impl Read,
        expected: Option<&str>,
    ) -> Result<(String, u64), OciError> {
        let mut writer = self.blob_writer()?;
        copy(reader, &mut writer).map_err(io(&writer.staging))?;
        writer.commit(expected)
    }

    /// A writer for a new blob: bytes go to a staging file and are hashed
    /// on the way; [`BlobWriter::commit`] moves the blob into place under
    /// its digest. Dropped uncommitted, it leaves nothing behind.
    pub fn blob_writer(&self) -> Result<BlobWriter, OciError> {
        let dir = self.root.join("blobs").join("sha256");
        std::fs::create_dir_all(&dir).map_err(io(&dir))?;
        let staging = kiln_sdk::files::partial_path(&dir.join("blob"));
        let file = File::create(&staging).map_err(io(&staging))?;
        Ok(BlobWriter {
            layout: self.clone(),
            file: Some(file),
            staging,
            hasher: Some(Sha256::new()),
            size: 0,
        })
    }

    /// Write `index` as `index.json` (and `oci-layout`), by rename: the
    /// layout is complete only after this.
    pub fn commit(&self, index: &ImageIndex) -> Result<(), OciError> {
        write_atomically(&self.root.join("oci-layout"), LAYOUT_MARKER.as_bytes())?;
        let json = serde_json::to_vec(index).map_err(|e| OciError::Invalid(e.to_string()))?;
        write_atomically(&self.root.join("index.json"), &json)
    }
}

/// The tag (`ref.name` annotation) of an index entry.
fn tag_of(descriptor: &Descriptor) -> Option<&str> {
    descriptor
        .annotations()
        .as_ref()
        .and_then(|a| a.get(REF_NAME))
        .map(String::as_str)
}

/// A blob being written; see [`ImageLayout::blob_writer`].
pub struct BlobWriter {
    layout: ImageLayout,
    file: Option<File>,
    staging: PathBuf,
    hasher: Option<Sha256>,
    size: u64,
}

impl BlobWriter {
    /// Sync the blob and move it into place; returns its digest and size.
    /// When `expected` is given, a different digest is an error and nothing
    /// is stored.
    pub fn commit(mut self, expected: Option<&str>) -> Result<(String, u64), OciError> {
        let file = self.file.take().expect("a blob writer commits once");
        file.sync_all().map_err(io(&self.staging))?;
        drop(file);
        let digest = self
            .hasher
            .take()
            .expect("a blob writer commits once")
            .finish_oci();
        let placed = match expected {
            Some(expected) if expected != digest => Err(OciError::DigestMismatch {
                what: format!("blob {expected}"),
                expected: expected.to_owned(),
                actual: digest.clone(),
            }),
            _ => self
                .layout
                .blob_path(&digest)
                .and_then(|target| std::fs::rename(&self.staging, &target).map_err(io(&target))),
        };
        if placed.is_err() {
            let _ = std::fs::remove_file(&self.staging);
        }
        placed.map(|()| (digest, self.size))
    }
}

impl Write for BlobWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let file = self.file.as_mut().ok_or(io::ErrorKind::BrokenPipe)?;
        let n = file.write(buf)?;
        if let Some(hasher) = self.hasher.as_mut() {
            hasher.update(&buf[..n]);
        }
        self.size += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Drop for BlobWriter {
    fn drop(&mut self) {
        if self.file.take().is_some() {
            let _ = std::fs::remove_file(&self.staging);
        }
    }
}

/// Check that `bytes` hash to `digest`.
pub fn verify(what: &str, bytes: &[u8], digest: &str) -> Result<(), OciError> {
    let actual = kiln_sdk::digest::sha256_oci(bytes);
    if actual == digest {
        Ok(())
    } else {
        Err(OciError::DigestMismatch {
            what: what.to_owned(),
            expected: digest.to_owned(),
            actual,
        })
    }
}

fn write_atomically(path: &Path, bytes: &[u8]) -> Result<(), OciError> {
    let staging = kiln_sdk::files::partial_path(path);
    std::fs::write(&staging, bytes).map_err(io(&staging))?;
    std::fs::rename(&staging, path).map_err(io(path))
}
