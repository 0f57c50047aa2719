//! Choosing files by GitLab-style globs: `*` stays within a directory, `**`
//! crosses directories, and a pattern naming a directory takes everything
//! under it.

use std::path::{Path, PathBuf};

use globset::{Glob, GlobBuilder, GlobSet, GlobSetBuilder};

use super::{StoreError, io_error};

/// Directories never handed on: kiln's own store and VCS metadata.
const SKIPPED: &[&str] = &[".kiln", ".git"];

/// Whether a path stays inside the project: relative, with no `..`. The
/// pipeline checks its artifact and cache `paths:` (and `${hash:FILE}`)
/// with this when it loads, so a bad path is reported at its line before
/// anything runs.
pub fn check_relative(path: &str) -> Result<(), String> {
    let p = Path::new(path);
    if p.is_absolute()
        || p.components()
            .any(|c| matches!(c, std::path::Component::ParentDir))
    {
        Err("must be relative to the project and stay inside it".into())
    } else {
        Ok(())
    }
}

fn compile(patterns: &[String]) -> Result<GlobSet, StoreError> {
    let mut set = GlobSetBuilder::new();
    for pattern in patterns {
        check_relative(pattern)
            .map_err(|m| StoreError::Pattern(format!("artifact path `{pattern}`: {m}")))?;
        let trimmed = pattern.trim_end_matches('/');
        let trimmed = trimmed.strip_prefix("./").unwrap_or(trimmed);
        let glob: Glob = GlobBuilder::new(trimmed)
            .literal_separator(true)
            .build()
            .map_err(|e| StoreError::Pattern(format!("artifact path `{pattern}`: {e}")))?;
        set.add(glob);
    }
    set.build().map_err(|e| StoreError::Pattern(e.to_string()))
}

/// Regular files under `base` matched by `paths` and not by `exclude`, and
/// matched directories that are empty (an empty directory can matter to
/// the next step, as a Dockerfile's `COPY dir/`), as sorted relative
/// paths. Symbolic links are never followed.
pub fn select_files(
    base: &Path,
    paths: &[String],
    exclude: &[String],
) -> Result<Vec<PathBuf>, StoreError> {
    let include = compile(paths)?;
    let exclude = compile(exclude)?;
    let mut found = Vec::new();
    walk(base, Path::new(""), false, &include, &exclude, &mut found)?;
    found.sort();
    Ok(found)
}

fn walk(
    base: &Path,
    relative: &Path,
    inside_match: bool,
    include: &GlobSet,
    exclude: &GlobSet,
    found: &mut Vec<PathBuf>,
) -> Result<(), StoreError> {
    let dir = base.join(relative);
    let entries = std::fs::read_dir(&dir).map_err(io_error(&dir))?;
    for entry in entries {
        let entry = entry.map_err(io_error(&dir))?;
        let name = entry.file_name();
        let path = relative.join(&name);
        if relative.as_os_str().is_empty() && SKIPPED.iter().any(|s| name == *s) {
            continue;
        }
        if exclude.is_match(&path) {
            continue;
        }
        let kind = entry.file_type().map_err(io_error(entry.path()))?;
        let matched = inside_match || include.is_match(&path);
        if kind.is_dir() {
            let before = found.len();
            walk(base, &path, matched, include, exclude, found)?;
            let empty = std::fs::read_dir(entry.path())
                .map_err(io_error(entry.path()))?
                .next()
                .is_none();
            if matched && empty && found.len() == before {
                found.push(path);
            }
        } else if kind.is_file() && matched {
            found.push(path);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tree(files: &[&str]) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        for file in files {
            let path = dir.path().join(file);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, file).unwrap();
        }
        dir
    }

    fn names(found: Vec<PathBuf>) -> Vec<String> {
        found.into_iter().map(|p| p.display().to_string()).collect()
    }

    #[test]
    fn gitlab_glob_semantics() {
        let dir = tree(&[
            "target/app.jar",
            "target/app-sources.jar",
            "target/classes/A.class",
            "target/lib/dep.jar",
            "docs/a/b/c.md",
            ".kiln/x.jar",
        ]);
        let star = select_files(dir.path(), &["target/*.jar".into()], &[]).unwrap();
        assert_eq!(names(star), ["target/app-sources.jar", "target/app.jar"]);
        let deep = select_files(
            dir.path(),
            &["**/*.jar".into()],
            &["**/*-sources.jar".into()],
        )
        .unwrap();
        assert_eq!(names(deep), ["target/app.jar", "target/lib/dep.jar"]);
        let whole_dir = select_files(dir.path(), &["docs/".into()], &[]).unwrap();
        assert_eq!(names(whole_dir), ["docs/a/b/c.md"]);
        assert!(select_files(dir.path(), &["../x".into()], &[]).is_err());
    }
}
