//! The Dockerfile grammar as BuildKit defines it, for kiln's
//! `dockerfile-build` plugin and for the host that prepares its grant:
//! [`parser`] turns a Dockerfile into instruction nodes, [`instructions`]
//! types them (flags parsed, exec or shell form decided), [`stages`]
//! groups them and decides once what each stage builds on (so host and
//! plugin cannot disagree about which images a build pulls), [`shell`]
//! expands variables in their words, [`heredoc`] finds the
//! here-documents of RUN, COPY and ADD, [`pattern`] matches COPY/ADD source
//! globs, and [`ignore`] decides which context files `.dockerignore`
//! leaves out. Matching lives here, next to the grammar, because Docker
//! defines it (Go's `filepath.Match`, moby's patternmatcher) and kiln must
//! agree with `docker build` on both.
//!
//! The parser and shell pass BuildKit's own test vectors (`tests/buildkit.rs`, reading
//! `shared/conformance/buildkit/`). Plain Rust with no I/O, so it builds
//! for the host (tests) and for `wasm32-wasip2` (the plugin) alike. Its
//! one dependency of kiln's is kiln-oci without the `guest` feature, for
//! the one parser of platforms (`os/arch[/variant]`) that the predefined
//! `TARGETPLATFORM` ARGs are derived from; callers pass platforms as text.
#![deny(missing_docs)]

pub mod heredoc;
pub mod ignore;
pub mod instructions;
pub mod parser;
pub mod pattern;
pub mod shell;
pub mod stages;

pub use stages::{Error, Plan, check};
