//! `kiln:plugin/secrets`: named secrets, answered only when granted.

use crate::runtime::StepState;
use crate::runtime::bindings::kiln::plugin::secrets::Host;
use crate::ui::Level;

impl Host for StepState {
    fn get(&mut self, name: String) -> wasmtime::Result<Option<String>> {
        let value = self.secrets.get(&name).cloned();
        if value.is_none() {
            self.log.host(
                Level::Warn,
                &format!("denied secret {name}: not in this step's grant"),
            );
        }
        Ok(value)
    }
}
