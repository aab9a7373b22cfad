//! Command-line behaviour that needs no database: help, config errors, `-c` redaction,
//! unavailable modes, the run lock.

use std::fs;

use crate::harness::{bin, run};

/// `-h` prints the flag list and exits 0 (upstream exited 1, then 0 through its trap).
#[test]
fn help_exits_zero_and_lists_every_flag() {
    let r = run(bin().arg("-h"));
    assert_eq!(r.code, 0, "{}", r.all());
    for flag in ["-1", "-s", "-l", "-c", "-r", "-v", "-f", "-p", "-a", "-I", "-n", "-h"] {
        assert!(
            r.stdout.contains(&format!("{flag},")) || r.stdout.contains(&format!("{flag} ")),
            "{flag} missing:\n{}",
            r.stdout
        );
    }
}

/// An unknown flag is a usage error (exit 2).
#[test]
fn unknown_flag_exits_two() {
    let r = run(bin().arg("-z"));
    assert_eq!(r.code, 2, "{}", r.all());
}

/// Each broken backup.conf line is reported as `file:line: ...` and nothing runs (exit 2).
#[test]
fn config_errors_name_file_and_line() {
    let cases = [
        ("postgress=db/app\n", 1, "unknown database type \"postgress\""),
        ("db/app\n1 1 * * ./backup.sh -s\n", 2, "is neither a database spec"),
        ("# c\n\ndb/app\n61 1 * * * default ./backup.sh -s\n", 4, "invalid cron schedule"),
        ("db:70000/app\n", 1, "invalid port"),
        ("db /app\n", 1, "may not contain spaces"),
        ("db/app\ndb/app\n", 2, "same host and database name"),
    ];
    for (text, line, needle) in cases {
        let dir = tempfile::tempdir().unwrap();
        let conf = dir.path().join("backup.conf");
        fs::write(&conf, text).unwrap();
        let backups = dir.path().join("backups");
        let r = run(bin().arg("-1").env("BACKUP_CONF", &conf).env("BACKUP_DIR", &backups).env("DATABASE_USER", "u"));
        assert_eq!(r.code, 2, "{text:?}: {}", r.all());
        let expected = format!("{}:{line}: ", conf.display());
        assert!(
            r.stderr.contains(&expected) && r.stderr.contains(needle),
            "{text:?}: want {expected}…{needle}\n{}",
            r.all()
        );
        assert!(!backups.exists(), "no work may be done on a config error");
    }
}

/// A bad environment value is named (exit 2).
#[test]
fn bad_env_value_is_named() {
    let r = run(bin().arg("-1").env("NUM_BACKUPS", "ten").env("BACKUP_CONF", "/nonexistent/backup.conf"));
    assert_eq!(r.code, 2, "{}", r.all());
    assert!(r.stderr.contains("NUM_BACKUPS=\"ten\" is not a whole number"), "{}", r.all());
}

/// `-c` shows settings in upstream's order but never a password, a webhook path or FTP user info.
#[test]
fn show_config_redacts_secrets() {
    let dir = tempfile::tempdir().unwrap();
    let conf = dir.path().join("backup.conf");
    fs::write(&conf, "postgres=wallet-db:5432/tob\n1 1 * * * default ./backup.sh -s\n").unwrap();
    let r = run(bin()
        .arg("-c")
        .env("BACKUP_CONF", &conf)
        .env("WALLET_DB_USER", "wallet")
        .env("WALLET_DB_PASSWORD", "pw-wallet-123")
        .env("DATABASE_PASSWORD", "pw-fallback-456")
        .env("WEBHOOK_URL", "https://chat.example.com/hooks/SECRET-TOKEN-789")
        .env("FTP_URL", "ftp://ftpuser:ftp-pw-000@ftp.example.com/backups/")
        .env("FTP_PASSWORD", "ftp-pw-111"));
    assert_eq!(r.code, 0, "{}", r.all());
    for secret in
        ["pw-wallet-123", "pw-fallback-456", "SECRET-TOKEN-789", "hooks", "ftp-pw-000", "ftp-pw-111", "ftpuser"]
    {
        assert!(!r.stdout.contains(secret) && !r.stderr.contains(secret), "{secret} leaked:\n{}", r.all());
    }
    let order = [
        "- Run mode: cron",
        "- Backup strategy: rolling",
        "- Backups to retain:",
        "- Time Zone: America/Vancouver",
        "- Schedule:",
        "1 1 * * * default ./backup.sh -s",
        "postgres=wallet-db:5432/tob (user wallet from WALLET_DB_USER; password from WALLET_DB_PASSWORD)",
        "- FTP server: ftp://ftp.example.com",
        "- Webhook Endpoint: https://chat.example.com",
    ];
    let mut at = 0;
    for item in order {
        let pos =
            r.stdout[at..].find(item).unwrap_or_else(|| panic!("{item:?} missing or out of order:\n{}", r.stdout));
        at += pos;
    }
}

