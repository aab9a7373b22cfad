//! The local catalog: every backup file under `BACKUP_DIR` that parses as ours (or upstream's,
//! which is the same layout), with the sidecars beside it. Deleting goes through
//! `storage::local` and `prune::apply`.
//!
//! Files that do not parse are invisible here, so nothing else can ever delete them.

use std::collections::HashSet;
use std::fs;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use anyhow::Context;
use chrono::{NaiveDate, NaiveDateTime};
use walkdir::WalkDir;

use crate::layout::{self, CHECKSUM_SUFFIX, Class, VERIFIED_SUFFIX};

/// One backup file found on disk.
#[derive(Debug, Clone, PartialEq, Eq)]
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
    pub has_checksum: bool,
    pub has_verification: bool,
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
            has_checksum: false,
            has_verification: false,
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

    pub fn file_name(&self) -> String {
        self.path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default()
    }
}

/// Lists every backup under `root`, sorted oldest first. A missing root is an empty catalog.
///
/// # Errors
/// When a directory under the root cannot be read.
pub fn scan(root: &Path) -> anyhow::Result<Vec<BackupFile>> {
    if !root.exists() {
        return Ok(Vec::new());
    }
    let mut files = Vec::new();
    let mut names = HashSet::new();
    for entry in WalkDir::new(root).min_depth(2).max_depth(3) {
        let entry = entry.with_context(|| format!("reading backup folder {}", root.display()))?;
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
        let meta = entry.metadata().with_context(|| format!("reading {}", entry.path().display()))?;
        let sidecar = |suffix: &str| names.contains(&with_suffix(entry.path(), suffix));
        let mut file = BackupFile::new(
            entry.path().to_path_buf(),
            rel.to_path_buf(),
            placement,
            meta.len(),
            meta.modified().unwrap_or(SystemTime::UNIX_EPOCH),
        );
        file.has_checksum = sidecar(CHECKSUM_SUFFIX);
        file.has_verification = sidecar(VERIFIED_SUFFIX);
        out.push(file);
    }
    out.sort_by(|a, b| a.sort_key().cmp(&b.sort_key()));
    Ok(out)
}

/// `path` + `suffix` (`x.sql.gz` + `.sha256`).
pub fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(suffix);
    PathBuf::from(s)
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
        touch(root, "daily/2026-11-20/db-app_2026-11-20_01-00-00.sql.gz.sha256");
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
        assert!(found[1].has_checksum && !found[0].has_checksum);
        assert!(found[2].in_progress);
        assert_eq!(found[1].path, a);
    }
}
