//! A fleet that one dead endpoint cannot stall: a webhook and an S3 mirror that accept
//! connections and never answer cost one budget (attempts × timeout + pauses) per run, not
//! one per database; every local backup is still written; the run exits 1 naming the mirror;
//! when the endpoints come back, the next run sends the summary of what was missed first,
//! keeps each database's events in order and catches the copies up. SIGTERM during a
//! notification retry ends the process at once.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use crate::harness::app::Fixture;
use crate::harness::hang::Hang;
use crate::harness::receiver::{Behaviour, Receiver};
use crate::harness::s3::{self, S3Server};
use crate::harness::{backups_under, run};

const DATABASES: usize = 30;

fn fleet(fx: &Fixture) -> std::path::PathBuf {
    for i in 1..=DATABASES {
        fx.pg.psql("postgres", &format!("CREATE DATABASE f{i:02} OWNER app"));
    }
    fx.conf(&format!("localhost:{}/*\n", fx.pg.port))
}

/// Backups per core name under `root` (files named `<core>_<timestamp>...`).
fn per_core(files: &[String]) -> BTreeMap<String, usize> {
    let mut out = BTreeMap::new();
    for f in files {
        let name = Path::new(f).file_name().unwrap().to_string_lossy().to_string();
        if let Some(core) = name.split("_20").next().filter(|c| c.starts_with("localhost-f")) {
            *out.entry(core.to_string()).or_default() += 1;
        }
    }
    out
}

fn files_in_bucket(root: &Path) -> Vec<String> {
    walk(root).into_iter().filter(|f| f.ends_with(".sql.gz")).collect()
}

fn walk(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p.to_string_lossy().to_string());
        }
    }
    out
}

