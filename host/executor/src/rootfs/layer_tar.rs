//! Write a layer tar whose bytes depend only on what it describes.
//!
//! Every header field is set explicitly (no user or group names, no access
//! times, no host-dependent defaults) so the same changes always give the
//! same digest. Headers are ustar; names, link targets and numbers that do
//! not fit get a PAX extended header, which every OCI runtime reads.

use std::io::{self, BufWriter, Read, Write};

use tar::{EntryType, Header};

/// The size of the write buffer in front of the caller's writer.
const BUFFER: usize = 256 * 1024;
/// The largest value a 12-byte octal field holds (sizes, times).
const MAX_OCTAL_12: u64 = 0o77_777_777_777;
/// The largest value an 8-byte octal field holds (uid, gid).
const MAX_OCTAL_8: u64 = 0o7_777_777;

/// One entry's header, as the layer should carry it.
pub(crate) struct Record<'a> {
    /// The path in the archive; directories end in `/`.
    pub(crate) path: &'a [u8],
    pub(crate) kind: EntryType,
    pub(crate) mode: u32,
    pub(crate) owner: (u32, u32),
    pub(crate) mtime: u64,
    pub(crate) size: u64,
    /// A symlink's target or a hard link's first path.
    pub(crate) link: Option<&'a [u8]>,
    /// Major and minor numbers of a device node.
    pub(crate) device: (u32, u32),
}

/// Appends records to a tar stream and counts its bytes.
pub(crate) struct LayerWriter<W: Write> {
    builder: tar::Builder<Counting<BufWriter<W>>>,
}

impl<W: Write> LayerWriter<W> {
    pub(crate) fn new(out: W) -> LayerWriter<W> {
        LayerWriter {
            builder: tar::Builder::new(Counting {
                inner: BufWriter::with_capacity(BUFFER, out),
                written: 0,
            }),
        }
    }

    /// Append `record` followed by `data`, which must yield exactly
    /// `record.size` bytes.
    pub(crate) fn append(&mut self, record: &Record<'_>, data: impl Read) -> io::Result<()> {
        let mut header = Header::new_ustar();
        let mut pax = Vec::new();
        let ustar = header.as_ustar_mut().expect("a ustar header");
        if !split_name(record.path, &mut ustar.prefix, &mut ustar.name) {
            pax_record(&mut pax, "path", record.path);
            truncate_into(&mut ustar.name, record.path);
        }
        if let Some(link) = record.link {
            if link.len() > ustar.linkname.len() {
                pax_record(&mut pax, "linkpath", link);
            }
            truncate_into(&mut ustar.linkname, link);
        }
        for (key, value, max) in [
            ("uid", u64::from(record.owner.0), MAX_OCTAL_8),
            ("gid", u64::from(record.owner.1), MAX_OCTAL_8),
            ("size", record.size, MAX_OCTAL_12),
            ("mtime", record.mtime, MAX_OCTAL_12),
        ] {
            if value > max {
                pax_record(&mut pax, key, value.to_string().as_bytes());
            }
        }
        header.set_entry_type(record.kind);
        header.set_mode(record.mode);
        header.set_uid(record.owner.0.into());
        header.set_gid(record.owner.1.into());
        header.set_size(record.size);
        header.set_mtime(record.mtime);
        header.set_device_major(record.device.0)?;
        header.set_device_minor(record.device.1)?;
        header.set_cksum();

        if !pax.is_empty() {
            let mut ext = Header::new_ustar();
            ext.set_path("././@PaxHeader")?;
            ext.set_entry_type(EntryType::XHeader);
            ext.set_mode(0o644);
            ext.set_uid(0);
            ext.set_gid(0);
            ext.set_mtime(0);
            ext.set_size(pax.len() as u64);
            ext.set_device_major(0)?;
            ext.set_device_minor(0)?;
            ext.set_cksum();
            self.builder.append(&ext, pax.as_slice())?;
        }
        self.builder.append(&header, data)
    }

    /// End the archive and return how many bytes it has.
    pub(crate) fn finish(self) -> io::Result<u64> {
        let mut counting = self.builder.into_inner()?;
        counting.inner.flush()?;
        Ok(counting.written)
    }
}

