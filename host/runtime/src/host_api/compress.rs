//! `kiln:plugin/compress`: gzip on the host, several blocks at a time on
//! separate cores, with output that does not depend on either.
//!
//! The input is cut into [`BLOCK`]-byte blocks at fixed stream offsets.
//! Each block is deflated on its own with the [`WINDOW`] bytes before it as
//! preset dictionary and ends with a sync flush (the last one with the
//! final block), so the blocks concatenate into one valid deflate stream —
//! the scheme pigz uses. Blocks are compressed once [`BATCH`] of them are
//! pending, each batch spread over the machine's cores.

use flate2::{Compress, Compression, FlushCompress, Status};
use wasmtime::component::Resource;

use super::StepState;
use super::bindings::kiln::plugin::compress::{Host, HostGzip};

/// Bytes per independently compressed block.
const BLOCK: usize = 1 << 20;
/// Deflate's window: the dictionary each block gets from its predecessor.
const WINDOW: usize = 32 << 10;
/// Blocks compressed together (and held back until there are this many).
const BATCH: usize = 8;
/// The largest write a guest may send at once: host memory a stream holds
/// stays under `BATCH` blocks plus this.
const MAX_WRITE: usize = 4 << 20;
/// Streams one step may have open at once (a layer needs one).
const MAX_STREAMS: usize = 4;

/// The host state behind a guest's `gzip` resource.
pub struct GzipState {
    level: u32,
    /// Input not yet compressed (less than a batch of blocks).
    pending: Vec<u8>,
    /// The last [`WINDOW`] bytes of input already compressed.
    window: Vec<u8>,
    crc: crc32fast::Hasher,
    total: u64,
    started: bool,
    finished: bool,
}

impl GzipState {
    fn new(level: u8) -> Self {
        GzipState {
            level: u32::from(level.clamp(1, 9)),
            pending: Vec::new(),
            window: Vec::new(),
            crc: crc32fast::Hasher::new(),
            total: 0,
            started: false,
            finished: false,
        }
    }

    /// Compress `blocks` whole blocks of `pending` (and, when `last`, the
    /// rest as the final block); returns the deflate bytes.
    fn drain(&mut self, last: bool) -> wasmtime::Result<Vec<u8>> {
        let whole = self.pending.len() / BLOCK;
        let mut cuts: Vec<(usize, usize)> =
            (0..whole).map(|i| (i * BLOCK, (i + 1) * BLOCK)).collect();
        if last && (self.pending.len() > whole * BLOCK || cuts.is_empty()) {
            cuts.push((whole * BLOCK, self.pending.len()));
        }
        let input = &self.pending;
        let window = &self.window;
        let level = self.level;
        let count = cuts.len();
        let dictionary = |start: usize| -> Vec<u8> {
            if start == 0 {
                window.clone()
            } else {
                input[start.saturating_sub(WINDOW)..start].to_vec()
            }
        };
        let threads = std::thread::available_parallelism()
            .map_or(1, |n| n.get())
            .min(count.max(1));
        let mut parts: Vec<Vec<u8>> = vec![Vec::new(); count];
        let per_thread = count.div_ceil(threads.max(1)).max(1);
        std::thread::scope(|scope| {
            let mut handles = Vec::new();
            for (chunk_index, slots) in parts.chunks_mut(per_thread).enumerate() {
                let cuts = &cuts;
                let dictionary = &dictionary;
                handles.push(scope.spawn(move || -> Result<(), String> {
                    for (offset, slot) in slots.iter_mut().enumerate() {
                        let index = chunk_index * per_thread + offset;
                        let (start, end) = cuts[index];
                        let final_block = last && index + 1 == count;
                        *slot = deflate_block(
                            level,
                            &dictionary(start),
                            &input[start..end],
                            final_block,
                        )?;
                    }
                    Ok(())
                }));
            }
            handles.into_iter().try_for_each(|h| {
                h.join()
                    .map_err(|_| "a compression thread panicked".to_owned())?
            })
        })
        .map_err(|e| wasmtime::format_err!("gzip: {e}"))?;
        let consumed = cuts.last().map_or(0, |(_, end)| *end);
        self.crc.update(&self.pending[..consumed]);
        self.total += consumed as u64;
        let tail_start = consumed.saturating_sub(WINDOW);
        let mut window = if consumed >= WINDOW {
            Vec::new()
        } else {
            std::mem::take(&mut self.window)
        };
        window.extend_from_slice(&self.pending[tail_start..consumed]);
        let excess = window.len().saturating_sub(WINDOW);
        window.drain(..excess);
        self.window = window;
        self.pending.drain(..consumed);

        let mut out = Vec::with_capacity(parts.iter().map(Vec::len).sum::<usize>() + 10);
        if !self.started {
            // gzip header: deflate, no name, mtime 0, unknown OS: the
            // same bytes on every machine.
            out.extend_from_slice(&[0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0xff]);
            self.started = true;
        }
        for part in parts {
            out.extend_from_slice(&part);
        }
        Ok(out)
    }
}

