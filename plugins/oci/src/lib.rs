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
pub mod path;
pub mod platform;
pub mod reference;

/// Items that perform I/O through the SDK: only with the `guest` feature.
macro_rules! guest {
    ($($item:item)*) => { $( #[cfg(feature = "guest")] $item )* };
}

guest! {
    pub mod archive;
    mod blob;
    mod error;
    pub mod image;
    pub mod layer;
    pub mod layout;
    pub mod registry;
    pub mod tarball;
    pub mod tree;

    pub use error::OciError;
    pub use image::Image;
    pub use layout::ImageLayout;
    pub use oci_spec::image as spec;
}

pub use platform::Platform;
pub use reference::Reference;
