//! Pipeline variables: GitLab's predefined `CI_*` variables, the pipeline's
//! own, and `${VAR}` expansion.
//!
//! Precedence follows GitLab: a value set in the environment (as inside a
//! GitLab job) wins over the file's, and predefined variables missing from
//! the environment are derived where possible (commit SHA and branch from
//! git in the project directory).

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::Command;

use sha2::{Digest, Sha256};

use super::{Pipeline, PipelineError, Position};
use kiln_grant::{SecretMask, ValueSource};

/// GitLab's predefined variables that kiln knows about.
pub const PREDEFINED: &[&str] = &[
    "CI_PROJECT_DIR",
    "CI_COMMIT_SHA",
    "CI_COMMIT_SHORT_SHA",
    "CI_COMMIT_REF_NAME",
    "CI_PIPELINE_ID",
    "CI_JOB_TOKEN",
    "CI_REGISTRY",
    "CI_REGISTRY_IMAGE",
    "CI_REGISTRY_USER",
    "CI_REGISTRY_PASSWORD",
];

/// Predefined variables that are always secret.
pub const ALWAYS_SECRET: &[&str] = &["CI_REGISTRY_PASSWORD", "CI_JOB_TOKEN"];

/// Length of `CI_COMMIT_SHORT_SHA`, as GitLab computes it.
const SHORT_SHA: usize = 8;

/// The resolved variables of one pipeline run.
#[derive(Debug, Clone, Default)]
pub struct Variables {
    values: BTreeMap<String, String>,
    secret: BTreeSet<String>,
}

impl Variables {
    /// Resolve the variables of `pipeline`, taking values from `env` first.
    /// A value from the file may name other variables (`IMAGE:
    /// ${CI_REGISTRY}/webapp`), in any order, as GitLab expands them; one
    /// that cannot be expanded (unset, or a circle) is an error naming its
    /// line, before anything runs. Values from the environment are taken
    /// as they are (GitLab has expanded them).
    pub fn resolve(pipeline: &Pipeline, env: &dyn ValueSource) -> Result<Variables, PipelineError> {
        let mut vars = Variables::default();
        for name in PREDEFINED {
            if let Some(value) = env.get(name) {
                vars.values.insert((*name).to_owned(), value);
            }
        }
        let derived = derive_from_git(&pipeline.project_dir);
        vars.values
            .entry("CI_PROJECT_DIR".into())
            .or_insert_with(|| pipeline.project_dir.display().to_string());
        for (name, value) in derived {
            vars.values.entry(name).or_insert(value);
        }
        if let Some(sha) = vars.values.get("CI_COMMIT_SHA").cloned() {
            vars.values
                .entry("CI_COMMIT_SHORT_SHA".into())
                .or_insert_with(|| sha.chars().take(SHORT_SHA).collect());
        }
        let mut from_file = Vec::new();
        for (name, decl, position) in &pipeline.variables {
            match env.get(name) {
                Some(value) => {
                    vars.values.insert(name.clone(), value);
                }
                None => {
                    if let Some(value) = &decl.value {
                        from_file.push((name.as_str(), value.as_str(), *position));
                    }
                }
            }
            if decl.secret {
                vars.secret.insert(name.clone());
            }
        }
        for name in ALWAYS_SECRET {
            vars.secret.insert((*name).to_owned());
        }
        vars.expand_declared(pipeline, from_file)?;
        Ok(vars)
    }

    /// Expand the file's values, each once every variable it names is
    /// known.
    fn expand_declared(
        &mut self,
        pipeline: &Pipeline,
        mut pending: Vec<(&str, &str, Position)>,
    ) -> Result<(), PipelineError> {
        /// Marks a reference to a variable still to be expanded.
        const WAITING: &str = "\0waiting";
        let error = |name: &str, position: Position, message: String| PipelineError {
            file: pipeline.file.clone(),
            position,
            message: format!("variable `{name}`: {message}"),
        };
        while !pending.is_empty() {
            let names: Vec<&str> = pending.iter().map(|(name, _, _)| *name).collect();
            let mut waiting = Vec::new();
            for (name, text, position) in pending {
                let expanded = self.expand_with(text, |reference| {
                    names.contains(&reference).then(|| Err(WAITING.to_owned()))
                });
                match expanded {
                    Ok(value) => {
                        self.values.insert(name.to_owned(), value);
                    }
                    Err(e) if e == WAITING => waiting.push((name, text, position)),
                    Err(e) => return Err(error(name, position, e)),
                }
            }
            if waiting.len() == names.len() {
                let (name, _, position) = waiting[0];
                let circle: Vec<&str> = waiting.iter().map(|(name, _, _)| *name).collect();
                return Err(error(
                    name,
                    position,
                    format!(
                        "the values of {} name each other in a circle; give one of them a value that names none of them",
                        circle.join(", ")
                    ),
                ));
            }
            pending = waiting;
        }
        Ok(())
    }

