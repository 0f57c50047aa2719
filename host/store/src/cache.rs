//! The cache: directories restored before a step and saved after it
//! succeeds, keyed by `cache.key`. Only a speed-up: a missing or unreadable
//! entry means a cold start, never a failure.

use std::path::{Path, PathBuf};

use super::{StoreError, io_error};

/// The cache part of the store.
#[derive(Debug, Clone)]
pub struct CacheStore {
    /// The store's root, which [`super::StoreRoot`] checked.
    store: PathBuf,
    root: PathBuf,
}

impl CacheStore {
    /// The cache under `root` (the artifacts directory).
    pub fn new(root: &Path) -> Self {
        CacheStore {
            store: root.to_owned(),
            root: root.join("cache"),
        }
    }

    /// Entries are named by the key's digest: any key maps to exactly one
    /// directory, and no key can name the cache root or another's entry.
    fn entry(&self, key: &str) -> PathBuf {
        use sha2::{Digest, Sha256};
        self.root.join(hex::encode(Sha256::digest(key.as_bytes())))
    }

    /// Copy the cached `paths` for `key` into `project`. Returns whether
    /// there was an entry.
    pub fn restore(&self, key: &str, paths: &[String], project: &Path) -> Result<bool, StoreError> {
        let entry = self.entry(key);
        if !entry.is_dir() {
            return Ok(false);
        }
        for path in paths {
            let cached = entry.join(path);
            if cached.exists() {
                copy_tree(&cached, &project.join(path))?;
            }
        }
        Ok(true)
    }

    /// Save `paths` of `project` under `key`, replacing the old entry only
    /// once the new one is complete.
    pub fn save(&self, key: &str, paths: &[String], project: &Path) -> Result<(), StoreError> {
        super::ensure_dir(&self.store, Path::new("cache"))?;
        let staging = tempfile::Builder::new()
            .prefix(".saving-")
            .tempdir_in(&self.root)
            .map_err(io_error(&self.root))?;
        for path in paths {
            let source = project.join(path);
            if source.exists() {
                copy_tree(&source, &staging.path().join(path))?;
            }
        }
        let entry = self.entry(key);
        if entry.exists() {
            std::fs::remove_dir_all(&entry).map_err(io_error(&entry))?;
        }
        let staged = staging.keep();
        std::fs::rename(&staged, &entry).map_err(io_error(&entry))?;
        Ok(())
    }
}

/// Copy a file or directory tree. Symbolic links are copied as links only
/// when they point inside the tree (relative, no `..`); a file already at
/// the destination is replaced, never written through.
fn copy_tree(from: &Path, to: &Path) -> Result<(), StoreError> {
    let meta = std::fs::symlink_metadata(from).map_err(io_error(from))?;
    if let Some(dir) = to.parent() {
        std::fs::create_dir_all(dir).map_err(io_error(dir))?;
    }
    if meta.is_dir() {
        std::fs::create_dir_all(to).map_err(io_error(to))?;
        for entry in std::fs::read_dir(from).map_err(io_error(from))? {
            let entry = entry.map_err(io_error(from))?;
            copy_tree(&entry.path(), &to.join(entry.file_name()))?;
        }
        return Ok(());
    }
    if std::fs::symlink_metadata(to).is_ok_and(|m| !m.is_dir()) {
        std::fs::remove_file(to).map_err(io_error(to))?;
    }
    if meta.file_type().is_symlink() {
        let target = std::fs::read_link(from).map_err(io_error(from))?;
        let inside = target.is_relative()
            && target.components().all(|c| {
                matches!(
                    c,
                    std::path::Component::Normal(_) | std::path::Component::CurDir
                )
            });
        if inside {
            std::os::unix::fs::symlink(target, to).map_err(io_error(to))?;
        }
    } else if meta.is_file() {
        std::fs::copy(from, to).map_err(io_error(to))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn save_then_restore() {
        let project = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(project.path().join(".m2/repo/a")).unwrap();
        std::fs::write(project.path().join(".m2/repo/a/x.jar"), b"x").unwrap();
        let store_dir = tempfile::tempdir().unwrap();
        let cache = CacheStore::new(store_dir.path());
        assert!(
            !cache
                .restore("k/1", &[".m2/repo".into()], project.path())
                .unwrap()
        );
        cache
            .save("k/1", &[".m2/repo".into()], project.path())
            .unwrap();

        let fresh = tempfile::tempdir().unwrap();
        assert!(
            cache
                .restore("k/1", &[".m2/repo".into()], fresh.path())
                .unwrap()
        );
        assert_eq!(
            std::fs::read(fresh.path().join(".m2/repo/a/x.jar")).unwrap(),
            b"x"
        );
    }
}
