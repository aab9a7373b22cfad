//! Databases of thousands of tables on 15 and 18: `-r` with the row count check on, and `-v`.

use std::process::Command;

use super::{Fx, clients};
use crate::harness::app::APP_PASSWORD;
use crate::harness::postgres::PgServer;
use crate::harness::run;

/// A database of 5 000 tables (2 500 of them partitions of 25 partitioned tables) restores
/// with `-r`, the row count check on, and verifies: the counts run in batches that stay inside
/// the lock table (one transaction for all of them ran out of shared memory).
fn many_tables(major: u32) {
    let Some(pg) = PgServer::start_major(major) else { return };
    pg.create_app("app", APP_PASSWORD, &["many"]);
    for batch in 0..10 {
        pg.psql(
            "many",
            &format!(
                "SET ROLE app; DO $$ BEGIN FOR i IN {}..{} LOOP
                   EXECUTE format('CREATE TABLE plain_%s (x int); INSERT INTO plain_%s VALUES (%s)', i, i, i);
                 END LOOP; END $$",
                batch * 250 + 1,
                batch * 250 + 250
            ),
        );
    }
    for p in 1..=25 {
        pg.psql(
            "many",
            &format!(
                "SET ROLE app; CREATE TABLE part_{p} (k int, v int) PARTITION BY LIST (k);
                 DO $$ BEGIN FOR i IN 1..100 LOOP
                   EXECUTE format('CREATE TABLE part_{p}_%s PARTITION OF part_{p} FOR VALUES IN (%s)', i, i);
                 END LOOP; END $$;
                 INSERT INTO part_{p} SELECT g % 100 + 1, g FROM generate_series(1, 300) g"
            ),
        );
    }
    let fx = Fx { pg, dir: tempfile::tempdir().unwrap() };
    let conf_line = |c: &mut Command| {
        let conf = fx.dir.path().join("many.conf");
        std::fs::write(&conf, format!("localhost:{}/many\n", fx.pg.port)).unwrap();
        c.env("BACKUP_CONF", conf);
    };
    let (newest, _) = clients(major);
    let mut c = fx.cmd(&newest);
    conf_line(c.arg("-1"));
    let r = run(&mut c);
    assert_eq!(r.code, 0, "{}", r.all());
    let mut c = fx.cmd(&newest);
    conf_line(c.args(["-r", &fx.spec("many_copy"), "-f", "localhost-many", "-s"]));
    let r = run(&mut c);
    assert_eq!(r.code, 0, "PostgreSQL {major}: {}", r.all());
    assert!(r.stderr.contains("5000 tables checked, 10000 rows checked"), "{}", r.all());
    let total = |db: &str| {
        fx.pg.psql(
            db,
            "SELECT count(*) FROM pg_class WHERE relkind IN ('r', 'p') AND relnamespace = 'public'::regnamespace",
        )
    };
    assert_eq!(total("many_copy"), "5025");
    let vdir = fx.dir.path().join("verify");
    std::fs::create_dir_all(&vdir).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(fx.dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::set_permissions(&vdir, std::fs::Permissions::from_mode(0o777)).unwrap();
    let mut c = fx.cmd(&newest);
    conf_line(c.args(["-v", &fx.spec("many")]).env("VERIFY_DIR", &vdir));
    let r = run(&mut c);
    assert_eq!(r.code, 0, "PostgreSQL {major}: {}", r.all());
}

#[test]
fn five_thousand_tables_on_15() {
    many_tables(15);
}

#[test]
fn five_thousand_tables_on_18() {
    many_tables(18);
}
