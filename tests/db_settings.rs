//! The database's own settings survive a backup and a restore under a new name (contract C4,
//! extended): `ALTER DATABASE ... SET`, `ALTER ROLE ... IN DATABASE ... SET`, the comment, the
//! privileges, the encoding and locale. The bash version's `gunzip | psql` restore of our file
//! applies them too, and a server lacking a role warns instead of failing.

use crate::harness::app::Fixture;
use crate::harness::postgres::PgServer;
use crate::harness::{gunzip, run};

/// The settings rows of `db` (role or `*`, then its settings), sorted.
fn settings(pg: &PgServer, db: &str) -> String {
    pg.psql(
        "postgres",
        &format!(
            "SELECT string_agg(coalesce(pg_get_userbyid(nullif(setrole, 0)), '*') || ':' || array_to_string(setconfig, ','), \
             ' | ' ORDER BY 1) FROM pg_db_role_setting WHERE setdatabase = (SELECT oid FROM pg_database WHERE datname = '{db}')"
        ),
    )
}

fn describe(pg: &PgServer, db: &str) -> String {
    pg.psql(
        "postgres",
        &format!(
            "SELECT pg_encoding_to_char(encoding) || ' ' || datcollate || ' ' || datctype || ' ' || \
             coalesce(shobj_description(oid, 'pg_database'), '-') || ' public-connect=' || \
             has_database_privilege('public', oid, 'CONNECT') FROM pg_database WHERE datname = '{db}'"
        ),
    )
}

#[test]
fn database_settings_survive_a_restore_under_a_new_name() {
    let Some(fx) = Fixture::start(5) else { return };
    let pg = &fx.pg;
    pg.psql("postgres", "CREATE ROLE reporting NOLOGIN");
    pg.psql(
        "postgres",
        "CREATE DATABASE src OWNER app TEMPLATE template0 ENCODING 'LATIN1' LC_COLLATE 'C' LC_CTYPE 'C'",
    );
    for sql in [
        "ALTER DATABASE src SET timezone = 'Asia/Tokyo'",
        "ALTER DATABASE src SET bytea_output = 'escape'",
        "ALTER DATABASE src SET lc_monetary = 'C'",
        "ALTER DATABASE src SET search_path = \"$user\", public, \"odd schema\"",
        "ALTER DATABASE src SET app.custom = 'x''y 100%'",
        "ALTER ROLE app IN DATABASE src SET work_mem = '8MB'",
        "COMMENT ON DATABASE src IS 'it''s ours'",
        "REVOKE CONNECT, TEMPORARY ON DATABASE src FROM PUBLIC",
        "GRANT CONNECT ON DATABASE src TO reporting",
        "GRANT CONNECT ON DATABASE src TO app",
    ] {
        pg.psql("postgres", sql);
    }
    pg.psql("src", "SET ROLE app; CREATE TABLE t (v text); INSERT INTO t VALUES ('café')");
    let before = settings(pg, "src");
    assert!(before.contains("TimeZone=Asia/Tokyo") && before.contains("app:work_mem=8MB"), "{before}");
    let described = describe(pg, "src");
    assert_eq!(described, "LATIN1 C C it's ours public-connect=false");

    let conf = fx.conf(&format!("localhost:{}/src\n", pg.port));
    let r = run(&mut fx.once(&conf));
    assert_eq!(r.code, 0, "{}", r.all());
    let file = fx.newest("localhost-src");
    let text = gunzip(&file);
    assert!(text.contains("-- backup-container database settings\n"), "{}", &text[..2000.min(text.len())]);

    // Our restore, under a new name.
    let r = run(fx.cmd(&conf).args(["-r", &format!("localhost:{}/copy", pg.port), "-f", "localhost-src", "-s"]));
    assert_eq!(r.code, 0, "{}", r.all());
    assert_eq!(settings(pg, "copy"), before);
    assert_eq!(describe(pg, "copy"), described);
    assert_eq!(pg.psql("postgres", "SELECT has_database_privilege('reporting', 'copy', 'CONNECT')"), "t");
    assert_eq!(pg.psql("copy", "SELECT v FROM t"), "café");

    // The bash version's restore: gunzip | psql into a database it created. Its roles section
    // fails on existing roles (upstream #132, why its users run -I: ON_ERROR_STOP=0); nothing
    // else may fail, our section included.
    pg.psql("postgres", "CREATE DATABASE bashcopy");
    let mut psql = pg
        .psql_cmd("bashcopy")
        .args(["-v", "ON_ERROR_STOP=0"])
        .stdin(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::io::Write::write_all(psql.stdin.as_mut().unwrap(), text.as_bytes()).unwrap();
    drop(psql.stdin.take());
    let out = psql.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    let errors: Vec<&str> = stderr.lines().filter(|l| l.contains("ERROR")).collect();
    assert!(errors.iter().all(|l| l.contains("already exists")), "{stderr}");
    assert_eq!(settings(pg, "bashcopy"), before);
    assert!(describe(pg, "bashcopy").ends_with("it's ours public-connect=false"), "{}", describe(pg, "bashcopy"));

    // Verification accepts it.
    let v = run(fx.cmd(&conf).args(["-v", "all"]).env("VERIFY_DIR", fx.verify_dir()));
    assert_eq!(v.code, 0, "{}", v.all());

    // A server that has no role `reporting` (a file without the roles section): the grant
    // warns, the restore succeeds.
    let Some(other) = PgServer::start() else { return };
    other.psql("postgres", "CREATE ROLE app");
    let roles_end = text.find("--\n-- backup-container database settings\n").unwrap();
    let without_roles = fx.backups().join("2026-01-01/localhost-src_2026-01-01_00-00-00.sql.gz");
    crate::harness::gzip_to(&without_roles, &text[roles_end..]);
    let target = format!("localhost:{}/src", other.port);
    let r = run(fx.cmd(&conf).args(["-r", &target, "-f", without_roles.to_str().unwrap(), "-s"]));
    assert_eq!(r.code, 0, "{}", r.all());
    assert!(r.stderr.contains("a database setting was not restored") && r.stderr.contains("reporting"), "{}", r.all());
    assert_eq!(describe(&other, "src"), described);
    assert_eq!(settings(&other, "src"), before);
}
