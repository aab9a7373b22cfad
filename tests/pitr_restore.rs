//! `-r SPEC --at T` against a real server and its real archive (`restore::pitr`): rows
//! inserted, then t1, then rows deleted and changed, then t2; the database as it was at t1
//! restored into the live server (exact rows), `--at latest` gives t2's, `-f` restores beside
//! it; a time after the archive's end and a damaged segment are refused with the database
//! untouched. On 18, an encrypted archive with an incremental chain: restored with the
//! identity (the chain combined), refused without it. PITR drills prove the window, check the
//! nightly dump's tables and fail on a planted gap; a cluster with no `postgres` role (another
//! bootstrap superuser) and a preloaded library the throwaway lacks still drills.

use std::path::{Path, PathBuf};
use std::time::Duration;

use backup_container::pitr::archive::{Store, partial_state};
use backup_container::pitr::base::{self, BaseSetup, Kind};
use backup_container::pitr::index;
use backup_container::pitr::layout::Archive;
use backup_container::pitr::stream::{Setup, Streamer};
use backup_container::stream::compress::Compression;
use backup_container::stream::crypt::{Keys, Recipients};
use backup_container::system::cancel::Cancel;
use chrono::{DateTime, Utc};

use crate::harness::app::Fixture;
use crate::harness::daemon::wait_until;
use crate::harness::pitr::socket_conn;
use crate::harness::postgres::{PgServer, major_bin_dir};
use crate::harness::{Run, run};

/// `SELECT count(*), sum(x) FROM t` in `db`.
fn rows(fx: &Fixture, db: &str) -> String {
    fx.pg.psql(db, "SELECT count(*) || ' ' || coalesce(sum(x), 0) FROM t")
}

/// A server whose WAL streams into the archive under its backup folder.
struct Scenario {
    fx: Fixture,
    store: Store,
    base: BaseSetup,
    streamer: Option<Streamer>,
    spool: tempfile::TempDir,
    cancel: Cancel,
    size: u64,
    conf: PathBuf,
    /// PG_BIN_DIR for the binary: Debian's 15 and the server's own major.
    bin_dirs: String,
}

impl Scenario {
    fn start(fx: Fixture, recipients: Option<Recipients>) -> Scenario {
        let port = fx.pg.port;
        let client = major_bin_dir(fx.pg.major()).expect("the server's own programs");
        let size =
            fx.pg.psql("postgres", "SELECT setting FROM pg_settings WHERE name = 'wal_segment_size'").parse().unwrap();
        let store = Store::new(Archive::new(&fx.backups(), "localhost", port), Compression::default(), recipients);
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
        let base = BaseSetup {
            server: format!("localhost:{port}"),
            conn: socket_conn(&fx.pg),
            pg_basebackup: client.join("pg_basebackup"),
            store: store.clone(),
            major: fx.pg.major(),
            superuser: fx.pg.superuser.clone(),
        };
        let conf = fx.conf(&format!("localhost:{port}/app1\n"));
        let debian = major_bin_dir(15).expect("Debian's PostgreSQL 15");
        let bin_dirs = format!("{}:{}", debian.display(), client.display());
        fx.pg.psql(
            "app1",
            "CREATE TABLE t (x int); ALTER TABLE t OWNER TO app; INSERT INTO t SELECT generate_series(1, 100)",
        );
        Scenario { fx, store, base, streamer: Some(streamer), spool, cancel, size, conf, bin_dirs }
    }

    fn take(&self, kind: Kind) {
        base::take(&self.base, &kind, &self.cancel).unwrap_or_else(|e| panic!("{e:#}"));
    }

