//! Paths relative to the root, as raw bytes.
//!
//! Linux file names are bytes, not UTF-8, and a layer must reproduce them
//! exactly. The ordering compares component by component (as if `/` sorted
//! before every other byte), so a directory's descendants follow it
//! contiguously: a sorted walk visits parents before children and
//! descendants can be found with a range scan.

use std::cmp::Ordering;
use std::fmt;

/// A normalised path inside the root: no leading or trailing `/`, no empty,
/// `.` or `..` components; the empty path is the root itself.
#[derive(Clone, PartialEq, Eq, Hash)]
pub(crate) struct RelPath(Vec<u8>);

impl RelPath {
    /// The root directory itself.
    pub(crate) fn root() -> RelPath {
        RelPath(Vec::new())
    }

    /// Normalise a path from a layer entry or a caller: leading `/` and `./`
    /// are dropped, `a/../b` is folded, and a `..` that would climb above the
    /// root is refused (`None`).
    pub(crate) fn normalise(raw: &[u8]) -> Option<RelPath> {
        let mut parts: Vec<&[u8]> = Vec::new();
        for part in raw.split(|b| *b == b'/') {
            match part {
                b"" | b"." => {}
                b".." => {
                    parts.pop()?;
                }
                name => parts.push(name),
            }
        }
        Some(RelPath(parts.join(&b'/')))
    }

    /// The path as bytes, `""` for the root.
    pub(crate) fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// Whether this is the root itself.
    pub(crate) fn is_root(&self) -> bool {
        self.0.is_empty()
    }

    /// The parent directory and the final component; `None` for the root.
    pub(crate) fn split(&self) -> Option<(RelPath, &[u8])> {
        if self.is_root() {
            return None;
        }
        Some(match self.0.iter().rposition(|b| *b == b'/') {
            Some(slash) => (RelPath(self.0[..slash].to_vec()), &self.0[slash + 1..]),
            None => (RelPath::root(), &self.0[..]),
        })
    }

    /// The child `name` of this directory.
    pub(crate) fn join(&self, name: &[u8]) -> RelPath {
        if self.is_root() {
            return RelPath(name.to_vec());
        }
        let mut joined = Vec::with_capacity(self.0.len() + 1 + name.len());
        joined.extend_from_slice(&self.0);
        joined.push(b'/');
        joined.extend_from_slice(name);
        RelPath(joined)
    }

    /// Whether this path lies strictly below `ancestor`.
    pub(crate) fn is_below(&self, ancestor: &RelPath) -> bool {
        if ancestor.is_root() {
            return !self.is_root();
        }
        self.0.len() > ancestor.0.len()
            && self.0.starts_with(&ancestor.0)
            && self.0[ancestor.0.len()] == b'/'
    }

    /// The proper ancestors of this path, outermost first, without the root.
    pub(crate) fn ancestors(&self) -> impl Iterator<Item = RelPath> + '_ {
        self.0
            .iter()
            .enumerate()
            .filter(|(_, b)| **b == b'/')
            .map(|(slash, _)| RelPath(self.0[..slash].to_vec()))
    }

    /// The path as a C path argument for `*at` calls; the root is `.`.
    pub(crate) fn as_arg(&self) -> &[u8] {
        if self.is_root() { b"." } else { &self.0 }
    }
}

impl Ord for RelPath {
    fn cmp(&self, other: &RelPath) -> Ordering {
        // Comparing component by component is the same as sorting `/`
        // first, and each component comparison is a `memcmp`.
        let slash = |b: &u8| *b == b'/';
        self.0.split(slash).cmp(other.0.split(slash))
    }
}

impl PartialOrd for RelPath {
    fn partial_cmp(&self, other: &RelPath) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl fmt::Display for RelPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_root() {
            return f.write_str("/");
        }
        write!(f, "{}", String::from_utf8_lossy(&self.0))
    }
}

impl fmt::Debug for RelPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", String::from_utf8_lossy(&self.0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> RelPath {
        RelPath::normalise(s.as_bytes()).unwrap()
    }

    #[test]
    fn normalises_and_refuses_climbing() {
        assert_eq!(p("/./usr//bin/"), p("usr/bin"));
        assert_eq!(p("a/../b"), p("b"));
        assert!(p("./").is_root());
        assert!(RelPath::normalise(b"../x").is_none());
        assert!(RelPath::normalise(b"a/../../x").is_none());
    }

    #[test]
    fn orders_children_right_after_their_parent() {
        let mut paths = vec![p("a-b"), p("a/b"), p("a"), p("a/b/c"), p("a.")];
        paths.sort();
        assert_eq!(paths, vec![p("a"), p("a/b"), p("a/b/c"), p("a-b"), p("a.")]);
    }

    #[test]
    fn splits_joins_and_relates() {
        let path = p("a/b/c");
        let (parent, name) = path.split().unwrap();
        assert_eq!((parent.clone(), name), (p("a/b"), &b"c"[..]));
        assert_eq!(parent.join(b"c"), p("a/b/c"));
        assert!(p("a/b").is_below(&p("a")));
        assert!(!p("ab").is_below(&p("a")));
        assert!(p("a").is_below(&RelPath::root()));
        assert_eq!(
            p("a/b/c").ancestors().collect::<Vec<_>>(),
            vec![p("a"), p("a/b")]
        );
    }
}
