//! Turn a layer blob into a tar stream, whatever its compression.
//!
//! Registries serve layers as plain tar, gzip or zstd, and the media type
//! is not always trustworthy (Docker's own layers say `tar.gzip` whatever
//! they hold), so the format is told by the blob's magic bytes instead.

use std::io::{self, BufRead, BufReader, Chain, Cursor, Read};

use flate2::bufread::MultiGzDecoder;
use ruzstd::decoding::errors::{FrameDecoderError, ReadFrameHeaderError};
use ruzstd::decoding::{BlockDecodingStrategy, FrameDecoder};

/// How much of the blob is read from its source at a time.
const BUFFER: usize = 256 * 1024;

type Source<R> = BufReader<Chain<Cursor<Vec<u8>>, R>>;

/// A layer's tar stream, decompressed on the fly.
pub(crate) enum TarStream<R: Read> {
    Plain(Source<R>),
    Gzip(Box<MultiGzDecoder<Source<R>>>),
    Zstd(Box<ZstdFrames<Source<R>>>),
}

/// Wrap `blob` in the decompressor its first bytes call for.
pub(crate) fn open<R: Read>(mut blob: R) -> io::Result<TarStream<R>> {
    let mut head = Vec::with_capacity(4);
    // Reading byte by byte until four are in copes with sources that return
    // short reads (pipes) without needing to seek back.
    while head.len() < 4 {
        let mut byte = [0u8];
        match blob.read(&mut byte) {
            Ok(0) => break,
            Ok(_) => head.push(byte[0]),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    let kind = Compression::of(&head);
    let source = BufReader::with_capacity(BUFFER, Cursor::new(head).chain(blob));
    Ok(match kind {
        Compression::None => TarStream::Plain(source),
        Compression::Gzip => TarStream::Gzip(Box::new(MultiGzDecoder::new(source))),
        Compression::Zstd => TarStream::Zstd(Box::new(ZstdFrames::new(source))),
    })
}

#[derive(Debug, PartialEq, Eq)]
enum Compression {
    None,
    Gzip,
    Zstd,
}

impl Compression {
    fn of(head: &[u8]) -> Compression {
        match head {
            [0x1f, 0x8b, ..] => Compression::Gzip,
            [0x28, 0xb5, 0x2f, 0xfd] => Compression::Zstd,
            // A skippable frame (magic 0x184D2A5?) may open a zstd stream.
            [low, 0x2a, 0x4d, 0x18] if low & 0xf0 == 0x50 => Compression::Zstd,
            _ => Compression::None,
        }
    }
}

impl<R: Read> Read for TarStream<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            TarStream::Plain(r) => r.read(buf),
            TarStream::Gzip(r) => r.read(buf),
            TarStream::Zstd(r) => r.read(buf),
        }
    }
}

/// A zstd stream of any number of frames. ruzstd's streaming decoder stops
/// after the first frame, but `zstd:chunked` layers and concatenated
/// compressors write many, and skippable frames may sit between them.
pub(crate) struct ZstdFrames<R: BufRead> {
    source: R,
    decoder: FrameDecoder,
}

impl<R: BufRead> ZstdFrames<R> {
    fn new(source: R) -> ZstdFrames<R> {
        ZstdFrames {
            source,
            decoder: FrameDecoder::new(),
        }
    }
}

impl<R: BufRead> Read for ZstdFrames<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            if self.decoder.can_collect() > 0 {
                return self.decoder.read(buf);
            }
            if !self.decoder.is_finished() {
                self.decoder
                    .decode_blocks(&mut self.source, BlockDecodingStrategy::UptoBlocks(1))
                    .map_err(io::Error::other)?;
                continue;
            }
            if self.source.fill_buf()?.is_empty() {
                return Ok(0);
            }
            match self.decoder.reset(&mut self.source) {
                Ok(()) => {}
                Err(FrameDecoderError::ReadFrameHeaderError(ReadFrameHeaderError::SkipFrame {
                    length,
                    ..
                })) => {
                    let skipped =
                        io::copy(&mut (&mut self.source).take(length.into()), &mut io::sink())?;
                    if skipped < u64::from(length) {
                        return Err(io::Error::new(
                            io::ErrorKind::UnexpectedEof,
                            "zstd skippable frame cut short",
                        ));
                    }
                }
                Err(e) => return Err(io::Error::other(e)),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn read_all(blob: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        open(blob).unwrap().read_to_end(&mut out).unwrap();
        out
    }

    #[test]
    fn detects_formats_by_magic() {
        assert_eq!(Compression::of(&[0x1f, 0x8b, 8, 0]), Compression::Gzip);
        assert_eq!(
            Compression::of(&[0x28, 0xb5, 0x2f, 0xfd]),
            Compression::Zstd
        );
        assert_eq!(
            Compression::of(&[0x50, 0x2a, 0x4d, 0x18]),
            Compression::Zstd
        );
        assert_eq!(Compression::of(b"usr/"), Compression::None);
        assert_eq!(Compression::of(b""), Compression::None);
    }

    #[test]
    fn reads_plain_gzip_and_multi_frame_zstd() {
        let data: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
        assert_eq!(read_all(&data), data);

        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(&data).unwrap();
        assert_eq!(read_all(&gz.finish().unwrap()), data);

        let level = ruzstd::encoding::CompressionLevel::Fastest;
        let mut zst = ruzstd::encoding::compress_to_vec(&data[..1000], level);
        // A skippable frame between two data frames.
        zst.extend_from_slice(&[0x5a, 0x2a, 0x4d, 0x18, 3, 0, 0, 0, 1, 2, 3]);
        zst.extend(ruzstd::encoding::compress_to_vec(&data[1000..], level));
        assert_eq!(read_all(&zst), data);
    }
}
