//! Putting WAL into the archive: each file compressed (one thread: segments are small and
//! many), encrypted when encryption is on, hashed as stored, written under its
//! `.in_progress` name, fsynced and renamed (`catalog::durable`), then recorded in the index
//! by the caller. The `.partial` is stored the same way, replacing its previous copy.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use anyhow::Context;

use super::index::Archived;
use super::layout::Archive;
use super::wal::{Segment, Switch, parse_history};
use crate::catalog::checksum::HashingWriter;
use crate::catalog::durable::PartialFile;
use crate::catalog::layout::{IN_PROGRESS_SUFFIX, with_suffix};
use crate::stream::compress::{Compression, Encoder};
use crate::stream::crypt::{Keys, Recipients, Sealed};

/// Every extension a stored file can have.
pub const EXTENSIONS: [&str; 4] = [".gz", ".zst", ".gz.age", ".zst.age"];

/// How one server's archive stores files.
#[derive(Debug, Clone)]
pub struct Store {
    pub archive: Archive,
    compression: Compression,
    /// A base backup's: the same algorithm, maybe another level (`with_base_compression`).
    base_compression: Compression,
    recipients: Option<Recipients>,
}

/// A file as stored: its size and the sha256 of the stored bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stored {
    pub path: PathBuf,
    pub size: u64,
    pub sha256: String,
}

impl Store {
    pub fn new(archive: Archive, compression: Compression, recipients: Option<Recipients>) -> Store {
        Store { archive, compression, base_compression: compression, recipients }
    }

    /// The same store with base backups compressed by `base` (`PitrSettings::base_compression`;
    /// the same algorithm as the store's, so the extension is the same).
    pub fn with_base_compression(self, base: Compression) -> Store {
        Store { base_compression: base, ..self }
    }

    /// The writer a stored file goes through: compression (on every thread and at the base
    /// backups' level for a base backup, on one for WAL files, which are small and many), encryption when on, the hash of the
    /// stored bytes.
    ///
    /// # Errors
    /// The encryption or the compression cannot be set up.
    pub fn writer(&self, file: File, big: bool) -> anyhow::Result<Encoder<Sealed<HashingWriter<BufWriter<File>>>>> {
        let compression = if big { self.base_compression } else { self.compression.shared(usize::MAX) };
        let hashing = HashingWriter::new(BufWriter::with_capacity(1 << 20, file));
        let sealed = Sealed::new(hashing, self.recipients.as_ref()).context("starting the encryption")?;
        compression.encoder(sealed).context("starting the compression")
    }

    /// Ends a `writer`: the trailers written and flushed; returns the file, the sha256 and
    /// the size of what was stored.
    ///
    /// # Errors
    /// A write failed (a full volume).
    pub fn finish_writer(
        encoder: Encoder<Sealed<HashingWriter<BufWriter<File>>>>,
    ) -> std::io::Result<(File, String, u64)> {
        let (mut buffered, sha256, size) = encoder.finish()?.finish()?.finish();
        buffered.flush()?;
        let file = buffered.into_inner().map_err(|e| e.into_error())?;
        Ok((file, sha256, size))
    }

    /// `.gz` or `.zst`, then `.age` when encrypted.
    pub fn extension(&self) -> String {
        let age = if self.recipients.is_some() { crate::stream::crypt::SUFFIX } else { "" };
        let compressed = match self.compression {
            Compression::Gzip { .. } => ".gz",
            Compression::Zstd { .. } => ".zst",
        };
        format!("{compressed}{age}")
    }

    /// The stored file at `path` (written with this store's extension) as it is on disk:
    /// when it is not there, the same file with another of the archive's extensions
    /// (compression or encryption changed since it was written), else `path` itself.
    pub fn existing(&self, path: &Path) -> PathBuf {
        if path.exists() {
            return path.to_path_buf();
        }
        let text = path.to_string_lossy();
        let Some(stem) = text.strip_suffix(&self.extension()) else { return path.to_path_buf() };
        EXTENSIONS
            .iter()
            .map(|e| PathBuf::from(format!("{stem}{e}")))
            .find(|p| p.exists())
            .unwrap_or_else(|| path.to_path_buf())
    }

