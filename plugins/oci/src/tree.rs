//! A file tree as an image layer sees it: paths with kind, mode, owner and
//! time, and for regular files where their bytes are read from.
//!
//! Trees are kept in memory, sorted by path, and written out as layers
//! only at the end of an instruction: sorting is what makes layers
//! reproducible, and a tree is also a stage's view of its own file system
//! for `COPY --from` and `--chown` name lookups.

use std::collections::BTreeMap;

/// What a path is.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Kind {
    /// A regular file.
    File(FileData),
    /// A directory.
    Dir,
    /// A symbolic link and its target, kept verbatim.
    Symlink(String),
}

/// Where a regular file's bytes come from, and what identifies them for the
/// layer cache without reading them.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct FileData {
    /// Guest path of the bytes: a build-context file or a scratch copy.
    pub source: String,
    /// The size in bytes.
    pub size: u64,
    /// A stable identity of the bytes (source, size and time for context
    /// files; the archive and entry for extracted ones).
    pub identity: String,
}

/// One path of a tree.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Entry {
    /// What it is.
    pub kind: Kind,
    /// Permission bits (`0o7777`).
    pub mode: u32,
    /// Owner.
    pub uid: u64,
    /// Group.
    pub gid: u64,
    /// Modification time in seconds since the epoch, already clamped.
    pub mtime: u64,
}

impl Entry {
    /// A root-owned directory with mode 0755, as Docker creates missing
    /// parents.
    pub fn dir(mtime: u64) -> Entry {
        Entry {
            kind: Kind::Dir,
            mode: 0o755,
            uid: 0,
            gid: 0,
            mtime,
        }
    }

    /// Whether this is a directory.
    pub fn is_dir(&self) -> bool {
        self.kind == Kind::Dir
    }
}

/// Paths relative to the image root (`usr/bin/x`, no leading `/`; the
/// root itself is never stored).
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
pub struct Tree {
    entries: BTreeMap<String, Entry>,
}

impl Tree {
    /// The entry at `path`.
    pub fn get(&self, path: &str) -> Option<&Entry> {
        self.entries.get(path)
    }

    /// About how many bytes this tree makes as a tar stream (a header per
    /// entry, file bytes padded to 512, the end marker); long names add a
    /// little. For progress, before the stream is written.
    pub fn tar_size(&self) -> u64 {
        let bytes: u64 = self
            .entries
            .values()
            .map(|entry| {
                512 + match &entry.kind {
                    Kind::File(data) => data.size.div_ceil(512) * 512,
                    _ => 0,
                }
            })
            .sum();
        bytes + 1024
    }

    /// Every entry, sorted by path.
    pub fn iter(&self) -> std::collections::btree_map::Iter<'_, String, Entry> {
        self.entries.iter()
    }

    /// Put `entry` at `path`. A non-directory replacing a directory removes
    /// what was below it.
    pub fn insert(&mut self, path: String, entry: Entry) {
        if !entry.is_dir() && self.get(&path).is_some_and(Entry::is_dir) {
            self.remove_below(&path);
        }
        self.entries.insert(path, entry);
    }

    /// Remove `path` and everything below it (a whiteout).
    pub fn remove(&mut self, path: &str) {
        self.entries.remove(path);
        self.remove_below(path);
    }

    /// Remove everything below `path`, keeping `path` (an opaque whiteout).
    pub fn remove_below(&mut self, path: &str) {
        let below: Vec<String> = self.below(path).map(|(p, _)| p.clone()).collect();
        for p in below {
            self.entries.remove(&p);
        }
    }

    /// Entries strictly below the directory `path` (`""` for the root).
    pub fn below<'a>(&'a self, path: &str) -> impl Iterator<Item = (&'a String, &'a Entry)> {
        let prefix = if path.is_empty() {
            String::new()
        } else {
            format!("{path}/")
        };
        self.entries
            .range(prefix.clone()..)
            .take_while(move |(p, _)| p.starts_with(&prefix))
    }

    /// Lay `other` over this tree, as a later layer over an earlier one.
    pub fn overlay(&mut self, other: &Tree) {
        for (path, entry) in &other.entries {
            self.insert(path.clone(), entry.clone());
        }
    }
}

