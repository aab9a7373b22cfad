//! What backups prove about themselves, on a real server: a manifest's rows per table equal
//! `count(*)` on the source; an anomaly (a dropped table, 80% of a table's rows deleted)
//! raises a WARN notification, shows in `-l` and on /metrics, and holds the baseline back
//! from pruning until enough good backups follow; RPO/RTO figures and targets on /metrics
//! (linted by `promtool check metrics`) with a WARN notification for a missed target.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use crate::harness::app::Fixture;
use crate::harness::daemon::{Daemon, get, metric, wait_until};
use crate::harness::receiver::{Behaviour, Receiver};
use crate::harness::{backups_under, record, run};

/// The manifest's `schema.table=rows` lines of the backup at `rel`.
fn manifest_rows(root: &Path, rel: &str) -> String {
    let m = record(root, rel).unwrap_or_else(|| panic!("no record for {rel}"));
    assert_eq!(m["rows_known"], true, "{m}");
    let mut lines: Vec<String> = m["tables"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| format!("{}.{}={}", t["schema"].as_str().unwrap(), t["table"].as_str().unwrap(), t["rows"]))
        .collect();
    lines.sort();
    lines.join("\n")
}

fn rel(fx: &Fixture, core: &str) -> String {
    fx.newest(core).strip_prefix(fx.backups()).unwrap().display().to_string()
}

/// `promtool check metrics` on a /metrics body: no lint problems.
fn promtool_clean(body: &str) {
    let Ok(mut child) = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
    else {
        crate::harness::missing::<()>("promtool", "promtool not on PATH (apt install prometheus)");
        return;
    };
    use std::io::Write;
    child.stdin.take().unwrap().write_all(body.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success() && text.trim().is_empty(), "promtool check metrics:\n{text}\n{body}");
}

#[test]
fn an_anomaly_warns_shows_and_holds_the_last_good_backup() {
    let Some(fx) = Fixture::start(1000) else { return };
    let port = fx.pg.port;
    let db = format!("localhost:{port}/app1");
    // A schedule that does not fire during the test: the daemon only serves /metrics.
    let conf = fx.conf(&format!("{db}\n0 0 1 1 * default ./backup.sh -s\n"));
    let rx = Receiver::start(Behaviour::Ok);
    let backup = || {
        let r = run(fx
            .once(&conf)
            .env("BACKUP_STRATEGY", "daily")
            .env("NUM_BACKUPS", "1")
            .env("WEBHOOK_URL", &rx.url)
            .env("WEBHOOK_FORMAT", "json"));
        assert_eq!(r.code, 0, "{}", r.all());
        r
    };
    backup();
    let first = rel(&fx, "localhost-app1");
    assert_eq!(manifest_rows(&fx.backups(), &first), fx.pg.row_counts("app1"), "rows per table from the stream");

    // Between two backups: a table dropped, 80% of another's rows deleted.
    fx.pg.psql("app1", "DROP TABLE sales.orders CASCADE; DELETE FROM public.customers WHERE id % 5 <> 0");
    let r = backup();
    assert!(r.stderr.contains("Anomaly"), "{}", r.all());
    let second = rel(&fx, "localhost-app1");
    assert_ne!(first, second);
    assert_eq!(manifest_rows(&fx.backups(), &second), fx.pg.row_counts("app1"));
    let warn = rx.requests().into_iter().map(|q| q.json()).find(|j| j["event"] == "backup_anomaly");
    let warn = warn.expect("a backup_anomaly notification");
    assert_eq!(warn["statusCode"], "WARN", "{warn}");
    let findings = warn["details"]["findings"].to_string();
    assert!(findings.contains("public.customers") && findings.contains("\"before\":1000"), "{findings}");
    assert!(findings.contains("sales.orders") && findings.contains("table-disappeared"), "{findings}");
    assert_eq!(warn["details"]["baseline"], first.as_str(), "{warn}");
    // NUM_BACKUPS=1, but the backup from before the anomaly is held.
    assert!(fx.backups().join(&first).exists(), "the baseline was pruned");
    let l = run(fx.cmd(&conf).arg("-l"));
    assert!(
        l.stdout.contains("ANOMALY") && l.stdout.contains("anomaly: table sales.orders disappeared"),
        "{}",
        l.stdout
    );

    let dir = tempfile::tempdir().unwrap();
    let mut d = Daemon::start(fx.cmd(&conf), dir.path());
    let (code, body) = get(&d.addr, "/metrics");
    assert_eq!(code, 200);
    let m = |name: &str| metric(&body, &format!("{name}{{database=\"{db}\"}}"));
    assert_eq!(m("backup_anomaly"), Some(1.0), "{body}");
    assert_eq!(m("backup_newest_rows"), Some(200.0), "{body}");
    assert_eq!(m("backup_newest_tables"), Some(1.0), "{body}");
    assert_eq!(m("backup_rpo_seconds"), None, "nothing verified yet: {body}");
    promtool_clean(&body);
    let (_, status) = get(&d.addr, "/status");
    let status: serde_json::Value = serde_json::from_str(&status).unwrap();
    assert!(status["databases"][&db]["evidence"]["anomaly"][0].as_str().unwrap().contains("public.customers"));
    assert_eq!(d.terminate().0, 0);

    // One good backup after the anomaly: still held; two: released.
    backup();
    assert!(fx.backups().join(&first).exists(), "released after one good backup");
    backup();
    assert!(
        !fx.backups().join(&first).exists(),
        "still held after two good backups: {:?}",
        backups_under(&fx.backups())
    );
    assert_eq!(backups_under(&fx.backups()).len(), 1, "{:?}", backups_under(&fx.backups()));
}