    /// Inserts 101..200, notes t1, deletes and changes rows, notes t2; waits until the
    /// archive holds a whole segment received after t2 (the test servers commit
    /// asynchronously: a commit's record reaches the stream up to a few hundred milliseconds
    /// after it returned; the WAL switch flushes everything before it). Returns t1.
    fn history(&mut self, between: impl FnOnce(&Scenario)) -> DateTime<Utc> {
        let pg = &self.fx.pg;
        pg.psql("app1", "INSERT INTO t SELECT generate_series(101, 200)");
        pg.psql("postgres", "SELECT pg_switch_wal()");
        between(self);
        std::thread::sleep(Duration::from_millis(1200));
        let t1 = Utc::now();
        std::thread::sleep(Duration::from_millis(1200));
        pg.psql("app1", "DELETE FROM t WHERE x <= 50; UPDATE t SET x = -x WHERE x > 150");
        let t2 = Utc::now();
        pg.psql("postgres", "CREATE TABLE after_t2 (x int); INSERT INTO after_t2 VALUES (1); SELECT pg_switch_wal()");
        let covered = || {
            let Ok((index, _)) = index::load(&self.store.archive.index()) else { return false };
            index.windows_with(partial_state(&self.store.archive)).last().is_some_and(|w| w.to >= t2)
                && index.segments().any(|a| a.received_at >= t2)
        };
        assert!(wait_until(Duration::from_secs(60), covered), "the archive reaches t2");
        if let Some(s) = self.streamer.take() {
            s.stop();
        }
        assert_eq!(rows(&self.fx, "app1"), "150 1275");
        t1
    }

    fn restore(&self, target: &str, at: &str, from: Option<&str>, identity: Option<&Path>) -> Run {
        let mut cmd = self.fx.cmd(&self.conf);
        cmd.args(["-r", &format!("localhost:{}/{target}", self.fx.pg.port), "--at", at, "-s"])
            .env("PITR_SERVERS", format!("localhost:{}", self.fx.pg.port))
            .env("VERIFY_DIR", self.fx.verify_dir())
            .env("PG_BIN_DIR", &self.bin_dirs);
        if let Some(f) = from {
            cmd.args(["-f", f]);
        }
        if let Some(i) = identity {
            cmd.env("BACKUP_ENCRYPTION_IDENTITY_FILE", i);
        }
        run(&mut cmd)
    }

    fn left_in_verify_dir(&self) -> Vec<std::ffi::OsString> {
        std::fs::read_dir(self.fx.verify_dir()).unwrap().flatten().map(|e| e.file_name()).collect()
    }
}

impl Drop for Scenario {
    fn drop(&mut self) {
        if let Some(s) = self.streamer.take() {
            s.stop();
        }
        self.fx.pg.psql("postgres", "SELECT count(pg_drop_replication_slot(slot_name)) FROM pg_replication_slots");
    }
}

/// Starts `data` with a plain `pg_ctl` (as postgres when root) on a free port and a socket of
/// its own, counts `t` in app1, and stops it.
fn plain_start_count(data: &Path, major: &u32) -> String {
    let bin = major_bin_dir(*major).unwrap();
    let root = nix::unistd::Uid::effective().is_root();
    let sock = tempfile::tempdir().unwrap();
    if root {
        let user = nix::unistd::User::from_name("postgres").unwrap().unwrap();
        nix::unistd::chown(sock.path(), Some(user.uid), Some(user.gid)).unwrap();
    }
    let port = crate::harness::free_port();
    let tool = |name: &str| {
        let mut c = std::process::Command::new(if root { "runuser".into() } else { bin.join(name) });
        if root {
            c.args(["-u", "postgres", "--"]).arg(bin.join(name));
        }
        c
    };
    let opts = format!("-p {port} -k {} -c listen_addresses=''", sock.path().display());
    let log = sock.path().join("log");
    let out =
        tool("pg_ctl").arg("-D").arg(data).args(["-o", &opts, "-l"]).arg(&log).args(["-w", "start"]).output().unwrap();
    assert!(
        out.status.success(),
        "{} {}",
        String::from_utf8_lossy(&out.stderr),
        std::fs::read_to_string(&log).unwrap_or_default()
    );
    let q = std::process::Command::new(bin.join("psql"))
        .arg("-h")
        .arg(sock.path())
        .args([
            "-p",
            &port.to_string(),
            "-U",
            "postgres",
            "-d",
            "app1",
            "-XAtc",
            "SELECT count(*) || ' ' || sum(x) FROM t",
        ])
        .output()
        .unwrap();
    let _ = tool("pg_ctl").arg("-D").arg(data).args(["-m", "fast", "-w", "stop"]).output();
    assert!(q.status.success(), "{}", String::from_utf8_lossy(&q.stderr));
    String::from_utf8_lossy(&q.stdout).trim().to_string()
}

