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

/// A reader that reports, as the progress of `task`, how much of `total`
/// bytes has passed through it: a download, an upload's body, a layer
/// being written. Reports come every percent (at least every 4 MiB) and
/// at the end, so progress costs little of the step's log budget; a
/// transfer under 8 MiB, over in a moment, reports nothing.
pub struct ProgressReader<R> {
    inner: R,
    task: String,
    total: u64,
    done: u64,
    reported: u64,
}

impl<R> ProgressReader<R> {
    /// Report reads from `inner` as `task`, out of `total` bytes.
    pub fn new(inner: R, task: impl Into<String>, total: u64) -> Self {
        ProgressReader {
            inner,
            task: task.into(),
            total,
            done: 0,
            reported: 0,
        }
    }

    /// The wrapped reader.
    pub fn get_mut(&mut self) -> &mut R {
        &mut self.inner
    }
}

/// Below this, a transfer reports no progress.
const QUIET_BELOW: u64 = 8 << 20;

impl<R: std::io::Read> std::io::Read for ProgressReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let read = self.inner.read(buf)?;
        self.done += read as u64;
        let every = (self.total / 100).max(4 << 20);
        // The end, or the total first reached (an estimate may be passed:
        // beyond it, only the end reports again).
        let finished = read == 0 || (self.reported < self.total && self.done >= self.total);
        if self.total >= QUIET_BELOW
            && self.done > self.reported
            && (finished || (self.done < self.total && self.done - self.reported >= every))
        {
            progress(&self.task, self.done.min(self.total), Some(self.total));
            self.reported = self.done;
        }
        Ok(read)
    }
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
