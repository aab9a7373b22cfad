//! Who may write where in `BACKUP_DIR`, with OS file locks (flock: a killed process never
//! leaves a stale lock; each file records its holder for the "busy" message).
//!
//! - The folder lock `.backup_container.lock`: backup runs hold it *shared*, so any number of
//!   them (a daemon, a manual `-1`, the pods of an Indexed Job) work side by side; commands that
//!   need the whole folder (`-p` without `-f`, `-r`, `-v`) hold it exclusively and wait for none.
//! - A database lock per core name, `.backup_container/locks/<sha256 of the core name>.lock`,
//!   held by that database's dump + mirror + prune: two processes never back up one database at
//!   once. The path never carries the core name (the bash version's pruning greps every path
//!   under the folder for it) and no `-`, like every metadata path.
//!
//! What a run does when another process holds a database is `BACKUP_WHEN_LOCKED`: skip it
//! (the default: a warning, and the run still succeeds, so a Kubernetes retry does not dump
//! the other databases again), wait for it, or fail.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::system::cancel::{Cancel, Interrupted};

/// Name of the folder lock inside the backup root.
pub const LOCK_FILE: &str = ".backup_container.lock";
/// Folder of the database locks inside the backup root.
pub const DATABASE_LOCKS: &str = ".backup_container/locks";

/// What a backup run holding the folder lock exclusively to tidy it says in the lock file: a
/// run that finds the lock so held waits for it (a moment) instead of failing.
pub const TIDYING: &str = "tidying the folder";
/// What `Busy` says when the lock file does not name its holder (yet).
const HOLDER_UNKNOWN: &str = "holder unknown";
/// How long a run reads again a lock file whose holder has not named itself yet.
const UNNAMED_WAIT: Duration = Duration::from_secs(2);
/// How long a run waits for another run's tidying.
const TIDY_WAIT: Duration = Duration::from_secs(120);

/// A held lock; released when dropped (or when the process dies).
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

/// `BACKUP_WHEN_LOCKED`: what a backup run does with a database another process is backing up.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum WhenLocked {
    /// Leave it to the other process: a warning, not a failure.
    #[default]
    Skip,
    /// Wait until the other process is done with it, then back it up.
    Wait,
    /// Count it as a failed backup.
    Fail,
}