#[test]
fn a_database_as_it_was_at_a_time_into_the_live_server() {
    let Some(fx) = Fixture::start(5) else { return };
    let mut s = Scenario::start(fx, None);
    s.take(Kind::Full);
    let t1 = s.history(|_| {}).to_rfc3339();
    let fx = &s.fx;
    let r = s.restore("app1", &t1, None, None);
    assert_eq!(r.code, 0, "{}", r.all());
    assert_eq!(rows(fx, "app1"), "200 20100", "the rows of t1");
    assert_eq!(fx.pg.psql("app1", "SELECT tableowner FROM pg_tables WHERE tablename = 't'"), "app");
    let r = s.restore("app1", "latest", None, None);
    assert_eq!(r.code, 0, "{}", r.all());
    assert_eq!(rows(fx, "app1"), "150 1275", "the rows of t2");
    // Beside it: -f names the source; the target is left as it is.
    let r = s.restore("app1_asof", &t1, Some("app1"), None);
    assert_eq!(r.code, 0, "{}", r.all());
    assert_eq!((rows(fx, "app1_asof"), rows(fx, "app1")), ("200 20100".into(), "150 1275".into()));

    // The whole cluster as of t1, as a data directory a plain pg_ctl starts.
    let cluster = fx.dir.path().join("cluster");
    std::fs::create_dir(&cluster).unwrap();
    let r = run(s
        .fx
        .cmd(&s.conf)
        .args(["--pitr-datadir", cluster.to_str().unwrap(), "--at", &t1])
        .env("PITR_SERVERS", format!("localhost:{}", fx.pg.port))
        .env("VERIFY_DIR", fx.verify_dir())
        .env("PG_BIN_DIR", &s.bin_dirs));
    assert_eq!(r.code, 0, "{}", r.all());
    assert!(r.stdout.contains("promoted and shut down cleanly"), "{}", r.all());
    assert!(!cluster.join("recovery.signal").exists());
    // The source's own configuration, not ours.
    for name in ["postgresql.conf", "postgresql.auto.conf", "pg_hba.conf"] {
        let ours = std::fs::read_to_string(cluster.join(name)).unwrap();
        assert_eq!(ours, std::fs::read_to_string(fx.pg.data_dir().join(name)).unwrap(), "{name}");
    }
    assert_eq!(plain_start_count(&cluster, &fx.pg.major()), "200 20100");
    let again = run(s
        .fx
        .cmd(&s.conf)
        .args(["--pitr-datadir", cluster.to_str().unwrap(), "--at", "latest"])
        .env("PITR_SERVERS", format!("localhost:{}", fx.pg.port)));
    assert_ne!(again.code, 0);
    assert!(again.stderr.contains("is not empty"), "{}", again.all());

    // After the archive's end: refused before anything, naming the latest reachable time.
    let later = (Utc::now() + chrono::Duration::hours(1)).to_rfc3339();
    let r = s.restore("app1", &later, None, None);
    assert_ne!(r.code, 0);
    assert!(
        r.stderr.contains("after the newest WAL") && r.stderr.contains("the latest time it can restore to is"),
        "{}",
        r.all()
    );
    // A damaged segment: named; the database untouched.
    let (index, _) = index::load(&s.store.archive.index()).unwrap();
    let victim = index.segments().nth(1).unwrap();
    let name = backup_container::pitr::wal::Segment { timeline: victim.timeline, number: victim.number }.name(s.size);
    let path = s.store.archive.wal(victim.timeline, &name, ".gz");
    let good = std::fs::read(&path).unwrap();
    let mut bad = good.clone();
    let middle = bad.len() / 2;
    bad[middle] ^= 0xff;
    std::fs::write(&path, &bad).unwrap();
    let r = s.restore("app1", &t1, None, None);
    assert_ne!(r.code, 0);
    assert!(r.stderr.contains("does not match its record") && r.stderr.contains(&name), "{}", r.all());
    assert_eq!(rows(fx, "app1"), "150 1275", "untouched");
    std::fs::write(&path, good).unwrap();
    assert!(s.left_in_verify_dir().is_empty(), "{:?}", s.left_in_verify_dir());
}

