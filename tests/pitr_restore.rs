//! `-r SPEC --at T` against a real server and its real archive (`restore::pitr`): rows
//! inserted, then t1, then rows deleted and changed, then t2; the database as it was at t1
//! restored into the live server (exact rows), `--at latest` gives t2's, `-f` restores beside
//! it; a time after the archive's end and a damaged segment are refused with the database
//! untouched.

use std::time::Duration;

use backup_container::pitr::archive::{Store, partial_state};
use backup_container::pitr::base::{self, BaseSetup, Kind};
use backup_container::pitr::index;
use backup_container::pitr::layout::Archive;
use backup_container::pitr::stream::{Setup, Streamer};
use backup_container::stream::compress::Compression;
use backup_container::system::cancel::Cancel;
use chrono::{DateTime, Utc};

use crate::harness::app::Fixture;
use crate::harness::daemon::wait_until;
use crate::harness::pitr::socket_conn;
use crate::harness::postgres::major_bin_dir;
use crate::harness::run;

/// `SELECT count(*), sum(x) FROM t` in `db`.
fn rows(fx: &Fixture, db: &str) -> String {
    fx.pg.psql(db, "SELECT count(*) || ' ' || coalesce(sum(x), 0) FROM t")
}

/// Whether the archive can recover to `t` with a whole segment received after it (the test
/// servers commit asynchronously: a commit's record reaches the WAL stream up to a few hundred
/// milliseconds after the commit returned; a WAL switch flushes everything before it).
fn covered(store: &Store, t: DateTime<Utc>) -> bool {
    let Ok((index, _)) = index::load(&store.archive.index()) else { return false };
    index.windows_with(partial_state(&store.archive)).last().is_some_and(|w| w.to >= t)
        && index.segments().any(|a| a.received_at >= t)
}

#[test]
fn a_database_as_it_was_at_a_time_into_the_live_server() {
    let Some(fx) = Fixture::start(5) else { return };
    let port = fx.pg.port;
    let client = major_bin_dir(fx.pg.major()).expect("the server's own programs");
    let size: u64 =
        fx.pg.psql("postgres", "SELECT setting FROM pg_settings WHERE name = 'wal_segment_size'").parse().unwrap();
    let store = Store::new(Archive::new(&fx.backups(), "localhost", port), Compression::default(), None);
    let spool = tempfile::tempdir().unwrap();
    let setup = Setup {
        server: format!("localhost:{port}"),
        conn: socket_conn(&fx.pg),
        pg_receivewal: client.join("pg_receivewal"),
        spool: spool.path().to_path_buf(),
        store: store.clone(),
        slot: "bc_test_restore".into(),
        segment_size: size,
        partial_every: Duration::from_millis(500),
        keys: Default::default(),
    };
    let cancel = Cancel::new();
    let streamer = Streamer::start(setup, &cancel).unwrap();
    let active = || {
        fx.pg.psql(
            "postgres",
            "SELECT count(*) FROM pg_replication_slots WHERE slot_name = 'bc_test_restore' AND active",
        )
    };
    assert!(wait_until(Duration::from_secs(30), || active() == "1"));
    fx.pg.psql(
        "app1",
        "CREATE TABLE t (x int); ALTER TABLE t OWNER TO app; INSERT INTO t SELECT generate_series(1, 100)",
    );
    let base_setup = BaseSetup {
        server: format!("localhost:{port}"),
        conn: socket_conn(&fx.pg),
        pg_basebackup: client.join("pg_basebackup"),
        store: store.clone(),
        major: fx.pg.major(),
        superuser: "postgres".into(),
    };
    base::take(&base_setup, &Kind::Full, &cancel).unwrap_or_else(|e| panic!("{e:#}"));
    fx.pg.psql("app1", "INSERT INTO t SELECT generate_series(101, 200)");
    fx.pg.psql("postgres", "SELECT pg_switch_wal()");
    std::thread::sleep(Duration::from_millis(1200));
    let t1 = Utc::now();
    std::thread::sleep(Duration::from_millis(1200));
    fx.pg.psql("app1", "DELETE FROM t WHERE x <= 50; UPDATE t SET x = -x WHERE x > 150");
    let t2 = Utc::now();
    // WAL after t2 (elsewhere), finished: the archive covers t2.
    fx.pg.psql("postgres", "CREATE TABLE after_t2 (x int); INSERT INTO after_t2 VALUES (1); SELECT pg_switch_wal()");
    assert!(wait_until(Duration::from_secs(60), || covered(&store, t2)), "the archive reaches t2");
    streamer.stop();
    assert_eq!(rows(&fx, "app1"), "150 1275");

    let conf = fx.conf(&format!("localhost:{port}/app1\n"));
    let restore = |target: &str, at: &str, from: Option<&str>| {
        let mut cmd = fx.cmd(&conf);
        cmd.args(["-r", &format!("localhost:{port}/{target}"), "--at", at, "-s"])
            .env("PITR_SERVERS", format!("localhost:{port}"))
            .env("VERIFY_DIR", fx.verify_dir());
        if let Some(f) = from {
            cmd.args(["-f", f]);
        }
        run(&mut cmd)
    };
    let t1_text = t1.to_rfc3339();
    let r = restore("app1", &t1_text, None);
    assert_eq!(r.code, 0, "{}", r.all());
    assert_eq!(rows(&fx, "app1"), "200 20100", "the rows of t1");
    assert_eq!(fx.pg.psql("app1", "SELECT tableowner FROM pg_tables WHERE tablename = 't'"), "app");
    let r = restore("app1", "latest", None);
    assert_eq!(r.code, 0, "{}", r.all());
    assert_eq!(rows(&fx, "app1"), "150 1275", "the rows of t2");
    // Beside it: -f names the source; the target is left as it is.
    let r = restore("app1_asof", &t1_text, Some("app1"));
    assert_eq!(r.code, 0, "{}", r.all());
    assert_eq!((rows(&fx, "app1_asof"), rows(&fx, "app1")), ("200 20100".into(), "150 1275".into()));

    // After the archive's end: refused before anything, naming the latest reachable time.
    let later = (Utc::now() + chrono::Duration::hours(1)).to_rfc3339();
    let r = restore("app1", &later, None);
    assert_ne!(r.code, 0);
    assert!(
        r.stderr.contains("after the newest WAL") && r.stderr.contains("the latest time it can restore to is"),
        "{}",
        r.all()
    );
    // A damaged segment: named; the database untouched.
    let (index, _) = index::load(&store.archive.index()).unwrap();
    let victim = index.segments().nth(1).unwrap();
    let name = backup_container::pitr::wal::Segment { timeline: victim.timeline, number: victim.number }.name(size);
    let path = store.archive.wal(victim.timeline, &name, ".gz");
    let good = std::fs::read(&path).unwrap();
    let mut bad = good.clone();
    let middle = bad.len() / 2;
    bad[middle] ^= 0xff;
    std::fs::write(&path, &bad).unwrap();
    let r = restore("app1", &t1_text, None);
    assert_ne!(r.code, 0);
    assert!(r.stderr.contains("does not match its record") && r.stderr.contains(&name), "{}", r.all());
    assert_eq!(rows(&fx, "app1"), "150 1275", "untouched");
    std::fs::write(&path, good).unwrap();
    // Nothing is left in the verification folder.
    let left: Vec<_> = std::fs::read_dir(fx.verify_dir()).unwrap().flatten().map(|e| e.file_name()).collect();
    assert!(left.is_empty(), "{left:?}");
    fx.pg.psql("postgres", "SELECT pg_drop_replication_slot('bc_test_restore')");
}
