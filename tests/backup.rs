//! One-shot backups against a real PostgreSQL: content, round trip, failures that lose
//! nothing, and retention over a folder that also holds upstream's files.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use backup_container::catalog::checksum::sha256_file;

use crate::harness::app::{APP_PASSWORD, Fixture};
use crate::harness::{backups_under, bin, files_under, free_port, gunzip, gzip_to, run};

/// Two databases on one server, per-host credentials: both files exist with valid checksums,
/// start with the roles section, and restore with plain psql to equal row counts (C4).
#[test]
fn one_shot_backup_of_two_databases_round_trips() {
    let Some(fx) = Fixture::start(500) else {
        return;
    };
    let port = fx.pg.port;
    let conf = fx.conf(&format!("postgres=localhost:{port}/app1\nlocalhost:{port}/app2   # second\n"));
    let r = run(&mut fx.once(&conf));
    assert_eq!(r.code, 0, "{}", r.all());
    let files = backups_under(&fx.backups());
    assert_eq!(files.len(), 2, "{files:?}");
    for (file, db) in files.iter().zip(["app1", "app2"]) {
        let name = Path::new(file).file_name().unwrap().to_string_lossy().to_string();
        assert!(name.starts_with(&format!("localhost-{db}_")), "{name}");
        let path = fx.backups().join(file);
        let record = crate::harness::record(&fx.backups(), file).expect("a manifest");
        assert_eq!(record["sha256"], sha256_file(&path).unwrap(), "checksum of {file}");
        assert_eq!(record["complete"], true, "{record}");
        assert_eq!(record["origin"], "written", "{record}");
        let rows: u64 = record["tables"].as_array().unwrap().iter().map(|t| t["rows"].as_u64().unwrap()).sum();
        assert!(rows > 0, "rows counted in the stream: {record}");
        assert!(record["server_version"].as_str().unwrap().starts_with("PostgreSQL 15"), "{record}");
        assert!(!files_under(&fx.backups()).iter().any(|f| f.ends_with(".sha256")), "no sidecar beside the backup");
        let sql = gunzip(&path);
        assert!(sql.starts_with("--\n-- PostgreSQL database cluster dump\n--"), "roles section first: {}", &sql[..200]);
        let roles_end = sql.find("PostgreSQL database cluster dump complete").expect("roles section end");
        let dump_start = sql.find("-- PostgreSQL database dump\n").expect("database section");
        assert!(roles_end < dump_start);
        assert!(sql.contains("CREATE ROLE app;"));
        // Restore the way upstream's users do: gunzip | psql into a fresh database.
        let target = format!("restored_{db}");
        fx.pg.psql("postgres", &format!("CREATE DATABASE {target} OWNER app"));
        let mut psql = fx
            .pg
            .psql_cmd(&target)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        use std::io::Write;
        psql.stdin.take().unwrap().write_all(sql.as_bytes()).unwrap();
        psql.wait().unwrap();
        let original = fx.pg.row_counts(db);
        assert!(original.contains("sales.orders="), "{original}");
        assert_eq!(fx.pg.row_counts(&target), original, "row counts after restore of {db}");
    }
    assert!(!files_under(&fx.backups()).iter().any(|f| f.ends_with(".in_progress")));
    // The listing shows both databases and the checksum state.
    let l = run(bin().arg("-l").env("BACKUP_CONF", &conf).env("BACKUP_DIR", fx.backups()));
    assert_eq!(l.code, 0, "{}", l.all());
    assert!(
        l.stdout.contains("localhost-app1: 1 backups") && l.stdout.contains("localhost-app2: 1 backups"),
        "{}",
        l.stdout
    );
    assert!(l.stdout.contains("Free space:"), "{}", l.stdout);
    assert!(!l.stdout.contains(APP_PASSWORD));
}

/// An older backup in every class folder, to prove failures leave them alone.
fn plant_old_backups(root: &Path) -> Vec<PathBuf> {
    ["daily/2026-01-05", "weekly/2026-01-04", "monthly/2025-12-31"]
        .iter()
        .map(|folder| {
            let date = folder.rsplit('/').next().unwrap();
            let p = root.join(folder).join(format!("localhost-app1_{date}_01-00-00.sql.gz"));
            gzip_to(&p, "-- old backup\n");
            p
        })
        .collect()
}

