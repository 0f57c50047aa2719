//! Structured logging and progress, drawn by the host.
//!
//! Prefer these over `println!`: the host attaches the step name and level,
//! renders progress as bars, and emits JSON events under `--json`. Plain
//! stdout and stderr are still captured and shown as `info` and `warn`.

use crate::bindings::kiln::plugin::log as host;
pub use crate::bindings::kiln::plugin::log::{Field, Level};

/// Emit one log record with key/value fields.
pub fn emit(level: Level, message: &str, fields: &[(&str, &str)]) {
    let fields: Vec<Field> = fields
        .iter()
        .map(|(key, value)| Field {
            key: (*key).to_owned(),
            value: (*value).to_owned(),
        })
        .collect();
    host::emit(level, message, &fields);
}

/// Report progress of `task`: `done` out of `total` units (usually bytes).
pub fn progress(task: &str, done: u64, total: Option<u64>) {
    host::progress(task, done, total);
}

/// Log a formatted message at `info` level.
#[macro_export]
macro_rules! info {
    ($($arg:tt)*) => { $crate::log::emit($crate::log::Level::Info, &::std::format!($($arg)*), &[]) };
}

/// Log a formatted message at `warn` level.
#[macro_export]
macro_rules! warn {
    ($($arg:tt)*) => { $crate::log::emit($crate::log::Level::Warn, &::std::format!($($arg)*), &[]) };
}

/// Log a formatted message at `debug` level.
#[macro_export]
macro_rules! debug {
    ($($arg:tt)*) => { $crate::log::emit($crate::log::Level::Debug, &::std::format!($($arg)*), &[]) };
}

/// Log a formatted message at `error` level.
#[macro_export]
macro_rules! error {
    ($($arg:tt)*) => { $crate::log::emit($crate::log::Level::Error, &::std::format!($($arg)*), &[]) };
}
