//! Reading tar archives into trees: `ADD` of a local archive, and a base
//! image's layers when an instruction needs their content.
//!
//! Extraction is bounded (total bytes), refuses entries that would land
//! outside their destination (`..`, absolute paths), and writes file bytes
//! to a scratch directory so the tree can point at them.

use std::fs::File;
use std::io::{self, BufRead, BufReader, Read};
use std::path::{Path, PathBuf};

use crate::OciError;
use crate::error::io;
use crate::blob::copy;
use crate::tree::{self, Entry, FileData, Kind, Tree, join};

/// Entries one archive may hold: the tree of a build is kept in memory.
const MAX_ENTRIES: usize = 1_000_000;

/// Where extracted file bytes are kept for the duration of the build.
pub struct Scratch {
    dir: PathBuf,
    next: std::cell::Cell<u64>,
    /// Bytes that may still be extracted.
    budget: std::cell::Cell<u64>,
}

impl Scratch {
    /// A fresh scratch directory at `dir`, allowing `limit` bytes in all.
    pub fn create(dir: PathBuf, limit: u64) -> Result<Scratch, OciError> {
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).map_err(|e| io(&dir)(e))?;
        Ok(Scratch {
            dir,
            next: std::cell::Cell::new(0),
            budget: std::cell::Cell::new(limit),
        })
    }

    /// The scratch directory (a guest path): files a build writes there
    /// are its own.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Remove the scratch directory.
    pub fn remove(&self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }

    /// Decode the xz stream `reader` into a scratch file, within the
    /// extraction budget, and open it for reading.
    fn spill_xz(&self, mut reader: impl BufRead, what: &str) -> Result<File, OciError> {
        let path = self.dir.join(format!("xz-{}", self.next.get()));
        self.next.set(self.next.get() + 1);
        let file = File::create(&path).map_err(|e| io(&path)(e))?;
        let mut bounded = Bounded {
            inner: io::BufWriter::with_capacity(1 << 20, file),
            scratch: self,
        };
        let decoded = lzma_rs::xz_decompress(&mut reader, &mut bounded)
            .map_err(|e| OciError::Invalid(format!("{what}: xz: {e}")))
            .and_then(|()| io::Write::flush(&mut bounded).map_err(|e| io(&path)(e)))
            .and_then(|()| File::open(&path).map_err(|e| io(&path)(e)));
        // The open file stays readable; the name is not needed any more.
        let _ = std::fs::remove_file(&path);
        decoded
    }

    /// Take `n` decompressed bytes from the extraction budget.
    fn charge(&self, n: u64) -> io::Result<()> {
        let left = self.budget.get();
        if n > left {
            return Err(io::Error::other(
                "extracting it would exceed the extraction limit (raise the `extract-limit-mb` input if the archive is trusted)",
            ));
        }
        self.budget.set(left - n);
        Ok(())
    }

    /// Store `size` bytes from `reader` (already charged as they were
    /// decompressed); returns the scratch path.
    fn store(&self, reader: &mut impl Read, size: u64, what: &str) -> Result<String, OciError> {
        let n = self.next.get();
        self.next.set(n + 1);
        let path = self.dir.join(n.to_string());
        let mut file = File::create(&path).map_err(|e| io(&path)(e))?;
        let written = copy(&mut reader.take(size), &mut file).map_err(|e| io(&path)(e))?;
        if written != size {
            return Err(OciError::Invalid(format!(
                "{what}: the archive is truncated"
            )));
        }
        Ok(path.to_string_lossy().into_owned())
    }
}

/// The compression of a stream, from its first bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Codec {
    Plain,
    Gzip,
    Xz,
    Zstd,
    Bzip2,
}

fn sniff(head: &[u8]) -> Codec {
    match head {
        [0x1f, 0x8b, ..] => Codec::Gzip,
        [0xfd, b'7', b'z', b'X', b'Z', 0, ..] => Codec::Xz,
        [0x28, 0xb5, 0x2f, 0xfd, ..] => Codec::Zstd,
        [b'B', b'Z', b'h', ..] => Codec::Bzip2,
        _ => Codec::Plain,
    }
}