/// Wrong password: exit 1, the server's message, no file left, older backups untouched.
#[test]
fn wrong_password_fails_without_a_file_and_keeps_older_backups() {
    let Some(fx) = Fixture::start(10) else { return };
    let conf = fx.conf(&format!("localhost:{}/app1\n", fx.pg.port));
    let old = plant_old_backups(&fx.backups());
    let before = files_under(&fx.backups());
    let r = run(fx
        .once(&conf)
        .env("LOCALHOST_PASSWORD", "not the password")
        .env("DAILY_BACKUPS", "0")
        .env("WEEKLY_BACKUPS", "0")
        .env("MONTHLY_BACKUPS", "0"));
    assert_eq!(r.code, 1, "{}", r.all());
    assert!(r.stderr.contains("password authentication failed for user \"app\""), "{}", r.all());
    assert!(!r.all().contains("not the password"), "password leaked: {}", r.all());
    let after: Vec<String> = files_under(&fx.backups()).into_iter().filter(|f| !f.ends_with(".lock")).collect();
    assert_eq!(after, before, "nothing written, nothing deleted");
    assert!(old.iter().all(|p| p.exists()));
}

/// An unreachable server fails that database (exit 1) but the other database is backed up.
#[test]
fn unreachable_host_fails_only_that_database() {
    let Some(fx) = Fixture::start(10) else { return };
    let dead = free_port();
    let conf = fx.conf(&format!("127.0.0.1:{dead}/app1\nlocalhost:{}/app2\n", fx.pg.port));
    let started = Instant::now();
    let r = run(fx.once(&conf).env("DATABASE_USER", "app"));
    assert_eq!(r.code, 1, "{}", r.all());
    assert!(started.elapsed() < Duration::from_secs(60));
    assert!(r.stderr.contains("Connection refused"), "{}", r.all());
    let files = backups_under(&fx.backups());
    assert_eq!(files.len(), 1, "{files:?}");
    assert!(files[0].contains("localhost-app2_"), "{files:?}");
    assert!(!files_under(&fx.backups()).iter().any(|f| f.contains("127.0.0.1-app1")), "no trace of the failed one");
}

