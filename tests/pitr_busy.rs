//! A busy server under the daemon's archive (`pitr::archiver`): PostgreSQL 18 with 1 MB WAL
//! segments and an insert loop throughout gets three base backups and fifty segments with no
//! gap, every stored file matching the sha256 its record holds.

use std::time::Duration;

use crate::harness::app::Fixture;
use crate::harness::daemon::{get, metric, wait_until};
use crate::harness::pitr::work;
use crate::pitr_daemon::archiving;

/// A busy server (PostgreSQL 18, 1 MB segments, an insert loop throughout): after three base
/// backups and fifty segments the archive has no gap, and every stored segment and base backup
/// matches the sha256 its record holds.
#[test]
fn a_busy_server_gets_three_base_backups_and_fifty_segments_without_a_gap() {
    use sha2::Digest;
    let Some(pg) = crate::harness::postgres::PgServer::start_major_small_wal(18) else { return };
    let Some(fx) = Fixture::on(pg, 5) else { return };
    let major = |m: u32| crate::harness::postgres::major_bin_dir(m).unwrap().to_string_lossy().into_owned();
    let bin_dirs = format!("{}:{}", major(18), major(15));
    let settings = [("PITR_BASE_SCHEDULE", "@every 8s"), ("PITR_CHAINS", "5"), ("PG_BIN_DIR", bin_dirs.as_str())];
    let (mut d, server) = archiving(&fx, &settings);
    d.wait_for("A full base backup of", Duration::from_secs(60));
    fx.pg.psql("postgres", "CREATE TABLE t (x int)");
    let archive = std::fs::read_dir(fx.backups().join("pitr")).unwrap().next().unwrap().unwrap().path();
    let index = || backup_container::pitr::index::load(&archive.join("index.jsonl")).unwrap().0;
    let stop = std::sync::atomic::AtomicBool::new(false);
    std::thread::scope(|scope| {
        scope.spawn(|| {
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let _ =
                    fx.pg.psql_cmd("postgres").args(["-c", "INSERT INTO t SELECT generate_series(1, 500)"]).output();
            }
        });
        let busy = || {
            work(&fx.pg, 1);
            let i = index();
            i.bases.len() >= 3 && i.segments().count() >= 50
        };
        let done = wait_until(Duration::from_secs(150), busy);
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        let i = index();
        assert!(done, "{} base backups, {} segments\n{}", i.bases.len(), i.segments().count(), d.log());
    });
    let settled = |n: usize| {
        let m = get(&d.addr, "/metrics").1;
        metric(&m, &format!("backup_pitr_gaps{{server=\"{server}\"}}")) == Some(0.0) && index().segments().count() > n
    };
    let now = index().segments().count();
    fx.pg.psql("postgres", "SELECT pg_switch_wal()");
    assert!(wait_until(Duration::from_secs(60), || settled(now)), "{}", d.log());
    let (code, _) = d.terminate();
    assert_eq!(code, 0, "{}", d.log());

    let index = index();
    assert_eq!(index.gaps(), vec![], "no gap");
    assert!(index.bases.len() >= 3 && index.bases.iter().all(|b| b.n == 0), "{:?}", index.bases);
    let hex = |bytes: &[u8]| sha2::Sha256::digest(bytes).iter().map(|b| format!("{b:02x}")).collect::<String>();
    let numbers: Vec<u64> = index.segments().map(|a| a.number).collect();
    assert_eq!(numbers.len() as u64, numbers.iter().max().unwrap() - numbers.iter().min().unwrap() + 1, "{numbers:?}");
    for a in index.segments() {
        let name =
            backup_container::pitr::wal::Segment { timeline: a.timeline, number: a.number }.name(index.segment_size);
        let path = archive.join(format!("wal/{:08X}/{name}.gz", a.timeline));
        assert_eq!(
            hex(&std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))),
            a.sha256,
            "{name}"
        );
    }
    for b in &index.bases {
        let path = archive.join(format!("base/{}/{}/base.tar.gz", b.chain, b.n));
        assert_eq!(
            hex(&std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))),
            b.sha256,
            "base {}",
            b.chain
        );
    }
    fx.pg.psql("postgres", "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots");
}
