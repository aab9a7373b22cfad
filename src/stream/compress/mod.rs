//! Compression of the dump stream, and decompression for restore and verify.
//!
//! The encoder has an explicit `finish()`: the gzip trailer is written there, and its write
//! errors (a full disk at the very end) must fail the backup, not vanish in a `Drop`.

use std::fs::File;
use std::io::{self, BufReader, Read, Write};
use std::path::Path;

use anyhow::Context;
use flate2::read::MultiGzDecoder;
use flate2::write::GzEncoder;

use crate::stream::crypt::Keys;

pub mod parallel;

/// How backups are compressed (`BACKUP_COMPRESSION`, `BACKUP_COMPRESSION_LEVEL`,
/// `BACKUP_COMPRESSION_THREADS`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    /// A standard `.sql.gz` (one gzip member), compressed on `threads` threads.
    Gzip { level: u32, threads: usize },
    /// `.sql.zst`, multi-threaded zstd with a content checksum.
    Zstd { level: i32, threads: usize },
}

/// The default gzip level, chosen by measurement (docs/PERFORMANCE.md): zlib-rs level 3
/// compresses within 0.5% of level 6 on SQL dumps at 1.5x the speed.
pub const DEFAULT_GZIP_LEVEL: u32 = 3;
/// The default zstd level.
pub const DEFAULT_ZSTD_LEVEL: i32 = 3;
/// The gzip level of a point-in-time base backup when `BACKUP_COMPRESSION_LEVEL` is not set,
/// chosen by measurement (docs/PERFORMANCE.md, "Point-in-time"): level 3 writes 2.7% more
/// than `pg_basebackup -z` (zlib's level 6), zlib-rs's own level 6 (a faster match search
/// than zlib's) still 1.7% more, level 9 0.1% less, in less time on two cores than
/// `pg_basebackup -z` takes on one. A base backup is written once a week and kept for weeks.
pub const BASE_BACKUP_GZIP_LEVEL: u32 = 9;

impl Default for Compression {
    fn default() -> Self {
        Compression::Gzip { level: DEFAULT_GZIP_LEVEL, threads: default_threads() }
    }
}

/// All cores: the dump itself runs in other processes, so compression threads mostly use
/// time the database server leaves free.
pub fn default_threads() -> usize {
    std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1).min(8)
}

impl Compression {
    /// The same compression for one of `jobs` backups running at once: the threads divided
    /// between them (at least one each).
    pub fn shared(self, jobs: usize) -> Compression {
        let split = |t: usize| (t / jobs.max(1)).max(1);
        match self {
            Compression::Gzip { level, threads } => Compression::Gzip { level, threads: split(threads) },
            Compression::Zstd { level, threads } => Compression::Zstd { level, threads: split(threads) },
        }
    }

    /// The compression of a point-in-time base backup: gzip at `BASE_BACKUP_GZIP_LEVEL` when no
    /// level was set (`level_set` false), else this one.
    pub fn for_base_backups(self, level_set: bool) -> Compression {
        match self {
            Compression::Gzip { threads, .. } if !level_set => {
                Compression::Gzip { level: BASE_BACKUP_GZIP_LEVEL, threads }
            }
            other => other,
        }
    }

