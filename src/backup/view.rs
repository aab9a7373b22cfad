//! The catalog as one run sees it: the backup folder walked once when the run starts (and, when
//! the run has the folder to itself, tidied once: old sidecars moved into records, orphaned
//! records dropped, dead partial files removed), then kept current with what the run itself
//! writes, records and deletes. Each database's
//! steps (guard, copy, prune, the progress estimate) read their own database's files from it,
//! so a run's cost does not grow with the number of databases × backups kept.
//!
//! Other processes change other databases' files (each database is locked while it is backed
//! up); a backup of this database written by another process after the walk is not seen, which
//! errs on the side of keeping one more backup.

use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};

use crate::catalog::lock::RunLock;
use crate::catalog::retention::{Deletion, Reason};
use crate::catalog::{self, BackupFile};
use crate::storage::local::{LocalStorage, objects};
use crate::storage::prune;

pub(super) struct RunCatalog {
    root: PathBuf,
    files: Mutex<Vec<BackupFile>>,
}

impl RunCatalog {
    /// Walks `root` once, writing nothing.
    ///
    /// # Errors
    /// The folder cannot be read.
    pub(super) fn load(root: &Path) -> anyhow::Result<RunCatalog> {
        Ok(RunCatalog { root: root.to_path_buf(), files: Mutex::new(catalog::load(root)?) })
    }

    /// The tidy work, once per run (the caller holds the folder exclusively): sidecars into
    /// records, orphaned records, partial files of killed runs.
    pub(super) fn tidy(&self, local: &LocalStorage) {
        catalog::tidy::tidy(&self.root, &mut self.lock());
        self.remove_dead_partials(local);
    }

    /// An empty view (the folder could not be read at the start; steps then see only what
    /// this run writes).
    pub(super) fn empty(root: &Path) -> RunCatalog {
        RunCatalog { root: root.to_path_buf(), files: Mutex::new(Vec::new()) }
    }

    fn lock(&self) -> MutexGuard<'_, Vec<BackupFile>> {
        self.files.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Every file as walked at the start (and changed by this run).
    pub(super) fn all(&self) -> Vec<BackupFile> {
        self.lock().clone()
    }

    /// The files of one database (core name), oldest first, as this run knows them.
    pub(super) fn of_core(&self, core: &str) -> Vec<BackupFile> {
        self.lock().iter().filter(|f| f.core == core).cloned().collect()
    }

    /// `of_core` with every record read again, for retention: a verification recorded by
    /// another process since the walk protects its backup (the newest verified is kept).
    pub(super) fn of_core_fresh(&self, core: &str) -> Vec<BackupFile> {
        let mut files = self.lock();
        for f in files.iter_mut().filter(|f| f.core == core) {
            catalog::reread_record(&self.root, f);
        }
        files.iter().filter(|f| f.core == core).cloned().collect()
    }

    /// A file this run wrote (or whose record it changed).
    pub(super) fn add(&self, path: &Path) {
        let Some(file) = catalog::entry(&self.root, path) else { return };
        let mut files = self.lock();
        files.retain(|f| f.path != file.path);
        files.push(file);
        files.sort_by(|a, b| a.sort_key().cmp(&b.sort_key()));
    }

    /// Removes partial files left by killed runs: each one whose database lock is free (a
    /// partial being written has its writer holding that lock; another process's are left alone).
    fn remove_dead_partials(&self, local: &LocalStorage) {
        let backups = self.all();
        for b in backups.iter().filter(|b| b.in_progress) {
            let Ok(_lock) = RunLock::try_database(&self.root, &b.core, "removing a dead partial file") else {
                continue;
            };
            let plan = [Deletion { key: b.key().to_string(), reason: Reason::DeadPartial }];
            let report = prune::apply(local, &plan, &objects(&backups));
            self.remove(&report.deleted);
        }
    }

    /// The newest complete backup's uncompressed size (its manifest), for the ETA.
    pub(super) fn previous_size(&self, core: &str) -> Option<u64> {
        self.of_core(core)
            .iter()
            .filter(|b| !b.in_progress)
            .filter_map(|b| b.manifest.as_ref()?.uncompressed_bytes)
            .next_back()
    }

    /// Files this run deleted (their keys).
    pub(super) fn remove(&self, keys: &[String]) {
        self.lock().retain(|f| !keys.iter().any(|k| k == f.key().as_str()));
    }
}
