//! The local catalog: every backup file under `BACKUP_DIR` that parses as ours (or upstream's,
//! which is the same layout), with its manifest (`manifest`). Deleting goes through
//! `storage::local` and `prune::apply`.
//!
//! Files that do not parse are invisible here, so nothing else can ever delete them. `load` only
//! reads (the `.sha256` and `.verified` files of older releases are read into the records it
//! returns); `tidy` writes: it moves those sidecars into manifests and removes them (the bash
//! version's restore and pruning tripped on them), and drops records whose backup is gone
//! (pruned by the bash version, deleted by hand). `scan` is both; a backup run loads, and tidies
//! only when it has the folder to itself. `reload` walks again but reads only the records that
//! changed (the daemon after each job).

use std::collections::{HashMap, HashSet};
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
pub mod tidy;

pub use layout::BackupKey;
use layout::Class;
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
    /// `rel` as a key (in a `Storage`, in its record).
    key: BackupKey,
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
    /// When the record file was last changed, as last read (`reload` reads it again when not).
    record_modified: Option<SystemTime>,
    /// Old sidecar files (`.sha256`, `.verified`) beside it, read into `manifest`; `tidy`
    /// moves them into the record file.
    sidecars: bool,
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
            key: BackupKey::from_rel(&rel),
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
            record_modified: None,
            sidecars: false,
        }
    }

    /// Ordering for "newest": the timestamp in the name, then the path as a tie-breaker.
    pub fn sort_key(&self) -> (NaiveDateTime, &Path) {
        (self.timestamp, &self.path)
    }

    /// The backup's key in a `Storage` and in its record: its relative path, `/`-separated.
    pub fn key(&self) -> &BackupKey {
        &self.key
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

/// Lists every backup under `root` with its manifest, sorted oldest first, and tidies the
/// folder (`tidy`). A missing root is an empty catalog.
///
/// # Errors
/// When a directory under the root cannot be read.
pub fn scan(root: &Path) -> anyhow::Result<Vec<BackupFile>> {
    let mut files = load(root)?;
    tidy::tidy(root, &mut files);
    Ok(files)
}

/// Lists every backup under `root` with its manifest, sorted oldest first, writing nothing.
///
/// # Errors
/// As `scan`.
pub fn load(root: &Path) -> anyhow::Result<Vec<BackupFile>> {
    reload(root, &[])
}

/// `load`, reusing each entry of `previous` whose file (size, time) and record file (time)
/// have not changed: a walk, and records read only where something changed.
///
/// # Errors
/// As `scan`.
pub fn reload(root: &Path, previous: &[BackupFile]) -> anyhow::Result<Vec<BackupFile>> {
    count_scan(root);
    if !root.exists() {
        return Ok(Vec::new());
    }
    let known: HashMap<&Path, &BackupFile> = previous.iter().map(|b| (b.path.as_path(), b)).collect();
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
        let modified = meta.modified().unwrap_or(SystemTime::UNIX_EPOCH);
        let unchanged = known.get(entry.path()).filter(|b| {
            b.size == meta.len()
                && b.modified == modified
                && !b.sidecars
                && record_modified(root, b.key()) == b.record_modified
        });
        let mut file = match unchanged {
            Some(b) => (*b).clone(),
            None => with_record(root, entry.path(), rel, placement, &meta),
        };
        if !file.in_progress {
            tidy::read_sidecars(&mut file, &names);
        }
        out.push(file);
    }
    out.sort_by(|a, b| a.sort_key().cmp(&b.sort_key()));
    Ok(out)
}

/// Walks and record reads of each root in this process: a run reads its catalog once, the
/// daemon's refresh only the records that changed (`tests/` check both).
static READS: std::sync::Mutex<Vec<(PathBuf, u64, u64)>> = std::sync::Mutex::new(Vec::new());

fn count(root: &Path, walks: u64, records: u64) {
    let mut reads = READS.lock().unwrap_or_else(|e| e.into_inner());
    match reads.iter_mut().find(|(r, _, _)| r == root) {
        Some((_, w, n)) => (*w, *n) = (*w + walks, *n + records),
        None => reads.push((root.to_path_buf(), walks, records)),
    }
}

fn count_scan(root: &Path) {
    count(root, 1, 0);
}

/// How many times the folder under `root` was walked in this process.
pub fn scans_of(root: &Path) -> u64 {
    let reads = READS.lock().unwrap_or_else(|e| e.into_inner());
    reads.iter().find(|(r, _, _)| r == root).map_or(0, |(_, w, _)| *w)
}

/// How many backup records under `root` were read in this process.
pub fn record_reads_of(root: &Path) -> u64 {
    let reads = READS.lock().unwrap_or_else(|e| e.into_inner());
    reads.iter().find(|(r, _, _)| r == root).map_or(0, |(_, _, n)| *n)
}

/// When `key`'s record file was last changed (`None`: it has none).
fn record_modified(root: &Path, key: &str) -> Option<SystemTime> {
    fs::metadata(manifest::record_path(root, key)).and_then(|m| m.modified()).ok()
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
        file.record_modified = record_modified(root, file.key());
        file.manifest = current_record(root, file);
    }
}

/// The file's record, unless it was taken from a file that has changed since (a scanned
/// record is only as good as the bytes it scanned).
fn current_record(root: &Path, file: &BackupFile) -> Option<Manifest> {
    file.record_modified?;
    count(root, 0, 1);
    let m = manifest::read(root, file.key())?;
    let modified = file.modified.duration_since(SystemTime::UNIX_EPOCH).map(|d| d.as_secs() as i64).ok();
    let changed = m.size_bytes != file.size || (m.modified_unix.is_some() && m.modified_unix != modified);
    (m.origin == Origin::Written || !changed).then_some(m)
}

/// Records what an integrity pass found in `b` (a file without a complete record: the bash
/// version's, or ours from before manifests), so that `-l` and retention know it is complete,
/// or not, without decoding it again. Records written with the backup are left as they are.
pub fn record_scan(root: &Path, b: &BackupFile, checked: &crate::catalog::checksum::Checked) {
    let Some(stream) = &checked.stream else { return };
    let mut m = b.manifest.clone().unwrap_or_else(|| Manifest::new(b.key(), Origin::Scanned, b.size));
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
    let mut m = b.manifest.clone().unwrap_or_else(|| Manifest::new(b.key(), Origin::Scanned, b.size));
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
mod tests;