    /// Parses the env values. Levels: gzip 1–9, zstd 1–19. Threads: 1–64.
    ///
    /// # Errors
    /// An unknown algorithm, or an out-of-range level or thread count.
    pub fn parse(algorithm: Option<&str>, level: Option<&str>, threads: Option<&str>) -> Result<Compression, String> {
        let number = |name: &str, v: Option<&str>| -> Result<Option<i64>, String> {
            v.map(|t| t.trim().parse::<i64>().map_err(|_| format!("{name} \"{t}\" is not a number"))).transpose()
        };
        let level = number("BACKUP_COMPRESSION_LEVEL", level)?;
        let threads = match number("BACKUP_COMPRESSION_THREADS", threads)? {
            None => None,
            Some(n) if (1..=64).contains(&n) => Some(n as usize),
            Some(n) => return Err(format!("BACKUP_COMPRESSION_THREADS {n} is out of range (1-64)")),
        };
        match algorithm.map(str::to_ascii_lowercase).as_deref() {
            None | Some("gzip") | Some("gz") => {
                let level = level.unwrap_or(i64::from(DEFAULT_GZIP_LEVEL));
                if !(1..=9).contains(&level) {
                    return Err(format!("BACKUP_COMPRESSION_LEVEL {level} is out of range for gzip (1-9)"));
                }
                Ok(Compression::Gzip { level: level as u32, threads: threads.unwrap_or_else(default_threads) })
            }
            Some("zstd") | Some("zst") => {
                let level = level.unwrap_or(i64::from(DEFAULT_ZSTD_LEVEL));
                if !(1..=19).contains(&level) {
                    return Err(format!("BACKUP_COMPRESSION_LEVEL {level} is out of range for zstd (1-19)"));
                }
                // One thread by default: zstd outruns pg_dump on one core, and its
                // multi-threaded mode holds several large job buffers (docs/PERFORMANCE.md).
                Ok(Compression::Zstd { level: level as i32, threads: threads.unwrap_or(1) })
            }
            Some(other) => Err(format!("BACKUP_COMPRESSION \"{other}\" is not supported (expected gzip or zstd)")),
        }
    }

    /// File extension without the leading dot.
    pub fn extension(&self) -> &'static str {
        match self {
            Compression::Gzip { .. } => "sql.gz",
            Compression::Zstd { .. } => "sql.zst",
        }
    }

    pub fn describe(&self) -> String {
        match self {
            Compression::Gzip { level, threads } => format!("gzip level {level}, {threads} thread(s)"),
            Compression::Zstd { level, threads } => format!("zstd level {level}, {threads} thread(s)"),
        }
    }

    /// Wraps `inner` in an encoder.
    ///
    /// # Errors
    /// When the zstd encoder cannot be set up.
    pub fn encoder<W: Write + Send + 'static>(&self, inner: W) -> io::Result<Encoder<W>> {
        Ok(match *self {
            Compression::Gzip { level, threads: 1 } => {
                Encoder::Gzip(GzEncoder::new(inner, flate2::Compression::new(level)))
            }
            Compression::Gzip { level, threads } => {
                Encoder::ParallelGzip(parallel::ParallelGzip::new(inner, level, threads))
            }
            Compression::Zstd { level, threads } => {
                let mut e = zstd::stream::write::Encoder::new(inner, level)?;
                e.include_checksum(true)?;
                if threads > 1 {
                    e.multithread(threads as u32)?;
                }
                Encoder::Zstd(e)
            }
        })
    }
}

/// A compressing writer. Call `finish()`; dropping it loses the trailer.
pub enum Encoder<W: Write> {
    Gzip(GzEncoder<W>),
    ParallelGzip(parallel::ParallelGzip<W>),
    Zstd(zstd::stream::write::Encoder<'static, W>),
}

impl<W: Write> Encoder<W> {
    /// Writes the trailer and returns the inner writer.
    ///
    /// # Errors
    /// Write errors of the final blocks.
    pub fn finish(self) -> io::Result<W> {
        match self {
            Encoder::Gzip(e) => e.finish(),
            Encoder::ParallelGzip(e) => e.finish(),
            Encoder::Zstd(e) => e.finish(),
        }
    }
}

impl<W: Write> Write for Encoder<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Encoder::Gzip(e) => e.write(buf),
            Encoder::ParallelGzip(e) => e.write(buf),
            Encoder::Zstd(e) => e.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Encoder::Gzip(e) => e.flush(),
            Encoder::ParallelGzip(e) => e.flush(),
            Encoder::Zstd(e) => e.flush(),
        }
    }
}

/// Opens a backup file for reading its plain SQL, choosing the decoder by extension.
/// Multi-member gzip (some upstream versions appended a second member) is read whole.
///
/// # Errors
/// When the file cannot be opened or its type is unknown.
pub fn open_decoded(path: &Path, keys: &Keys) -> anyhow::Result<Box<dyn Read + Send>> {
    let file = File::open(path).with_context(|| format!("opening {}", path.display()))?;
    decoder(path, file, keys)
}

