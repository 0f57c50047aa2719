//! `kiln_dockerfile::ignore` and `kiln_dockerfile::pattern`: any
//! `.dockerignore` text parses or names a bad line, and matching any path
//! against its rules, or against any single pattern, ends quickly.
//!
//! Input: UTF-8, split at the first NUL into the `.dockerignore` text and
//! `\n`-separated paths to test. The first 8 lines of each are used, with
//! a few fixed paths and paths made from the patterns themselves.
#![no_main]

use kiln_dockerfile::ignore;
use kiln_dockerfile::pattern::{Glob, has_wildcards, matches, matches_double_star};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let (rules_text, paths_text) = text.split_once('\0').unwrap_or((text, ""));
    let mut paths: Vec<String> = [
        "",
        ".",
        "/",
        "a",
        "a/b/c",
        "Dockerfile",
        "../x",
        "a//b/./c/..",
    ]
    .iter()
    .map(|p| p.to_string())
    .collect();
    paths.extend(paths_text.split('\n').take(8).map(str::to_owned));
    // Each pattern with its wildcards replaced is a path that may match it.
    paths.extend(
        rules_text
            .lines()
            .take(8)
            .map(|l| l.trim_start_matches('!').replace(['*', '?', '[', ']'], "x")),
    );

    match ignore::parse(rules_text) {
        Ok(rules) => {
            rules.has_exceptions();
            for path in &paths {
                rules.is_excluded(path);
                rules.may_reinclude_below(path);
            }
        }
        Err(error) => {
            assert!(error.line >= 1);
            error.to_string();
        }
    }

    for pattern in rules_text.lines().take(8) {
        has_wildcards(pattern);
        let single = Glob::new(pattern);
        let double = Glob::with_double_star(pattern);
        if let Ok(glob) = &single {
            glob.literal_prefix();
        }
        if let Ok(glob) = &double {
            glob.literal_prefix();
        }
        for path in &paths {
            let a = matches(pattern, path);
            let b = matches_double_star(pattern, path);
            // The free functions are the compiled globs applied once.
            assert_eq!(
                a.as_ref().ok(),
                single.as_ref().ok().map(|g| g.is_match(path)).as_ref()
            );
            assert_eq!(
                b.as_ref().ok(),
                double.as_ref().ok().map(|g| g.is_match(path)).as_ref()
            );
        }
    }
});
