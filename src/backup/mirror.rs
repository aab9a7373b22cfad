//! The mirror step of a run, per database: copy the new backup (and its `.sha256`) to every
//! mirror, catch up on the newest older local backups a mirror is missing (a transient outage
//! leaves no permanent gap), then, when enabled for that mirror, apply the retention policy to
//! the mirror's own listing. Each mirror is independent; a failing one never affects the
//! others or the local backup.
//!
//! A mirror that cannot be listed or written after all its attempts is down for the rest of
//! the run (`Down`): later databases record "mirror down since ..." at once instead of each
//! waiting `MIRROR_ATTEMPTS` × its timeout again; the next run catches the copies up.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::SystemTime;

use chrono::{DateTime, Utc};

use tracing::{info, warn};

use crate::catalog::BackupFile;
use crate::catalog::BackupKey;
use crate::catalog::layout::{self, SIDECAR_SUFFIXES};
use crate::catalog::manifest;
use crate::catalog::retention;
use crate::config::Settings;
use crate::notify::{Notifiers, event};
use crate::storage::prune;
use crate::storage::{RemoteObject, Storage};

/// What one mirror did for one database.
#[derive(Debug, Clone)]
pub struct MirrorOutcome {
    pub mirror: String,
    pub uploaded: Vec<String>,
    pub pruned: Vec<String>,
    /// Copies retention would delete but the mirror keeps locked (S3 Object Lock).
    pub locked: Vec<String>,
    pub error: Option<String>,
    /// The mirror could not be listed or written after all its attempts: down for the run.
    pub gave_up: bool,
}

/// The mirrors given up in one run, by name: when and why.
#[derive(Debug, Default)]
pub struct Down(Mutex<BTreeMap<String, (DateTime<Utc>, String)>>);

impl Down {
    fn get(&self, mirror: &str) -> Option<(DateTime<Utc>, String)> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).get(mirror).cloned()
    }

    fn mark(&self, mirror: &str, reason: &str) {
        let mut down = self.0.lock().unwrap_or_else(|e| e.into_inner());
        down.entry(mirror.to_string()).or_insert_with(|| (Utc::now(), reason.to_string()));
    }

    /// Every mirror given up in the run, with when and why (for the summary).
    pub fn list(&self) -> Vec<(String, DateTime<Utc>, String)> {
        let down = self.0.lock().unwrap_or_else(|e| e.into_inner());
        down.iter().map(|(m, (t, r))| (m.clone(), *t, r.clone())).collect()
    }
}

/// The new backup to copy: its database (as printed), core name and file, and the local
/// backups of that database (for the catch-up).
pub struct NewBackup<'a> {
    pub db: &'a str,
    pub core: &'a str,
    pub written: &'a Path,
    pub local: &'a [BackupFile],
}

/// Mirrors the new backup to every mirror that is not `down`.
pub fn mirror_database(
    mirrors: &[Box<dyn Storage>],
    settings: &Settings,
    new: NewBackup<'_>,
    notifiers: &Notifiers,
    down: &Down,
) -> Vec<MirrorOutcome> {
    let NewBackup { db, core, written, local } = new;
    let root = &settings.backup_dir;
    let local: Vec<BackupFile> = local.iter().filter(|b| b.core == core && !b.in_progress).cloned().collect();
    mirrors
        .iter()
        .map(|m| {
            let name = m.name();
            let outcome = match down.get(&name) {
                Some((since, reason)) => MirrorOutcome {
                    mirror: name,
                    uploaded: vec![],
                    pruned: vec![],
                    locked: vec![],
                    error: Some(format!(
                        "mirror down since {} (not tried again in this run; the next run catches up): {reason}",
                        since.format("%H:%M:%S UTC")
                    )),
                    gave_up: false,
                },
                None => mirror_one(m.as_ref(), settings, core, written, &local),
            };
            if outcome.gave_up
                && let Some(e) = &outcome.error
            {
                down.mark(&outcome.mirror, e);
            }
            for key in &outcome.uploaded {
                notifiers.notify(event::mirror_succeeded(db, key, &outcome.mirror));
            }
            if let Some(e) = &outcome.error {
                warn!(storage = %outcome.mirror, error = %e, "Mirror failed; the local backup is kept.");
                notifiers.notify(event::mirror_failed(db, &BackupKey::of(root, written), &outcome.mirror, e));
            }
            outcome
        })
        .collect()
}

