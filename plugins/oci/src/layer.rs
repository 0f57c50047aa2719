//! Layers written in one pass: a tree becomes a tar stream, read through
//! the diff_id hasher into the compressor, whose output is hashed again
//! while it is written to the layout. Both digests use the host's SHA-256
//! and memory stays bounded whatever the layer size.
//!
//! Tars are reproducible: entries sorted by path, owners numeric (no user
//! or group names), times already clamped, no access/change times or
//! extended attributes.

use std::collections::VecDeque;
use std::fs::File;
use std::io::{self, Read};

use crate::ImageLayout;
use crate::spec::{Descriptor, MediaType};
use kiln_sdk::digest::Sha256;

use crate::OciError;
use crate::blob::{copy, parse_digest};
use crate::error::io;
use crate::tree::{Entry, Kind, Tree};

/// How layers are compressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    /// gzip, readable by every tool.
    Gzip,
    /// zstd, smaller and faster to decompress; needs newer runtimes.
    Zstd,
}

impl Compression {
    /// Parse the `compression` input.
    pub fn parse(text: &str) -> Result<Compression, OciError> {
        match text {
            "gzip" => Ok(Compression::Gzip),
            "zstd" => Ok(Compression::Zstd),
            other => Err(OciError::Invalid(format!(
                "compression `{other}` is not supported; use gzip or zstd"
            ))),
        }
    }

    /// The layer media type.
    pub fn media_type(self) -> MediaType {
        match self {
            Compression::Gzip => MediaType::ImageLayerGzip,
            Compression::Zstd => MediaType::ImageLayerZstd,
        }
    }
}

/// A layer in the layout: its descriptor, diff_id and uncompressed size.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Layer {
    /// The compressed blob.
    pub descriptor: Descriptor,
    /// The digest of the uncompressed tar.
    pub diff_id: String,
    /// The size of the uncompressed tar, when known.
    pub tar_size: Option<u64>,
    /// For a base image's layer: `REGISTRY/REPOSITORY` it can be fetched
    /// from when it is not in the layout yet.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub origin: Option<String>,
}

/// gzip level: fast. Layers of JARs and binaries barely shrink further at
/// higher levels, and the build's time is mostly compression.
const GZIP_LEVEL: u8 = 1;

/// Write `tree` as a layer blob into `layout`.
pub fn write(
    tree: &Tree,
    layout: &ImageLayout,
    compression: Compression,
) -> Result<Layer, OciError> {
    write_tar(TarStream::new(tree), tree.tar_size(), layout, compression)
}

/// Write the uncompressed layer tar `tar` (of `size` bytes, for progress)
/// as a layer blob into `layout`: compressed, with the blob's digest and
/// the tar's diff ID computed in the same pass. A read error of `tar` is
/// the error returned.
pub fn write_tar(
    tar: impl Read + TakeError,
    size: u64,
    layout: &ImageLayout,
    compression: Compression,
) -> Result<Layer, OciError> {
    let mut tar = HashingReader::new(kiln_sdk::log::ProgressReader::new(tar, "write layer", size));
    let mut blob = layout.blob_writer()?;
    let written = match compression {
        Compression::Gzip => {
            let mut encoder = kiln_sdk::compress::GzipWriter::new(&mut blob, GZIP_LEVEL);
            copy(&mut tar, &mut encoder).and_then(|_| encoder.finish().map(|_| 0))
        }
        Compression::Zstd => {
            // ruzstd panics on a write error: keep the first one and
            // swallow the rest, then report it.
            let mut sink = KeepError {
                inner: &mut blob,
                error: None,
            };
            ruzstd::encoding::compress(
                &mut tar,
                &mut sink,
                ruzstd::encoding::CompressionLevel::Fastest,
            );
            sink.error.map_or(Ok(0), Err)
        }
    };
    if let Some(error) = tar.inner.get_mut().take_error() {
        return Err(error);
    }
    written.map_err(|e| OciError::Invalid(format!("writing a layer: {e}")))?;
    let (digest, size) = blob.commit(None)?;
    let tar_size = tar.size;
    let diff_id = tar.finish();
    Ok(Layer {
        descriptor: Descriptor::new(compression.media_type(), size, parse_digest(&digest)?),
        diff_id,
        tar_size: Some(tar_size),
        origin: None,
    })
}

/// A tar source that may have failed in a way its reads could not say
/// (a source file's error, kept to report with its path).
pub trait TakeError {
    /// The error the source kept, once.
    fn take_error(&mut self) -> Option<OciError>;
}

impl TakeError for std::fs::File {
    fn take_error(&mut self) -> Option<OciError> {
        None
    }
}

impl TakeError for TarStream<'_> {
    fn take_error(&mut self) -> Option<OciError> {
        self.error.take()
    }
}

/// A writer that never fails: the first error is kept for the caller.
struct KeepError<W> {
    inner: W,
    error: Option<io::Error>,
}

