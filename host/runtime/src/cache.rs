//! Precompiled components on disk, so a step starts in well under a
//! millisecond instead of recompiling its plugin with Cranelift.
//!
//! Entries live under `<cache>/<engine>/<component>.cwasm`, where `<engine>`
//! hashes `Engine::precompile_compatibility_hash` (wasmtime version and every
//! setting that changes code generation) and `<component>` is the SHA-256 of
//! the component bytes. Deserializing runs native code produced earlier, so
//! an entry is never trusted on its word: each file ends with an HMAC-SHA256
//! over the engine key, the component's digest and the body, keyed by a
//! random secret kept in the same private directory (`key`, mode 0600,
//! created once). A checksum alone would let anyone who can write a file
//! there (a step handed a symlinked directory, a shared cache) plant native
//! code for a built-in; without the key, no entry verifies, and an entry
//! compiled from other bytes never verifies under this component's digest.
//! A mismatch means the entry is compiled again; wasmtime itself also
//! refuses artifacts from another engine configuration. Writes go to a
//! temporary file renamed into place, so readers never see half an entry.

use std::hash::{DefaultHasher, Hash, Hasher};
use std::io::Write;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};
use wasmtime::Engine;
use wasmtime::component::Component;

/// Length of the trailing HMAC-SHA256.
const MAC_LEN: usize = 32;

/// Length of the secret key.
const KEY_LEN: usize = 32;

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
    engine_key: String,
}

impl ComponentCache {
    /// A cache under `root` (or none) for components compiled by `engine`.
    pub fn new(engine: &Engine, root: Option<&Path>) -> Self {
        let mut hasher = DefaultHasher::new();
        engine.precompile_compatibility_hash().hash(&mut hasher);
        let engine_key = format!("{:016x}", hasher.finish());
        ComponentCache {
            dir: root.map(|r| r.join(&engine_key)),
            engine_key,
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
        let dir = path.parent().expect("entries live in the engine directory");
        let Some(key) = trustworthy(dir).then(|| secret_key(dir)).flatten() else {
            return Ok((Component::new(engine, wasm)?, CacheOutcome::Disabled));
        };
        let signer = Signer {
            key,
            context: format!("{}/{digest_hex}", self.engine_key),
        };
        let existed = std::fs::symlink_metadata(&path).is_ok();
        if existed && let Some(component) = read_entry(engine, &path, &signer) {
            return Ok((component, CacheOutcome::Hit));
        }
        let compiled = engine.precompile_component(wasm)?;
        // SAFETY: `compiled` was produced by this engine just now.
        let component = unsafe { Component::deserialize(engine, &compiled)? };
        // Best effort: a read-only cache directory costs speed, not
        // correctness.
        let _ = write_entry(&path, &compiled, &signer);
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

/// What authenticates entries: the directory's secret key, and the
/// engine and component the entry claims to be compiled for.
struct Signer {
    key: [u8; KEY_LEN],
    context: String,
}

impl Signer {
    /// HMAC-SHA256 (RFC 2104) of the context and `body`.
    fn mac(&self, body: &[u8]) -> [u8; MAC_LEN] {
        const BLOCK: usize = 64;
        let mut padded = [0u8; BLOCK];
        padded[..KEY_LEN].copy_from_slice(&self.key);
        let pad = |byte: u8| padded.map(|k| k ^ byte);
        let mut inner = Sha256::new();
        inner.update(pad(0x36));
        inner.update((self.context.len() as u64).to_be_bytes());
        inner.update(self.context.as_bytes());
        inner.update(body);
        let mut outer = Sha256::new();
        outer.update(pad(0x5c));
        outer.update(inner.finalize());
        outer.finalize().into()
    }
}

/// The cache directory's secret key, created on first use. `None` (no
/// disk cache) when it cannot be read safely: it must be a regular file
/// owned by this user and readable by nobody else.
fn secret_key(dir: &Path) -> Option<[u8; KEY_LEN]> {
    use std::io::Read;
    use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
    let path = dir.join("key");
    let open = || {
        std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NOFOLLOW)
            .open(&path)
    };
    let mut file = match open() {
        Ok(file) => file,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let mut key = [0u8; KEY_LEN];
            std::fs::File::open("/dev/urandom")
                .and_then(|mut random| random.read_exact(&mut key))
                .ok()?;
            // Written whole to a private temporary file (0600), then linked
            // into place without replacing: concurrent first uses agree on
            // one key, and nobody reads half of one.
            let written = tempfile::NamedTempFile::new_in(dir).and_then(|mut staged| {
                staged.write_all(&key)?;
                staged.as_file().sync_all()?;
                staged.persist_noclobber(&path).map_err(|e| e.error)?;
                Ok(())
            });
            if let Err(e) = written
                && e.kind() != std::io::ErrorKind::AlreadyExists
            {
                return None;
            }
            open().ok()?
        }
        Err(_) => return None,
    };
    let meta = file.metadata().ok()?;
    // SAFETY: geteuid has no preconditions and cannot fail.
    let me = unsafe { libc::geteuid() };
    if !meta.is_file() || meta.uid() != me || meta.mode() & 0o077 != 0 {
        return None;
    }
    let mut key = [0u8; KEY_LEN];
    file.read_exact(&mut key).ok()?;
    Some(key)
}

/// A verified entry, or `None` when it must be recompiled.
fn read_entry(engine: &Engine, path: &Path, signer: &Signer) -> Option<Component> {
    use std::io::Read;
    use std::os::unix::fs::OpenOptionsExt;
    let mut bytes = Vec::new();
    std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)
        .and_then(|mut f| f.read_to_end(&mut bytes))
        .ok()?;
    let body_len = bytes.len().checked_sub(MAC_LEN)?;
    let (body, mac) = bytes.split_at(body_len);
    // Constant time is not needed: the key never leaves this process, and
    // a wrong entry is simply recompiled.
    if signer.mac(body).as_slice() != mac {
        return None;
    }
    // SAFETY: the body is byte-for-byte what `precompile_component` wrote
    // for this engine and component (authenticated above with a key only
    // this user can read), and `deserialize` refuses artifacts whose
    // engine settings or wasmtime version differ from `engine`'s.
    unsafe { Component::deserialize(engine, body) }.ok()
}