#[test]
fn an_encrypted_incremental_chain_on_18_restores_with_the_identity_only() {
    let Some(pg) = PgServer::start_major_with(18, "-c summarize_wal=on") else { return };
    let Some(fx) = Fixture::on(pg, 5) else { return };
    let keys = tempfile::tempdir().unwrap();
    let key = keys.path().join("key.txt");
    let out = std::process::Command::new("age-keygen").arg("-o").arg(&key).output();
    let Ok(out) = out else {
        return crate::harness::missing("age", "age-keygen not on PATH (apt install age)").unwrap_or(());
    };
    assert!(out.status.success());
    let public = std::process::Command::new("age-keygen").arg("-y").arg(&key).output().unwrap();
    let recipients = Recipients::parse(String::from_utf8(public.stdout).unwrap().trim()).unwrap();
    let mut s = Scenario::start(fx, Some(recipients));
    s.take(Kind::Full);
    // The incremental after the inserts, before t1: the chain is full + 1.
    let identity = Keys { identity_file: Some(key.clone()) };
    let t1 = s
        .history(|s| {
            let (index, _) = index::load(&s.store.archive.index()).unwrap();
            let previous = base::previous_manifest(&s.store, &index.bases[0], &identity, s.spool.path()).unwrap();
            s.take(Kind::Incremental(previous));
        })
        .to_rfc3339();
    // Nothing in the archive reads without the identity.
    let stored = s.store.archive.base(1, 1, ".gz.age");
    assert!(std::fs::read(&stored).unwrap().starts_with(b"age-encryption.org/v1"), "{}", stored.display());
    let r = s.restore("app1", &t1, None, None);
    assert_ne!(r.code, 0);
    assert!(r.stderr.contains("BACKUP_ENCRYPTION_IDENTITY_FILE is not set"), "{}", r.all());
    assert_eq!(rows(&s.fx, "app1"), "150 1275", "untouched");
    let r = s.restore("app1", &t1, None, Some(&key));
    assert_eq!(r.code, 0, "{}", r.all());
    assert!(r.stderr.contains("chain=1 backup=1"), "the incremental was used: {}", r.stderr);
    assert_eq!(rows(&s.fx, "app1"), "200 20100", "the rows of t1");
    assert!(s.left_in_verify_dir().is_empty(), "{:?}", s.left_in_verify_dir());
}

