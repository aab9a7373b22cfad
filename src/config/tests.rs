//! Settings loading: defaults, env fallback, credentials, and error reporting.

use super::*;

fn load_with(conf: Option<&str>, pairs: &[(&str, &str)]) -> Result<Settings, ConfigErrors> {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("backup.conf");
    if let Some(text) = conf {
        std::fs::write(&path, text).unwrap();
    }
    Settings::load(Env::from_pairs(pairs.iter().copied()), Some(&path))
}

#[test]
fn upstream_defaults() {
    let s = load_with(None, &[]).unwrap();
    assert_eq!(s.policy, Policy::from_counts("rolling", 31, 6, 4, 1).unwrap());
    assert_eq!(s.backup_dir, PathBuf::from("/backups/"));
    assert_eq!(s.backup_period, Duration::from_secs(86400));
    assert_eq!(s.server_timeout, Duration::from_secs(120));
    assert!(!s.conf_found);
    assert!(s.databases_from_env);
    let specs: Vec<String> = s.databases.iter().map(|d| d.spec.to_string()).collect();
    assert_eq!(specs, ["postgresql:5432/my_postgres_db"]);
}

#[test]
fn env_fallback_uses_upstream_variables_when_the_file_has_no_specs() {
    let conf = "# only comments and a schedule\n1 1 * * * default ./backup.sh -s\n";
    let s = load_with(
        Some(conf),
        &[("DATABASE_SERVICE_NAME", "patroni-master"), ("POSTGRESQL_PORT_NUM", "5433"), ("POSTGRESQL_DATABASE", "app")],
    )
    .unwrap();
    assert!(s.conf_found && s.databases_from_env);
    assert_eq!(s.databases[0].spec.to_string(), "patroni-master:5433/app");
    assert_eq!(s.cron.len(), 1);
}

#[test]
fn credentials_lookup_order() {
    let conf = "postgres=wallet-db:5432/tob\ndb.example.com/app\nplain/x\n";
    let s = load_with(
        Some(conf),
        &[
            ("WALLET_DB_USER", "wallet"),
            ("WALLET_DB_PASSWORD", "pw1"),
            ("DB_EXAMPLE_COM_USER", "fq"),
            ("DATABASE_USER", ""),
            ("POSTGRESQL_USER", "pguser"),
            ("POSTGRESQL_PASSWORD", "pgpw"),
        ],
    )
    .unwrap();
    let c: Vec<(Option<String>, String, Option<String>)> = s
        .databases
        .iter()
        .map(|d| {
            (
                d.credentials.user.clone(),
                d.credentials.user_source.clone(),
                d.credentials.password.as_ref().map(|p| p.read().unwrap().expose().to_string()),
            )
        })
        .collect();
    assert_eq!(c[0], (Some("wallet".into()), "WALLET_DB_USER".into(), Some("pw1".into())));
    assert_eq!(c[1], (Some("fq".into()), "DB_EXAMPLE_COM_USER".into(), Some("pgpw".into())));
    assert_eq!(
        c[2],
        (Some("pguser".into()), "POSTGRESQL_USER".into(), Some("pgpw".into())),
        "empty DATABASE_USER falls through"
    );
}

#[test]
fn missing_user_is_reported_before_a_backup() {
    let s = load_with(Some("db/app\n"), &[]).unwrap();
    let err = s.check_backup_ready().unwrap_err().to_string();
    assert!(err.contains("database db/app: no user name: set one of DB_USER, DATABASE_USER, POSTGRESQL_USER"), "{err}");
}

#[test]
fn backup_dir_with_or_without_trailing_slash() {
    let a = load_with(None, &[("BACKUP_DIR", "/data/backups/")]).unwrap();
    let b = load_with(None, &[("BACKUP_DIR", "/data/backups")]).unwrap();
    assert_eq!(a.backup_dir.join("x"), b.backup_dir.join("x"));
    let c = load_with(None, &[("BACKUP_DIR", "/a"), ("ROOT_BACKUP_DIR", "/b/")]).unwrap();
    assert_eq!(c.backup_dir, PathBuf::from("/b/"));
}