/// Put `path` in the ustar `name` field, or split it at a `/` between
/// `prefix` and `name` as ustar allows; `false` when it fits neither way.
fn split_name(path: &[u8], prefix: &mut [u8; 155], name: &mut [u8; 100]) -> bool {
    if path.len() <= name.len() {
        name[..path.len()].copy_from_slice(path);
        return true;
    }
    // The last `/` that leaves a prefix short enough (and a non-empty name,
    // so a directory's trailing `/` is not a split point).
    let window = &path[..path.len().saturating_sub(1).min(prefix.len() + 1)];
    let Some(slash) = window.iter().rposition(|b| *b == b'/') else {
        return false;
    };
    let (head, tail) = (&path[..slash], &path[slash + 1..]);
    if slash == 0 || tail.len() > name.len() {
        return false;
    }
    prefix[..head.len()].copy_from_slice(head);
    name[..tail.len()].copy_from_slice(tail);
    true
}

/// Fill `field` with as much of `value` as fits (a PAX record has the rest).
fn truncate_into(field: &mut [u8], value: &[u8]) {
    let len = value.len().min(field.len());
    field[..len].copy_from_slice(&value[..len]);
}

/// Append the PAX record `"<len> <key>=<value>\n"`, where `len` counts the
/// whole record including its own digits.
fn pax_record(out: &mut Vec<u8>, key: &str, value: &[u8]) {
    let rest = key.len() + value.len() + 3;
    let mut len = rest + rest.to_string().len();
    if len.to_string().len() + rest > len {
        len += 1;
    }
    out.extend_from_slice(format!("{len} {key}=").as_bytes());
    out.extend_from_slice(value);
    out.push(b'\n');
}

/// A writer that counts what passes through it.
struct Counting<W: Write> {
    inner: W,
    written: u64,
}

impl<W: Write> Write for Counting<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.written += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(path: &[u8]) -> Record<'_> {
        Record {
            path,
            kind: EntryType::Regular,
            mode: 0o4755,
            owner: (3_000_000, 7),
            mtime: 42,
            size: 3,
            link: None,
            device: (0, 0),
        }
    }

    #[test]
    fn pax_record_length_counts_itself() {
        for value_len in [0, 1, 90, 95, 96, 97, 990, 995, 1000] {
            let mut out = Vec::new();
            pax_record(&mut out, "path", &vec![b'x'; value_len]);
            let (len, _) = std::str::from_utf8(&out).unwrap().split_once(' ').unwrap();
            assert_eq!(
                len.parse::<usize>().unwrap(),
                out.len(),
                "value of {value_len}"
            );
        }
    }

    #[test]
    fn long_names_and_big_ids_round_trip() {
        let split = format!("{}/{}", "d".repeat(120), "f".repeat(90));
        let long = format!("{}/{}/", "d".repeat(200), "e".repeat(150));
        let link = "t".repeat(300);
        let mut dir = record(long.as_bytes());
        dir.kind = EntryType::Directory;
        dir.size = 0;
        let mut symlink = record(b"s");
        symlink.kind = EntryType::Symlink;
        symlink.size = 0;
        symlink.link = Some(link.as_bytes());
        let mut out = Vec::new();
        let counted = {
            let mut w = LayerWriter::new(&mut out);
            w.append(&record(split.as_bytes()), &b"abc"[..]).unwrap();
            w.append(&dir, io::empty()).unwrap();
            w.append(&symlink, io::empty()).unwrap();
            w.finish().unwrap()
        };
        assert_eq!(counted, out.len() as u64);

        let mut archive = tar::Archive::new(out.as_slice());
        let entries: Vec<_> = archive
            .entries()
            .unwrap()
            .map(|e| {
                let e = e.unwrap();
                let link = e.link_name_bytes().map(|l| l.into_owned());
                (
                    e.path_bytes().into_owned(),
                    link,
                    e.header().uid().unwrap(),
                    e.header().mode().unwrap(),
                )
            })
            .collect();
        assert_eq!(entries[0].0, split.as_bytes());
        assert_eq!(entries[0].2, 3_000_000);
        assert_eq!(entries[0].3, 0o4755);
        assert_eq!(entries[1].0, long.as_bytes());
        assert_eq!(entries[2].1.as_deref(), Some(link.as_bytes()));
    }
}
