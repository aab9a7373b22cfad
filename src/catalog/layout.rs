//! The on-disk layout, exactly as upstream (C3):
//! `BACKUP_DIR/[daily|weekly|monthly/]YYYY-MM-DD/<host>-<db>_YYYY-MM-DD_HH-MM-SS.sql.gz`,
//! written as `<name>.in_progress` first; plus our `<name>.sha256` sidecar.
//!
//! Pure path and name logic: building names for a new backup, classifying a date, and parsing
//! a relative path back into its parts. No file system access.

use std::path::{Component, Path, PathBuf};

use chrono::{Datelike, Duration, NaiveDate, NaiveDateTime, Weekday};

pub use crate::model::policy::Class;
use crate::model::policy::{Policy, Strategy};

/// Suffix of a backup being written.
pub const IN_PROGRESS_SUFFIX: &str = ".in_progress";
/// Suffix of the checksum sidecar (`sha256sum` format).
pub const CHECKSUM_SUFFIX: &str = ".sha256";
/// Suffix of the verification record (written by `-v`).
pub const VERIFIED_SUFFIX: &str = ".verified";
/// Every sidecar that belongs to a backup file and goes away with it.
pub const SIDECAR_SUFFIXES: [&str; 2] = [CHECKSUM_SUFFIX, VERIFIED_SUFFIX];

const TIMESTAMP_FORMAT: &str = "%Y-%m-%d_%H-%M-%S";
const DATE_FORMAT: &str = "%Y-%m-%d";
/// `_YYYY-MM-DD_HH-MM-SS`
const TIMESTAMP_LEN: usize = 20;

/// The longest core name (`host-db`, encoded) whose files fit a 255-byte name: the timestamp
/// (20), the longest extension (`.sql.zst.age`, 12) and `.in_progress` (12), with room to spare.
pub const MAX_CORE_LEN: usize = 200;

/// Backup file extensions we write and read, by compression.
pub const EXTENSIONS: [&str; 4] = ["sql.gz", "sql.zst", "sql.gz.age", "sql.zst.age"];

/// Upstream's `getBackupType`: under the rolling strategy, the last day of the month is
/// monthly when `MONTHLY_BACKUPS > 0`, else a Sunday is weekly (whatever `WEEKLY_BACKUPS`
/// says), else daily. The daily strategy has no classes (flat folders).
pub fn classify(date: NaiveDate, policy: &Policy) -> Option<Class> {
    if policy.strategy == Strategy::Daily {
        return None;
    }
    let last_of_month = (date + Duration::days(1)).month() != date.month();
    Some(if last_of_month && policy.monthly > 0 {
        Class::Monthly
    } else if date.weekday() == Weekday::Sun {
        Class::Weekly
    } else {
        Class::Daily
    })
}

/// The folder a run writes into: `root/[class/]YYYY-MM-DD`.
pub fn run_dir(root: &Path, class: Option<Class>, date: NaiveDate) -> PathBuf {
    let mut dir = root.to_path_buf();
    if let Some(class) = class {
        dir.push(class.name());
    }
    dir.push(date.format(DATE_FORMAT).to_string());
    dir
}

/// `<core>_YYYY-MM-DD_HH-MM-SS.<extension>`
pub fn file_name(core: &str, timestamp: NaiveDateTime, extension: &str) -> String {
    format!("{core}_{}.{extension}", timestamp.format(TIMESTAMP_FORMAT))
}

/// A backup file name taken apart.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParsedName {
    pub core: String,
    pub timestamp: NaiveDateTime,
    pub extension: &'static str,
    pub in_progress: bool,
}

/// Parses `<core>_YYYY-MM-DD_HH-MM-SS.sql.gz[.in_progress]`. The core is everything before the
/// timestamp, so `host-app_v2` is its own database, never a match for `host-app`.
pub fn parse_file_name(name: &str) -> Option<ParsedName> {
    let (name, in_progress) = match name.strip_suffix(IN_PROGRESS_SUFFIX) {
        Some(n) => (n, true),
        None => (name, false),
    };
    let (stem, extension) =
        EXTENSIONS.iter().find_map(|ext| Some((name.strip_suffix(ext)?.strip_suffix('.')?, *ext)))?;
    let split = stem.len().checked_sub(TIMESTAMP_LEN)?;
    let (core, ts) = stem.split_at_checked(split)?;
    let ts = ts.strip_prefix('_')?;
    let timestamp = NaiveDateTime::parse_from_str(ts, TIMESTAMP_FORMAT).ok()?;
    if core.is_empty() {
        return None;
    }
    Some(ParsedName { core: core.to_string(), timestamp, extension, in_progress })
}

/// A backup's place in the layout, parsed from its path relative to the backup root.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Placement {
    pub class: Option<Class>,
    pub folder_date: NaiveDate,
    pub name: ParsedName,
}

/// Parses `[class/]YYYY-MM-DD/<file>`. Anything else is not ours and is never touched.
pub fn parse_relative(rel: &Path) -> Option<Placement> {
    let parts: Vec<&str> = rel
        .components()
        .map(|c| match c {
            Component::Normal(s) => s.to_str(),
            _ => None,
        })
        .collect::<Option<_>>()?;
    let (class, date, file) = match parts.as_slice() {
        [date, file] => (None, *date, *file),
        [class, date, file] => (Some(Class::from_dir(class)?), *date, *file),
        _ => return None,
    };
    let folder_date = NaiveDate::parse_from_str(date, DATE_FORMAT).ok()?;
    Some(Placement { class, folder_date, name: parse_file_name(file)? })
}

