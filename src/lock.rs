//! One run at a time: an exclusive lock file in `BACKUP_DIR` (`.backup_container.lock`).
//! Shards of one fleet (`--shard I/N`) back up disjoint databases, so they share that lock and
//! each holds its own (`.backup_container.shard.I.N.lock`, no database name in the path):
//! shards run side by side, a second process for the same shard is refused, and anything
//! that needs the whole folder (an unsharded run, `-p`, `-r`, `-v`) waits for all of them.
//!
//! The lock is an OS file lock (flock), so a killed process never leaves a stale lock. The
//! file records who holds it, for the "already running" message.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use anyhow::Context;

/// Name of the lock file inside the backup root.
pub const LOCK_FILE: &str = ".backup_container.lock";

/// Held while a run (backup, prune, restore, verify) is in progress.
#[derive(Debug)]
pub struct RunLock {
    _file: File,
    pub path: PathBuf,
}

/// Another process holds the lock.
#[derive(Debug, thiserror::Error)]
#[error("another backup-container run holds the lock {path} ({holder}); it must finish first")]
pub struct Busy {
    pub path: PathBuf,
    pub holder: String,
}

impl RunLock {
    /// Takes the lock without waiting.
    ///
    /// # Errors
    /// `Busy` (inside the anyhow error) when another process holds it; an I/O error when the
    /// lock file cannot be created (e.g. the backup volume is read-only).
    pub fn acquire(root: &Path, what: &str) -> anyhow::Result<RunLock> {
        Self::take(root, LOCK_FILE, what, false)
    }

    /// The locks of one shard: the folder's lock shared, the shard's own exclusively.
    ///
    /// # Errors
    /// As `acquire`: `Busy` when an unsharded run, or another process of the same shard, holds them.
    pub fn acquire_shard(root: &Path, what: &str, shard: crate::shard::Shard) -> anyhow::Result<(RunLock, RunLock)> {
        let folder = Self::take(root, LOCK_FILE, what, true)?;
        let own =
            Self::take(root, &format!(".backup_container.shard.{}.{}.lock", shard.index, shard.count), what, false)?;
        Ok((folder, own))
    }

    fn take(root: &Path, name: &str, what: &str, shared: bool) -> anyhow::Result<RunLock> {
        std::fs::create_dir_all(root).with_context(|| format!("creating backup folder {}", root.display()))?;
        let path = root.join(name);
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .with_context(|| format!("opening lock file {}", path.display()))?;
        match if shared { file.try_lock_shared() } else { file.try_lock() } {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                let mut holder = String::new();
                let _ = file.read_to_string(&mut holder);
                let holder = holder.trim().to_string();
                let holder = if holder.is_empty() { "holder unknown".to_string() } else { holder };
                return Err(Busy { path, holder }.into());
            }
            Err(std::fs::TryLockError::Error(e)) => {
                return Err(e).with_context(|| format!("locking {}", path.display()));
            }
        }
        if shared {
            // Several holders: the file names none of them.
            return Ok(RunLock { _file: file, path });
        }
        let info = format!(
            "pid {}, {what}, since {}",
            std::process::id(),
            chrono::Local::now().format("%Y-%m-%d %H:%M:%S %z")
        );
        file.set_len(0)?;
        file.seek(SeekFrom::Start(0))?;
        file.write_all(info.as_bytes())?;
        Ok(RunLock { _file: file, path })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn second_lock_is_busy_until_first_is_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let first = RunLock::acquire(dir.path(), "backup").unwrap();
        let err = RunLock::acquire(dir.path(), "prune").unwrap_err();
        let busy = err.downcast_ref::<Busy>().expect("Busy");
        assert!(busy.holder.contains("backup"), "{}", busy.holder);
        drop(first);
        RunLock::acquire(dir.path(), "prune").unwrap();
    }

    #[test]
    fn shards_share_the_folder_but_not_their_own_lock() {
        use crate::shard::Shard;
        let dir = tempfile::tempdir().unwrap();
        let a = RunLock::acquire_shard(dir.path(), "shard 0", Shard { index: 0, count: 2 }).unwrap();
        let b = RunLock::acquire_shard(dir.path(), "shard 1", Shard { index: 1, count: 2 }).unwrap();
        assert!(RunLock::acquire_shard(dir.path(), "again", Shard { index: 1, count: 2 }).is_err());
        assert!(RunLock::acquire(dir.path(), "prune").unwrap_err().downcast_ref::<Busy>().is_some());
        drop((a, b));
        RunLock::acquire(dir.path(), "prune").unwrap();
    }
}
