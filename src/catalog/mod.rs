//! The local catalog: every backup file under `BACKUP_DIR` that parses as ours (or upstream's,
//! which is the same layout), with its manifest (`manifest`). Deleting goes through
//! `storage::local` and `prune::apply`.
//!
//! Files that do not parse are invisible here, so nothing else can ever delete them. Each scan
//! also keeps the catalog tidy: the `.sha256` and `.verified` files of older releases (which
//! the bash version's restore and pruning tripped on) are moved into manifests and removed, and
//! records whose backup is gone (pruned by the bash version, deleted by hand) are dropped.

use std::collections::HashSet;
use std::fs;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use anyhow::Context;
use chrono::{NaiveDate, NaiveDateTime};
use walkdir::WalkDir;

pub mod anomaly;
pub mod checksum;
pub mod durable;
pub mod layout;
pub mod lock;
pub mod manifest;
pub mod retention;
pub mod selection;

use layout::{CHECKSUM_SUFFIX, Class, VERIFIED_SUFFIX, with_suffix};
use manifest::{Manifest, Origin};

/// A backup that was written and committed.
#[derive(Debug, Clone)]
pub struct Written {
    pub path: PathBuf,
    /// Compressed size on disk.
    pub bytes: u64,
    pub sha256: String,
    pub duration: std::time::Duration,
    /// What the scanner counted in the uncompressed stream (rows per table, objects).
    pub stream: crate::stream::scan::Summary,
}

/// One backup file found on disk.
#[derive(Debug, Clone, PartialEq)]
pub struct BackupFile {
    pub path: PathBuf,
    /// Path relative to the backup root, e.g. `daily/2026-11-22/db-app_2026-11-22_01-00-00.sql.gz`.
    pub rel: PathBuf,
    pub core: String,
    pub timestamp: NaiveDateTime,
    pub class: Option<Class>,
    pub folder_date: NaiveDate,
    pub extension: &'static str,
    pub in_progress: bool,
    pub size: u64,
    pub modified: SystemTime,
    /// The backup's record, when it has one.
    pub manifest: Option<Manifest>,
}

impl BackupFile {
    /// A backup at `path` (`rel` below the root) whose relative path parsed as `placement`.
    pub fn new(
        path: PathBuf,
        rel: PathBuf,
        placement: layout::Placement,
        size: u64,
        modified: SystemTime,
    ) -> BackupFile {
        BackupFile {
            path,
            rel,
            core: placement.name.core,
            timestamp: placement.name.timestamp,
            class: placement.class,
            folder_date: placement.folder_date,
            extension: placement.name.extension,
            in_progress: placement.name.in_progress,
            size,
            modified,
            manifest: None,
        }
    }

    /// Ordering for "newest": the timestamp in the name, then the path as a tie-breaker.
    pub fn sort_key(&self) -> (NaiveDateTime, &Path) {
        (self.timestamp, &self.path)
    }

    /// The backup's key in a `Storage`: its relative path, `/`-separated.
    pub fn key(&self) -> String {
        self.rel.components().map(|c| c.as_os_str().to_string_lossy()).collect::<Vec<_>>().join("/")
    }

    /// The recorded sha256 of the file, when known.
    pub fn sha256(&self) -> Option<&str> {
        self.manifest.as_ref().and_then(|m| m.sha256.as_deref())
    }

    /// Known to be incomplete (scanned, no trailer).
    pub fn known_incomplete(&self) -> bool {
        self.manifest.as_ref().is_some_and(|m| m.complete == Some(false))
    }

    /// Whether its newest verification passed.
    pub fn verified(&self) -> bool {
        self.manifest.as_ref().is_some_and(Manifest::verified)
    }

    pub fn file_name(&self) -> String {
        self.path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default()
    }
}

