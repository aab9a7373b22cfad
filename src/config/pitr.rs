//! `PITR_SERVERS` (or `[pitr] servers` in backup.toml): the PostgreSQL servers whose WAL is to
//! be archived continuously (docs/PITR.md; being built: today `--check` and `-c` report on
//! them). Never a new kind of line in backup.conf, which the bash version must keep reading.
//! Each server's credentials are those of its backups (`<HOST>_USER`/`_PASSWORD`, …), and for
//! the replication connection `<HOST>_REPLICATION_USER`/`_PASSWORD` when set (a role with the
//! REPLICATION attribute).

use std::path::{Path, PathBuf};

use super::backup_conf::{CronAction, CronLine};
use super::credentials::CredentialVars;
use super::env;
use super::loader::Loader;
use crate::model::database::{Conn, Credentials, Database};
use crate::model::schedule::Schedule;
use crate::model::spec::DatabaseSpec;
use crate::stream::compress::Compression;

/// `PITR_SLOT_MAX_RETAINED`'s default: WAL the slot may hold back on the server before it is
/// dropped (a gap in the archive is the lesser harm than a full disk on the primary).
pub const DEFAULT_SLOT_MAX_RETAINED: u64 = 10 << 30;
/// Weekly full base backups (Sunday 03:15 in `TZ`).
pub const DEFAULT_BASE_SCHEDULE: &str = "15 3 * * 0";
/// Daily incrementals (17+ with `summarize_wal`); a full one due at the same time wins.
pub const DEFAULT_INCREMENTAL_SCHEDULE: &str = "15 3 * * *";
/// Daily PITR drills, after the night's base backups.
pub const DEFAULT_DRILL_SCHEDULE: &str = "45 4 * * *";

/// `PITR_DRILL_COUNTS`: how a PITR drill counts rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DrillCounts {
    /// `count(*)` of every table.
    #[default]
    Full,
    /// `count(*)` of the 20 largest tables of each database; every table is still listed.
    Sample,
    /// No counts: the tables are listed, `pg_amcheck` runs.
    Off,
}

/// One server to archive.
#[derive(Debug, Clone)]
pub struct PitrServer {
    /// `host:port/postgres`: what the server's SQL connection uses.
    pub database: Database,
    /// The replication connection's role, when it is not the backups' one.
    pub replication: Option<Credentials>,
}

impl PitrServer {
    /// `host:port`.
    pub fn name(&self) -> String {
        let spec = &self.database.spec;
        format!("{}:{}", spec.host, spec.port.unwrap_or(5432))
    }

    /// The SQL connection (the backups' role).
    ///
    /// # Errors
    /// A password file that cannot be read.
    pub fn sql_conn(&self) -> anyhow::Result<Conn> {
        self.database.conn()
    }

    /// The replication connection: `<HOST>_REPLICATION_USER` when set, else the backups' role.
    ///
    /// # Errors
    /// As `sql_conn`.
    pub fn replication_conn(&self) -> anyhow::Result<Conn> {
        match &self.replication {
            Some(r) => Database { credentials: r.clone(), ..self.database.clone() }.conn(),
            None => self.sql_conn(),
        }
    }
}

/// The servers, in the order given, and how their archives are kept.
#[derive(Debug, Clone, Default)]
pub struct PitrSettings {
    pub servers: Vec<PitrServer>,
    /// `PITR_SPOOL_DIR` (default `VERIFY_DIR/pitr_spool`): where `pg_receivewal` writes, outside
    /// `BACKUP_DIR`; the only place WAL is ever plain text.
    pub spool_dir: PathBuf,
    /// `PITR_SLOT_NAME`: the slot's name on every server (default: derived per archive).
    pub slot_name: Option<String>,
    /// `PITR_SLOT_MAX_RETAINED`: WAL the slot may hold back before it is dropped.
    pub slot_max_retained: u64,
    /// `PITR_MAX_BYTES`: the most a server's archive may hold; at it, archiving pauses.
    pub max_bytes: Option<u64>,
    /// `PITR_CHAINS`: usable chains of base backups kept (default 2), with the WAL they need.
    pub chains: usize,
    /// When full base backups are taken (`PITR_BASE_SCHEDULE`, or `[[schedule]] run = "pitr-base"`).
    pub base: Vec<Schedule>,
    /// When incrementals are (`PITR_INCREMENTAL_SCHEDULE`, or `run = "pitr-incremental"`).
    pub incremental: Vec<Schedule>,
    /// When PITR drills run (`PITR_DRILL_SCHEDULE`, or `run = "pitr-drill"`).
    pub drill: Vec<Schedule>,
    pub drill_counts: DrillCounts,
    /// How base backups are compressed: as backups are, at a higher gzip level when
    /// `BACKUP_COMPRESSION_LEVEL` is not set (`Compression::for_base_backups`).
    pub base_compression: Compression,
}

