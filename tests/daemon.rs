//! The daemon binary (no mode flag) against real PostgreSQL: cron (`@every`) and legacy
//! schedules, the health and metrics endpoints, overlapping fires, staleness, and SIGTERM.

use std::fs;
use std::time::Duration;

use crate::harness::app::Fixture;
use crate::harness::daemon::{Daemon, get, metric, wait_until};
use crate::harness::receiver::{Behaviour, Receiver};
use crate::harness::{backups_under, bin, gzip_to};

/// Cron mode with `@every` lines: backups appear, a shell line runs, /metrics, /status,
/// /healthz and /readyz reflect them, and SIGTERM stops the daemon with exit 0.
#[test]
fn cron_schedule_produces_backups_and_metrics() {
    let Some(fx) = Fixture::start(20) else { return };
    let db = format!("localhost:{}/app1", fx.pg.port);
    let conf = fx.conf(&format!("{db}\n@every 2s default ./backup.sh -s\n@every 3s default echo hello-from-cron\n"));
    let mut d = Daemon::start(fx.cmd(&conf), fx.dir.path());
    assert!(d.log().contains("Starting backup server in cron mode"), "{}", d.log());
    assert!(wait_until(Duration::from_secs(30), || backups_under(&fx.backups()).len() >= 2), "{}", d.log());
    d.wait_for("Scheduled command succeeded.", Duration::from_secs(15));
    assert!(d.log().contains("hello-from-cron"), "{}", d.log());
    let (code, metrics) = get(&d.addr, "/metrics");
    assert_eq!(code, 200);
    assert!(metric(&metrics, "backup_runs_total{result=\"success\"}").unwrap() >= 1.0, "{metrics}");
    let last =
        metric(&metrics, &format!("backup_last_success_timestamp_seconds{{database=\"{db}\"}}")).expect("last success");
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs_f64();
    assert!((now - last).abs() < 60.0, "{metrics}");
    assert_eq!(metric(&metrics, &format!("backup_last_attempt_success{{database=\"{db}\"}}")), Some(1.0), "{metrics}");
    assert_eq!(metric(&metrics, &format!("backup_stale{{database=\"{db}\"}}")), Some(0.0), "{metrics}");
    assert_eq!(get(&d.addr, "/healthz"), (200, "ok\n".into()));
    assert_eq!(get(&d.addr, "/readyz").0, 200);
    let (code, status) = get(&d.addr, "/status");
    assert_eq!(code, 200);
    let json: serde_json::Value = serde_json::from_str(&status).unwrap();
    assert_eq!(json["databases"][&db]["last_attempt"]["ok"], true, "{status}");
    assert_eq!(get(&d.addr, "/nope").0, 404);
    let (code, took) = d.terminate();
    assert_eq!(code, 0, "{}", d.log());
    assert!(took < Duration::from_secs(15), "{took:?}");
    assert!(
        !fs::read_dir(fx.backups()).unwrap().flatten().any(|e| e.path().to_string_lossy().ends_with(".in_progress"))
    );
}

/// Legacy mode (no cron lines): a backup at start, then every BACKUP_PERIOD.
#[test]
fn legacy_mode_backs_up_at_start_and_every_period() {
    let Some(fx) = Fixture::start(20) else { return };
    let conf = fx.conf(&format!("localhost:{}/app1\n", fx.pg.port));
    let mut d = Daemon::start(
        {
            let mut c = fx.cmd(&conf);
            c.env("BACKUP_PERIOD", "2s");
            c
        },
        fx.dir.path(),
    );
    assert!(d.log().contains("Starting backup server in legacy mode"), "{}", d.log());
    assert!(
        wait_until(Duration::from_secs(5), || !backups_under(&fx.backups()).is_empty()),
        "first backup at start:\n{}",
        d.log()
    );
    assert!(wait_until(Duration::from_secs(20), || backups_under(&fx.backups()).len() >= 3), "{}", d.log());
    assert_eq!(d.terminate().0, 0);
}