/// Lists every backup under `root` with its manifest, sorted oldest first, migrating old
/// sidecars and dropping orphaned records on the way. A missing root is an empty catalog.
///
/// # Errors
/// When a directory under the root cannot be read.
pub fn scan(root: &Path) -> anyhow::Result<Vec<BackupFile>> {
    count_scan(root);
    if !root.exists() {
        return Ok(Vec::new());
    }
    let mut files = Vec::new();
    let mut names = HashSet::new();
    for entry in WalkDir::new(root).min_depth(2).max_depth(3) {
        // Another job or shard may rename or delete a file while the folder is walked.
        let entry = match entry {
            Err(e) if e.io_error().is_some_and(|io| io.kind() == std::io::ErrorKind::NotFound) => continue,
            other => other.with_context(|| format!("reading backup folder {}", root.display()))?,
        };
        if entry.file_type().is_file() {
            names.insert(entry.path().to_path_buf());
            files.push(entry);
        }
    }
    let mut out = Vec::new();
    for entry in files {
        let rel = entry.path().strip_prefix(root).unwrap_or(entry.path());
        let Some(placement) = layout::parse_relative(rel) else {
            continue;
        };
        let meta = match entry.metadata() {
            Err(e) if e.io_error().is_some_and(|io| io.kind() == std::io::ErrorKind::NotFound) => continue,
            other => other.with_context(|| format!("reading {}", entry.path().display()))?,
        };
        let mut file = with_record(root, entry.path(), rel, placement, &meta);
        if !file.in_progress {
            migrate_sidecars(root, &mut file, &names);
        }
        out.push(file);
    }
    drop_orphans(root, &out);
    out.sort_by(|a, b| a.sort_key().cmp(&b.sort_key()));
    Ok(out)
}

/// Full scans of each root in this process: a run reads its catalog once (`tests/` check it).
static SCANS: std::sync::Mutex<Vec<(PathBuf, u64)>> = std::sync::Mutex::new(Vec::new());

fn count_scan(root: &Path) {
    let mut scans = SCANS.lock().unwrap_or_else(|e| e.into_inner());
    match scans.iter_mut().find(|(r, _)| r == root) {
        Some((_, n)) => *n += 1,
        None => scans.push((root.to_path_buf(), 1)),
    }
}

/// How many times `scan` walked `root` in this process.
pub fn scans_of(root: &Path) -> u64 {
    let scans = SCANS.lock().unwrap_or_else(|e| e.into_inner());
    scans.iter().find(|(r, _)| r == root).map_or(0, |(_, n)| *n)
}

/// One backup file (by its path under `root`) with its record, without walking the folder:
/// `None` when it is not in our layout or is gone.
pub fn entry(root: &Path, path: &Path) -> Option<BackupFile> {
    let rel = path.strip_prefix(root).ok()?;
    let placement = layout::parse_relative(rel)?;
    let meta = fs::metadata(path).ok()?;
    Some(with_record(root, path, rel, placement, &meta))
}

/// The catalog entry for a file found at `path` (`rel` under `root`), with its record.
fn with_record(root: &Path, path: &Path, rel: &Path, placement: layout::Placement, meta: &fs::Metadata) -> BackupFile {
    let modified = meta.modified().unwrap_or(SystemTime::UNIX_EPOCH);
    let mut file = BackupFile::new(path.to_path_buf(), rel.to_path_buf(), placement, meta.len(), modified);
    reread_record(root, &mut file);
    file
}

/// `file`'s record read again (after a step of this run wrote it).
pub fn reread_record(root: &Path, file: &mut BackupFile) {
    if !file.in_progress {
        file.manifest = current_record(root, file);
    }
}

/// The file's record, unless it was taken from a file that has changed since (a scanned
/// record is only as good as the bytes it scanned).
fn current_record(root: &Path, file: &BackupFile) -> Option<Manifest> {
    let m = manifest::read(root, &file.key())?;
    let modified = file.modified.duration_since(SystemTime::UNIX_EPOCH).map(|d| d.as_secs() as i64).ok();
    let changed = m.size_bytes != file.size || (m.modified_unix.is_some() && m.modified_unix != modified);
    (m.origin == Origin::Written || !changed).then_some(m)
}

