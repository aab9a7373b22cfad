//! Fleets against a real server: a `*` spec backs up every database on it (templates and
//! exclusions left out) and picks up a database created later; shards split one fleet so that
//! every database is backed up by exactly one of them; `--check` says what `*` expands to.

use std::collections::BTreeSet;
use std::path::Path;

use crate::harness::app::Fixture;
use crate::harness::{backups_under, run};

/// The core names (`host-db`) of the backup files under `root`.
fn cores(root: &Path) -> BTreeSet<String> {
    backups_under(root)
        .iter()
        .filter_map(|f| Path::new(f).file_name()?.to_str()?.split("_20").next().map(str::to_string))
        .collect()
}

#[test]
fn a_star_spec_backs_up_every_database_and_picks_up_new_ones() {
    let Some(fx) = Fixture::start(20) else { return };
    let conf = fx.conf(&format!("localhost:{}/*\n", fx.pg.port));
    let r = run(fx.once(&conf).env("BACKUP_EXCLUDE_DATABASES", "app2*, nothing_matches"));
    assert_eq!(r.code, 0, "{}", r.all());
    let first = cores(&fx.backups());
    assert!(first.contains("localhost-app1") && first.contains("localhost-postgres"), "{first:?}");
    assert!(!first.contains("localhost-app2"), "excluded by glob: {first:?}");
    assert!(!first.iter().any(|c| c.contains("template")), "templates are not backed up: {first:?}");

    fx.pg.psql("postgres", "CREATE DATABASE app3 OWNER app");
    fx.pg.psql("app3", "SET ROLE app; CREATE TABLE t (x int); INSERT INTO t VALUES (1)");
    let r = run(fx.once(&conf).env("BACKUP_EXCLUDE_DATABASES", "app2*"));
    assert_eq!(r.code, 0, "{}", r.all());
    assert!(cores(&fx.backups()).contains("localhost-app3"), "{}", r.all());

    // --check lists what the spec expands to.
    let c = run(fx.cmd(&conf).arg("--check").env("BACKUP_EXCLUDE_DATABASES", "app2*"));
    let row = c.stdout.lines().find(|l| l.contains("fleet")).unwrap_or_default().to_string();
    assert!(row.contains("3 databases") && row.contains("app3"), "{}", c.stdout);
    // The server/client pair once for the server, not once per database.
    let pairs: Vec<&str> = c.stdout.lines().filter(|l| l.contains("client version")).collect();
    assert_eq!(pairs.len(), 1, "{}", c.stdout);
    assert!(pairs[0].contains("(3 databases)") && pairs[0].contains("→ pg_dump"), "{}", c.stdout);

    // -p (no -f) prunes the expanded databases by the policy, as if each had its own line.
    let explicit = fx.dir.path().join("explicit.conf");
    std::fs::write(&explicit, format!("localhost:{}/app1\n", fx.pg.port)).unwrap();
    let policy =
        [("DAILY_BACKUPS", "1"), ("WEEKLY_BACKUPS", "0"), ("MONTHLY_BACKUPS", "0"), ("BACKUP_ANOMALY_HOLD", "0")];
    let app1 = || backups_under(&fx.backups()).into_iter().filter(|f| f.contains("localhost-app1_")).count();
    let before = app1();
    let p = run(fx.cmd(&conf).arg("-p").envs(policy));
    assert_eq!(p.code, 0, "{}", p.all());
    assert!(app1() < before, "the star line's databases are pruned: {before} → {}\n{}", app1(), p.all());
    let after = app1();
    let q = run(fx.cmd(&explicit).arg("-p").envs(policy));
    assert_eq!((q.code, app1()), (0, after), "an explicit line would keep the same: {}", q.all());
    // -l lists the expanded databases by their files, not the `*` line; -c explains the line.
    let l = run(fx.cmd(&conf).arg("-l"));
    assert!(l.stdout.contains("localhost-app3: 1 backups") && !l.stdout.contains("localhost-*"), "{}", l.stdout);
    let c = run(fx.cmd(&conf).arg("-c").env("BACKUP_EXCLUDE_DATABASES", "app2*"));
    assert!(c.stdout.contains("every database on the server at each run; excluded: app2*"), "{}", c.stdout);
    // A server that cannot be listed fails the run, loudly.
    let r = run(fx.once(&conf).env("LOCALHOST_PASSWORD", "wrong"));
    assert_eq!(r.code, 1, "{}", r.all());
    assert!(r.all().contains("could not list the databases on localhost"), "{}", r.all());
}