/// `reader` decompressed according to its first bytes.
pub fn decompressed<'a>(
    reader: impl Read + 'a,
    what: &str,
    scratch: Option<&'a Scratch>,
) -> Result<Box<dyn Read + 'a>, OciError> {
    // Decompressed bytes count against the budget as they are produced.
    let charged = |inner: Box<dyn Read + 'a>| -> Box<dyn Read + 'a> {
        match scratch {
            Some(scratch) => Box::new(Budgeted { inner, scratch }),
            None => inner,
        }
    };
    let mut reader = BufReader::with_capacity(1 << 20, reader);
    let head = reader
        .fill_buf()
        .map_err(|e| OciError::Invalid(format!("{what}: {e}")))?;
    Ok(match sniff(head) {
        Codec::Plain => Box::new(reader),
        Codec::Gzip => charged(Box::new(flate2::bufread::MultiGzDecoder::new(reader))),
        Codec::Zstd => charged(Box::new(
            ruzstd::decoding::StreamingDecoder::new(reader)
                .map_err(|e| OciError::Invalid(format!("{what}: {e}")))?,
        )),
        Codec::Xz => {
            // lzma-rs decodes xz only into a writer: spill to scratch.
            let scratch = scratch
                .ok_or_else(|| OciError::Invalid(format!("{what}: xz is not supported here")))?;
            Box::new(scratch.spill_xz(reader, what)?)
        }
        Codec::Bzip2 => {
            return Err(OciError::Invalid(format!(
                "{what}: bzip2 archives are not supported; use gzip, xz or zstd"
            )));
        }
    })
}

/// Whether the file at `path` is a tar archive, possibly compressed (what
/// `ADD` extracts); anything else is copied as a file.
pub fn is_archive(path: &Path) -> Result<bool, OciError> {
    let mut file = File::open(path).map_err(|e| io(path)(e))?;
    let what = path.display().to_string();
    let mut head = [0u8; 512];
    let magic = file.read(&mut head).map_err(|e| io(path)(e))?;
    if matches!(sniff(&head[..magic]), Codec::Xz | Codec::Bzip2) {
        // Decoding xz needs scratch space; extraction checks it is a tar
        // (and says bzip2 is not supported rather than copying it).
        return Ok(true);
    }
    let file = File::open(path).map_err(|e| io(path)(e))?;
    let mut reader = match decompressed(file, &what, None) {
        Ok(reader) => reader,
        Err(_) => return Ok(false),
    };
    let mut filled = 0;
    while filled < head.len() {
        match reader.read(&mut head[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(_) => return Ok(false),
        }
    }
    Ok(filled == 512 && &head[257..262] == b"ustar")
}

/// How entries land in the tree.
pub struct Landing<'a> {
    /// The tree directory the archive's root lands on (`""` = image root).
    pub dest: &'a str,
    /// Whether `.wh.` entries delete (image layers) or are ordinary files.
    pub whiteouts: bool,
    /// Whether unsafe entry paths are errors (ADD) rather than skipped.
    pub strict: bool,
    /// Upper bound for file times.
    pub epoch: u64,
    /// Prefix of the files' cache identities.
    pub identity: &'a str,
    /// Whether file contents are kept (copied to scratch), or only what
    /// the tree says of each file: an outline, for finding out what is
    /// where without writing a base image's files out.
    pub contents: bool,
}

/// Read the tar in `reader` (compressed or not) into `tree`.
pub fn extract(
    reader: impl Read,
    what: &str,
    landing: &Landing<'_>,
    tree: &mut Tree,
    scratch: &Scratch,
) -> Result<(), OciError> {
    let mut archive = tar::Archive::new(decompressed(reader, what, Some(scratch))?);
    let bad = |e: io::Error| OciError::Invalid(format!("{what}: not a readable tar archive: {e}"));
    for (count, item) in archive.entries().map_err(bad)?.enumerate() {
        if count >= MAX_ENTRIES {
            return Err(OciError::Invalid(format!(
                "{what}: more than {MAX_ENTRIES} entries; the archive is refused"
            )));
        }
        let mut item = item.map_err(bad)?;
        let raw = item.path().map_err(bad)?.to_string_lossy().into_owned();
        let Some(relative) = safe_relative(&raw) else {
            if landing.strict {
                return Err(OciError::Invalid(format!(
                    "{what}: entry `{raw}` would be written outside its destination; the archive is refused"
                )));
            }
            continue;
        };
        if relative.is_empty() {
            continue;
        }
        let path = join(landing.dest, &relative);
        let name = path.rsplit('/').next().unwrap_or_default();
        if landing.whiteouts
            && let Some(hidden) = name.strip_prefix(".wh.")
        {
            let parent = path.rsplit_once('/').map_or("", |(p, _)| p);
            if hidden == ".wh..opq" {
                tree.remove_below(parent);
            } else {
                tree.remove(&join(parent, hidden));
            }
            continue;
        }
        let header = item.header();
        let mode = header.mode().map_err(bad)? & 0o7777;
        let uid = header.uid().map_err(bad)?;
        let gid = header.gid().map_err(bad)?;
        let mtime = header.mtime().map_err(bad)?.min(landing.epoch);
        let kind = match header.entry_type() {
            tar::EntryType::Directory => Kind::Dir,
            tar::EntryType::Symlink => Kind::Symlink(
                item.link_name()
                    .map_err(bad)?
                    .map(|l| l.to_string_lossy().into_owned())
                    .unwrap_or_default(),
            ),
            tar::EntryType::Link => {
                let target = item
                    .link_name()
                    .map_err(bad)?
                    .and_then(|l| safe_relative(&l.to_string_lossy()))
                    .map(|l| join(landing.dest, &l));
                match target.and_then(|t| tree.get(&t).cloned()) {
                    Some(Entry {
                        kind: kind @ Kind::File(_),
                        ..
                    }) => kind,
                    _ => continue,
                }
            }
            tar::EntryType::Regular | tar::EntryType::Continuous => {
                let size = item.size();
                let source = if landing.contents {
                    scratch.store(&mut item, size, &format!("{what}: {raw}"))?
                } else {
                    String::new()
                };
                Kind::File(FileData {
                    source,
                    size,
                    identity: format!("{}:{relative}", landing.identity),
                })
            }
            // Devices and fifos cannot be represented without privileges.
            _ => continue,
        };
        // Every parent is a directory: an earlier file or symlink of the
        // same name gives way, as when the entries are unpacked in order,
        // so the tree never holds a file with children or a path through
        // a link.
        for parent in tree::parents(&path) {
            if !tree
                .get(parent)
                .is_some_and(|e| matches!(e.kind, Kind::Dir))
            {
                tree.insert(parent.to_owned(), Entry::dir(landing.epoch.min(mtime)));
            }
        }
        tree.insert(
            path,
            Entry {
                kind,
                mode,
                uid,
                gid,
                mtime,
            },
        );
    }
    Ok(())
}

