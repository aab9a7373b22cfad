//! The command line: every `backup.sh` short flag, each with a long name.
//!
//! Parsing only; `Cli::mode_inputs` feeds the pure `mode::select`.

use std::path::PathBuf;

use clap::Parser;

use crate::cli::mode::ModeInputs;
use crate::config::Env;
use crate::config::env::{IGNORE_ERRORS, RUN_ONCE, RUN_PRUNE, SCHEDULED_RUN};

const AFTER_HELP: &str = "\
Modes (first match wins): -p prune, -r restore, -v verify, -1 once, -s scheduled,
then the daemon: cron mode when backup.conf has cron lines, else a backup every BACKUP_PERIOD.

Database specs: [type=]host[:port]/database, type = postgres (default) or mariadb.

Examples:
  backup-container -1                          one backup of every configured database
  backup-container -l                          list backups
  backup-container -c                          show the effective settings (secrets hidden)
  backup-container -p                          apply the retention policy now
  backup-container -p -f 2026-11-02            delete the backups whose path contains the filter
  backup-container -r postgresql:5432/mydb     restore the newest backup of mydb
  backup-container -v all                      verify the newest backup of every database
  backup-container -r postgresql:5432/mydb --remote -s
                                               restore from the mirror (the volume is gone)
  backup-container -l --json                   the catalog with every manifest, for scripts
  backup-container -l --pitr [--json]          the point-in-time archives: chains, WAL, gaps, windows
  backup-container -r wallet-db:5432/tob --at '2026-12-05 10:31' -s
                                               the database as it was then, from the archive
  backup-container --pitr-datadir /restore/data --at latest
                                               the whole cluster recovered, as a data directory
  backup-container --check                     find tomorrow's failed backup today

Exit codes: 0 success, 1 a backup/restore/verification failed, 2 usage or configuration error,
130 interrupted. The image also provides /backup.sh, which runs this binary.";

/// A database backup daemon, compatible with the bash backup-container.
#[derive(Debug, Parser)]
#[command(name = "backup-container", version, about, after_help = AFTER_HELP)]
pub struct Cli {
    /// Run one backup of every database and exit.
    #[arg(short = '1', long = "once")]
    pub once: bool,

    /// Scheduled (unattended) run: no prompts; alone, one backup run and exit.
    #[arg(short = 's', long = "scheduled")]
    pub scheduled: bool,

    /// List existing backups and free space, then exit.
    #[arg(short = 'l', long = "list")]
    pub list: bool,

    /// Print the effective configuration (secrets redacted), then exit.
    #[arg(short = 'c', long = "show-config")]
    pub show_config: bool,

    /// Restore the database <SPEC> from its newest backup (or the one chosen by -f).
    #[arg(short = 'r', long = "restore", value_name = "SPEC")]
    pub restore: Option<String>,

    /// Verify the newest backup of <SPEC>, or of every database with "all".
    #[arg(short = 'v', long = "verify", value_name = "SPEC|all")]
    pub verify: Option<String>,

    /// Backup filter for -r, -v and -p: a path, a file name, or text the backup's path contains.
    #[arg(short = 'f', long = "from", value_name = "FILTER")]
    pub from: Option<String>,

    /// Prune backups now by the retention policy (or delete those matching -f).
    #[arg(short = 'p', long = "prune")]
    pub prune: bool,

    /// Admin password for restore. Prefer BACKUP_ADMIN_PASSWORD: argv is visible to other users.
    #[arg(short = 'a', long = "admin-password", value_name = "PASSWORD")]
    pub admin_password: Option<String>,

    /// Restore: the admin user (default $BACKUP_ADMIN_USER, else $PGUSER, else postgres).
    #[arg(long = "admin-user", value_name = "USER")]
    pub admin_user: Option<String>,

    /// Restore: continue past SQL errors (psql ON_ERROR_STOP=0).
    #[arg(short = 'I', long = "ignore-errors")]
    pub ignore_errors: bool,

    /// Accepted for compatibility (upstream's "allow null plugin"); has no effect.
    #[arg(short = 'n', long = "allow-null")]
    pub allow_null: bool,

    /// With -l: list the copies on each mirror (FTPS, S3) instead of local backups. With -r or
    /// -v: take the backup from the mirror (NAME: ftp or s3 when both are configured).
    #[arg(long = "remote", value_name = "NAME", num_args = 0..=1, default_missing_value = "")]
    pub remote: Option<String>,

    /// With -l or --check: print JSON, for scripts.
    #[arg(long = "json")]
    pub json: bool,