/// A fire while a long backup runs is skipped with a warning (and counted); SIGTERM during
/// the dump stops it within the grace period: exit 0, no partial file, no pg_dump left.
#[test]
fn overlap_is_skipped_and_sigterm_stops_a_long_dump_cleanly() {
    let Some(fx) = Fixture::start(400_000) else { return };
    let port = fx.pg.port;
    let conf = fx.conf(&format!("localhost:{port}/app1\n@every 1s default ./backup.sh -s\n"));
    let rx = Receiver::start(Behaviour::Ok);
    let mut d = Daemon::start(
        {
            let mut c = fx.cmd(&conf);
            c.env("SHUTDOWN_GRACE", "1s")
                .env("BACKUP_COMPRESSION_LEVEL", "9")
                .env("BACKUP_COMPRESSION_THREADS", "1")
                .env("WEBHOOK_URL", &rx.url);
            c
        },
        fx.dir.path(),
    );
    d.wait_for("Skipping scheduled run; previous run still in progress.", Duration::from_secs(60));
    let (_, metrics) = get(&d.addr, "/metrics");
    assert!(metric(&metrics, "backup_scheduled_runs_skipped_total").unwrap() >= 1.0, "{metrics}");
    // The notification follows the log line; give its HTTP request a moment to arrive.
    let skipped_warn = |sent: &[crate::harness::receiver::Request]| {
        sent.iter().any(|r| {
            r.form_field("statusCode").as_deref() == Some("WARN")
                && r.form_field("message").unwrap().contains("Skipped the scheduled backup run")
        })
    };
    assert!(wait_until(Duration::from_secs(10), || skipped_warn(&rx.requests())), "{:#?}", rx.requests());
    let sent = rx.requests();
    assert!(sent[0].form_field("message").unwrap().starts_with("Starting backup server in cron mode ..."), "{sent:#?}");
    assert!(wait_until(Duration::from_secs(20), || pg_dumps_for(port) > 0), "a dump should be running:\n{}", d.log());
    let (code, took) = d.terminate();
    assert_eq!(code, 0, "{}", d.log());
    assert!(took < Duration::from_secs(15), "stopped in {took:?}");
    assert!(d.log().contains("Grace period over; stopping the running job."), "{}", d.log());
    let leftovers: Vec<String> = crate::harness::files_under(&fx.backups())
        .into_iter()
        .filter(|f| f.ends_with(".in_progress") || f.ends_with(".sql.gz"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
    assert!(wait_until(Duration::from_secs(5), || pg_dumps_for(port) == 0), "pg_dump left running");
}

/// pg_dump processes talking to the test server on `port`.
fn pg_dumps_for(port: u16) -> usize {
    fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| fs::read(e.path().join("cmdline")).ok())
        .map(|c| String::from_utf8_lossy(&c).replace('\0', " "))
        .filter(|c| c.contains("pg_dump ") && c.contains(&format!(" port={port} ")) && c.contains(" -Fp"))
        .count()
}

/// A database whose newest backup is older than the schedule allows is stale: the metric
/// says so, and `/healthz` fails only when HEALTH_FAIL_WHEN_STALE is set.
#[test]
fn stale_backups_turn_health_red_when_asked() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("backups");
    let old = root.join("daily/2026-01-05/db-app_2026-01-05_01-00-00.sql.gz");
    gzip_to(&old, "-- old\n");
    let three_days = nix::sys::time::TimeSpec::from_duration(
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap() - Duration::from_secs(3 * 86400),
    );
    nix::sys::stat::utimensat(
        nix::fcntl::AT_FDCWD,
        &old,
        &three_days,
        &three_days,
        nix::sys::stat::UtimensatFlags::FollowSymlink,
    )
    .unwrap();
    let conf = dir.path().join("backup.conf");
    fs::write(&conf, "db/app\n@daily default ./backup.sh -s\n").unwrap();
    let daemon = |fail: &str| {
        let mut c = bin();
        c.env("BACKUP_CONF", &conf)
            .env("BACKUP_DIR", &root)
            .env("DATABASE_USER", "u")
            .env("HEALTH_FAIL_WHEN_STALE", fail)
            .env("STARTUP_CHECK", "false");
        Daemon::start(c, dir.path())
    };
    let mut d = daemon("false");
    let (_, metrics) = get(&d.addr, "/metrics");
    assert_eq!(metric(&metrics, "backup_stale{database=\"db/app\"}"), Some(1.0), "{metrics}");
    assert_eq!(metric(&metrics, "backup_stale_after_seconds"), Some(129600.0), "{metrics}");
    assert_eq!(get(&d.addr, "/healthz").0, 200);
    assert_eq!(d.terminate().0, 0);
    let mut d = daemon("true");
    let (code, body) = get(&d.addr, "/healthz");
    assert_eq!((code, body.as_str()), (503, "stale: db/app\n"));
    assert_eq!(d.terminate().0, 0);
}

