//! Path patterns as Docker matches them. COPY and ADD sources use Go's
//! `path/filepath.Match` ([`matches`]); `.dockerignore` adds
//! moby/patternmatcher's `**` ([`matches_double_star`]). Both share one
//! parser, so a pattern is malformed in exactly the cases Go rejects.
//!
//! Paths are '/'-separated: `*` and `?` never match '/'. As in Go, a
//! character class may match '/' (`a[^x]b` matches `a/b`).

use std::fmt;
use std::iter::Peekable;
use std::str::Chars;

/// A malformed pattern: an unclosed `[`, a bad range, a trailing `\`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PatternError {
    /// The pattern as written.
    pub pattern: String,
    /// What is wrong with it.
    pub reason: String,
}

impl fmt::Display for PatternError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "bad pattern `{}`: {}", self.pattern, self.reason)
    }
}

impl std::error::Error for PatternError {}

/// Whether `name` matches `pattern` as a whole, exactly as Go's
/// `filepath.Match` decides on a '/'-separated system.
///
/// ```
/// use kiln_dockerfile::pattern::matches;
/// assert_eq!(matches("a*/b", "abc/b"), Ok(true));
/// assert_eq!(matches("a*/b", "a/c/b"), Ok(false));
/// assert!(matches("[", "a").is_err());
/// ```
pub fn matches(pattern: &str, name: &str) -> Result<bool, PatternError> {
    Ok(Glob::new(pattern)?.is_match(name))
}

/// Like [`matches`], but `**` matches any number of path segments, as in
/// `.dockerignore` (moby/patternmatcher).
///
/// ```
/// use kiln_dockerfile::pattern::matches_double_star;
/// assert_eq!(matches_double_star("**/*.go", "a.go"), Ok(true));
/// assert_eq!(matches_double_star("**/*.go", "x/y/a.go"), Ok(true));
/// assert_eq!(matches_double_star("a/**/b", "a/b"), Ok(true));
/// ```
pub fn matches_double_star(pattern: &str, name: &str) -> Result<bool, PatternError> {
    Ok(Glob::with_double_star(pattern)?.is_match(name))
}

/// Whether a COPY/ADD source is a glob rather than a literal path. As in
/// BuildKit, `\` escapes the character after it, so `a\*b` is literal.
///
/// ```
/// use kiln_dockerfile::pattern::has_wildcards;
/// assert!(has_wildcards("src/*.rs"));
/// assert!(!has_wildcards("src/main.rs"));
/// assert!(!has_wildcards(r"a\*b"));
/// ```
pub fn has_wildcards(pattern: &str) -> bool {
    let mut chars = pattern.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => _ = chars.next(),
            '*' | '?' | '[' => return true,
            _ => {}
        }
    }
    false
}

/// A pattern parsed once and matched against many paths.
///
/// ```
/// use kiln_dockerfile::pattern::Glob;
/// let glob = Glob::with_double_star("docs/**/*.md")?;
/// assert!(glob.is_match("docs/a/b/index.md"));
/// assert_eq!(glob.literal_prefix(), "docs/");
/// # Ok::<(), kiln_dockerfile::pattern::PatternError>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Glob {
    tokens: Vec<Token>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Token {
    Literal(char),
    /// `?`: one character other than '/'.
    AnyChar,
    /// `[...]`: one character in (or, negated, not in) the ranges.
    Class {
        negated: bool,
        ranges: Vec<(char, char)>,
    },
    /// `*`: any run of characters other than '/'.
    Star,
    /// `**` with more pattern after it: nothing, or anything ending in '/'.
    AnySegments,
    /// `**` at the end: anything.
    AnyRest,
}

impl Glob {
    /// Parse `pattern` with Go's `filepath.Match` syntax (`**` is two `*`).
    pub fn new(pattern: &str) -> Result<Self, PatternError> {
        Self::parse(pattern, false)
    }

    /// Parse `pattern` with `.dockerignore` syntax: Go's, plus `**`.
    pub fn with_double_star(pattern: &str) -> Result<Self, PatternError> {
        Self::parse(pattern, true)
    }

