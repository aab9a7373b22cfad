//! Pruning by the retention policy, for `-p` and the daemon's scheduled prunes: plan with
//! `retention::plan`, delete, report. Printing is the caller's.

use std::collections::BTreeSet;
use std::path::PathBuf;

use tracing::{error, info, warn};

use crate::catalog::{self, BackupFile};
use crate::config::Settings;
use crate::lock::RunLock;
use crate::retention::{self, Reason};

/// What a prune deleted (paths relative to the backup root) and what it could not.
#[derive(Debug, Default)]
pub struct PruneReport {
    pub deleted: Vec<PathBuf>,
    pub failed: Vec<String>,
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

/// Prunes `backups` by the policy; the caller holds the lock.
pub fn apply_policy(settings: &Settings, backups: &[BackupFile]) -> PruneReport {
    let root = &settings.backup_dir;
    let cores: BTreeSet<String> = settings.databases.iter().map(|d| d.spec.core_name()).collect();
    let mut report = PruneReport::default();
    for d in retention::plan(backups, &settings.policy, &cores, &[]) {
        match &d.reason {
            Reason::OverCount { group, keep } => info!(path = %d.path.display(), group, keep, "Pruning backup."),
            Reason::DeadPartial => warn!(path = %d.path.display(), "Removing a partial file left by a killed run."),
        }
        let rel = d.path.strip_prefix(root).map(PathBuf::from).unwrap_or_else(|_| d.path.clone());
        match catalog::delete_backup(root, &d.path) {
            Ok(()) => report.deleted.push(rel),
            Err(e) => {
                error!(path = %d.path.display(), error = %format!("{e:#}"), "Pruning failed.");
                report.failed.push(format!("{e:#}"));
            }
        }
    }
    report
}
