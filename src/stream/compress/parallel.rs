//! Parallel gzip, pigz style: the input is cut into blocks; worker threads deflate blocks
//! independently, each primed with the previous 32 KiB as a dictionary (so the ratio stays
//! close to a single stream); the raw deflate outputs are written in order between one gzip
//! header and trailer. The result is one standard gzip member: `gunzip`, `zcat` and the bash
//! version read it as usual.
//!
//! Memory is bounded: at most `2 × threads` blocks are in flight.
//!
//! Effort adapts per block: a sample from the block's middle is checked for repeated 4-byte
//! strings (what deflate's matches are made of). A block with few (random bytes, compressed
//! files, and their hex or base64 in a dump's bytea and text columns) is Huffman-coded only:
//! searching for matches that are not there is what made such data cost as much CPU as text,
//! and for hex the literals alone code smaller than level 6's short matches (0.51 vs 0.53). A
//! block whose bytes are also evenly spread (raw random) is stored. Both are ordinary deflate
//! blocks of the same member. zlib-rs is used directly for the Huffman-only strategy, which
//! flate2 does not expose.

use std::collections::BTreeMap;
use std::io::{self, Write};
use std::sync::Arc;
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::thread::JoinHandle;

use flate2::{Compress, Compression, FlushCompress, Status};

/// Input bytes per block.
pub const BLOCK: usize = 1 << 20;
/// Deflate's window: the dictionary carried from one block to the next.
const WINDOW: usize = 32 * 1024;
/// Bytes sampled from each block to judge how well it compresses.
const SAMPLE: usize = 16 * 1024;
/// Share of sample positions whose 4 bytes appeared before in the sample, below which matches
/// are not worth looking for: dump text is far above (40-90%), random hex near 12%, base64
/// near 0.
const FEW_REPEATS: f64 = 0.25;
/// Bits of entropy per byte (order 0) above which a block without repeats is stored.
const EVEN_BITS: f64 = 7.9;

/// How a block is deflated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Effort {
    Level(u32),
    HuffmanOnly,
    Stored,
}

struct Job {
    index: u64,
    data: Vec<u8>,
    dictionary: Option<Arc<[u8]>>,
    last: bool,
}

type Done = (u64, io::Result<Vec<u8>>);

/// A gzip writer that compresses on `threads` worker threads.
pub struct ParallelGzip<W: Write> {
    inner: Option<W>,
    level: u32,
    jobs: Option<SyncSender<Job>>,
    results: Receiver<Done>,
    workers: Vec<JoinHandle<()>>,
    block: Vec<u8>,
    dictionary: Option<Arc<[u8]>>,
    crc: crc32fast::Hasher,
    total: u64,
    next_index: u64,
    next_to_write: u64,
    pending: BTreeMap<u64, Vec<u8>>,
    in_flight: usize,
    max_in_flight: usize,
    header_written: bool,
}

impl<W: Write> ParallelGzip<W> {
    pub fn new(inner: W, level: u32, threads: usize) -> ParallelGzip<W> {
        let threads = threads.max(1);
        let (job_tx, job_rx) = sync_channel::<Job>(threads);
        let (done_tx, done_rx) = sync_channel::<Done>(threads * 2);
        let job_rx = Arc::new(std::sync::Mutex::new(job_rx));
        let workers = (0..threads)
            .map(|_| {
                let (rx, tx) = (job_rx.clone(), done_tx.clone());
                std::thread::spawn(move || {
                    loop {
                        let job = match rx.lock().map(|r| r.recv()) {
                            Ok(Ok(job)) => job,
                            _ => return,
                        };
                        let out = deflate_block(&job, level);
                        if tx.send((job.index, out)).is_err() {
                            return;
                        }
                    }
                })
            })
            .collect();
        ParallelGzip {
            inner: Some(inner),
            level,
            jobs: Some(job_tx),
            results: done_rx,
            workers,
            block: Vec::with_capacity(BLOCK),
            dictionary: None,
            crc: crc32fast::Hasher::new(),
            total: 0,
            next_index: 0,
            next_to_write: 0,
            pending: BTreeMap::new(),
            in_flight: 0,
            max_in_flight: threads * 2,
            header_written: false,
        }
    }

    fn inner(&mut self) -> &mut W {
        self.inner.as_mut().expect("used after finish")
    }

    fn write_header(&mut self) -> io::Result<()> {
        if !self.header_written {
            let xfl = match self.level {
                9 => 2,
                1 => 4,
                _ => 0,
            };
            // ID1 ID2 CM=deflate FLG=0 MTIME=0 XFL OS=unix
            self.inner().write_all(&[0x1f, 0x8b, 8, 0, 0, 0, 0, 0, xfl, 3])?;
            self.header_written = true;
        }
        Ok(())
    }

