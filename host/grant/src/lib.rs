//! What a kiln step runs and may touch, as plain data.
//!
//! The types here cross every boundary inside kiln (pipeline file →
//! scheduler → policy) and are deserialised from user input, so they live
//! in one crate with no I/O and no wasm runtime: the pipeline crate and
//! the command line build them, the runtime crate puts them in force.
//! - [`plugin`]: which plugin a step runs;
//! - [`grant`]: what it may read, write, reach and know ([`StepGrant`]);
//! - [`values`]: where the values of granted variables and secrets come from;
//! - [`mask`]: how those secrets are kept out of everything printed.
#![deny(missing_docs)]

pub mod grant;
pub mod mask;
pub mod plugin;
pub mod values;

pub use grant::{
    DEFAULT_MEMORY, DEFAULT_TIMEOUT, GrantError, HostMatch, HostPattern, MAX_MEMORY, MemorySize,
    StepGrant, Timeout, split_authority,
};
pub use mask::{MASK, SecretMask};
pub use plugin::{PluginSource, PluginSourceError};
pub use values::{ProcessEnv, ValueSource};