#[test]
fn rpo_and_rto_are_measured_and_a_missed_target_warns() {
    let Some(fx) = Fixture::start(100) else { return };
    let db = format!("localhost:{}/app1", fx.pg.port);
    let conf = fx.conf(&format!("{db}\n0 0 1 1 * default ./backup.sh -s\n"));
    assert_eq!(run(&mut fx.once(&conf)).code, 0);
    let vdir = fx.verify_dir();
    let v = run(fx.cmd(&conf).args(["-v", "all"]).env("VERIFY_DIR", &vdir));
    assert_eq!(v.code, 0, "{}", v.all());
    let rx = Receiver::start(Behaviour::Ok);
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = fx.cmd(&conf);
    cmd.env("RPO_TARGET", "1s").env("RTO_TARGET", "1h").env("WEBHOOK_URL", &rx.url).env("WEBHOOK_FORMAT", "json");
    // The newest verified backup must be older than the 1 s target when the daemon looks.
    let newest = fx.newest("localhost-app1");
    assert!(wait_until(Duration::from_secs(10), || newest.metadata().unwrap().modified().unwrap().elapsed().unwrap()
        > Duration::from_secs(2)));
    let mut d = Daemon::start(cmd, dir.path());
    let (_, body) = get(&d.addr, "/metrics");
    let m = |name: &str| metric(&body, &format!("{name}{{database=\"{db}\"}}"));
    let rpo = m("backup_rpo_seconds").expect("RPO held");
    assert!((1.0..600.0).contains(&rpo), "{body}");
    let rto = m("backup_rto_seconds").expect("RTO measured");
    assert!(rto > 0.0 && rto < 600.0, "{body}");
    assert_eq!(m("backup_rpo_target_exceeded"), Some(1.0), "{body}");
    assert_eq!(m("backup_rto_target_exceeded"), Some(0.0), "{body}");
    assert_eq!(metric(&body, "backup_rpo_target_seconds"), Some(1.0), "{body}");
    assert_eq!(m("backup_newest_rows"), Some(300.0), "{body}");
    promtool_clean(&body);
    let events = || -> BTreeMap<String, serde_json::Value> {
        rx.requests()
            .into_iter()
            .map(|q| q.json())
            .map(|j| (j["event"].as_str().unwrap_or("").to_string(), j))
            .collect()
    };
    assert!(wait_until(Duration::from_secs(20), || events().contains_key("rpo_target_missed")), "{:?}", events());
    let e = &events()["rpo_target_missed"];
    assert_eq!(e["statusCode"], "WARN", "{e}");
    assert!(!events().contains_key("rto_target_missed"), "{:?}", events());
    assert_eq!(get(&d.addr, "/healthz").0, 200, "a missed target is never a liveness failure");
    assert_eq!(d.terminate().0, 0);
}

/// `.sha256` and `.verified` files of an older release beside a backup are moved into its
/// manifest on first sight and removed; the checksum still guards the restore.
#[test]
fn old_sidecars_move_into_the_manifest() {
    let Some(fx) = Fixture::start(30) else { return };
    let db = format!("localhost:{}/app1", fx.pg.port);
    let conf = fx.conf(&format!("{db}\n"));
    assert_eq!(run(&mut fx.once(&conf)).code, 0);
    let file = fx.newest("localhost-app1");
    let key = rel(&fx, "localhost-app1");
    let record = fx.backups().join(backup_container::catalog::manifest::record_key(&key));
    let sha = record_json(&fx.backups(), &key)["sha256"].as_str().unwrap().to_string();
    // What an older release left: no record, two sidecars.
    std::fs::remove_file(&record).unwrap();
    let name = file.file_name().unwrap().to_string_lossy().to_string();
    std::fs::write(format!("{}.sha256", file.display()), format!("{sha}  {name}\n")).unwrap();
    std::fs::write(
        format!("{}.verified", file.display()),
        r#"{"verified_at":"2026-11-20T03:00:00+00:00","ok":true,"tables":2,"rows":90,"duration_ms":1500}"#,
    )
    .unwrap();
    let l = run(fx.cmd(&conf).arg("-l"));
    assert_eq!(l.code, 0, "{}", l.all());
    assert!(l.stdout.lines().any(|line| line.contains(&name) && line.contains("ok 2026-11-20")), "{}", l.stdout);
    assert!(!std::path::Path::new(&format!("{}.sha256", file.display())).exists(), "the .sha256 stayed");
    assert!(!std::path::Path::new(&format!("{}.verified", file.display())).exists(), "the .verified stayed");
    let m = record_json(&fx.backups(), &key);
    assert_eq!(m["origin"], "migrated", "{m}");
    assert_eq!(m["sha256"], sha.as_str(), "{m}");
    assert_eq!(m["verifications"][0]["rows"], 90, "{m}");
    // The migrated checksum guards the restore: a changed byte is refused.
    let mut bytes = std::fs::read(&file).unwrap();
    let last = bytes.len() - 10;
    bytes[last] ^= 0x01;
    std::fs::write(&file, bytes).unwrap();
    let r = run(fx.cmd(&conf).args(["-r", &db, "-s"]));
    assert_eq!(r.code, 1, "{}", r.all());
    assert!(r.stderr.contains("does not match its checksum"), "{}", r.all());
}

fn record_json(root: &Path, key: &str) -> serde_json::Value {
    record(root, key).unwrap_or_else(|| panic!("no record for {key}"))
}
