//! `--check` on `PITR_SERVERS` against a real server: what archiving needs there, each lack
//! named with what to change, fixed one by one; `-c` lists the servers; a bad entry is a
//! configuration error.

use crate::harness::app::Fixture;
use crate::harness::run;

#[test]
fn check_names_what_a_server_lacks_for_archiving() {
    let Some(fx) = Fixture::start(5) else { return };
    let port = fx.pg.port;
    let conf = fx.conf(&format!("localhost:{port}/app1\n"));
    let server = format!("localhost:{port}");
    let check = || {
        let r = run(fx.cmd(&conf).arg("--check").env("PITR_SERVERS", &server).env("STARTUP_CHECK", "false"));
        r.stdout + &r.stderr
    };
    let line = |out: &str, check: &str| -> String {
        out.lines()
            .find(|l| l.contains(check) && l.contains(&format!("localhost:{port}")))
            .unwrap_or_default()
            .to_string()
    };
    // The backup role has no REPLICATION; an extra tablespace; no slot guard.
    let space = fx.dir.path().join("space");
    std::fs::create_dir_all(&space).unwrap();
    if nix::unistd::Uid::effective().is_root() {
        let pg = nix::unistd::User::from_name("postgres").unwrap().unwrap();
        nix::unistd::chown(&space, Some(pg.uid), Some(pg.gid)).unwrap();
    }
    fx.pg.psql("postgres", &format!("CREATE TABLESPACE fast LOCATION '{}'", space.display()));
    let out = check();
    assert!(line(&out, "pitr role").contains("FAIL") && out.contains("ALTER ROLE app REPLICATION"), "{out}");
    assert!(line(&out, "pitr replication").contains("FAIL"), "{out}");
    assert!(line(&out, "pitr tablespaces").contains("fast"), "{out}");
    assert!(line(&out, "pitr slot guard").starts_with("warn"), "{out}");
    assert!(line(&out, "pitr wal_level").contains("replica"), "{out}");
    assert!(line(&out, "pitr archive size").contains("too early to tell"), "a fresh server: {out}");
    // Fixed: the role may replicate, the tablespace is gone, the guard is set.
    fx.pg.psql("postgres", "ALTER ROLE app REPLICATION");
    fx.pg.psql("postgres", "DROP TABLESPACE fast");
    fx.pg.psql("postgres", "ALTER SYSTEM SET max_slot_wal_keep_size = '1GB'");
    fx.pg.psql("postgres", "SELECT pg_reload_conf()");
    let out = check();
    for check in ["pitr role", "pitr replication", "pitr slot guard", "pitr wal sender", "pitr slot"] {
        assert!(line(&out, &format!("{check} ")).starts_with("ok"), "{check}: {out}");
    }
    assert_eq!(line(&out, "pitr tablespaces"), "", "{out}");
    // -c lists them; a bad entry is a configuration error.
    let c = run(fx.cmd(&conf).arg("-c").env("PITR_SERVERS", &server));
    assert!(c.stdout.contains(&format!("Point-in-time recovery (PITR_SERVERS): localhost:{port}")), "{}", c.stdout);
    // Base backups at gzip level 9 unless a level is set, then at that one.
    assert!(c.stdout.contains("(gzip level 9,"), "{}", c.stdout);
    let set = run(fx.cmd(&conf).arg("-c").env("PITR_SERVERS", &server).env("BACKUP_COMPRESSION_LEVEL", "4"));
    assert!(set.stdout.contains("(gzip level 4,"), "{}", set.stdout);
    let bad = run(fx.cmd(&conf).arg("-c").env("PITR_SERVERS", "localhost/app1"));
    assert_eq!(bad.code, 2, "{}", bad.all());
    assert!(bad.stderr.contains("PITR_SERVERS") && bad.stderr.contains("host or host:port"), "{}", bad.all());
    assert!(c.stdout.contains("Archived by the daemon only"), "{}", c.stdout);
    assert!(c.stdout.contains("15 3 * * 0") && c.stdout.contains("10.0 GiB"), "the defaults: {}", c.stdout);
    // A size, a schedule and a slot name that are not: each named, exit 2.
    for (var, value, says) in [
        ("PITR_SLOT_MAX_RETAINED", "10 gigs", "is not a size"),
        ("PITR_BASE_SCHEDULE", "every sunday", "PITR_BASE_SCHEDULE"),
        ("PITR_SLOT_NAME", "Bad-Name", "lowercase letters, digits and _"),
        ("PITR_DRILL_COUNTS", "ful", "did you mean full"),
    ] {
        let bad = run(fx.cmd(&conf).arg("-c").env("PITR_SERVERS", &server).env(var, value));
        assert_eq!(bad.code, 2, "{var}: {}", bad.all());
        assert!(bad.stderr.contains(var) && bad.stderr.contains(says), "{var}: {}", bad.all());
    }
    // backup.toml's schedules replace the defaults, and leave the cron lines.
    let toml = fx.dir.path().join("backup.toml");
    std::fs::write(&toml, "[[schedule]]\ncron = \"0 2 * * 6\"\nrun = \"pitr-base\"\n").unwrap();
    let c = run(fx.cmd(&conf).arg("-c").env("PITR_SERVERS", &server).env("BACKUP_TOML", &toml));
    assert_eq!(c.code, 0, "{}", c.all());
    assert!(c.stdout.contains("full base backups 0 2 * * 6"), "{}", c.stdout);
    assert!(!c.stdout.contains("--pitr-base"), "not a cron line: {}", c.stdout);
}
