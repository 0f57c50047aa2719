//! Precompiled components on disk, so a step starts in well under a
//! millisecond instead of recompiling its plugin with Cranelift.
//!
//! Entries live under `<cache>/<engine>/<component>.cwasm`, where `<engine>`
//! hashes `Engine::precompile_compatibility_hash` (wasmtime version and every
//! setting that changes code generation) and `<component>` is the SHA-256 of
//! the component bytes. Deserializing runs native code produced earlier, so
//! an entry is never trusted blindly: each file ends with the SHA-256 of its
//! body, a mismatch (truncation, bit rot, a concurrent writer) means the
//! entry is compiled again, and wasmtime itself refuses artifacts from
//! another engine configuration. Writes go to a temporary file renamed into
//! place, so readers never see half an entry.

use std::hash::{DefaultHasher, Hash, Hasher};
use std::io::Write;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};
use wasmtime::Engine;
use wasmtime::component::Component;

/// Length of the trailing checksum.
const CHECKSUM_LEN: usize = 32;

/// Where a component came from, for the stats and tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CacheOutcome {
    /// A valid entry was loaded.
    Hit,
    /// No entry existed; the component was compiled and stored.
    Miss,
    /// An entry existed but was corrupt or stale; it was replaced.
    Replaced,
    /// No cache directory is configured; compiled in memory.
    Disabled,
}

/// The on-disk cache of precompiled components for one engine.
pub struct ComponentCache {
    dir: Option<PathBuf>,
}

impl ComponentCache {
    /// A cache under `root` (or none) for components compiled by `engine`.
    pub fn new(engine: &Engine, root: Option<&Path>) -> Self {
        let mut hasher = DefaultHasher::new();
        engine.precompile_compatibility_hash().hash(&mut hasher);
        let engine_key = format!("{:016x}", hasher.finish());
        ComponentCache {
            dir: root.map(|r| r.join(engine_key)),
        }
    }

    /// The path of the entry for a component with digest `digest_hex`.
    pub fn entry_path(&self, digest_hex: &str) -> Option<PathBuf> {
        self.dir
            .as_ref()
            .map(|d| d.join(format!("{digest_hex}.cwasm")))
    }

    /// The compiled form of `wasm` (whose SHA-256 is `digest_hex`), from the
    /// cache when a valid entry exists, otherwise compiled and stored.
    ///
    /// Failing to write the cache is not an error: the step still runs.
    pub fn load(
        &self,
        engine: &Engine,
        wasm: &[u8],
        digest_hex: &str,
    ) -> wasmtime::Result<(Component, CacheOutcome)> {
        let Some(path) = self.entry_path(digest_hex) else {
            return Ok((Component::new(engine, wasm)?, CacheOutcome::Disabled));
        };
        if !trustworthy(path.parent().expect("entries live in the engine directory")) {
            return Ok((Component::new(engine, wasm)?, CacheOutcome::Disabled));
        }
        let existed = path.exists();
        if existed && let Some(component) = read_entry(engine, &path) {
            return Ok((component, CacheOutcome::Hit));
        }
        let compiled = engine.precompile_component(wasm)?;
        // SAFETY: `compiled` was produced by this engine just now.
        let component = unsafe { Component::deserialize(engine, &compiled)? };
        // Best effort: a read-only cache directory costs speed, not
        // correctness.
        let _ = write_entry(&path, &compiled);
        let outcome = if existed {
            CacheOutcome::Replaced
        } else {
            CacheOutcome::Miss
        };
        Ok((component, outcome))
    }
}

/// Whether the cache directory (created if missing) is safe to load native
/// code from: owned by this user, not writable by others, inside a parent
/// that others cannot rename it out of. A shared or world-writable cache
/// is not used: the step compiles in memory instead.
fn trustworthy(dir: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    if create_private_dir(dir).is_err() {
        return false;
    }
    // SAFETY: geteuid has no preconditions and cannot fail.
    let me = unsafe { libc::geteuid() };
    let private = |path: &Path| {
        std::fs::symlink_metadata(path)
            .is_ok_and(|m| m.is_dir() && m.uid() == me && m.mode() & 0o022 == 0)
    };
    let parent_safe = dir.parent().is_none_or(|parent| {
        std::fs::metadata(parent).is_ok_and(|m| m.mode() & 0o022 == 0 || m.mode() & 0o1000 != 0)
    });
    private(dir) && parent_safe
}

