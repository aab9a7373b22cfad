//! WAL streamed from a real server into the archive (`pitr::stream`): pg_receivewal under a
//! supervisor with its slot, each finished segment stored, hashed and indexed in order, the
//! spool emptied but for the newest, the `.partial` kept fresh; `kill -9` of the streamer is
//! survived with no gap and no segment twice; on 13 with the 18 client and 1 MB segments, 50
//! segments under an insert loop survive a server restart and a killed streamer too.

use std::io::Read;
use std::time::Duration;

use backup_container::pitr::index;
use backup_container::pitr::stream::Streamer;
use backup_container::system::cancel::Cancel;

use crate::harness::daemon::wait_until;
use crate::harness::pitr::{Streamed, indexed, socket_conn, work};
use crate::harness::postgres::{PgServer, major_bin_dir};

/// The archive's index names every segment from the first to the newest exactly once, and
/// each stored file matches its recorded sha256 and holds a whole segment.
fn every_segment_once_and_whole(store: &backup_container::pitr::archive::Store, size: u64) {
    let index_path = store.archive.index();
    let numbers = indexed(&index_path);
    let (lo, hi) = (*numbers.iter().min().unwrap(), *numbers.iter().max().unwrap());
    assert_eq!(numbers.len() as u64, hi - lo + 1, "every segment once, none missing: {numbers:?}");
    let (index, torn) = index::load(&index_path).unwrap();
    assert!(!torn);
    for a in index.segments() {
        let name = backup_container::pitr::wal::Segment { timeline: a.timeline, number: a.number }.name(size);
        let path = store.archive.wal(a.timeline, &name, ".gz");
        let bytes = std::fs::read(&path).unwrap();
        use sha2::Digest;
        let hex: String = sha2::Sha256::digest(&bytes).iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(hex, a.sha256, "{}", path.display());
        let mut plain = Vec::new();
        flate2::read::GzDecoder::new(&bytes[..]).read_to_end(&mut plain).unwrap();
        assert_eq!(plain.len() as u64, size, "{name}: a whole segment");
    }
}

#[test]
fn wal_is_streamed_into_the_archive_without_a_gap_across_a_killed_streamer() {
    let Some(pg) = PgServer::start() else { return };
    let s = Streamed::new(&pg, &major_bin_dir(pg.major()).expect("the server's own programs"), "bc_test_archive");
    let (root, spool, store, size) = (&s.root, &s.spool, &s.setup.store, s.setup.segment_size);
    let index_path = store.archive.index();
    let cancel = Cancel::new();
    let streamer = Streamer::start(s.setup.clone(), &cancel).unwrap();
    let slot = || {
        pg.psql("postgres", "SELECT count(*) FROM pg_replication_slots WHERE slot_name = 'bc_test_archive' AND active")
    };
    assert!(wait_until(Duration::from_secs(30), || slot() == "1"), "the streamer holds its slot");
    pg.psql("postgres", "CREATE TABLE t (x int)");
    work(&pg, 4);
    assert!(wait_until(Duration::from_secs(60), || indexed(&index_path).len() >= 4), "{:?}", indexed(&index_path));

    // The streamer killed: started again, and the WAL goes on without a gap.
    let first = streamer.child_pid();
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(first as i32), nix::sys::signal::Signal::SIGKILL).unwrap();
    assert!(wait_until(Duration::from_secs(30), || streamer.child_pid() != 0 && streamer.child_pid() != first));
    let before = indexed(&index_path).len();
    work(&pg, 4);
    assert!(
        wait_until(Duration::from_secs(60), || indexed(&index_path).len() >= before + 4),
        "{:?}",
        indexed(&index_path)
    );
    // WAL after the last switch: the segment being written is kept fresh in the archive.
    pg.psql("postgres", "INSERT INTO t VALUES (42)");
    assert!(
        wait_until(Duration::from_secs(20), || store.archive.dir.join("partial.json").exists()),
        "the partial kept: spool {:?}",
        std::fs::read_dir(spool.path()).unwrap().map(|e| e.unwrap().file_name()).collect::<Vec<_>>()
    );
    streamer.stop();

    every_segment_once_and_whole(store, size);
    // The spool keeps only the newest finished segment (and the partial).
    let finished: Vec<String> = std::fs::read_dir(spool.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.len() == 24)
        .collect();
    assert!(finished.len() <= 1, "{finished:?}");
    // No path under the archive holds a '-' (the bash version's pruning).
    for entry in walkdir::WalkDir::new(root.path()) {
        let rel = entry.unwrap().path().strip_prefix(root.path()).unwrap().to_string_lossy().into_owned();
        assert!(!rel.contains('-'), "{rel}");
    }
    pg.psql("postgres", "SELECT pg_drop_replication_slot('bc_test_archive')");
}

