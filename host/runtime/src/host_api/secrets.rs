//! `kiln:plugin/secrets`: named secrets, answered only when granted.
//!
//! A refusal is silent here: the plugin reports it (the SDK's message says
//! what to grant), and plugins probe for optional secrets such as registry
//! credentials, which would otherwise fill the log with false alarms.

use super::StepState;
use super::bindings::kiln::plugin::secrets::Host;

impl Host for StepState {
    fn get(&mut self, name: String) -> wasmtime::Result<Option<String>> {
        Ok(self.secrets.get(&name).cloned())
    }
}
