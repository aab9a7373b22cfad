//! "Error or value, never a panic": property tests over every parser of user input and over
//! the whole settings loader with random values for every variable.

use proptest::prelude::*;

use super::{Env, Settings, backup_conf, env, toml_file};
use crate::model::schedule::parse_duration;
use crate::model::spec::DatabaseSpec;
use crate::model::timezone::Zone;

/// Values that broke things before, and their neighbours.
const NASTY: &[&str] = &[
    "",
    " ",
    "-3",
    "-5",
    "0",
    "1",
    "-1",
    "true",
    "ture",
    "TRUE",
    "yes",
    "off",
    "inf",
    "-inf",
    "NaN",
    "1e309",
    "18446744073709551615s",
    "18446744073709551616",
    "100000000000d",
    "9223372036854775807",
    "1d",
    "1h 30m",
    "0s",
    "America/Vancouver",
    "Amercia/Vancouver",
    "Mars/Olympus",
    ":UTC",
    "json",
    "xml",
    "loud",
    "debug",
    "ß≈ç√",
    "\u{0}",
    "a=b",
    "0.0.0.0:8080",
    "[::1]:99999",
    "postgres=h:0/d",
    "h:/d",
    "gzip",
    "zstd",
    "99",
];

fn value() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => proptest::sample::select(NASTY).prop_map(str::to_string),
        1 => ".{0,24}",
        1 => "[0-9]{1,25}[smhd]?",
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(400))]

    #[test]
    fn parsers_return_an_error_or_a_value(text in value()) {
        let _ = parse_duration(&text);
        let _ = Zone::parse(Some(&text));
        let _ = text.parse::<DatabaseSpec>();
        let _ = backup_conf::parse("backup.conf", &text);
        let _ = backup_conf::parse("backup.conf", &format!("{text} * * * * default ./backup.sh -s\n{text}/db\n"));
        let _ = toml_file::parse("backup.toml", &format!("[backup]\nperiod = \"{}\"\n", text.replace(['"', '\\'], "")));
        let _ = crate::stream::compress::Compression::parse(Some(&text), Some(&text), Some(&text));
    }

    #[test]
    fn the_settings_loader_never_panics(values in proptest::collection::vec(value(), env::KNOWN.len())) {
        let dir = tempfile::tempdir().unwrap();
        let mut pairs: Vec<(String, String)> =
            env::KNOWN.iter().zip(values).map(|(k, v)| (k.to_string(), v)).collect();
        // Keep the file system out of it: no backup.conf, no backup.toml to find.
        pairs.retain(|(k, _)| !matches!(k.as_str(), "BACKUP_CONF" | "BACKUP_TOML"));
        pairs.push(("BACKUP_CONF".into(), dir.path().join("backup.conf").display().to_string()));
        if let Ok(settings) = Settings::load(Env::from_pairs(pairs), None) {
            let now = chrono::Utc::now();
            let _ = settings.backup_interval(now);
            let _ = settings.verify_max_age(now);
            let _ = settings.zone.description(now);
        }
    }
}

/// Each value the issue reproduced is now a configuration error naming its variable.
#[test]
fn values_accepted_silently_before_are_errors() {
    for (var, value) in [
        ("TZ", "Amercia/Vancouver"),
        ("TZ", "Mars/Olympus"),
        ("DATABASE_CONNECT_TIMEOUT", "-5"),
        ("LOG_FORMAT", "xml"),
        ("BACKUP_LOG_LEVEL", "loud"),
        ("HEALTH_FAIL_WHEN_STALE", "ture"),
        ("NUM_BACKUPS", "-3"),
        ("BACKUP_PERIOD", "100000000000d"),
        ("BACKUP_PERIOD", "18446744073709551615s"),
        ("STALE_FACTOR", "inf"),
        ("S3_PRUNE_BACKUPS", "maybe"),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let conf = dir.path().join("backup.conf").display().to_string();
        let env = Env::from_pairs([
            ("BACKUP_CONF", conf.as_str()),
            (var, value),
            ("S3_ENDPOINT", "http://127.0.0.1:1"),
            ("S3_BUCKET", "b"),
            ("S3_USER", "u"),
        ]);
        let errors = Settings::load(env, None).expect_err(&format!("{var}={value} was accepted")).0.join("\n");
        assert!(errors.contains(var), "{var}={value}: {errors}");
    }
    // Upstream's meanings are kept: a negative WEEKLY_BACKUPS selects the daily strategy.
    let dir = tempfile::tempdir().unwrap();
    let conf = dir.path().join("backup.conf").display().to_string();
    let s = Settings::load(Env::from_pairs([("BACKUP_CONF", conf.as_str()), ("WEEKLY_BACKUPS", "-1")]), None).unwrap();
    assert_eq!(s.policy.strategy, crate::catalog::retention::Strategy::Daily);
    let e =
        Settings::load(Env::from_pairs([("BACKUP_CONF", conf.as_str()), ("LOG_FORMAT", "jsno")]), None).unwrap_err();
    assert!(e.0.join("").contains("did you mean json?"), "{e}");
}

/// docs/CONFIG.md names every variable the loader reads.
#[test]
fn every_variable_is_documented() {
    let docs = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/CONFIG.md")).unwrap();
    let missing: Vec<&&str> = env::KNOWN.iter().filter(|v| !docs.contains(&format!("`{v}`"))).collect();
    assert!(missing.is_empty(), "not in docs/CONFIG.md: {missing:?}");
}
