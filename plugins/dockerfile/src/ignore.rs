//! `.dockerignore` as BuildKit reads it (`frontend/dockerfile/dockerignore`)
//! and moby/patternmatcher applies it, so a context sends the same files
//! to kiln as to `docker build`.
//!
//! A line starting with `#` is a comment (only at column 0: `  #x` is a
//! pattern, as in BuildKit). Other lines are trimmed; empty ones are
//! skipped; `!` makes an exception. Each pattern is cleaned like Go's
//! `filepath.Clean` and loses a leading `/`, so `/foo`, `./foo` and
//! `foo/` all mean `foo`. The last pattern matching a path, or one of its
//! parent directories, decides whether it is excluded.

use crate::pattern::{Glob, PatternError};
use kiln_oci::path::clean;
use std::fmt;

/// The patterns of one `.dockerignore`, in file order.
///
/// ```
/// use kiln_dockerfile::ignore::parse;
/// let rules = parse("*.md\n!README.md\n")?;
/// assert!(rules.is_excluded("CHANGES.md"));
/// assert!(!rules.is_excluded("README.md"));
/// # Ok::<(), kiln_dockerfile::ignore::IgnoreError>(())
/// ```
#[derive(Debug, Clone, Default)]
pub struct IgnoreRules {
    rules: Vec<Rule>,
}

#[derive(Debug, Clone)]
struct Rule {
    glob: Glob,
    exception: bool,
}

/// A `.dockerignore` line whose pattern is malformed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IgnoreError {
    /// 1-based line number.
    pub line: usize,
    /// The line's pattern, trimmed, as written.
    pub pattern: String,
    /// What is wrong with it.
    pub reason: String,
}

impl fmt::Display for IgnoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "line {}: bad pattern `{}`: {}",
            self.line, self.pattern, self.reason
        )
    }
}

impl std::error::Error for IgnoreError {}

/// Read a `.dockerignore` file's text (a leading UTF-8 BOM is skipped).
pub fn parse(text: &str) -> Result<IgnoreRules, IgnoreError> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut rules = Vec::new();
    for (index, line) in text.lines().enumerate() {
        let rule = parse_line(line).map_err(|reason| IgnoreError {
            line: index + 1,
            pattern: line.trim().to_string(),
            reason,
        })?;
        rules.extend(rule);
    }
    Ok(IgnoreRules { rules })
}

/// One line as a rule; `None` for comments, blank lines, and patterns
/// that clean to `.` or `/` (moby compares those to the path exactly,
/// and no path in a context is `.` or `/`).
fn parse_line(line: &str) -> Result<Option<Rule>, String> {
    if line.starts_with('#') {
        return Ok(None);
    }
    let line = line.trim();
    let (exception, pattern) = match line.strip_prefix('!') {
        Some(rest) => (true, rest.trim()),
        None => (false, line),
    };
    if exception && pattern.is_empty() {
        return Err("`!` needs a pattern after it".to_string());
    }
    if pattern.is_empty() {
        return Ok(None);
    }
    let cleaned = clean(pattern);
    let cleaned = cleaned.strip_prefix('/').unwrap_or(&cleaned);
    if cleaned.is_empty() || cleaned == "." {
        return Ok(None);
    }
    let glob = Glob::with_double_star(cleaned).map_err(|PatternError { reason, .. }| reason)?;
    Ok(Some(Rule { glob, exception }))
}

impl IgnoreRules {
    /// Whether `path` (relative to the context root, '/'-separated) is
    /// left out of the context. The root itself never is.
    pub fn is_excluded(&self, path: &str) -> bool {
        let path = clean(path);
        if path == "." {
            return false;
        }
        self.rules.iter().fold(false, |excluded, rule| {
            // Only a rule that would flip the answer needs matching.
            if rule.exception == excluded && rule.matches_or_parent_matches(&path) {
                !rule.exception
            } else {
                excluded
            }
        })
    }

    /// Whether any pattern is an exception (`!...`). Without one, a walker
    /// can skip an excluded directory whole.
    pub fn has_exceptions(&self) -> bool {
        self.rules.iter().any(|rule| rule.exception)
    }