    /// The value of `name`, if set.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.values.get(name).map(String::as_str)
    }

    /// Every set variable, for a `run:` step's environment.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.values.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }

    /// A mask hiding the value of every secret variable.
    pub fn mask(&self) -> SecretMask {
        let mut mask = SecretMask::default();
        for name in &self.secret {
            if let Some(value) = self.values.get(name) {
                mask.add(value);
            }
        }
        mask
    }

    /// Expand `$NAME`, `${NAME}` and `$$` in `text`. An undefined variable
    /// is an error naming it: a silently empty image name or registry host
    /// is worse than a failed start.
    pub fn expand(&self, text: &str) -> Result<String, String> {
        self.expand_with(text, |_| None)
    }

    /// [`Variables::expand`], plus `${hash:FILE}`: the first 16 hex digits
    /// of the SHA-256 of a project file, for cache keys.
    ///
    /// `FILE` is untrusted (the pipeline file comes with the repository):
    /// it must be a regular file inside the project, reached without
    /// leaving it through `..` or a symlink, and at most
    /// [`MAX_HASHED_FILE`] bytes.
    pub fn expand_cache_key(&self, text: &str, project_dir: &Path) -> Result<String, String> {
        self.expand_with(text, |name| {
            let file = name.strip_prefix("hash:")?;
            Some(
                hash_project_file(project_dir, file)
                    .map_err(|e| format!("`${{hash:{file}}}`: {e}")),
            )
        })
    }

    fn expand_with(
        &self,
        text: &str,
        special: impl Fn(&str) -> Option<Result<String, String>>,
    ) -> Result<String, String> {
        let mut out = String::with_capacity(text.len());
        let mut rest = text;
        while let Some(dollar) = rest.find('$') {
            out.push_str(&rest[..dollar]);
            rest = &rest[dollar + 1..];
            if let Some(after) = rest.strip_prefix('$') {
                out.push('$');
                rest = after;
                continue;
            }
            let (name, after) = if let Some(braced) = rest.strip_prefix('{') {
                let end = braced
                    .find('}')
                    .ok_or_else(|| format!("`${{` without a closing `}}` in `{text}`"))?;
                (&braced[..end], &braced[end + 1..])
            } else {
                let end = rest
                    .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                    .unwrap_or(rest.len());
                if end == 0 {
                    out.push('$');
                    continue;
                }
                (&rest[..end], &rest[end..])
            };
            match special(name) {
                Some(value) => out.push_str(&value?),
                None => match self.values.get(name) {
                    Some(value) => out.push_str(value),
                    None => {
                        return Err(format!(
                            "variable `{name}` is not set; declare it under `variables:` (the environment may then give its value; write `$$` for a literal `$`)"
                        ));
                    }
                },
            }
            rest = after;
        }
        out.push_str(rest);
        Ok(out)
    }
}

impl ValueSource for Variables {
    fn get(&self, name: &str) -> Option<String> {
        self.values
            .get(name)
            .cloned()
            .or_else(|| std::env::var(name).ok())
    }
}

/// `CI_COMMIT_SHA` and `CI_COMMIT_REF_NAME` from git, when the project is a
/// checkout and git is installed.
fn derive_from_git(dir: &Path) -> Vec<(String, String)> {
    let git = |args: &[&str]| -> Option<String> {
        let output = Command::new("git")
            .arg("-C")
            .arg(dir)
            .args(args)
            .output()
            .ok()?;
        let text = String::from_utf8(output.stdout).ok()?.trim().to_owned();
        (output.status.success() && !text.is_empty()).then_some(text)
    };
    let mut derived = Vec::new();
    if let Some(sha) = git(&["rev-parse", "HEAD"]) {
        derived.push(("CI_COMMIT_SHA".into(), sha));
    }
    if let Some(branch) = git(&["symbolic-ref", "--short", "-q", "HEAD"]) {
        derived.push(("CI_COMMIT_REF_NAME".into(), branch));
    }
    derived
}

/// Largest file `${hash:FILE}` reads: lock files and build descriptors
/// are far smaller.
pub const MAX_HASHED_FILE: u64 = 64 << 20;

