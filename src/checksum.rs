//! SHA-256 of backup files, computed while writing (no second read), and the
//! `<backup>.sha256` sidecar in `sha256sum` format (`<hex>  <file name>`).

use std::fs::File;
use std::io::{self, BufReader, Read, Write};
use std::path::Path;

use anyhow::{Context, bail};
use sha2::{Digest, Sha256};

use crate::catalog::with_suffix;
use crate::layout::CHECKSUM_SUFFIX;
use crate::scan::Summary;
use crate::spec::EngineKind;

/// Passes bytes through to `inner`, hashing and counting them.
pub struct HashingWriter<W> {
    inner: W,
    hasher: Sha256,
    bytes: u64,
}

impl<W: Write> HashingWriter<W> {
    pub fn new(inner: W) -> Self {
        HashingWriter { inner, hasher: Sha256::new(), bytes: 0 }
    }

    /// Returns the inner writer, the hex digest and the byte count.
    pub fn finish(self) -> (W, String, u64) {
        (self.inner, hex(&self.hasher.finalize()), self.bytes)
    }
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.bytes += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The sidecar's content for `file_name`.
pub fn sidecar_line(digest: &str, file_name: &str) -> String {
    format!("{digest}  {file_name}\n")
}

/// Reads the digest from `<backup>.sha256`; `None` when there is no sidecar.
///
/// # Errors
/// When the sidecar exists but cannot be read or is malformed.
pub fn read_sidecar(backup: &Path) -> anyhow::Result<Option<String>> {
    let path = with_suffix(backup, CHECKSUM_SUFFIX);
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
    };
    let digest = text.split_whitespace().next().unwrap_or_default();
    if digest.len() != 64 || !digest.bytes().all(|b| b.is_ascii_hexdigit()) {
        bail!("{} is not a sha256sum line", path.display());
    }
    Ok(Some(digest.to_ascii_lowercase()))
}

/// Hashes a whole file.
///
/// # Errors
/// When the file cannot be read.
pub fn sha256_file(path: &Path) -> anyhow::Result<String> {
    let mut reader =
        BufReader::with_capacity(1 << 20, File::open(path).with_context(|| format!("opening {}", path.display()))?);
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = reader.read(&mut buf).with_context(|| format!("reading {}", path.display()))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hex(&hasher.finalize()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashing_writer_matches_known_digest() {
        let mut w = HashingWriter::new(Vec::new());
        w.write_all(b"abc").unwrap();
        let (inner, digest, n) = w.finish();
        assert_eq!(inner, b"abc");
        assert_eq!(n, 3);
        assert_eq!(digest, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    }

    #[test]
    fn sidecar_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let backup = dir.path().join("x.sql.gz");
        std::fs::write(&backup, b"abc").unwrap();
        assert_eq!(read_sidecar(&backup).unwrap(), None);
        let digest = sha256_file(&backup).unwrap();
        std::fs::write(with_suffix(&backup, CHECKSUM_SUFFIX), sidecar_line(&digest, "x.sql.gz")).unwrap();
        assert_eq!(read_sidecar(&backup).unwrap(), Some(digest));
        std::fs::write(with_suffix(&backup, CHECKSUM_SUFFIX), "nonsense").unwrap();
        assert!(read_sidecar(&backup).is_err());
    }
}

/// How a backup's integrity was established before use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Integrity {
    /// The `.sha256` sidecar matched.
    ChecksumMatched,
    /// No sidecar (e.g. a bash-version file): the whole compressed stream decoded cleanly.
    StreamDecoded,
}

/// The result of the integrity pass.
#[derive(Debug, Clone)]
pub struct Checked {
    pub integrity: Integrity,
    /// What the scanner found, when the stream was decoded (always without a sidecar).
    pub stream: Option<Summary>,
}

/// Passes reads through, hashing them (the compressed file, while it is being decoded).
struct HashingReader<R> {
    inner: R,
    hasher: Sha256,
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }
}

/// Checks a backup before it is restored or verified: the sidecar's sha256 when present;
/// and, when there is no sidecar or `scan` asks for it, a full decompression pass through
/// the engine's scanner in the same read, which catches truncation and corruption of the
/// compressed stream and a dump that did not finish (no trailer).
///
/// # Errors
/// A checksum mismatch, a corrupt or truncated stream, an incomplete dump, or an unreadable
/// file; each message says the file is not usable.
pub fn check_integrity(path: &Path, kind: &EngineKind, scan: bool) -> anyhow::Result<Checked> {
    let expected = read_sidecar(path)?;
    if !scan && let Some(expected) = &expected {
        let actual = sha256_file(path)?;
        check_digest(path, expected, &actual)?;
        return Ok(Checked { integrity: Integrity::ChecksumMatched, stream: None });
    }
    let file = File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let mut hashing = HashingReader { inner: BufReader::with_capacity(1 << 20, file), hasher: Sha256::new() };
    let stream = {
        let mut decoder = crate::compress::decoder(path, &mut hashing)?;
        let what = || format!("{} is corrupt or truncated (decompression failed)", path.display());
        match crate::scan::for_kind(kind) {
            Some(mut scanner) => Some(crate::scan::scan_all(scanner.as_mut(), &mut decoder).with_context(what)?),
            None => {
                io::copy(&mut decoder, &mut io::sink()).with_context(what)?;
                None
            }
        }
    };
    // The decoder may stop at the end of the compressed stream; hash what follows, too.
    io::copy(&mut hashing, &mut io::sink()).with_context(|| format!("reading {}", path.display()))?;
    if let Some(expected) = &expected {
        check_digest(path, expected, &hex(&hashing.hasher.finalize()))?;
    }
    if let Some(summary) = &stream {
        summary.check_complete().with_context(|| format!("{} is not a complete backup", path.display()))?;
    }
    let integrity = if expected.is_some() { Integrity::ChecksumMatched } else { Integrity::StreamDecoded };
    Ok(Checked { integrity, stream })
}

fn check_digest(path: &Path, expected: &str, actual: &str) -> anyhow::Result<()> {
    if actual != expected {
        bail!(
            "{} does not match its checksum (expected sha256 {expected}, got {actual}): the file is corrupt or was changed",
            path.display()
        );
    }
    Ok(())
}