/// An archive entry path made relative, or `None` when it is absolute or
/// climbs with `..`.
fn safe_relative(raw: &str) -> Option<String> {
    if raw.starts_with('/') || raw.split('/').any(|part| part == "..") {
        return None;
    }
    Some(crate::path::clean_inside_root(raw))
}

/// A writer that charges what it writes to the extraction budget: xz is
/// decoded to a scratch file through it, so a bomb stops at the limit.
struct Bounded<'s, W> {
    inner: W,
    scratch: &'s Scratch,
}

impl<W: io::Write> io::Write for Bounded<'_, W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.scratch.charge(buf.len() as u64)?;
        self.inner.write_all(buf)?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// A reader that charges what it yields to the extraction budget.
struct Budgeted<'s, R> {
    inner: R,
    scratch: &'s Scratch,
}

impl<R: Read> Read for Budgeted<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.scratch.charge(n as u64)?;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unsafe_entries_are_recognised() {
        assert_eq!(safe_relative("./a/b").as_deref(), Some("a/b"));
        assert_eq!(safe_relative("/etc/passwd"), None);
        assert_eq!(safe_relative("a/../../x"), None);
        assert_eq!(sniff(&[0x1f, 0x8b, 8]), Codec::Gzip);
        assert_eq!(sniff(b"ustar"), Codec::Plain);
    }

    /// Found by fuzzing: a file `a`, then `a/b`, left a file with a child.
    #[test]
    fn a_later_entry_below_a_file_makes_it_a_directory() {
        let mut builder = tar::Builder::new(Vec::new());
        for (path, kind) in [
            ("a", tar::EntryType::Regular),
            ("a/b", tar::EntryType::Regular),
            ("l", tar::EntryType::Symlink),
            ("l/c", tar::EntryType::Regular),
        ] {
            let mut header = tar::Header::new_gnu();
            header.set_entry_type(kind);
            header.set_size(0);
            header.set_mode(0o644);
            header.set_uid(0);
            header.set_gid(0);
            header.set_mtime(0);
            if kind == tar::EntryType::Symlink {
                header.set_link_name("/etc").unwrap();
            }
            builder.append_data(&mut header, path, &[][..]).unwrap();
        }
        let bytes = builder.into_inner().unwrap();
        let dir = std::env::temp_dir().join(format!("kiln-archive-test-{}", std::process::id()));
        let scratch = Scratch::create(dir, 1 << 20).unwrap();
        let mut tree = Tree::default();
        let landing = Landing {
            dest: "",
            whiteouts: false,
            strict: true,
            epoch: 0,
            identity: "t",
            contents: true,
        };
        extract(&bytes[..], "t.tar", &landing, &mut tree, &scratch).unwrap();
        scratch.remove();
        for parent in ["a", "l"] {
            assert!(
                matches!(tree.get(parent).unwrap().kind, Kind::Dir),
                "{parent} should be a directory"
            );
        }
        assert!(tree.get("a/b").is_some() && tree.get("l/c").is_some());
    }
}