#[test]
fn two_shards_back_up_the_fleet_once_between_them() {
    let Some(fx) = Fixture::start(5) else { return };
    for i in 0..8 {
        fx.pg.psql("postgres", &format!("CREATE DATABASE shard_db_{i} OWNER app"));
    }
    let conf = fx.conf(&format!("localhost:{}/*\n", fx.pg.port));
    let r0 = run(fx.once(&conf).args(["--shard", "0/2"]));
    assert_eq!(r0.code, 0, "{}", r0.all());
    let shard0 = cores(&fx.backups());
    // Kubernetes' way: BACKUP_SHARDS with the pod's JOB_COMPLETION_INDEX.
    let r1 = run(fx.once(&conf).env("BACKUP_SHARDS", "2").env("JOB_COMPLETION_INDEX", "1"));
    assert_eq!(r1.code, 0, "{}", r1.all());
    let all = cores(&fx.backups());
    let shard1: BTreeSet<String> = all.difference(&shard0).cloned().collect();
    assert!(!shard0.is_empty() && !shard1.is_empty(), "{shard0:?} {shard1:?}");
    // Together every database once: 8 + app1 + app2 + postgres.
    assert_eq!(shard0.len() + shard1.len(), 11, "{shard0:?} {shard1:?}");
    assert!(r1.stderr.contains("shard=1/2"), "{}", r1.all());
    // At the same time, on one fresh folder (what an Indexed Job's pods do): both succeed.
    let shared = fx.dir.path().join("shared");
    let spawn = |shard: &str| {
        fx.once(&conf)
            .env("BACKUP_DIR", &shared)
            .args(["--shard", shard])
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap()
    };
    let (a, b) = (spawn("0/2"), spawn("1/2"));
    for child in [a, b] {
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    }
    assert_eq!(cores(&shared), all, "the same fleet, backed up concurrently");
    // While shards hold the folder, a whole-folder command waits for them: tested in lock.rs.
    // A bad shard is a configuration error.
    let bad = run(fx.once(&conf).args(["--shard", "2/2"]));
    assert_eq!(bad.code, 2, "{}", bad.all());
}

/// Most databases backed up at once: `BACKUP_JOBS`, and never more than
/// `BACKUP_JOBS_PER_HOST` on one server; each keeps its own hooks. Observed from the hooks:
/// each database's backup phase writes its start and end time.
pub fn max_overlap(events: &str) -> usize {
    let mut marks: Vec<(u128, i32)> = events
        .lines()
        .filter_map(|l| {
            let (sign, t) = l.split_once(' ')?;
            Some((t.trim().parse().ok()?, if sign == "+" { 1 } else { -1 }))
        })
        .collect();
    marks.sort();
    let (mut now, mut most) = (0i32, 0i32);
    for (_, d) in marks {
        now += d;
        most = most.max(now);
    }
    most as usize
}

