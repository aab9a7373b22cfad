//! Durable, atomic file writes: `<name>.in_progress` → fsync → rename → fsync the directory.
//!
//! `PartialFile` removes its `.in_progress` file when dropped uncommitted, so every error path
//! (a failed dump, a full disk, a panic, a cancellation) leaves no partial backup behind.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use anyhow::Context;

use crate::catalog::layout::IN_PROGRESS_SUFFIX;
use crate::catalog::layout::with_suffix;

/// A file being written under its `.in_progress` name. Dropped uncommitted, it is deleted.
#[derive(Debug)]
pub struct PartialFile {
    partial: PathBuf,
    target: PathBuf,
    committed: bool,
}

impl PartialFile {
    /// Creates `<target>.in_progress` (mode 0640, failing if it exists) and returns the guard
    /// and the open file.
    ///
    /// # Errors
    /// When the file cannot be created (permissions, read-only volume, name clash).
    pub fn create(target: &Path) -> anyhow::Result<(PartialFile, File)> {
        let partial = with_suffix(target, IN_PROGRESS_SUFFIX);
        let open = || OpenOptions::new().write(true).create_new(true).mode(0o640).open(&partial);
        let mut file = open();
        // Another process's empty-folder cleanup may remove the dated folder between its
        // creation and this file's (shards share one volume): create it again and retry.
        for _ in 0..3 {
            match &file {
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    if let Some(dir) = partial.parent() {
                        let _ = fs::create_dir_all(dir);
                    }
                    file = open();
                }
                _ => break,
            }
        }
        let file = file.with_context(|| format!("creating {}", partial.display()))?;
        Ok((PartialFile { partial, target: target.to_path_buf(), committed: false }, file))
    }

    pub fn partial_path(&self) -> &Path {
        &self.partial
    }

    /// Flushes `file` to disk, renames it to the target name and syncs the directory.
    ///
    /// # Errors
    /// When fsync or rename fails (e.g. disk full); the partial file is then removed.
    pub fn commit(mut self, file: File) -> anyhow::Result<()> {
        file.sync_all().with_context(|| format!("syncing {} to disk", self.partial.display()))?;
        drop(file);
        fs::rename(&self.partial, &self.target)
            .with_context(|| format!("renaming {} to its final name", self.partial.display()))?;
        self.committed = true;
        sync_parent(&self.target)
    }
}

impl Drop for PartialFile {
    fn drop(&mut self) {
        if !self.committed {
            match fs::remove_file(&self.partial) {
                Ok(()) => tracing::debug!(path = %self.partial.display(), "Removed partial file."),
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => {
                    tracing::error!(path = %self.partial.display(), error = %e, "Could not remove partial file.")
                }
            }
        }
    }
}

/// Writes a small file atomically (temporary name, fsync, rename, directory fsync).
///
/// # Errors
/// Any I/O failure, naming the file.
pub fn write_atomic(path: &Path, content: &[u8]) -> anyhow::Result<()> {
    let (guard, mut file) = PartialFile::create(path)?;
    file.write_all(content).with_context(|| format!("writing {}", guard.partial_path().display()))?;
    guard.commit(file)
}

/// Fsyncs the directory holding `path`, so a rename in it survives a crash.
///
/// # Errors
/// When the directory cannot be opened or synced.
pub fn sync_parent(path: &Path) -> anyhow::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    File::open(dir).and_then(|d| d.sync_all()).with_context(|| format!("syncing folder {}", dir.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uncommitted_partial_is_removed_and_committed_is_renamed() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("a.sql.gz");
        {
            let (guard, mut file) = PartialFile::create(&target).unwrap();
            file.write_all(b"half").unwrap();
            assert!(guard.partial_path().exists());
        }
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 0);
        let (guard, mut file) = PartialFile::create(&target).unwrap();
        file.write_all(b"whole").unwrap();
        guard.commit(file).unwrap();
        assert_eq!(fs::read(&target).unwrap(), b"whole");
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
    }
}
