//! `kiln:plugin/files`: the permission bits WASI does not report, answered
//! by the policy's mount table so no path outside the grant is touched.

use crate::runtime::StepState;
use crate::runtime::bindings::kiln::plugin::files::Host;

impl Host for StepState {
    fn permissions(&mut self, path: String) -> wasmtime::Result<Result<u32, String>> {
        Ok(self.mounts.permissions(&path))
    }
}