    /// Whether an exception might re-include something below `dir`, so a
    /// walker must descend into it even though `dir` is excluded.
    /// Conservative: true when an exception's literal prefix (the text
    /// before its first wildcard) and `dir/` could start the same path.
    ///
    /// ```
    /// use kiln_dockerfile::ignore::parse;
    /// let rules = parse("docs\n!docs/keep.txt\nbuild\n")?;
    /// assert!(rules.may_reinclude_below("docs"));
    /// assert!(!rules.may_reinclude_below("build"));
    /// # Ok::<(), kiln_dockerfile::ignore::IgnoreError>(())
    /// ```
    pub fn may_reinclude_below(&self, dir: &str) -> bool {
        let dir = match clean(dir).as_str() {
            "." => String::new(),
            dir => format!("{dir}/"),
        };
        self.rules.iter().filter(|rule| rule.exception).any(|rule| {
            let prefix = rule.glob.literal_prefix();
            prefix.starts_with(&dir) || dir.starts_with(&prefix)
        })
    }
}

impl Rule {
    /// moby's `MatchesOrParentMatches`: `docs` excludes `docs/a/b.txt`.
    fn matches_or_parent_matches(&self, path: &str) -> bool {
        let mut parents = path.match_indices('/').map(|(end, _)| &path[..end]);
        self.glob.is_match(path) || parents.any(|parent| self.glob.is_match(parent))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Each path with whether `rules` exclude it.
    fn check(rules: &str, cases: &[(&str, bool)]) {
        let rules = parse(rules).unwrap();
        for &(path, excluded) in cases {
            assert_eq!(rules.is_excluded(path), excluded, "{path:?} with {rules:?}");
        }
    }

    #[test]
    fn exception_after_glob() {
        check(
            "*.md\n!README.md\n",
            &[
                ("CHANGES.md", true),
                ("README.md", false),
                ("docs/x.md", false),
                ("main.rs", false),
            ],
        );
    }

    #[test]
    fn double_star_at_any_depth() {
        check(
            "**/node_modules\n",
            &[
                ("node_modules", true),
                ("node_modules/x/index.js", true),
                ("web/app/node_modules/y.js", true),
                ("web/node_modules_not", false),
            ],
        );
    }

    #[test]
    fn leading_slash_and_dot_are_dropped() {
        for rules in ["/build", "./build", "build/", "/./build//"] {
            check(
                rules,
                &[("build", true), ("build/out.o", true), ("src/build", false)],
            );
        }
    }

    #[test]
    fn parent_directory_excludes_children() {
        check(
            "docs",
            &[("docs", true), ("docs/a/b.txt", true), ("docsx", false)],
        );
    }

    #[test]
    fn exception_inside_excluded_directory() {
        let text = "docs\n!docs/keep.txt\n";
        check(
            text,
            &[
                ("docs/keep.txt", false),
                ("docs/other.txt", true),
                ("docs", true),
            ],
        );
        let rules = parse(text).unwrap();
        assert!(rules.has_exceptions());
        assert!(rules.may_reinclude_below("docs"));
        assert!(!rules.may_reinclude_below("src"));
    }

    #[test]
    fn later_pattern_wins() {
        check("!a.txt\n*.txt\n", &[("a.txt", true)]);
        check("a/b\n!a\n", &[("a/b/c", false)]);
    }

    #[test]
    fn comments_and_blank_lines() {
        let rules = parse("\u{feff}# comment\n\n   \n  #hash\n").unwrap();
        assert!(!rules.has_exceptions());
        assert!(!rules.is_excluded("comment"));
        assert!(rules.is_excluded("#hash"), "only column 0 starts a comment");
    }

    #[test]
    fn root_and_dot_patterns_exclude_nothing() {
        check(".\n/\n", &[("a", false), (".", false)]);
        check("*\n", &[(".", false), ("a", true)]);
    }

    #[test]
    fn bad_pattern_names_its_line() {
        let error = parse("ok\n# fine\n  src/[a-\n").unwrap_err();
        assert_eq!((error.line, error.pattern.as_str()), (3, "src/[a-"));
        assert_eq!(
            error.to_string(),
            "line 3: bad pattern `src/[a-`: unclosed `[`"
        );
        assert_eq!(parse("a\n!\n").unwrap_err().line, 2);
    }

    #[test]
    fn may_reinclude_below_is_conservative() {
        let rules = parse("*\n!**/keep\n!src/*.rs\n").unwrap();
        assert!(rules.may_reinclude_below("anything"));
        let rules = parse("*\n!src/*.rs\n").unwrap();
        assert!(rules.may_reinclude_below("src"));
        assert!(!rules.may_reinclude_below("target"));
        assert!(!parse("*").unwrap().may_reinclude_below("src"));
    }
}
