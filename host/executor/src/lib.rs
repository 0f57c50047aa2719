//! kiln's RUN executor: Dockerfile `RUN` commands run natively, in the
//! strongest isolation the environment allows, on a root file system the
//! host builds from layer blobs; what a command changed becomes a layer.
//!
//! No wasmtime here: the runtime's `kiln:plugin/executor` interface calls
//! into this crate, and the `kiln` binary runs [`helper::main`] when it
//! is started as the helper ([`helper::HELPER_ARG`]).

pub mod confine;
pub mod error;
pub mod helper;
pub mod ids;
pub mod rootfs;
pub mod run;
pub mod spec;
pub mod tier;
pub mod user;
