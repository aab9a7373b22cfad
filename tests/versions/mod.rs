//! Every PostgreSQL major a team runs, 13 to 18, against real servers of each (registry
//! packages: `scripts/install-deps.sh pgmajors`; Debian's 15): a backup taken with the newest
//! client (18, what an image built for "the newest" ships) restores under a new name into the
//! source's own server with the wide schema's rows equal, and verifies; pg_dump 18's header
//! (`SET transaction_timeout`) never reaches a server before 17 — neither through `-r` nor
//! through plain psql, since our files carry its portable form; a file the bash version's
//! PostgreSQL 18 image writes restores into 14; a target older than the source is refused
//! before anything is touched; a client older than the server writes nothing.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::harness::app::APP_PASSWORD;
use crate::harness::postgres::{PgServer, major_bin_dir};
use crate::harness::{backups_under, bin, gunzip, gzip_to, record, run};
use crate::wide_schema::{APP_PART, SUPERUSER_PART};

mod many_tables;

/// A server of one major with role `app` owning database `wide` (the wide schema).
struct Fx {
    pg: PgServer,
    dir: tempfile::TempDir,
}

impl Fx {
    fn start(major: u32) -> Option<Fx> {
        let pg = PgServer::start_major(major)?;
        assert_eq!(pg.major(), major);
        pg.create_app("app", APP_PASSWORD, &["wide"]);
        pg.psql("wide", SUPERUSER_PART);
        pg.psql("wide", APP_PART);
        // Past 1 MiB of COPY text: restores load it in the transaction that truncates it.
        pg.psql(
            "wide",
            "SET ROLE app; CREATE TABLE public.bulk AS SELECT g AS id, repeat(md5(g::text), 4) AS t FROM generate_series(1, 12000) g",
        );
        Some(Fx { pg, dir: tempfile::tempdir().unwrap() })
    }

    fn backups(&self) -> PathBuf {
        self.dir.path().join("backups")
    }

    /// The binary with the client tools of `client_bin` (`PG_BIN_DIR`: one folder or a list)
    /// and this server's credentials.
    fn cmd(&self, client_bin: impl AsRef<std::ffi::OsStr>) -> Command {
        let conf = self.dir.path().join("backup.conf");
        std::fs::write(&conf, format!("localhost:{}/wide\n", self.pg.port)).unwrap();
        let mut c = bin();
        c.env("BACKUP_CONF", &conf)
            .env("BACKUP_DIR", self.backups())
            .env("PG_BIN_DIR", client_bin.as_ref())
            .env("LOCALHOST_USER", "app")
            .env("LOCALHOST_PASSWORD", APP_PASSWORD)
            .env("BACKUP_ADMIN_PASSWORD", "admin-secret");
        c
    }

    fn spec(&self, db: &str) -> String {
        format!("localhost:{}/{db}", self.pg.port)
    }

    fn only_backup(&self) -> PathBuf {
        let files = backups_under(&self.backups());
        assert_eq!(files.len(), 1, "{files:?}");
        self.backups().join(&files[0])
    }
}

fn client(major: u32) -> PathBuf {
    major_bin_dir(major).filter(|d| d.join("pg_dump").exists()).unwrap_or_else(|| panic!("no client {major}"))
}

/// The clients a test installs for a server of `major`: the newest (18) and, where one exists
/// (Debian's 15), the server's own major, which the rule then picks. (pg_dump 18.6 against
/// Debian's 15.20 dumps that build's own column option `pg_attver`, which its pg_dump 15.20
/// leaves out and no other server accepts: the reason for the rule.)
fn clients(major: u32) -> (std::ffi::OsString, u32) {
    match major_bin_dir(major).filter(|d| d.join("pg_dump").exists() && major != 18) {
        Some(own) => (std::env::join_paths([client(18), own]).unwrap(), major),
        None => (client(18).into_os_string(), 18),
    }
}