/// A verified entry, or `None` when it must be recompiled.
fn read_entry(engine: &Engine, path: &Path) -> Option<Component> {
    let bytes = std::fs::read(path).ok()?;
    let body_len = bytes.len().checked_sub(CHECKSUM_LEN)?;
    let (body, checksum) = bytes.split_at(body_len);
    if Sha256::digest(body).as_slice() != checksum {
        return None;
    }
    // SAFETY: the body is byte-for-byte what `precompile_component` wrote
    // (checked above), and `deserialize` refuses artifacts whose engine
    // settings or wasmtime version differ from `engine`'s.
    unsafe { Component::deserialize(engine, body) }.ok()
}

fn write_entry(path: &Path, compiled: &[u8]) -> std::io::Result<()> {
    let dir = path.parent().expect("entries live in the engine directory");
    let mut file = tempfile::NamedTempFile::new_in(dir)?;
    file.write_all(compiled)?;
    file.write_all(&Sha256::digest(compiled))?;
    file.as_file().sync_all()?;
    file.persist(path).map_err(|e| e.error)?;
    Ok(())
}

/// Create the cache directory readable by its owner only: its entries are
/// native code that this user will run.
fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn setup() -> (Engine, tempfile::TempDir, Vec<u8>) {
        let engine = Engine::default();
        let dir = tempfile::tempdir().unwrap();
        let wasm = crate::plugins::builtin("hello").unwrap().wasm.to_vec();
        (engine, dir, wasm)
    }

    #[test]
    fn stores_then_hits_then_repairs_a_corrupt_entry() {
        let (engine, dir, wasm) = setup();
        let cache = ComponentCache::new(&engine, Some(dir.path()));
        let (_, first) = cache.load(&engine, &wasm, "abc").unwrap();
        assert_eq!(first, CacheOutcome::Miss);
        let (_, second) = cache.load(&engine, &wasm, "abc").unwrap();
        assert_eq!(second, CacheOutcome::Hit);

        let path = cache.entry_path("abc").unwrap();
        let mut bytes = std::fs::read(&path).unwrap();
        let middle = bytes.len() / 2;
        bytes[middle] ^= 0xff;
        std::fs::write(&path, &bytes).unwrap();
        let (_, third) = cache.load(&engine, &wasm, "abc").unwrap();
        assert_eq!(third, CacheOutcome::Replaced);

        std::fs::write(&path, b"short").unwrap();
        let (_, fourth) = cache.load(&engine, &wasm, "abc").unwrap();
        assert_eq!(fourth, CacheOutcome::Replaced);
        assert_eq!(
            cache.load(&engine, &wasm, "abc").unwrap().1,
            CacheOutcome::Hit
        );
    }

    #[test]
    fn a_directory_others_can_write_is_not_used() {
        use std::os::unix::fs::PermissionsExt;
        let (engine, dir, wasm) = setup();
        let cache = ComponentCache::new(&engine, Some(dir.path()));
        cache.load(&engine, &wasm, "abc").unwrap();
        let entry_dir = cache
            .entry_path("abc")
            .unwrap()
            .parent()
            .unwrap()
            .to_owned();
        std::fs::set_permissions(&entry_dir, std::fs::Permissions::from_mode(0o777)).unwrap();
        assert_eq!(
            cache.load(&engine, &wasm, "abc").unwrap().1,
            CacheOutcome::Disabled
        );
    }

    #[test]
    fn another_engine_configuration_uses_another_directory() {
        let (engine, dir, _) = setup();
        let mut config = wasmtime::Config::new();
        config.epoch_interruption(true);
        let other = Engine::new(&config).unwrap();
        let a = ComponentCache::new(&engine, Some(dir.path())).entry_path("x");
        let b = ComponentCache::new(&other, Some(dir.path())).entry_path("x");
        assert_ne!(a, b);
    }
}
