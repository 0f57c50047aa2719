//! The Dockerfile grammar as BuildKit defines it, for kiln's
//! `dockerfile-build` plugin: [`parser`] turns a Dockerfile into
//! instruction nodes, [`shell`] expands variables in their words,
//! [`pattern`] matches COPY/ADD source globs, and [`ignore`] decides which
//! context files `.dockerignore` leaves out. Matching lives here, next to
//! the grammar, because Docker defines it (Go's `filepath.Match`, moby's
//! patternmatcher) and kiln must agree with `docker build` on both.
//!
//! The parser and shell pass BuildKit's own test vectors (`tests/buildkit.rs`, reading
//! `shared/conformance/buildkit/`). Plain Rust with no I/O, so it builds
//! for the host (tests) and for `wasm32-wasip2` (the plugin) alike.
#![deny(missing_docs)]

pub mod ignore;
pub mod parser;
pub mod pattern;
pub mod shell;