#[test]
fn all_problems_are_reported_together() {
    let conf = "db/app\nbogus line here\n";
    let err =
        load_with(Some(conf), &[("NUM_BACKUPS", "ten"), ("BACKUP_STRATEGY", "hourly"), ("BACKUP_PERIOD", "soon")])
            .unwrap_err();
    let text = err.to_string();
    assert_eq!(err.0.len(), 4, "{text}");
    assert!(text.contains("environment: NUM_BACKUPS=\"ten\" is not a whole number"), "{text}");
    assert!(text.contains("Unknown backup strategy \"hourly\""), "{text}");
    assert!(text.contains("BACKUP_PERIOD"), "{text}");
    assert!(text.contains("backup.conf:2: \"bogus line here\" is neither"), "{text}");
}

#[test]
fn colliding_databases_are_an_error() {
    let err = load_with(Some("db/app\npostgres=db:5433/app\n"), &[]).unwrap_err().to_string();
    assert!(
        err.contains("backup.conf:2: database postgres=db:5433/app has the same host and database name as"),
        "{err}"
    );
    assert!(err.contains("backup.conf:1"), "{err}");
}

#[test]
fn foreign_and_unavailable_engines_are_skipped_not_fatal() {
    let s = load_with(Some("mongo=m/app\nmssql=s/app\npostgres=p/app\n"), &[]).unwrap();
    assert_eq!(s.databases.len(), 1);
    assert_eq!(s.skipped.len(), 2);
    assert!(!s.databases_from_env, "skipped specs still count as the file's specs");
}

#[test]
fn secrets_do_not_show_in_debug_output() {
    let s = load_with(
        None,
        &[("DATABASE_USER", "u"), ("DATABASE_PASSWORD", "topsecret"), ("WEBHOOK_URL", "https://x/hooks/tok3n")],
    )
    .unwrap();
    let debug = format!("{s:?}");
    assert!(!debug.contains("topsecret") && !debug.contains("tok3n"), "{debug}");
}

#[test]
fn precedence_defaults_toml_conf_env() {
    let dir = tempfile::tempdir().unwrap();
    let toml = dir.path().join("backup.toml");
    std::fs::write(&toml, "[retention]\ndaily = 10\nweekly = 9\n[[database]]\nspec = \"db/fromtoml\"\n").unwrap();
    let conf = dir.path().join("backup.conf");
    std::fs::write(&conf, "db/fromconf\n").unwrap();
    let s = Settings::load(Env::from_pairs([("WEEKLY_BACKUPS", "2")]), Some(&conf)).unwrap();
    assert_eq!(s.policy.daily, 10, "backup.toml over the default");
    assert_eq!(s.policy.weekly, 2, "environment over backup.toml");
    assert_eq!(s.policy.monthly, 1, "default");
    let specs: Vec<String> = s.databases.iter().map(|d| d.spec.to_string()).collect();
    assert_eq!(specs, ["db/fromtoml", "db/fromconf"], "databases from both files");
    assert_eq!(s.sources["DAILY_BACKUPS"], format!("{}:2 [retention] daily", toml.display()));
    assert_eq!(s.sources["WEEKLY_BACKUPS"], "environment");
    std::fs::write(&conf, "db/fromtoml\n").unwrap();
    let err = Settings::load(Env::default(), Some(&conf)).unwrap_err().to_string();
    assert!(err.contains("has the same host and database name"), "{err}");
}

