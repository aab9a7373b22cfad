//! Choosing the backup to restore or verify: exact core-name matching, newest by the
//! timestamp in the name, `.in_progress` files never chosen.
//!
//! `-f FILTER`: an existing file path is used as given; a file name picks that backup; other
//! text matches the backup's relative path, among the target database's backups only, unless
//! the target database has no backups at all (restoring another database's backup under a new
//! name), in which case `-f` is required and searches every backup.

use std::path::{Path, PathBuf};

use crate::catalog::BackupFile;

/// What was chosen.
#[derive(Debug, Clone, PartialEq)]
pub enum Choice {
    /// A backup from the catalog.
    Catalog(Box<BackupFile>),
    /// A file path given with `-f` that is not in the catalog (used as given).
    Path(PathBuf),
    /// A backup downloaded from a mirror (`fetch`): its path is the staged file, its
    /// manifest the mirror's record. Nothing is recorded about it locally.
    Remote(Box<BackupFile>),
}

impl Choice {
    /// The sha256 the file must have: its manifest's, or (a file given by path, outside the
    /// catalog) a `.sha256` file beside it.
    ///
    /// # Errors
    /// A `.sha256` file that exists but cannot be read.
    pub fn expected_sha256(&self) -> anyhow::Result<Option<String>> {
        match self {
            Choice::Catalog(b) | Choice::Remote(b) => Ok(b.sha256().map(str::to_string)),
            Choice::Path(p) => crate::catalog::checksum::read_sidecar(p),
        }
    }

    /// What its record knows: `Some(true)` complete (checked when written or scanned),
    /// `Some(false)` with the reason, `None` unknown (decode and scan it to find out).
    pub fn completeness(&self) -> (Option<bool>, Option<String>) {
        match self {
            Choice::Catalog(b) | Choice::Remote(b) => {
                b.manifest.as_ref().map_or((None, None), |m| (m.complete, m.incomplete_reason.clone()))
            }
            Choice::Path(_) => (None, None),
        }
    }

    /// Fails when the record says the file is incomplete; returns whether its completeness
    /// is known (no scan needed for that).
    ///
    /// # Errors
    /// The file is known to be incomplete (the reason recorded when it was scanned).
    pub fn check_recorded(&self) -> anyhow::Result<bool> {
        match self.completeness() {
            (Some(false), reason) => anyhow::bail!(
                "{} is not a complete backup: {}",
                self.path().display(),
                reason.unwrap_or_else(|| "recorded as incomplete".into())
            ),
            (known, _) => Ok(known == Some(true)),
        }
    }

    pub fn path(&self) -> &Path {
        match self {
            Choice::Catalog(b) | Choice::Remote(b) => &b.path,
            Choice::Path(p) => p,
        }
    }
}

/// Why nothing was chosen; the message says what to do.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NotFound {
    #[error("no backup of {core} was found in {root}")]
    NoBackups { core: String, root: String },
    #[error("no backup of {core} matches \"{filter}\" in {root}")]
    NoMatch { core: String, filter: String, root: String },
    #[error(
        "{core} has no backups of its own in {root}; to restore another database's backup into it, \
         name the backup with -f (a file name, a path, or text of its path)"
    )]
    FilterRequired { core: String, root: String },
}

/// Picks the backup for `core` (the target database's `host-db`).
///
/// # Errors
/// `NotFound` with a message naming the database, the filter and the folder.
pub fn choose(backups: &[BackupFile], root: &Path, core: &str, filter: Option<&str>) -> Result<Choice, NotFound> {
    let root_text = root.display().to_string();
    let complete = || backups.iter().filter(|b| !b.in_progress);
    let own: Vec<&BackupFile> = complete().filter(|b| b.core == core).collect();
    let newest = |list: Vec<&BackupFile>| list.into_iter().max_by(|a, b| a.sort_key().cmp(&b.sort_key())).cloned();
    let Some(filter) = filter else {
        return newest(own)
            .map(|b| Choice::Catalog(Box::new(b)))
            .ok_or(NotFound::NoBackups { core: core.to_string(), root: root_text });
    };
    let as_path = Path::new(filter);
    if let Some(b) = complete().find(|b| b.path == as_path || b.file_name() == filter) {
        return Ok(Choice::Catalog(Box::new(b.clone())));
    }
    if as_path.is_file() {
        return Ok(Choice::Path(as_path.to_path_buf()));
    }
    // Text of the path, or of the path with the database's real name (`a/b` for `a%2Fb`).
    let matches = |b: &&BackupFile| {
        let rel = b.rel.to_string_lossy();
        rel.contains(filter) || rel.replace(&b.core, &crate::model::safe_name::decode(&b.core)).contains(filter)
    };
    let pool: Vec<&BackupFile> =
        if own.is_empty() { complete().filter(matches).collect() } else { own.into_iter().filter(matches).collect() };
    newest(pool).map(|b| Choice::Catalog(Box::new(b))).ok_or(NotFound::NoMatch {
        core: core.to_string(),
        filter: filter.to_string(),
        root: root_text,
    })
}

