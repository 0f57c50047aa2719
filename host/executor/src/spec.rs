//! What the helper process is told to run: one plain, serialisable value
//! passed from kiln to its helper, so that everything the sandbox does is
//! decided before the helper starts and can be read in one place.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::tier::Tier;

/// One command to run in a root file system.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunSpec {
    /// The isolation to set up (already probed to work).
    pub tier: Tier,
    /// The host directory of the root file system.
    pub rootfs: PathBuf,
    /// How ids inside map to owners on disk.
    pub ids: crate::ids::IdMap,
    /// The program and its arguments.
    pub args: Vec<String>,
    /// `NAME=VALUE` pairs, exactly the command's environment.
    pub env: Vec<String>,
    /// Absolute working directory inside the root.
    pub workdir: String,
    /// The user the command runs as, inside.
    pub uid: u32,
    /// Its primary group, inside.
    pub gid: u32,
    /// Its supplementary groups, inside.
    pub groups: Vec<u32>,
    /// The network the command gets.
    pub network: Network,
    /// Mounts for this command only.
    pub mounts: Vec<MountSpec>,
    /// A private directory of the helper's (proot's loader, stub files).
    pub scratch: PathBuf,
    /// The ptrace tier's tracer.
    pub proot: Option<PathBuf>,
}

/// The network of one command.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Network {
    /// No network at all.
    None,
    /// Only kiln's allow-list proxy on the host's `127.0.0.1:port`; inside
    /// the command reaches it at [`PROXY_PORT`] on its own loopback (tier
    /// A) or at `port` (tiers B and C, which share the host's network).
    Proxy {
        /// The proxy's port on the host.
        port: u16,
    },
    /// The host's network, unfiltered (granted explicitly).
    Host,
}

/// The port the proxy answers on inside a network namespace.
pub const PROXY_PORT: u16 = 3128;

impl Network {
    /// The port the command reaches the proxy on in `tier`, if any.
    pub fn proxy_port(self, tier: Tier) -> Option<u16> {
        match self {
            Network::Proxy { .. } if tier == Tier::Namespaces => Some(PROXY_PORT),
            Network::Proxy { port } => Some(port),
            _ => None,
        }
    }
}

/// A host file or directory mounted at `target` for one command.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct MountSpec {
    /// The host path, or `None` for an empty in-memory directory.
    pub source: Option<PathBuf>,
    /// Absolute path inside the root.
    pub target: String,
    /// Whether the command may write to it.
    pub writable: bool,
}
