//! Shared by the point-in-time tests: a streamer's setup against a test server, a workload
//! that finishes segments, and what the index file records.

use std::time::Duration;

use backup_container::engine::Conn;
use backup_container::pitr::archive::Store;
use backup_container::pitr::index::Event;
use backup_container::pitr::layout::Archive;
use backup_container::pitr::stream::Setup;
use backup_container::stream::compress::Compression;

use super::postgres::PgServer;

/// Segment numbers recorded in the index file, in order.
pub fn indexed(path: &std::path::Path) -> Vec<u64> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| match serde_json::from_str::<Event>(l) {
            Ok(Event::Segment(a)) => Some(a.number),
            _ => None,
        })
        .collect()
}

/// A streamer's setup for `pg`, with `client`'s pg_receivewal, into temporary folders.
pub struct Streamed {
    pub root: tempfile::TempDir,
    pub spool: tempfile::TempDir,
    pub setup: Setup,
}

impl Streamed {
    pub fn new(pg: &PgServer, client: &std::path::Path, slot: &str) -> Streamed {
        let size = pg.psql("postgres", "SELECT setting FROM pg_settings WHERE name = 'wal_segment_size'");
        let (root, spool) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let setup = Setup {
            server: format!("localhost:{}", pg.port),
            conn: socket_conn(pg),
            pg_receivewal: client.join("pg_receivewal"),
            spool: spool.path().to_path_buf(),
            store: Store::new(Archive::new(root.path(), "localhost", pg.port), Compression::default(), None),
            slot: slot.into(),
            segment_size: size.parse().unwrap(),
            partial_every: Duration::from_millis(500),
            keys: Default::default(),
        };
        Streamed { root, spool, setup }
    }
}

/// `rounds` inserts, each followed by a WAL switch (a finished segment each).
pub fn work(pg: &PgServer, rounds: u32) {
    for i in 0..rounds {
        pg.psql("postgres", &format!("INSERT INTO t SELECT generate_series(1, 1000) + {i}"));
        pg.psql("postgres", "SELECT pg_switch_wal()");
    }
}

/// The test server's socket as its bootstrap superuser.
pub fn socket_conn(pg: &PgServer) -> Conn {
    Conn {
        host: pg.socket_dir().display().to_string(),
        port: Some(pg.port),
        user: Some(pg.superuser.clone()),
        password: None,
    }
}
