//! Layers built by hand and read back, for the tests of `apply` and `diff`.

use std::io::Read;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use tar::{EntryType, Header};

/// A layer under construction. Headers are written field by field (and
/// names byte by byte) so that tests can also build layers a well-behaved
/// tool would refuse to, such as `../x`.
pub(crate) struct LayerBuilder {
    builder: tar::Builder<Vec<u8>>,
}

impl LayerBuilder {
    pub(crate) fn new() -> LayerBuilder {
        LayerBuilder {
            builder: tar::Builder::new(Vec::new()),
        }
    }

    fn header(kind: EntryType, mode: u32, owner: (u64, u64), size: u64) -> Header {
        let mut header = Header::new_gnu();
        header.set_entry_type(kind);
        header.set_mode(mode);
        header.set_uid(owner.0);
        header.set_gid(owner.1);
        header.set_mtime(1_600_000_000);
        header.set_size(size);
        header
    }

    fn push(&mut self, mut header: Header, path: &str, data: &[u8]) -> &mut LayerBuilder {
        if path.len() <= 100 {
            header.as_old_mut().name[..path.len()].copy_from_slice(path.as_bytes());
            header.set_cksum();
            self.builder.append(&header, data).unwrap();
        } else {
            // GNU long-name extension.
            self.builder.append_data(&mut header, path, data).unwrap();
        }
        self
    }

    pub(crate) fn file(
        &mut self,
        path: &str,
        data: &str,
        mode: u32,
        owner: (u64, u64),
    ) -> &mut LayerBuilder {
        let header = Self::header(EntryType::Regular, mode, owner, data.len() as u64);
        self.push(header, path, data.as_bytes())
    }

    pub(crate) fn dir(&mut self, path: &str, mode: u32, owner: (u64, u64)) -> &mut LayerBuilder {
        let header = Self::header(EntryType::Directory, mode, owner, 0);
        self.push(header, path, b"")
    }

    fn link(
        &mut self,
        kind: EntryType,
        path: &str,
        target: &str,
        owner: (u64, u64),
    ) -> &mut LayerBuilder {
        let mut header = Self::header(kind, 0o777, owner, 0);
        header.set_link_name_literal(target).unwrap();
        self.push(header, path, b"")
    }

    pub(crate) fn symlink(&mut self, path: &str, target: &str) -> &mut LayerBuilder {
        self.link(EntryType::Symlink, path, target, (0, 0))
    }

    pub(crate) fn symlink_owned(
        &mut self,
        path: &str,
        target: &str,
        owner: (u64, u64),
    ) -> &mut LayerBuilder {
        self.link(EntryType::Symlink, path, target, owner)
    }

    pub(crate) fn hardlink(&mut self, path: &str, target: &str) -> &mut LayerBuilder {
        self.link(EntryType::Link, path, target, (0, 0))
    }

    pub(crate) fn node(
        &mut self,
        path: &str,
        kind: EntryType,
        device: (u32, u32),
    ) -> &mut LayerBuilder {
        let mut header = Self::header(kind, 0o666, (0, 0), 0);
        header.set_device_major(device.0).unwrap();
        header.set_device_minor(device.1).unwrap();
        self.push(header, path, b"")
    }

    /// An empty regular file, as whiteouts are.
    pub(crate) fn empty(&mut self, path: &str) -> &mut LayerBuilder {
        self.file(path, "", 0, (0, 0))
    }

    pub(crate) fn tar(&mut self) -> Vec<u8> {
        let builder = std::mem::replace(&mut self.builder, tar::Builder::new(Vec::new()));
        builder.into_inner().unwrap()
    }
}

/// An entry read back from a layer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Seen {
    pub(crate) path: String,
    pub(crate) kind: char,
    pub(crate) mode: u32,
    pub(crate) owner: (u64, u64),
    pub(crate) mtime: u64,
    pub(crate) link: Option<String>,
    pub(crate) device: (u32, u32),
    pub(crate) data: String,
}

/// Every entry of `tar`, in order.
pub(crate) fn read_layer(tar: &[u8]) -> Vec<Seen> {
    let mut archive = tar::Archive::new(tar);
    archive
        .entries()
        .unwrap()
        .map(|entry| {
            let mut entry = entry.unwrap();
            let header = entry.header().clone();
            let link = entry
                .link_name_bytes()
                .map(|l| String::from_utf8(l.into_owned()).unwrap());
            let path = String::from_utf8(entry.path_bytes().into_owned()).unwrap();
            let mut data = String::new();
            entry.read_to_string(&mut data).unwrap();
            Seen {
                path,
                kind: header.entry_type().as_byte() as char,
                mode: header.mode().unwrap(),
                owner: (header.uid().unwrap(), header.gid().unwrap()),
                mtime: header.mtime().unwrap(),
                link,
                device: (
                    header.device_major().unwrap().unwrap_or(0),
                    header.device_minor().unwrap().unwrap_or(0),
                ),
                data,
            }
        })
        .collect()
}

/// `(uid, gid, mode & 0o7777)` of `path` on disk, without following it.
pub(crate) fn owner_mode(path: &Path) -> (u32, u32, u32) {
    let meta = std::fs::symlink_metadata(path).unwrap();
    (meta.uid(), meta.gid(), meta.mode() & 0o7777)
}