impl PitrSettings {
    /// The server on `host` and `port` (a missing port is 5432; the host's case does not
    /// matter, and the loopback names are one host, as in the coverage audit), when it is
    /// listed: the exact name first.
    pub fn find(&self, host: &str, port: Option<u16>) -> Option<&PitrServer> {
        let port = port.unwrap_or(5432);
        let on_port = |s: &&PitrServer| s.database.spec.port.unwrap_or(5432) == port;
        let key = crate::model::spec::host_key(host);
        self.servers.iter().filter(on_port).find(|s| s.database.spec.host.eq_ignore_ascii_case(host)).or_else(|| {
            self.servers.iter().filter(on_port).find(|s| crate::model::spec::host_key(&s.database.spec.host) == key)
        })
    }

    /// `find` for `host[:port]` as a user writes it (`--pitr-server`, `-v … --pitr`).
    ///
    /// # Errors
    /// Not a `host[:port]`, or not in `PITR_SERVERS`.
    pub fn find_text(&self, text: &str) -> Result<&PitrServer, String> {
        let spec = parse_server(text.trim()).map_err(|e| format!("{text:?}: {e}"))?;
        self.find(&spec.host, spec.port).ok_or_else(|| format!("{text} is not in PITR_SERVERS"))
    }

    /// Reads the servers and their settings; the point-in-time schedules are taken out of
    /// `cron` (they replace the env defaults).
    pub(super) fn load(
        l: &Loader,
        credentials: &CredentialVars,
        verify_dir: &Path,
        cron: &mut Vec<CronLine>,
        compression: Compression,
    ) -> PitrSettings {
        let (base_lines, rest): (Vec<CronLine>, Vec<CronLine>) =
            std::mem::take(cron).into_iter().partition(|c| c.action() == CronAction::PitrBase);
        let (incremental_lines, rest): (Vec<CronLine>, Vec<CronLine>) =
            rest.into_iter().partition(|c| c.action() == CronAction::PitrIncremental);
        let (drill_lines, rest): (Vec<CronLine>, Vec<CronLine>) =
            rest.into_iter().partition(|c| c.action() == CronAction::PitrDrill);
        *cron = rest;
        let schedules = |lines: Vec<CronLine>, var: &str, default: &str| -> Vec<Schedule> {
            if !lines.is_empty() {
                return lines.into_iter().map(|c| c.schedule).collect();
            }
            let text = l.text(var).unwrap_or_else(|| default.to_string());
            match text.parse::<Schedule>() {
                Ok(s) => vec![s],
                Err(e) => {
                    l.error(format!("{}: {var}=\"{text}\": {e}", l.origin(var)));
                    Vec::new()
                }
            }
        };
        let mut out = PitrSettings {
            servers: Vec::new(),
            spool_dir: l.text(env::PITR_SPOOL_DIR).map_or_else(|| verify_dir.join("pitr_spool"), PathBuf::from),
            slot_name: l.text(env::PITR_SLOT_NAME).and_then(|n| match slot_name_problem(&n) {
                None => Some(n),
                Some(p) => {
                    l.error(format!("{}: {}=\"{n}\": {p}", l.origin(env::PITR_SLOT_NAME), env::PITR_SLOT_NAME));
                    None
                }
            }),
            slot_max_retained: l.text(env::PITR_SLOT_MAX_RETAINED).map_or(DEFAULT_SLOT_MAX_RETAINED, |t| {
                crate::model::human::parse_bytes(&t).filter(|b| *b > 0).unwrap_or_else(|| {
                    l.error(format!(
                        "{}: {}=\"{t}\" is not a size (e.g. 10GB, 512MB)",
                        l.origin(env::PITR_SLOT_MAX_RETAINED),
                        env::PITR_SLOT_MAX_RETAINED
                    ));
                    DEFAULT_SLOT_MAX_RETAINED
                })
            }),
            max_bytes: l.text(env::PITR_MAX_BYTES).and_then(|t| {
                let parsed = crate::model::human::parse_bytes(&t).filter(|b| *b > 0);
                if parsed.is_none() {
                    l.error(format!(
                        "{}: {}=\"{t}\" is not a size (e.g. 200GB, 512MB)",
                        l.origin(env::PITR_MAX_BYTES),
                        env::PITR_MAX_BYTES
                    ));
                }
                parsed
            }),
            chains: l.int_in(env::PITR_CHAINS, 2, 1, 1000) as usize,
            base: schedules(base_lines, env::PITR_BASE_SCHEDULE, DEFAULT_BASE_SCHEDULE),
            incremental: schedules(incremental_lines, env::PITR_INCREMENTAL_SCHEDULE, DEFAULT_INCREMENTAL_SCHEDULE),
            drill: schedules(drill_lines, env::PITR_DRILL_SCHEDULE, DEFAULT_DRILL_SCHEDULE),
            drill_counts: match l.choice(env::PITR_DRILL_COUNTS, &["full", "sample", "off"]) {
                Some("sample") => DrillCounts::Sample,
                Some("off") => DrillCounts::Off,
                _ => DrillCounts::Full,
            },
            base_compression: compression.for_base_backups(l.text(env::BACKUP_COMPRESSION_LEVEL).is_some()),
        };
        out.servers = Self::servers(l, credentials);
        out
    }

