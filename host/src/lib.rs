//! kiln runs CI build steps as sandboxed WASI Preview 2 components.
//!
//! The parts, in the order data flows through them:
//! - [`plugins`]: where a step's component comes from (built-in or file);
//! - [`inputs`]: checking inputs against the plugin's `describe()`;
//! - [`policy`]: the one place a step's grant becomes a sandbox, with
//!   [`credentials`] it offers to registry hosts;
//! - [`runtime`]: the wasmtime engine, component cache and per-step store;
//! - [`host_api`]: the host side of the `kiln:plugin` interfaces;
//! - [`ui`]: what the host prints, masked;
//! - [`step`]: one step from start to end;
//! - [`pipeline`]: the pipeline file; [`scheduler`]: running its DAG;
//!   [`shell`]: its unsandboxed `run:` steps; [`store`]: artifacts and cache;
//! - [`export`]: `.gitlab-ci.yml`; [`commands`]: the CLI's work.
#![deny(missing_docs)]

pub mod commands;
pub mod credentials;
pub mod export;
pub mod host_api;
pub mod image_build;
pub mod inputs;
pub mod pipeline;
pub mod plugins;
pub mod policy;
pub mod runtime;
pub mod scheduler;
pub mod shell;
pub mod step;
pub mod store;
pub mod ui;
