//! Bytes on their way into and out of blobs: copying in large pieces
//! (every write from a plugin is a host call) and digests as `oci-spec`
//! values. Below the layout, layers and archives, which all move blobs.

use std::io::{self, Read};

use crate::OciError;

/// A digest as progress labels show it: `sha256:` and 12 hex digits,
/// enough to tell blobs apart without squeezing a progress bar.
pub fn short(digest: &str) -> &str {
    let end = digest.find(':').map_or(12, |colon| colon + 13);
    &digest[..end.min(digest.len())]
}

/// A digest string as an `oci-spec` digest.
pub fn parse_digest(digest: &str) -> Result<crate::spec::Digest, OciError> {
    digest
        .parse()
        .map_err(|e| OciError::Invalid(format!("digest {digest}: {e}")))
}

/// Copy with a 1 MiB buffer: every write to the layout is a host call.
pub fn copy(reader: &mut impl Read, writer: &mut impl io::Write) -> io::Result<u64> {
    let mut buffer = vec![0u8; 1 << 20];
    let mut total = 0;
    loop {
        let mut filled = 0;
        while filled < buffer.len() {
            match reader.read(&mut buffer[filled..]) {
                Ok(0) => break,
                Ok(n) => filled += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        if filled == 0 {
            return Ok(total);
        }
        writer.write_all(&buffer[..filled])?;
        total += filled as u64;
    }
}