/// Voluntary context switches of every thread of `pid`.
fn context_switches(pid: i32) -> u64 {
    fs::read_dir(format!("/proc/{pid}/task"))
        .unwrap()
        .flatten()
        .filter_map(|t| fs::read_to_string(t.path().join("status")).ok())
        .filter_map(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("voluntary_ctxt_switches:"))
                .and_then(|v| v.trim().parse::<u64>().ok())
        })
        .sum()
}

/// Between schedules the daemon sleeps until the next fire, a signal or a job's end: idle
/// with 1 000 databases configured it wakes a handful of times in 10 s (it woke 100 times
/// when it polled every 100 ms), and SIGTERM still stops it at once.
#[test]
fn an_idle_daemon_sleeps() {
    let dir = tempfile::tempdir().unwrap();
    fs::create_dir_all(dir.path().join("backups")).unwrap();
    let conf = dir.path().join("backup.conf");
    let mut text: String = (0..1000).map(|i| format!("db{i}/app{i}\n")).collect();
    text.push_str("0 3 1 1 * default ./backup.sh -s\n");
    fs::write(&conf, text).unwrap();
    let mut c = bin();
    c.env("BACKUP_CONF", &conf).env("BACKUP_DIR", dir.path().join("backups")).env("DATABASE_USER", "u");
    // The start-up check would contact the 1000 (unreachable) servers.
    c.env("STARTUP_CHECK", "false");
    let mut d = Daemon::start(c, dir.path());
    std::thread::sleep(Duration::from_secs(2));
    let before = context_switches(d.pid());
    std::thread::sleep(Duration::from_secs(10));
    let woke = context_switches(d.pid()) - before;
    eprintln!("idle daemon with 1000 databases: {woke} wakes in 10 s");
    assert!(woke <= 10, "the idle daemon woke {woke} times in 10 s");
    let (code, took) = d.terminate();
    assert_eq!(code, 0, "{}", d.log());
    assert!(took < Duration::from_secs(5), "{took:?}");
}

/// Monitor-only (beside CronJob fleets): no backups of its own; /metrics follows what the
/// jobs write into the shared folder, `host/*` databases included.
#[test]
fn monitor_only_reports_what_the_jobs_write() {
    let Some(fx) = Fixture::start(5) else { return };
    let conf = fx.conf(&format!("localhost:{}/*\n", fx.pg.port));
    let mut d = Daemon::start(
        {
            let mut c = fx.cmd(&conf);
            c.env("MONITOR_ONLY", "true").env("MONITOR_INTERVAL", "1s").env("STARTUP_CHECK", "true");
            c
        },
        fx.dir.path(),
    );
    assert!(d.log().contains("monitor-only"), "{}", d.log());
    std::thread::sleep(Duration::from_millis(1500));
    assert!(backups_under(&fx.backups()).is_empty(), "the monitor backs nothing up: {}", d.log());
    // A job (another process) writes backups; the monitor's /metrics shows them.
    let r = crate::harness::run(fx.once(&conf).env("BACKUP_EXCLUDE_DATABASES", "postgres"));
    assert_eq!(r.code, 0, "{}", r.all());
    // Both databases, once a refresh after the job's end has read the folder.
    let shown = |db: &str| {
        let name = format!("backup_last_success_timestamp_seconds{{database=\"{db}\"}}");
        metric(&get(&d.addr, "/metrics").1, &name).is_some()
    };
    assert!(
        // Labelled as a run of the daemon labels them (`host:port/db`), not by file names.
        wait_until(Duration::from_secs(15), || {
            shown(&format!("localhost:{}/app1", fx.pg.port)) && shown(&format!("localhost:{}/app2", fx.pg.port))
        }),
        "{}\n{}",
        get(&d.addr, "/metrics").1,
        d.log()
    );
    assert_eq!(get(&d.addr, "/healthz").0, 200);
    assert!(
        !d.log().contains("Check passed.") && !d.log().contains("Check failed."),
        "no database checks in a monitor: {}",
        d.log()
    );
    assert_eq!(d.terminate().0, 0);
    assert_eq!(backups_under(&fx.backups()).len(), 2, "only the job's two backups");
}
