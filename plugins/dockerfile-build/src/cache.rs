//! Layer reuse: a rebuild with nothing changed writes no layer again.
//!
//! A layer's key hashes everything that decides its bytes: each entry's
//! path, kind, mode, owner, clamped time and link target, each file's
//! identity (for context files: path, size and modification time, so the
//! file is not read to decide), and the compression. Keys map to layers in
//! `kiln-layers.json` beside the layout's blobs; a key is used only while
//! its blob is still in the layout.

use std::collections::BTreeMap;
use std::path::PathBuf;

use kiln_oci::ImageLayout;
use kiln_oci::layer::{Compression, Layer};
use kiln_oci::tree::{Kind, Tree};
use kiln_sdk::digest::Sha256;

use kiln_sdk::Error;

/// Keys kept; older ones are dropped so the file stays small.
const MAX_KEYS: usize = 512;

/// The layer cache of one layout.
pub struct LayerCache {
    path: PathBuf,
    /// Key → layer, with a use counter for eviction (higher = newer).
    entries: BTreeMap<String, (u64, Layer)>,
    clock: u64,
}

impl LayerCache {
    /// Load the cache of `layout` (empty when missing or unreadable: a
    /// cache is only ever an optimisation).
    pub fn load(layout: &ImageLayout) -> LayerCache {
        let path = layout.root().join("kiln-layers.json");
        let entries: BTreeMap<String, (u64, Layer)> = std::fs::read(&path)
            .ok()
            .and_then(|bytes| serde_json::from_slice(&bytes).ok())
            .unwrap_or_default();
        let clock = entries.values().map(|(t, _)| *t).max().unwrap_or(0);
        LayerCache {
            path,
            entries,
            clock,
        }
    }

    /// The key of a layer holding `tree`.
    pub fn key(tree: &Tree, compression: Compression) -> String {
        let mut hasher = Sha256::new();
        hasher.update(format!("kiln-layer-v1 {compression:?}\n").as_bytes());
        for (path, entry) in tree.iter() {
            let kind = match &entry.kind {
                Kind::File(data) => format!("f {}", data.identity),
                Kind::Dir => "d".to_owned(),
                Kind::Symlink(target) => format!("l {target}"),
            };
            let line = format!(
                "{path}\0{kind}\0{:o} {} {} {}\n",
                entry.mode, entry.uid, entry.gid, entry.mtime
            );
            hasher.update(line.as_bytes());
        }
        hasher.finish_oci()
    }

    /// The cached layer for `key`, if its blob is still in `layout`.
    pub fn get(&mut self, key: &str, layout: &ImageLayout) -> Option<Layer> {
        self.clock += 1;
        let clock = self.clock;
        let (used, layer) = self.entries.get_mut(key)?;
        if !layout.has_blob(&layer.descriptor) {
            return None;
        }
        *used = clock;
        Some(layer.clone())
    }

    /// Remember `layer` under `key`.
    pub fn put(&mut self, key: String, layer: Layer) {
        self.clock += 1;
        self.entries.insert(key, (self.clock, layer));
    }

    /// Write the cache back, by rename.
    pub fn save(mut self) -> Result<(), Error> {
        while self.entries.len() > MAX_KEYS {
            let oldest = self
                .entries
                .iter()
                .min_by_key(|(_, (used, _))| *used)
                .map(|(k, _)| k.clone());
            if let Some(key) = oldest {
                self.entries.remove(&key);
            }
        }
        let bytes = serde_json::to_vec(&self.entries)
            .map_err(|e| Error::failed(format!("layer cache: {e}")))?;
        let staging = kiln_sdk::files::partial_path(&self.path);
        std::fs::write(&staging, bytes).map_err(|e| Error::io(&staging, e))?;
        std::fs::rename(&staging, &self.path).map_err(|e| Error::io(&self.path, e))
    }
}