impl WhenLocked {
    pub const CHOICES: [&'static str; 3] = ["skip", "wait", "fail"];

    pub fn parse(choice: &str) -> Option<WhenLocked> {
        match choice {
            "skip" => Some(WhenLocked::Skip),
            "wait" => Some(WhenLocked::Wait),
            "fail" => Some(WhenLocked::Fail),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            WhenLocked::Skip => "skip",
            WhenLocked::Wait => "wait",
            WhenLocked::Fail => "fail",
        }
    }
}

/// Why a database lock was not taken.
#[derive(Debug, thiserror::Error)]
pub enum NotTaken {
    #[error(transparent)]
    Busy(#[from] Busy),
    #[error(transparent)]
    Interrupted(#[from] Interrupted),
    #[error("{0:#}")]
    Failed(anyhow::Error),
}

impl RunLock {
    /// Takes the folder lock exclusively, without waiting.
    ///
    /// # Errors
    /// `Busy` (inside the anyhow error) when another process holds it; an I/O error when the
    /// lock file cannot be created (e.g. the backup volume is read-only).
    pub fn acquire(root: &Path, what: &str) -> anyhow::Result<RunLock> {
        Ok(Self::take(root, Path::new(LOCK_FILE), what, false)?)
    }

    /// Takes the folder lock shared (backup runs), without waiting.
    ///
    /// # Errors
    /// As `acquire`: `Busy` while a whole-folder command holds it.
    pub fn acquire_shared(root: &Path, what: &str) -> anyhow::Result<RunLock> {
        Ok(Self::take(root, Path::new(LOCK_FILE), what, true)?)
    }

    /// `acquire_shared`, waiting (at most two minutes) while another backup run holds the lock
    /// exclusively to tidy the folder (`TIDYING`).
    ///
    /// # Errors
    /// As `acquire_shared`; `Interrupted` on cancellation.
    pub fn acquire_shared_after_tidy(root: &Path, what: &str, cancel: &Cancel) -> anyhow::Result<RunLock> {
        let started = std::time::Instant::now();
        loop {
            let waited = started.elapsed();
            match Self::take(root, Path::new(LOCK_FILE), what, true) {
                // An exclusive holder writes who it is just after taking the lock: a holder not
                // named yet is read again for a moment (a prune names itself at once and is not
                // waited for; a holder that never names itself is refused after that moment).
                Err(NotTaken::Busy(busy))
                    if (busy.holder.contains(TIDYING) && waited < TIDY_WAIT)
                        || (busy.holder == HOLDER_UNKNOWN && waited < UNNAMED_WAIT) =>
                {
                    cancel.check()?;
                    cancel.wait_for_wake(cancel.wakes(), Duration::from_millis(50));
                }
                other => return Ok(other?),
            }
        }
    }

    /// Takes the lock of the database with `core` name, without waiting.
    ///
    /// # Errors
    /// `NotTaken::Busy` when another process (or another job of this one) holds it.
    pub fn try_database(root: &Path, core: &str, what: &str) -> Result<RunLock, NotTaken> {
        Self::take(root, &database_lock(core), what, false)
    }

    /// `try_database`, shared: any number of shared holders, no exclusive one.
    ///
    /// # Errors
    /// As `try_database`.
    pub fn try_database_shared(root: &Path, core: &str, what: &str) -> Result<RunLock, NotTaken> {
        Self::take(root, &database_lock(core), what, true)
    }

    /// Takes the lock of the database with `core` name, waiting while another holds it;
    /// `on_busy` is called once, with the holder, when it has to wait.
    ///
    /// # Errors
    /// `NotTaken::Interrupted` when `cancel` fires while waiting; `Failed` on an I/O error.
    pub fn wait_database(
        root: &Path,
        core: &str,
        what: &str,
        cancel: &Cancel,
        on_busy: impl FnOnce(&Busy),
    ) -> Result<RunLock, NotTaken> {
        let mut on_busy = Some(on_busy);
        loop {
            match Self::try_database(root, core, what) {
                Err(NotTaken::Busy(busy)) => {
                    if let Some(f) = on_busy.take() {
                        f(&busy);
                    }
                    // flock has no "tell me when it is free" that a signal can stop: poll.
                    cancel.check()?;
                    cancel.wait_for_wake(cancel.wakes(), Duration::from_millis(200));
                    cancel.check()?;
                }
                other => return other,
            }
        }
    }

    fn take(root: &Path, rel: &Path, what: &str, shared: bool) -> Result<RunLock, NotTaken> {
        let failed =
            |e: std::io::Error, doing: &str| NotTaken::Failed(anyhow::Error::new(e).context(doing.to_string()));
        let path = crate::model::safe_name::join_under(root, rel).map_err(|e| NotTaken::Failed(e.into()))?;
        let dir = path.parent().unwrap_or(root);
        std::fs::create_dir_all(dir).map_err(|e| failed(e, &format!("creating folder {}", dir.display())))?;
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(|e| failed(e, &format!("opening lock file {}", path.display())))?;
        match if shared { file.try_lock_shared() } else { file.try_lock() } {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                let mut holder = String::new();
                let _ = file.read_to_string(&mut holder);
                let holder = holder.trim().to_string();
                let holder = if holder.is_empty() { HOLDER_UNKNOWN.to_string() } else { holder };
                return Err(Busy { path, holder }.into());
            }
            Err(std::fs::TryLockError::Error(e)) => return Err(failed(e, &format!("locking {}", path.display()))),
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
        let written =
            file.set_len(0).and_then(|()| file.seek(SeekFrom::Start(0))).and_then(|_| file.write_all(info.as_bytes()));
        written.map_err(|e| failed(e, &format!("writing lock file {}", path.display())))?;
        Ok(RunLock { _file: file, path })
    }
}

/// The database lock's path relative to the root: a digest, never the core name.
fn database_lock(core: &str) -> PathBuf {
    Path::new(DATABASE_LOCKS).join(format!("{}.lock", crate::catalog::manifest::digest_name(core)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn second_lock_is_busy_until_first_is_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let first = RunLock::acquire(dir.path(), "backup").unwrap();
        let err = RunLock::acquire(dir.path(), "prune").unwrap_err();
        let busy = err.downcast_ref::<NotTaken>().and_then(|n| match n {
            NotTaken::Busy(b) => Some(b),
            _ => None,
        });
        assert!(busy.expect("Busy").holder.contains("backup"));
        drop(first);
        RunLock::acquire(dir.path(), "prune").unwrap();
    }

    #[test]
    fn backup_runs_share_the_folder_and_lock_databases_one_by_one() {
        let dir = tempfile::tempdir().unwrap();
        let a = RunLock::acquire_shared(dir.path(), "run a").unwrap();
        let b = RunLock::acquire_shared(dir.path(), "run b").unwrap();
        let app = RunLock::try_database(dir.path(), "host-app", "backup of host/app").unwrap();
        // Another database is free; the same one is busy and names its holder.
        let other = RunLock::try_database(dir.path(), "host-other", "x").unwrap();
        match RunLock::try_database(dir.path(), "host-app", "again") {
            Err(NotTaken::Busy(busy)) => assert!(busy.holder.contains("backup of host/app"), "{}", busy.holder),
            other => panic!("expected busy, got {other:?}"),
        }
        // A whole-folder command waits for every backup run.
        assert!(RunLock::acquire(dir.path(), "prune").is_err());
        drop((a, b));
        let prune = RunLock::acquire(dir.path(), "prune").unwrap();
        assert!(RunLock::acquire_shared(dir.path(), "run c").is_err());
        drop((prune, other));
        // No lock path carries a core name (or a '-', which every core name has).
        let rel = app.path.strip_prefix(dir.path()).unwrap().to_string_lossy().to_string();
        assert!(rel.starts_with(".backup_container/locks/") && !rel.contains("app") && !rel.contains('-'), "{rel}");
    }

    #[test]
    fn waiting_ends_when_the_holder_lets_go_or_on_cancel() {
        let dir = tempfile::tempdir().unwrap();
        let held = RunLock::try_database(dir.path(), "host-app", "first").unwrap();
        let cancel = Cancel::new();
        let mut told = 0;
        std::thread::scope(|s| {
            s.spawn(|| {
                std::thread::sleep(Duration::from_millis(300));
                drop(held);
            });
            RunLock::wait_database(dir.path(), "host-app", "second", &cancel, |b| {
                told += 1;
                assert!(b.holder.contains("first"));
            })
            .unwrap();
        });
        assert_eq!(told, 1);
        let _held = RunLock::try_database(dir.path(), "host-other", "first").unwrap();
        cancel.cancel();
        let r = RunLock::wait_database(dir.path(), "host-other", "second", &cancel, |_| {});
        assert!(matches!(r, Err(NotTaken::Interrupted(_))), "{r:?}");
    }

    #[test]
    fn a_run_waits_for_another_runs_tidying_but_not_for_a_prune() {
        let dir = tempfile::tempdir().unwrap();
        let cancel = Cancel::new();
        let tidying = RunLock::acquire(dir.path(), &format!("backup run, {TIDYING}")).unwrap();
        let waited = std::thread::scope(|s| {
            s.spawn(|| {
                std::thread::sleep(Duration::from_millis(300));
                drop(tidying);
            });
            let started = std::time::Instant::now();
            RunLock::acquire_shared_after_tidy(dir.path(), "run b", &cancel).unwrap();
            started.elapsed()
        });
        assert!(waited >= Duration::from_millis(250), "it waited for the tidying: {waited:?}");
        // Several runs share it; a prune holding the folder is not waited for.
        let shared = RunLock::acquire_shared_after_tidy(dir.path(), "run c", &cancel).unwrap();
        drop(shared);
        let _prune = RunLock::acquire(dir.path(), "prune").unwrap();
        let err = RunLock::acquire_shared_after_tidy(dir.path(), "run d", &cancel).unwrap_err();
        assert!(format!("{err:#}").contains("prune"), "{err:#}");
        drop(_prune);
        // A holder that never names itself (another tool) is read again for a moment only.
        let raw = OpenOptions::new().write(true).truncate(true).open(dir.path().join(LOCK_FILE)).unwrap();
        raw.lock().unwrap();
        let started = std::time::Instant::now();
        let err = RunLock::acquire_shared_after_tidy(dir.path(), "run e", &cancel).unwrap_err();
        assert!(format!("{err:#}").contains(HOLDER_UNKNOWN), "{err:#}");
        assert!(started.elapsed() >= UNNAMED_WAIT && started.elapsed() < TIDY_WAIT, "{:?}", started.elapsed());
    }
}
