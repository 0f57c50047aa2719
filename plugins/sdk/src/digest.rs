//! SHA-256 computed natively by the host.
//!
//! Measured on these machines: 280 MiB/s in wasm against 1365 MiB/s on the
//! host with SHA-NI. Image steps hash every byte they write, so they should
//! use this rather than a wasm implementation.

use crate::bindings::kiln::plugin::digest::Sha256 as HostSha256;

/// Bytes per host call: large enough that call overhead is negligible,
/// small enough not to double a plugin's memory for big buffers.
const CHUNK: usize = 1 << 20;

/// An incremental SHA-256, also usable as an [`std::io::Write`] sink so it
/// can sit in a writer chain (tar → gzip → hash).
pub struct Sha256 {
    inner: HostSha256,
}

impl Sha256 {
    /// Start a new digest.
    pub fn new() -> Self {
        Sha256 {
            inner: HostSha256::new(),
        }
    }

    /// Feed more bytes.
    pub fn update(&mut self, data: &[u8]) {
        for chunk in data.chunks(CHUNK) {
            self.inner.update(chunk);
        }
    }

    /// The 32-byte digest.
    pub fn finish(self) -> [u8; 32] {
        let bytes = self.inner.finish();
        let mut out = [0u8; 32];
        out.copy_from_slice(&bytes);
        out
    }

    /// The digest as `sha256:<64 hex digits>`, the OCI digest form.
    pub fn finish_oci(self) -> String {
        let mut text = String::with_capacity(71);
        text.push_str("sha256:");
        for byte in self.finish() {
            text.push_str(&format!("{byte:02x}"));
        }
        text
    }
}

impl Default for Sha256 {
    fn default() -> Self {
        Self::new()
    }
}

impl std::io::Write for Sha256 {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.update(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// The OCI digest (`sha256:…`) of `data`.
pub fn sha256_oci(data: &[u8]) -> String {
    let mut hasher = Sha256::new();
    hasher.update(data);
    hasher.finish_oci()
}