/// Moves `<backup>.sha256` and `<backup>.verified` (older releases) into the manifest, then
/// removes them; they stay when the manifest cannot be written (read-only volume).
fn migrate_sidecars(root: &Path, file: &mut BackupFile, names: &HashSet<PathBuf>) {
    let sha_path = with_suffix(&file.path, CHECKSUM_SUFFIX);
    let verified_path = with_suffix(&file.path, VERIFIED_SUFFIX);
    let (has_sha, has_verified) = (names.contains(&sha_path), names.contains(&verified_path));
    if !has_sha && !has_verified {
        return;
    }
    let mut m = file.manifest.clone().unwrap_or_else(|| Manifest::new(&file.key(), Origin::Migrated, file.size));
    if has_sha && m.sha256.is_none() {
        m.sha256 = std::fs::read_to_string(&sha_path)
            .ok()
            .and_then(|t| t.split_whitespace().next().map(str::to_ascii_lowercase))
            .filter(|d| d.len() == 64 && d.bytes().all(|b| b.is_ascii_hexdigit()));
    }
    if has_verified && let Some(v) = std::fs::read(&verified_path).ok().and_then(|b| serde_json::from_slice(&b).ok()) {
        m.verifications.push(v);
    }
    match manifest::write(root, &m) {
        Ok(()) => {
            for p in [&sha_path, &verified_path].into_iter().filter(|p| names.contains(*p)) {
                if let Err(e) = fs::remove_file(p) {
                    tracing::warn!(path = %p.display(), error = %e, "Could not remove an old sidecar file.");
                }
            }
            tracing::info!(path = %file.path.display(), "Moved the backup's checksum and verification into its manifest.");
            file.manifest = Some(m);
        }
        Err(e) => {
            tracing::warn!(path = %file.path.display(), error = %format!("{e:#}"), "Could not write a manifest; the old sidecar files stay.");
            file.manifest = Some(m);
        }
    }
}

/// Records what an integrity pass found in `b` (a file without a complete record: the bash
/// version's, or ours from before manifests), so that `-l` and retention know it is complete,
/// or not, without decoding it again. Records written with the backup are left as they are.
pub fn record_scan(root: &Path, b: &BackupFile, checked: &crate::catalog::checksum::Checked) {
    let Some(stream) = &checked.stream else { return };
    let mut m = b.manifest.clone().unwrap_or_else(|| Manifest::new(&b.key(), Origin::Scanned, b.size));
    if m.origin == Origin::Written && m.complete.is_some() {
        return;
    }
    m.set_stream(stream);
    m.size_bytes = b.size;
    m.sha256 = m.sha256.or_else(|| checked.sha256.clone());
    m.modified_unix = b.modified.duration_since(SystemTime::UNIX_EPOCH).map(|d| d.as_secs() as i64).ok();
    if let Err(e) = manifest::write(root, &m) {
        tracing::warn!(path = %b.path.display(), error = %format!("{e:#}"), "Could not record what the backup holds.");
    }
}

/// Records that `b` cannot be decoded at all (corrupt, truncated compression): incomplete.
pub fn record_unreadable(root: &Path, b: &BackupFile, reason: &str) {
    let mut m = b.manifest.clone().unwrap_or_else(|| Manifest::new(&b.key(), Origin::Scanned, b.size));
    if m.origin == Origin::Written {
        return;
    }
    m.complete = Some(false);
    m.incomplete_reason = Some(reason.to_string());
    m.size_bytes = b.size;
    m.modified_unix = b.modified.duration_since(SystemTime::UNIX_EPOCH).map(|d| d.as_secs() as i64).ok();
    if let Err(e) = manifest::write(root, &m) {
        tracing::warn!(path = %b.path.display(), error = %format!("{e:#}"), "Could not record what the backup holds.");
    }
}

/// Removes records whose backup is gone.
/// Removes records whose backup file is gone. A record may belong to a file this walk saw
/// under its `.in_progress` name (another job renamed it and wrote its record meanwhile): a
/// record whose backup exists now is kept.
fn drop_orphans(root: &Path, backups: &[BackupFile]) {
    let dir = root.join(manifest::CATALOG_DIR);
    let Ok(entries) = fs::read_dir(&dir) else { return };
    let live: HashSet<String> = backups.iter().map(|b| manifest::record_key(&b.key())).collect();
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let key = format!("{}/{name}", manifest::CATALOG_DIR);
        if name.ends_with(".json") && !live.contains(&key) && !backup_exists(root, &entry.path()) {
            let _ = fs::remove_file(entry.path());
        }
    }
}

/// Whether the backup file a record names exists (the record's `backup` field).
fn backup_exists(root: &Path, record: &Path) -> bool {
    let Ok(bytes) = fs::read(record) else { return false };
    let named = serde_json::from_slice::<serde_json::Value>(&bytes)
        .ok()
        .and_then(|v| v.get("backup").and_then(|b| b.as_str()).map(str::to_string));
    named.is_some_and(|rel| crate::model::safe_name::join_under(root, rel).is_ok_and(|p| p.is_file()))
}