    fn parse(pattern: &str, double_star: bool) -> Result<Self, PatternError> {
        let error = |reason: &str| PatternError {
            pattern: pattern.to_string(),
            reason: reason.to_string(),
        };
        let mut chars = pattern.chars().peekable();
        let mut tokens = Vec::new();
        while let Some(c) = chars.next() {
            tokens.push(match c {
                '*' if double_star && chars.next_if_eq(&'*').is_some() => {
                    chars.next_if_eq(&'/');
                    match chars.peek() {
                        Some(_) => Token::AnySegments,
                        None => Token::AnyRest,
                    }
                }
                '*' => Token::Star,
                '?' => Token::AnyChar,
                '[' => parse_class(&mut chars).map_err(error)?,
                '\\' => Token::Literal(chars.next().ok_or_else(|| error("trailing `\\`"))?),
                c => Token::Literal(c),
            });
        }
        // moby matches a leading `**` followed by plain text as a string
        // suffix: `**.log` matches `a/b.log`, not only `.log`.
        let rest = pattern.strip_prefix("**").unwrap_or("/");
        if double_star && !rest.starts_with('/') && !rest.contains(['*', '?', '[', ']', '\\']) {
            tokens[0] = Token::AnyRest;
        }
        Ok(Self { tokens })
    }

    /// Whether `name` matches the whole pattern.
    pub fn is_match(&self, name: &str) -> bool {
        let name: Vec<char> = name.chars().collect();
        let n = name.len();
        // `next[j]`: the tokens after the current one match `name[j..]`.
        let mut next = vec![false; n + 1];
        next[n] = true;
        for token in self.tokens.iter().rev() {
            let mut row = vec![false; n + 1];
            let mut segments_end_later = false;
            for j in (0..=n).rev() {
                let here = name.get(j).copied();
                segments_end_later |= here == Some('/') && next[j + 1];
                row[j] = match token {
                    Token::Star => next[j] || (here.is_some_and(|c| c != '/') && row[j + 1]),
                    Token::AnyRest => next[j] || (here.is_some() && row[j + 1]),
                    Token::AnySegments => next[j] || segments_end_later,
                    single => here.is_some_and(|c| single.matches_char(c)) && next[j + 1],
                };
            }
            next = row;
        }
        next[0]
    }

    /// The text every match starts with: the pattern up to its first
    /// wildcard, escapes resolved. A walker uses it to skip directories
    /// no match can be in.
    pub fn literal_prefix(&self) -> String {
        self.tokens
            .iter()
            .map_while(|token| match token {
                Token::Literal(c) => Some(*c),
                _ => None,
            })
            .collect()
    }
}

impl Token {
    fn matches_char(&self, c: char) -> bool {
        match self {
            Token::Literal(literal) => *literal == c,
            Token::AnyChar => c != '/',
            Token::Class { negated, ranges } => {
                ranges.iter().any(|(lo, hi)| (*lo..=*hi).contains(&c)) != *negated
            }
            Token::Star | Token::AnySegments | Token::AnyRest => false,
        }
    }
}

