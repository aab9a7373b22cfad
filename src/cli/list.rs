//! `-l`: every backup per database (class, file, size, age, checksum, verification), the
//! configured databases that have none, and the free space on the backup volume. Reads the
//! file system only; no database needs to be reachable.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;

use anyhow::Context;
use chrono::Utc;

use crate::backup::mirror::remote_backup;
use crate::catalog::{self, BackupFile};
use crate::config::Settings;
use crate::model::error::Exit;
use crate::model::human;

/// Prints the listing (or, with `json`, the catalog as JSON) to stdout, then each
/// point-in-time archive; with `pitr`, the archives only (`--json`: an array of them).
///
/// # Errors
/// When the backup folder or an archive's index cannot be read, or stdout cannot be written.
pub fn run(settings: &Settings, json: bool, pitr: bool) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    let mut archives = Vec::new();
    for server in &settings.pitr.servers {
        let spec = &server.database.spec;
        if let Some(s) = crate::pitr::report::summary(&settings.backup_dir, &spec.host, spec.port.unwrap_or(5432))? {
            archives.push(s);
        }
    }
    if pitr && json {
        return writeln!(out, "{:#}", serde_json::to_value(&archives)?).context("writing the listing");
    }
    let local = |t: chrono::DateTime<Utc>| settings.zone.local(t).format("%Y-%m-%d %H:%M:%S").to_string();
    if !pitr {
        let backups = catalog::scan(&settings.backup_dir)?;
        if json {
            // The array keeps its shape; the archives are `-l --json --pitr`.
            return writeln!(out, "{:#}", catalog_json(&backups)).context("writing the listing");
        }
        let now = settings.zone.local(Utc::now());
        render(&mut out, settings, &backups, now).context("writing the listing")?;
    }
    for s in &archives {
        writeln!(out).and_then(|()| write!(out, "{}", s.text(local))).context("writing the listing")?;
    }
    if pitr && archives.is_empty() {
        writeln!(out, "No point-in-time archive (PITR_SERVERS lists none, or none has started).")?;
    }
    Ok(())
}

/// Every backup: where it is, what it is, and its manifest (`null` when it has none).
pub fn catalog_json(backups: &[BackupFile]) -> serde_json::Value {
    serde_json::Value::Array(
        backups
            .iter()
            .map(|b| {
                serde_json::json!({
                    "path": b.key().as_str(),
                    "core": b.core,
                    // The real `host-database` the core's encoded name stands for (`safe_name`).
                    "name": crate::model::safe_name::decode(&b.core),
                    "class": b.class.map(|c| c.name()),
                    "timestamp": b.timestamp.format("%Y-%m-%dT%H:%M:%S").to_string(),
                    "size_bytes": b.size,
                    "in_progress": b.in_progress,
                    "manifest": b.manifest,
                })
            })
            .collect(),
    )
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
    // A `host/*` line's databases are listed by their files (listing the server is --check's job).
    for db in settings.databases.iter().filter(|d| d.spec.database != crate::fleet::ALL) {
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
        // The real name (`a/b`, not `a%2Fb`), escaped for the terminal.
        let decoded = crate::model::safe_name::decode(core);
        let core = crate::model::safe_name::printable(&decoded);
        let complete: Vec<&&BackupFile> = files.iter().filter(|b| !b.in_progress && !b.known_incomplete()).collect();
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
        writeln!(
            out,
            "  {:<8} {:<width$} {:>10} {:>8} {:>6} {:>10} {:<10} VERIFIED",
            "CLASS", "FILE", "SIZE", "AGE", "TABLES", "ROWS", "STATE"
        )?;
        for b in files.iter().rev() {
            let class = b.class.map(|c| c.name()).unwrap_or("flat");
            let age = human::age((now - b.timestamp).to_std().unwrap_or_default());
            let m = b.manifest.as_ref();
            let state = if b.in_progress {
                "partial"
            } else if b.known_incomplete() {
                "INCOMPLETE"
            } else if m.is_some_and(|m| m.anomaly.is_some()) {
                "ANOMALY"
            } else if b.sha256().is_some() {
                "sha256"
            } else {
                "-"
            };
            let tables = m.filter(|m| m.complete.is_some()).map_or("-".into(), |m| m.tables.len().to_string());
            let rows = match m.filter(|m| m.complete.is_some()) {
                Some(m) => m.rows().map_or("unknown".into(), |r| r.to_string()),
                None => "-".into(),
            };
            let mut verified = match m.and_then(|m| m.last_verification()) {
                Some(v) if v.ok => format!("ok {}", v.verified_at.get(..10).unwrap_or_default()),
                Some(_) => "FAILED".into(),
                None => "-".into(),
            };
            // The last upgrade rehearsal (a restore into the newest installed major), apart.
            if let Some(r) = m.and_then(|m| m.upgrade_rehearsals.last()) {
                let major = r.server_major.map_or("?".into(), |m| m.to_string());
                verified.push_str(&format!("; upgrade to {major}: {}", if r.ok { "ok" } else { "FAILED" }));
            }
            writeln!(
                out,
                "  {class:<8} {:<width$} {:>10} {age:>8} {tables:>6} {rows:>10} {state:<10} {verified}",
                b.rel.display(),
                human::bytes(b.size)
            )?;
            if let Some(a) = m.and_then(|m| m.anomaly.as_ref()) {
                for f in &a.findings {
                    writeln!(out, "           anomaly: {f} (against {})", a.baseline)?;
                }
            }
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
pub fn run_remote(settings: &Settings, cancel: &crate::system::cancel::Cancel) -> anyhow::Result<Exit> {
    let mirrors = crate::storage::from_settings(settings, cancel)?;
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
        let keys: std::collections::HashSet<&str> = list.iter().map(|o| o.key.as_str()).collect();
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
                let sum =
                    if keys.contains(crate::catalog::manifest::record_key(f.key()).as_str()) { "record" } else { "-" };
                println!("    {:<70} {size:>10} {sum}", f.rel.display());
            }
        }
    }
    Ok(if failed { Exit::Failed } else { Exit::Success })
}
