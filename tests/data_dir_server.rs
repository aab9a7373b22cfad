//! A throwaway server on an existing data directory (the engine primitive point-in-time
//! restores stand on): a real base backup of a real server, started with its settings
//! overridden, recovered (to the end of its WAL, then promoted), reached as the bootstrap
//! superuser it is given, and removed with its folder; a data directory of a major that is not
//! installed is refused, naming it.

use std::process::Command;
use std::time::Duration;

use backup_container::engine::{DataDir, EngineOptions, Engines, Recovery, ServerOptions};
use backup_container::model::spec::EngineKind;
use backup_container::system::cancel::Cancel;

use crate::harness::postgres::{PgServer, major_bin_dir};

/// A base backup of `pg` (pg_basebackup of its own major, WAL streamed along) in a new folder.
fn base_backup(pg: &PgServer, work: &std::path::Path) -> tempfile::TempDir {
    let folder = tempfile::Builder::new().prefix("pitr-").tempdir_in(work).unwrap();
    let bin = major_bin_dir(pg.major()).expect("the server's own programs");
    let out = Command::new(bin.join("pg_basebackup"))
        .arg("-h")
        .arg(pg.socket_dir())
        .args(["-p", &pg.port.to_string(), "-U", "postgres", "-X", "stream", "-c", "fast", "-D"])
        .arg(folder.path().join("data"))
        .output()
        .unwrap();
    assert!(out.status.success(), "pg_basebackup: {}", String::from_utf8_lossy(&out.stderr));
    folder
}

fn query(engine_conn: &backup_container::engine::Conn, sql: &str) -> String {
    let out = Command::new("psql")
        .arg("-h")
        .arg(&engine_conn.host)
        .args(["-p", &engine_conn.port.unwrap().to_string(), "-U", engine_conn.user.as_deref().unwrap()])
        .args(["-d", "app", "-XAtq", "-c", sql])
        .output()
        .unwrap();
    assert!(out.status.success(), "{sql}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

#[test]
fn a_base_backup_starts_recovers_and_goes_with_its_folder() {
    let Some(pg) = PgServer::start() else { return };
    pg.psql("postgres", "CREATE DATABASE app");
    pg.psql("app", "CREATE TABLE t (id int); INSERT INTO t SELECT generate_series(1, 500)");
    // The cluster's bootstrap superuser is not always `postgres`: the one given is used.
    pg.psql("postgres", "CREATE ROLE alice SUPERUSER LOGIN");
    // Settings a throwaway server must not inherit: a preloaded library that is not installed
    // here, archiving to a command that fails, a primary.
    pg.psql("postgres", "ALTER SYSTEM SET shared_preload_libraries = 'not_installed_here'");
    pg.psql("postgres", "ALTER SYSTEM SET primary_conninfo = 'host=primary.invalid'");
    let work = tempfile::tempdir().unwrap();
    let engines = Engines::new(EngineOptions { connect_timeout_secs: 10, ..Default::default() });
    let engine = engines.get(&EngineKind::Postgres).unwrap();
    let opts = ServerOptions { work_dir: work.path().into(), start_timeout: Duration::from_secs(60), settings: vec![] };
    let cancel = Cancel::new();

    // Crash recovery from the WAL the base backup carries.
    let folder = base_backup(&pg, work.path());
    pg.psql("app", "INSERT INTO t SELECT generate_series(501, 600)"); // after the backup: not in it
    let path = folder.path().to_path_buf();
    let server = engine
        .start_server_on(DataDir { folder, superuser: "alice".into() }, None, &opts, &cancel)
        .unwrap_or_else(|e| panic!("{e:#}"));
    let conn = server.conn();
    assert_eq!(query(&conn, "SELECT count(*) FROM t"), "500");
    assert_eq!(query(&conn, "SELECT current_user"), "alice");
    assert_eq!(query(&conn, "SHOW shared_preload_libraries"), "");
    assert_eq!(query(&conn, "SHOW listen_addresses"), "");
    assert!(path.join("data/postgresql.auto.conf.source").exists(), "the source's settings kept aside");
    drop(server);
    assert!(!path.exists(), "the folder goes with the server");

    // Archive recovery: a restore_command that has nothing (every call fails), then promotion.
    let folder = base_backup(&pg, work.path());
    let recovery = Recovery { restore_command: "false '%f' \"%p\"".into(), target_time: None };
    let server = engine
        .start_server_on(DataDir { folder, superuser: "postgres".into() }, Some(&recovery), &opts, &cancel)
        .unwrap_or_else(|e| panic!("{e:#}"));
    assert_eq!(query(&server.conn(), "SELECT count(*) FROM t"), "600");
    assert_eq!(query(&server.conn(), "SELECT pg_is_in_recovery()"), "f", "promoted");
    drop(server);

    // A major that is not installed: refused before anything starts, naming it.
    let folder = base_backup(&pg, work.path());
    std::fs::write(folder.path().join("data/PG_VERSION"), "9\n").unwrap();
    let err = engine.start_server_on(DataDir { folder, superuser: "postgres".into() }, None, &opts, &cancel);
    let err = format!("{:#}", err.err().expect("refused"));
    assert!(err.contains("needs the PostgreSQL 9 server"), "{err}");
}
