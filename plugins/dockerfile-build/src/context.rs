//! The build context: the only files a build may read.
//!
//! Two walls keep a build inside it. The sandbox mounts nothing else, so
//! even a bug here cannot open a host file outside; and this module
//! refuses sources that climb out (`../x`) instead of silently clamping
//! them, keeps symlinks as symlinks while walking (never following one out),
//! and leaves out what `.dockerignore` excludes.

use std::path::{Path, PathBuf};

use kiln_dockerfile::ignore::{self, IgnoreRules};
use kiln_dockerfile::pattern;
use kiln_oci::tree::{Entry, FileData, Kind, join};

use kiln_sdk::Error;

/// A build context directory and its `.dockerignore`.
pub struct Context {
    root: PathBuf,
    ignore: IgnoreRules,
    /// Upper bound for file times in layers (`SOURCE_DATE_EPOCH`).
    epoch: u64,
}

/// A context path found for a source: relative to the context root.
pub struct Found {
    /// The path relative to the root (`""` for the root itself), as named.
    pub path: String,
    /// Where it leads once symlinks are followed (inside the context).
    pub target: String,
    /// Its entry.
    pub entry: Entry,
}

impl Context {
    /// The context directory (a guest path).
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Open the context at `root`, reading its `.dockerignore` if any.
    pub fn open(root: &Path, epoch: u64) -> Result<Context, Error> {
        if !root.is_dir() {
            return Err(Error::invalid_input(format!(
                "the build context {} is not a directory",
                root.display()
            )));
        }
        let ignore_file = root.join(".dockerignore");
        let ignore = match std::fs::read_to_string(&ignore_file) {
            Ok(text) => ignore::parse(&text)
                .map_err(|e| Error::invalid_input(format!("{}: {e}", ignore_file.display())))?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => IgnoreRules::default(),
            Err(e) => return Err(Error::io(&ignore_file, e)),
        };
        Ok(Context {
            root: root.to_owned(),
            ignore,
            epoch,
        })
    }

    /// The context paths a COPY/ADD source names: one path, or every match
    /// of a glob. `..` that climbs out of the context is refused; a leading
    /// `/` means the context root, as in Docker.
    pub fn sources(&self, source: &str) -> Result<Vec<Found>, Error> {
        let relative = lexical_inside(source).ok_or_else(|| {
            Error::invalid_input(format!(
                "`{source}` is outside the build context; only files inside {} can be copied",
                self.root.display()
            ))
        })?;
        let paths = if pattern::has_wildcards(&relative) {
            self.glob(&relative)?
        } else {
            vec![relative]
        };
        let mut found = Vec::new();
        for path in paths {
            if !path.is_empty() && self.ignore.is_excluded(&path) {
                continue;
            }
            // Symlinks are followed inside the context only, and
            // .dockerignore applies to where a path leads as well.
            let (target, entry) = kiln_oci::tree::resolve(&path, true, |p| self.entry(p))?;
            let Some(entry) = entry else {
                continue;
            };
            if !target.is_empty() && self.ignore.is_excluded(&target) {
                continue;
            }
            found.push(Found {
                path,
                target,
                entry,
            });
        }
        if found.is_empty() {
            return Err(Error::invalid_input(format!(
                "`{source}` matches nothing in the build context {} (or .dockerignore excludes it)",
                self.root.display()
            )));
        }
        Ok(found)
    }

    /// What identifies the context files at `source` (a file, or a
    /// directory and everything below it) for a cache key, without reading
    /// their bytes: paths, kinds, modes and each file's identity.
    pub fn identity(&self, source: &str) -> Result<String, Error> {
        let mut text = String::new();
        for found in self.sources(source)? {
            let below = if found.entry.is_dir() {
                self.walk(&found.target)?
            } else {
                Vec::new()
            };
            for (path, entry) in std::iter::once((found.path, found.entry))
                .chain(below.into_iter().map(|f| (f.path, f.entry)))
            {
                text.push_str(&format!("{path} {entry:?}\n"));
            }
        }
        Ok(text)
    }

    /// Every path below the context directory `dir`, sorted, without what
    /// `.dockerignore` excludes. Symlinks are listed, not followed.
    pub fn walk(&self, dir: &str) -> Result<Vec<Found>, Error> {
        let mut out = Vec::new();
        self.walk_into(dir, &mut out)?;
        Ok(out)
    }

