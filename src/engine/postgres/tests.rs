//! Command builders and small pure helpers of the PostgreSQL engine.

use super::bin::parse_major;
use super::*;
use crate::engine::DumpOptions;
use crate::model::database::Credentials;
use crate::model::secret::Secret;

fn db(spec: &str, user: Option<&str>, password: Option<&str>) -> Database {
    Database {
        spec: spec.parse().unwrap(),
        credentials: Credentials {
            user: user.map(str::to_string),
            user_source: "TEST_USER".into(),
            password: password.map(|p| crate::model::database::PasswordSource::Value(Secret::new(p))),
            password_source: password.map(|_| "TEST_PASSWORD".into()),
        },
        options: Default::default(),
    }
}

/// The program's file name (its folder depends on the machine, see `bin`) and the arguments.
fn argv(cmd: &Command) -> Vec<String> {
    let program = std::path::Path::new(cmd.get_program()).file_name().unwrap_or_default();
    std::iter::once(program).chain(cmd.get_args()).map(|a| a.to_string_lossy().into_owned()).collect()
}

fn env(cmd: &Command, name: &str) -> Option<Option<String>> {
    cmd.get_envs().find(|(k, _)| *k == name).map(|(_, v)| v.map(|v| v.to_string_lossy().into_owned()))
}

fn engine(bin: Option<&str>) -> PostgresEngine {
    PostgresEngine::new(EngineOptions {
        pg_bin_dirs: bin.map(PathBuf::from).into_iter().collect(),
        connect_timeout_secs: 10,
        ..Default::default()
    })
}

#[test]
fn commands_connect_through_one_quoted_conninfo_and_keep_the_password_out_of_argv() {
    let engine = engine(None);
    let d = db("postgres=db.example.com:5433/app", Some("appuser"), Some("s3cret pw"));
    let info = "host='db.example.com' port=5433 user='appuser' dbname='app'";
    let dump = engine.dump_command(&d, &d.conn().unwrap());
    assert_eq!(argv(&dump), ["pg_dump", "-w", "-d", info, "-Fp"]);
    let roles = engine.roles_command(&d, &d.conn().unwrap());
    assert_eq!(argv(&roles), ["pg_dumpall", "-w", "-d", info, "--roles-only", "--no-role-passwords"]);
    for cmd in [&dump, &roles] {
        assert!(!argv(cmd).iter().any(|a| a.contains("s3cret")));
        assert_eq!(env(cmd, "PGPASSWORD"), Some(Some("s3cret pw".into())));
        assert_eq!(env(cmd, "PGCONNECT_TIMEOUT"), Some(Some("10".into())));
        assert_eq!(env(cmd, "PGDATABASE"), Some(None), "an inherited PGDATABASE cannot redirect the dump");
    }
}

/// Names that look like options or connection strings stay names: only ever inside the
/// quoted `dbname='...'` value, with quotes and backslashes escaped as libpq reads them.
#[test]
fn option_like_and_quoted_names_are_never_options() {
    let conn = |user: &str| Conn { host: "db".into(), port: None, user: Some(user.into()), password: None };
    for (name, quoted) in [
        ("--schema-only", "'--schema-only'"),
        ("a=b", "'a=b'"),
        ("with space", "'with space'"),
        ("it's", r"'it\'s'"),
        (r"back\slash", r"'back\\slash'"),
        ("données-ü", "'données-ü'"),
        ("postgresql://x", "'postgresql://x'"),
    ] {
        assert_eq!(conninfo(&conn("-U"), name), format!("host='db' user='-U' dbname={quoted}"));
        let mut d = db("db/placeholder", Some("u"), None);
        d.spec.database = name.to_string();
        let args = argv(&engine(None).dump_command(&d, &d.conn().unwrap()));
        assert!(!args.iter().any(|a| a == name), "{name} passed bare: {args:?}");
    }
}

#[test]
fn dump_options_exclude_tables_and_add_arguments() {
    let mut d = db("db/app", Some("u"), None);
    d.options = DumpOptions {
        extra_args: vec!["--no-owner".into()],
        exclude_tables: vec!["scratch.*".into()],
        exclude_table_data: vec!["public.audit_log".into()],
    };
    assert_eq!(
        argv(&engine(None).dump_command(&d, &d.conn().unwrap())),
        [
            "pg_dump",
            "-w",
            "-d",
            "host='db' user='u' dbname='app'",
            "-Fp",
            "--exclude-table=scratch.*",
            "--exclude-table-data=public.audit_log",
            "--no-owner",
        ]
    );
}

#[test]
fn no_password_removes_an_inherited_pgpassword() {
    let engine = engine(Some("/usr/lib/postgresql/16/bin"));
    let d = db("db/app", None, None);
    let dump = engine.dump_command(&d, &d.conn().unwrap());
    assert_eq!(dump.get_program(), "/usr/lib/postgresql/16/bin/pg_dump", "PG_BIN_DIR is used as is");
    assert_eq!(argv(&dump), ["pg_dump", "-w", "-d", "host='db' dbname='app'", "-Fp"]);
    assert_eq!(env(&dump, "PGPASSWORD"), Some(None), "explicitly removed");
}

#[test]
fn version_parsing() {
    assert_eq!(parse_major("pg_dump (PostgreSQL) 15.18 (Debian 15.18-0+deb12u1)\n"), Some(15));
    assert_eq!(parse_major("pg_dump (PostgreSQL) 17beta1"), Some(17));
    assert_eq!(parse_major("pg_dump (PostgreSQL) 9.6.24"), Some(9));
    assert_eq!(parse_major("nonsense"), None);
}

#[test]
fn quoting() {
    assert_eq!(quote_ident("my\"db"), "\"my\"\"db\"");
    assert_eq!(quote_literal("it's"), "'it''s'");
}
