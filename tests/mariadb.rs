//! The MariaDB engine against a real MariaDB server: round trip with row counts, restore to
//! another name, wrong password, server down, verification success and failures, a mixed
//! PostgreSQL + MariaDB run, and the "sandbox mode" first line of newer dumps.

use std::fs;

use crate::harness::mariadb::{ADMIN_PASSWORD, MariaDbServer};
use crate::harness::postgres::PgServer;
use crate::harness::{backups_under, bin, free_port, gunzip, gzip_to, run};

const PW: &str = "shop pw";

struct Fx {
    maria: MariaDbServer,
    dir: tempfile::TempDir,
}

impl Fx {
    fn start(rows: u32) -> Option<Fx> {
        let maria = MariaDbServer::start()?;
        maria.create_app("shop", "shopuser", PW, rows);
        Some(Fx { maria, dir: tempfile::tempdir().unwrap() })
    }

    fn spec(&self, db: &str) -> String {
        format!("mariadb=127.0.0.1:{}/{db}", self.maria.port)
    }

    fn cmd(&self, conf_text: &str) -> std::process::Command {
        let conf = self.dir.path().join("backup.conf");
        fs::write(&conf, conf_text).unwrap();
        let mut c = bin();
        c.env("BACKUP_CONF", &conf)
            .env("BACKUP_DIR", self.dir.path().join("backups"))
            .env("DATABASE_USER", "shopuser")
            .env("DATABASE_PASSWORD", PW)
            .env("BACKUP_ADMIN_USER", "admin")
            .env("BACKUP_ADMIN_PASSWORD", ADMIN_PASSWORD);
        c
    }
}

/// Backup, then restore under another name: same tables and row counts; the dump starts with
/// MariaDB's sandbox-mode line and restores with it.
#[test]
fn mariadb_round_trip_to_another_name() {
    let Some(fx) = Fx::start(300) else { return };
    let conf = format!("{}\n", fx.spec("shop"));
    let r = run(fx.cmd(&conf).arg("-1"));
    assert_eq!(r.code, 0, "{}", r.all());
    let files = backups_under(&fx.dir.path().join("backups"));
    assert_eq!(files.len(), 1, "{files:?}");
    assert!(files[0].contains("127.0.0.1-shop_"), "{files:?}");
    // Release series as numbers (major * 100 + minor): Debian's server and client are 10.11.
    let m = crate::harness::record(&fx.dir.path().join("backups"), &files[0]).unwrap();
    assert_eq!((m["server_major"].as_u64(), m["client_major"].as_u64()), (Some(1011), Some(1011)), "{m}");
    let sql = gunzip(&fx.dir.path().join("backups").join(&files[0]));
    assert!(
        sql.contains("CREATE TABLE `customers`") && sql.contains("INSERT INTO `orders`"),
        "{}",
        &sql[..400.min(sql.len())]
    );
    assert!(!sql.contains(PW));
    let r = run(fx.cmd(&conf).args(["-r", &fx.spec("shop_copy"), "-f", "127.0.0.1-shop", "-s"]));
    assert_eq!(r.code, 0, "{}", r.all());
    let original = fx.maria.row_counts("shop");
    assert!(original.contains("orders=600"), "{original}");
    assert_eq!(fx.maria.row_counts("shop_copy"), original);
    assert_eq!(
        fx.maria.sql("shop_copy", "SELECT COUNT(*) FROM big_orders"),
        fx.maria.sql("shop", "SELECT COUNT(*) FROM big_orders")
    );
}

/// A file starting with the sandbox-mode line (MariaDB 10.11.8+ dumps) restores.
#[test]
fn sandbox_mode_first_line_is_handled() {
    let Some(fx) = Fx::start(0) else { return };
    let file = fx.dir.path().join("backups/daily/2026-01-05/127.0.0.1-shop_2026-01-05_01-00-00.sql.gz");
    gzip_to(
        &file,
        "/*M!999999\\- enable the sandbox mode */ \n-- MariaDB dump 10.19  Distrib 10.11.19-MariaDB\n\
         CREATE TABLE t (x INT);\nINSERT INTO `t` VALUES (1),(2),(3);\n\n-- Dump completed on 2026-01-05  1:00:00\n",
    );
    let r = run(fx.cmd(&format!("{}\n", fx.spec("shop"))).args(["-r", &fx.spec("shop"), "-s"]));
    assert_eq!(r.code, 0, "{}", r.all());
    assert_eq!(fx.maria.sql("shop", "SELECT COUNT(*) FROM t"), "3");
    assert!(r.stderr.contains("1 tables checked, 3 rows checked"), "{}", r.all());
}

