//! The image library shared by kiln's image plugins, modelled once on
//! `oci-spec` types: references, the OCI image layout on disk, a registry
//! client over `wasi:http`, file trees and the layers written from them,
//! and tar archives read back into trees.
#![deny(missing_docs)]

pub mod archive;
mod error;
pub mod layer;
pub mod layout;
pub mod reference;
pub mod registry;
pub mod tree;

pub use error::OciError;
pub use layout::ImageLayout;
pub use oci_spec::image as spec;
pub use reference::Reference;