#[test]
fn jobs_run_databases_at_once_within_the_per_host_cap() {
    let Some(fx) = Fixture::start(5) else { return };
    for i in 0..6 {
        fx.pg.psql("postgres", &format!("CREATE DATABASE jobs_db_{i} OWNER app"));
    }
    let log = fx.dir.path().join("hook-times");
    std::fs::write(
        fx.dir.path().join("backup.toml"),
        format!(
            "[[hook]]\nname = \"start\"\nphase = \"backup\"\nstage = \"pre\"\nshell = \"echo + $(date +%s%N) >> {0}; sleep 0.4\"\n\
             [[hook]]\nname = \"end\"\nphase = \"backup\"\nstage = \"finally\"\nshell = \"echo - $(date +%s%N) >> {0}\"\n",
            log.display()
        ),
    )
    .unwrap();
    let conf = fx.conf(&format!("localhost:{}/*\n", fx.pg.port));
    let exclude = "postgres, app1, app2";
    let r = run(fx
        .once(&conf)
        .env("BACKUP_EXCLUDE_DATABASES", exclude)
        .env("BACKUP_JOBS", "4")
        .env("BACKUP_JOBS_PER_HOST", "2"));
    assert_eq!(r.code, 0, "{}", r.all());
    let events = std::fs::read_to_string(&log).unwrap();
    assert_eq!(events.lines().count(), 12, "{events}");
    assert_eq!(max_overlap(&events), 2, "two at once on one server: {events}");
    assert_eq!(cores(&fx.backups()).len(), 6);
    // Without the cap's limit, up to BACKUP_JOBS.
    std::fs::remove_file(&log).unwrap();
    let r = run(fx
        .once(&conf)
        .env("BACKUP_EXCLUDE_DATABASES", exclude)
        .env("BACKUP_JOBS", "3")
        .env("BACKUP_JOBS_PER_HOST", "8"));
    assert_eq!(r.code, 0, "{}", r.all());
    assert_eq!(max_overlap(&std::fs::read_to_string(&log).unwrap()), 3);
    // BACKUP_JOBS alone: that many at once, also on one server.
    std::fs::remove_file(&log).unwrap();
    let r = run(fx.once(&conf).env("BACKUP_EXCLUDE_DATABASES", exclude).env("BACKUP_JOBS", "4"));
    assert_eq!(r.code, 0, "{}", r.all());
    assert_eq!(max_overlap(&std::fs::read_to_string(&log).unwrap()), 4);
    let c = run(fx.cmd(&conf).arg("-c").env("BACKUP_JOBS", "4"));
    assert!(c.stdout.contains("- Jobs: 4 at once, 4 per server"), "{}", c.stdout);
    // Default: one at a time, as before.
    std::fs::remove_file(&log).unwrap();
    let r = run(fx.once(&conf).env("BACKUP_EXCLUDE_DATABASES", exclude));
    assert_eq!(r.code, 0, "{}", r.all());
    assert_eq!(max_overlap(&std::fs::read_to_string(&log).unwrap()), 1);
}

/// The coverage audit: a database on a configured server that no line covers is reported once
/// per change (a WARN notification), by `--check`, and again when the set changes.
#[test]
fn databases_nothing_covers_are_reported_once_per_change() {
    use crate::harness::receiver::{Behaviour, Receiver};
    let Some(fx) = Fixture::start(5) else { return };
    let rx = Receiver::start(Behaviour::Ok);
    let conf = fx.conf(&format!("localhost:{}/app1\n", fx.pg.port));
    let uncovered = |rx: &Receiver| -> Vec<String> {
        rx.requests()
            .into_iter()
            .map(|r| r.body)
            .filter(|b| b.contains("no+line+of+the+configuration+covers"))
            .collect()
    };
    let r = run(fx.once(&conf).env("WEBHOOK_URL", &rx.url));
    assert_eq!(r.code, 0, "{}", r.all());
    let sent = uncovered(&rx);
    assert_eq!(sent.len(), 1, "{:?}\n{}", rx.requests().iter().map(|r| &r.body).collect::<Vec<_>>(), r.all());
    assert!(sent[0].contains("covers+them%3A+app2.") && sent[0].contains("statusCode=WARN"), "{}", sent[0]);
    // The same finding on the next run: no second message.
    let r = run(fx.once(&conf).env("WEBHOOK_URL", &rx.url));
    assert_eq!(r.code, 0, "{}", r.all());
    assert_eq!(uncovered(&rx).len(), 1);
    // A new database changes it: one more message, naming both.
    fx.pg.psql("postgres", "CREATE DATABASE app9 OWNER app");
    let r = run(fx.once(&conf).env("WEBHOOK_URL", &rx.url));
    assert_eq!(r.code, 0, "{}", r.all());
    let sent = uncovered(&rx);
    assert_eq!(sent.len(), 2, "{sent:?}");
    assert!(sent[1].contains("covers+them%3A+app2%2C+app9."), "{}", sent[1]);
    // --check shows it as a warning; an exclusion silences it.
    let c = run(fx.cmd(&conf).arg("--check"));
    let row = c.stdout.lines().find(|l| l.contains("coverage")).unwrap_or_default().to_string();
    assert!(row.contains("2 database(s) no line covers: app2, app9"), "{}", c.stdout);
    let c = run(fx.cmd(&conf).arg("--check").env("BACKUP_EXCLUDE_DATABASES", "app2,app9"));
    let row = c.stdout.lines().find(|l| l.contains("coverage")).unwrap_or_default().to_string();
    assert!(row.contains("every database on the server has a line"), "{}", c.stdout);
}
