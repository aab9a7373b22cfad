//! Preparing an existing data directory (a restored base backup) for a throwaway server: the
//! source's own configuration set aside (`postgresql.conf`, `postgresql.auto.conf` and
//! `pg_hba.conf` renamed to `*.source`, kept for whoever inspects or reuses the folder) and
//! replaced by ours — no archiving, no primary, no preloaded libraries (the source's may not be
//! installed here), no hot standby (connections only once recovery is done), no logging
//! collector, the recovery settings when recovering — a pg_hba that lets in only the private
//! socket, the standby signal removed, the recovery signal written when recovering. Settings go
//! into the file, not the command line: `restore_command` holds spaces and quotes.

use std::fs;
use std::io::ErrorKind;
use std::path::Path;

use anyhow::{Context, anyhow};

use crate::engine::Recovery;

/// The source's files we set aside.
const SET_ASIDE: [&str; 3] = ["postgresql.conf", "postgresql.auto.conf", "pg_hba.conf"];

/// The data directory's major (`PG_VERSION`).
///
/// # Errors
/// Not a PostgreSQL data directory.
pub fn major(data: &Path) -> anyhow::Result<u32> {
    let text = fs::read_to_string(data.join("PG_VERSION"))
        .with_context(|| format!("{} is not a PostgreSQL data directory (no PG_VERSION)", data.display()))?;
    text.trim().parse().map_err(|_| anyhow!("{}: unexpected PG_VERSION {:?}", data.display(), text.trim()))
}

/// Prepares `data` (see the module doc).
///
/// # Errors
/// A file cannot be renamed, written or removed.
pub fn prepare(data: &Path, recovery: Option<&Recovery>) -> anyhow::Result<()> {
    for name in SET_ASIDE {
        let from = data.join(name);
        match fs::rename(&from, data.join(format!("{name}.source"))) {
            Err(e) if e.kind() != ErrorKind::NotFound => {
                return Err(e).with_context(|| format!("setting {} aside", from.display()));
            }
            _ => {}
        }
    }
    let write = |name: &str, text: &str| {
        fs::write(data.join(name), text).with_context(|| format!("writing {}", data.join(name).display()))
    };
    write("postgresql.conf", &settings(recovery))?;
    write("postgresql.auto.conf", "# Set aside: postgresql.auto.conf.source.\n")?;
    write("pg_hba.conf", "# A throwaway server: its private socket only.\nlocal all all trust\n")?;
    if !data.join("pg_ident.conf").exists() {
        write("pg_ident.conf", "")?;
    }
    for name in ["standby.signal", "recovery.signal", "postmaster.pid"] {
        match fs::remove_file(data.join(name)) {
            Err(e) if e.kind() != ErrorKind::NotFound => {
                return Err(e).with_context(|| format!("removing {}", data.join(name).display()));
            }
            _ => {}
        }
    }
    if recovery.is_some() {
        write("recovery.signal", "")?;
    }
    Ok(())
}

/// Puts the source's configuration back (`*.source`, over ours) in a data directory whose
/// server has stopped: what is left is the source's cluster, recovered and promoted.
///
/// # Errors
/// A file cannot be renamed or removed.
pub fn restore_source(data: &Path) -> anyhow::Result<()> {
    for name in SET_ASIDE {
        let kept = data.join(format!("{name}.source"));
        if kept.exists() {
            fs::rename(&kept, data.join(name)).with_context(|| format!("putting {} back", kept.display()))?;
        } else {
            // None in the source's data directory (Debian keeps its configuration in /etc): no
            // setting of ours stays behind.
            let note =
                format!("# The source had no {name} in its data directory (its configuration lives elsewhere).\n");
            fs::write(data.join(name), note).with_context(|| format!("writing {}", data.join(name).display()))?;
        }
    }
    for name in ["recovery.signal", "standby.signal"] {
        match fs::remove_file(data.join(name)) {
            Err(e) if e.kind() != ErrorKind::NotFound => {
                return Err(e).with_context(|| format!("removing {}", data.join(name).display()));
            }
            _ => {}
        }
    }
    Ok(())
}

/// Moves `from` to `to` (missing or empty): a rename on the same volume, else a copy of every
/// file, folder and link with its permissions, fsynced, and the original removed; a failed
/// copy removes what it wrote.
///
/// # Errors
/// Reading, writing or syncing failed.
pub fn move_tree(from: &Path, to: &Path) -> anyhow::Result<()> {
    if to.exists() {
        fs::remove_dir(to).with_context(|| format!("{} is not empty", to.display()))?;
    }
    if fs::rename(from, to).is_ok() {
        return Ok(());
    }
    let copied = (|| -> anyhow::Result<()> {
        for entry in walkdir::WalkDir::new(from) {
            let entry = entry?;
            let target = to.join(entry.path().strip_prefix(from)?);
            let kind = entry.file_type();
            if kind.is_dir() {
                fs::create_dir_all(&target)?;
                fs::set_permissions(&target, entry.metadata()?.permissions())?;
            } else if kind.is_symlink() {
                std::os::unix::fs::symlink(fs::read_link(entry.path())?, &target)?;
            } else {
                fs::copy(entry.path(), &target)?;
                fs::File::open(&target)?.sync_all()?;
            }
        }
        Ok(())
    })();
    if let Err(e) = copied {
        let _ = fs::remove_dir_all(to);
        return Err(e.context(format!("copying {} to {}", from.display(), to.display())));
    }
    fs::remove_dir_all(from).with_context(|| format!("removing {}", from.display()))
}

