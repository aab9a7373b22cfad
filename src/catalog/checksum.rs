//! SHA-256 of backup files, computed while writing (no second read), and the
//! `<backup>.sha256` sidecar in `sha256sum` format (`<hex>  <file name>`).

use std::fs::File;
use std::io::{self, BufReader, Read, Write};
use std::path::Path;

use anyhow::{Context, bail};
use sha2::{Digest, Sha256};

use crate::catalog::layout::CHECKSUM_SUFFIX;
use crate::catalog::layout::with_suffix;
use crate::model::spec::EngineKind;
use crate::stream::crypt::{Keys, NoIdentity};
use crate::stream::scan::Summary;

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

/// Lowercase hex of `bytes` (how every sha256 we record is written).
pub fn hex(bytes: &[u8]) -> String {
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
    /// What the scanner found, when the stream was decoded (always without a known checksum).
    pub stream: Option<Summary>,
    /// The file's sha256, when this pass computed it.
    pub sha256: Option<String>,
}

impl Checked {
    /// Fails unless the decoded stream is a complete dump (a pass that did not decode proves
    /// nothing about it: the recorded checksum vouches for a file checked when written).
    ///
    /// # Errors
    /// What is missing, naming the file.
    pub fn require_complete(&self, path: &Path) -> anyhow::Result<()> {
        if let Some(summary) = &self.stream {
            summary.check_complete().with_context(|| format!("{} is not a complete backup", path.display()))?;
        }
        Ok(())
    }
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

/// Checks a backup before it is restored or verified: against `expected` (the sha256 its
/// manifest records) when known; and, when it is not known or `scan` asks for it, a full
/// decompression pass through the engine's scanner in the same read, which catches truncation
/// and corruption of the compressed stream and (see `Checked::require_complete`) a dump that
/// did not finish.
///
/// # Errors
/// A checksum mismatch, a corrupt or truncated compressed stream, or an unreadable file.
pub fn check_integrity(
    path: &Path,
    expected: Option<&str>,
    kind: &EngineKind,
    scan: bool,
    keys: &Keys,
) -> anyhow::Result<Checked> {
    if !scan && let Some(expected) = expected {
        let actual = sha256_file(path)?;
        check_digest(path, expected, &actual)?;
        return Ok(Checked { integrity: Integrity::ChecksumMatched, stream: None, sha256: Some(actual) });
    }
    if crate::stream::crypt::is_encrypted(path) && keys.identity_file.is_none() {
        return Err(NoIdentity(path.display().to_string()).into());
    }
    let file = File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let mut hashing = HashingReader { inner: BufReader::with_capacity(1 << 20, file), hasher: Sha256::new() };
    // Two kinds of failure: the decoder cannot be set up (an identity that does not match, an
    // unreadable age header), or the stream breaks while it is read (corruption, truncation).
    let decoded: Result<io::Result<Option<Summary>>, anyhow::Error> =
        crate::stream::compress::decoder(path, &mut hashing, keys).map(
            |mut decoder| match crate::stream::scan::for_kind(kind) {
                Some(mut scanner) => crate::stream::scan::scan_all(scanner.as_mut(), &mut decoder).map(Some),
                None => io::copy(&mut decoder, &mut io::sink()).map(|_| None),
            },
        );
    // The decoder may stop at the end of the compressed stream (or at the damage); hash the
    // rest too, so that a known checksum names a changed file as such.
    io::copy(&mut hashing, &mut io::sink()).with_context(|| format!("reading {}", path.display()))?;
    let actual = hex(&hashing.hasher.finalize());
    if let Some(expected) = expected {
        check_digest(path, expected, &actual)?;
    }
    let stream = decoded?.with_context(|| {
        let what =
            if crate::stream::crypt::is_encrypted(path) { "decryption or decompression" } else { "decompression" };
        format!("{} is corrupt or truncated ({what} failed)", path.display())
    })?;
    let integrity = if expected.is_some() { Integrity::ChecksumMatched } else { Integrity::StreamDecoded };
    Ok(Checked { integrity, stream, sha256: Some(actual) })
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