    /// Stores a finished segment from the spool.
    ///
    /// # Errors
    /// Reading it, or writing, syncing or renaming the stored copy.
    pub fn segment(&self, src: &Path, segment: Segment, size: u64) -> anyhow::Result<Stored> {
        self.store(src, &self.archive.wal(segment.timeline, &segment.name(size), &self.extension()))
    }

    /// Stores the segment being written (`<name>.partial`), replacing the previous copy.
    ///
    /// # Errors
    /// As `segment`.
    pub fn partial(&self, src: &Path, segment: Segment, size: u64) -> anyhow::Result<Stored> {
        let name = format!("{}.partial", segment.name(size));
        self.store(src, &self.archive.wal(segment.timeline, &name, &self.extension()))
    }

    /// Stores a timeline's history file; returns its ancestors.
    ///
    /// # Errors
    /// Not a history file, or as `segment`.
    pub fn history(&self, src: &Path, timeline: u32) -> anyhow::Result<(Stored, Vec<Switch>)> {
        let text = std::fs::read_to_string(src).with_context(|| format!("reading {}", src.display()))?;
        let switches = parse_history(&text).map_err(|e| anyhow::anyhow!("{}: {e}", src.display()))?;
        Ok((self.store(src, &self.archive.history(timeline, &self.extension()))?, switches))
    }

    /// Puts archived segment `a` back into `dir` as the server wrote it (a spool that was
    /// lost): `Source::segment` on the local archive.
    ///
    /// # Errors
    /// As `Source::segment`.
    pub fn restore_segment(&self, a: &Archived, size: u64, keys: &Keys, dir: &Path) -> anyhow::Result<PathBuf> {
        super::source::Source::local(self).segment(a, size, keys, dir)
    }

    /// Stores `content` (a base backup's manifest) at `target`.
    ///
    /// # Errors
    /// As `segment`.
    pub fn bytes(&self, content: &[u8], target: &Path) -> anyhow::Result<Stored> {
        self.store_from(&mut &content[..], target)
    }

    fn store(&self, src: &Path, target: &Path) -> anyhow::Result<Stored> {
        let mut input = File::open(src).with_context(|| format!("opening {}", src.display()))?;
        self.store_from(&mut input, target)
    }

    fn store_from(&self, input: &mut dyn std::io::Read, target: &Path) -> anyhow::Result<Stored> {
        let (guard, file) = prepare(target)?;
        let mut encoder = self.writer(file, false)?;
        let written = std::io::copy(input, &mut encoder).and_then(|_| Store::finish_writer(encoder));
        let (file, sha256, size) = written.with_context(|| format!("writing {}", guard.partial_path().display()))?;
        guard.commit(file)?;
        Ok(Stored { path: target.to_path_buf(), size, sha256 })
    }
}

/// The archived `.partial`'s segment and receive time (`partial.json`), when there is one.
pub fn partial_state(archive: &Archive) -> Option<(Segment, chrono::DateTime<chrono::Utc>)> {
    partial_record(archive).map(|(s, at, _)| (s, at))
}

/// `partial_state` with the stored copy's sha256.
pub fn partial_record(archive: &Archive) -> Option<(Segment, chrono::DateTime<chrono::Utc>, String)> {
    #[derive(serde::Deserialize)]
    struct Partial {
        timeline: u32,
        number: u64,
        received_at: chrono::DateTime<chrono::Utc>,
        sha256: String,
    }
    let bytes = std::fs::read(archive.dir.join("partial.json")).ok()?;
    let p: Partial = serde_json::from_slice(&bytes).ok()?;
    Some((Segment { timeline: p.timeline, number: p.number }, p.received_at, p.sha256))
}