#[test]
fn secrets_from_files() {
    let dir = tempfile::tempdir().unwrap();
    let pw = dir.path().join("pw");
    std::fs::write(&pw, "from-file\n").unwrap();
    let s = load_with(
        Some("db/app\n"),
        &[
            ("DATABASE_USER", "u"),
            ("DATABASE_PASSWORD_FILE", pw.to_str().unwrap()),
            ("WEBHOOK_URL_FILE", pw.to_str().unwrap()),
        ],
    )
    .unwrap();
    assert_eq!(s.databases[0].credentials.password.as_ref().unwrap().read().unwrap().expose(), "from-file");
    assert_eq!(s.databases[0].credentials.password_source.as_deref(), Some("DATABASE_PASSWORD_FILE"));
    assert_eq!(s.notify.webhook_url.as_ref().unwrap().expose(), "from-file");
    let err = load_with(None, &[("WEBHOOK_URL_FILE", "/nonexistent/secret")]).unwrap_err().to_string();
    assert!(err.contains("cannot read /nonexistent/secret"), "{err}");
}

#[test]
fn toml_databases_carry_credentials_and_options() {
    let dir = tempfile::tempdir().unwrap();
    let pw = dir.path().join("pw");
    std::fs::write(&pw, "toml-pw").unwrap();
    let toml = dir.path().join("backup.toml");
    std::fs::write(
        &toml,
        format!("[[database]]\nspec = \"db/app\"\nuser-env = \"MY_USER\"\npassword-file = \"{}\"\nexclude-tables = [\"t\"]\n", pw.display()),
    )
    .unwrap();
    let s = Settings::load(Env::from_pairs([("MY_USER", "custom")]), Some(&dir.path().join("backup.conf"))).unwrap();
    let d = &s.databases[0];
    assert_eq!(d.credentials.user.as_deref(), Some("custom"));
    assert_eq!(d.credentials.password.as_ref().unwrap().read().unwrap().expose(), "toml-pw");
    assert_eq!(d.options.exclude_tables, ["t"]);
}

/// A password file is read again at each use (a rotated Kubernetes secret is picked up); an
/// unreadable one is a configuration error at load, not a silent fallback to the next
/// variable; the variables themselves are read once, at load.
#[test]
fn password_files_are_checked_at_load_and_read_at_use() {
    let dir = tempfile::tempdir().unwrap();
    let pw = dir.path().join("pw");
    std::fs::write(&pw, "first\n").unwrap();
    let s = load_with(
        Some("db/app\n"),
        &[("DATABASE_USER", "u"), ("DB_PASSWORD_FILE", pw.to_str().unwrap()), ("DATABASE_PASSWORD", "fallback")],
    )
    .unwrap();
    let db = &s.databases[0];
    assert_eq!(db.conn().unwrap().password.unwrap().expose(), "first");
    std::fs::write(&pw, "rotated\n").unwrap();
    assert_eq!(db.conn().unwrap().password.unwrap().expose(), "rotated");
    std::fs::remove_file(&pw).unwrap();
    let e = db.conn().unwrap_err().to_string();
    assert!(e.contains("cannot read the password file") && e.contains("pw"), "{e}");

    let missing = dir.path().join("missing");
    let err = load_with(
        Some("db/app\n"),
        &[("DATABASE_USER", "u"), ("DB_PASSWORD_FILE", missing.to_str().unwrap()), ("DATABASE_PASSWORD", "fallback")],
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("DB_PASSWORD_FILE") && err.contains("missing"), "{err}");
}

#[test]
fn the_spill_budget_is_read_in_mib_and_checked() {
    let bytes = |pairs: &[(&str, &str)]| load_with(None, pairs).map(|s| s.engines.options().restore_spill_bytes);
    assert_eq!(bytes(&[]).unwrap(), 512 << 20);
    assert_eq!(bytes(&[("RESTORE_SPILL_MB", "0")]).unwrap(), 0);
    assert_eq!(bytes(&[("RESTORE_SPILL_MB", "64")]).unwrap(), 64 << 20);
    for bad in ["-1", "lots", "2000000"] {
        let err = bytes(&[("RESTORE_SPILL_MB", bad)]).unwrap_err().to_string();
        assert!(err.contains("RESTORE_SPILL_MB"), "{bad}: {err}");
    }
}
