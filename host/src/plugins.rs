//! Where plugins come from: built-ins embedded in the binary, by name, and
//! external components, by `.wasm` path.

use std::path::{Path, PathBuf};

include!(concat!(env!("OUT_DIR"), "/builtins.rs"));

/// An embedded plugin.
#[derive(Debug, Clone, Copy)]
pub struct Builtin {
    /// The name users type (`kiln step hello`).
    pub name: &'static str,
    /// The component bytes.
    pub wasm: &'static [u8],
}

/// Every built-in plugin, in name order.
pub fn builtins() -> impl Iterator<Item = Builtin> {
    BUILTINS.iter().map(|(name, wasm)| Builtin { name, wasm })
}

/// The built-in called `name`.
pub fn builtin(name: &str) -> Option<Builtin> {
    builtins().find(|b| b.name == name)
}

/// A plugin reference as the user wrote it, resolved.
#[derive(Debug, Clone)]
pub enum PluginRef {
    /// A built-in.
    Builtin(Builtin),
    /// A component file.
    File(PathBuf),
}

/// A plugin reference that does not resolve.
#[derive(Debug, thiserror::Error)]
pub enum PluginRefError {
    /// Neither a built-in nor a path.
    #[error(
        "no built-in plugin named `{name}` (built-ins: {known}); give a path ending in .wasm for an external plugin"
    )]
    UnknownBuiltin {
        /// What was asked for.
        name: String,
        /// The built-in names.
        known: String,
    },
    /// An `oci://` reference.
    #[error(
        "`{0}`: plugins from OCI registries (oci://…@sha256:…) are not yet supported; download the .wasm and give its path"
    )]
    OciNotSupported(String),
    /// A path that cannot be read.
    #[error("cannot read plugin {path}: {reason}")]
    Unreadable {
        /// The path.
        path: PathBuf,
        /// Why.
        reason: String,
    },
}

impl PluginRef {
    /// Resolve what a user wrote: `oci://` is reserved, anything with a `/`
    /// or ending in `.wasm` is a file, anything else a built-in name.
    pub fn parse(text: &str) -> Result<PluginRef, PluginRefError> {
        if text.starts_with("oci://") {
            return Err(PluginRefError::OciNotSupported(text.to_owned()));
        }
        if text.contains('/') || text.ends_with(".wasm") {
            return Ok(PluginRef::File(PathBuf::from(text)));
        }
        builtin(text)
            .map(PluginRef::Builtin)
            .ok_or_else(|| PluginRefError::UnknownBuiltin {
                name: text.to_owned(),
                known: builtins().map(|b| b.name).collect::<Vec<_>>().join(", "),
            })
    }

    /// The component bytes.
    pub fn wasm(&self) -> Result<std::borrow::Cow<'static, [u8]>, PluginRefError> {
        match self {
            PluginRef::Builtin(b) => Ok(b.wasm.into()),
            PluginRef::File(path) => read(path).map(Into::into),
        }
    }

    /// A short name for messages: the built-in name or the file stem.
    pub fn label(&self) -> String {
        match self {
            PluginRef::Builtin(b) => b.name.to_owned(),
            PluginRef::File(path) => path
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_else(|| path.display().to_string()),
        }
    }
}

fn read(path: &Path) -> Result<Vec<u8>, PluginRefError> {
    std::fs::read(path).map_err(|e| PluginRefError::Unreadable {
        path: path.to_owned(),
        reason: e.to_string(),
    })
}