/// `choose` for a database that must have backups of its own unless a filter is given.
///
/// # Errors
/// As `choose`, plus `FilterRequired` when the target has no backups and no filter was given.
pub fn choose_for_restore(
    backups: &[BackupFile],
    root: &Path,
    core: &str,
    filter: Option<&str>,
) -> Result<Choice, NotFound> {
    let has_own = backups.iter().any(|b| b.core == core && !b.in_progress);
    if !has_own && filter.is_none() && backups.iter().any(|b| !b.in_progress) {
        return Err(NotFound::FilterRequired { core: core.to_string(), root: root.display().to_string() });
    }
    choose(backups, root, core, filter)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::layout;

    fn catalog(rels: &[&str]) -> Vec<BackupFile> {
        rels.iter()
            .map(|rel| {
                let p = layout::parse_relative(Path::new(rel)).unwrap();
                BackupFile::new(Path::new("/b").join(rel), rel.into(), p, 1, std::time::SystemTime::UNIX_EPOCH)
            })
            .collect()
    }

    fn rel(c: Result<Choice, NotFound>) -> String {
        match c.unwrap() {
            Choice::Catalog(b) | Choice::Remote(b) => b.rel.display().to_string(),
            Choice::Path(p) => p.display().to_string(),
        }
    }

    const FILES: &[&str] = &[
        "daily/2026-11-20/db-app_2026-11-20_01-00-00.sql.gz",
        "daily/2026-11-21/db-app_2026-11-21_01-00-00.sql.gz",
        "daily/2026-11-22/db-app_2026-11-22_01-00-00.sql.gz.in_progress",
        "daily/2026-11-22/db-app_v2_2026-11-22_01-00-00.sql.gz",
        "daily/2026-11-20/db-other_2026-11-20_05-00-00.sql.gz",
    ];

    #[test]
    fn newest_complete_backup_of_exactly_that_database() {
        let b = catalog(FILES);
        assert_eq!(
            rel(choose(&b, Path::new("/b"), "db-app", None)),
            "daily/2026-11-21/db-app_2026-11-21_01-00-00.sql.gz"
        );
    }

    #[test]
    fn filter_stays_within_the_target_database() {
        let b = catalog(FILES);
        // "2026-11-20" also matches db-other's file; the target's own backups win.
        assert_eq!(
            rel(choose(&b, Path::new("/b"), "db-app", Some("2026-11-20"))),
            "daily/2026-11-20/db-app_2026-11-20_01-00-00.sql.gz"
        );
        assert_eq!(
            choose(&b, Path::new("/b"), "db-app", Some("05-00-00")),
            Err(NotFound::NoMatch { core: "db-app".into(), filter: "05-00-00".into(), root: "/b".into() })
        );
    }

    #[test]
    fn file_name_and_path_are_used_as_given() {
        let b = catalog(FILES);
        assert_eq!(
            rel(choose(&b, Path::new("/b"), "db-app", Some("db-other_2026-11-20_05-00-00.sql.gz"))),
            "daily/2026-11-20/db-other_2026-11-20_05-00-00.sql.gz"
        );
        assert_eq!(
            rel(choose(&b, Path::new("/b"), "x-y", Some("/b/daily/2026-11-20/db-app_2026-11-20_01-00-00.sql.gz"))),
            "daily/2026-11-20/db-app_2026-11-20_01-00-00.sql.gz"
        );
    }

    #[test]
    fn another_database_needs_a_filter() {
        let b = catalog(FILES);
        assert!(matches!(
            choose_for_restore(&b, Path::new("/b"), "newhost-newdb", None),
            Err(NotFound::FilterRequired { .. })
        ));
        assert_eq!(
            rel(choose_for_restore(&b, Path::new("/b"), "newhost-newdb", Some("db-other"))),
            "daily/2026-11-20/db-other_2026-11-20_05-00-00.sql.gz"
        );
        assert!(matches!(choose(&[], Path::new("/b"), "db-app", None), Err(NotFound::NoBackups { .. })));
    }
}