#[test]
fn a_dead_webhook_and_mirror_cost_one_budget_per_run_and_the_next_run_catches_up() {
    let Some(fx) = Fixture::start(5) else { return };
    let conf = fleet(&fx);
    let only_fleet = ("BACKUP_EXCLUDE_DATABASES", "app*,postgres");

    // The healthy time of this fleet on this machine.
    let started = Instant::now();
    let healthy = run(fx.once(&conf).env(only_fleet.0, only_fleet.1));
    let healthy_time = started.elapsed();
    assert_eq!(healthy.code, 0, "{}", healthy.all());
    assert_eq!(per_core(&backups_under(&fx.backups())).len(), DATABASES, "{}", healthy.all());

    // Both endpoints accept and never answer; 2 s × 2 attempts + a 1 s pause each.
    let webhook = Hang::start();
    let mirror = Hang::start();
    let short = [
        ("WEBHOOK_TIMEOUT", "2s"),
        ("WEBHOOK_ATTEMPTS", "2"),
        ("WEBHOOK_FORMAT", "json"),
        ("S3_TIMEOUT", "2s"),
        ("MIRROR_ATTEMPTS", "2"),
        ("S3_BUCKET", "backups"),
        ("S3_USER", s3::ACCESS_KEY),
        ("S3_PASSWORD", s3::SECRET_KEY),
        only_fleet,
    ];
    let budget = Duration::from_secs(2 * 2 + 1);
    let started = Instant::now();
    let dead = run(fx.once(&conf).envs(short).env("WEBHOOK_URL", webhook.url()).env("S3_ENDPOINT", mirror.url()));
    let dead_time = started.elapsed();
    assert_eq!(dead.code, 1, "{}", dead.all());
    // One budget per endpoint (the webhook's is the flush at the end), with a generous margin;
    // one budget per database would be 30 × 5 s for the mirror alone.
    let limit = healthy_time + budget * 2 + Duration::from_secs(20);
    assert!(dead_time < limit, "took {dead_time:?} (healthy {healthy_time:?}, limit {limit:?})\n{}", dead.all());
    assert!(mirror.accepted() >= 1 && webhook.accepted() >= 1, "both endpoints were tried");
    assert!(mirror.accepted() <= 4, "the mirror was given up after its attempts: {} connections", mirror.accepted());
    let cores = per_core(&backups_under(&fx.backups()));
    assert!(cores.len() == DATABASES && cores.values().all(|n| *n == 2), "every local backup written: {cores:?}");
    assert!(
        dead.stderr.contains("mirror DOWN") && dead.stderr.contains(&format!("127.0.0.1:{}", mirror.port)),
        "the summary names the mirror:\n{}",
        dead.stderr
    );
    assert!(dead.stderr.contains("mirror down since"), "later databases do not wait:\n{}", dead.stderr);

    // The endpoints come back (the webhook where it was; a working bucket for the mirror).
    let port = webhook.port;
    drop(webhook);
    drop(mirror);
    let receiver = Receiver::start_on(port, Behaviour::Ok);
    let bucket_root = fx.dir.path().join("s3");
    std::fs::create_dir_all(bucket_root.join("backups")).unwrap();
    let Some(store) = S3Server::start(&bucket_root) else { return };
    let back = run(fx.once(&conf).envs(short).env("WEBHOOK_URL", &receiver.url).env("S3_ENDPOINT", store.endpoint()));
    assert_eq!(back.code, 0, "{}", back.all());

    let events: Vec<serde_json::Value> = receiver.requests().iter().map(|r| r.json()).collect();
    assert!(!events.is_empty(), "{}", back.all());
    assert_eq!(events[0]["event"], "notifications_missed", "the summary comes first: {:?}", events[0]);
    // The highest level missed: the mirror failures (WARN) above the successes (INFO).
    assert_eq!(events[0]["statusCode"], "WARN", "the highest level missed: {:?}", events[0]);
    assert!(events[0]["details"]["missed"].as_u64().unwrap() >= DATABASES as u64, "{:?}", events[0]);
    // Each database's events in the order they happened: its copies before its success.
    let mut seen: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for e in &events[1..] {
        if let Some(db) = e["database"].as_str() {
            seen.entry(db.to_string()).or_default().push(e["event"].as_str().unwrap().to_string());
        }
    }
    assert_eq!(seen.len(), DATABASES, "{seen:?}");
    for (db, kinds) in &seen {
        let success = kinds.iter().position(|k| k == "backup_succeeded").unwrap_or_else(|| panic!("{db}: {kinds:?}"));
        assert!(success > 0 && kinds[..success].iter().all(|k| k == "mirror_succeeded"), "{db}: {kinds:?}");
    }
    // The copies caught up: this run's backup and the two the dead run left behind.
    let copied = per_core(&files_in_bucket(&bucket_root));
    assert!(copied.len() == DATABASES && copied.values().all(|n| *n == 3), "{copied:?}");
}

#[test]
fn sigterm_during_a_notification_retry_ends_the_process_within_two_seconds() {
    let Some(fx) = Fixture::start(5) else { return };
    let conf = fx.conf(&format!("localhost:{}/app1\n", fx.pg.port));
    // Every POST answered 500: retried with pauses of 1, 2, 4, 8... seconds.
    let receiver = Receiver::start(Behaviour::FailFirst(usize::MAX));
    let mut child = fx
        .once(&conf)
        .env("WEBHOOK_URL", &receiver.url)
        .env("WEBHOOK_ATTEMPTS", "10")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    // Into the retries: the second attempt is made after a 1 s pause, the third after 2 s.
    while receiver.requests().len() < 2 {
        assert!(Instant::now() < deadline, "no retried notification");
        assert!(child.try_wait().unwrap().is_none(), "the run ended before its notification was retried");
        std::thread::sleep(Duration::from_millis(20));
    }
    let signalled = Instant::now();
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(child.id() as i32), nix::sys::signal::Signal::SIGTERM).unwrap();
    loop {
        if child.try_wait().unwrap().is_some() {
            break;
        }
        assert!(signalled.elapsed() < Duration::from_secs(2), "still running 2 s after SIGTERM");
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(receiver.requests().len() <= 3, "no new attempt after the signal: {}", receiver.requests().len());
}
