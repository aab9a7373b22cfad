//! `-p`: apply the retention policy to every configured database now; or, with `-f FILTER`,
//! delete the backups whose relative path contains FILTER (or whose path is FILTER).
//!
//! Filtered deletion lists the files first, asks on a terminal (`-s` skips the question,
//! no terminal and no `-s` refuses), and refuses to delete every backup of a database unless
//! `--force`.

use std::collections::BTreeSet;
use std::path::Path;

use crate::catalog::lock::RunLock;
use crate::catalog::retention::{Deletion, Reason};
use crate::catalog::{self, BackupFile};
use crate::config::Settings;
use crate::model::error::{Exit, UsageError};
use crate::storage::local::{LocalStorage, objects};

/// Runs the prune mode.
///
/// # Errors
/// Lock held, unreadable backup folder, or a refused/unconfirmable filtered deletion.
pub fn run(settings: &Settings, filter: Option<&str>, force: bool, scripted: bool) -> anyhow::Result<Exit> {
    let root = &settings.backup_dir;
    let _lock = RunLock::acquire(root, "prune")?;
    let backups = catalog::scan(root)?;
    let Some(f) = filter else {
        let report = crate::storage::prune::apply_policy(settings, backups)?;
        for key in &report.deleted {
            println!("Deleted {key}");
        }
        for k in &report.kept {
            println!("Kept {} beyond the count: {}", k.key, k.why);
        }
        for e in &report.failed {
            eprintln!("error: {e}");
        }
        let archives = crate::pitr::retention::prune_archives(settings);
        for line in &archives {
            match line {
                Ok(text) => println!("{text}"),
                Err(e) => eprintln!("error: {e}"),
            }
        }
        if report.deleted.is_empty() && report.failed.is_empty() && archives.is_empty() {
            println!("Nothing to prune.");
        }
        let failed = !report.failed.is_empty() || archives.iter().any(Result::is_err);
        return Ok(if failed { Exit::Failed } else { Exit::Success });
    };
    let chosen = select_by_filter(&backups, f);
    if chosen.is_empty() {
        println!("No backup matches \"{f}\"; nothing deleted.");
        return Ok(Exit::Success);
    }
    check_not_everything(&backups, &chosen, force)?;
    println!("Backups matching \"{f}\":");
    for b in &chosen {
        println!("  {}", b.rel.display());
    }
    if !scripted && !confirm(chosen.len())? {
        println!("Nothing deleted.");
        return Ok(Exit::Success);
    }
    let plan: Vec<Deletion> =
        chosen.iter().map(|b| Deletion { key: b.key().to_string(), reason: Reason::Requested }).collect();
    let report = crate::storage::prune::apply(&LocalStorage::new(root), &plan, &objects(&backups));
    for key in &report.deleted {
        println!("Deleted {key}");
    }
    for e in &report.failed {
        eprintln!("error: {e}");
    }
    Ok(if report.failed.is_empty() { Exit::Success } else { Exit::Failed })
}

/// Backups whose relative path contains `filter`, or whose full path or file name equals it.
pub fn select_by_filter<'a>(backups: &'a [BackupFile], filter: &str) -> Vec<&'a BackupFile> {
    let as_path = Path::new(filter);
    backups.iter().filter(|b| b.path == as_path || b.rel.to_string_lossy().contains(filter)).collect()
}

/// Refuses a selection that holds every complete backup of some database.
fn check_not_everything(all: &[BackupFile], chosen: &[&BackupFile], force: bool) -> anyhow::Result<()> {
    if force {
        return Ok(());
    }
    let cores: BTreeSet<&str> = chosen.iter().map(|b| b.core.as_str()).collect();
    for core in cores {
        let complete = |b: &&BackupFile| b.core == core && !b.in_progress;
        let total = all.iter().filter(complete).count();
        let hit = chosen.iter().copied().filter(complete).count();
        if total > 0 && hit == total {
            return Err(UsageError(format!(
                "refusing to delete every backup of {core} ({total} files); narrow the filter or add --force"
            ))
            .into());
        }
    }
    Ok(())
}

/// Asks on the terminal; without one, refuses (no silent "yes").
fn confirm(count: usize) -> anyhow::Result<bool> {
    if !crate::system::prompt::interactive() {
        return Err(UsageError(
            "not on a terminal: cannot ask for confirmation; add -s to delete without asking".into(),
        )
        .into());
    }
    Ok(crate::system::prompt::confirm(&format!("Delete these {count} backups?"))?)
}
