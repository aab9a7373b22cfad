//! `-v`: verification in a throwaway server against real backups; every failure reason; no
//! process or file left behind on any path.

use std::fs;
use std::path::Path;

use crate::harness::app::Fixture;
use crate::harness::{Run, bin, run};

/// Processes whose command line mentions `dir` (a leftover verification server).
fn processes_using(dir: &Path) -> Vec<String> {
    let needle = dir.display().to_string();
    fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| fs::read(e.path().join("cmdline")).ok())
        .map(|c| String::from_utf8_lossy(&c).replace('\0', " "))
        .filter(|c| c.contains(&needle))
        .collect()
}

fn assert_clean(verify_dir: &Path, r: &Run) {
    let left: Vec<_> = fs::read_dir(verify_dir).unwrap().flatten().map(|e| e.path()).collect();
    assert!(left.is_empty(), "leftover files in VERIFY_DIR: {left:?}\n{}", r.all());
    let procs = processes_using(verify_dir);
    assert!(procs.is_empty(), "leftover processes: {procs:?}");
}

/// `-v all` restores the newest backup into a throwaway server, reports tables and size,
/// records the result in the backup's manifest (shown by `-l`), and leaves nothing behind.
#[test]
fn verify_all_succeeds_and_records_the_result() {
    let Some(fx) = Fixture::start(200) else { return };
    fx.pg.seed_extras("app1", "app");
    let port = fx.pg.port;
    let conf = fx.conf(&format!("localhost:{port}/app1\nlocalhost:{port}/app2\n"));
    assert_eq!(run(&mut fx.once(&conf)).code, 0);
    let vdir = fx.verify_dir();
    let r = run(fx.cmd(&conf).args(["-v", "all"]).env("VERIFY_DIR", &vdir));
    assert_eq!(r.code, 0, "{}", r.all());
    assert_eq!(r.stderr.matches("Verification succeeded.").count(), 2, "{}", r.all());
    assert!(r.stderr.contains("2 tables in 2 schemas"), "{}", r.all());
    // One throwaway server for the whole run, reused for the second database, and removed.
    assert_eq!(r.stderr.matches("Starting the verification server.").count(), 1, "{}", r.all());
    assert_clean(&vdir, &r);
    let newest = fx.newest("localhost-app1");
    let rel = newest.strip_prefix(fx.backups()).unwrap().display().to_string();
    let manifest = crate::harness::record(&fx.backups(), &rel).unwrap();
    let json = manifest["verifications"].as_array().unwrap().last().unwrap().clone();
    let record = json.to_string();
    assert_eq!(json["ok"], true, "{record}");
    assert_eq!(json["tables"], 2, "{record}");
    assert_eq!(json["integrity"], "checksum", "{record}");
    assert!(json["database_size_bytes"].as_u64().unwrap() > 1_000_000, "{record}");
    let l = run(bin().arg("-l").env("BACKUP_CONF", &conf).env("BACKUP_DIR", fx.backups()));
    assert!(
        l.stdout
            .lines()
            .any(|line| line.contains("localhost-app1_") && line.contains(" ok 20") && line.contains(" 600 ")),
        "{}",
        l.stdout
    );
}