impl<W: io::Write> io::Write for KeepError<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if self.error.is_none()
            && let Err(e) = self.inner.write_all(buf)
        {
            self.error = Some(e);
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// A reader that hashes (on the host) and counts what passes through.
pub struct HashingReader<R> {
    inner: R,
    hasher: Sha256,
    size: u64,
}

impl<R: Read> HashingReader<R> {
    /// Wrap `inner`.
    pub fn new(inner: R) -> Self {
        HashingReader {
            inner,
            hasher: Sha256::new(),
            size: 0,
        }
    }

    /// The OCI digest of everything read.
    pub fn finish(self) -> String {
        self.hasher.finish_oci()
    }
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        self.size += n as u64;
        Ok(n)
    }
}

/// A tar of a tree, produced as it is read: headers are built per entry
/// and file bytes streamed from their sources.
struct TarStream<'a> {
    entries: std::collections::btree_map::Iter<'a, String, Entry>,
    /// Header or padding bytes waiting to be read.
    pending: VecDeque<u8>,
    /// The file being streamed, with bytes left and padding owed.
    file: Option<(File, u64, String)>,
    padding: usize,
    done: bool,
    /// The first error, kept so the caller reports it with its path
    /// rather than as a compressor's I/O error.
    error: Option<OciError>,
}

impl<'a> TarStream<'a> {
    fn new(tree: &'a Tree) -> Self {
        TarStream {
            entries: tree.iter(),
            pending: VecDeque::new(),
            file: None,
            padding: 0,
            done: false,
            error: None,
        }
    }

    /// Queue the next entry's header; open its file.
    fn advance(&mut self) -> Result<bool, OciError> {
        let Some((path, entry)) = self.entries.next() else {
            if !self.done {
                self.pending.extend([0u8; 1024]);
                self.done = true;
            }
            return Ok(false);
        };
        let (header, body) = header(path, entry)?;
        self.pending.extend(header);
        if let Kind::File(data) = &entry.kind {
            let file =
                File::open(&data.source).map_err(|e| io(std::path::Path::new(&data.source))(e))?;
            self.file = Some((file, data.size, data.source.clone()));
            self.padding = (512 - (body % 512) as usize) % 512;
        }
        Ok(true)
    }
}

impl TarStream<'_> {
    /// Record `error` and end the stream: compressors that cannot report
    /// a read error (ruzstd panics on one) see an early end instead, and
    /// the caller reports the error with its path.
    fn fail(&mut self, error: OciError) -> usize {
        self.error.get_or_insert(error);
        self.entries = Default::default();
        self.file = None;
        self.pending.clear();
        self.done = true;
        0
    }
}

impl Read for TarStream<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            if !self.pending.is_empty() {
                let n = self.pending.len().min(buf.len());
                for (slot, byte) in buf.iter_mut().zip(self.pending.drain(..n)) {
                    *slot = byte;
                }
                return Ok(n);
            }
            if let Some((file, left, source)) = self.file.as_mut() {
                if *left > 0 {
                    let want = (*left).min(buf.len() as u64) as usize;
                    let n = match file.read(&mut buf[..want]) {
                        Ok(0) => {
                            let error =
                                OciError::Invalid(format!("{source} shrank while it was copied"));
                            return Ok(self.fail(error));
                        }
                        Ok(n) => n,
                        Err(e) => {
                            let error = OciError::Io {
                                path: source.clone(),
                                source: e,
                            };
                            return Ok(self.fail(error));
                        }
                    };
                    *left -= n as u64;
                    return Ok(n);
                }
                self.file = None;
                self.pending.extend(std::iter::repeat_n(0u8, self.padding));
                continue;
            }
            if self.done && self.pending.is_empty() {
                return Ok(0);
            }
            if let Err(error) = self.advance() {
                return Ok(self.fail(error));
            }
        }
    }
}

/// The header blocks of one entry (long names get GNU extension blocks)
/// and the body size that follows.
fn header(path: &str, entry: &Entry) -> Result<(Vec<u8>, u64), OciError> {
    let mut header = tar::Header::new_gnu();
    header.set_mode(entry.mode);
    header.set_uid(entry.uid);
    header.set_gid(entry.gid);
    header.set_mtime(entry.mtime);
    let mut out = tar::Builder::new(Vec::new());
    let failed = |e: io::Error| OciError::Invalid(format!("tar header for {path}: {e}"));
    let size = match &entry.kind {
        Kind::File(data) => {
            header.set_entry_type(tar::EntryType::Regular);
            header.set_size(data.size);
            out.append_data(&mut header, path, io::empty())
                .map_err(failed)?;
            data.size
        }
        Kind::Dir => {
            header.set_entry_type(tar::EntryType::Directory);
            header.set_size(0);
            out.append_data(&mut header, format!("{path}/"), io::empty())
                .map_err(failed)?;
            0
        }
        Kind::Symlink(target) => {
            header.set_entry_type(tar::EntryType::Symlink);
            header.set_size(0);
            out.append_link(&mut header, path, target).map_err(failed)?;
            0
        }
    };
    // The builder ends every archive with two zero blocks; this is one
    // entry of a longer stream.
    let mut bytes = out.into_inner().map_err(failed)?;
    bytes.truncate(bytes.len() - 1024);
    Ok((bytes, size))
}
