//! Applying a retention plan to a `Storage` (the local folder or a mirror): the one deletion
//! loop behind runs, mirrors, `-p` and the daemon's scheduled prunes. Printing is the caller's.

use std::collections::{BTreeSet, HashSet};

use tracing::{error, info, warn};

use crate::catalog;
use crate::config::Settings;
use crate::layout::SIDECAR_SUFFIXES;
use crate::lock::RunLock;
use crate::retention::{self, Deletion, Reason};
use crate::storage::local::{LocalStorage, objects};
use crate::storage::{RemoteObject, Storage};

/// What a prune deleted (keys) and what it could not.
#[derive(Debug, Default)]
pub struct PruneReport {
    pub deleted: Vec<String>,
    pub failed: Vec<String>,
}

/// Deletes each planned backup and the sidecars of it that `listing` shows; a failure is
/// recorded and the rest go on.
pub fn apply(storage: &dyn Storage, plan: &[Deletion], listing: &[RemoteObject]) -> PruneReport {
    let present: HashSet<&str> = listing.iter().map(|o| o.key.as_str()).collect();
    let mut report = PruneReport::default();
    for d in plan {
        match &d.reason {
            Reason::OverCount { group, keep } => {
                info!(storage = %storage.name(), key = %d.key, group, keep, "Pruning backup.")
            }
            Reason::Requested => info!(storage = %storage.name(), key = %d.key, "Deleting backup (requested)."),
            Reason::DeadPartial => {
                warn!(storage = %storage.name(), key = %d.key, "Removing a partial file left by a killed run.")
            }
        }
        let mut sidecars =
            SIDECAR_SUFFIXES.iter().map(|s| format!("{}{s}", d.key)).filter(|k| present.contains(k.as_str()));
        let result = storage.delete(&d.key).and_then(|()| sidecars.try_for_each(|k| storage.delete(&k)));
        match result {
            Ok(()) => report.deleted.push(d.key.clone()),
            Err(e) => {
                error!(storage = %storage.name(), key = %d.key, error = %format!("{e:#}"), "Deletion failed.");
                report.failed.push(format!("{}: {e:#}", d.key));
            }
        }
    }
    report
}

/// Takes the lock and prunes every configured database by the policy.
///
/// # Errors
/// The lock is held or the backup folder cannot be read.
pub fn run_policy(settings: &Settings) -> anyhow::Result<PruneReport> {
    let _lock = RunLock::acquire(&settings.backup_dir, "prune")?;
    let backups = catalog::scan(&settings.backup_dir)?;
    Ok(apply_policy(settings, &backups))
}

/// Prunes the local `backups` of every configured database by the policy; the caller holds
/// the lock.
pub fn apply_policy(settings: &Settings, backups: &[catalog::BackupFile]) -> PruneReport {
    let cores: BTreeSet<String> = settings.databases.iter().map(|d| d.spec.core_name()).collect();
    let plan = retention::plan(backups, &settings.policy, &cores, &[]);
    apply(&LocalStorage::new(&settings.backup_dir), &plan, &objects(backups))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;
    use std::path::Path;

    fn touch(root: &Path, rel: &str) {
        let p = root.join(rel);
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(&p, b"x").unwrap();
    }

    #[test]
    fn apply_deletes_backups_with_their_sidecars_and_empty_folders_only() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        touch(root, "daily/2026-11-20/db-app_2026-11-20_01-00-00.sql.gz");
        touch(root, "daily/2026-11-20/db-app_2026-11-20_01-00-00.sql.gz.sha256");
        touch(root, "daily/2026-11-21/db-app_2026-11-21_01-00-00.sql.gz");
        touch(root, "daily/2026-11-21/notes.txt");
        let local = LocalStorage::new(root);
        let listing = local.list().unwrap();
        let plan = |key: &str| vec![Deletion { key: key.into(), reason: Reason::Requested }];
        let r = apply(&local, &plan("daily/2026-11-20/db-app_2026-11-20_01-00-00.sql.gz"), &listing);
        assert_eq!((r.deleted.len(), r.failed.len()), (1, 0));
        assert!(!root.join("daily/2026-11-20").exists(), "the folder it emptied is gone");
        let r = apply(&local, &plan("daily/2026-11-21/db-app_2026-11-21_01-00-00.sql.gz"), &listing);
        assert!(r.failed.is_empty());
        assert!(root.join("daily/2026-11-21/notes.txt").exists(), "a folder that still holds something stays");
        let r = apply(&local, &plan("daily/2026-11-21/db-app_2026-11-21_01-00-00.sql.gz"), &listing);
        assert_eq!(r.failed.len(), 1, "a missing file is reported: {r:?}");
        assert!(local.delete("../outside").is_err());
    }
}