/// Deflate one block with `dictionary` preset; a sync flush ends it, or the
/// final block when `last`.
fn deflate_block(
    level: u32,
    dictionary: &[u8],
    data: &[u8],
    last: bool,
) -> Result<Vec<u8>, String> {
    let mut compress = Compress::new(Compression::new(level), false);
    if !dictionary.is_empty() {
        compress
            .set_dictionary(dictionary)
            .map_err(|e| e.to_string())?;
    }
    let flush = if last {
        FlushCompress::Finish
    } else {
        FlushCompress::Sync
    };
    let mut out = Vec::with_capacity(data.len() / 2 + 1024);
    let mut consumed = 0;
    loop {
        if out.capacity() - out.len() < 1024 {
            out.reserve(out.capacity().max(64 << 10));
        }
        let before = compress.total_in() as usize;
        let status = compress
            .compress_vec(&data[consumed..], &mut out, flush)
            .map_err(|e| e.to_string())?;
        consumed += compress.total_in() as usize - before;
        let done = match status {
            Status::StreamEnd => true,
            // A sync flush is complete once all input is in and the
            // output buffer was not filled up.
            Status::Ok | Status::BufError => {
                !last && consumed == data.len() && out.len() < out.capacity()
            }
        };
        if done {
            return Ok(out);
        }
    }
}

fn used_after_finish() -> wasmtime::Error {
    wasmtime::format_err!("gzip resource used after finish()")
}

impl HostGzip for StepState {
    fn new(&mut self, level: u8) -> wasmtime::Result<Resource<GzipState>> {
        if self.gzip_streams >= MAX_STREAMS {
            return Err(wasmtime::format_err!(
                "a step may have at most {MAX_STREAMS} gzip streams open at once"
            ));
        }
        self.gzip_streams += 1;
        Ok(self.table.push(GzipState::new(level))?)
    }

    fn write(&mut self, this: Resource<GzipState>, data: Vec<u8>) -> wasmtime::Result<Vec<u8>> {
        if data.len() > MAX_WRITE {
            return Err(wasmtime::format_err!(
                "gzip write of {} bytes; at most {MAX_WRITE} per call",
                data.len()
            ));
        }
        let state = self.table.get_mut(&this)?;
        if state.finished {
            return Err(used_after_finish());
        }
        state.pending.extend_from_slice(&data);
        if state.pending.len() < BATCH * BLOCK {
            return Ok(Vec::new());
        }
        state.drain(false)
    }

    fn finish(&mut self, this: Resource<GzipState>) -> wasmtime::Result<Vec<u8>> {
        let state = self.table.get_mut(&this)?;
        if state.finished {
            return Err(used_after_finish());
        }
        state.finished = true;
        let mut out = state.drain(true)?;
        out.extend_from_slice(&state.crc.clone().finalize().to_le_bytes());
        out.extend_from_slice(&(state.total as u32).to_le_bytes());
        Ok(out)
    }

    fn drop(&mut self, this: Resource<GzipState>) -> wasmtime::Result<()> {
        self.table.delete(this)?;
        self.gzip_streams -= 1;
        Ok(())
    }
}

impl Host for StepState {}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    fn gzip(data: &[u8], writes: usize) -> Vec<u8> {
        let mut state = GzipState::new(1);
        let mut out = Vec::new();
        for chunk in data.chunks(data.len().div_ceil(writes).max(1)) {
            state.pending.extend_from_slice(chunk);
            if state.pending.len() >= BATCH * BLOCK {
                out.extend(state.drain(false).unwrap());
            }
        }
        out.extend(state.drain(true).unwrap());
        out.extend_from_slice(&state.crc.clone().finalize().to_le_bytes());
        out.extend_from_slice(&(state.total as u32).to_le_bytes());
        out
    }

    #[test]
    fn blocks_join_into_one_stream_independent_of_write_sizes() {
        let data: Vec<u8> = (0..(BATCH * BLOCK * 2 + 12345))
            .map(|i| ((i * 7919) % 251) as u8 ^ (i / 4096) as u8)
            .collect();
        let one = gzip(&data, 1);
        let many = gzip(&data, 97);
        assert_eq!(one, many);
        let mut decoded = Vec::new();
        flate2::read::GzDecoder::new(&one[..])
            .read_to_end(&mut decoded)
            .unwrap();
        assert_eq!(decoded, data);
        let mut empty = Vec::new();
        flate2::read::GzDecoder::new(&gzip(&[], 1)[..])
            .read_to_end(&mut empty)
            .unwrap();
        assert!(empty.is_empty());
    }
}
