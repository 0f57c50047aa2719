//! The Dockerfile grammar as BuildKit defines it, for kiln's
//! `dockerfile-build` plugin: [`parser`] turns a Dockerfile into
//! instruction nodes, [`shell`] expands variables in their words.
//!
//! Both pass BuildKit's own test vectors (`tests/buildkit.rs`, reading
//! `shared/conformance/buildkit/`). Plain Rust with no I/O, so it builds
//! for the host (tests) and for `wasm32-wasip2` (the plugin) alike.
#![deny(missing_docs)]

pub mod parser;
pub mod shell;
