//! The load through our own libpq sessions (`RESTORE_LOADER=libpq`, the default) against a
//! real server, where it could differ from psql: bytes that are not UTF-8 (a SQL_ASCII
//! database), several statements on one line with `-I`, and the admin password coming from
//! libpq's own environment (`PGPASSFILE`) rather than from us.

use std::process::Command;

use crate::harness::app::Fixture;
use crate::harness::{gunzip, gzip_to, run};

/// `pg_dump -Fp db` as raw bytes (a SQL_ASCII dump need not be UTF-8).
fn dump_bytes(fx: &Fixture, db: &str) -> Vec<u8> {
    let out = Command::new("pg_dump")
        .arg("-h")
        .arg(fx.pg.socket_dir())
        .args(["-p", &fx.pg.port.to_string(), "-U", "postgres", db])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    out.stdout
}

#[test]
fn sql_ascii_bytes_that_are_not_utf8_load_byte_for_byte() {
    let Some(fx) = Fixture::start(5) else { return };
    let pg = &fx.pg;
    pg.psql(
        "postgres",
        "CREATE DATABASE raw OWNER app TEMPLATE template0 ENCODING 'SQL_ASCII' LC_COLLATE 'C' LC_CTYPE 'C'",
    );
    // Bytes that are not UTF-8 in rows (COPY data) and in a statement (a comment).
    pg.psql("raw", "SET ROLE app; CREATE TABLE public.t (id int, v text)");
    pg.psql("raw", r"INSERT INTO public.t VALUES (1, E'caf\xe9 \xff\xfe end'), (2, E'tab\there')");
    pg.psql("raw", r"COMMENT ON TABLE public.t IS E'r\xe9sum\xe9 \xff'");
    let digest =
        "SELECT string_agg(md5(v), ',' ORDER BY id) || ' ' || md5(obj_description('public.t'::regclass)) FROM public.t";
    let before = pg.psql("raw", digest);
    let dump = dump_bytes(&fx, "raw");
    assert!(std::str::from_utf8(&dump).is_err(), "the dump holds bytes that are not UTF-8");
    // Our backup: it carries the database's encoding, so the copy is SQL_ASCII too.
    let port = pg.port;
    let conf = fx.conf(&format!("localhost:{port}/raw\n"));
    let b = run(&mut fx.once(&conf));
    assert_eq!(b.code, 0, "{}", b.all());
    let file = fx.newest("localhost-raw");
    let r = run(fx.cmd(&conf).args(["-r", &format!("localhost:{port}/raw_copy"), "-f", file.to_str().unwrap(), "-s"]));
    assert_eq!(r.code, 0, "{}", r.all());
    assert_eq!(
        pg.psql("postgres", "SELECT pg_encoding_to_char(encoding) FROM pg_database WHERE datname = 'raw_copy'"),
        "SQL_ASCII"
    );
    assert_eq!(pg.psql("raw_copy", digest), before, "the same bytes, rows and comment");
}

/// psql sends each statement of a line on its own; so do we: with -I the failing one is
/// counted and its neighbour on the same line is kept (one query of both would undo it).
#[test]
fn a_failing_statement_does_not_undo_its_neighbour_on_the_same_line() {
    let Some(fx) = Fixture::start(20) else { return };
    let dump = fx.pg.dump_plain("app1");
    let line = "SET statement_timeout = 0;\n";
    assert!(dump.contains(line));
    let text = dump.replacen(line, "SET statement_timeout = 0; SELECT 1/0; CREATE TABLE public.kept (a int);\n", 1);
    let file = fx.backups().join("two.sql.gz");
    gzip_to(&file, &text);
    let n = text.lines().position(|l| l.contains("SELECT 1/0")).unwrap() + 1;
    let port = fx.pg.port;
    let conf = fx.conf(&format!("localhost:{port}/app1\n"));
    let r = run(fx.cmd(&conf).args(["-r", &format!("localhost:{port}/two"), "-f", file.to_str().unwrap(), "-s", "-I"]));
    assert_eq!(r.code, 1, "-I goes on but does not succeed: {}", r.all());
    assert!(r.stderr.contains(&format!("errors=1 first=line {n}: ERROR:  division by zero")), "{}", r.all());
    assert_eq!(fx.pg.psql("two", "SELECT count(*) FROM pg_class WHERE relname = 'kept'"), "1", "{}", r.all());
    let restored = fx.pg.row_counts("two");
    let without_kept: Vec<&str> = restored.lines().filter(|l| *l != "public.kept=0").collect();
    assert_eq!(without_kept.join("\n"), fx.pg.row_counts("app1"), "every other row loaded: {restored}");
}

/// The admin password from a libpq password file, with none given to us: our sessions leave
/// it to libpq, as psql did (and never take an inherited PGPASSWORD meant for someone else).
#[test]
fn the_admin_password_may_come_from_pgpassfile() {
    let Some(fx) = Fixture::start(20) else { return };
    let b = run(&mut fx.once(&fx.conf(&format!("localhost:{}/app1\n", fx.pg.port))));
    assert_eq!(b.code, 0, "{}", b.all());
    let file = fx.newest("localhost-app1");
    assert!(gunzip(&file).contains("COPY "), "a backup to restore");
    let passfile = fx.dir.path().join("pgpass");
    std::fs::write(&passfile, "*:*:*:postgres:admin-secret\n").unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&passfile, std::fs::Permissions::from_mode(0o600)).unwrap();
    let port = fx.pg.port;
    let conf = fx.conf(&format!("localhost:{port}/app1\n"));
    let restore = |db: &str, pgpassword: &str| {
        let mut cmd = fx.cmd(&conf);
        cmd.env_remove("BACKUP_ADMIN_PASSWORD")
            .env("BACKUP_ADMIN_USER", "postgres")
            .env("PGPASSFILE", &passfile)
            .env("PGPASSWORD", pgpassword)
            .args(["-r", &format!("localhost:{port}/{db}"), "-f", file.to_str().unwrap(), "-s"]);
        run(&mut cmd)
    };
    let r = restore("from_passfile", "not-this-one");
    assert_eq!(r.code, 0, "{}", r.all());
    assert_eq!(fx.pg.row_counts("from_passfile"), fx.pg.row_counts("app1"));
    assert!(!r.all().contains("admin-secret"), "{}", r.all());
}