/// A backup's key: its path relative to the backup root, `/`-separated — the same in the
/// local folder, on every mirror and in its record. Made in one place (`of`, `from_rel`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct BackupKey(String);

impl BackupKey {
    /// The key of `path` under `root` (a path outside `root` keys as itself).
    pub fn of(root: &Path, path: &Path) -> BackupKey {
        Self::from_rel(path.strip_prefix(root).unwrap_or(path))
    }

    /// The key of a path relative to the root.
    pub fn from_rel(rel: &Path) -> BackupKey {
        BackupKey(rel.components().map(|c| c.as_os_str().to_string_lossy()).collect::<Vec<_>>().join("/"))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::ops::Deref for BackupKey {
    type Target = str;
    fn deref(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for BackupKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<BackupKey> for String {
    fn from(k: BackupKey) -> String {
        k.0
    }
}

/// `path` + `suffix` (`x.sql.gz` + `.sha256`).
pub fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(suffix);
    PathBuf::from(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_is_the_path_under_the_root_with_slashes() {
        let root = Path::new("/backups");
        let k = BackupKey::of(root, Path::new("/backups/daily/2026-11-20/db-app_2026-11-20_01-00-00.sql.gz"));
        assert_eq!(k.as_str(), "daily/2026-11-20/db-app_2026-11-20_01-00-00.sql.gz");
        assert_eq!(k, BackupKey::from_rel(Path::new("daily/2026-11-20/db-app_2026-11-20_01-00-00.sql.gz")));
        assert_eq!(BackupKey::of(root, Path::new("elsewhere/x.sql.gz")).as_str(), "elsewhere/x.sql.gz");
        assert_eq!(String::from(k.clone()), k.to_string());
    }

    fn d(s: &str) -> NaiveDate {
        NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap()
    }

    fn rolling(monthly: i64) -> Policy {
        Policy::from_counts("rolling", 31, 6, 4, monthly).unwrap()
    }

    #[test]
    fn classification_follows_upstream() {
        let p = rolling(1);
        assert_eq!(classify(d("2026-11-18"), &p), Some(Class::Daily), "Wednesday");
        assert_eq!(classify(d("2026-11-22"), &p), Some(Class::Weekly), "Sunday");
        assert_eq!(classify(d("2026-11-30"), &p), Some(Class::Monthly), "last day, Monday");
        assert_eq!(classify(d("2026-05-31"), &p), Some(Class::Monthly), "last day is a Sunday: monthly wins");
        assert_eq!(classify(d("2028-02-29"), &p), Some(Class::Monthly), "leap day");
        assert_eq!(classify(d("2028-02-28"), &p), Some(Class::Daily), "not the last day in a leap year");
        assert_eq!(classify(d("2026-05-31"), &rolling(0)), Some(Class::Weekly), "MONTHLY_BACKUPS=0");
        assert_eq!(classify(d("2026-11-30"), &rolling(0)), Some(Class::Daily));
        let daily = Policy::from_counts("daily", 31, 6, 4, 1).unwrap();
        assert_eq!(classify(d("2026-11-30"), &daily), None);
    }

    #[test]
    fn names_round_trip() {
        let ts = NaiveDateTime::parse_from_str("2026-11-22 01:00:05", "%Y-%m-%d %H:%M:%S").unwrap();
        let name = file_name("postgresql-my_db", ts, "sql.gz");
        assert_eq!(name, "postgresql-my_db_2026-11-22_01-00-05.sql.gz");
        let p = parse_file_name(&name).unwrap();
        assert_eq!((p.core.as_str(), p.timestamp, p.in_progress), ("postgresql-my_db", ts, false));
        let p = parse_file_name(&format!("{name}.in_progress")).unwrap();
        assert!(p.in_progress);
        assert_eq!(
            run_dir(Path::new("/backups/"), Some(Class::Weekly), ts.date()),
            Path::new("/backups/weekly/2026-11-22")
        );
        assert_eq!(run_dir(Path::new("/backups"), None, ts.date()), Path::new("/backups/2026-11-22"));
    }

    #[test]
    fn exact_core_names() {
        let a = parse_file_name("host-app_2026-11-22_01-00-00.sql.gz").unwrap();
        let b = parse_file_name("host-app_v2_2026-11-22_01-00-00.sql.gz").unwrap();
        assert_eq!(a.core, "host-app");
        assert_eq!(b.core, "host-app_v2");
    }

    #[test]
    fn foreign_files_are_not_parsed() {
        for name in [
            "host-app_2026-11-22_01-00-00.sql.gz.sha256",
            "host-app_2026-11-22_01-00-00.sql",
            "_2026-11-22_01-00-00.sql.gz",
            "host-app_2026-13-22_01-00-00.sql.gz",
            "backup.sql",
            "notes.txt",
        ] {
            assert_eq!(parse_file_name(name), None, "{name}");
        }
        assert!(parse_relative(Path::new("daily/2026-11-22/h-d_2026-11-22_01-00-00.sql.gz")).is_some());
        assert!(parse_relative(Path::new("2026-11-22/h-d_2026-11-22_01-00-00.sql.gz")).is_some());
        assert!(parse_relative(Path::new("other/2026-11-22/h-d_2026-11-22_01-00-00.sql.gz")).is_none());
        assert!(parse_relative(Path::new("h-d_2026-11-22_01-00-00.sql.gz")).is_none());
        assert!(parse_relative(Path::new("daily/x/h-d_2026-11-22_01-00-00.sql.gz")).is_none());
    }
}
