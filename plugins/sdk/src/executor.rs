//! Native commands (Dockerfile `RUN`), run by the host for steps granted
//! `allow.run`: the contract's `executor` interface, re-exported so that
//! plugins need not reach into the generated bindings.

pub use crate::bindings::kiln::plugin::executor::{
    Command, Isolation, LayeredSource, Mount, MountSource, Network, Outcome, Rootfs, Sharing,
};
