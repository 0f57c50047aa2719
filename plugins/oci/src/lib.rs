//! The image library shared by kiln's image plugins, modelled once on
//! `oci-spec` types: references, the OCI image layout on disk, and a
//! registry client over `wasi:http`.
#![deny(missing_docs)]

mod error;
pub mod layout;
pub mod reference;
pub mod registry;

pub use error::OciError;
pub use layout::ImageLayout;
pub use oci_spec::image as spec;
pub use reference::Reference;