    /// Hands the current block to the workers.
    fn submit(&mut self, last: bool) -> io::Result<()> {
        let data = std::mem::replace(&mut self.block, Vec::with_capacity(if last { 0 } else { BLOCK }));
        let next_dictionary: Arc<[u8]> = Arc::from(&data[data.len().saturating_sub(WINDOW)..]);
        let job = Job { index: self.next_index, data, dictionary: self.dictionary.take(), last };
        self.dictionary = Some(next_dictionary);
        self.next_index += 1;
        while self.in_flight >= self.max_in_flight {
            self.collect_one()?;
        }
        self.jobs.as_ref().expect("open").send(job).map_err(|_| io::Error::other("compression worker stopped"))?;
        self.in_flight += 1;
        Ok(())
    }

    /// Waits for one finished block and writes every block that is now in order.
    fn collect_one(&mut self) -> io::Result<()> {
        let (index, out) = self.results.recv().map_err(|_| io::Error::other("compression worker stopped"))?;
        self.in_flight -= 1;
        self.pending.insert(index, out?);
        self.write_header()?;
        while let Some(bytes) = self.pending.remove(&self.next_to_write) {
            self.inner().write_all(&bytes)?;
            self.next_to_write += 1;
        }
        Ok(())
    }

    /// Compresses what is left, writes the trailer and returns the inner writer.
    ///
    /// # Errors
    /// Write errors of the inner writer, or a failed worker.
    pub fn finish(mut self) -> io::Result<W> {
        self.submit(true)?;
        while self.in_flight > 0 {
            self.collect_one()?;
        }
        self.write_header()?;
        let crc = std::mem::take(&mut self.crc).finalize();
        let size = self.total as u32; // ISIZE is the length modulo 2^32
        let mut trailer = [0u8; 8];
        trailer[..4].copy_from_slice(&crc.to_le_bytes());
        trailer[4..].copy_from_slice(&size.to_le_bytes());
        self.inner().write_all(&trailer)?;
        self.shutdown();
        Ok(self.inner.take().expect("present"))
    }

    fn shutdown(&mut self) {
        self.jobs.take();
        while self.results.try_recv().is_ok() {}
        for w in self.workers.drain(..) {
            // Workers may be blocked sending; drain while joining.
            while !w.is_finished() {
                let _ = self.results.recv_timeout(std::time::Duration::from_millis(10));
            }
            let _ = w.join();
        }
    }
}

impl<W: Write> Drop for ParallelGzip<W> {
    fn drop(&mut self) {
        self.shutdown();
    }
}