fn mirror_one(m: &dyn Storage, settings: &Settings, core: &str, written: &Path, local: &[BackupFile]) -> MirrorOutcome {
    let root = &settings.backup_dir;
    let mut out = MirrorOutcome {
        mirror: m.name(),
        uploaded: vec![],
        pruned: vec![],
        locked: vec![],
        error: None,
        gave_up: false,
    };
    let mut listing = match m.list() {
        Ok(list) => list,
        Err(e) => {
            // After all its attempts (or a failure no retry fixes: TLS mode, certificate,
            // login) an upload would fail the same way: say it once, give the mirror up.
            out.error = Some(format!("listing the mirror: {e:#}"));
            out.gave_up = true;
            return out;
        }
    };
    let present: HashSet<String> = listing.iter().map(|o| o.key.clone()).collect();
    // The new backup first, then the newest older ones the mirror lacks.
    let mut older: Vec<&BackupFile> = local.iter().filter(|b| b.path != written).collect();
    older.sort_by(|a, b| b.sort_key().cmp(&a.sort_key()));
    let catch_up = older
        .into_iter()
        .filter(|b| !present.contains(b.key().as_str()))
        .take(settings.mirrors.catchup)
        .map(|b| b.path.clone());
    let todo: Vec<PathBuf> = std::iter::once(written.to_path_buf()).chain(catch_up).collect();
    for path in &todo {
        let key = BackupKey::of(root, path).to_string();
        if let Err(e) = upload(m, root, path, &key) {
            out.error = Some(format!("{e:#}"));
            out.gave_up = e.downcast_ref::<crate::storage::s3_lock::Locked>().is_none();
            return out;
        }
        info!(storage = %out.mirror, key, "Copied to mirror.");
        out.uploaded.push(key);
    }
    tidy_records(m, root, local, &present);
    if m.prunes() {
        // The listing predates this run's uploads; count them too.
        listing.extend(out.uploaded.iter().map(|k| RemoteObject { key: k.clone(), size: None }));
        prune_remote(m, settings, core, &BackupKey::of(root, written), listing, &mut out)
    }
    out
}

/// Uploads a backup and then its record (manifest), under the mirror's catalog folder.
fn upload(m: &dyn Storage, root: &Path, path: &Path, key: &str) -> anyhow::Result<()> {
    m.put(path, key)?;
    let record = manifest::record_path(root, key);
    if record.exists() {
        m.put(&record, &manifest::record_key(key))?;
    }
    Ok(())
}

/// Copies that predate records on the mirror: their record is uploaded, and the `.sha256` and
/// `.verified` files of older releases are removed from beside them (the bash version's tools
/// would trip on them there). Best effort: a failure here leaves the copies as they are.
fn tidy_records(m: &dyn Storage, root: &Path, local: &[BackupFile], present: &HashSet<String>) {
    for b in local {
        let key = b.key().to_string();
        if !present.contains(&key) {
            continue;
        }
        let record_key = manifest::record_key(&key);
        let record = manifest::record_path(root, &key);
        if !present.contains(&record_key) && record.exists() && m.put(&record, &record_key).is_err() {
            continue;
        }
        for suffix in SIDECAR_SUFFIXES {
            let sidecar = format!("{key}{suffix}");
            if present.contains(&sidecar) && m.delete(&sidecar).is_ok() {
                info!(storage = %m.name(), key = %sidecar, "Removed an old sidecar from the mirror (moved into the record).");
            }
        }
    }
}

/// Applies the retention plan to the mirror's own listing: only keys that parse as our
/// backups of this database, never the copy just made, never the newest, and what the
/// local records protect (`retention::plan_with_notes`).
fn prune_remote(
    m: &dyn Storage,
    settings: &Settings,
    core: &str,
    just: &str,
    list: Vec<RemoteObject>,
    out: &mut MirrorOutcome,
) {
    // With the local records (same keys): the newest-verified, newest-complete and anomaly
    // rules hold on the mirror too.
    let backups: Vec<BackupFile> = list
        .iter()
        .filter_map(remote_backup)
        .filter(|b| b.core == core)
        .map(|mut b| {
            b.manifest = manifest::read(&settings.backup_dir, b.key());
            b
        })
        .collect();
    let cores = BTreeSet::from([core.to_string()]);
    let plan: Vec<retention::Deletion> = retention::plan(&backups, &settings.policy, &cores, &[just.to_string()])
        .into_iter()
        .filter(|d| matches!(d.reason, retention::Reason::OverCount { .. }))
        .collect();
    let report = prune::apply(m, &plan, &list);
    out.pruned = report.deleted;
    out.locked = report.locked;
    if !report.failed.is_empty() {
        out.error = Some(format!("pruning: {}", report.failed.join("; ")));
    }
}

/// A remote object as a catalog entry (its key as the path), when it is one of our backups.
pub fn remote_backup(o: &RemoteObject) -> Option<BackupFile> {
    let p = layout::parse_relative(Path::new(&o.key))?;
    Some(BackupFile::new(PathBuf::from(&o.key), PathBuf::from(&o.key), p, o.size.unwrap_or(0), SystemTime::UNIX_EPOCH))
}