/// The rest of a `[...]` class after its `[`, with Go's rules: `^`
/// negates, `-` and `]` must be escaped except as range dash and closer.
fn parse_class(chars: &mut Peekable<Chars<'_>>) -> Result<Token, &'static str> {
    let negated = chars.next_if_eq(&'^').is_some();
    let mut ranges = Vec::new();
    while ranges.is_empty() || chars.next_if_eq(&']').is_none() {
        let lo = class_char(chars)?;
        let hi = match chars.next_if_eq(&'-') {
            Some(_) => class_char(chars)?,
            None => lo,
        };
        ranges.push((lo, hi));
    }
    Ok(Token::Class { negated, ranges })
}

fn class_char(chars: &mut Peekable<Chars<'_>>) -> Result<char, &'static str> {
    match chars.next() {
        None => Err("unclosed `[`"),
        Some('-' | ']') => Err("`-` or `]` in `[...]` must be escaped with `\\` or end a range"),
        Some('\\') => chars.next().ok_or("unclosed `[`"),
        Some(c) => Ok(c),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Go's `path/filepath` match_test.go; `None` means ErrBadPattern.
    const GO_MATCH: &[(&str, &str, Option<bool>)] = &[
        ("abc", "abc", Some(true)),
        ("*", "abc", Some(true)),
        ("*c", "abc", Some(true)),
        ("a*", "a", Some(true)),
        ("a*", "abc", Some(true)),
        ("a*", "ab/c", Some(false)),
        ("a*/b", "abc/b", Some(true)),
        ("a*/b", "a/c/b", Some(false)),
        ("a*b*c*d*e*/f", "axbxcxdxe/f", Some(true)),
        ("a*b*c*d*e*/f", "axbxcxdxexxx/f", Some(true)),
        ("a*b*c*d*e*/f", "axbxcxdxe/xxx/f", Some(false)),
        ("a*b*c*d*e*/f", "axbxcxdxexxx/fff", Some(false)),
        ("a*b?c*x", "abxbbxdbxebxczzx", Some(true)),
        ("a*b?c*x", "abxbbxdbxebxczzy", Some(false)),
        ("ab[c]", "abc", Some(true)),
        ("ab[b-d]", "abc", Some(true)),
        ("ab[e-g]", "abc", Some(false)),
        ("ab[^c]", "abc", Some(false)),
        ("ab[^b-d]", "abc", Some(false)),
        ("ab[^e-g]", "abc", Some(true)),
        ("a\\*b", "a*b", Some(true)),
        ("a\\*b", "ab", Some(false)),
        ("a?b", "a☺b", Some(true)),
        ("a[^a]b", "a☺b", Some(true)),
        ("a???b", "a☺b", Some(false)),
        ("a[^a][^a][^a]b", "a☺b", Some(false)),
        ("[a-ζ]*", "α", Some(true)),
        ("*[a-ζ]", "A", Some(false)),
        ("a?b", "a/b", Some(false)),
        ("a*b", "a/b", Some(false)),
        ("[\\]a]", "]", Some(true)),
        ("[\\-]", "-", Some(true)),
        ("[x\\-]", "x", Some(true)),
        ("[x\\-]", "-", Some(true)),
        ("[x\\-]", "z", Some(false)),
        ("[\\-x]", "x", Some(true)),
        ("[\\-x]", "-", Some(true)),
        ("[\\-x]", "a", Some(false)),
        ("[]a]", "]", None),
        ("[-]", "-", None),
        ("[x-]", "x", None),
        ("[x-]", "-", None),
        ("[x-]", "z", None),
        ("[-x]", "x", None),
        ("[-x]", "-", None),
        ("[-x]", "a", None),
        ("\\", "a", None),
        ("[a-b-c]", "a", None),
        ("[", "a", None),
        ("[^", "a", None),
        ("[^bc", "a", None),
        ("a[", "a", None),
        ("a[", "ab", None),
        ("a[", "x", None),
        ("a/b[", "x", None),
        ("a\\", "a", None),
        ("*x", "xxx", Some(true)),
        // A class, unlike `?` and `*`, may match '/' in Go.
        ("a[^x]b", "a/b", Some(true)),
        // Without double-star syntax, `**` is two `*`.
        ("**/*.go", "a.go", Some(false)),
        ("**/*.go", "x/a.go", Some(true)),
    ];

    const DOUBLE_STAR: &[(&str, &str, bool)] = &[
        ("**/*.go", "a.go", true),
        ("**/*.go", "x/y/a.go", true),
        ("**/*.go", "x/a.txt", false),
        ("**/foo", "foo", true),
        ("**/foo", "x/y/foo", true),
        ("**/foo", "xfoo", false),
        ("**", "any/depth/at/all", true),
        ("a/**", "a/b", true),
        ("a/**", "a/b/c", true),
        ("a/**", "a", false),
        ("a/**", "ab/c", false),
        ("a/**/b", "a/b", true),
        ("a/**/b", "a/x/y/b", true),
        ("a/**/b", "a/xb", false),
        ("a/**/b", "a/x/b/c", false),
        ("a/**/*.md", "a/x/y.md", true),
        ("**.log", "x/y.log", true),
        ("*", "a/b", false),
        ("a/*", "a/b/c", false),
    ];

    #[test]
    fn go_filepath_match_vectors() {
        for &(pattern, name, want) in GO_MATCH {
            let got = matches(pattern, name).ok();
            assert_eq!(got, want, "Match({pattern:?}, {name:?})");
        }
    }

    #[test]
    fn double_star_spans_segments() {
        for &(pattern, name, want) in DOUBLE_STAR {
            assert_eq!(
                matches_double_star(pattern, name),
                Ok(want),
                "{pattern:?} vs {name:?}"
            );
        }
    }

    #[test]
    fn errors_name_the_pattern() {
        let error = matches("a[b", "x").unwrap_err();
        assert_eq!(error.pattern, "a[b");
        assert_eq!(error.to_string(), "bad pattern `a[b`: unclosed `[`");
        assert!(matches_double_star("**/[", "x").is_err());
    }

    #[test]
    fn wildcards_follow_buildkit() {
        for (pattern, want) in [
            ("a?", true),
            ("[ab]", true),
            ("*", true),
            ("plain/path.txt", false),
        ] {
            assert_eq!(has_wildcards(pattern), want, "{pattern:?}");
        }
        assert!(!has_wildcards(r"a\[b"));
        assert!(has_wildcards(r"a\b*"));
    }

    #[test]
    fn literal_prefix_stops_at_first_wildcard() {
        let prefix = |p| Glob::with_double_star(p).unwrap().literal_prefix();
        assert_eq!(prefix("docs/keep.txt"), "docs/keep.txt");
        assert_eq!(prefix("docs/*.md"), "docs/");
        assert_eq!(prefix(r"a\*b/*"), "a*b/");
        assert_eq!(prefix("**/x"), "");
    }
}
