//! Names are never options: databases whose names look like options (`--schema-only`, `-x`),
//! connection strings (`a=b`, `postgresql://...`) or contain spaces, quotes, backslashes and
//! non-ASCII letters are dumped, restored, verified and reached by SQL hooks as themselves,
//! by every tool (pg_dump, pg_dumpall, psql; mariadb-dump, mariadb). In-process through the
//! engines (specs cannot spell most of these names), plus `host/--schema-only` through the
//! binary as the issue reproduced it.

use std::io::BufReader;
use std::time::Duration;

use backup_container::config::{Credentials, Database, Secret};
use backup_container::engine::{Conn, EngineOptions, Engines, Placement, RestoreRequest, ServerOptions};
use backup_container::model::spec::{DatabaseSpec, EngineKind};
use backup_container::restore::database::{VerifyOptions, restore_into, verify_in};
use backup_container::system::cancel::Cancel;

use crate::harness::app::{APP_PASSWORD, Fixture};
use crate::harness::mariadb::{ADMIN_PASSWORD, MariaDbServer};
use crate::harness::{gunzip, run};

const HOSTILE: [&str; 4] = ["--schema-only", "a=b c", "it's \"q\" back\\slash", "données-ü -x"];

fn database(spec: &str, name: &str, user: &str, password: &str) -> Database {
    let mut spec: DatabaseSpec = spec.parse().unwrap();
    spec.database = name.to_string();
    Database {
        spec,
        credentials: Credentials {
            user: Some(user.into()),
            user_source: "test".into(),
            password: Some(backup_container::model::database::PasswordSource::Value(Secret::new(password))),
            password_source: Some("test".into()),
        },
        options: Default::default(),
    }
}

fn request(name: &str, admin: Conn, placement: Placement) -> RestoreRequest {
    RestoreRequest {
        database: name.to_string(),
        admin,
        owner: None,
        ignore_errors: false,
        single_transaction: false,
        placement,
        count_check: true,
        jobs: 4,
    }
}

#[test]
fn postgres_tools_take_every_name_as_a_name() {
    let Some(fx) = Fixture::start(5) else { return };
    let pg = &fx.pg;
    let engines = Engines::new(EngineOptions { pg_bin_dirs: vec![], connect_timeout_secs: 10, ..Default::default() });
    let engine = engines.get(&EngineKind::Postgres).unwrap();
    let admin = Conn {
        host: "127.0.0.1".into(),
        port: Some(pg.port),
        user: Some("postgres".into()),
        password: Some(Secret::new("admin-secret")),
    };
    let cancel = Cancel::new();
    for (i, name) in HOSTILE.iter().enumerate() {
        let ident = format!("\"{}\"", name.replace('"', "\"\""));
        pg.psql("postgres", &format!("CREATE DATABASE {ident} OWNER app"));
        pg.psql(name, &format!("SET ROLE app; CREATE TABLE only_in_{i} (x int); INSERT INTO only_in_{i} VALUES ({i})"));
        let db = database(&format!("127.0.0.1:{}/placeholder", pg.port), name, "app", APP_PASSWORD);
        let mut out = Vec::new();
        engine.dump(&db, &mut out, &cancel).unwrap_or_else(|e| panic!("dump of {name}: {e:#}"));
        let text = String::from_utf8(out).unwrap();
        assert!(text.contains(&format!("CREATE TABLE public.only_in_{i}")), "{name}: the dump is of another database");
        assert!(!text.contains("CREATE TABLE public.customers"), "{name}: the dump is of app1");
        // SQL hooks reach the same database.
        let seen = engine.execute_sql(&db, "SELECT current_database()", Duration::from_secs(10), &cancel).unwrap();
        assert_eq!(seen.trim(), *name);
        // Restore under another hostile name, beside it and swapped in.
        let copy = format!("{name} copy");
        let req = request(&copy, admin.clone(), Placement::Swap { keep_previous: false });
        let report = restore_into(engine, &req, &mut text.as_bytes(), &cancel)
            .unwrap_or_else(|e| panic!("restore into {copy}: {e:#}"));
        assert_eq!(report.counts.rows, 1, "{copy}: {report:?}");
        assert_eq!(pg.psql(&copy, &format!("SELECT x FROM only_in_{i}")), i.to_string());
        // Verify in a throwaway server.
        let opts = VerifyOptions {
            server: ServerOptions {
                work_dir: fx.verify_dir(),
                start_timeout: Duration::from_secs(60),
                settings: vec![],
            },
            schemas: None,
            jobs: 4,
            server_major: None,
        };
        let sql = Box::new(BufReader::new(text.as_bytes()));
        let verified = verify_in(engine, &Default::default(), name, sql, &opts, &cancel).unwrap();
        assert_eq!((verified.tables, verified.restore.counts.rows), (1, 1), "{name}");
    }
}

