//! The side table of image owners, for [`IdMap::Single`](crate::ids::IdMap).
//!
//! When every id collapses onto one unprivileged user the disk cannot say
//! who owns a file in the image, yet the layers kiln writes must keep the
//! owners the base image had. The table remembers them per path; a path
//! missing from it is owned by `0:0`, which keeps the table small (most of
//! an image belongs to root).

use std::collections::BTreeMap;
use std::ops::Bound;

use super::relpath::RelPath;

/// Image owners (`uid`, `gid`) of paths not owned by `0:0`.
#[derive(Debug, Default)]
pub(crate) struct OwnerTable(BTreeMap<RelPath, (u32, u32)>);

impl OwnerTable {
    /// Record that `path` is owned by `owner`.
    pub(crate) fn set(&mut self, path: RelPath, owner: (u32, u32)) {
        if owner == (0, 0) {
            self.0.remove(&path);
        } else {
            self.0.insert(path, owner);
        }
    }

    /// The owner of `path`.
    pub(crate) fn get(&self, path: &RelPath) -> (u32, u32) {
        self.0.get(path).copied().unwrap_or((0, 0))
    }

    /// Forget `path` alone, e.g. because the file there was replaced.
    pub(crate) fn forget(&mut self, path: &RelPath) {
        self.0.remove(path);
    }

    /// Forget `path` and everything below it, because the tree was removed.
    pub(crate) fn forget_tree(&mut self, path: &RelPath) {
        let below: Vec<RelPath> = self
            .0
            .range((Bound::Excluded(path), Bound::Unbounded))
            .map(|(p, _)| p)
            .take_while(|p| p.is_below(path))
            .cloned()
            .collect();
        for p in below {
            self.0.remove(&p);
        }
        self.0.remove(path);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> RelPath {
        RelPath::normalise(s.as_bytes()).unwrap()
    }

    #[test]
    fn root_owners_are_implicit_and_trees_are_forgotten_whole() {
        let mut table = OwnerTable::default();
        table.set(p("a"), (1, 1));
        table.set(p("a/b"), (2, 2));
        table.set(p("a-b"), (3, 3));
        table.set(p("c"), (0, 0));
        assert_eq!(table.get(&p("c")), (0, 0));
        table.forget_tree(&p("a"));
        assert_eq!(table.get(&p("a/b")), (0, 0));
        assert_eq!(table.get(&p("a")), (0, 0));
        assert_eq!(table.get(&p("a-b")), (3, 3));
    }
}
