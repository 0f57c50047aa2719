//! Just enough of the zip format to check a JAR or WAR and read from it:
//! the central directory, stored and deflated entries. Archives needing
//! zip64 (over 4 GiB or 65535 entries) are refused with a clear error.

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::path::Path;

use kiln_sdk::Error;

/// The most read from an entry held in memory (manifests are small).
const MAX_SMALL_ENTRY: u64 = 1 << 20;

/// One entry of the central directory.
#[derive(Debug, Clone)]
pub struct ZipEntry {
    /// The path inside the archive.
    pub name: String,
    /// 0 stored, 8 deflated.
    pub method: u16,
    /// Bytes as stored.
    pub compressed_size: u64,
    /// Bytes once inflated.
    pub size: u64,
    /// Where the entry's local header is.
    offset: u64,
}

/// An opened archive.
pub struct Zip {
    file: File,
    what: String,
    /// Its entries, in directory order.
    pub entries: Vec<ZipEntry>,
}

fn u16_at(b: &[u8], i: usize) -> u16 {
    u16::from_le_bytes([b[i], b[i + 1]])
}

fn u32_at(b: &[u8], i: usize) -> u32 {
    u32::from_le_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]])
}

impl Zip {
    /// Open `path` and read its central directory.
    pub fn open(path: &Path) -> Result<Zip, Error> {
        let what = path.display().to_string();
        let bad = |reason: &str| {
            Error::invalid_input(format!("{what} is not a valid JAR/WAR (zip): {reason}"))
        };
        let mut file = File::open(path).map_err(|e| Error::io(path, e))?;
        let length = file.metadata().map_err(|e| Error::io(path, e))?.len();
        // The end record is in the last 22 + 65535 bytes.
        let tail_len = length.min(22 + 65_535);
        let mut tail = vec![0u8; tail_len as usize];
        file.seek(SeekFrom::Start(length - tail_len))
            .and_then(|_| file.read_exact(&mut tail))
            .map_err(|e| Error::io(path, e))?;
        let end = (0..tail.len().saturating_sub(21))
            .rev()
            .find(|&i| u32_at(&tail, i) == 0x0605_4b50)
            .ok_or_else(|| bad("no end of central directory record"))?;
        let count = u16_at(&tail, end + 10) as usize;
        let dir_size = u32_at(&tail, end + 12) as u64;
        let dir_offset = u32_at(&tail, end + 16) as u64;
        if count == 0xffff || dir_offset == 0xffff_ffff {
            return Err(bad("zip64 archives are not supported"));
        }
        // Offsets count from the zip's own start, which a launch script
        // prepended to an executable JAR moves (as java.util.zip allows).
        let end_at = length - tail_len + end as u64;
        let prefix = end_at
            .checked_sub(dir_size + dir_offset)
            .ok_or_else(|| bad("the central directory lies outside the file"))?;
        let dir_offset = dir_offset + prefix;
        let mut dir = vec![0u8; dir_size as usize];
        file.seek(SeekFrom::Start(dir_offset))
            .and_then(|_| file.read_exact(&mut dir))
            .map_err(|e| Error::io(path, e))?;
        let mut entries = Vec::with_capacity(count);
        let mut at = 0;
        for _ in 0..count {
            if at + 46 > dir.len() || u32_at(&dir, at) != 0x0201_4b50 {
                return Err(bad("a central directory entry is damaged"));
            }
            let name_len = u16_at(&dir, at + 28) as usize;
            let extra_len = u16_at(&dir, at + 30) as usize;
            let comment_len = u16_at(&dir, at + 32) as usize;
            let name = dir
                .get(at + 46..at + 46 + name_len)
                .ok_or_else(|| bad("a file name runs past the directory"))?;
            let entry = ZipEntry {
                name: String::from_utf8_lossy(name).into_owned(),
                method: u16_at(&dir, at + 10),
                compressed_size: u32_at(&dir, at + 20) as u64,
                size: u32_at(&dir, at + 24) as u64,
                offset: u32_at(&dir, at + 42) as u64 + prefix,
            };
            if entry.compressed_size == 0xffff_ffff
                || entry.size == 0xffff_ffff
                || entry.offset == 0xffff_ffff
            {
                return Err(bad("zip64 entries are not supported"));
            }
            entries.push(entry);
            at += 46 + name_len + extra_len + comment_len;
        }
        Ok(Zip {
            file,
            what,
            entries,
        })
    }

    /// The entry named `name`.
    pub fn entry(&self, name: &str) -> Option<&ZipEntry> {
        self.entries.iter().find(|e| e.name == name)
    }

    /// A reader of `entry`'s inflated bytes (at most its declared size).
    pub fn read(&mut self, entry: &ZipEntry) -> Result<Box<dyn Read + '_>, Error> {
        let bad = |reason: String| {
            Error::invalid_input(format!("{}: entry {}: {reason}", self.what, entry.name))
        };
        let mut header = [0u8; 30];
        self.file
            .seek(SeekFrom::Start(entry.offset))
            .and_then(|_| self.file.read_exact(&mut header))
            .map_err(|e| bad(e.to_string()))?;
        if u32_at(&header, 0) != 0x0403_4b50 {
            return Err(bad("no local header where the directory says".into()));
        }
        let skip = u16_at(&header, 26) as i64 + u16_at(&header, 28) as i64;
        self.file
            .seek(SeekFrom::Current(skip))
            .map_err(|e| bad(e.to_string()))?;
        let raw = (&mut self.file).take(entry.compressed_size);
        match entry.method {
            0 => Ok(Box::new(raw)),
            8 => Ok(Box::new(
                flate2::read::DeflateDecoder::new(raw).take(entry.size),
            )),
            other => Err(bad(format!("compression method {other} is not supported"))),
        }
    }

    /// The whole inflated content of `entry` (for small entries).
    pub fn read_to_vec(&mut self, entry: &ZipEntry) -> Result<Vec<u8>, Error> {
        let what = format!("{}: entry {}", self.what, entry.name);
        // Small entries only (a manifest): the declared size is not trusted.
        let mut bytes = Vec::new();
        self.read(entry)?
            .take(MAX_SMALL_ENTRY)
            .read_to_end(&mut bytes)
            .map_err(|e: io::Error| Error::invalid_input(format!("{what}: {e}")))?;
        Ok(bytes)
    }
}

/// The value of `key` in a JAR manifest (continuation lines joined).
pub fn manifest_value(manifest: &str, key: &str) -> Option<String> {
    let mut joined: Vec<String> = Vec::new();
    for line in manifest.lines() {
        match (line.strip_prefix(' '), joined.last_mut()) {
            (Some(rest), Some(last)) => last.push_str(rest),
            _ => joined.push(line.to_owned()),
        }
    }
    joined.iter().find_map(|line| {
        let (k, v) = line.split_once(':')?;
        (k.trim().eq_ignore_ascii_case(key)).then(|| v.trim().to_owned())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manifest_values_join_continuations() {
        let manifest = "Manifest-Version: 1.0\r\nMain-Class: com.example.Very\r\n LongName\r\n";
        assert_eq!(
            manifest_value(manifest, "main-class").as_deref(),
            Some("com.example.VeryLongName")
        );
        assert_eq!(manifest_value(manifest, "Start-Class"), None);
    }
}
