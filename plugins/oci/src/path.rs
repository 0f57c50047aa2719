//! Slash-separated paths cleaned lexically, as Go's `path.Clean` does:
//! Docker defines `.dockerignore` patterns, image paths and COPY
//! destinations by it, and the host resolves guest paths the same way, so
//! every side agrees on what `a/../b` names.

/// Go's `path.Clean`: the shortest equivalent path, `.` for empty.
pub fn clean(path: &str) -> String {
    let rooted = path.starts_with('/');
    let mut parts: Vec<&str> = Vec::new();
    for part in path.split('/') {
        match part {
            "" | "." => {}
            ".." if parts.last().is_some_and(|last| *last != "..") => _ = parts.pop(),
            ".." if rooted => {}
            part => parts.push(part),
        }
    }
    let joined = parts.join("/");
    match (rooted, joined.is_empty()) {
        (true, _) => format!("/{joined}"),
        (false, true) => ".".to_string(),
        (false, false) => joined,
    }
}

/// `path` inside a root: cleaned as if it began with `/` (so `..` never
/// climbs above the root), returned without the leading `/`: `./a//b/../c`
/// → `a/c`, and the root itself → ``.
pub fn clean_inside_root(path: &str) -> String {
    clean(&format!("/{path}"))[1..].to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clean_matches_go() {
        for (path, want) in [
            ("", "."),
            ("a//b/./c/..", "a/b"),
            ("/../a", "/a"),
            ("../a", "../a"),
            ("a/..", "."),
        ] {
            assert_eq!(clean(path), want, "{path:?}");
        }
    }

    #[test]
    fn inside_a_root() {
        assert_eq!(clean_inside_root("/./a//b/../c/"), "a/c");
        assert_eq!(clean_inside_root("../../x"), "x");
        assert_eq!(clean_inside_root(""), "");
    }
}