/// A second run while another holds the lock exits 1 and says who holds it.
#[test]
fn concurrent_run_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let backups = dir.path().join("backups");
    fs::create_dir_all(&backups).unwrap();
    let lock = fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(backups.join(".backup_container.lock"))
        .unwrap();
    lock.lock().unwrap();
    let r = run(bin()
        .arg("-1")
        .env("BACKUP_DIR", &backups)
        .env("BACKUP_CONF", "/nonexistent/backup.conf")
        .env("DATABASE_USER", "u"));
    assert_eq!(r.code, 1, "{}", r.all());
    assert!(r.stderr.contains("another backup-container run holds the lock"), "{}", r.all());
}

/// The image's `/backup.sh` shim runs the binary with the same arguments: same `-h` and `-c`.
#[test]
fn backup_sh_shim_gives_the_same_output() {
    let shim = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("docker/backup.sh");
    let dir = tempfile::tempdir().unwrap();
    let conf = dir.path().join("backup.conf");
    fs::write(&conf, "postgres=db:5432/app\n").unwrap();
    for args in [&["-h"][..], &["-c"]] {
        let direct = run(bin().args(args).env("BACKUP_CONF", &conf));
        let via_shim = run(std::process::Command::new("sh")
            .arg(&shim)
            .args(args)
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("TZ", "America/Vancouver")
            .env("BACKUP_LOG_LEVEL", "info")
            .env("BACKUP_CONF", &conf)
            .env("BACKUP_CONTAINER_BIN", env!("CARGO_BIN_EXE_backup-container")));
        assert_eq!(direct.code, 0, "{}", direct.all());
        assert_eq!(via_shim.code, direct.code, "{args:?}");
        let strip_time = |s: &str| s.lines().filter(|l| !l.contains("next:")).collect::<Vec<_>>().join("\n");
        assert_eq!(strip_time(&via_shim.stdout), strip_time(&direct.stdout), "{args:?}");
    }
}

/// Values that were accepted silently (or panicked the daemon) are configuration errors:
/// exit 2 naming the variable, for `-c`, `-1` and the daemon alike, before any work.
#[test]
fn bad_values_stop_every_mode_with_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("backups");
    for day in ["2026-11-20", "2026-11-21", "2026-11-22"] {
        crate::harness::gzip_to(
            &root.join(format!("{day}/db-app_{day}_01-00-00.sql.gz")),
            crate::harness::COMPLETE_DUMP,
        );
    }
    let conf = dir.path().join("backup.conf");
    std::fs::write(&conf, "db/app\n").unwrap();
    let cases = [
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
    ];
    for (var, value) in cases {
        for mode in [&["-c"][..], &["-1"][..], &["-p", "-s"][..], &[][..]] {
            let r = run(bin()
                .args(mode)
                .env("BACKUP_CONF", &conf)
                .env("BACKUP_DIR", &root)
                .env("BACKUP_STRATEGY", "daily")
                .env("DATABASE_USER", "u")
                .env("HEALTH_ADDR", "off")
                .env(var, value));
            assert_eq!(r.code, 2, "{var}={value} {mode:?}: {}", r.all());
            assert!(r.stderr.contains(var), "{var}={value} {mode:?}: {}", r.all());
        }
    }
    assert_eq!(crate::harness::backups_under(&root).len(), 3, "NUM_BACKUPS=-3 pruned nothing");
    let r = run(bin().arg("-c").env("BACKUP_CONF", &conf).env("TZ", "Amercia/Vancouver"));
    assert!(r.stderr.contains("did you mean America/Vancouver?"), "{}", r.all());
}