/// `base/name`, or `name` at the root (`""`).
pub fn join(base: &str, name: &str) -> String {
    if base.is_empty() {
        name.to_owned()
    } else {
        format!("{base}/{name}")
    }
}

/// Parent directories of `path`, outermost first (`a/b/c` → `a`, `a/b`).
pub fn parents(path: &str) -> impl Iterator<Item = &str> {
    path.match_indices('/').map(move |(i, _)| &path[..i])
}

/// Where `path` leads inside a tree, following symlinks in every
/// component as the kernel would but scoped to the tree's root (Docker's
/// `FollowSymlinkInScope`): an absolute target starts again at the root and
/// `..` never climbs above it, so no path resolves outside the tree.
///
/// The final component is followed only when `follow_last`. Components
/// that do not exist are kept as written, so a destination that is still
/// to be created resolves too; the entry is `None` then. `entry` looks up
/// one already-resolved path (its parents are never symlinks).
pub fn resolve<E>(
    path: &str,
    follow_last: bool,
    mut entry: impl FnMut(&str) -> Result<Option<Entry>, E>,
) -> Result<(String, Option<Entry>), E> {
    let mut done: Vec<String> = Vec::new();
    let mut todo: std::collections::VecDeque<String> = path.split('/').map(str::to_owned).collect();
    let mut links = 0;
    let mut last: Option<Entry> = None;
    while let Some(part) = todo.pop_front() {
        match part.as_str() {
            "" | "." => continue,
            ".." => {
                done.pop();
                last = None;
                continue;
            }
            _ => {}
        }
        let candidate = join(&done.join("/"), &part);
        let found = entry(&candidate)?;
        let is_last = todo.iter().all(|p| p.is_empty() || p == ".");
        match found {
            Some(Entry {
                kind: Kind::Symlink(target),
                ..
            }) if (!is_last || follow_last) && links < 40 => {
                // As Linux does, give up following after 40 links.
                links += 1;
                if target.starts_with('/') {
                    done.clear();
                }
                for piece in target.split('/').rev() {
                    todo.push_front(piece.to_owned());
                }
                last = None;
            }
            other => {
                done.push(part);
                last = other;
            }
        }
    }
    if done.is_empty() {
        last = Some(Entry::dir(0));
    }
    Ok((done.join("/"), last))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn symlinks_resolve_inside_the_tree() {
        let mut tree = Tree::default();
        let link = |target: &str| Entry {
            kind: Kind::Symlink(target.into()),
            ..Entry::dir(0)
        };
        tree.insert("usr".into(), Entry::dir(0));
        tree.insert("usr/bin".into(), Entry::dir(0));
        tree.insert("bin".into(), link("usr/bin"));
        tree.insert("up".into(), link("../../.."));
        tree.insert("abs".into(), link("/etc/passwd"));
        let resolve =
            |p: &str, last: bool| resolve::<()>(p, last, |q| Ok(tree.get(q).cloned())).unwrap();
        assert_eq!(resolve("bin/sh", true).0, "usr/bin/sh");
        assert!(resolve("bin/sh", true).1.is_none());
        assert_eq!(resolve("bin", true).0, "usr/bin");
        assert_eq!(resolve("bin", false).0, "bin");
        assert_eq!(resolve("up/usr", true).0, "usr");
        assert_eq!(resolve("abs", true).0, "etc/passwd");
        assert!(resolve("", true).1.is_some_and(|e| e.is_dir()));
    }

    #[test]
    fn parents_of_a_path() {
        assert_eq!(parents("a/b/c").collect::<Vec<_>>(), ["a", "a/b"]);
    }
}