/// Each failure has its reason in the output, exits 1, and leaves no server or folder.
#[test]
fn verify_failures_say_why() {
    let Some(fx) = Fixture::start(50) else { return };
    let port = fx.pg.port;
    fx.pg.psql("postgres", "CREATE DATABASE empty OWNER app");
    let conf = fx.conf(&format!("localhost:{port}/app1\nlocalhost:{port}/empty\n"));
    assert_eq!(run(&mut fx.once(&conf)).code, 0);
    let vdir = fx.verify_dir();
    let verify = |target: &str, extra: &[(&str, &str)]| {
        let mut cmd = fx.cmd(&conf);
        cmd.args(["-v", target]).env("VERIFY_DIR", &vdir).env("DATABASE_SERVER_TIMEOUT", "20");
        for (k, v) in extra {
            cmd.env(k, v);
        }
        let r = run(&mut cmd);
        assert_clean(&vdir, &r);
        r
    };

    // A dump with no tables.
    let r = verify(&format!("localhost:{port}/empty"), &[]);
    assert_eq!(r.code, 1, "{}", r.all());
    assert!(r.stderr.contains("the restored database has no tables in any non-system schema"), "{}", r.all());
    // TABLE_SCHEMA narrows the check.
    let r = verify(&format!("localhost:{port}/app1"), &[("TABLE_SCHEMA", "nothing_here")]);
    assert_eq!(r.code, 1, "{}", r.all());
    assert!(r.stderr.contains("no tables in schemas nothing_here (TABLE_SCHEMA)"), "{}", r.all());

    // A server that cannot start: the reason from its log is quoted.
    let r = verify(&format!("localhost:{port}/app1"), &[("VERIFY_SERVER_OPTIONS", "shared_buffers=100TB")]);
    assert_eq!(r.code, 1, "{}", r.all());
    assert!(r.stderr.contains("the verification server did not start"), "{}", r.all());

    // No backup at all for a database.
    let r = verify(&format!("localhost:{port}/app2"), &[]);
    assert_eq!(r.code, 1, "{}", r.all());
    assert!(r.stderr.contains("no backup of localhost-app2 was found"), "{}", r.all());

    // A corrupt file: checksum mismatch, recorded as a failed verification.
    let good = fx.newest("localhost-app1");
    let original = fs::read(&good).unwrap();
    let mut bytes = original.clone();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x55;
    fs::write(&good, &bytes).unwrap();
    let r = verify(&format!("localhost:{port}/app1"), &[]);
    assert_eq!(r.code, 1, "{}", r.all());
    assert!(r.stderr.contains("does not match its checksum"), "{}", r.all());
    let rel = good.strip_prefix(fx.backups()).unwrap().display().to_string();
    let manifest = crate::harness::record(&fx.backups(), &rel).unwrap();
    let last = manifest["verifications"].as_array().unwrap().last().unwrap().clone();
    assert_eq!(last["ok"], false, "{last}");
    assert!(last["error"].as_str().unwrap().contains("checksum"), "{last}");
    fs::write(&good, &original).unwrap();

    // A stale newest backup (the schedule stopped): failure unless VERIFY_MAX_AGE=0.
    let old = fx.backups().join("daily/2026-01-01/localhost-app1_2026-01-01_01-00-00.sql.gz");
    fs::create_dir_all(old.parent().unwrap()).unwrap();
    fs::rename(&good, &old).unwrap();
    let r = verify(&format!("localhost:{port}/app1"), &[]);
    assert_eq!(r.code, 1, "{}", r.all());
    assert!(r.stderr.contains("more than the limit of 2d 0h (VERIFY_MAX_AGE)"), "{}", r.all());
    let r = verify(&format!("localhost:{port}/app1"), &[("VERIFY_MAX_AGE", "0")]);
    assert_eq!(r.code, 0, "{}", r.all());
}

/// SIGTERM while the throwaway server is running: exit 130, server stopped, folder removed.
#[test]
fn sigterm_during_verification_cleans_up() {
    let Some(fx) = Fixture::start(200_000) else { return };
    let port = fx.pg.port;
    let conf = fx.conf(&format!("localhost:{port}/app1\n"));
    assert_eq!(run(&mut fx.once(&conf)).code, 0);
    let vdir = fx.verify_dir();
    let child = fx
        .cmd(&conf)
        .args(["-v", "all"])
        .env("VERIFY_DIR", &vdir)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while processes_using(&vdir).iter().all(|p| !p.contains("postgres")) {
        assert!(std::time::Instant::now() < deadline, "the verification server never started");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(child.id() as i32), nix::sys::signal::Signal::SIGTERM).unwrap();
    let r = Run::from(child.wait_with_output().unwrap());
    assert_eq!(r.code, 130, "{}", r.all());
    assert_clean(&vdir, &r);
}

