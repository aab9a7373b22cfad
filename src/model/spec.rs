//! Database specs: `[type=]host[:port]/database`, as written in backup.conf and on the command line.
//!
//! Owns parsing and printing of one spec and the core file name (`host-database`) that ties a
//! database to its backup files. It does not resolve credentials (see `config`).

use std::fmt;
use std::str::FromStr;

use crate::model::safe_name;

/// The engines a spec can name. `Foreign` engines are valid upstream types that another
/// container handles (mongo, mssql); their specs are skipped with a warning, as upstream does.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum EngineKind {
    Postgres,
    MariaDb,
    Foreign(String),
}

impl EngineKind {
    /// Parses a spec type prefix, case-insensitively (`Postgres=` works; upstream dropped it).
    pub fn parse(text: &str) -> Option<EngineKind> {
        match text.to_ascii_lowercase().as_str() {
            "postgres" | "postgresql" => Some(EngineKind::Postgres),
            "mariadb" | "mysql" => Some(EngineKind::MariaDb),
            other @ ("mongo" | "mongodb" | "mssql") => Some(EngineKind::Foreign(other.to_string())),
            _ => None,
        }
    }

    /// The canonical type prefix.
    pub fn name(&self) -> &str {
        match self {
            EngineKind::Postgres => "postgres",
            EngineKind::MariaDb => "mariadb",
            EngineKind::Foreign(name) => name,
        }
    }

    /// The port the engine's clients use when a spec has none.
    pub fn default_port(&self) -> Option<u16> {
        match self {
            EngineKind::Postgres => Some(5432),
            EngineKind::MariaDb => Some(3306),
            EngineKind::Foreign(_) => None,
        }
    }
}

/// One database to back up or restore.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct DatabaseSpec {
    pub engine: EngineKind,
    /// Whether the spec named its type (`postgres=...`); untyped specs print without a prefix.
    pub typed: bool,
    pub host: String,
    pub port: Option<u16>,
    pub database: String,
}

/// Why a text is not a database spec.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SpecError {
    #[error("unknown database type \"{0}\" (expected postgres or mariadb; mongo and mssql are skipped)")]
    UnknownType(String),
    #[error("missing \"/database\" part (expected [type=]host[:port]/database)")]
    MissingDatabase,
    #[error("empty host name (expected [type=]host[:port]/database)")]
    EmptyHost,
    #[error("empty database name (expected [type=]host[:port]/database)")]
    EmptyDatabase,
    #[error("invalid port \"{0}\" (expected a number from 1 to 65535)")]
    BadPort(String),
    #[error("invalid character {0:?} in {1} (allowed: letters, digits, '.', '_', '-')")]
    BadChar(char, &'static str),
}

fn check_chars(text: &str, what: &'static str, extra: &[char]) -> Result<(), SpecError> {
    match text.chars().find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') || extra.contains(c))) {
        Some(c) => Err(SpecError::BadChar(c, what)),
        None => Ok(()),
    }
}

impl FromStr for DatabaseSpec {
    type Err = SpecError;

    /// Parses the four upstream forms. As upstream: the type is what precedes the last `=`,
    /// the database is what follows the last `/`; unlike upstream, dots (FQDN hosts) are valid.
    fn from_str(text: &str) -> Result<Self, SpecError> {
        let (engine, typed, rest) = match text.rfind('=') {
            Some(i) => {
                let kind = &text[..i];
                let engine = EngineKind::parse(kind).ok_or_else(|| SpecError::UnknownType(kind.to_string()))?;
                (engine, true, &text[i + 1..])
            }
            None => (EngineKind::Postgres, false, text),
        };
        let slash = rest.find('/').ok_or(SpecError::MissingDatabase)?;
        let (server, path) = (&rest[..slash], &rest[slash + 1..]);
        let database = path.rsplit('/').next().unwrap_or_default();
        let (host, port) = match server.split_once(':') {
            Some((host, "")) => (host, None),
            Some((host, port)) => {
                let port =
                    port.parse::<u16>().ok().filter(|p| *p > 0).ok_or_else(|| SpecError::BadPort(port.to_string()))?;
                (host, Some(port))
            }
            None => (server, None),
        };
        if host.is_empty() {
            return Err(SpecError::EmptyHost);
        }
        if database.is_empty() {
            return Err(SpecError::EmptyDatabase);
        }
        check_chars(host, "host", &[])?;
        // `host/*`: every database on the server (`fleet`).
        if database != "*" {
            check_chars(database, "database", &['$'])?;
        }
        Ok(DatabaseSpec { engine, typed, host: host.to_string(), port, database: database.to_string() })
    }
}

impl fmt::Display for DatabaseSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // A name from a server may hold control characters: escaped, never sent to a terminal.
        write!(f, "{}{}", self.server_part(), safe_name::printable(&self.database))
    }
}

/// A host as the audits compare hosts: lowercased, the loopback names (`localhost`,
/// `127.0.0.1`, `::1`) as one. Used by the coverage audit and to match `PITR_SERVERS`.
pub fn host_key(host: &str) -> String {
    let lower = host.trim_start_matches('[').trim_end_matches(']').to_ascii_lowercase();
    match lower.as_str() {
        "localhost" | "127.0.0.1" | "::1" => "localhost".into(),
        _ => lower,
    }
}