/// Our `postgresql.conf`.
fn settings(recovery: Option<&Recovery>) -> String {
    let mut lines = vec![
        "# Written by backup-container for a throwaway server; the source's settings are in".to_string(),
        "# postgresql.conf.source and postgresql.auto.conf.source.".to_string(),
        "archive_mode = off".into(),
        "primary_conninfo = ''".into(),
        "primary_slot_name = ''".into(),
        "shared_preload_libraries = ''".into(),
        "hot_standby = off".into(),
        "logging_collector = off".into(),
    ];
    if let Some(r) = recovery {
        lines.push(format!("restore_command = {}", quote(&r.restore_command)));
        if let Some(t) = &r.target_time {
            lines.push(format!("recovery_target_time = {}", quote(t)));
            lines.push("recovery_target_action = 'promote'".into());
        }
    }
    lines.join("\n") + "\n"
}

/// A configuration file string: single-quoted, `'` doubled and `\` escaped.
fn quote(value: &str) -> String {
    format!("'{}'", value.replace('\\', "\\\\").replace('\'', "''"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_sources_settings_are_set_aside_and_ours_written() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path();
        fs::write(data.join("PG_VERSION"), "16\n").unwrap();
        fs::write(data.join("postgresql.conf"), "shared_preload_libraries = 'timescaledb'\n").unwrap();
        fs::write(data.join("postgresql.auto.conf"), "primary_conninfo = 'host=db'\n").unwrap();
        fs::write(data.join("standby.signal"), "").unwrap();
        let recovery = Recovery {
            restore_command: "/bin/backup-container --wal-fetch '%f' \"%p\" C:\\x".into(),
            target_time: Some("2026-12-05 10:31:00+00".into()),
        };
        prepare(data, Some(&recovery)).unwrap();
        assert_eq!(major(data).unwrap(), 16);
        let conf = fs::read_to_string(data.join("postgresql.conf")).unwrap();
        assert!(conf.contains("shared_preload_libraries = ''") && conf.contains("hot_standby = off"), "{conf}");
        assert!(conf.contains("restore_command = '/bin/backup-container --wal-fetch ''%f'' \"%p\" C:\\\\x'"), "{conf}");
        assert!(conf.contains("recovery_target_time = '2026-12-05 10:31:00+00'\nrecovery_target_action = 'promote'"));
        assert!(fs::read_to_string(data.join("postgresql.conf.source")).unwrap().contains("timescaledb"));
        assert!(fs::read_to_string(data.join("postgresql.auto.conf.source")).unwrap().contains("host=db"));
        assert!(!fs::read_to_string(data.join("postgresql.auto.conf")).unwrap().contains("primary_conninfo"));
        assert!(!data.join("standby.signal").exists() && data.join("recovery.signal").exists());
        assert_eq!(fs::read_to_string(data.join("pg_hba.conf")).unwrap().lines().last(), Some("local all all trust"));
        // Without recovery: no signal, no recovery settings.
        let dir = tempfile::tempdir().unwrap();
        prepare(dir.path(), None).unwrap();
        assert!(!dir.path().join("recovery.signal").exists());
        assert!(!fs::read_to_string(dir.path().join("postgresql.conf")).unwrap().contains("restore_command"));
        assert!(major(dir.path()).is_err(), "no PG_VERSION");
    }

    #[test]
    fn the_sources_settings_come_back_and_the_folder_moves() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        fs::create_dir(&data).unwrap();
        fs::write(data.join("postgresql.conf"), "port = 5433\n").unwrap();
        fs::write(data.join("pg_hba.conf"), "host all all 10.0.0.0/8 scram-sha-256\n").unwrap();
        fs::write(data.join("PG_VERSION"), "15\n").unwrap();
        let recovery = Recovery { restore_command: "false".into(), target_time: Some("2026-12-05 10:31:00+00".into()) };
        prepare(&data, Some(&recovery)).unwrap();
        restore_source(&data).unwrap();
        assert_eq!(fs::read_to_string(data.join("postgresql.conf")).unwrap(), "port = 5433\n");
        assert!(fs::read_to_string(data.join("pg_hba.conf")).unwrap().contains("10.0.0.0/8"));
        // The source had no auto file: a note, none of our settings.
        assert!(fs::read_to_string(data.join("postgresql.auto.conf")).unwrap().starts_with("# The source had no"));
        assert!(!data.join("recovery.signal").exists() && !data.join("postgresql.conf.source").exists());
        // Moved into an empty folder; refused into a non-empty one.
        let to = dir.path().join("to");
        fs::create_dir(&to).unwrap();
        move_tree(&data, &to).unwrap();
        assert!(to.join("PG_VERSION").exists() && !data.exists());
        let busy = dir.path().join("busy");
        fs::create_dir(&busy).unwrap();
        fs::write(busy.join("x"), "").unwrap();
        assert!(format!("{:#}", move_tree(&to, &busy).unwrap_err()).contains("is not empty"));
    }
}