impl<W: Write> Write for ParallelGzip<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = buf.len().min(BLOCK - self.block.len());
        self.block.extend_from_slice(&buf[..n]);
        self.crc.update(&buf[..n]);
        self.total += n as u64;
        if self.block.len() == BLOCK {
            self.submit(false)?;
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Raw deflate of one block: primed with the dictionary, ended with a sync flush (byte
/// aligned, not final) or, for the last block, a final block.
fn deflate_block(job: &Job, level: u32) -> io::Result<Vec<u8>> {
    let level = match effort(&job.data, level) {
        Effort::Level(l) => l,
        Effort::Stored => 0,
        Effort::HuffmanOnly => return huffman_block(job),
    };
    let mut c = Compress::new(Compression::new(level), false);
    if let Some(dict) = &job.dictionary {
        c.set_dictionary(dict).map_err(io::Error::other)?;
    }
    let flush = if job.last { FlushCompress::Finish } else { FlushCompress::Sync };
    let mut out = Vec::with_capacity(job.data.len() / 2 + 1024);
    loop {
        let consumed = c.total_in() as usize;
        let status = c.compress_vec(&job.data[consumed..], &mut out, flush).map_err(io::Error::other)?;
        let done = c.total_in() as usize == job.data.len()
            && match flush {
                FlushCompress::Finish => status == Status::StreamEnd,
                _ => out.len() < out.capacity(),
            };
        if done {
            return Ok(out);
        }
        out.reserve(out.capacity().max(4096));
    }
}

/// The effort worth spending on `data` (see the module doc).
fn effort(data: &[u8], level: u32) -> Effort {
    if level == 0 || data.len() < 2 * SAMPLE {
        return Effort::Level(level);
    }
    let start = data.len() / 2 - SAMPLE / 2;
    let sample = &data[start..start + SAMPLE];
    let mut seen = vec![0u64; 1 << 12]; // 2^18 bits
    let mut repeats = 0usize;
    for w in sample.windows(4) {
        let h = (u32::from_le_bytes([w[0], w[1], w[2], w[3]]).wrapping_mul(0x9E37_79B1) >> 14) as usize;
        let (word, bit) = (h / 64, 1u64 << (h % 64));
        if seen[word] & bit != 0 {
            repeats += 1;
        }
        seen[word] |= bit;
    }
    if (repeats as f64) >= FEW_REPEATS * (SAMPLE - 3) as f64 {
        return Effort::Level(level);
    }
    let mut counts = [0u32; 256];
    sample.iter().for_each(|b| counts[*b as usize] += 1);
    let bits: f64 = counts
        .iter()
        .filter(|c| **c > 0)
        .map(|c| {
            let p = f64::from(*c) / SAMPLE as f64;
            -p * p.log2()
        })
        .sum();
    if bits > EVEN_BITS { Effort::Stored } else { Effort::HuffmanOnly }
}

/// A block coded with Huffman codes only (no matches, so no dictionary needed).
fn huffman_block(job: &Job) -> io::Result<Vec<u8>> {
    let config = zlib_rs::DeflateConfig {
        level: 6,
        method: zlib_rs::Method::Deflated,
        window_bits: -15,
        mem_level: 8,
        strategy: zlib_rs::Strategy::HuffmanOnly,
    };
    let mut d = zlib_rs::Deflate::new_with_config(config);
    let flush = if job.last { zlib_rs::DeflateFlush::Finish } else { zlib_rs::DeflateFlush::SyncFlush };
    let mut out = vec![0u8; zlib_rs::compress_bound(job.data.len()) + 64];
    let status = d.compress(&job.data, &mut out, flush).map_err(|e| io::Error::other(e.as_str()))?;
    let complete = d.total_in() as usize == job.data.len()
        && (status == zlib_rs::Status::StreamEnd || (!job.last && (d.total_out() as usize) < out.len()));
    if !complete {
        return Err(io::Error::other("Huffman-only deflate did not finish in its bound"));
    }
    out.truncate(d.total_out() as usize);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    fn sample(len: usize) -> Vec<u8> {
        let mut v = Vec::with_capacity(len);
        let mut i: u64 = 0;
        while v.len() < len {
            v.extend_from_slice(
                format!("{i}\tcustomer {}\t{}@example.com\t{:x}\n", i % 977, i % 31, i.wrapping_mul(2654435761))
                    .as_bytes(),
            );
            i += 1;
        }
        v.truncate(len);
        v
    }

    fn round_trip(data: &[u8], threads: usize) -> Vec<u8> {
        let mut z = ParallelGzip::new(Vec::new(), 6, threads);
        for chunk in data.chunks(100_003) {
            z.write_all(chunk).unwrap();
        }
        let gz = z.finish().unwrap();
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(&gz[..]).read_to_end(&mut out).unwrap();
        assert!(out == data, "round trip changed the data ({} bytes in, {} out)", data.len(), out.len());
        gz
    }

    #[test]
    fn output_is_one_standard_gzip_member() {
        for len in [0, 1, BLOCK - 1, BLOCK, BLOCK + 1, 3 * BLOCK + 12345] {
            let data = sample(len);
            let gz = round_trip(&data, 2);
            let mut back = Vec::new();
            flate2::read::GzDecoder::new(&gz[..]).read_to_end(&mut back).unwrap();
            assert!(back == data, "len {len}");
        }
    }

    #[test]
    fn ratio_is_close_to_a_single_stream() {
        let data = sample(6 * BLOCK);
        let parallel = round_trip(&data, 2).len();
        let mut single = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::new(6));
        single.write_all(&data).unwrap();
        let single = single.finish().unwrap().len();
        assert!((parallel as f64) < single as f64 * 1.01, "parallel {parallel} vs single {single}");
    }

    /// Random bytes (stored), their hex and base64 (Huffman only) and text (level 6) in one
    /// stream: one member, byte-exact, no larger than one level-6 stream of the same input.
    #[test]
    fn incompressible_blocks_take_less_effort_and_no_more_room() {
        let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
        let mut random = |n: usize| -> Vec<u8> {
            (0..n)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    x as u8
                })
                .collect()
        };
        let raw = random(2 * BLOCK);
        let hex: Vec<u8> = random(BLOCK).iter().flat_map(|b| format!("{b:02x}").into_bytes()).collect();
        let b64: Vec<u8> = random(BLOCK)
            .iter()
            .map(|b| b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"[(*b % 64) as usize])
            .collect();
        assert_eq!(effort(&raw[..BLOCK], 6), Effort::Stored);
        assert_eq!(effort(&hex[..BLOCK], 6), Effort::HuffmanOnly);
        assert_eq!(effort(&b64, 6), Effort::HuffmanOnly);
        assert_eq!(effort(&sample(BLOCK), 6), Effort::Level(6));
        let data = [raw, hex, b64, sample(2 * BLOCK), vec![b'x'; 100]].concat();
        let parallel = round_trip(&data, 2).len();
        let mut single = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::new(6));
        single.write_all(&data).unwrap();
        let single = single.finish().unwrap().len();
        assert!(parallel <= single, "parallel {parallel} vs single {single}");
    }

    #[test]
    fn write_errors_surface() {
        struct Full;
        impl Write for Full {
            fn write(&mut self, _: &[u8]) -> io::Result<usize> {
                Err(io::Error::new(io::ErrorKind::StorageFull, "No space left on device"))
            }
            fn flush(&mut self) -> io::Result<()> {
                Ok(())
            }
        }
        let mut z = ParallelGzip::new(Full, 6, 2);
        let data = sample(8 * BLOCK);
        let err = z.write_all(&data).and_then(|()| z.finish().map(|_| ())).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::StorageFull);
    }
}