/// `VERIFY_DRILL=true`: each run verifies the newest backup and drills the older one verified
/// longest ago (never-verified first), so every kept backup is proved again in turn.
#[test]
fn drills_take_the_backup_verified_longest_ago() {
    let Some(fx) = Fixture::start(20) else { return };
    let conf = fx.conf(&format!("localhost:{}/app1\n", fx.pg.port));
    for _ in 0..3 {
        assert_eq!(run(&mut fx.once(&conf)).code, 0);
    }
    let mut keys: Vec<String> = crate::harness::backups_under(&fx.backups());
    keys.sort_by_key(|k| Path::new(k).file_name().unwrap().to_string_lossy().to_string());
    assert_eq!(keys.len(), 3, "{keys:?}");
    let vdir = fx.verify_dir();
    let verifications =
        |k: &str| crate::harness::record(&fx.backups(), k).unwrap()["verifications"].as_array().map_or(0, Vec::len);
    let mut rounds = Vec::new();
    for _ in 0..3 {
        let r = run(fx.cmd(&conf).args(["-v", "all"]).env("VERIFY_DIR", &vdir).env("VERIFY_DRILL", "true"));
        assert_eq!(r.code, 0, "{}", r.all());
        assert!(r.stderr.contains("restore drill"), "{}", r.all());
        rounds.push(keys.iter().map(|k| verifications(k)).collect::<Vec<_>>());
    }
    // Oldest first, newest last: the newest every round; the oldest (never verified), then
    // the middle one (never verified), then the oldest again (verified longest ago).
    assert_eq!(rounds, vec![vec![1, 0, 1], vec![1, 1, 2], vec![2, 1, 3]]);
    assert_clean(&vdir, &run(bin().arg("--version")));
}

/// `VERIFY_JOBS`: several databases checked at once, all in the run's one throwaway server,
/// never more than asked; each keeps its own hooks; nothing left behind.
#[test]
fn verify_jobs_check_databases_at_once_in_one_server() {
    let Some(fx) = Fixture::start(50) else { return };
    for i in 0..4 {
        fx.pg.psql("postgres", &format!("CREATE DATABASE vjobs_{i} OWNER app"));
        fx.pg.seed(&format!("vjobs_{i}"), "app", 50);
    }
    let conf = fx.conf(&format!("localhost:{}/*\n", fx.pg.port));
    let exclude = ("BACKUP_EXCLUDE_DATABASES", "postgres");
    let b = run(fx.once(&conf).env(exclude.0, exclude.1));
    assert_eq!(b.code, 0, "{}", b.all());
    let log = fx.dir.path().join("verify-times");
    fs::write(
        fx.dir.path().join("backup.toml"),
        format!(
            "[[hook]]\nname = \"start\"\nphase = \"verify\"\nstage = \"pre\"\nshell = \"echo + $(date +%s%N) >> {0}; sleep 0.4\"\n\
             [[hook]]\nname = \"end\"\nphase = \"verify\"\nstage = \"finally\"\nshell = \"echo - $(date +%s%N) >> {0}\"\n",
            log.display()
        ),
    )
    .unwrap();
    let vdir = fx.verify_dir();
    let r = run(fx
        .cmd(&conf)
        .args(["-v", "all"])
        .env("VERIFY_DIR", &vdir)
        .env("VERIFY_JOBS", "3")
        .env(exclude.0, exclude.1));
    assert_eq!(r.code, 0, "{}", r.all());
    assert_eq!(r.stderr.matches("Verification succeeded.").count(), 6, "{}", r.all());
    assert_eq!(r.stderr.matches("Starting the verification server.").count(), 1, "{}", r.all());
    let events = fs::read_to_string(&log).unwrap();
    assert_eq!(events.lines().count(), 12, "{events}");
    let most = crate::fleet::max_overlap(&events);
    assert!((2..=3).contains(&most), "VERIFY_JOBS=3 ran {most} at once: {events}");
    assert_clean(&vdir, &r);
    // The default checks one at a time.
    fs::remove_file(&log).unwrap();
    let r = run(fx.cmd(&conf).args(["-v", "all"]).env("VERIFY_DIR", &vdir).env(exclude.0, exclude.1));
    assert_eq!(r.code, 0, "{}", r.all());
    assert_eq!(crate::fleet::max_overlap(&fs::read_to_string(&log).unwrap()), 1);
}
