//! `-l`: every backup per database (class, file, size, age, checksum, verification), the
//! configured databases that have none, and the free space on the backup volume. Reads the
//! file system only; no database needs to be reachable.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;

use anyhow::Context;
use chrono::Utc;

use crate::catalog::{self, BackupFile};
use crate::config::Settings;
use crate::error::Exit;
use crate::human;
use crate::mirror::remote_backup;
use crate::verification;

/// Prints the listing to stdout.
///
/// # Errors
/// When the backup folder cannot be read or stdout cannot be written.
pub fn run(settings: &Settings) -> anyhow::Result<()> {
    let backups = catalog::scan(&settings.backup_dir)?;
    let now = settings.zone.local(Utc::now());
    let mut out = std::io::stdout().lock();
    render(&mut out, settings, &backups, now).context("writing the listing")
}

fn render(
    out: &mut dyn Write,
    settings: &Settings,
    backups: &[BackupFile],
    now: chrono::NaiveDateTime,
) -> std::io::Result<()> {
    let root = &settings.backup_dir;
    let total: u64 = backups.iter().map(|b| b.size).sum();
    let mut by_core: BTreeMap<String, Vec<&BackupFile>> = BTreeMap::new();
    for b in backups {
        by_core.entry(b.core.clone()).or_default().push(b);
    }
    for db in &settings.databases {
        by_core.entry(db.spec.core_name()).or_default();
    }
    writeln!(
        out,
        "Backups in {}: {} databases, {} files, {}",
        root.display(),
        by_core.len(),
        backups.len(),
        human::bytes(total)
    )?;
    writeln!(out, "{}", free_space(root))?;
    for (core, files) in &by_core {
        writeln!(out)?;
        let complete: Vec<&&BackupFile> = files.iter().filter(|b| !b.in_progress).collect();
        match complete.last() {
            Some(newest) => writeln!(
                out,
                "{core}: {} backups, newest {} ({} ago)",
                complete.len(),
                newest.timestamp.format("%Y-%m-%d %H:%M:%S"),
                human::age((now - newest.timestamp).to_std().unwrap_or_default())
            )?,
            None => writeln!(out, "{core}: no backups")?,
        }
        if files.is_empty() {
            continue;
        }
        let width = files.iter().map(|b| b.rel.as_os_str().len()).max().unwrap_or(4).max(4);
        writeln!(out, "  {:<8} {:<width$} {:>10} {:>8} {:<8} VERIFIED", "CLASS", "FILE", "SIZE", "AGE", "SHA256")?;
        for b in files.iter().rev() {
            let class = b.class.map(|c| c.name()).unwrap_or("flat");
            let age = human::age((now - b.timestamp).to_std().unwrap_or_default());
            let state = if b.in_progress {
                "partial"
            } else if b.has_checksum {
                "yes"
            } else {
                "-"
            };
            let verified = match b.has_verification.then(|| verification::read(&b.path)).flatten() {
                Some(r) if r.ok => "ok",
                Some(_) => "FAILED",
                None if b.has_verification => "unreadable",
                None => "-",
            };
            writeln!(
                out,
                "  {class:<8} {:<width$} {:>10} {age:>8} {state:<8} {verified}",
                b.rel.display(),
                human::bytes(b.size)
            )?;
        }
    }
    Ok(())
}

fn free_space(root: &Path) -> String {
    match nix::sys::statvfs::statvfs(root) {
        Ok(s) => {
            let frag = s.fragment_size();
            let total = s.blocks() * frag;
            let free = s.blocks_available() * frag;
            let used_pct = (free * 100).checked_div(total).map_or(0, |f| 100 - f);
            format!("Free space: {} of {} ({used_pct}% used)", human::bytes(free), human::bytes(total))
        }
        Err(e) => format!("Free space: unknown ({e}: {})", root.display()),
    }
}

/// `-l --remote`: the copies on each mirror, per database, newest first. Exit 1 when a
/// mirror cannot be listed.
///
/// # Errors
/// When the mirror settings are unusable.
pub fn run_remote(settings: &Settings) -> anyhow::Result<Exit> {
    let mirrors = crate::storage::from_settings(&settings.mirrors)?;
    if mirrors.is_empty() {
        println!("No mirror is configured (FTP_URL, S3_ENDPOINT).");
        return Ok(Exit::Success);
    }
    let mut failed = false;
    for m in &mirrors {
        println!("{}:", m.name());
        let list = match m.list() {
            Ok(l) => l,
            Err(e) => {
                println!("  cannot be listed: {e:#}");
                failed = true;
                continue;
            }
        };
        let sidecars: std::collections::HashSet<&str> =
            list.iter().filter_map(|o| o.key.strip_suffix(crate::layout::CHECKSUM_SUFFIX)).collect();
        let mut by_core: BTreeMap<String, Vec<BackupFile>> = BTreeMap::new();
        for b in list.iter().filter_map(remote_backup) {
            by_core.entry(b.core.clone()).or_default().push(b);
        }
        if by_core.is_empty() {
            println!("  no backups");
        }
        for (core, mut files) in by_core {
            files.sort_by(|a, b| b.sort_key().cmp(&a.sort_key()));
            println!("  {core}: {} copies", files.len());
            for f in files {
                let size = if f.size > 0 { human::bytes(f.size) } else { "-".into() };
                let sum = if sidecars.contains(f.rel.to_string_lossy().as_ref()) { "sha256" } else { "-" };
                println!("    {:<70} {size:>10} {sum}", f.rel.display());
            }
        }
    }
    Ok(if failed { Exit::Failed } else { Exit::Success })
}
