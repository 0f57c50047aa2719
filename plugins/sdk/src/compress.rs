//! gzip compressed by the host: native code, several cores, and the same
//! bytes whatever the machine (see `kiln:plugin/compress` in the WIT).
//!
//! In wasm, compression runs single-threaded at about a third of native
//! speed, and it is most of an image build's time.

use std::io::{self, Write};

use crate::bindings::kiln::plugin::compress::Gzip;

/// A writer that gzips what it is given into `inner`.
pub struct GzipWriter<W: Write> {
    stream: Option<Gzip>,
    inner: W,
}

impl<W: Write> GzipWriter<W> {
    /// Compress into `inner` at `level` (1 fastest .. 9 smallest).
    pub fn new(inner: W, level: u8) -> Self {
        GzipWriter {
            stream: Some(Gzip::new(level)),
            inner,
        }
    }

    /// End the stream (trailer included) and return the inner writer.
    pub fn finish(mut self) -> io::Result<W> {
        let stream = self.stream.take().expect("finish is called once");
        self.inner.write_all(&stream.finish())?;
        Ok(self.inner)
    }
}

impl<W: Write> Write for GzipWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let stream = self.stream.as_ref().ok_or(io::ErrorKind::BrokenPipe)?;
        // The host takes at most 4 MiB per call.
        let taken = buf.len().min(1 << 20);
        let out = stream.write(&buf[..taken]);
        self.inner.write_all(&out)?;
        Ok(taken)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}
