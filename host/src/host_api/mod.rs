//! The host side of the `kiln:plugin` imports, one module per interface,
//! plus the capture of the guest's stdout and stderr.
//!
//! Each module implements the generated `Host` trait for
//! [`crate::runtime::StepState`] and nothing else, so adding an interface
//! means adding one module here and one line to the linker.

mod compress;
mod digest;
mod files;
mod log;
mod secrets;
mod stdio;

pub use compress::GzipState;
pub use digest::Sha256State;
pub use stdio::GuestOutput;

/// `kiln:plugin/types` declares only types; its host trait is empty.
impl crate::runtime::bindings::kiln::plugin::types::Host for crate::runtime::StepState {}