    fn walk_into(&self, dir: &str, out: &mut Vec<Found>) -> Result<(), Error> {
        let host = self.host_path(dir);
        let mut names: Vec<String> = std::fs::read_dir(&host)
            .map_err(|e| Error::io(&host, e))?
            .map(|e| {
                e.map_err(|e| Error::io(&host, e))
                    .map(|e| e.file_name().to_string_lossy().into_owned())
            })
            .collect::<Result<_, _>>()?;
        names.sort();
        for name in names {
            let path = join(dir, &name);
            let excluded = self.ignore.is_excluded(&path);
            let Some(entry) = self.entry(&path)? else {
                continue;
            };
            let is_dir = entry.is_dir();
            // A directory that cannot be opened because it is not there
            // (removed during the walk, or hidden by the host, as kiln's
            // own store is) is passed by, like a file removed mid-walk.
            if is_dir
                && std::fs::read_dir(self.host_path(&path))
                    .is_err_and(|e| e.kind() == std::io::ErrorKind::NotFound)
            {
                continue;
            }
            if !excluded {
                out.push(Found {
                    path: path.clone(),
                    target: path.clone(),
                    entry,
                });
            }
            if is_dir && (!excluded || self.ignore.may_reinclude_below(&path)) {
                self.walk_into(&path, out)?;
            }
        }
        Ok(())
    }

    /// Expand a glob one path component at a time, as Docker does.
    fn glob(&self, pattern: &str) -> Result<Vec<String>, Error> {
        let mut candidates = vec![String::new()];
        for component in pattern.split('/') {
            let mut next = Vec::new();
            for base in &candidates {
                if !pattern::has_wildcards(component) {
                    next.push(join(base, component));
                    continue;
                }
                // List the directory `base` leads to inside the context,
                // never one a symlink points at outside it.
                let (resolved, _) = kiln_oci::tree::resolve(base, true, |p| self.entry(p))?;
                let host = self.host_path(&resolved);
                let Ok(listing) = std::fs::read_dir(&host) else {
                    continue;
                };
                for item in listing {
                    let name = item
                        .map_err(|e| Error::io(&host, e))?
                        .file_name()
                        .to_string_lossy()
                        .into_owned();
                    if pattern::matches(component, &name)
                        .map_err(|e| Error::invalid_input(e.to_string()))?
                    {
                        next.push(join(base, &name));
                    }
                }
            }
            candidates = next;
        }
        candidates.sort();
        Ok(candidates)
    }

    /// The entry of a context path, or `None` if it does not exist.
    fn entry(&self, path: &str) -> Result<Option<Entry>, Error> {
        let host = self.host_path(path);
        let meta = match std::fs::symlink_metadata(&host) {
            Ok(meta) => meta,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(Error::io(&host, e)),
        };
        let extra = kiln_sdk::files::metadata(&host).map_err(|e| Error::io(&host, e))?;
        let modified = meta
            .modified()
            .ok()
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
            .unwrap_or_default();
        let kind = if let Some(target) = extra.symlink_target {
            Kind::Symlink(target)
        } else if meta.is_dir() {
            Kind::Dir
        } else if meta.is_file() {
            Kind::File(FileData {
                source: host.to_string_lossy().into_owned(),
                size: meta.len(),
                // Size, mtime and ctime: a rewrite that keeps size and
                // mtime (`cp -p`, `rsync -t`) still changes the ctime.
                identity: format!(
                    "context:{path}:{}:{}:{}",
                    meta.len(),
                    modified.as_nanos(),
                    extra.change_time
                ),
            })
        } else {
            // Sockets, fifos and devices are not copied, as in Docker.
            return Ok(None);
        };
        Ok(Some(Entry {
            kind,
            mode: extra.mode,
            uid: 0,
            gid: 0,
            mtime: modified.as_secs().min(self.epoch),
        }))
    }

    fn host_path(&self, path: &str) -> PathBuf {
        if path.is_empty() {
            self.root.clone()
        } else {
            self.root.join(path)
        }
    }
}

/// `source` as a clean path relative to the context root, or `None` when
/// `..` would climb above it.
fn lexical_inside(source: &str) -> Option<String> {
    let mut parts: Vec<&str> = Vec::new();
    for part in source.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                parts.pop()?;
            }
            other => parts.push(other),
        }
    }
    Some(parts.join("/"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sources_may_not_climb_out() {
        assert_eq!(lexical_inside("/app/./x/../y").as_deref(), Some("app/y"));
        assert_eq!(lexical_inside("a/../b").as_deref(), Some("b"));
        assert_eq!(lexical_inside("../x"), None);
        assert_eq!(lexical_inside("a/../../x"), None);
    }
}
