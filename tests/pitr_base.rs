//! Base backups from real servers (`pitr::base`): `pg_basebackup -Ft -D -` streamed through
//! compression into the archive, every file checked against the embedded manifest on the way
//! (a byte changed in a real stream is named), recorded in the index with no gap beside the
//! streamed WAL, and restorable: the stored tar and the archived WAL start a server that holds
//! the rows of the moment of the backup. On 18, a full backup and two incrementals combine
//! with `pg_combinebackup` and start.

use std::io::Write;
use std::path::Path;
use std::time::Duration;

use backup_container::engine::{DataDir, EngineOptions, Engines, ServerOptions};
use backup_container::model::spec::EngineKind;
use backup_container::pitr::archive::Store;
use backup_container::pitr::base::{self, BaseSetup, Kind};
use backup_container::pitr::index::{self, BaseBackup};
use backup_container::pitr::manifest::Checked;
use backup_container::pitr::stream::Streamer;
use backup_container::pitr::wal::{Lsn, Segment};
use backup_container::stream::compress;
use backup_container::stream::crypt::Keys;
use backup_container::system::cancel::Cancel;

use crate::harness::daemon::wait_until;
use crate::harness::pitr::{Streamed, socket_conn, work};
use crate::harness::postgres::{PgServer, major_bin_dir};

fn base_setup(pg: &PgServer, client: &Path, store: &Store) -> BaseSetup {
    BaseSetup {
        server: format!("localhost:{}", pg.port),
        conn: socket_conn(pg),
        pg_basebackup: client.join("pg_basebackup"),
        store: store.clone(),
        major: pg.major(),
        superuser: "postgres".into(),
    }
}

/// Waits until the archive holds every segment up to `base`'s end.
fn wait_for_wal_of(store: &Store, base: &BaseBackup) {
    let (index, _) = index::load(&store.archive.index()).unwrap();
    let end = Lsn::parse(&base.end_lsn).unwrap().segment(index.segment_size);
    let reached = || {
        let (index, _) = index::load(&store.archive.index()).unwrap();
        index.has(Segment { timeline: base.timeline, number: end })
    };
    assert!(wait_until(Duration::from_secs(60), reached), "the WAL up to {} archived", base.end_lsn);
}

/// The stored tar of `base`, decoded.
fn decoded(store: &Store, base: &BaseBackup) -> Vec<u8> {
    let path = store.archive.base(base.chain, base.n, &store.extension());
    let mut out = Vec::new();
    let raw = std::fs::File::open(&path).unwrap();
    std::io::copy(&mut compress::decoder(&path, raw, &Keys::default()).unwrap(), &mut out).unwrap();
    out
}

/// `base` extracted into `dest`, with the archived WAL from its start to its end in pg_wal.
fn extract_with_wal(store: &Store, base: &BaseBackup, dest: &Path) {
    tar::Archive::new(&decoded(store, base)[..]).unpack(dest).unwrap();
    let (index, _) = index::load(&store.archive.index()).unwrap();
    let size = index.segment_size;
    let (from, to) =
        (Lsn::parse(&base.start_lsn).unwrap().segment(size), Lsn::parse(&base.end_lsn).unwrap().segment(size));
    for a in index.segments().filter(|a| a.timeline == base.timeline && (from..=to).contains(&a.number)) {
        store.restore_segment(a, size, &Keys::default(), &dest.join("pg_wal")).unwrap();
    }
}

/// Starts a throwaway server of `major` on `folder/data` and counts `t`'s rows.
fn rows_in(folder: tempfile::TempDir, superuser: &str, major: u32) -> String {
    // The major's server programs, and Debian's 15 for the client (npm's 13, 14 have none).
    let pg_bin_dirs = vec![major_bin_dir(major).unwrap(), major_bin_dir(15).unwrap()];
    let engines = Engines::new(EngineOptions { pg_bin_dirs, connect_timeout_secs: 10, ..Default::default() });
    let engine = engines.get(&EngineKind::Postgres).unwrap();
    let work = folder.path().parent().unwrap().to_path_buf();
    let opts = ServerOptions { work_dir: work, start_timeout: Duration::from_secs(60), settings: vec![] };
    let server = engine
        .start_server_on(DataDir { folder, superuser: superuser.into() }, None, &opts, &Cancel::new())
        .unwrap_or_else(|e| panic!("{e:#}"));
    let conn = server.conn();
    let pg = engines.postgres();
    pg.query(&conn, "postgres", "SELECT count(*) FROM t", &Cancel::new()).unwrap().trim().to_string()
}

