//! `-r`: restores against real PostgreSQL servers, from our files and from upstream-format
//! files; refusals that leave the target untouched.

use std::fs;
use std::path::Path;

use crate::harness::app::Fixture;
use crate::harness::postgres::PgServer;
use crate::harness::{gunzip, gzip_to, run};

/// A backup of a seeded database, restored under a new name on the same server and into a
/// second server, has the same rows, content digest, sequence, function and grants.
#[test]
fn round_trip_same_server_new_name_and_second_server() {
    let Some(fx) = Fixture::start(300) else { return };
    fx.pg.seed_extras("app1", "app");
    let port = fx.pg.port;
    let conf = fx.conf(&format!("localhost:{port}/app1\n"));
    let r = run(&mut fx.once(&conf));
    assert_eq!(r.code, 0, "{}", r.all());
    let original = fx.pg.content_digest("app1");
    assert!(original.contains("sales.orders="), "{original}");

    // Same server, new database name: -f names the source backup.
    let r = run(fx.cmd(&conf).args(["-r", &format!("localhost:{port}/copy1"), "-f", "localhost-app1", "-s"]));
    assert_eq!(r.code, 0, "{}", r.all());
    assert!(r.stderr.contains("Restore complete."), "{}", r.all());
    assert_eq!(fx.pg.content_digest("copy1"), original);
    assert_eq!(fx.pg.row_counts("copy1"), fx.pg.row_counts("app1"));

    // Restoring over the original (sessions connected to it are terminated first).
    let mut holder = fx.pg.psql_cmd("app1").arg("-c").arg("SELECT pg_sleep(60)").spawn().unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while fx.pg.psql("postgres", "SELECT count(*) FROM pg_stat_activity WHERE datname = 'app1' AND query LIKE '%pg_sleep(60)%' AND pid <> pg_backend_pid()") != "1" {
        assert!(std::time::Instant::now() < deadline, "the holding session never connected");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let r = run(fx.cmd(&conf).args(["-r", &format!("localhost:{port}/app1"), "-s"]));
    let _ = holder.kill();
    let _ = holder.wait();
    assert_eq!(r.code, 0, "{}", r.all());
    assert!(r.stderr.contains("Terminated sessions"), "{}", r.all());
    assert_eq!(fx.pg.content_digest("app1"), original);

    // A second server that has never seen the app role, whose template adds a Patroni schema
    // to every new database (the restore drops it, as upstream does).
    let Some(other) = PgServer::start() else { return };
    other.psql("template1", "CREATE SCHEMA metric_helpers");
    let r = run(fx.cmd(&conf).args(["-r", &format!("localhost:{}/app1", other.port), "-f", "localhost-app1", "-s"]));
    assert_eq!(r.code, 0, "{}", r.all());
    assert_eq!(other.content_digest("app1"), original);
    // The database belongs to its owner at backup time again (the roles section made the role
    // here), not to the admin user as with the bash version: on 15+ that owner may create in
    // schema public again.
    let owner = "SELECT pg_catalog.pg_get_userbyid(datdba) FROM pg_database WHERE datname = 'app1'";
    assert_eq!(other.psql("app1", owner), "app");
    assert_eq!(other.psql("app1", owner), fx.pg.psql("app1", owner));
    assert_eq!(other.psql("app1", "SELECT has_schema_privilege('app', 'public', 'CREATE')"), "t");
    assert_eq!(
        other.psql("app1", "SELECT has_database_privilege('app', 'app1', 'CREATE')"),
        "t",
        "GRANT ALL to the app user"
    );
    assert_eq!(other.psql("app1", "SELECT count(*) FROM pg_namespace WHERE nspname = 'metric_helpers'"), "0");
}

/// WAL flushes the server has made (`pg_stat_wal`, PostgreSQL 14+), read once the counters
/// have settled (a backend reports its statistics as it exits, after its client is gone).
fn wal_syncs(pg: &PgServer) -> u64 {
    let mut last = u64::MAX;
    for _ in 0..30 {
        std::thread::sleep(std::time::Duration::from_millis(700));
        let now: u64 = pg.psql("postgres", "SELECT wal_sync FROM pg_stat_wal").parse().unwrap();
        if now == last {
            return now;
        }
        last = now;
    }
    panic!("pg_stat_wal.wal_sync kept changing for 20 s (last {last})");
}

/// Into a server with stock durability settings, the load commits asynchronously: a dump of
/// many objects restores with a handful of WAL flushes, where psql alone makes one per
/// statement. The restored data is complete.
#[test]
fn restore_load_does_not_flush_the_wal_per_statement() {
    let Some(fx) = Fixture::start(50) else { return };
    fx.pg.psql("app1", "DO $$ BEGIN FOR i IN 1..150 LOOP EXECUTE format('CREATE TABLE public.t%s (id int PRIMARY KEY, v text); INSERT INTO public.t%s VALUES (1, ''x''); ALTER TABLE public.t%s OWNER TO app', i, i, i); END LOOP; END $$");
    let conf = fx.conf(&format!("localhost:{}/app1\n", fx.pg.port));
    let r = run(&mut fx.once(&conf));
    assert_eq!(r.code, 0, "{}", r.all());
    let Some(durable) = PgServer::start_durable() else { return };
    durable.psql("postgres", "CREATE ROLE app");

    // The baseline: the same SQL through psql alone.
    let sql = gunzip(&fx.newest("localhost-app1"));
    durable.psql("postgres", "CREATE DATABASE plain");
    let before = wal_syncs(&durable);
    let mut psql = durable.psql_cmd("plain").stdin(std::process::Stdio::piped()).spawn().unwrap();
    std::io::Write::write_all(psql.stdin.as_mut().unwrap(), sql.as_bytes()).unwrap();
    drop(psql.stdin.take());
    assert!(psql.wait().unwrap().success());
    let plain = wal_syncs(&durable) - before;
    assert!(plain > 300, "psql alone flushed the WAL {plain} times");

    let before = wal_syncs(&durable);
    let r = run(fx.cmd(&conf).args(["-r", &format!("localhost:{}/app1", durable.port), "-s"]));
    assert_eq!(r.code, 0, "{}", r.all());
    let ours = wal_syncs(&durable) - before;
    eprintln!("WAL flushes: psql alone {plain}, restore {ours}");
    assert!(ours * 10 < plain, "restore flushed the WAL {ours} times, psql alone {plain}");
    assert_eq!(durable.row_counts("app1"), fx.pg.row_counts("app1"));
}

/// A file written the way the bash version writes it (roles first, `cat | gzip`, no checksum
/// file) restores with ON_ERROR_STOP on, although its roles already exist (upstream #132).
#[test]
fn upstream_format_file_restores_without_ignore_errors() {
    let Some(fx) = Fixture::start(50) else { return };
    let port = fx.pg.port;
    let roles = fx.pg.dumpall_roles();
    let dump = fx.pg.dump_plain("app1");
    let file = fx.backups().join("daily/2026-01-05/localhost-app1_2026-01-05_01-00-00.sql.gz");
    gzip_to(&file, &format!("{roles}{dump}"));
    assert!(gunzip(&file).starts_with("--\n-- PostgreSQL database cluster dump"));
    let conf = fx.conf(&format!("localhost:{port}/app1\n"));
    let before = fx.pg.row_counts("app1");
    fx.pg.psql("app1", "DELETE FROM sales.orders");
    let r = run(fx.cmd(&conf).args(["-r", &format!("localhost:{port}/app1"), "-s"]));
    assert_eq!(r.code, 0, "{}", r.all());
    assert_eq!(fx.pg.row_counts("app1"), before);
}

/// Refusals and failures before anything is dropped: the target keeps its marker row.
#[test]
fn bad_backups_and_missing_backups_leave_the_target_untouched() {
    let Some(fx) = Fixture::start(200) else { return };
    let port = fx.pg.port;
    let conf = fx.conf(&format!("localhost:{port}/app1\n"));
    assert_eq!(run(&mut fx.once(&conf)).code, 0);
    let good = fx.newest("localhost-app1");
    fx.pg.psql("postgres", "CREATE DATABASE victim OWNER app");
    fx.pg.psql("victim", "CREATE TABLE marker (x int); INSERT INTO marker VALUES (42)");
    let target = format!("localhost:{port}/victim");
    let untouched = || assert_eq!(fx.pg.psql("victim", "SELECT x FROM marker"), "42");

    // Flipped byte with a checksum file: checksum mismatch.
    let flipped = good.with_file_name("localhost-app1_2026-01-01_00-00-01.sql.gz");
    let mut bytes = fs::read(&good).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0xff;
    fs::create_dir_all(flipped.parent().unwrap()).unwrap();
    fs::write(&flipped, &bytes).unwrap();
    // The checksum of the good file, as an older release wrote it beside the backup (it is
    // moved into the flipped file's manifest on first sight).
    let good_rel = good.strip_prefix(fx.backups()).unwrap().display().to_string();
    let sha = crate::harness::record(&fx.backups(), &good_rel).unwrap()["sha256"].as_str().unwrap().to_string();
    fs::write(flipped.with_extension("gz.sha256"), format!("{sha}  x.sql.gz\n")).unwrap();
    let r = run(fx.cmd(&conf).args(["-r", &target, "-f", flipped.to_str().unwrap(), "-s"]));
    assert_eq!(r.code, 1, "{}", r.all());
    assert!(
        r.stderr.contains("does not match its checksum") && r.stderr.contains("database was not touched"),
        "{}",
        r.all()
    );
    untouched();

    // Truncated, no checksum file: the stream check catches it.
    let truncated = good.with_file_name("localhost-app1_2026-01-01_00-00-02.sql.gz");
    fs::write(&truncated, &fs::read(&good).unwrap()[..mid]).unwrap();
    let r = run(fx.cmd(&conf).args(["-r", &target, "-f", truncated.to_str().unwrap(), "-s"]));
    assert_eq!(r.code, 1, "{}", r.all());
    assert!(r.stderr.contains("corrupt or truncated"), "{}", r.all());
    untouched();

    // Flipped byte, no checksum (its record removed): the stream check catches it.
    let flipped_rel = flipped.strip_prefix(fx.backups()).unwrap().display().to_string();
    fs::remove_file(fx.backups().join(backup_container::catalog::manifest::record_key(&flipped_rel))).unwrap();
    let r = run(fx.cmd(&conf).args(["-r", &target, "-f", flipped.to_str().unwrap(), "-s"]));
    assert_eq!(r.code, 1, "{}", r.all());
    untouched();

    // No backup of the target and no -f: refused before anything happens.
    let r = run(fx.cmd(&conf).args(["-r", &target, "-s"]));
    assert_eq!(r.code, 1, "{}", r.all());
    assert!(r.stderr.contains("victim has no backups of its own"), "{}", r.all());
    untouched();

    // A filter that matches nothing.
    let r = run(fx.cmd(&conf).args(["-r", &format!("localhost:{port}/app1"), "-f", "1999-01-01", "-s"]));
    assert_eq!(r.code, 1, "{}", r.all());
    assert!(r.stderr.contains("no backup of localhost-app1 matches \"1999-01-01\""), "{}", r.all());

    // Wrong admin password: fails before the DROP.
    let r = run(fx.cmd(&conf).env("BACKUP_ADMIN_PASSWORD", "nope").args([
        "-r",
        &target,
        "-f",
        good.to_str().unwrap(),
        "-s",
    ]));
    assert_eq!(r.code, 1, "{}", r.all());
    assert!(r.stderr.contains("password authentication failed for user \"postgres\""), "{}", r.all());
    assert!(!r.all().contains("nope"));
    untouched();

    // Without a terminal and without -s: refused (exit 2), nothing touched.
    let r = run(fx.cmd(&conf).args(["-r", &target, "-f", good.to_str().unwrap()]));
    assert_eq!(r.code, 2, "{}", r.all());
    assert!(r.stderr.contains("add -s"), "{}", r.all());
    untouched();
    assert!(Path::new(&good).exists());
}

/// A SQL error in the database part stops the restore (exit 1) with psql's message and the
/// target unchanged; `-I` continues past it, and still exits 1 with the error counted.
#[test]
fn sql_errors_stop_the_restore_unless_ignored() {
    let Some(fx) = Fixture::start(20) else { return };
    let port = fx.pg.port;
    let dump = fx.pg.dump_plain("app1");
    let trailer = dump.rfind("--\n-- PostgreSQL database dump complete").unwrap();
    let broken = format!(
        "{}SELECT * FROM no_such_table;\nCREATE TABLE public.after_error (x int);\n\n{}",
        &dump[..trailer],
        &dump[trailer..]
    );
    gzip_to(&fx.backups().join("daily/2026-01-05/localhost-app1_2026-01-05_01-00-00.sql.gz"), &broken);
    let conf = fx.conf(&format!("localhost:{port}/app1\n"));
    let r = run(fx.cmd(&conf).args(["-r", &format!("localhost:{port}/app1"), "-s"]));
    assert_eq!(r.code, 1, "{}", r.all());
    assert!(r.stderr.contains("relation \"no_such_table\" does not exist"), "{}", r.all());
    assert!(r.stderr.contains("database app1 was not changed"), "{}", r.all());
    let r = run(fx.cmd(&conf).args(["-r", &format!("localhost:{port}/app1"), "-s", "-I"]));
    assert_eq!(r.code, 1, "{}", r.all());
    assert!(r.stderr.contains("errors=1"), "{}", r.all());
    assert!(r.stderr.contains("Restore finished WITH ERRORS."), "{}", r.all());
    assert_eq!(fx.pg.psql("app1", "SELECT count(*) FROM after_error"), "0");
}

/// `BACKUP_COMPRESSION=zstd`: `.sql.zst` files are listed, restored and verified like gzip ones,
/// and count for retention.
#[test]
fn zstd_backups_list_restore_verify_and_prune() {
    let Some(fx) = Fixture::start(200) else { return };
    let port = fx.pg.port;
    let conf = fx.conf(&format!("localhost:{port}/app1\n"));
    for _ in 0..2 {
        let r = run(fx
            .once(&conf)
            .env("BACKUP_COMPRESSION", "zstd")
            .env("BACKUP_STRATEGY", "daily")
            .env("NUM_BACKUPS", "1"));
        assert_eq!(r.code, 0, "{}", r.all());
    }
    let files: Vec<String> =
        crate::harness::files_under(&fx.backups()).into_iter().filter(|f| f.ends_with(".sql.zst")).collect();
    assert_eq!(files.len(), 1, "NUM_BACKUPS=1 pruned the older .sql.zst: {files:?}");
    let l = run(fx.cmd(&conf).arg("-l"));
    assert!(l.stdout.contains(".sql.zst") && l.stdout.contains("localhost-app1: 1 backups"), "{}", l.stdout);
    let r = run(fx.cmd(&conf).args(["-r", &format!("localhost:{port}/zcopy"), "-f", "localhost-app1", "-s"]));
    assert_eq!(r.code, 0, "{}", r.all());
    assert_eq!(fx.pg.row_counts("zcopy"), fx.pg.row_counts("app1"));
    let vdir = fx.verify_dir();
    let r = run(fx.cmd(&conf).args(["-v", "all"]).env("VERIFY_DIR", &vdir));
    assert_eq!(r.code, 0, "{}", r.all());
    assert!(r.stderr.contains("Verification succeeded."), "{}", r.all());
}

/// The owner recorded in the settings section is a role this server does not have: the
/// restore still completes, the admin user keeps the database, and a warning says why.
#[test]
fn a_missing_owner_role_is_a_warning_and_the_admin_keeps_the_database() {
    let Some(fx) = Fixture::start(20) else { return };
    let port = fx.pg.port;
    let conf = fx.conf(&format!("localhost:{port}/app1\n"));
    let r = run(&mut fx.once(&conf));
    assert_eq!(r.code, 0, "{}", r.all());
    let ours = fx.newest("localhost-app1");
    let text = gunzip(&ours);
    let planted = text.replacen("\n-- owner: app\n", "\n-- owner: gone_role\n", 1);
    assert_ne!(planted, text, "the settings section records the owner");
    let file = fx.backups().join("daily/2026-01-05/localhost-app1_2026-01-05_01-00-00.sql.gz");
    gzip_to(&file, &planted);
    let r =
        run(fx.cmd(&conf).args(["-r", &format!("localhost:{port}/owner_copy"), "-f", file.to_str().unwrap(), "-s"]));
    assert_eq!(r.code, 0, "{}", r.all());
    assert!(r.stderr.contains("owner gone_role does not exist on the target server"), "{}", r.all());
    let owner = "SELECT pg_catalog.pg_get_userbyid(datdba) FROM pg_database WHERE datname = 'owner_copy'";
    assert_eq!(fx.pg.psql("postgres", owner), "postgres");
    assert_eq!(fx.pg.row_counts("owner_copy"), fx.pg.row_counts("app1"));
}
