//! Which plugin a step runs, as the user wrote it: a built-in's name or a
//! component file. Both the pipeline file (`uses:`) and the command line
//! (`kiln step PLUGIN`) are read by [`PluginSource::parse`], so the two
//! agree on what is a name and what is a path; the runtime resolves names
//! against the built-ins it embeds.

use std::path::{Path, PathBuf};

/// The built-in that builds Dockerfiles: `kiln build` runs it, and `kiln
/// check` and the GitLab export know what its steps do.
pub const DOCKERFILE_BUILD: &str = "dockerfile-build";

/// The built-in that talks to registries: `kiln push`, `pull` and `login`
/// run it, and the GitLab export knows its steps push.
pub const REGISTRY: &str = "registry";

/// A plugin reference, not yet resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PluginSource {
    /// A built-in, by name.
    Builtin(String),
    /// A component file.
    File(PathBuf),
}

/// A plugin reference that does not name a plugin.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PluginSourceError {
    /// Neither a built-in nor a path.
    #[error(
        "no built-in plugin named `{name}` (built-ins: {known}); give a path ending in .wasm for an external plugin"
    )]
    UnknownBuiltin {
        /// What was asked for.
        name: String,
        /// The built-in names, comma-separated.
        known: String,
    },
    /// An `oci://` reference.
    #[error(
        "`{0}`: plugins from OCI registries (oci://…@sha256:…) are not yet supported; download the .wasm and give its path"
    )]
    OciNotSupported(String),
}

impl PluginSource {
    /// Read what a user wrote: `oci://` is reserved, anything with a `/`
    /// or ending in `.wasm` is a file, anything else a built-in name.
    pub fn parse(text: &str) -> Result<PluginSource, PluginSourceError> {
        if text.starts_with("oci://") {
            Err(PluginSourceError::OciNotSupported(text.to_owned()))
        } else if text.contains('/') || text.ends_with(".wasm") {
            Ok(PluginSource::File(PathBuf::from(text)))
        } else {
            Ok(PluginSource::Builtin(text.to_owned()))
        }
    }

    /// Check a built-in's name against the `known` ones (files pass).
    pub fn check_builtin(&self, known: &[&str]) -> Result<(), PluginSourceError> {
        match self {
            PluginSource::Builtin(name) if !known.contains(&name.as_str()) => {
                Err(PluginSourceError::UnknownBuiltin {
                    name: name.clone(),
                    known: known.join(", "),
                })
            }
            _ => Ok(()),
        }
    }

    /// Whether this names the built-in `name`.
    pub fn is_builtin(&self, name: &str) -> bool {
        matches!(self, PluginSource::Builtin(builtin) if builtin == name)
    }

    /// A short name for messages: the built-in name or the file stem.
    pub fn label(&self) -> String {
        match self {
            PluginSource::Builtin(name) => name.clone(),
            PluginSource::File(path) => file_label(path),
        }
    }
}

/// A component file's short name for messages: its stem.
pub fn file_label(path: &Path) -> String {
    path.file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| path.display().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_paths_and_reserved_schemes() {
        assert_eq!(
            PluginSource::parse("hello"),
            Ok(PluginSource::Builtin("hello".into()))
        );
        assert_eq!(
            PluginSource::parse("p.wasm"),
            Ok(PluginSource::File("p.wasm".into()))
        );
        assert!(PluginSource::parse("oci://r/p@sha256:00").is_err());
        let unknown = PluginSource::parse("nope")
            .unwrap()
            .check_builtin(&["hello"]);
        assert!(
            unknown
                .unwrap_err()
                .to_string()
                .contains("built-ins: hello")
        );
        assert_eq!(PluginSource::File("/x/p.wasm".into()).label(), "p");
    }
}