#[test]
fn base_backups_are_checked_as_they_stream_and_restore_with_the_archived_wal() {
    let Some(pg) = PgServer::start() else { return };
    let client = major_bin_dir(pg.major()).expect("the server's own programs");
    let s = Streamed::new(&pg, &client, "bc_test_base");
    let store = &s.setup.store;
    pg.psql("postgres", "CREATE TABLE t (x int)");
    let cancel = Cancel::new();
    let streamer = Streamer::start(s.setup.clone(), &cancel).unwrap();
    work(&pg, 2);
    let setup = base_setup(&pg, &client, store);
    let first = base::take(&setup, &Kind::Full, &cancel).unwrap_or_else(|e| panic!("{e:#}"));
    let rows_at_first = pg.psql("postgres", "SELECT count(*) FROM t");
    work(&pg, 3);
    let second = base::take(&setup, &Kind::Full, &cancel).unwrap_or_else(|e| panic!("{e:#}"));
    work(&pg, 1);
    wait_for_wal_of(store, &second);
    streamer.stop();

    assert_eq!((first.chain, first.n, second.chain, second.n), (1, 0, 2, 0));
    assert!(first.files > 100 && first.major == pg.major(), "{first:?}");
    let (index, torn) = index::load(&store.archive.index()).unwrap();
    assert!(!torn);
    assert_eq!(index.bases, vec![first.clone(), second.clone()]);
    assert_eq!(index.gaps(), vec![]);
    let windows = index.windows();
    assert_eq!(windows.len(), 1, "{windows:?}");
    // It opens when the first backup's end reached the archive, by pg_basebackup's return.
    assert!(windows[0].from > first.started_at && windows[0].from <= first.finished_at, "{windows:?} {first:?}");
    let path = store.archive.base(1, 0, ".gz");
    assert_eq!(backup_container::catalog::checksum::sha256_file(&path).unwrap(), first.sha256);
    assert_eq!(std::fs::metadata(&path).unwrap().len(), first.size);
    assert!(store.archive.base_manifest(1, 0, ".gz").exists());

    // A byte changed in a real stream: named, by the file it is in.
    let mut tar = decoded(store, &first);
    let at = tar::Archive::new(&tar[..])
        .entries()
        .unwrap()
        .map(Result::unwrap)
        .find(|e| e.path().unwrap() == Path::new("global/pg_control"))
        .map(|e| e.raw_file_position())
        .unwrap();
    tar[at as usize + 20] ^= 1;
    let mut checked = Checked::new(std::io::sink());
    let _ = checked.write_all(&tar);
    let Err(err) = checked.finish() else { panic!("a changed file is found") };
    assert!(err.contains("global/pg_control's CRC32C"), "{err}");

    // The stored backup and the archived WAL make a server with the rows of that moment.
    let work_dir = tempfile::tempdir().unwrap();
    let folder = tempfile::Builder::new().prefix("restore").tempdir_in(work_dir.path()).unwrap();
    extract_with_wal(store, &first, &folder.path().join("data"));
    assert_eq!(rows_in(folder, &first.superuser, first.major), rows_at_first);

    // A second tablespace: refused with what to do, nothing kept.
    let ts = tempfile::tempdir().unwrap();
    if nix::unistd::Uid::effective().is_root() {
        let user = nix::unistd::User::from_name("postgres").unwrap().unwrap();
        nix::unistd::chown(ts.path(), Some(user.uid), Some(user.gid)).unwrap();
    }
    pg.psql("postgres", &format!("CREATE TABLESPACE extra LOCATION '{}'", ts.path().display()));
    let err = format!("{:#}", base::take(&setup, &Kind::Full, &cancel).unwrap_err());
    assert!(err.contains("tablespaces besides pg_default and pg_global"), "{err}");
    assert!(
        !store.archive.base(3, 0, ".gz").exists()
            && !store.archive.dir.join("base/3/0/base.tar.gz.in_progress").exists()
    );
    pg.psql("postgres", "DROP TABLESPACE extra");
    pg.psql("postgres", "SELECT pg_drop_replication_slot('bc_test_base')");
}