/// `target`'s `.in_progress` file, its folder made again first (the bash version removes
/// empty folders) and a copy left by a killed process removed (one writer per server: the
/// server's lock).
///
/// # Errors
/// The folder or the file cannot be created.
pub fn prepare(target: &Path) -> anyhow::Result<(PartialFile, File)> {
    if let Some(dir) = target.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let _ = std::fs::remove_file(with_suffix(target, IN_PROGRESS_SUFFIX));
    PartialFile::create(target)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    #[test]
    fn a_stored_segment_decodes_to_its_bytes_and_its_hash_is_of_the_stored_file() {
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("000000010000000000000003");
        let body: Vec<u8> = (0..(1u32 << 20)).map(|i| (i % 251) as u8).collect();
        std::fs::write(&src, &body).unwrap();
        let store = Store::new(Archive::new(dir.path(), "db", 5432), Compression::default(), None);
        let segment = Segment { timeline: 1, number: 3 };
        let stored = store.segment(&src, segment, 1 << 20).unwrap();
        assert!(stored.path.ends_with("wal/00000001/000000010000000000000003.gz"), "{}", stored.path.display());
        let bytes = std::fs::read(&stored.path).unwrap();
        assert_eq!(bytes.len() as u64, stored.size);
        use sha2::Digest;
        let hex: String = sha2::Sha256::digest(&bytes).iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(hex, stored.sha256);
        let mut back = Vec::new();
        flate2::read::GzDecoder::new(&bytes[..]).read_to_end(&mut back).unwrap();
        assert_eq!(back, body);
        // Back into a spool, checked against the record.
        let record = Archived {
            timeline: 1,
            number: 3,
            size: stored.size,
            sha256: stored.sha256.clone(),
            received_at: chrono::Utc::now(),
        };
        let spool = tempfile::tempdir().unwrap();
        let back = store.restore_segment(&record, 1 << 20, &Keys::default(), spool.path()).unwrap();
        assert_eq!(std::fs::read(&back).unwrap(), body);
        let wrong = Archived { sha256: "00".repeat(32), ..record.clone() };
        let err = store.restore_segment(&wrong, 1 << 20, &Keys::default(), spool.path()).unwrap_err();
        assert!(format!("{err:#}").contains("does not match its record"), "{err:#}");
        // A partial replaces its previous copy; nothing is left under an in-progress name.
        store.partial(&src, Segment { timeline: 1, number: 4 }, 1 << 20).unwrap();
        let again = store.partial(&src, Segment { timeline: 1, number: 4 }, 1 << 20).unwrap();
        assert!(again.path.to_string_lossy().ends_with("000000010000000000000004.partial.gz"));
        let names: Vec<String> = std::fs::read_dir(again.path.parent().unwrap())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert!(names.iter().all(|n| !n.contains("in_progress")), "{names:?}");
        // A history file: stored and read.
        let h = dir.path().join("00000002.history");
        std::fs::write(&h, "1\t0/3000158\tno recovery target specified\n").unwrap();
        let (stored, switches) = store.history(&h, 2).unwrap();
        assert!(stored.path.ends_with("history/00000002.history.gz"));
        assert_eq!(switches.len(), 1);
        // A store whose settings changed since (zstd now) still finds what gzip wrote.
        let zstd = Store::new(store.archive.clone(), Compression::parse(Some("zstd"), None, None).unwrap(), None);
        let wanted = zstd.archive.history(2, &zstd.extension());
        assert!(wanted.to_string_lossy().ends_with(".zst"));
        assert_eq!(zstd.existing(&wanted), stored.path);
        let back = zstd.restore_segment(&record, 1 << 20, &Keys::default(), spool.path()).unwrap();
        assert_eq!(std::fs::read(&back).unwrap(), body);
    }
}