/// A spool lost with its volume, on a server before 15 (where pg_receivewal in an empty
/// folder starts from the server's current position): the newest archived segment is put
/// back first, and the WAL written while the streamer was away is not missed.
#[test]
fn a_lost_spool_on_postgres_14_is_refilled_and_no_wal_is_missed() {
    let Some(pg) = PgServer::start_major(14) else { return };
    let client = major_bin_dir(15).expect("Debian's PostgreSQL 15 client (>= the server's major)");
    let s = Streamed::new(&pg, &client, "bc_test_refill");
    let (spool, setup) = (&s.spool, &s.setup);
    let index_path = setup.store.archive.index();
    pg.psql("postgres", "CREATE TABLE t (x int)");
    let cancel = Cancel::new();
    let streamer = Streamer::start(setup.clone(), &cancel).unwrap();
    let slot = || {
        pg.psql("postgres", "SELECT count(*) FROM pg_replication_slots WHERE slot_name = 'bc_test_refill' AND active")
    };
    assert!(wait_until(Duration::from_secs(30), || slot() == "1"));
    work(&pg, 3);
    assert!(wait_until(Duration::from_secs(60), || indexed(&index_path).len() >= 3), "{:?}", indexed(&index_path));
    streamer.stop();
    // The spool is lost; WAL goes on meanwhile (the slot holds it).
    for e in std::fs::read_dir(spool.path()).unwrap() {
        std::fs::remove_file(e.unwrap().path()).unwrap();
    }
    let before = indexed(&index_path).len();
    work(&pg, 2);
    let streamer = Streamer::start(setup.clone(), &cancel).unwrap();
    work(&pg, 2);
    assert!(
        wait_until(Duration::from_secs(60), || indexed(&index_path).len() >= before + 4),
        "{:?}",
        indexed(&index_path)
    );
    streamer.stop();
    let numbers = indexed(&index_path);
    let (lo, hi) = (*numbers.iter().min().unwrap(), *numbers.iter().max().unwrap());
    assert_eq!(numbers.len() as u64, hi - lo + 1, "every segment once, none missing: {numbers:?}");
    pg.psql("postgres", "SELECT pg_drop_replication_slot('bc_test_refill')");
}