#[test]
fn an_incremental_chain_on_18_combines_and_starts() {
    let Some(pg) = PgServer::start_major_with(18, "-c summarize_wal=on") else { return };
    let client = major_bin_dir(18).expect("PostgreSQL 18's programs");
    let s = Streamed::new(&pg, &client, "bc_test_incremental");
    let store = &s.setup.store;
    pg.psql("postgres", "CREATE TABLE t (x int)");
    let cancel = Cancel::new();
    let streamer = Streamer::start(s.setup.clone(), &cancel).unwrap();
    let setup = base_setup(&pg, &client, store);
    let mut taken = vec![base::take(&setup, &Kind::Full, &cancel).unwrap_or_else(|e| panic!("{e:#}"))];
    for _ in 0..2 {
        work(&pg, 2);
        let previous = base::previous_manifest(store, taken.last().unwrap(), &Keys::default(), s.spool.path()).unwrap();
        taken.push(base::take(&setup, &Kind::Incremental(previous), &cancel).unwrap_or_else(|e| panic!("{e:#}")));
    }
    let rows = pg.psql("postgres", "SELECT count(*) FROM t");
    work(&pg, 1);
    let last = taken.last().unwrap().clone();
    wait_for_wal_of(store, &last);
    streamer.stop();
    assert_eq!(taken.iter().map(|b| (b.chain, b.n)).collect::<Vec<_>>(), vec![(1, 0), (1, 1), (1, 2)]);
    // An incremental is smaller than the full backup it builds on.
    assert!(taken[1].size < taken[0].size, "{} < {}", taken[1].size, taken[0].size);

    let work_dir = tempfile::tempdir().unwrap();
    let mut parts = Vec::new();
    for (i, b) in taken.iter().enumerate() {
        let dir = work_dir.path().join(format!("part{i}"));
        tar::Archive::new(&decoded(store, b)[..]).unpack(&dir).unwrap();
        parts.push(dir);
    }
    let folder = tempfile::Builder::new().prefix("combined").tempdir_in(work_dir.path()).unwrap();
    let data = folder.path().join("data");
    let out =
        std::process::Command::new(client.join("pg_combinebackup")).args(&parts).arg("-o").arg(&data).output().unwrap();
    assert!(out.status.success(), "pg_combinebackup: {}", String::from_utf8_lossy(&out.stderr));
    // The WAL from the last backup's start to its end, from the archive.
    let (index, _) = index::load(&store.archive.index()).unwrap();
    let size = index.segment_size;
    let (from, to) =
        (Lsn::parse(&last.start_lsn).unwrap().segment(size), Lsn::parse(&last.end_lsn).unwrap().segment(size));
    for a in index.segments().filter(|a| (from..=to).contains(&a.number)) {
        store.restore_segment(a, size, &Keys::default(), &data.join("pg_wal")).unwrap();
    }
    assert_eq!(rows_in(folder, &last.superuser, last.major), rows);
    pg.psql("postgres", "SELECT pg_drop_replication_slot('bc_test_incremental')");
}

/// PostgreSQL 13 (the oldest a team runs, npm's server) with PostgreSQL 18's client tools, as
/// an image built for the newest ships them: the manifest is in the stream (client 15+,
/// server 13+), and the stored backup with the archived WAL starts a 13 server with the rows.
#[test]
fn a_base_backup_of_13_with_the_18_client_restores() {
    let Some(pg) = PgServer::start_major(13) else { return };
    let client = major_bin_dir(18).expect("PostgreSQL 18's client tools");
    let s = Streamed::new(&pg, &client, "bc_test_base13");
    let store = &s.setup.store;
    pg.psql("postgres", "CREATE TABLE t (x int)");
    let cancel = Cancel::new();
    let streamer = Streamer::start(s.setup.clone(), &cancel).unwrap();
    let active = || {
        pg.psql("postgres", "SELECT count(*) FROM pg_replication_slots WHERE slot_name = 'bc_test_base13' AND active")
    };
    assert!(wait_until(Duration::from_secs(30), || active() == "1"));
    work(&pg, 2);
    let base = base::take(&base_setup(&pg, &client, store), &Kind::Full, &cancel).unwrap_or_else(|e| panic!("{e:#}"));
    let rows = pg.psql("postgres", "SELECT count(*) FROM t");
    work(&pg, 1);
    wait_for_wal_of(store, &base);
    streamer.stop();
    assert_eq!(base.major, 13);
    let (index, _) = index::load(&store.archive.index()).unwrap();
    assert_eq!(index.gaps(), vec![]);
    let work_dir = tempfile::tempdir().unwrap();
    let folder = tempfile::Builder::new().prefix("restore").tempdir_in(work_dir.path()).unwrap();
    extract_with_wal(store, &base, &folder.path().join("data"));
    assert_eq!(rows_in(folder, &base.superuser, 13), rows);
    pg.psql("postgres", "SELECT pg_drop_replication_slot('bc_test_base13')");
}
