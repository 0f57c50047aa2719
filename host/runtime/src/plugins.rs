//! Where plugins come from: built-ins embedded in the binary, by name, and
//! external components, by `.wasm` path.

use std::path::{Path, PathBuf};

use kiln_grant::{PluginSource, PluginSourceError};

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

/// The names of the built-ins, in order.
pub fn names() -> Vec<&'static str> {
    builtins().map(|b| b.name).collect()
}

/// Where this build compiled its guest components; tests load the test
/// plugins (built with the built-ins, never embedded) from here.
#[doc(hidden)]
pub const GUEST_BUILD_DIR: &str = env!("KILN_GUEST_DIR");

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
    /// Not a plugin reference kiln can load.
    #[error(transparent)]
    Source(#[from] PluginSourceError),
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
    /// Resolve a parsed reference: a built-in's name against the embedded
    /// ones; a file is read when its bytes are asked for.
    pub fn resolve(source: &PluginSource) -> Result<PluginRef, PluginRefError> {
        source.check_builtin(&names())?;
        Ok(match source {
            PluginSource::Builtin(name) => {
                PluginRef::Builtin(builtin(name).expect("checked against the built-in names"))
            }
            PluginSource::File(path) => PluginRef::File(path.clone()),
        })
    }

    /// Read and resolve what a user wrote (see [`PluginSource::parse`]).
    pub fn parse(text: &str) -> Result<PluginRef, PluginRefError> {
        PluginRef::resolve(&PluginSource::parse(text)?)
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
            PluginRef::File(path) => kiln_grant::plugin::file_label(path),
        }
    }
}

fn read(path: &Path) -> Result<Vec<u8>, PluginRefError> {
    std::fs::read(path).map_err(|e| PluginRefError::Unreadable {
        path: path.to_owned(),
        reason: e.to_string(),
    })
}
