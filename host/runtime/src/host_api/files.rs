//! `kiln:plugin/files`: the permission bits and symlink targets WASI does
//! not report, answered by the policy's mount table so no path outside the
//! grant is touched.

use super::StepState;
use super::bindings::kiln::plugin::files::{Host, Metadata};

impl Host for StepState {
    fn stat(&mut self, path: String) -> wasmtime::Result<Result<Metadata, String>> {
        Ok(self.mounts.metadata(&path).map(|facts| Metadata {
            mode: facts.mode,
            symlink_target: facts.symlink_target,
            change_time: facts.change_time,
        }))
    }
}
