//! kiln runs CI build steps as sandboxed WASI Preview 2 components.
//!
//! The parts, in the order data flows through them:
//! - [`plugins`]: where a step's component comes from (built-in or file);
//! - [`inputs`]: checking inputs against the plugin's `describe()`;
//! - [`policy`]: the one place a step's grant becomes a sandbox;
//! - [`runtime`]: the wasmtime engine, component cache and per-step store;
//! - [`host_api`]: the host side of the `kiln:plugin` interfaces;
//! - [`ui`]: what the host prints, masked;
//! - [`step`]: one step from start to end; [`commands`]: the CLI's work.
#![deny(missing_docs)]

pub mod commands;
pub mod host_api;
pub mod inputs;
pub mod plugins;
pub mod policy;
pub mod runtime;
pub mod step;
pub mod ui;
