//! kiln runs CI build steps as sandboxed WASI Preview 2 components.
//!
//! This crate is kiln's library of operations — what each `kiln`
//! subcommand does, as functions that return a report or an [`Error`] and
//! print nothing: the binary (`main.rs`) owns the command line, printing
//! and exit codes. Operations are methods of [`Kiln`], which holds the one
//! wasm runtime and the reporter step events go to:
//! - [`step`]: `kiln step`, one plugin under an explicit grant;
//! - [`registry`]: `kiln push`, `pull`, `login`;
//! - [`image_build`]: `kiln build`, a Dockerfile into an image;
//! - [`pipeline`]: `kiln run` and `kiln export`, with its scheduler running
//!   the step graph and its unsandboxed `run:` steps.
//!
//! The crates below it, each used only by those above it:
//! `kiln-grant` (plain types) → `kiln-store`, `kiln-pipeline` (no wasm) →
//! `kiln-runtime` (the sandbox; the only crate linking wasmtime) → `kiln`.
#![deny(missing_docs)]

pub mod error;
pub mod image_build;
pub mod pipeline;
pub mod registry;
pub mod session;
pub mod step;

pub use error::Error;
pub use session::{Inspection, Kiln, RunSupport};
