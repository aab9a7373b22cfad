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

/// How backups are compressed (`BACKUP_COMPRESSION`, `BACKUP_COMPRESSION_LEVEL`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    Gzip { level: u32 },
}

impl Default for Compression {
    fn default() -> Self {
        Compression::Gzip { level: 6 }
    }
}

impl Compression {
    /// Parses the env values. Levels: gzip 1–9.
    ///
    /// # Errors
    /// An unknown algorithm or an out-of-range level.
    pub fn parse(algorithm: Option<&str>, level: Option<&str>) -> Result<Compression, String> {
        let level = level
            .map(|l| l.parse::<u32>().map_err(|_| format!("BACKUP_COMPRESSION_LEVEL \"{l}\" is not a number")))
            .transpose()?;
        match algorithm.map(str::to_ascii_lowercase).as_deref() {
            None | Some("gzip") | Some("gz") => {
                let level = level.unwrap_or(6);
                if !(1..=9).contains(&level) {
                    return Err(format!("BACKUP_COMPRESSION_LEVEL {level} is out of range for gzip (1-9)"));
                }
                Ok(Compression::Gzip { level })
            }
            Some(other) => Err(format!("BACKUP_COMPRESSION \"{other}\" is not supported (expected gzip)")),
        }
    }

    /// File extension without the leading dot.
    pub fn extension(&self) -> &'static str {
        match self {
            Compression::Gzip { .. } => "sql.gz",
        }
    }

    pub fn describe(&self) -> String {
        match self {
            Compression::Gzip { level } => format!("gzip level {level}"),
        }
    }

    /// Wraps `inner` in an encoder.
    pub fn encoder<W: Write>(&self, inner: W) -> Encoder<W> {
        match *self {
            Compression::Gzip { level } => Encoder::Gzip(GzEncoder::new(inner, flate2::Compression::new(level))),
        }
    }
}

/// A compressing writer. Call `finish()`; dropping it loses the trailer.
pub enum Encoder<W: Write> {
    Gzip(GzEncoder<W>),
}

impl<W: Write> Encoder<W> {
    /// Writes the trailer and returns the inner writer.
    ///
    /// # Errors
    /// Write errors of the final blocks.
    pub fn finish(self) -> io::Result<W> {
        match self {
            Encoder::Gzip(e) => e.finish(),
        }
    }
}

impl<W: Write> Write for Encoder<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Encoder::Gzip(e) => e.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Encoder::Gzip(e) => e.flush(),
        }
    }
}

/// Opens a backup file for reading its plain SQL, choosing the decoder by extension.
/// Multi-member gzip (some upstream versions appended a second member) is read whole.
///
/// # Errors
/// When the file cannot be opened or its type is unknown.
pub fn open_decoded(path: &Path) -> anyhow::Result<Box<dyn Read + Send>> {
    let file = File::open(path).with_context(|| format!("opening {}", path.display()))?;
    decoder(path, file)
}

/// Wraps `raw` (the bytes of the backup file at `path`) in the decoder its name calls for.
///
/// # Errors
/// When the file type is unknown.
pub fn decoder<R: Read + Send + 'static>(path: &Path, raw: R) -> anyhow::Result<Box<dyn Read + Send>> {
    let reader = BufReader::with_capacity(1 << 20, raw);
    let name = path.to_string_lossy();
    if name.ends_with(".gz") {
        Ok(Box::new(MultiGzDecoder::new(reader)))
    } else {
        anyhow::bail!("{}: unknown backup file type (expected .sql.gz)", path.display())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_levels_and_algorithms() {
        assert_eq!(Compression::parse(None, None).unwrap(), Compression::Gzip { level: 6 });
        assert_eq!(Compression::parse(Some("GZIP"), Some("1")).unwrap(), Compression::Gzip { level: 1 });
        assert!(Compression::parse(Some("gzip"), Some("0")).is_err());
        assert!(Compression::parse(Some("gzip"), Some("x")).is_err());
        assert!(Compression::parse(Some("bzip2"), None).is_err());
    }

    #[test]
    fn gzip_round_trip_through_a_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.sql.gz");
        let mut enc = Compression::default().encoder(File::create(&path).unwrap());
        enc.write_all(b"SELECT 1;\n").unwrap();
        enc.finish().unwrap().sync_all().unwrap();
        let mut text = String::new();
        open_decoded(&path).unwrap().read_to_string(&mut text).unwrap();
        assert_eq!(text, "SELECT 1;\n");
    }
}