/// A MariaDB file cut short (no `-- Dump completed` trailer) is refused before the database
/// is dropped: MariaDB restores in place, so the whole file is checked first.
#[test]
fn cut_mariadb_file_is_refused_before_the_drop() {
    let Some(fx) = Fx::start(0) else { return };
    fx.maria.sql("shop", "CREATE TABLE marker (x INT); INSERT INTO marker VALUES (42)");
    let file = fx.dir.path().join("backups/daily/2026-01-05/127.0.0.1-shop_2026-01-05_01-00-00.sql.gz");
    gzip_to(&file, "-- MariaDB dump 10.19\nCREATE TABLE t (x INT);\nINSERT INTO `t` VALUES (1),(2");
    let r = run(fx.cmd(&format!("{}\n", fx.spec("shop"))).args(["-r", &fx.spec("shop"), "-s"]));
    assert_eq!(r.code, 1, "{}", r.all());
    assert!(r.stderr.contains("cut short") && r.stderr.contains("-- Dump completed"), "{}", r.all());
    assert!(r.stderr.contains("not touched"), "{}", r.all());
    assert_eq!(fx.maria.sql("shop", "SELECT x FROM marker"), "42");
}

/// Wrong password and a server that is down: exit 1 with the client's message, no file.
#[test]
fn mariadb_failures_are_clear() {
    let Some(fx) = Fx::start(5) else { return };
    let r = run(fx.cmd(&format!("{}\n", fx.spec("shop"))).arg("-1").env("DATABASE_PASSWORD", "nope"));
    assert_eq!(r.code, 1, "{}", r.all());
    assert!(r.stderr.contains("Access denied for user 'shopuser'"), "{}", r.all());
    let down = format!("mariadb=127.0.0.1:{}/shop\n", free_port());
    let r = run(fx.cmd(&down).arg("-1"));
    assert_eq!(r.code, 1, "{}", r.all());
    assert!(r.stderr.contains("Can't connect"), "{}", r.all());
    assert!(backups_under(&fx.dir.path().join("backups")).is_empty());
}

/// Verification in a throwaway mariadbd: real table counts; an empty database fails; nothing
/// is left behind.
#[test]
fn mariadb_verify_success_and_failure() {
    let Some(fx) = Fx::start(100) else { return };
    fx.maria.create_app("empty", "shopuser", PW, 0);
    let conf = format!("{}\n{}\n", fx.spec("shop"), fx.spec("empty"));
    assert_eq!(run(fx.cmd(&conf).arg("-1")).code, 0);
    let vdir = fx.dir.path().join("verify");
    fs::create_dir_all(&vdir).unwrap();
    let r = run(fx.cmd(&conf).args(["-v", &fx.spec("shop")]).env("VERIFY_DIR", &vdir));
    assert_eq!(r.code, 0, "{}", r.all());
    assert!(r.stderr.contains("2 tables in 1 schemas"), "{}", r.all());
    let r = run(fx.cmd(&conf).args(["-v", &fx.spec("empty")]).env("VERIFY_DIR", &vdir));
    assert_eq!(r.code, 1, "{}", r.all());
    assert!(r.stderr.contains("the restored database has no tables"), "{}", r.all());
    assert_eq!(fs::read_dir(&vdir).unwrap().count(), 0, "verification folder removed");
}

/// One backup.conf with a PostgreSQL and a MariaDB database: one run backs up both.
#[test]
fn mixed_postgres_and_mariadb_run() {
    let Some(fx) = Fx::start(20) else { return };
    let Some(pg) = PgServer::start() else { return };
    pg.create_app("app", "apppw", &["pgapp"]);
    pg.seed("pgapp", "app", 20);
    let conf = format!("{}\npostgres=localhost:{}/pgapp\n", fx.spec("shop"), pg.port);
    let r = run(fx.cmd(&conf).arg("-1").env("LOCALHOST_USER", "app").env("LOCALHOST_PASSWORD", "apppw"));
    assert_eq!(r.code, 0, "{}", r.all());
    let files = backups_under(&fx.dir.path().join("backups"));
    assert_eq!(files.len(), 2, "{files:?}");
    assert!(
        files.iter().any(|f| f.contains("127.0.0.1-shop_")) && files.iter().any(|f| f.contains("localhost-pgapp_"))
    );
}
