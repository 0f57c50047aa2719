//! kiln's sandbox: everything between a step's plugin and grant and the
//! plugin running under exactly that grant. The only crate that links
//! wasmtime.
//!
//! The parts, in the order a step flows through them (each module uses
//! only those before it):
//! - [`report`]: where step events go ([`report::Reporter`]);
//! - [`log`]: a step's masked, budgeted log channel ([`log::StepLog`]);
//! - [`stdio`]: the guest's stdout and stderr, turned into log lines;
//! - [`credentials`]: registry credentials offered to registry hosts;
//! - [`policy`]: the one place a grant becomes a sandbox (`WasiCtx`,
//!   outbound HTTP, mounts, limits), capped by the operator's policy;
//! - [`host_api`]: the generated bindings, the store's state and one
//!   module per `kiln:plugin` host interface;
//! - [`cache`]: compiled components on disk, authenticated;
//! - [`engine`]: the wasmtime engine, linker and per-step store;
//! - [`plugins`]: built-in and file plugins; [`inputs`]: inputs checked
//!   against `describe()`; [`step`]: one step from start to end.
#![deny(missing_docs)]

pub mod cache;
pub mod credentials;
pub mod engine;
pub mod host_api;
pub mod inputs;
pub mod log;
pub mod plugins;
pub mod policy;
pub mod report;
pub mod stdio;
pub mod step;

pub use engine::{LoadedPlugin, Runtime, RuntimeConfig, StepFailure};
pub use host_api::{
    Capability, CapabilityKind, InputSpec, NamedValue, NeededArtifact, OutputSpec, PluginInfo,
    StepContext, StepError, Value, ValueKind,
};
