//! Retention: which backups to keep, as a pure function of the catalog, the policy and `now`.
//!
//! Same counts as upstream (per database, per class folder for the rolling strategy; across
//! the whole root for the daily strategy), but exact core-name matching, ordering by the
//! timestamp in the file name, `.in_progress` files and known-incomplete files never counted,
//! and guards upstream lacks: the backups just written, the newest complete backup and the
//! newest verified backup of each database are never deleted.
//! Applying a plan (deleting the objects of a `Storage`) is `prune::apply`'s job.

use std::collections::{BTreeMap, BTreeSet};

use crate::catalog::BackupFile;
use crate::catalog::layout::Class;

pub use crate::model::policy::{Policy, Strategy};

/// Why a file is deleted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reason {
    /// Beyond the count for its group (`kept` newer ones exist).
    OverCount { group: String, keep: u32 },
    /// Named by the operator (`-p -f`).
    Requested,
    /// An `.in_progress` file left by a killed run. The caller holds its database's lock (or
    /// the folder's), so no live process is writing it (liveness is decided by the lock, never
    /// by a PID or an age).
    DeadPartial,
}

/// One deletion the plan proposes: a backup's key (its path relative to the backup root or
/// the mirror's base, `/`-separated).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Deletion {
    pub key: String,
    pub reason: Reason,
}

/// A backup kept beyond the configured counts, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Kept {
    pub key: String,
    pub why: &'static str,
}

/// Plans deletions for the databases whose core names are in `cores`.
///
/// `protect` lists keys that must survive (the backups this run wrote). Files of other
/// databases, unparseable files and backups outside the strategy's folders are never touched.
pub fn plan(backups: &[BackupFile], policy: &Policy, cores: &BTreeSet<String>, protect: &[String]) -> Vec<Deletion> {
    plan_with_notes(backups, policy, cores, protect).0
}

/// `plan`, and the backups it keeps beyond the counts: retention keeps more, never fewer.
///
/// - A backup known to be incomplete (a scanned file without its dump's trailer) does not
///   count as one of the backups to keep: it never pushes a complete one out.
/// - The newest complete backup of a database is never deleted, nor its newest verified one
///   (the one last proved restorable), whatever the counts say.
/// - The baseline of an anomaly (the last good backup before a table disappeared or lost
///   rows, `anomaly`) is held until a backup taken after the anomalous one is verified, or
///   `anomaly_hold` later complete backups without anomaly exist. `-p -f` still deletes it.
pub fn plan_with_notes(
    backups: &[BackupFile],
    policy: &Policy,
    cores: &BTreeSet<String>,
    protect: &[String],
) -> (Vec<Deletion>, Vec<Kept>) {
    let mut groups: BTreeMap<(String, Option<Class>), Vec<&BackupFile>> = BTreeMap::new();
    let mut newest_complete: BTreeMap<&str, &BackupFile> = BTreeMap::new();
    let mut newest_verified: BTreeMap<&str, &BackupFile> = BTreeMap::new();
    let mut out = Vec::new();
    let mut kept = Vec::new();
    for b in backups.iter().filter(|b| cores.contains(&b.core)) {
        if b.in_progress {
            out.push(Deletion { key: b.key().to_string(), reason: Reason::DeadPartial });
            continue;
        }
        if !b.known_incomplete() {
            let n = newest_complete.entry(&b.core).or_insert(b);
            if b.sort_key() > n.sort_key() {
                *n = b;
            }
        }
        if b.verified() {
            let n = newest_verified.entry(&b.core).or_insert(b);
            if b.sort_key() > n.sort_key() {
                *n = b;
            }
        }
        let key = match (policy.strategy, b.class) {
            (Strategy::Daily, _) => (b.core.clone(), None),
            (Strategy::Rolling, Some(class)) => (b.core.clone(), Some(class)),
            // Flat folders left from a daily strategy are not pruned under rolling (as upstream).
            (Strategy::Rolling, None) => continue,
        };
        groups.entry(key).or_default().push(b);
    }
    let held = anomaly_holds(backups, policy, cores);
    for ((core, class), mut members) in groups {
        let keep = policy.keep_count(class) as usize;
        members.sort_by_key(|b| std::cmp::Reverse(b.sort_key()));
        let group = match class {
            Some(c) => format!("{core} ({})", c.name()),
            None => core.clone(),
        };
        let mut counted = 0;
        for b in members {
            if counted < keep {
                if !b.known_incomplete() {
                    counted += 1;
                }
                continue;
            }
            let is = |m: &BTreeMap<&str, &BackupFile>| m.get(core.as_str()).is_some_and(|n| n.path == b.path);
            if protect.iter().any(|k| k == b.key().as_str()) {
                continue;
            }
            if is(&newest_complete) {
                kept.push(Kept { key: b.key().to_string(), why: "the newest complete backup of its database" });
                continue;
            }
            if is(&newest_verified) {
                kept.push(Kept { key: b.key().to_string(), why: "the newest verified backup of its database" });
                continue;
            }
            if held.contains(b.key().as_str()) {
                kept.push(Kept {
                    key: b.key().to_string(),
                    why: "the last good backup before an anomaly (held until a later backup is verified \
                          or BACKUP_ANOMALY_HOLD good backups follow)",
                });
                continue;
            }
            out.push(Deletion {
                key: b.key().to_string(),
                reason: Reason::OverCount { group: group.clone(), keep: keep as u32 },
            });
        }
    }
    (out, kept)
}

/// Keys of the baselines that anomalies still hold.
fn anomaly_holds(backups: &[BackupFile], policy: &Policy, cores: &BTreeSet<String>) -> BTreeSet<String> {
    let mut held = BTreeSet::new();
    for a in backups.iter().filter(|b| cores.contains(&b.core) && !b.in_progress) {
        let Some(anomaly) = a.manifest.as_ref().and_then(|m| m.anomaly.as_ref()) else { continue };
        let later: Vec<&BackupFile> =
            backups.iter().filter(|b| b.core == a.core && !b.in_progress && b.sort_key() > a.sort_key()).collect();
        let verified = later.iter().any(|b| b.verified());
        let good = later
            .iter()
            .filter(|b| b.manifest.as_ref().is_some_and(|m| m.complete == Some(true) && m.anomaly.is_none()))
            .count();
        if !verified && good < policy.anomaly_hold as usize {
            held.insert(anomaly.baseline.clone());
        }
    }
    held
}

#[cfg(test)]
mod tests;
