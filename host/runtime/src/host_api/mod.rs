//! The host side of the `kiln:plugin` imports, one module per interface.
//!
//! The generated bindings and [`StepState`], the data of a step's store,
//! live here; each submodule implements the generated `Host` trait of one
//! interface for [`StepState`] and nothing else, so adding an interface
//! means adding one module here and one line to the linker.

pub mod compress;
pub mod digest;
pub mod executor;
mod files;
mod log;
mod secrets;

use std::sync::Arc;

use wasmtime::component::ResourceTable;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};
use wasmtime_wasi_http::{WasiHttpCtx, WasiHttpCtxView, WasiHttpView};

use crate::log::StepLog;
use crate::policy::{MemoryCap, MountTable, OutboundHttp};

/// Bindings generated from `wit/plugin.wit`; the WIT file carries their
/// documentation.
#[allow(missing_docs)]
pub mod bindings {
    wasmtime::component::bindgen!({
        path: "../../wit",
        world: "step-plugin",
        imports: { default: trappable },
        exports: { default: async },
        with: {
            "kiln:plugin/digest.sha256": crate::host_api::digest::Sha256State,
            "kiln:plugin/compress.gzip": crate::host_api::compress::GzipState,
            "kiln:plugin/executor.rootfs": crate::host_api::executor::RootfsState,
        },
        additional_derives: [serde::Serialize, PartialEq],
    });
}

pub use bindings::kiln::plugin::types::{
    Capability, CapabilityKind, InputSpec, NamedValue, NeededArtifact, OutputSpec, PluginInfo,
    StepContext, StepError, Value, ValueKind,
};

/// The data of one step's `Store`: its sandbox and host-interface state.
pub struct StepState {
    pub(crate) wasi: WasiCtx,
    pub(crate) table: ResourceTable,
    pub(crate) http_ctx: WasiHttpCtx,
    pub(crate) http: OutboundHttp,
    pub(crate) memory: MemoryCap,
    pub(crate) secrets: std::collections::BTreeMap<String, String>,
    pub(crate) mounts: MountTable,
    /// Open `compress.gzip` streams (bounded: each holds host memory).
    pub(crate) gzip_streams: usize,
    pub(crate) log: Arc<StepLog>,
    /// RUN commands: the step's executor access and what it started.
    pub(crate) run: executor::RunState,
}

impl WasiView for StepState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl WasiHttpView for StepState {
    fn http(&mut self) -> WasiHttpCtxView<'_> {
        WasiHttpCtxView {
            ctx: &mut self.http_ctx,
            table: &mut self.table,
            hooks: &mut self.http,
        }
    }
}

/// `kiln:plugin/types` declares only types; its host trait is empty.
impl bindings::kiln::plugin::types::Host for StepState {}