/// Removes `start` and its parents while they are empty, stopping at (never removing) `root`.
pub fn remove_empty_dirs(root: &Path, start: Option<&Path>) {
    let mut dir = start;
    while let Some(d) = dir {
        if d == root || !d.starts_with(root) || fs::remove_dir(d).is_err() {
            break;
        }
        dir = d.parent();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn touch(root: &Path, rel: &str) -> PathBuf {
        let p = root.join(rel);
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(&p, b"x").unwrap();
        p
    }

    #[test]
    fn scan_finds_ours_and_upstreams_and_ignores_the_rest() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        let a = touch(root, "daily/2026-11-20/db-app_2026-11-20_01-00-00.sql.gz");
        std::fs::write(
            root.join("daily/2026-11-20/db-app_2026-11-20_01-00-00.sql.gz.sha256"),
            format!("{}  db-app_2026-11-20_01-00-00.sql.gz\n", "ab".repeat(32)),
        )
        .unwrap();
        touch(root, "daily/2026-11-20/db-app_2026-11-20_01-00-00.sql.gz.verified");
        touch(root, "2026-11-19/db-app_2026-11-19_01-00-00.sql.gz");
        touch(root, "weekly/2026-11-22/db-app_2026-11-22_01-00-00.sql.gz.in_progress");
        touch(root, "backup.sql");
        touch(root, "daily/2026-11-20/notes.txt");
        touch(root, "misc/2026-11-20/db-app_2026-11-20_01-00-00.sql.gz");
        let found = scan(root).unwrap();
        let rels: Vec<String> = found.iter().map(|b| b.rel.display().to_string()).collect();
        assert_eq!(
            rels,
            [
                "2026-11-19/db-app_2026-11-19_01-00-00.sql.gz",
                "daily/2026-11-20/db-app_2026-11-20_01-00-00.sql.gz",
                "weekly/2026-11-22/db-app_2026-11-22_01-00-00.sql.gz.in_progress",
            ]
        );
        // The old sidecars moved into the manifest and left the dated folder.
        assert_eq!(found[1].sha256(), Some("ab".repeat(32).as_str()));
        assert_eq!(found[1].manifest.as_ref().unwrap().origin, Origin::Migrated);
        assert!(found[0].manifest.is_none());
        assert!(!root.join("daily/2026-11-20/db-app_2026-11-20_01-00-00.sql.gz.sha256").exists());
        assert!(!root.join("daily/2026-11-20/db-app_2026-11-20_01-00-00.sql.gz.verified").exists());
        assert!(found[2].in_progress);
        assert_eq!(found[1].path, a);
        // A second scan reads the record; the record of a deleted backup is dropped.
        assert_eq!(scan(root).unwrap()[1].sha256(), Some("ab".repeat(32).as_str()));
        std::fs::remove_file(&a).unwrap();
        scan(root).unwrap();
        assert!(manifest::read(root, "daily/2026-11-20/db-app_2026-11-20_01-00-00.sql.gz").is_none());
        assert_eq!(std::fs::read_dir(root.join(manifest::CATALOG_DIR)).unwrap().count(), 0);
    }

    /// A backup renamed from `.in_progress` (and its record written) while another job walked
    /// the folder keeps its record; a record whose backup is gone is dropped.
    #[test]
    fn a_record_written_during_a_walk_is_not_an_orphan() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        let renamed = "daily/2026-11-20/db-app_2026-11-20_01-00-00.sql.gz";
        touch(root, renamed);
        manifest::write(root, &Manifest::new(renamed, Origin::Written, 1)).unwrap();
        let gone = "daily/2026-11-19/db-app_2026-11-19_01-00-00.sql.gz";
        manifest::write(root, &Manifest::new(gone, Origin::Written, 1)).unwrap();
        // The walk saw neither final file (one was still `.in_progress`, one is deleted).
        drop_orphans(root, &[]);
        assert!(manifest::read(root, renamed).is_some(), "kept: its backup exists now");
        assert!(manifest::read(root, gone).is_none(), "dropped: its backup is gone");
    }
}
