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
    for file in files {
        let settings =
            Settings::load(Env::default(), Some(&file)).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
        assert!(settings.conf_found, "{}", file.display());
        assert!(!settings.databases.is_empty(), "{} has no database", file.display());
    }
}
