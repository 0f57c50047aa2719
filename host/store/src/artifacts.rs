//! Step artifacts: files a step hands on, stored by digest with a manifest,
//! and restored only after every byte is checked against it.

use std::fs::File;
use std::io::{self, Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Component, Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::{StoreError, io_error};

/// What one step handed on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// The step that produced it.
    pub step: String,
    /// The name given in `artifacts.name`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// The files, sorted by path.
    pub files: Vec<FileEntry>,
    /// Empty directories, which restoring recreates.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub directories: Vec<String>,
}

/// One file of an artifact.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileEntry {
    /// Path relative to where the step produced it, `/`-separated.
    pub path: String,
    /// Size in bytes.
    pub size: u64,
    /// Unix permission bits.
    pub mode: u32,
    /// `sha256:<hex>` of the contents.
    pub sha256: String,
}

/// The artifacts part of the store.
#[derive(Debug, Clone)]
pub struct ArtifactStore {
    root: PathBuf,
}

/// Copy `from` into `to`, returning the size and `sha256:<hex>` of what
/// was copied: one pass over the bytes.
fn copy_hashing(from: &mut impl Read, to: &mut impl Write) -> io::Result<(u64, String)> {
    let mut hasher = Sha256::new();
    let mut buffer = vec![0u8; 256 * 1024];
    let mut size = 0u64;
    loop {
        let n = match from.read(&mut buffer) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        hasher.update(&buffer[..n]);
        to.write_all(&buffer[..n])?;
        size += n as u64;
    }
    Ok((size, format!("sha256:{}", hex::encode(hasher.finalize()))))
}

impl ArtifactStore {
    /// The store under `root` (the artifacts directory).
    pub fn new(root: &Path) -> Self {
        ArtifactStore {
            root: root.to_owned(),
        }
    }

    /// The artifacts directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Where the artifact of `step` lives.
    pub fn step_dir(&self, step: &str) -> PathBuf {
        self.root.join("artifacts").join(step)
    }

    /// Store `files` (relative to `base`; directories among them are kept
    /// as empty directories) as the artifact of `step`, replacing any
    /// earlier one only once the new one is complete.
    pub fn save(
        &self,
        step: &str,
        name: Option<String>,
        base: &Path,
        files: &[PathBuf],
    ) -> Result<Manifest, StoreError> {
        let parent = super::ensure_dir(&self.root, Path::new("artifacts"))?;
        let staging = tempfile::Builder::new()
            .prefix(&format!(".{step}-"))
            .tempdir_in(&parent)
            .map_err(io_error(&parent))?;
        let blobs = staging.path().join("blobs").join("sha256");
        std::fs::create_dir_all(&blobs).map_err(io_error(&blobs))?;

        let mut entries = Vec::new();
        let mut directories = Vec::new();
        for relative in files {
            let source = base.join(relative);
            if source.is_dir() {
                directories.push(slash_path(relative));
                continue;
            }
            let mut input = File::open(&source).map_err(io_error(&source))?;
            let mode = input
                .metadata()
                .map_err(io_error(&source))?
                .permissions()
                .mode()
                & 0o7777;
            let mut staged = tempfile::NamedTempFile::new_in(&blobs).map_err(io_error(&blobs))?;
            let (size, sha256) =
                copy_hashing(&mut input, &mut staged).map_err(io_error(&source))?;
            let blob = blobs.join(&sha256["sha256:".len()..]);
            staged.persist(&blob).map_err(|e| StoreError::Io {
                path: blob.clone(),
                source: e.error,
            })?;
            entries.push(FileEntry {
                path: slash_path(relative),
                size,
                mode,
                sha256,
            });
        }
        let manifest = Manifest {
            step: step.to_owned(),
            name,
            files: entries,
            directories,
        };
        let manifest_path = staging.path().join("manifest.json");
        let json = serde_json::to_vec_pretty(&manifest).expect("manifests serialise");
        std::fs::write(&manifest_path, json).map_err(io_error(&manifest_path))?;

        let target = self.step_dir(step);
        if target.exists() {
            std::fs::remove_dir_all(&target).map_err(io_error(&target))?;
        }
        let staged = staging.keep();
        std::fs::rename(&staged, &target).map_err(io_error(&target))?;
        Ok(manifest)
    }

