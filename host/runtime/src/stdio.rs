//! The guest's stdout and stderr, turned into log lines of its step.
//!
//! Plugins (and the libraries they use) print; those bytes must be masked
//! and counted like structured logs, never written raw to the host's
//! terminal. Output is split into lines; a partial line is held until its
//! newline arrives or the stream is dropped.

use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use bytes::Bytes;
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::p2::{OutputStream, Pollable, StreamError, StreamResult};

use crate::log::StepLog;
use crate::report::Level;

/// Longest line kept before it is emitted without a newline, so a plugin
/// printing one endless line cannot grow the buffer without bound.
const MAX_LINE: usize = 64 * 1024;

/// One of the guest's output streams, feeding the step's log at `level`.
#[derive(Clone)]
pub struct GuestOutput {
    log: Arc<StepLog>,
    level: Level,
    pending: Arc<Mutex<Vec<u8>>>,
}

impl GuestOutput {
    /// A stream whose lines go to `log` at `level`.
    pub fn new(log: Arc<StepLog>, level: Level) -> Self {
        GuestOutput {
            log,
            level,
            pending: Arc::new(Mutex::new(Vec::new())),
        }
    }

    fn accept(&self, bytes: &[u8]) -> Result<(), crate::log::LogLimitExceeded> {
        let mut pending = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        pending.extend_from_slice(bytes);
        while let Some(end) = pending.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = pending.drain(..=end).collect();
            self.emit(&line[..line.len() - 1])?;
        }
        // A line too long to hold is emitted in pieces, cut where no secret
        // is split (each piece is masked on its own): a piece is cut only
        // once the bytes after the cut can show a secret crossing it.
        let mask = self.log.mask();
        while pending.len() > MAX_LINE + mask.longest() {
            let cut = mask.safe_cut(&pending, MAX_LINE);
            // Keep the tail so the line's own newline still ends it.
            let line: Vec<u8> = pending.drain(..cut).collect();
            self.emit(&line)?;
        }
        Ok(())
    }

    fn emit(&self, line: &[u8]) -> Result<(), crate::log::LogLimitExceeded> {
        // A piece may end inside a UTF-8 sequence; it is shown with a
        // replacement character, which cannot reveal a secret's bytes.
        let text = String::from_utf8_lossy(line);
        self.log
            .plugin(self.level, text.trim_end_matches('\r'), &[])
    }

    /// Emit a last line that had no newline (called when the step ends).
    pub fn finish(&self) {
        let rest = std::mem::take(&mut *self.pending.lock().unwrap_or_else(|e| e.into_inner()));
        if !rest.is_empty() {
            let _ = self.emit(&rest);
        }
    }
}

impl IsTerminal for GuestOutput {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for GuestOutput {
    fn p2_stream(&self) -> Box<dyn OutputStream> {
        Box::new(self.clone())
    }

    fn async_stream(&self) -> Box<dyn tokio::io::AsyncWrite + Send + Sync> {
        Box::new(self.clone())
    }
}

impl OutputStream for GuestOutput {
    fn write(&mut self, bytes: Bytes) -> StreamResult<()> {
        self.accept(&bytes)
            .map_err(|e| StreamError::Trap(wasmtime::Error::new(e)))
    }

    fn flush(&mut self) -> StreamResult<()> {
        Ok(())
    }

    fn check_write(&mut self) -> StreamResult<usize> {
        Ok(1 << 20)
    }
}

#[async_trait::async_trait]
impl Pollable for GuestOutput {
    async fn ready(&mut self) {}
}

impl tokio::io::AsyncWrite for GuestOutput {
    fn poll_write(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Poll::Ready(
            self.accept(buf)
                .map(|()| buf.len())
                .map_err(std::io::Error::other),
        )
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}
