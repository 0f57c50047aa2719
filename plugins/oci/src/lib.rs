//! The image library shared by kiln's image plugins, modelled once on
//! `oci-spec` types and named, like go-containerregistry, after where
//! images live and what is done to them: [`reference`]s and
//! [`platform`]s, the [`image`] being built, the OCI image [`layout`] on
//! disk, a [`registry`] client over `wasi:http`, the docker-save
//! [`tarball`], file [`tree`]s and the [`layer`]s written from them, and
//! tar [`archive`]s read back into trees.
#![deny(missing_docs)]

pub mod archive;
mod error;
pub mod image;
pub mod layer;
pub mod layout;
pub mod platform;
pub mod reference;
pub mod registry;
pub mod tarball;
pub mod tree;

pub use error::OciError;
pub use image::Image;
pub use layout::ImageLayout;
pub use oci_spec::image as spec;
pub use platform::Platform;
pub use reference::Reference;