/// pg_dump killed mid-stream: exit 1 naming the signal, no `.sql.gz` and no `.in_progress`.
#[test]
fn killed_pg_dump_leaves_no_backup() {
    let Some(fx) = Fixture::start(300_000) else {
        return;
    };
    let conf = fx.conf(&format!("localhost:{}/app1\n", fx.pg.port));
    let old = plant_old_backups(&fx.backups());
    let mut child =
        fx.once(&conf).stdout(std::process::Stdio::piped()).stderr(std::process::Stdio::piped()).spawn().unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    let killed = loop {
        // Kill pg_dump once compressed data is reaching the partial file (mid-stream).
        let flowing = files_under(&fx.backups()).iter().any(|f| {
            f.ends_with(".in_progress") && fs::metadata(fx.backups().join(f)).map(|m| m.len() > 0).unwrap_or(false)
        });
        if let Some(pid) = child_named(child.id(), "pg_dump").filter(|_| flowing) {
            nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGKILL)
                .expect("pg_dump finished before it could be killed: seed more rows");
            break true;
        }
        if Instant::now() > deadline || child.try_wait().unwrap().is_some() {
            break false;
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    let out = child.wait_with_output().unwrap();
    let r = crate::harness::Run::from(out);
    assert!(killed, "pg_dump was never seen running: {}", r.all());
    assert_eq!(r.code, 1, "{}", r.all());
    assert!(r.stderr.contains("pg_dump was killed by signal 9 (SIGKILL)"), "{}", r.all());
    let leftovers: Vec<String> =
        files_under(&fx.backups()).into_iter().filter(|f| f.contains(&chrono_today())).collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
    assert!(old.iter().all(|p| p.exists()));
}

fn chrono_today() -> String {
    // Files of today's run carry today's date in the name; the planted ones do not.
    let out = Command::new("date").env("TZ", "America/Vancouver").arg("+%Y-%m-%d").output().unwrap();
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// The pid of a child process of `parent` whose command name is `name`.
fn child_named(parent: u32, name: &str) -> Option<i32> {
    for entry in fs::read_dir("/proc").ok()?.flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let Ok(stat) = fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        let (Some(open), Some(close)) = (stat.find('('), stat.rfind(')')) else {
            continue;
        };
        let comm = &stat[open + 1..close];
        let ppid: u32 = stat[close + 2..].split_whitespace().nth(1).and_then(|p| p.parse().ok()).unwrap_or(0);
        if comm == name && ppid == parent {
            return Some(pid);
        }
    }
    None
}

/// A folder written by the bash version (flat daily strategy): its files are listed and
/// pruned exactly like ours; a `_v2` database, upstream's stray temp file and foreign files
/// are untouched; a stale `.in_progress` is removed.
#[test]
fn upstream_folder_is_listed_and_pruned_like_ours() {
    let Some(fx) = Fixture::start(10) else { return };
    let root = fx.backups();
    let upstream_sql = format!(
        "--\n-- PostgreSQL database cluster dump\n--\nCREATE ROLE app;\n--\n-- PostgreSQL database cluster dump complete\n--\n{}",
        crate::harness::COMPLETE_DUMP
    );
    for day in 1..=5 {
        let date = format!("2026-01-0{day}");
        gzip_to(&root.join(&date).join(format!("localhost-app1_{date}_01-00-00.sql.gz")), &upstream_sql);
        gzip_to(&root.join(&date).join(format!("localhost-app1_v2_{date}_01-00-00.sql.gz")), &upstream_sql);
    }
    fs::write(root.join("backup.sql"), "upstream temp file").unwrap();
    fs::write(root.join("2026-01-01/readme.txt"), "not a backup").unwrap();
    let stale = root.join("2026-01-02/localhost-app1_2026-01-02_09-00-00.sql.gz.in_progress");
    fs::write(&stale, "partial").unwrap();
    let two_days_ago = nix::sys::time::TimeSpec::from_duration(
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap() - Duration::from_secs(2 * 86400),
    );
    nix::sys::stat::utimensat(
        nix::fcntl::AT_FDCWD,
        &stale,
        &two_days_ago,
        &two_days_ago,
        nix::sys::stat::UtimensatFlags::FollowSymlink,
    )
    .unwrap();

    let conf = fx.conf(&format!("localhost:{}/app1\n", fx.pg.port));
    let l = run(bin().arg("-l").env("BACKUP_CONF", &conf).env("BACKUP_DIR", &root));
    assert!(
        l.stdout.contains("localhost-app1: 5 backups") && l.stdout.contains("localhost-app1_v2: 5 backups"),
        "{}",
        l.stdout
    );

    let r = run(fx.once(&conf).env("BACKUP_STRATEGY", "daily").env("NUM_BACKUPS", "3"));
    assert_eq!(r.code, 0, "{}", r.all());
    let remaining = files_under(&root);
    let app1: Vec<&String> =
        remaining.iter().filter(|f| f.contains("localhost-app1_2") && f.ends_with(".sql.gz")).collect();
    assert_eq!(app1.len(), 3, "today's + two newest upstream files: {remaining:?}");
    assert!(app1.iter().any(|f| f.contains("2026-01-05")) && app1.iter().any(|f| f.contains("2026-01-04")), "{app1:?}");
    assert_eq!(remaining.iter().filter(|f| f.contains("localhost-app1_v2_")).count(), 5, "_v2 untouched");
    assert!(remaining.contains(&"backup.sql".to_string()) && remaining.contains(&"2026-01-01/readme.txt".to_string()));
    assert!(!stale.exists(), "stale partial removed");
    assert!(r.stderr.contains("partial file left by a killed run"), "{}", r.all());
}

/// Partial files of killed runs (ours and the bash version's, of any age, of any database)
/// are removed by the next run, which holds the lock and so knows nobody writes them; while
/// another process holds the lock (a live run), they are left alone.
#[test]
fn partials_of_killed_runs_are_removed_at_once_but_never_a_live_ones() {
    let Some(fx) = Fixture::start(20) else { return };
    let conf = fx.conf(&format!("localhost:{}/app1\n", fx.pg.port));
    let ours = fx.backups().join("daily/2026-11-30/localhost-app1_2026-11-30_01-00-00.sql.gz.in_progress");
    let theirs = fx.backups().join("2026-11-29/localhost-app2_2026-11-29_01-00-00.sql.gz.in_progress");
    for p in [&ours, &theirs] {
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(p, vec![b'x'; 4096]).unwrap();
    }
    // A live run holds the lock: its partials stay, and the second run is refused.
    let lock = fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(fx.backups().join(".backup_container.lock"))
        .unwrap();
    lock.lock().unwrap();
    let r = run(&mut fx.once(&conf));
    assert_eq!(r.code, 1, "{}", r.all());
    assert!(ours.exists() && theirs.exists());
    drop(lock);
    // Fresh files (written a moment ago) of a run that is gone: removed at once.
    let r = run(&mut fx.once(&conf));
    assert_eq!(r.code, 0, "{}", r.all());
    assert!(!ours.exists() && !theirs.exists(), "{:?}", files_under(&fx.backups()));
    assert_eq!(r.stderr.matches("Removing a partial file left by a killed run.").count(), 2, "{}", r.all());
    assert_eq!(backups_under(&fx.backups()).len(), 1);
}
