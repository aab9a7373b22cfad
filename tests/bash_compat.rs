//! The bash version's own file selection and pruning, run on a folder we wrote (contract C3):
//! its restore picks a backup file, never our metadata; its pruning counts and deletes backup
//! files only, for both strategies; our catalog survives its empty-folder cleanup, and what it
//! pruned is dropped from the catalog on our next look. The pipelines are upstream's
//! (`backup.file.utils`: `findBackup`, `pruneBackups`), run by bash.

use std::path::Path;
use std::process::Command;

use crate::harness::app::Fixture;
use crate::harness::{backups_under, files_under, run};

/// `findBackup`: the newest file (by mtime) whose "mtime path" line contains the core name.
fn bash_find_backup(root: &Path, core: &str) -> String {
    let script = r#"find ${ROOT_BACKUP_DIR}* -type f -printf '%T@ %p\n' | grep ${_search} | sort | tail -n 1 | sed 's~^.* \(.*$\)~\1~'"#;
    bash(script, root, &[("_search", core)])
}

/// `pruneBackups`: every file under `dirname <dated folder>`* beyond the newest N, by mtime,
/// removed, then every empty folder under the root.
fn bash_prune(root: &Path, dated_folder: &Path, core: &str, keep: u32) -> String {
    let script = r#"_backupDir=$(dirname ${_dated})
let _index=${_keep}+1
_filesToPrune=$(find ${_backupDir}* -type f -printf '%T@ %p\n' | grep ${_core} | sort -r | tail -n +${_index} | sed 's~^.* \(.*$\)~\1~')
if [ ! -z "$_filesToPrune" ]; then
  echo "${_filesToPrune}" | xargs rm -rfvd
  find ${ROOT_BACKUP_DIR} -type d -empty -delete
fi"#;
    let dated = format!("{}/", dated_folder.display());
    bash(script, root, &[("_dated", dated.as_str()), ("_core", core), ("_keep", &keep.to_string())])
}

fn bash(script: &str, root: &Path, vars: &[(&str, &str)]) -> String {
    let mut cmd = Command::new("bash");
    cmd.arg("-c").arg(script).env("ROOT_BACKUP_DIR", format!("{}/", root.display()));
    for (k, v) in vars {
        cmd.env(k, v);
    }
    let out = cmd.output().unwrap();
    assert!(out.status.success(), "{script}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// Three backups, verified (so every kind of record exists), in `strategy`.
fn folder(fx: &Fixture, strategy: &str) -> std::path::PathBuf {
    let conf = fx.conf(&format!("localhost:{}/app1\n", fx.pg.port));
    for _ in 0..3 {
        let r = run(fx.once(&conf).env("BACKUP_STRATEGY", strategy).env("NUM_BACKUPS", "31"));
        assert_eq!(r.code, 0, "{}", r.all());
    }
    let v = run(fx.cmd(&conf).args(["-v", "all"]).env("VERIFY_DIR", fx.verify_dir()).env("BACKUP_STRATEGY", strategy));
    assert_eq!(v.code, 0, "{}", v.all());
    let files = files_under(&fx.backups());
    assert!(files.iter().any(|f| f.starts_with(".backup_container/")), "records exist: {files:?}");
    assert!(!files.iter().any(|f| f.ends_with(".sha256") || f.ends_with(".verified")), "{files:?}");
    fx.newest("localhost-app1")
}

#[test]
fn the_bash_restore_picks_our_newest_backup_and_restores_it() {
    let Some(fx) = Fixture::start(30) else { return };
    let newest = folder(&fx, "rolling");
    let chosen = bash_find_backup(&fx.backups(), "localhost-app1");
    assert_eq!(chosen, newest.display().to_string(), "upstream's findBackup picked {chosen}");
    // Its restore: gunzip -c | psql into the database it recreated.
    fx.pg.psql("postgres", "CREATE DATABASE bash_restored");
    let out = Command::new("bash")
        .arg("-c")
        .arg(format!(
            "gunzip -c '{}' | psql -X -q -v ON_ERROR_STOP=0 -h '{}' -p {} -U postgres -d bash_restored",
            chosen,
            fx.pg.socket_dir().display(),
            fx.pg.port
        ))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(fx.pg.row_counts("bash_restored"), fx.pg.row_counts("app1"));
}

#[test]
fn the_bash_pruning_counts_and_deletes_backups_only_in_both_strategies() {
    for strategy in ["daily", "rolling"] {
        let Some(fx) = Fixture::start(10) else { return };
        let newest = folder(&fx, strategy);
        let root = fx.backups();
        let before = backups_under(&root);
        assert_eq!(before.len(), 3, "{before:?}");
        let records_before = files_under(&root).iter().filter(|f| f.starts_with(".backup_container/")).count();
        let deleted = bash_prune(&root, newest.parent().unwrap(), "localhost-app1", 2);
        // Exactly the oldest backup file went; no record, lock or other metadata.
        assert_eq!(deleted.lines().count(), 1, "{strategy}: {deleted}");
        assert!(deleted.contains(&before[0]) && deleted.contains(".sql.gz"), "{strategy}: {deleted}");
        let after = backups_under(&root);
        assert_eq!(after, before[1..], "{strategy}");
        let records = files_under(&root).iter().filter(|f| f.starts_with(".backup_container/")).count();
        assert_eq!(records, records_before, "{strategy}: the catalog survived the empty-folder cleanup");
        // Our next look drops the record of what it pruned and still restores the newest.
        let conf = fx.conf(&format!("localhost:{}/app1\n", fx.pg.port));
        let l = run(fx.cmd(&conf).arg("-l").env("BACKUP_STRATEGY", strategy));
        assert!(l.stdout.contains("localhost-app1: 2 backups"), "{strategy}: {}", l.stdout);
        let records =
            files_under(&root).iter().filter(|f| f.starts_with(".backup_container/") && f.ends_with(".json")).count();
        assert_eq!(records, 2, "{strategy}: the orphaned record was dropped");
        let r =
            run(fx.cmd(&conf).args(["-r", &format!("localhost:{}/copy", fx.pg.port), "-f", "localhost-app1", "-s"]));
        assert_eq!(r.code, 0, "{strategy}: {}", r.all());
        assert_eq!(fx.pg.row_counts("copy"), fx.pg.row_counts("app1"));
    }
}