/// Wraps `raw` (the bytes of the backup file at `path`) in the decoder its name calls for:
/// decryption first for `.age` files (with `keys`), then decompression.
///
/// # Errors
/// When the file type is unknown, or an encrypted file cannot be decrypted with `keys`.
pub fn decoder<'a, R: Read + Send + 'a>(path: &Path, raw: R, keys: &Keys) -> anyhow::Result<Box<dyn Read + Send + 'a>> {
    let full = path.to_string_lossy();
    if let Some(inner) = full.strip_suffix(crate::stream::crypt::SUFFIX) {
        let plain = keys.open(path, raw)?;
        return decompressor(path, Path::new(inner), plain);
    }
    decompressor(path, path, raw)
}

/// The decompressor for `name`'s extension, over `raw`.
fn decompressor<'a, R: Read + Send + 'a>(
    path: &Path,
    name: &Path,
    raw: R,
) -> anyhow::Result<Box<dyn Read + Send + 'a>> {
    let reader = BufReader::with_capacity(1 << 20, raw);
    let name = name.to_string_lossy();
    if name.ends_with(".gz") {
        Ok(Box::new(MultiGzDecoder::new(reader)))
    } else if name.ends_with(".zst") {
        Ok(Box::new(zstd::stream::read::Decoder::with_buffer(reader)?))
    } else {
        anyhow::bail!("{}: unknown backup file type (expected .sql.gz or .sql.zst, optionally .age)", path.display())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_levels_and_algorithms() {
        let t = default_threads();
        assert_eq!(
            Compression::parse(None, None, None).unwrap(),
            Compression::Gzip { level: DEFAULT_GZIP_LEVEL, threads: t }
        );
        assert_eq!(
            Compression::parse(Some("GZIP"), Some("1"), Some("1")).unwrap(),
            Compression::Gzip { level: 1, threads: 1 }
        );
        assert_eq!(
            Compression::parse(Some("zstd"), None, Some("2")).unwrap(),
            Compression::Zstd { level: 3, threads: 2 }
        );
        assert!(Compression::parse(Some("gzip"), Some("0"), None).is_err());
        assert!(Compression::parse(Some("zstd"), Some("20"), None).is_err());
        assert!(Compression::parse(Some("gzip"), Some("x"), None).is_err());
        assert!(Compression::parse(None, None, Some("0")).is_err());
        assert!(Compression::parse(Some("bzip2"), None, None).is_err());
    }

    #[test]
    fn base_backups_take_a_higher_gzip_level_unless_one_is_set() {
        let gzip = Compression::Gzip { level: 3, threads: 2 };
        assert_eq!(gzip.for_base_backups(false), Compression::Gzip { level: BASE_BACKUP_GZIP_LEVEL, threads: 2 });
        assert_eq!(gzip.for_base_backups(true), gzip);
        let zstd = Compression::Zstd { level: 3, threads: 1 };
        assert_eq!(zstd.for_base_backups(false), zstd);
    }

    #[test]
    fn every_encoder_round_trips_through_a_file() {
        let dir = tempfile::tempdir().unwrap();
        let text: String = (0..200_000).map(|i| format!("INSERT {i};\n")).collect();
        for c in [
            Compression::Gzip { level: 6, threads: 1 },
            Compression::Gzip { level: 6, threads: 2 },
            Compression::Zstd { level: 3, threads: 1 },
            Compression::Zstd { level: 3, threads: 2 },
        ] {
            let path = dir.path().join(format!("a.{}", c.extension()));
            let mut enc = c.encoder(File::create(&path).unwrap()).unwrap();
            enc.write_all(text.as_bytes()).unwrap();
            enc.finish().unwrap().sync_all().unwrap();
            let mut back = String::new();
            open_decoded(&path, &Keys::default()).unwrap().read_to_string(&mut back).unwrap();
            assert!(back == text, "{c:?}");
        }
    }
}