/// The issue's reproduction: `host/--schema-only` was dumped as another database's schema.
#[test]
fn option_like_database_through_the_binary() {
    let Some(fx) = Fixture::start(5) else { return };
    fx.pg.psql("postgres", "CREATE DATABASE \"--schema-only\" OWNER app");
    fx.pg.psql("--schema-only", "SET ROLE app; CREATE TABLE mine (x int); INSERT INTO mine VALUES (7)");
    let spec = format!("localhost:{}/--schema-only", fx.pg.port);
    let conf = fx.conf(&format!("{spec}\n"));
    let r = run(&mut fx.once(&conf));
    assert_eq!(r.code, 0, "{}", r.all());
    let sql = gunzip(&fx.newest("localhost---schema-only"));
    assert!(sql.contains("COPY public.mine (x) FROM stdin;\n7\n"), "{}", &sql[..sql.len().min(2000)]);
    assert!(!sql.contains("customers"));
    let r =
        run(fx.cmd(&conf).args(["-r", &format!("localhost:{}/-x", fx.pg.port), "-f", "localhost---schema-only", "-s"]));
    assert_eq!(r.code, 0, "{}", r.all());
    assert_eq!(fx.pg.psql("-x", "SELECT x FROM mine"), "7");
}

#[test]
fn mariadb_tools_take_every_name_as_a_name() {
    let Some(maria) = MariaDbServer::start() else { return };
    let engines = Engines::new(EngineOptions { pg_bin_dirs: vec![], connect_timeout_secs: 10, ..Default::default() });
    let engine = engines.get(&EngineKind::MariaDb).unwrap();
    let admin = Conn {
        host: "127.0.0.1".into(),
        port: Some(maria.port),
        user: Some("admin".into()),
        password: Some(Secret::new(ADMIN_PASSWORD)),
    };
    let cancel = Cancel::new();
    maria.sql("", "CREATE DATABASE other; CREATE TABLE other.decoy (x INT)");
    for (i, name) in ["--all-databases", "-x we'ird=ü", "a b`c"].iter().enumerate() {
        let ident = format!("`{}`", name.replace('`', "``"));
        maria.sql("", &format!("CREATE DATABASE {ident}; CREATE TABLE {ident}.only_in_{i} (x INT); INSERT INTO {ident}.only_in_{i} VALUES ({i})"));
        let db = database(&format!("mariadb=127.0.0.1:{}/placeholder", maria.port), name, "admin", ADMIN_PASSWORD);
        let mut out = Vec::new();
        engine.dump(&db, &mut out, &cancel).unwrap_or_else(|e| panic!("dump of {name}: {e:#}"));
        let text = String::from_utf8(out).unwrap();
        assert!(text.contains(&format!("CREATE TABLE `only_in_{i}`")), "{name}: {}", &text[..text.len().min(1500)]);
        assert!(!text.contains("decoy"), "{name}: dumped other databases too");
        let seen = engine.execute_sql(&db, "SELECT DATABASE()", Duration::from_secs(10), &cancel).unwrap();
        assert_eq!(seen.trim(), *name);
        let copy = format!("{name} copy");
        let req = request(&copy, admin.clone(), Placement::InPlace);
        let report = restore_into(engine, &req, &mut text.as_bytes(), &cancel)
            .unwrap_or_else(|e| panic!("restore into {copy}: {e:#}"));
        assert_eq!(report.counts.rows, 1, "{copy}: {report:?}");
        let copy_ident = format!("`{}`", copy.replace('`', "``"));
        assert_eq!(maria.sql("", &format!("SELECT x FROM {copy_ident}.only_in_{i}")), i.to_string());
    }
}
