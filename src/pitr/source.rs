//! Where recovery reads the archive's stored files: the local archive, or a mirror's copy of
//! it (`-r … --at T --remote`) read as it streams, never staged. A file is looked for under
//! the extension the store writes, then under the archive's other extensions (compression or
//! encryption changed since it was stored). Each file is checked against its record before
//! it is used: a WAL file (a segment at most, held in memory) before it is decoded; a base
//! backup as it streams, before the server starts on what it unpacked.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use anyhow::{Context, anyhow};

use super::archive::{EXTENSIONS, Store};
use super::index::Archived;
use super::wal::Segment;
use crate::catalog::checksum::HashingWriter;
use crate::catalog::durable::PartialFile;
use crate::storage::Storage;
use crate::stream::compress;
use crate::stream::crypt::Keys;

/// The most a stored WAL file may hold beyond its segment's size (a compressed or encrypted
/// copy of incompressible WAL is a little larger): a bigger one is refused, not read into
/// memory.
const WAL_SLACK: u64 = 1 << 20;

/// A store's files, local or on a mirror.
#[derive(Clone, Copy)]
pub struct Source<'a> {
    pub store: &'a Store,
    pub mirror: Option<&'a dyn Storage>,
}

impl<'a> Source<'a> {
    pub fn local(store: &'a Store) -> Source<'a> {
        Source { store, mirror: None }
    }

    /// Hands the stored file `path` (named with the store's extension) to `read` with the name
    /// it is stored under; returns its size.
    ///
    /// # Errors
    /// The file is under none of the archive's extensions, the transfer fails, or `read` does.
    pub fn read(
        &self,
        path: &Path,
        read: &mut dyn FnMut(&Path, &mut (dyn Read + Send)) -> anyhow::Result<()>,
    ) -> anyhow::Result<u64> {
        let Some(mirror) = self.mirror else {
            let path = self.store.existing(path);
            let mut file = std::fs::File::open(&path).with_context(|| format!("opening {}", path.display()))?;
            return crate::storage::feed(&mut file, &mut |r| read(&path, r));
        };
        let ext = self.store.extension();
        let text = path.to_string_lossy().into_owned();
        let stem = text.strip_suffix(&ext).unwrap_or(&text).to_string();
        let mut first = None;
        for e in std::iter::once(ext.as_str()).chain(EXTENSIONS.iter().copied().filter(|e| *e != ext)) {
            let name = PathBuf::from(format!("{stem}{e}"));
            let key = self.store.archive.key(&name);
            // Once the object was found, its failure is the answer; before, the next name is tried.
            let mut found = false;
            match mirror.stream(&key, &mut |r| {
                found = true;
                read(&name, r)
            }) {
                Ok(n) => return Ok(n),
                Err(err) if found => return Err(err.context(format!("reading {key} from {}", mirror.name()))),
                Err(err) => {
                    first.get_or_insert(err);
                }
            }
        }
        let err = first.unwrap_or_else(|| anyhow!("no extension"));
        Err(err.context(format!("downloading {} from {}", text, mirror.name())))
    }

    /// The whole stored file `path`, at most `limit` bytes, with the name it is stored under.
    ///
    /// # Errors
    /// As `read`, or the file is larger than `limit`.
    pub fn bytes(&self, path: &Path, limit: u64) -> anyhow::Result<(PathBuf, Vec<u8>)> {
        let mut out = (PathBuf::new(), Vec::new());
        self.read(path, &mut |name, r| {
            out.0 = name.to_path_buf();
            out.1.clear();
            r.take(limit + 1).read_to_end(&mut out.1).with_context(|| format!("reading {}", name.display()))?;
            if out.1.len() as u64 > limit {
                anyhow::bail!("{} is larger than {limit} bytes: not a file the archive wrote", name.display());
            }
            Ok(())
        })?;
        Ok(out)
    }

    /// Puts archived segment `a` back into `dir` as the server wrote it: the stored file's
    /// sha256 checked first, the decoded size checked, written under a temporary name,
    /// fsynced and renamed.
    ///
    /// # Errors
    /// The stored file is missing or does not match its record, cannot be decrypted (no
    /// identity) or decoded, or the copy cannot be written.
    pub fn segment(&self, a: &Archived, size: u64, keys: &Keys, dir: &Path) -> anyhow::Result<PathBuf> {
        let segment = Segment { timeline: a.timeline, number: a.number };
        let path = self.store.archive.wal(a.timeline, &segment.name(size), &self.store.extension());
        self.put_back(&path, &a.sha256, segment, size, keys, dir).map(|(target, _)| target)
    }

    /// Puts the archived `.partial` of `segment` (recorded as `sha256` in `partial.json`) into
    /// `dir` under the segment's own name (pg_receivewal's partial files are whole-sized):
    /// recovery replays it as the last segment. Returns it and the stored file's size.
    ///
    /// # Errors
    /// As `segment`.
    pub fn partial(
        &self,
        segment: Segment,
        sha256: &str,
        size: u64,
        keys: &Keys,
        dir: &Path,
    ) -> anyhow::Result<(PathBuf, u64)> {
        let name = format!("{}.partial", segment.name(size));
        let path = self.store.archive.wal(segment.timeline, &name, &self.store.extension());
        self.put_back(&path, sha256, segment, size, keys, dir)
    }

    fn put_back(
        &self,
        path: &Path,
        sha: &str,
        segment: Segment,
        size: u64,
        keys: &Keys,
        dir: &Path,
    ) -> anyhow::Result<(PathBuf, u64)> {
        let (stored, bytes) = self.bytes(path, size + WAL_SLACK)?;
        let mut hashing = HashingWriter::new(std::io::sink());
        hashing.write_all(&bytes)?;
        let (_, sha256, _) = hashing.finish();
        if sha256 != sha {
            anyhow::bail!("{} does not match its record (sha256 {sha256}, recorded {sha})", stored.display());
        }
        let target = dir.join(segment.name(size));
        let (guard, mut file) = PartialFile::create(&target)?;
        let copied = std::io::copy(&mut compress::decoder(&stored, &bytes[..], keys)?, &mut file)
            .with_context(|| format!("decoding {} into {}", stored.display(), guard.partial_path().display()))?;
        if copied != size {
            anyhow::bail!("{} holds {copied} bytes, not a whole segment of {size}", stored.display());
        }
        guard.commit(file)?;
        Ok((target, bytes.len() as u64))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pitr::layout::Archive;
    use crate::storage::local::LocalStorage;
    use crate::stream::compress::Compression;

    /// A mirror's copy (gzip) read by a store that writes zstd now: the segment found under
    /// the extension it was stored with, checked, decoded; a copy that does not match its
    /// record, one too large to be a segment, and a missing one are refused by name.
    #[test]
    fn a_mirror_copy_is_found_checked_and_bounded() {
        let dir = tempfile::tempdir().unwrap();
        let (remote, staging) = (dir.path().join("remote"), dir.path().join("staging"));
        let written = Store::new(Archive::new(&remote, "db", 5432), Compression::default(), None);
        let size = 1u64 << 20;
        let src = dir.path().join("segment");
        let body: Vec<u8> = (0..size).map(|i| (i % 251) as u8).collect();
        std::fs::write(&src, &body).unwrap();
        let stored = written.segment(&src, Segment { timeline: 1, number: 3 }, size).unwrap();
        let record = Archived {
            timeline: 1,
            number: 3,
            size: stored.size,
            sha256: stored.sha256.clone(),
            received_at: chrono::Utc::now(),
        };
        let zstd = Compression::parse(Some("zstd"), None, None).unwrap();
        let store = Store::new(Archive::new(&staging, "db", 5432), zstd, None);
        let mirror = LocalStorage::new(&remote);
        let source = Source { store: &store, mirror: Some(&mirror) };
        let out = tempfile::tempdir().unwrap();
        let back = source.segment(&record, size, &Keys::default(), out.path()).unwrap();
        assert_eq!(std::fs::read(&back).unwrap(), body);
        assert!(store.archive.dir.starts_with(&staging) && !store.archive.dir.join("wal").exists(), "nothing staged");

        let wrong = Archived { sha256: "00".repeat(32), ..record.clone() };
        let err = source.segment(&wrong, size, &Keys::default(), out.path()).unwrap_err();
        assert!(format!("{err:#}").contains("does not match its record"), "{err:#}");

        std::fs::write(&stored.path, vec![7u8; (size + WAL_SLACK + 1) as usize]).unwrap();
        let err = source.segment(&record, size, &Keys::default(), out.path()).unwrap_err();
        assert!(format!("{err:#}").contains("is larger than"), "{err:#}");

        let missing = Archived { number: 4, ..record };
        let err = source.segment(&missing, size, &Keys::default(), out.path()).unwrap_err();
        assert!(format!("{err:#}").contains("000000010000000000000004"), "{err:#}");
    }
}
