//! The image library shared by kiln's image plugins, modelled once on
//! `oci-spec` types and named, like go-containerregistry, after where
//! images live and what is done to them: [`reference`]s and
//! [`platform`]s, the `image` being built, the OCI image `layout` on
//! disk, a `registry` client over `wasi:http`, the docker-save `tarball`,
//! file `tree`s and the `layer`s written from them, and tar `archive`s
//! read back into trees.
//!
//! Those that perform I/O go through the kiln SDK and need the `guest`
//! feature (on by default). Without it the crate is plain Rust that the
//! host builds natively, so host and plugins share one definition of what
//! they both must agree on: image [`reference`]s, [`platform`]s, and the
//! registry [`credential`] hand-off.
#![deny(missing_docs)]

pub mod credential;
pub mod platform;
pub mod reference;

#[cfg(feature = "guest")]
pub mod archive;
#[cfg(feature = "guest")]
mod error;
#[cfg(feature = "guest")]
pub mod image;
#[cfg(feature = "guest")]
pub mod layer;
#[cfg(feature = "guest")]
pub mod layout;
#[cfg(feature = "guest")]
pub mod registry;
#[cfg(feature = "guest")]
pub mod tarball;
#[cfg(feature = "guest")]
pub mod tree;

#[cfg(feature = "guest")]
pub use error::OciError;
#[cfg(feature = "guest")]
pub use image::Image;
#[cfg(feature = "guest")]
pub use layout::ImageLayout;
#[cfg(feature = "guest")]
pub use oci_spec::image as spec;
pub use platform::Platform;
pub use reference::Reference;
