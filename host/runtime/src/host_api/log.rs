//! `kiln:plugin/log`: structured log lines and progress.

use super::StepState;
use super::bindings::kiln::plugin::log::{Field, Host, Level as WitLevel};
use crate::report::Level;

impl From<WitLevel> for Level {
    fn from(level: WitLevel) -> Level {
        match level {
            WitLevel::Trace => Level::Trace,
            WitLevel::Debug => Level::Debug,
            WitLevel::Info => Level::Info,
            WitLevel::Warn => Level::Warn,
            WitLevel::Error => Level::Error,
        }
    }
}

impl Host for StepState {
    fn emit(
        &mut self,
        level: WitLevel,
        message: String,
        fields: Vec<Field>,
    ) -> wasmtime::Result<()> {
        let fields: Vec<(String, String)> = fields.into_iter().map(|f| (f.key, f.value)).collect();
        self.log
            .plugin(level.into(), &message, &fields)
            .map_err(wasmtime::Error::new)
    }

    fn progress(&mut self, task: String, done: u64, total: Option<u64>) -> wasmtime::Result<()> {
        self.log
            .progress(&task, done, total)
            .map_err(wasmtime::Error::new)
    }
}
