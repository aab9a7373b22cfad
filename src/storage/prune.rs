//! Applying a retention plan to a `Storage` (the local folder or a mirror): the one deletion
//! loop behind runs, mirrors, `-p` and the daemon's scheduled prunes. Printing is the caller's.

use std::collections::{BTreeSet, HashSet};

use tracing::{error, info, warn};

use std::path::Path;

use crate::catalog::checksum::check_integrity;
use crate::catalog::layout::SIDECAR_SUFFIXES;
use crate::catalog::lock::RunLock;
use crate::catalog::manifest;
use crate::catalog::retention::{self, Deletion, Kept, Reason};
use crate::catalog::{self, BackupFile};
use crate::config::Settings;
use crate::model::spec::EngineKind;
use crate::storage::local::{LocalStorage, objects};
use crate::storage::s3_lock::Locked;
use crate::storage::{RemoteObject, Storage};
use crate::stream::crypt::{Keys, NoIdentity};

/// What a prune deleted (keys), what it could not, and what it kept beyond the counts.
#[derive(Debug, Default)]
pub struct PruneReport {
    pub deleted: Vec<String>,
    pub failed: Vec<String>,
    pub kept: Vec<Kept>,
    /// Deletions the storage refused because the copy is still locked (S3 Object Lock): not
    /// failures; tried again on a later run.
    pub locked: Vec<String>,
}

/// Decodes and scans, once, the backups of `core` whose completeness is not known yet (the
/// bash version's files, ours from before manifests) and records the verdict, so that
/// retention never counts an incomplete file as a good backup. Returns the backups with the
/// records written meanwhile (without walking the folder again).
///
/// # Errors
/// None today (kept for callers that treat a settle failure as "retention skipped").
pub fn settle(
    root: &Path,
    mut backups: Vec<BackupFile>,
    core: &str,
    kind: &EngineKind,
    keys: &Keys,
) -> anyhow::Result<Vec<BackupFile>> {
    let unknown: Vec<&BackupFile> = backups
        .iter()
        .filter(|b| b.core == core && !b.in_progress && b.manifest.as_ref().is_none_or(|m| m.complete.is_none()))
        .collect();
    if unknown.is_empty() {
        return Ok(backups);
    }
    for b in unknown {
        info!(path = %b.path.display(), "Checking a backup without a record before retention counts it.");
        match check_integrity(&b.path, b.sha256(), kind, true, keys) {
            Ok(checked) => catalog::record_scan(root, b, &checked),
            // Encrypted and no identity here (the backup job need not hold it): left unknown,
            // counted like a complete backup, scanned where the identity is.
            Err(e) if e.downcast_ref::<NoIdentity>().is_some() => {
                info!(path = %b.path.display(), "Encrypted backup without a record; no identity here to scan it.");
            }
            Err(e) => catalog::record_unreadable(root, b, &format!("{e:#}")),
        }
    }
    for b in backups.iter_mut().filter(|b| b.core == core) {
        catalog::reread_record(root, b);
    }
    Ok(backups)
}

/// Deletes each planned backup and its record (and old sidecars) where `listing` shows them;
/// a failure is recorded and the rest go on.
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
        // Its record, and the `.sha256`/`.verified` files of older releases where they remain.
        let mut sidecars = SIDECAR_SUFFIXES
            .iter()
            .map(|s| format!("{}{s}", d.key))
            .chain(std::iter::once(manifest::record_key(&d.key)))
            .filter(|k| present.contains(k.as_str()));
        let result = storage.delete(&d.key).and_then(|()| sidecars.try_for_each(|k| storage.delete(&k)));
        match result {
            Ok(()) => report.deleted.push(d.key.clone()),
            Err(e) if e.downcast_ref::<Locked>().is_some() => {
                info!(storage = %storage.name(), key = %d.key, "Kept: still locked (S3 Object Lock); pruned on a later run.");
                report.locked.push(d.key.clone());
            }
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
    apply_policy(settings, backups)
}

/// Prunes the local `backups` of every configured database by the policy; the caller holds
/// the lock.
///
/// # Errors
/// The folder cannot be read again after settling unknown files.
pub fn apply_policy(settings: &Settings, mut backups: Vec<BackupFile>) -> anyhow::Result<PruneReport> {
    let root = &settings.backup_dir;
    let targets = crate::fleet::on_disk(settings, &backups);
    for db in &targets {
        backups = settle(root, backups, &db.spec.core_name(), &db.spec.engine, &settings.keys)?;
    }
    let cores: BTreeSet<String> = targets.iter().map(|d| d.spec.core_name()).collect();
    let (plan, kept) = retention::plan_with_notes(&backups, &settings.policy, &cores, &[]);
    let mut report = apply(&LocalStorage::new(root), &plan, &objects(&backups));
    report.kept = kept;
    Ok(report)
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