fn write_entry(path: &Path, compiled: &[u8], signer: &Signer) -> std::io::Result<()> {
    let dir = path.parent().expect("entries live in the engine directory");
    let mut file = tempfile::NamedTempFile::new_in(dir)?;
    file.write_all(compiled)?;
    file.write_all(&signer.mac(compiled))?;
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
    fn a_planted_entry_is_never_loaded() {
        let (engine, dir, wasm) = setup();
        let cache = ComponentCache::new(&engine, Some(dir.path()));
        assert_eq!(
            cache.load(&engine, &wasm, "abc").unwrap().1,
            CacheOutcome::Miss
        );
        let path = cache.entry_path("abc").unwrap();
        // Someone who can write the directory but not read the key plants
        // a well-formed entry with a checksum trailer: it is replaced.
        let compiled = engine.precompile_component(&wasm).unwrap();
        let mut planted = compiled.clone();
        planted.extend_from_slice(&Sha256::digest(&compiled));
        std::fs::write(&path, &planted).unwrap();
        assert_eq!(
            cache.load(&engine, &wasm, "abc").unwrap().1,
            CacheOutcome::Replaced
        );
        // A genuine entry for another component does not verify as this
        // one.
        let other = cache.entry_path("def").unwrap();
        std::fs::copy(&path, &other).unwrap();
        assert_eq!(
            cache.load(&engine, &wasm, "def").unwrap().1,
            CacheOutcome::Replaced
        );
        // A key others may read disables the cache.
        use std::os::unix::fs::PermissionsExt;
        let key = path.parent().unwrap().join("key");
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert_eq!(
            cache.load(&engine, &wasm, "abc").unwrap().1,
            CacheOutcome::Disabled
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