    /// With -r: the database as it was at this time, from its server's point-in-time archive
    /// (PITR_SERVERS): `latest`, RFC 3339 with an offset, or a local time in TZ
    /// (`2026-12-05 10:31`). With -f, -f names the source database (restore beside it).
    #[arg(long = "at", value_name = "TIME")]
    pub at: Option<String>,

    /// Write the whole cluster, recovered to --at's time, promoted and shut down, into DIR
    /// (missing or empty): a data directory to mount (docs/PITR.md).
    #[arg(long = "pitr-datadir", value_name = "DIR")]
    pub pitr_datadir: Option<std::path::PathBuf>,

    /// With --pitr-datadir: the archived server (HOST:PORT) when PITR_SERVERS lists several.
    #[arg(long = "pitr-server", value_name = "HOST:PORT")]
    pub pitr_server: Option<String>,

    /// With -l: the point-in-time archives only (PITR_SERVERS): chains, WAL, gaps, windows.
    #[arg(long = "pitr")]
    pub pitr: bool,

    /// Check everything a backup needs without writing one (connection, versions, privileges,
    /// space, mirrors, notifications, hooks, schedules); exit 1 when anything fails.
    #[arg(long = "check")]
    pub check: bool,

    /// Take only this shard of the databases (I/N: those whose hash modulo N is I), e.g. one
    /// pod of a Kubernetes Indexed Job; sets BACKUP_SHARD.
    #[arg(long = "shard", value_name = "I/N")]
    pub shard: Option<String>,

    /// With --check: send a real test message through every notifier.
    #[arg(long = "notify")]
    pub notify: bool,

    /// With -p -f: allow deleting every backup of a database.
    #[arg(long = "force")]
    pub force: bool,

    /// Path of backup.conf (default: $BACKUP_CONF, else ./backup.conf).
    #[arg(long = "config-file", value_name = "PATH")]
    pub config_file: Option<PathBuf>,
}

impl Cli {
    /// Mode inputs from the flags, plus upstream's env-injectable equivalents (`RUN_ONCE`,
    /// `SCHEDULED_RUN`, `RUN_PRUNE`).
    pub fn mode_inputs(&self, env: &Env, has_cron_lines: bool) -> ModeInputs {
        ModeInputs {
            prune: self.prune || env.is_set(RUN_PRUNE),
            restore: self.restore.is_some(),
            verify: self.verify.is_some(),
            once: self.once || env.is_set(RUN_ONCE),
            scheduled: self.scheduled || env.is_set(SCHEDULED_RUN),
            has_cron_lines,
        }
    }

    /// `-I` or `IGNORE_ERRORS`.
    pub fn ignore_errors(&self, env: &Env) -> bool {
        self.ignore_errors || env.is_set(IGNORE_ERRORS)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::mode::{Mode, select};

    fn parse(args: &[&str]) -> Cli {
        Cli::try_parse_from(std::iter::once("backup-container").chain(args.iter().copied())).unwrap()
    }

    #[test]
    fn every_upstream_short_flag_parses() {
        let cli =
            parse(&["-1", "-s", "-l", "-c", "-r", "db/app", "-v", "all", "-f", "2026", "-p", "-a", "pw", "-I", "-n"]);
        assert!(
            cli.once
                && cli.scheduled
                && cli.list
                && cli.show_config
                && cli.prune
                && cli.ignore_errors
                && cli.allow_null
        );
        assert_eq!(cli.restore.as_deref(), Some("db/app"));
        assert_eq!(cli.verify.as_deref(), Some("all"));
        assert_eq!(cli.from.as_deref(), Some("2026"));
        assert_eq!(cli.admin_password.as_deref(), Some("pw"));
    }

    #[test]
    fn long_names_exist() {
        let cli = parse(&[
            "--once",
            "--scheduled",
            "--list",
            "--show-config",
            "--restore",
            "x/y",
            "--verify",
            "all",
            "--from",
            "f",
            "--prune",
            "--ignore-errors",
            "--allow-null",
        ]);
        assert!(cli.once && cli.prune);
    }

    #[test]
    fn env_flags_are_honoured_like_upstream() {
        let cli = parse(&[]);
        let env = Env::from_pairs([("RUN_ONCE", "1")]);
        assert_eq!(select(&cli.mode_inputs(&env, true)), Mode::Once);
        assert_eq!(select(&cli.mode_inputs(&Env::default(), true)), Mode::Cron);
    }

    #[test]
    fn missing_argument_is_a_usage_error() {
        let err = Cli::try_parse_from(["backup-container", "-r"]).unwrap_err();
        assert_eq!(err.exit_code(), 2);
    }
}
