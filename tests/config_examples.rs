//! Every example in `config/` parses and validates (examples cannot rot).

use std::path::Path;

use backup_container::config::{Env, Settings};

/// `config/backup.conf` and every `config/examples/*.conf` load without error.
#[test]
fn example_configs_parse() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("config");
    let mut files = vec![root.join("backup.conf")];
    if let Ok(entries) = std::fs::read_dir(root.join("examples")) {
        files.extend(entries.flatten().map(|e| e.path()).filter(|p| p.extension().is_some_and(|e| e == "conf")));
    }
    let dir = tempfile::tempdir().unwrap();
    let no_toml = dir.path().join("none.toml").display().to_string();
    for file in files {
        let settings = Settings::load(Env::from_pairs([("BACKUP_TOML", no_toml.as_str())]), Some(&file))
            .unwrap_or_else(|e| panic!("{}: {e}", file.display()));
        assert!(settings.conf_found, "{}", file.display());
        assert!(!settings.databases.is_empty(), "{} has no database", file.display());
    }
}

/// `config/backup.toml` and every `config/examples/*.toml` load (with an empty backup.conf).
#[test]
fn example_toml_files_parse() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("config");
    let mut files = vec![root.join("backup.toml")];
    files.extend(
        std::fs::read_dir(root.join("examples"))
            .unwrap()
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|e| e == "toml")),
    );
    assert!(files.len() >= 4, "{files:?}");
    let dir = tempfile::tempdir().unwrap();
    // Secret files are read at load: point the examples' /run/secrets/ paths at real files.
    let secrets = dir.path().join("secrets");
    std::fs::create_dir_all(&secrets).unwrap();
    for file in files {
        let text = std::fs::read_to_string(&file).unwrap();
        for name in text.split("\"/run/secrets/").skip(1).filter_map(|rest| rest.split('"').next()) {
            std::fs::write(secrets.join(name), "example-secret\n").unwrap();
        }
        let copy = dir.path().join(file.file_name().unwrap());
        std::fs::write(&copy, text.replace("/run/secrets/", &format!("{}/", secrets.display()))).unwrap();
        let env = Env::from_pairs([("BACKUP_TOML", copy.display().to_string()), ("DATABASE_USER", "u".into())]);
        let settings = Settings::load(env, Some(&dir.path().join("backup.conf")))
            .unwrap_or_else(|e| panic!("{}: {e}", file.display()));
        assert!(settings.toml_found, "{}", file.display());
        assert!(!settings.databases.is_empty() && !settings.databases_from_env, "{}", file.display());
    }
}
