//! `PITR_SERVERS` (or `[pitr] servers` in backup.toml): the PostgreSQL servers whose WAL is to
//! be archived continuously (docs/PITR.md; being built: today `--check` and `-c` report on
//! them). Never a new kind of line in backup.conf, which the bash version must keep reading.
//! Each server's credentials are those of its backups (`<HOST>_USER`/`_PASSWORD`, …), and for
//! the replication connection `<HOST>_REPLICATION_USER`/`_PASSWORD` when set (a role with the
//! REPLICATION attribute).

use super::credentials::CredentialVars;
use super::env;
use super::loader::Loader;
use crate::model::database::{Credentials, Database};
use crate::model::spec::DatabaseSpec;

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
}

/// The servers, in the order given.
#[derive(Debug, Clone, Default)]
pub struct PitrSettings {
    pub servers: Vec<PitrServer>,
}

impl PitrSettings {
    pub(super) fn load(l: &Loader, credentials: &CredentialVars) -> PitrSettings {
        let Some(text) = l.text(env::PITR_SERVERS) else { return PitrSettings::default() };
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
        PitrSettings { servers }
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
    fn servers_are_host_and_port() {
        let s = parse_server("wallet-db:5433").unwrap();
        assert_eq!((s.host.as_str(), s.port, s.database.as_str()), ("wallet-db", Some(5433), "postgres"));
        assert_eq!(parse_server("db").unwrap().port, None);
        for bad in ["db/app", "postgres=db", "db:x", ":5432"] {
            assert!(parse_server(bad).is_err(), "{bad}");
        }
    }
}