impl DatabaseSpec {
    /// The core file name shared by all backups of this database: `<host>-<database>`, each
    /// part through `safe_name::encode` (the identity on every name a spec can spell; a name
    /// from a server such as `a/b` becomes `a%2Fb`, never a path).
    ///
    /// NOTE: as upstream, type and port are not part of it, so the same host/database on two
    /// ports share backups; `a-b`/`c` and `a`/`b-c` collide too. Kept for compatibility (C3).
    pub fn core_name(&self) -> String {
        format!("{}-{}", safe_name::encode(&self.host), safe_name::encode(&self.database))
    }

    /// The spec as `Display` writes it but with the database's name exactly as it is (control
    /// characters included): for records, never for logs or terminals.
    pub fn exact(&self) -> String {
        format!("{}{}", self.server_part(), self.database)
    }

    /// `[type=]host[:port]/`
    fn server_part(&self) -> String {
        let typed = if self.typed { format!("{}=", self.engine.name()) } else { String::new() };
        let port = self.port.map(|p| format!(":{p}")).unwrap_or_default();
        format!("{typed}{}{port}/", self.host)
    }

    /// The port to connect to: the spec's, or the engine default.
    pub fn effective_port(&self) -> Option<u16> {
        self.port.or_else(|| self.engine.default_port())
    }

    /// Environment variable prefix for this spec's credentials: host upper-cased, `-` and `.`
    /// mapped to `_` (`wallet-db` → `WALLET_DB`; upstream did not map dots).
    pub fn credential_prefix(&self) -> String {
        self.host
            .chars()
            .map(|c| match c {
                '-' | '.' => '_',
                c => c.to_ascii_uppercase(),
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(text: &str) -> DatabaseSpec {
        text.parse().unwrap_or_else(|e| panic!("{text}: {e}"))
    }

    #[test]
    fn parses_the_four_upstream_forms() {
        let s = spec("postgresql/my_db");
        assert_eq!(
            (s.engine.clone(), s.host.as_str(), s.port, s.database.as_str()),
            (EngineKind::Postgres, "postgresql", None, "my_db")
        );
        assert!(!s.typed);
        let s = spec("wallet-db:5433/tob");
        assert_eq!((s.host.as_str(), s.port, s.database.as_str()), ("wallet-db", Some(5433), "tob"));
        let s = spec("postgres=db/app");
        assert!(s.typed);
        assert_eq!(s.engine, EngineKind::Postgres);
        let s = spec("mariadb=maria:3307/shop");
        assert_eq!((s.engine.clone(), s.port), (EngineKind::MariaDb, Some(3307)));
    }

    #[test]
    fn display_round_trips() {
        for text in ["postgresql/my_db", "db:5432/app", "postgres=db.example.com:6543/app", "mariadb=m/x"] {
            assert_eq!(spec(text).to_string(), text);
        }
    }

    #[test]
    fn upstream_quirks_are_kept_where_harmless() {
        // Empty port is accepted (upstream regex allows `host:/db`).
        assert_eq!(spec("db:/app").port, None);
        // The database is the text after the last slash.
        assert_eq!(spec("db/a/b").database, "b");
        // Types are case-insensitive and `postgresql=` is an alias (upstream silently skipped both).
        assert_eq!(spec("Postgres=db/app").engine, EngineKind::Postgres);
        assert_eq!(spec("postgresql=db/app").engine, EngineKind::Postgres);
        assert_eq!(spec("mongo=m/app").engine, EngineKind::Foreign("mongo".into()));
    }

    #[test]
    fn rejects_malformed_specs() {
        assert_eq!("db".parse::<DatabaseSpec>(), Err(SpecError::MissingDatabase));
        assert_eq!("/app".parse::<DatabaseSpec>(), Err(SpecError::EmptyHost));
        assert_eq!("db/".parse::<DatabaseSpec>(), Err(SpecError::EmptyDatabase));
        assert_eq!("db:99999/app".parse::<DatabaseSpec>(), Err(SpecError::BadPort("99999".into())));
        assert_eq!("postgress=db/app".parse::<DatabaseSpec>(), Err(SpecError::UnknownType("postgress".into())));
        assert!(matches!("db host/app".parse::<DatabaseSpec>(), Err(SpecError::BadChar(' ', "host"))));
    }

    #[test]
    fn core_name_and_credential_prefix() {
        let s = spec("postgres=wallet-db:5432/tob");
        assert_eq!(s.core_name(), "wallet-db-tob");
        assert_eq!(s.credential_prefix(), "WALLET_DB");
        assert_eq!(spec("db.example.com/app").credential_prefix(), "DB_EXAMPLE_COM");
        assert_eq!(spec("db/app").effective_port(), Some(5432));
        let mut from_server = spec("db/x");
        from_server.database = "../../x\n".into();
        assert_eq!(from_server.core_name(), "db-..%2F..%2Fx%0A");
        assert_eq!(from_server.to_string(), "db/../../x\\n", "control characters are escaped");
        assert_eq!(from_server.exact(), "db/../../x\n", "records keep the name as it is");
    }
}