/// The first 16 hex digits of the SHA-256 of `file`, a regular file inside
/// `project_dir` (see [`crate::project::open_file`]).
fn hash_project_file(project_dir: &Path, file: &str) -> Result<String, String> {
    let mut reader = crate::project::open_file(project_dir, file, MAX_HASHED_FILE)?;
    let mut hasher = Sha256::new();
    std::io::copy(&mut reader, &mut hasher).map_err(|e| format!("cannot read {file}: {e}"))?;
    if reader.limit() == 0 {
        return Err(format!(
            "{file} grew past {MAX_HASHED_FILE} bytes while it was read"
        ));
    }
    Ok(hex::encode(&hasher.finalize()[..8]))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(pairs: &[(&str, &str)]) -> Variables {
        Variables {
            values: pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            secret: BTreeSet::new(),
        }
    }

    fn pipeline(variables: &str) -> Pipeline {
        let text = format!(
            "stages: [build]\nvariables:\n{variables}steps:\n  a:\n    stage: build\n    run: [\"true\"]\n"
        );
        Pipeline::parse("kiln.yml", &text, std::env::temp_dir()).unwrap()
    }

    struct Env(&'static [(&'static str, &'static str)]);

    impl ValueSource for Env {
        fn get(&self, name: &str) -> Option<String> {
            self.0
                .iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| (*v).to_owned())
        }
    }

    #[test]
    fn variables_name_other_variables_in_any_order() {
        let declared = pipeline(
            "  IMAGE: ${REGISTRY}/webapp:$TAG\n  REGISTRY: ${HOST}:5000\n  TAG: v1\n  PRICE: $$5\n",
        );
        // HOST is in the environment but not declared: only declared and
        // predefined names are known.
        let error = Variables::resolve(&declared, &Env(&[("HOST", "ignored")]))
            .unwrap_err()
            .to_string();
        assert!(error.starts_with("kiln.yml:4:"), "{error}");
        assert!(
            error.contains("variable `REGISTRY`: variable `HOST` is not set"),
            "{error}"
        );

        let declared = pipeline(
            "  IMAGE: ${REGISTRY}/webapp:$TAG\n  REGISTRY: reg:5000\n  TAG: v1\n  PRICE: $$5\n",
        );
        let vars = Variables::resolve(&declared, &Env(&[("TAG", "env-tag")])).unwrap();
        assert_eq!(vars.get("IMAGE"), Some("reg:5000/webapp:env-tag"));
        assert_eq!(vars.get("PRICE"), Some("$5"));

        let circle = pipeline("  A: x${B}\n  B: ${A}y\n  C: ok\n");
        let error = Variables::resolve(&circle, &Env(&[]))
            .unwrap_err()
            .to_string();
        assert!(error.starts_with("kiln.yml:3:"), "{error}");
        assert!(
            error.contains("A, B name each other in a circle"),
            "{error}"
        );
    }

    #[test]
    fn expands_gitlab_style_references() {
        let v = vars(&[
            ("CI_REGISTRY_IMAGE", "reg:5000/group/app"),
            ("CI_COMMIT_SHORT_SHA", "0123abcd"),
        ]);
        assert_eq!(
            v.expand("${CI_REGISTRY_IMAGE}/sample:$CI_COMMIT_SHORT_SHA")
                .unwrap(),
            "reg:5000/group/app/sample:0123abcd"
        );
        assert_eq!(
            v.expand("cost: $$5 and $ alone").unwrap(),
            "cost: $5 and $ alone"
        );
        let err = v.expand("${NOPE}").unwrap_err();
        assert!(err.contains("variable `NOPE` is not set"), "{err}");
        assert!(v.expand("${UNCLOSED").is_err());
    }

    #[test]
    fn cache_keys_hash_files() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("pom.xml"), "<project/>").unwrap();
        let v = vars(&[]);
        let key = v
            .expand_cache_key("maven-${hash:pom.xml}", dir.path())
            .unwrap();
        assert_eq!(key.len(), "maven-".len() + 16);
        std::fs::write(dir.path().join("pom.xml"), "<project></project>").unwrap();
        assert_ne!(
            v.expand_cache_key("maven-${hash:pom.xml}", dir.path())
                .unwrap(),
            key
        );
        assert!(
            v.expand_cache_key("${hash:missing.xml}", dir.path())
                .is_err()
        );
        // Nothing outside the project, nothing but regular files.
        std::os::unix::fs::symlink("/etc/passwd", dir.path().join("link")).unwrap();
        std::fs::create_dir(dir.path().join("sub")).unwrap();
        for outside in [
            "${hash:/etc/passwd}",
            "${hash:../x}",
            "${hash:link}",
            "${hash:sub}",
            "${hash:/dev/zero}",
        ] {
            let err = v.expand_cache_key(outside, dir.path()).unwrap_err();
            assert!(err.starts_with("`${hash:"), "{err}");
        }
    }
}