/// Backup with the newest client or the server's own (`clients`), restore under a new name on
/// the same server, verify.
fn round_trip(major: u32) {
    let Some(fx) = Fx::start(major) else { return };
    fx.pg.psql(
        "postgres",
        "ALTER DATABASE wide SET work_mem = '3MB'; ALTER DATABASE wide SET search_path = public, \"Ünïcode sch\"",
    );
    let (installed, client_major) = clients(major);
    let newest = client(18);
    let r = run(fx.cmd(&installed).arg("--check"));
    let pair = format!("server {major} → pg_dump {client_major}");
    assert!(r.stdout.contains(&pair), "PostgreSQL {major}: {pair}:\n{}", r.all());
    let r = run(fx.cmd(&installed).arg("-1"));
    assert_eq!(r.code, 0, "PostgreSQL {major}: {}", r.all());
    let file = fx.only_backup();
    let rel = file.strip_prefix(fx.backups()).unwrap().to_str().unwrap().to_string();
    let m = record(&fx.backups(), &rel).expect("a record");
    assert_eq!(
        (m["server_major"].as_u64(), m["client_major"].as_u64()),
        (Some(major.into()), Some(client_major.into()))
    );
    let sql = gunzip(&file);
    if client_major < 17 {
        assert!(!sql.contains("transaction_timeout"), "pg_dump {client_major} does not write it");
        assert!(m.get("portable_header_lines").is_none(), "{m}");
    } else if major < 17 {
        assert!(!sql.contains("\nSET transaction_timeout"), "the portable form is written for {major}");
        // pg_dump 18 writes it always; pg_dumpall 18 only for a 17+ server.
        assert_eq!(m["portable_header_lines"].as_u64(), Some(1), "{m}");
    } else {
        assert!(sql.contains("\nSET transaction_timeout = 0;"), "pg_dump's own header is kept for {major}");
        assert!(m.get("portable_header_lines").is_none(), "{m}");
    }
    let r =
        run(fx.cmd(&newest).args(["-r", &fx.spec("wide_copy"), "-f", "localhost-wide", "-s"]).env("RESTORE_JOBS", "2"));
    assert_eq!(r.code, 0, "PostgreSQL {major}: {}", r.all());
    assert!(r.stderr.contains("rows checked"), "{}", r.all());
    assert_eq!(fx.pg.row_counts("wide_copy"), fx.pg.row_counts("wide"), "PostgreSQL {major}");
    // Loaded in its truncating transaction, rows frozen, on this major too (a new file).
    let new_file = "SELECT relfilenode <> oid FROM pg_class WHERE oid = 'public.bulk'::regclass";
    assert_eq!(fx.pg.psql("wide_copy", new_file), "t", "PostgreSQL {major}");
    let large_objects = |db: &str| fx.pg.psql(db, "SELECT count(*) FROM pg_largeobject_metadata");
    assert_eq!(large_objects("wide_copy"), large_objects("wide"));
    assert_eq!(database_settings(&fx.pg, "wide_copy"), database_settings(&fx.pg, "wide"), "PostgreSQL {major}");
    assert!(database_settings(&fx.pg, "wide").contains("work_mem=3MB"));
    if client_major != 18 {
        // The newest client's backup of the same server restores into it too.
        let newest_dir = fx.dir.path().join("newest");
        let r = run(fx.cmd(&newest).arg("-1").env("BACKUP_DIR", &newest_dir));
        assert_eq!(r.code, 0, "PostgreSQL {major}, pg_dump 18: {}", r.all());
        let r = run(fx
            .cmd(&newest)
            .args(["-r", &fx.spec("wide_18"), "-f", "localhost-wide", "-s"])
            .env("BACKUP_DIR", &newest_dir));
        assert_eq!(r.code, 0, "PostgreSQL {major}, pg_dump 18: {}", r.all());
        assert_eq!(fx.pg.row_counts("wide_18"), fx.pg.row_counts("wide"), "PostgreSQL {major}, pg_dump 18");
        assert_eq!(
            database_settings(&fx.pg, "wide_18"),
            database_settings(&fx.pg, "wide"),
            "PostgreSQL {major}, pg_dump 18"
        );
    }
    let vdir = fx.dir.path().join("verify");
    std::fs::create_dir_all(&vdir).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(fx.dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::set_permissions(&vdir, std::fs::Permissions::from_mode(0o777)).unwrap();
    // Only 18 installed: verified there, and the record says why.
    let r = run(fx.cmd(&newest).args(["-v", &fx.spec("wide")]).env("VERIFY_DIR", &vdir));
    assert_eq!(r.code, 0, "PostgreSQL {major}: {}", r.all());
    let last = |m: &serde_json::Value| m["verifications"].as_array().unwrap().last().unwrap().clone();
    let v = last(&record(&fx.backups(), &rel).unwrap());
    assert_eq!((v["ok"].as_bool(), v["server_major"].as_u64()), (Some(true), Some(18)), "{v}");
    if major != 18 {
        assert_eq!(v["note"], format!("verified in PostgreSQL 18; source {major} not installed"));
    }
    // The source's own server programs listed too: verified in the source's major.
    let both = std::env::join_paths([newest.clone(), major_bin_dir(major).unwrap()]).unwrap();
    let r = run(fx.cmd(&newest).args(["-v", &fx.spec("wide")]).env("VERIFY_DIR", &vdir).env("PG_BIN_DIR", &both));
    assert_eq!(r.code, 0, "PostgreSQL {major}: {}", r.all());
    let v = last(&record(&fx.backups(), &rel).unwrap());
    assert_eq!((v["server_major"].as_u64(), v.get("note")), (Some(major.into()), None), "{v}");
    assert!(r.stderr.contains(&format!("in PostgreSQL {major}, the source's major")), "{}", r.all());
    // And the upgrade rehearsal into the newest installed major, recorded apart.
    let rehearsals = record(&fx.backups(), &rel).unwrap()["upgrade_rehearsals"].clone();
    if major < 18 {
        let last = rehearsals.as_array().unwrap().last().unwrap().clone();
        assert_eq!((last["ok"].as_bool(), last["server_major"].as_u64()), (Some(true), Some(18)), "{last}");
        assert!(r.stderr.contains("upgrade rehearsal in PostgreSQL 18: ok"), "{}", r.all());
    } else {
        assert!(rehearsals.is_null(), "nothing newer than 18 is installed: {rehearsals}");
    }
}

/// The database's own settings, owner, encoding and locale, one line (`ALTER DATABASE … SET`).
fn database_settings(pg: &PgServer, db: &str) -> String {
    pg.psql(
        "postgres",
        &format!(
            "SELECT pg_get_userbyid(d.datdba) || ' ' || pg_encoding_to_char(d.encoding) || ' ' || d.datcollate || ' ' \
             || d.datctype || ' ' || coalesce((SELECT array_to_string(s.setconfig, ',') FROM pg_db_role_setting s \
             WHERE s.setdatabase = d.oid AND s.setrole = 0), '') FROM pg_database d WHERE d.datname = '{db}'"
        ),
    )
}

#[test]
fn postgres_13_backup_restore_verify() {
    round_trip(13);
}

#[test]
fn postgres_14_backup_restore_verify() {
    round_trip(14);
}

#[test]
fn postgres_15_backup_restore_verify() {
    round_trip(15);
}

#[test]
fn postgres_16_backup_restore_verify() {
    round_trip(16);
}

#[test]
fn postgres_17_backup_restore_verify() {
    round_trip(17);
}

#[test]
fn postgres_18_backup_restore_verify() {
    round_trip(18);
}

/// pg_dump 18 of a 13 server loads into 13 by plain `gunzip -c | psql -v ON_ERROR_STOP=1`
/// (Debian's psql 15), and through `-r` into a 13 server; a 17 source is refused by 13.
#[test]
fn a_newer_clients_dump_loads_into_the_source_major_by_plain_psql() {
    let Some(fx) = Fx::start(13) else { return };
    let r = run(fx.cmd(client(18)).arg("-1"));
    assert_eq!(r.code, 0, "{}", r.all());
    let file = fx.only_backup();
    fx.pg.psql("postgres", "CREATE DATABASE plain OWNER app");
    // As the bash version restores: the whole file through psql. The roles exist on this
    // server, so their CREATE ROLE fails with "already exists"; nothing else may fail.
    let out = Command::new("sh")
        .arg("-c")
        .arg("gunzip -c \"$1\" | psql -X -q -h \"$2\" -p \"$3\" -U postgres -d plain >/dev/null")
        .args(["sh", file.to_str().unwrap(), fx.pg.socket_dir().to_str().unwrap(), &fx.pg.port.to_string()])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    let errors: Vec<&str> = stderr.lines().filter(|l| l.contains("ERROR")).collect();
    assert!(out.status.success() && errors.iter().all(|l| l.contains("already exists")), "plain psql: {stderr}");
    assert_eq!(fx.pg.row_counts("plain"), fx.pg.row_counts("wide"));

    // A 17 source's backup into this 13 server: refused, naming both majors; nothing touched.
    let Some(newer) = Fx::start(17) else { return };
    newer.pg.psql("postgres", "CREATE ROLE only_in_17");
    let r = run(newer.cmd(client(18)).arg("-1"));
    assert_eq!(r.code, 0, "{}", r.all());
    let newer_file = newer.only_backup();
    fx.pg.psql("postgres", "CREATE DATABASE keep OWNER app");
    fx.pg.psql("keep", "CREATE TABLE marker (x int); INSERT INTO marker VALUES (42)");
    let r = run(fx.cmd(client(18)).args(["-r", &fx.spec("keep"), "-f", newer_file.to_str().unwrap(), "-s"]));
    assert_eq!(r.code, 1, "{}", r.all());
    assert!(r.stderr.contains("PostgreSQL 17 server") && r.stderr.contains("into PostgreSQL 13"), "{}", r.all());
    assert_eq!(fx.pg.psql("keep", "SELECT x FROM marker"), "42");
    assert_eq!(
        fx.pg.psql("postgres", "SELECT count(*) FROM pg_roles WHERE rolname = 'only_in_17'"),
        "0",
        "roles untouched"
    );
}

/// What the bash version's PostgreSQL 18 image writes — `pg_dumpall -r` and `pg_dump` 18 output
/// with their raw `SET transaction_timeout = 0;` — restores into a 14 server through `-r`.
#[test]
fn a_bash_image_file_of_pg_dump_18_restores_into_14() {
    let Some(fx) = Fx::start(14) else { return };
    let tools = client(18);
    let tool = |name: &str, args: &[&str]| {
        let out = Command::new(tools.join(name))
            .arg("-h")
            .arg(fx.pg.socket_dir())
            .args(["-p", &fx.pg.port.to_string(), "-U", "postgres"])
            .args(args)
            .output()
            .unwrap();
        assert!(out.status.success(), "{name}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).unwrap()
    };
    let text = format!(
        "{}{}",
        tool("pg_dumpall", &["--roles-only", "--no-role-passwords"]),
        tool("pg_dump", &["-Fp", "wide"])
    );
    assert_eq!(text.matches("\nSET transaction_timeout = 0;").count(), 1, "pg_dump 18 writes it");
    let file = fx.backups().join("daily/2026-12-01/localhost-wide_2026-12-01_01-00-00.sql.gz");
    gzip_to(&file, &text);
    let r = run(fx.cmd(client(18)).args(["-r", &fx.spec("from_bash"), "-f", "localhost-wide", "-s"]));
    assert_eq!(r.code, 0, "{}", r.all());
    assert!(r.stderr.contains("Header settings this server lacks were skipped"), "{}", r.all());
    assert!(!r.stderr.contains("unrecognized configuration parameter") && !r.stderr.contains("roles: "), "{}", r.all());
    assert_eq!(fx.pg.row_counts("from_bash"), fx.pg.row_counts("wide"));
}

/// A client older than the server: a clear error naming both majors, exit 1, nothing written.
#[test]
fn a_client_older_than_the_server_writes_nothing() {
    let Some(fx) = Fx::start(16) else { return };
    let r = run(fx.cmd(client(15)).arg("-1"));
    assert_eq!(r.code, 1, "{}", r.all());
    assert!(r.stderr.contains("no pg_dump can back up a PostgreSQL 16 server (installed: pg_dump 15;"), "{}", r.all());
    assert!(backups_under(&fx.backups()).is_empty());
}

/// With clients 15 and 18 installed (`PG_BIN_DIR` lists both, 18 first), a 15 server is dumped
/// with pg_dump 15 and a 16 server with the lowest client above it, 18; `--check` says which.
#[test]
fn each_server_gets_the_client_of_its_major_else_the_lowest_above() {
    let both = std::env::join_paths([client(18), client(15)]).unwrap();
    let c = run(bin().arg("-c").env("PG_BIN_DIR", &both).env("BACKUP_CONF", "/nonexistent"));
    assert!(c.stdout.contains("- PostgreSQL clients: 15, 18; servers (verification): 15, 18."), "{}", c.all());
    for (major, expected) in [(15, 15), (16, 18)] {
        let Some(fx) = Fx::start(major) else { return };
        let mut c = fx.cmd(Path::new("unused"));
        let r = run(c.arg("-1").env("PG_BIN_DIR", &both));
        assert_eq!(r.code, 0, "{}", r.all());
        let file = fx.only_backup();
        let rel = file.strip_prefix(fx.backups()).unwrap().to_str().unwrap().to_string();
        let m = record(&fx.backups(), &rel).expect("a record");
        assert_eq!(m["client_major"].as_u64(), Some(expected), "server {major}: {m}");
        let mut c = fx.cmd(Path::new("unused"));
        let r = run(c.arg("--check").env("PG_BIN_DIR", &both));
        let line = format!("server {major} → pg_dump {expected}");
        assert!(r.stdout.contains(&line), "{line}:\n{}", r.stdout);
    }
}

/// A database that loads into its own major but not into the newest: verification passes in
/// 13, the upgrade rehearsal into 18 fails with a WARN naming the error (a postfix operator:
/// removed in PostgreSQL 14), and both results are in the record.
#[test]
fn the_upgrade_rehearsal_warns_without_failing_the_verification() {
    let Some(fx) = Fx::start(13) else { return };
    fx.pg.psql(
        "wide",
        "CREATE FUNCTION public.fact(bigint) RETURNS numeric LANGUAGE sql IMMUTABLE AS 'SELECT $1::numeric';
         CREATE OPERATOR public.### (LEFTARG = bigint, PROCEDURE = public.fact)",
    );
    let newest = client(18);
    let r = run(fx.cmd(&newest).arg("-1"));
    assert_eq!(r.code, 0, "{}", r.all());
    let file = fx.only_backup();
    let rel = file.strip_prefix(fx.backups()).unwrap().to_str().unwrap().to_string();
    let vdir = fx.dir.path().join("verify");
    std::fs::create_dir_all(&vdir).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(fx.dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::set_permissions(&vdir, std::fs::Permissions::from_mode(0o777)).unwrap();
    let both = std::env::join_paths([newest.clone(), major_bin_dir(13).unwrap()]).unwrap();
    let r = run(fx.cmd(&newest).args(["-v", &fx.spec("wide")]).env("VERIFY_DIR", &vdir).env("PG_BIN_DIR", &both));
    assert_eq!(r.code, 0, "the verification passes: {}", r.all());
    assert!(r.stderr.contains("WARN") && r.stderr.contains("Upgrade rehearsal failed"), "{}", r.all());
    let m = record(&fx.backups(), &rel).unwrap();
    let v = m["verifications"].as_array().unwrap().last().unwrap().clone();
    assert_eq!((v["ok"].as_bool(), v["server_major"].as_u64()), (Some(true), Some(13)), "{m}");
    let rehearsal = m["upgrade_rehearsals"].as_array().unwrap().last().unwrap().clone();
    assert_eq!((rehearsal["ok"].as_bool(), rehearsal["server_major"].as_u64()), (Some(false), Some(18)), "{m}");
    assert!(rehearsal["error"].as_str().unwrap().contains("Postfix operators are not supported"), "{rehearsal}");
    // Daily: not again today; `always`: again; `false`: never.
    let rehearsals = || record(&fx.backups(), &rel).unwrap()["upgrade_rehearsals"].as_array().unwrap().len();
    let again = |value: &str| {
        let r = run(fx
            .cmd(&newest)
            .args(["-v", &fx.spec("wide")])
            .env("VERIFY_DIR", &vdir)
            .env("PG_BIN_DIR", &both)
            .env("VERIFY_UPGRADE", value));
        assert_eq!(r.code, 0, "{}", r.all());
    };
    again("daily");
    assert_eq!(rehearsals(), 1);
    again("always");
    assert_eq!(rehearsals(), 2);
    again("false");
    assert_eq!(rehearsals(), 2);
    let l = run(fx.cmd(&newest).arg("-l"));
    assert!(l.stdout.contains("ok 20") && l.stdout.contains("; upgrade to 18: FAILED"), "{}", l.stdout);
    let r = run(fx.cmd(&newest).arg("-c").env("VERIFY_UPGRADE", "weekly"));
    assert_eq!(r.code, 2, "a typo is a configuration error: {}", r.all());
}

/// The parallel load on a 17 server: every session carries the dump's session settings,
/// `transaction_timeout` among them (a `SET transaction...` prefix rule once dropped it).
#[test]
fn parallel_sessions_on_17_carry_transaction_timeout() {
    let Some(fx) = Fx::start(17) else { return };
    let r = run(fx.cmd(client(18)).arg("-1"));
    assert_eq!(r.code, 0, "{}", r.all());
    fx.pg.psql("postgres", "ALTER SYSTEM SET log_statement = 'all'");
    fx.pg.psql("postgres", "SELECT pg_reload_conf()");
    let log = fx.pg.socket_dir().join("log");
    let before = std::fs::read_to_string(&log).unwrap_or_default().matches("SET transaction_timeout = 0").count();
    let r =
        run(fx.cmd(client(18)).args(["-r", &fx.spec("par"), "-f", "localhost-wide", "-s"]).env("RESTORE_JOBS", "4"));
    assert_eq!(r.code, 0, "{}", r.all());
    assert!(r.stderr.contains("Loaded in parallel"), "{}", r.all());
    let sets = std::fs::read_to_string(&log).unwrap().matches("SET transaction_timeout = 0").count() - before;
    // The serial session and each of the parallel ones (pg_dumpall's roles section has one too).
    assert!(sets >= 4, "SET transaction_timeout reached {sets} sessions");
    assert_eq!(fx.pg.row_counts("par"), fx.pg.row_counts("wide"));
}