/// PostgreSQL 13 (before 15: pg_receivewal in an empty folder starts from the server's current
/// position) with the 18 client, 1 MB segments, an insert loop running throughout: a restart
/// of the database server and a `kill -9` of the streamer on the way to 50 segments leave
/// every segment in the archive once, whole, with its sha256.
#[test]
fn fifty_segments_on_13_survive_a_restart_and_a_killed_streamer_under_an_insert_loop() {
    let Some(pg) = PgServer::start_major_small_wal(13) else { return };
    let Some(client) = major_bin_dir(18) else {
        panic!("PostgreSQL 18's client (scripts/install-deps.sh pgmajors) is needed beside server 13");
    };
    let s = Streamed::new(&pg, &client, "bc_test_fifty");
    let (store, size) = (&s.setup.store, s.setup.segment_size);
    assert_eq!(size, 1 << 20, "initdb --wal-segsize=1");
    let index_path = store.archive.index();
    pg.psql("postgres", "CREATE TABLE t (x int)");
    let cancel = Cancel::new();
    let streamer = Streamer::start(s.setup.clone(), &cancel).unwrap();
    let active = || {
        pg.psql("postgres", "SELECT count(*) FROM pg_replication_slots WHERE slot_name = 'bc_test_fifty' AND active")
            == "1"
    };
    assert!(wait_until(Duration::from_secs(30), active), "the streamer holds its slot");
    let stop = std::sync::atomic::AtomicBool::new(false);
    let inserted = std::thread::scope(|scope| {
        // The insert loop: its failures while the server restarts are expected.
        let inserts = scope.spawn(|| {
            let mut ok = 0u32;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let out = pg.psql_cmd("postgres").args(["-c", "INSERT INTO t SELECT generate_series(1, 200)"]).output();
                ok += u32::from(out.is_ok_and(|o| o.status.success()));
            }
            ok
        });
        work(&pg, 15);
        assert!(wait_until(Duration::from_secs(60), || indexed(&index_path).len() >= 15), "{:?}", indexed(&index_path));
        pg.restart();
        work(&pg, 15);
        assert!(wait_until(Duration::from_secs(60), || indexed(&index_path).len() >= 30), "{:?}", indexed(&index_path));
        let first = streamer.child_pid();
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(first as i32), nix::sys::signal::Signal::SIGKILL).unwrap();
        assert!(wait_until(Duration::from_secs(30), || streamer.child_pid() != 0 && streamer.child_pid() != first));
        work(&pg, 20);
        let numbers = || indexed(&index_path);
        assert!(wait_until(Duration::from_secs(90), || numbers().len() >= 50), "{:?}", numbers());
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        inserts.join().unwrap()
    });
    streamer.stop();
    assert!(inserted > 0, "the insert loop ran");
    every_segment_once_and_whole(store, size);
    pg.psql("postgres", "SELECT pg_drop_replication_slot('bc_test_fifty')");
}

/// A slot nobody reads while WAL goes on holds it back on the server: past the limit the guard
/// drops it; under the limit it stays.
#[test]
fn a_slot_past_its_limit_is_dropped() {
    use backup_container::pitr::slot::{Verdict, guard};
    let Some(pg) = PgServer::start() else { return };
    let engines = backup_container::engine::Engines::new(Default::default());
    let engine = engines.postgres();
    let (conn, cancel) = (socket_conn(&pg), Cancel::new());
    pg.psql("postgres", "SELECT pg_create_physical_replication_slot('bc_guarded', true)");
    assert_eq!(guard(engine, &conn, "bc_guarded", Some(1 << 30), false, &cancel).unwrap().1, Verdict::Keep);
    pg.psql("postgres", "CREATE TABLE t (x int)");
    for _ in 0..3 {
        pg.psql("postgres", "INSERT INTO t SELECT generate_series(1, 1000)");
        pg.psql("postgres", "SELECT pg_switch_wal()");
    }
    match guard(engine, &conn, "bc_guarded", Some(1 << 20), false, &cancel).unwrap().1 {
        Verdict::Drop { retained, limit: Some(limit) } => assert!(retained > limit, "{retained} {limit}"),
        other => panic!("{other:?}"),
    }
    assert_eq!(pg.psql("postgres", "SELECT count(*) FROM pg_replication_slots"), "0");
}

/// With our volume full the slot goes even while the streamer uses it: its walsender is
/// terminated first.
#[test]
fn a_slot_in_use_is_dropped_when_our_volume_is_full() {
    use backup_container::pitr::slot::{Verdict, guard};
    let Some(pg) = PgServer::start() else { return };
    let engines = backup_container::engine::Engines::new(Default::default());
    let engine = engines.postgres();
    let s = Streamed::new(&pg, &major_bin_dir(pg.major()).expect("the server's own programs"), "bc_in_use");
    let cancel = Cancel::new();
    let streamer = Streamer::start(s.setup.clone(), &cancel).unwrap();
    let active =
        || pg.psql("postgres", "SELECT count(*) FROM pg_replication_slots WHERE slot_name = 'bc_in_use' AND active");
    assert!(wait_until(Duration::from_secs(30), || active() == "1"));
    let verdict = guard(engine, &socket_conn(&pg), "bc_in_use", None, true, &cancel).unwrap().1;
    assert!(matches!(verdict, Verdict::Drop { limit: None, .. }), "{verdict:?}");
    assert_eq!(pg.psql("postgres", "SELECT count(*) FROM pg_replication_slots WHERE slot_name = 'bc_in_use'"), "0");
    streamer.stop();
}