#[test]
fn pitr_drills_prove_the_window_and_a_planted_gap_fails_them() {
    let Some(fx) = Fixture::start(5) else { return };
    // A library the throwaway does not have, preloaded by the source: the drill still runs.
    fx.pg.psql("postgres", "ALTER SYSTEM SET shared_preload_libraries = 'not_installed_here'");
    let mut s = Scenario::start(fx, None);
    // Names from the server are data: a database and a table with a newline and a quote.
    s.fx.pg.psql("postgres", "CREATE DATABASE \"odd\nname\"");
    s.fx.pg.psql(
        "app1",
        "CREATE TABLE \"we\"\"ird\ntable\" (x int); INSERT INTO \"we\"\"ird\ntable\" VALUES (1), (2), (3); \
         ALTER TABLE \"we\"\"ird\ntable\" OWNER TO app",
    );
    // A nightly dump before the base backup: the drills expect its tables (odd names too).
    let dumped = run(&mut s.fx.once(&s.conf));
    assert_eq!(dumped.code, 0, "{}", dumped.all());
    s.take(Kind::Full);
    s.history(|_| {});
    let port = s.fx.pg.port;
    let drill = || {
        run(s
            .fx
            .cmd(&s.conf)
            .args(["-v", &format!("localhost:{port}"), "--pitr"])
            .env("PITR_SERVERS", format!("localhost:{port}"))
            .env("VERIFY_DIR", s.fx.verify_dir())
            .env("PG_BIN_DIR", &s.bin_dirs))
    };
    let r = drill();
    assert_eq!(r.code, 0, "{}", r.all());
    assert!(r.stdout.contains(&format!("PITR drill of localhost:{port} to the newest WAL")), "{}", r.all());
    assert!(r.stdout.contains("to a time in the window") && r.stdout.contains("amcheck clean"), "{}", r.all());
    let (index, _) = index::load(&s.store.archive.index()).unwrap();
    assert_eq!(index.drills.iter().map(|d| d.ok).collect::<Vec<_>>(), vec![true, true]);
    let latest = &index.drills[0];
    // app1 (t, the odd table and the seeded tables), app2, postgres and the odd database:
    // every table counted.
    assert!(latest.databases >= 4 && latest.tables >= 4, "{latest:?}");
    assert!(latest.rows >= 153, "{latest:?}");
    let proven = index.proven().expect("a proven window");
    assert!(proven.from <= proven.to);
    let list = run(s.fx.cmd(&s.conf).args(["-l", "--pitr"]).env("PITR_SERVERS", format!("localhost:{port}")));
    assert!(list.stdout.contains("proven by PITR drills"), "{}", list.all());

    // A table the dump holds and the archive does not (as if the archive lost it): the drills
    // fail naming it and the dump. The record is edited to say so.
    let record = std::fs::read_dir(s.fx.backups().join(".backup_container"))
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .find(|p| std::fs::read_to_string(p).is_ok_and(|t| t.contains("\"tables\"") && t.contains("/app1")))
        .expect("the dump's record");
    let kept = std::fs::read_to_string(&record).unwrap();
    let mut edited: serde_json::Value = serde_json::from_str(&kept).unwrap();
    edited["tables"]
        .as_array_mut()
        .unwrap()
        .push(serde_json::json!({"schema": "public", "table": "lost\ntable", "rows": 5, "bytes": 10}));
    std::fs::write(&record, edited.to_string()).unwrap();
    let r = drill();
    assert_eq!(r.code, 1, "{}", r.all());
    assert!(r.stderr.contains("missing from the recovered cluster") && r.stderr.contains("lost"), "{}", r.all());
    std::fs::write(&record, kept).unwrap();

    // A gap planted after the base backup: the drills fail, naming it.
    let victim = index.segments().last().unwrap();
    let name =
        backup_container::pitr::wal::Segment { timeline: victim.timeline, number: victim.number - 1 }.name(s.size);
    let removed = serde_json::json!({"event": "removed", "timeline": victim.timeline, "number": victim.number - 1});
    let mut text = std::fs::read_to_string(s.store.archive.index()).unwrap();
    text.push_str(&format!("{removed}\n"));
    std::fs::write(s.store.archive.index(), text).unwrap();
    let r = drill();
    assert_eq!(r.code, 1, "{}", r.all());
    assert!(r.stderr.contains("FAILED") && r.stderr.contains("gap") && r.stderr.contains(&name), "{}", r.all());
    let list = run(s.fx.cmd(&s.conf).args(["-l", "--pitr"]).env("PITR_SERVERS", format!("localhost:{port}")));
    assert!(list.stdout.contains("LAST PITR DRILL FAILED"), "{}", list.all());
    assert!(s.left_in_verify_dir().is_empty(), "{:?}", s.left_in_verify_dir());
}

/// A source cluster whose bootstrap superuser is not `postgres` (there is no such role at
/// all) and whose `shared_preload_libraries` names a library the throwaway lacks still drills:
/// the throwaway is reached as the superuser the base backup recorded.
#[test]
fn a_cluster_without_a_postgres_role_still_drills() {
    let Some(pg) = PgServer::start_as("dba", "") else { return };
    let Some(fx) = Fixture::on(pg, 5) else { return };
    assert_eq!(fx.pg.psql("postgres", "SELECT count(*) FROM pg_roles WHERE rolname = 'postgres'"), "0");
    fx.pg.psql("postgres", "ALTER SYSTEM SET shared_preload_libraries = 'not_installed_here'");
    let mut s = Scenario::start(fx, None);
    s.take(Kind::Full);
    s.history(|_| {});
    let port = s.fx.pg.port;
    let r = run(s
        .fx
        .cmd(&s.conf)
        .args(["-v", &format!("localhost:{port}"), "--pitr"])
        .env("PITR_SERVERS", format!("localhost:{port}"))
        .env("VERIFY_DIR", s.fx.verify_dir())
        .env("PG_BIN_DIR", &s.bin_dirs));
    assert_eq!(r.code, 0, "{}", r.all());
    let (index, _) = index::load(&s.store.archive.index()).unwrap();
    assert_eq!(index.bases[0].superuser, "dba");
    assert_eq!(index.drills.iter().map(|d| d.ok).collect::<Vec<_>>(), vec![true, true], "{:?}", index.drills);
    assert!(index.drills[0].tables >= 1 && index.drills[0].rows >= 150, "{:?}", index.drills[0]);
    assert!(s.left_in_verify_dir().is_empty(), "{:?}", s.left_in_verify_dir());
}
