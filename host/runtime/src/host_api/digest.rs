//! `kiln:plugin/digest`: SHA-256 on the host, where SHA-NI makes it ~5x
//! faster than in wasm.

use sha2::{Digest, Sha256};
use wasmtime::component::Resource;

use super::StepState;
use super::bindings::kiln::plugin::digest::{Host, HostSha256};

/// The host state behind a guest's `sha256` resource; `None` once finished.
pub struct Sha256State(Option<Sha256>);

fn used_after_finish() -> wasmtime::Error {
    wasmtime::format_err!("sha256 resource used after finish()")
}

impl HostSha256 for StepState {
    fn new(&mut self) -> wasmtime::Result<Resource<Sha256State>> {
        Ok(self.table.push(Sha256State(Some(Sha256::new())))?)
    }

    fn update(&mut self, this: Resource<Sha256State>, data: Vec<u8>) -> wasmtime::Result<()> {
        let state = self.table.get_mut(&this)?;
        state
            .0
            .as_mut()
            .ok_or_else(used_after_finish)?
            .update(&data);
        Ok(())
    }

    fn finish(&mut self, this: Resource<Sha256State>) -> wasmtime::Result<Vec<u8>> {
        let state = self.table.get_mut(&this)?;
        let hasher = state.0.take().ok_or_else(used_after_finish)?;
        Ok(hasher.finalize().to_vec())
    }

    fn drop(&mut self, this: Resource<Sha256State>) -> wasmtime::Result<()> {
        self.table.delete(this)?;
        Ok(())
    }
}

impl Host for StepState {}
