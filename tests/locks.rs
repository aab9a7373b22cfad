//! Per-database locks across processes on one backup folder (what a daemon beside a manual
//! `-1`, or the pods of an Indexed Job on one RWX volume, do): disjoint databases are backed
//! up at the same time; the same database never twice at once — the second process skips it
//! (exit 0, a warning), fails, or waits, by `BACKUP_WHEN_LOCKED`; a partial file another
//! process is writing is not removed as dead; whole-folder commands wait for the runs.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::harness::app::Fixture;
use crate::harness::daemon::wait_until;
use crate::harness::{backups_under, files_under, run};

/// A backup.toml whose pre-backup hook of `database` writes `<dir>/started.<db>` and then
/// holds (with the database's lock) until `<dir>/release` exists; other databases pass.
fn holding_hook(fx: &Fixture) -> PathBuf {
    let toml = fx.dir.path().join("hold.toml");
    let dir = fx.dir.path().display();
    let shell = format!(
        "touch {dir}/started.$BACKUP_DATABASE_NAME; \
         for i in $(seq 600); do [ -e {dir}/release.$BACKUP_DATABASE_NAME ] && exit 0; sleep 0.05; done; exit 1"
    );
    std::fs::write(
        &toml,
        format!("[[hook]]\nname = \"hold\"\nphase = \"backup\"\nstage = \"pre\"\nshell = \"{shell}\"\n"),
    )
    .unwrap();
    toml
}

fn count(root: &Path, core: &str) -> usize {
    backups_under(root).iter().filter(|f| f.contains(&format!("{core}_2"))).count()
}

fn spawn(cmd: &mut Command, log: &Path) -> Child {
    let err = std::fs::File::create(log).unwrap();
    cmd.stdout(Stdio::null()).stderr(err).spawn().unwrap()
}

fn started(fx: &Fixture, db: &str) -> bool {
    wait_until(Duration::from_secs(30), || fx.dir.path().join(format!("started.{db}")).exists())
}

fn release(fx: &Fixture, db: &str) {
    std::fs::write(fx.dir.path().join(format!("release.{db}")), "").unwrap();
}

#[test]
fn the_same_database_is_never_backed_up_twice_at_once() {
    let Some(fx) = Fixture::start(10) else { return };
    let toml = holding_hook(&fx);
    let root = fx.backups();
    let one = |db: &str| {
        let path = fx.dir.path().join(format!("{db}.conf"));
        std::fs::write(&path, format!("localhost:{}/{db}\n", fx.pg.port)).unwrap();
        path
    };
    let (app1, app2) = (one("app1"), one("app2"));
    // Process A holds app1 (inside its pre-backup hook).
    let a_log = fx.dir.path().join("a.log");
    let mut a = spawn(fx.once(&app1).env("BACKUP_TOML", &toml), &a_log);
    assert!(started(&fx, "app1"), "A did not start: {}", std::fs::read_to_string(&a_log).unwrap_or_default());

    // Meanwhile a partial of app1 (as if A were writing it) and a dead one of a database
    // nobody holds; B, backing up app2 while A works, tidies nothing (the tidy work is a run's
    // that has the folder to itself); the last run below, alone, removes only the dead one.
    let dated = root.join("daily").join(chrono::Local::now().format("%Y-%m-%d").to_string());
    std::fs::create_dir_all(&dated).unwrap();
    let held = dated.join("localhost-app1_2020-01-01_01-00-00.sql.gz.in_progress");
    let dead = dated.join("localhost-gone_2020-01-01_01-00-00.sql.gz.in_progress");
    for p in [&held, &dead] {
        std::fs::write(p, "partial").unwrap();
    }
    // B on a different database, while A holds app1: not blocked.
    release(&fx, "app2");
    let b = run(fx.once(&app2).env("BACKUP_TOML", &toml));
    assert_eq!(b.code, 0, "{}", b.all());
    assert_eq!(count(&root, "localhost-app2"), 1, "{}", b.all());
    assert!(held.exists() && dead.exists(), "no tidying beside another run: {}", b.all());

    // B on the same database: skipped with a warning naming A, exit 0, nothing written.
    let b = run(fx.once(&app1).env("BACKUP_TOML", &toml));
    assert_eq!(b.code, 0, "{}", b.all());
    let holder = format!("pid {}", a.id());
    assert!(b.stderr.contains("Skipped: another process is backing up this database"), "{}", b.all());
    assert!(b.stderr.contains(&holder), "the warning names the holder ({holder}): {}", b.all());
    assert_eq!(count(&root, "localhost-app1"), 0);
    // ... or a failure, when configured.
    let b = run(fx.once(&app1).env("BACKUP_TOML", &toml).env("BACKUP_WHEN_LOCKED", "fail"));
    assert_eq!(b.code, 1, "{}", b.all());
    assert!(b.stderr.contains("BACKUP_WHEN_LOCKED=fail"), "{}", b.all());
    // A typo is a configuration error with a suggestion.
    let b = run(fx.once(&app1).env("BACKUP_WHEN_LOCKED", "wiat"));
    assert_eq!(b.code, 2, "{}", b.all());
    assert!(b.stderr.contains("did you mean wait?"), "{}", b.all());
    // -c shows the choice.
    let c = run(fx.cmd(&app1).arg("-c").env("BACKUP_WHEN_LOCKED", "wait").env("VERIFY_JOBS", "3"));
    assert!(
        c.stdout.contains("another process holds: wait") && c.stdout.contains("verification: 3 at once"),
        "{}",
        c.stdout
    );
    // A whole-folder command (prune without -f) waits for the runs: refused while A runs.
    let p = run(fx.cmd(&app1).arg("-p"));
    assert_ne!(p.code, 0, "{}", p.all());
    assert!(p.all().contains("holds the lock"), "{}", p.all());

    // ... or it waits, and backs up after A.
    let c_log = fx.dir.path().join("c.log");
    let no_hook = fx.dir.path().join("none.toml");
    std::fs::write(&no_hook, "").unwrap();
    let mut c = spawn(fx.once(&app1).env("BACKUP_TOML", &no_hook).env("BACKUP_WHEN_LOCKED", "wait"), &c_log);
    let waiting = wait_until(Duration::from_secs(30), || {
        std::fs::read_to_string(&c_log).unwrap_or_default().contains("Waiting: another process is backing up")
    });
    assert!(waiting, "{}", std::fs::read_to_string(&c_log).unwrap_or_default());
    assert_eq!(count(&root, "localhost-app1"), 0, "nothing written while A holds the database");
    release(&fx, "app1");
    let (a, c) = (a.wait().unwrap(), c.wait().unwrap());
    let logs = format!("{}\n{}", std::fs::read_to_string(&a_log).unwrap(), std::fs::read_to_string(&c_log).unwrap());
    assert!(a.success() && c.success(), "{logs}");
    assert_eq!(count(&root, "localhost-app1"), 2, "A's backup, then the waiting one's: {logs}");
    // Alone, a run tidies: the dead partial goes; app1's (its database free now) too.
    std::fs::write(&held, "partial").unwrap();
    let lock = backup_container::catalog::lock::RunLock::try_database(&root, "localhost-app1", "holding").unwrap();
    let alone = run(fx.once(&app2).env("BACKUP_TOML", &no_hook));
    assert_eq!(alone.code, 0, "{}", alone.all());
    assert!(!dead.exists(), "a partial nobody holds is removed: {:?}", files_under(&root));
    assert!(held.exists(), "a partial whose database is locked is not dead: {}", alone.all());
    drop(lock);
}
