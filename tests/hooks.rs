//! Lifecycle hooks from backup.toml against a real PostgreSQL: SQL pre-hooks, failure
//! policies, timeouts (process group killed), the context hooks see, and Velero's scratch
//! pattern.

use std::fs;
use std::path::Path;
use std::time::{Duration, Instant};

use crate::harness::app::Fixture;
use crate::harness::{backups_under, gunzip, run};

fn write_toml(fx: &Fixture, text: &str) -> std::path::PathBuf {
    let path = fx.dir.path().join("backup.toml");
    fs::write(&path, text).unwrap();
    path
}

/// A `CHECKPOINT;` SQL pre-hook runs in the database before the dump.
#[test]
fn sql_checkpoint_pre_hook_runs() {
    let Some(fx) = Fixture::start(10) else { return };
    let conf = fx.conf(&format!("localhost:{}/app1\n", fx.pg.port));
    // CHECKPOINT needs pg_checkpoint (PostgreSQL 15+) or superuser.
    fx.pg.psql("postgres", "GRANT pg_checkpoint TO app");
    write_toml(&fx, "[[hook]]\nname = \"checkpoint\"\nphase = \"backup\"\nstage = \"pre\"\nsql = \"CHECKPOINT;\"\n");
    let before: i64 = fx.pg.psql("postgres", "SELECT checkpoints_req FROM pg_stat_bgwriter").parse().unwrap();
    let r = run(&mut fx.once(&conf));
    assert_eq!(r.code, 0, "{}", r.all());
    assert!(r.stderr.contains("Running hook. hook=checkpoint"), "{}", r.all());
    let after: i64 = fx.pg.psql("postgres", "SELECT checkpoints_req FROM pg_stat_bgwriter").parse().unwrap();
    assert!(after > before, "checkpoints_req {before} -> {after}");
}

/// `on-error = "fail"`: the hooked database is not backed up (exit 1, reason given), the
/// other one is; `continue`: both are, with a warning.
#[test]
fn failing_pre_hook_fails_only_its_database_unless_continue() {
    let Some(fx) = Fixture::start(10) else { return };
    let port = fx.pg.port;
    let conf = fx.conf(&format!("localhost:{port}/app1\nlocalhost:{port}/app2\n"));
    let hook = |policy: &str| {
        format!(
            "[[hook]]\nname = \"gate\"\nphase = \"backup\"\nstage = \"pre\"\nshell = \"echo gate says no; exit 3\"\non-error = \"{policy}\"\ndatabases = [\"localhost-app1\"]\n"
        )
    };
    write_toml(&fx, &hook("fail"));
    let r = run(&mut fx.once(&conf));
    assert_eq!(r.code, 1, "{}", r.all());
    assert!(r.stderr.contains("pre hook \"gate\" of the backup phase failed: exited with status 3"), "{}", r.all());
    assert!(r.stderr.contains("gate says no"), "hook output is logged: {}", r.all());
    let files = backups_under(&fx.backups());
    assert_eq!(files.len(), 1, "{files:?}");
    assert!(files[0].contains("localhost-app2_"));

    write_toml(&fx, &hook("continue"));
    let r = run(&mut fx.once(&conf));
    assert_eq!(r.code, 0, "{}", r.all());
    assert!(r.stderr.contains("Hook failed; continuing (on-error = continue)."), "{}", r.all());
    assert_eq!(backups_under(&fx.backups()).len(), 3);
}

