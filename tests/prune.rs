//! `-p` with and without `-f`, on planted files (no database needed).

use std::fs;
use std::path::{Path, PathBuf};

use crate::harness::{backups_under, bin, gzip_to, run};

fn plant(root: &Path, rels: &[&str]) {
    for rel in rels {
        gzip_to(&root.join(rel), crate::harness::COMPLETE_DUMP);
    }
}

fn setup() -> (tempfile::TempDir, PathBuf, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("backups");
    let conf = dir.path().join("backup.conf");
    fs::write(&conf, "db/app\ndb/other\n").unwrap();
    plant(
        &root,
        &[
            "daily/2026-11-16/db-app_2026-11-16_01-00-00.sql.gz",
            "daily/2026-11-17/db-app_2026-11-17_01-00-00.sql.gz",
            "daily/2026-11-18/db-app_2026-11-18_01-00-00.sql.gz",
            "weekly/2026-11-15/db-app_2026-11-15_01-00-00.sql.gz",
            "weekly/2026-11-08/db-app_2026-11-08_01-00-00.sql.gz",
            "daily/2026-11-18/db-other_2026-11-18_01-00-00.sql.gz",
            "daily/2026-11-18/unrelated-db_2026-11-18_01-00-00.sql.gz",
            "daily/2026-11-17/unrelated-db_2026-11-17_01-00-00.sql.gz",
        ],
    );
    (dir, root, conf)
}

/// `-p` applies the policy to the configured databases only, per class folder.
#[test]
fn prune_applies_policy_per_class() {
    let (_dir, root, conf) = setup();
    let r = run(bin()
        .arg("-p")
        .env("BACKUP_DIR", &root)
        .env("BACKUP_CONF", &conf)
        .env("DAILY_BACKUPS", "2")
        .env("WEEKLY_BACKUPS", "1"));
    assert_eq!(r.code, 0, "{}", r.all());
    assert_eq!(
        backups_under(&root),
        [
            "daily/2026-11-17/db-app_2026-11-17_01-00-00.sql.gz",
            "daily/2026-11-17/unrelated-db_2026-11-17_01-00-00.sql.gz",
            "daily/2026-11-18/db-app_2026-11-18_01-00-00.sql.gz",
            "daily/2026-11-18/db-other_2026-11-18_01-00-00.sql.gz",
            "daily/2026-11-18/unrelated-db_2026-11-18_01-00-00.sql.gz",
            "weekly/2026-11-15/db-app_2026-11-15_01-00-00.sql.gz",
        ]
    );
    assert!(
        !root.join("daily/2026-11-16").exists() && !root.join("weekly/2026-11-08").exists(),
        "empty folders removed"
    );
}

/// `-p -f X -s` deletes only matching backups (with their records, and the sidecars of older
/// releases) and lists them.
#[test]
fn filtered_prune_deletes_only_matches() {
    let (_dir, root, conf) = setup();
    let sidecar = root.join("daily/2026-11-17/db-app_2026-11-17_01-00-00.sql.gz.sha256");
    fs::write(&sidecar, format!("{}  x\n", "ab".repeat(32))).unwrap();
    let r = run(bin().args(["-p", "-s", "-f", "2026-11-17"]).env("BACKUP_DIR", &root).env("BACKUP_CONF", &conf));
    assert_eq!(r.code, 0, "{}", r.all());
    assert!(r.stdout.contains("daily/2026-11-17/db-app_2026-11-17_01-00-00.sql.gz"), "{}", r.stdout);
    let left = backups_under(&root);
    assert_eq!(left.len(), 6, "{left:?}");
    assert!(!left.iter().any(|f| f.contains("2026-11-17")));
    assert!(!sidecar.exists(), "moved into the record, which went with the backup");
    assert!(crate::harness::record(&root, "daily/2026-11-17/db-app_2026-11-17_01-00-00.sql.gz").is_none());
}

/// A filter that would delete every backup of a database is refused unless `--force`.
#[test]
fn filtered_prune_refuses_to_delete_everything_without_force() {
    let (_dir, root, conf) = setup();
    let r = run(bin().args(["-p", "-s", "-f", "db-other"]).env("BACKUP_DIR", &root).env("BACKUP_CONF", &conf));
    assert_eq!(r.code, 2, "{}", r.all());
    assert!(r.stderr.contains("refusing to delete every backup of db-other"), "{}", r.all());
    assert_eq!(backups_under(&root).len(), 8);
    let r =
        run(bin().args(["-p", "-s", "--force", "-f", "db-other"]).env("BACKUP_DIR", &root).env("BACKUP_CONF", &conf));
    assert_eq!(r.code, 0, "{}", r.all());
    assert_eq!(backups_under(&root).len(), 7);
}

/// Without a terminal and without `-s`, nothing is deleted (no silent "yes").
#[test]
fn filtered_prune_without_terminal_or_s_refuses() {
    let (_dir, root, conf) = setup();
    let r = run(bin().args(["-p", "-f", "2026-11-16"]).env("BACKUP_DIR", &root).env("BACKUP_CONF", &conf));
    assert_eq!(r.code, 2, "{}", r.all());
    assert!(r.stderr.contains("add -s"), "{}", r.all());
    assert_eq!(backups_under(&root).len(), 8);
}