    /// The manifest of `step`'s artifact.
    pub fn manifest(&self, step: &str) -> Result<Manifest, StoreError> {
        let missing = || StoreError::Missing {
            step: step.to_owned(),
            dir: self.root.clone(),
        };
        // Read only through real directories: a checkout's symlinked
        // `artifacts/STEP` must not make kiln read files elsewhere.
        let dir = match super::existing_dir(&self.root, &Path::new("artifacts").join(step)) {
            Ok(dir) => dir,
            Err(StoreError::Io { source, .. }) if source.kind() == io::ErrorKind::NotFound => {
                return Err(missing());
            }
            Err(e) => return Err(e),
        };
        let path = dir.join("manifest.json");
        let bytes = match open_no_follow(&path).and_then(|mut f| {
            let mut bytes = Vec::new();
            f.read_to_end(&mut bytes).map(|_| bytes)
        }) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Err(missing()),
            Err(e) => return Err(io_error(&path)(e)),
        };
        let manifest: Manifest =
            serde_json::from_slice(&bytes).map_err(|e| StoreError::Corrupt {
                step: step.to_owned(),
                detail: format!("{} does not parse: {e}", path.display()),
            })?;
        if manifest.step != step {
            return Err(StoreError::Corrupt {
                step: step.to_owned(),
                detail: format!("{} belongs to step `{}`", path.display(), manifest.step),
            });
        }
        Ok(manifest)
    }

    /// Write the files of `manifest` under `dest`, checking each against
    /// its recorded size and digest. A file that does not match is removed
    /// and reported; nothing unverified is left in place.
    pub fn restore(&self, manifest: &Manifest, dest: &Path) -> Result<(), StoreError> {
        let corrupt = |detail: String| StoreError::Corrupt {
            step: manifest.step.clone(),
            detail,
        };
        let blobs = super::existing_dir(
            &self.root,
            &Path::new("artifacts")
                .join(&manifest.step)
                .join("blobs/sha256"),
        )?;
        for directory in &manifest.directories {
            let relative = safe_relative(directory)
                .ok_or_else(|| corrupt(format!("path `{directory}` leaves the artifact")))?;
            let target = dest.join(relative);
            std::fs::create_dir_all(&target).map_err(io_error(&target))?;
        }
        for entry in &manifest.files {
            let relative = safe_relative(&entry.path)
                .ok_or_else(|| corrupt(format!("path `{}` leaves the artifact", entry.path)))?;
            let hex = entry
                .sha256
                .strip_prefix("sha256:")
                .filter(|h| h.len() == 64 && h.chars().all(|c| c.is_ascii_hexdigit()))
                .ok_or_else(|| corrupt(format!("`{}` has a malformed digest", entry.path)))?;
            let blob = blobs.join(hex);
            let mut input = open_no_follow(&blob)
                .map_err(|e| corrupt(format!("{} is missing its content ({e})", entry.path)))?;
            let target = dest.join(&relative);
            let dir = target.parent().expect("joined paths have a parent");
            std::fs::create_dir_all(dir).map_err(io_error(dir))?;
            let mut staged = tempfile::NamedTempFile::new_in(dir).map_err(io_error(dir))?;
            let (size, sha256) = copy_hashing(&mut input, &mut staged).map_err(io_error(&blob))?;
            if size != entry.size || sha256 != entry.sha256 {
                return Err(corrupt(format!(
                    "{} has {size} bytes with digest {sha256}, but the manifest records {} bytes with digest {}",
                    entry.path, entry.size, entry.sha256
                )));
            }
            staged
                .as_file()
                .set_permissions(std::fs::Permissions::from_mode(entry.mode & 0o777))
                .map_err(io_error(&target))?;
            staged.persist(&target).map_err(|e| StoreError::Io {
                path: target.clone(),
                source: e.error,
            })?;
        }
        Ok(())
    }
}

/// Open a file of the store for reading, refusing a symlink in its place.
fn open_no_follow(path: &Path) -> io::Result<File> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)
}

fn slash_path(path: &Path) -> String {
    path.components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect::<Vec<_>>()
        .join("/")
}

/// `text` as a relative path with no `..`, or `None`.
fn safe_relative(text: &str) -> Option<PathBuf> {
    let path = Path::new(text);
    let ok = !text.is_empty() && path.components().all(|c| matches!(c, Component::Normal(_)));
    ok.then(|| path.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn project() -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("target/empty")).unwrap();
        std::fs::write(dir.path().join("target/app.jar"), b"PK jar bytes").unwrap();
        std::fs::write(dir.path().join("run.sh"), b"#!/bin/sh\n").unwrap();
        std::fs::set_permissions(
            dir.path().join("run.sh"),
            std::fs::Permissions::from_mode(0o755),
        )
        .unwrap();
        dir
    }

    #[test]
    fn round_trip_keeps_contents_and_modes() {
        let project = project();
        let store_dir = tempfile::tempdir().unwrap();
        let store = ArtifactStore::new(store_dir.path());
        let files = vec![
            PathBuf::from("run.sh"),
            PathBuf::from("target/app.jar"),
            PathBuf::from("target/empty"),
        ];
        let saved = store
            .save("build", Some("app".into()), project.path(), &files)
            .unwrap();
        assert_eq!(saved.files[1].path, "target/app.jar");
        assert_eq!(store.manifest("build").unwrap(), saved);

        let dest = tempfile::tempdir().unwrap();
        store.restore(&saved, dest.path()).unwrap();
        assert_eq!(
            std::fs::read(dest.path().join("target/app.jar")).unwrap(),
            b"PK jar bytes"
        );
        assert!(dest.path().join("target/empty").is_dir());
        let mode = std::fs::metadata(dest.path().join("run.sh"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o755);
    }

    #[test]
    fn tampered_truncated_or_escaping_artifacts_are_refused() {
        let project = project();
        let store_dir = tempfile::tempdir().unwrap();
        let store = ArtifactStore::new(store_dir.path());
        let saved = store
            .save(
                "build",
                None,
                project.path(),
                &[PathBuf::from("target/app.jar")],
            )
            .unwrap();
        let blob = store
            .step_dir("build")
            .join("blobs/sha256")
            .join(&saved.files[0].sha256[7..]);

        std::fs::write(&blob, b"PK jar bytez").unwrap();
        let dest = tempfile::tempdir().unwrap();
        let err = store.restore(&saved, dest.path()).unwrap_err().to_string();
        assert!(
            err.contains("artifact of step `build` is corrupt") && err.contains("target/app.jar"),
            "{err}"
        );
        assert!(!dest.path().join("target/app.jar").exists());

        std::fs::write(&blob, b"PK").unwrap();
        assert!(store.restore(&saved, dest.path()).is_err());

        let mut escaping = saved.clone();
        escaping.files[0].path = "../evil".into();
        assert!(
            store
                .restore(&escaping, dest.path())
                .unwrap_err()
                .to_string()
                .contains("leaves the artifact")
        );

        let missing = store.manifest("absent").unwrap_err().to_string();
        assert!(missing.contains("run step `absent` first"), "{missing}");
    }
}