/// A hook that outlives its timeout is killed with its whole process group and reported.
#[test]
fn hook_timeout_kills_the_process_group() {
    let Some(fx) = Fixture::start(10) else { return };
    let conf = fx.conf(&format!("localhost:{}/app1\n", fx.pg.port));
    write_toml(
        &fx,
        "[[hook]]\nname = \"slow\"\nphase = \"backup\"\nstage = \"pre\"\nshell = \"sleep 61.25 & sleep 61.5\"\ntimeout = \"1s\"\n",
    );
    let started = Instant::now();
    let r = run(&mut fx.once(&conf));
    assert_eq!(r.code, 1, "{}", r.all());
    assert!(started.elapsed() < Duration::from_secs(20), "{:?}", started.elapsed());
    assert!(r.stderr.contains("timed out after 1s and was killed with its process group"), "{}", r.all());
    let left = || -> Vec<String> {
        fs::read_dir("/proc")
            .unwrap()
            .flatten()
            .filter_map(|e| fs::read(e.path().join("cmdline")).ok())
            .map(|c| String::from_utf8_lossy(&c).replace('\0', " "))
            .filter(|c| c.contains("sleep 61.25") || c.contains("sleep 61.5"))
            .collect()
    };
    // The group was killed before the run went on; reaping may take a moment.
    let deadline = Instant::now() + Duration::from_secs(5);
    while !left().is_empty() {
        assert!(Instant::now() < deadline, "left running: {:?}", left());
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(backups_under(&fx.backups()).is_empty());
}

/// Post and finally hooks see the file, its size and the status; on-error sees the error.
#[test]
fn post_finally_and_on_error_hooks_see_the_context() {
    let Some(fx) = Fixture::start(10) else { return };
    let port = fx.pg.port;
    let out = fx.dir.path().join("hook-out");
    fs::create_dir_all(&out).unwrap();
    let conf = fx.conf(&format!("localhost:{port}/app1\n127.0.0.1:{port}/app2\n"));
    let dump_env = |stage: &str| {
        format!(
            "[[hook]]\nphase = \"backup\"\nstage = \"{stage}\"\nshell = \"env | grep ^BACKUP_ | sort > {}/{stage}-$BACKUP_DATABASE_NAME.env\"\n",
            out.display()
        )
    };
    write_toml(&fx, &[dump_env("post"), dump_env("on-error"), dump_env("finally")].concat());
    let r = run(fx.once(&conf).env("DATABASE_PASSWORD", "wrong"));
    assert_eq!(r.code, 1, "{}", r.all());
    let read =
        |name: &str| fs::read_to_string(out.join(name)).unwrap_or_else(|_| panic!("{name} missing: {}", r.all()));
    let post = read("post-app1.env");
    let file = post.lines().find_map(|l| l.strip_prefix("BACKUP_FILE=")).unwrap();
    let size: u64 = post.lines().find_map(|l| l.strip_prefix("BACKUP_SIZE=")).unwrap().parse().unwrap();
    assert_eq!(fs::metadata(file).unwrap().len(), size);
    assert!(
        post.contains("BACKUP_STATUS=success") && post.contains(&format!("BACKUP_DATABASE=localhost:{port}/app1")),
        "{post}"
    );
    assert!(post.contains("BACKUP_HOOK_PHASE=backup") && post.contains("BACKUP_RUN_ID="), "{post}");
    assert!(read("finally-app1.env").contains("BACKUP_STATUS=success"));
    let failed = read("on-error-app2.env");
    assert!(failed.contains("BACKUP_STATUS=failure") && failed.contains("password authentication failed"), "{failed}");
    assert!(read("finally-app2.env").contains("BACKUP_STATUS=failure"));
    assert!(!out.join("post-app2.env").exists(), "no post hook after a failure");
    assert!(!Path::new(&out.join("on-error-app1.env")).exists());
}

/// Velero's scratch pattern: a pre hook snapshots data into a scratch schema, the backup
/// contains it, a finally hook removes it.
#[test]
fn velero_scratch_pattern_end_to_end() {
    let Some(fx) = Fixture::start(50) else { return };
    let conf = fx.conf(&format!("localhost:{}/app1\n", fx.pg.port));
    write_toml(
        &fx,
        "[[hook]]\nname = \"snapshot\"\nphase = \"backup\"\nstage = \"pre\"\n\
         sql = \"CREATE SCHEMA scratch; CREATE TABLE scratch.orders_snapshot AS SELECT * FROM sales.orders;\"\n\
         [[hook]]\nname = \"cleanup\"\nphase = \"backup\"\nstage = \"finally\"\nsql = \"DROP SCHEMA IF EXISTS scratch CASCADE;\"\n",
    );
    let r = run(&mut fx.once(&conf));
    assert_eq!(r.code, 0, "{}", r.all());
    let sql = gunzip(&fx.newest("localhost-app1"));
    assert!(sql.contains("CREATE TABLE scratch.orders_snapshot"), "the backup includes the scratch data");
    assert!(sql.contains("COPY scratch.orders_snapshot"));
    assert_eq!(fx.pg.psql("app1", "SELECT count(*) FROM pg_namespace WHERE nspname = 'scratch'"), "0", "cleaned up");
}