    fn servers(l: &Loader, credentials: &CredentialVars) -> Vec<PitrServer> {
        let Some(text) = l.text(env::PITR_SERVERS) else { return Vec::new() };
        let mut servers: Vec<PitrServer> = Vec::new();
        for entry in text.split([',', ' ']).map(str::trim).filter(|e| !e.is_empty()) {
            let spec = match parse_server(entry) {
                Ok(s) => s,
                Err(e) => {
                    l.error(format!("{} ({}): {entry:?}: {e}", env::PITR_SERVERS, l.origin(env::PITR_SERVERS)));
                    continue;
                }
            };
            let (creds, problems) = credentials.resolve(&spec);
            for p in problems {
                l.error(p);
            }
            let (replication, problems) = credentials.replication(&spec);
            for p in problems {
                l.error(p);
            }
            let server = PitrServer {
                database: Database { spec, credentials: creds, options: Default::default() },
                replication,
            };
            if servers.iter().any(|s| s.name() == server.name()) {
                l.error(format!(
                    "{} ({}): {} is listed twice",
                    env::PITR_SERVERS,
                    l.origin(env::PITR_SERVERS),
                    server.name()
                ));
                continue;
            }
            servers.push(server);
        }
        servers
    }
}

/// Why `name` cannot be a replication slot's name: PostgreSQL allows `[a-z0-9_]`, at most 63.
pub fn slot_name_problem(name: &str) -> Option<&'static str> {
    if name.is_empty() || name.len() > 63 {
        Some("a slot name has 1 to 63 characters")
    } else if !name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_') {
        Some("a slot name holds only lowercase letters, digits and _")
    } else {
        None
    }
}

/// `host[:port]` (a server, not a database: no `/`).
fn parse_server(entry: &str) -> Result<DatabaseSpec, String> {
    if entry.contains('/') || entry.contains('=') {
        return Err("a server is host or host:port (no database, no engine prefix)".into());
    }
    format!("{entry}/postgres").parse::<DatabaseSpec>().map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::parse_server;

    #[test]
    fn slot_names_are_what_postgres_allows() {
        assert_eq!(super::slot_name_problem("bc_0123abcd"), None);
        for bad in ["", "Bc", "a-b", "a b", "ü", &"x".repeat(64)] {
            assert!(super::slot_name_problem(bad).is_some(), "{bad}");
        }
    }

    #[test]
    fn servers_are_found_by_host_and_port_with_the_loopback_names_as_one() {
        let server = |text: &str| super::PitrServer {
            database: crate::model::database::Database {
                spec: parse_server(text).unwrap(),
                credentials: crate::model::database::Credentials {
                    user: None,
                    user_source: String::new(),
                    password: None,
                    password_source: None,
                },
                options: Default::default(),
            },
            replication: None,
        };
        let settings = super::PitrSettings {
            servers: vec![server("127.0.0.1:5432"), server("Wallet-DB"), server("localhost:5433")],
            ..Default::default()
        };
        let found = |text: &str| settings.find_text(text).map(|s| s.name());
        assert_eq!(found("localhost:5432"), Ok("127.0.0.1:5432".into()), "a loopback alias");
        assert_eq!(found("127.0.0.1:5433"), Ok("localhost:5433".into()));
        assert_eq!(found("wallet-db:5432"), Ok("Wallet-DB:5432".into()), "the host's case does not matter");
        assert!(found("wallet-db:5433").is_err(), "another port is another server");
        assert!(found("10.0.0.1:5432").is_err());
    }

    #[test]
    fn servers_are_host_and_port() {
        let s = parse_server("wallet-db:5433").unwrap();
        assert_eq!((s.host.as_str(), s.port, s.database.as_str()), ("wallet-db", Some(5433), "postgres"));
        assert_eq!(parse_server("db").unwrap().port, None);
        for bad in ["db/app", "postgres=db", "db:x", ":5432"] {
            assert!(parse_server(bad).is_err(), "{bad}");
        }
    }
}
