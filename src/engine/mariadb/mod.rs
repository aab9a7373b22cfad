//! MariaDB (and MySQL) engine for `mariadb=host[:port]/db` (also `mysql=`) specs.
//!
//! Backup: `mariadb-dump --single-transaction --quick --routines --events --triggers
//! --hex-blob` of the one database (no `CREATE DATABASE`, so it restores under any name),
//! streamed like PostgreSQL's. Passwords go through `MYSQL_PWD` in the child's environment,
//! never argv; `--no-defaults` keeps `/etc/mysql/*.cnf` out; `--protocol=TCP` keeps
//! `localhost` from meaning a local socket.

mod restore;
mod server;

use std::io::{BufRead, Write};
use std::path::PathBuf;
use std::process::Command;

use anyhow::Context;

use super::{
    Conn, DumpInfo, Engine, EngineOptions, Loaded, RestoreReport, RestoreRequest, Server, ServerOptions, load, process,
};
use crate::model::database::Database;
use crate::model::spec::EngineKind;
use crate::model::stats::SchemaStats;
use crate::stream::scan::Summary;
use crate::system::cancel::Cancel;

/// The MariaDB engine.
#[derive(Debug)]
pub struct MariaDbEngine {
    options: EngineOptions,
}

/// The first of `names` found on `PATH` (or in `/usr/sbin`, where Debian puts `mariadbd`);
/// the bare first name (spawning it then fails with an error that names it) otherwise.
pub(crate) fn find_tool(options: &EngineOptions, names: &[&str]) -> PathBuf {
    options.find(names, &["/usr/sbin", "/usr/bin"]).unwrap_or_else(|| PathBuf::from(names[0]))
}

/// `` `name` `` with embedded backticks doubled.
pub(super) fn quote_ident(name: &str) -> String {
    format!("`{}`", name.replace('`', "``"))
}

impl MariaDbEngine {
    pub fn new(options: EngineOptions) -> Self {
        MariaDbEngine { options }
    }

    /// A client command with connection flags and environment for `conn`. A `host` that is an
    /// absolute path is a unix socket (throwaway servers).
    pub(super) fn client(&self, tools: &[&str], conn: &Conn) -> Command {
        let mut cmd = Command::new(find_tool(&self.options, tools));
        cmd.arg("--no-defaults");
        if conn.host.starts_with('/') {
            cmd.arg(format!("--socket={}", conn.host));
        } else {
            cmd.args(["--protocol=TCP", "-h", &conn.host]);
            cmd.arg("-P").arg(conn.port.unwrap_or(3306).to_string());
        }
        if let Some(user) = &conn.user {
            cmd.arg("-u").arg(user);
        }
        match &conn.password {
            Some(p) => cmd.env("MYSQL_PWD", p.expose()),
            None => cmd.env_remove("MYSQL_PWD"),
        };
        cmd
    }

    /// `mariadb-dump` of one database, consistent for InnoDB.
    pub fn dump_command(&self, db: &Database, conn: &Conn) -> Command {
        let mut cmd = self.client(&["mariadb-dump", "mysqldump"], conn);
        cmd.args(["--single-transaction", "--quick", "--routines", "--events", "--triggers", "--hex-blob"]);
        cmd.arg("--default-character-set=utf8mb4");
        for t in db.options.exclude_tables.iter().chain(&db.options.exclude_table_data) {
            cmd.arg(format!("--ignore-table={}.{t}", db.spec.database));
        }
        cmd.args(&db.options.extra_args);
        // `--` ends the options: a database named `--all-databases` is a name.
        cmd.arg("--").arg(&db.spec.database);
        cmd
    }

    /// Runs SQL with the `mariadb` client; batch output (tab-separated, no headers).
    pub(super) fn query(
        &self,
        conn: &Conn,
        database: Option<&str>,
        sql: &str,
        cancel: &Cancel,
    ) -> anyhow::Result<String> {
        let mut cmd = self.client(&["mariadb", "mysql"], conn);
        // Only the client knows --connect-timeout; the dump is preceded by this probe.
        cmd.arg(format!("--connect-timeout={}", self.options.connect_timeout_secs.max(1)));
        // Names are UTF-8 here, as for the dump (a client's default may be latin1).
        cmd.args(["--batch", "--skip-column-names", "--default-character-set=utf8mb4", "-e", sql]);
        if let Some(db) = database {
            cmd.arg(format!("--database={db}"));
        }
        process::capture(cmd, "mariadb", cancel)
    }
}

impl Engine for MariaDbEngine {
    fn kind(&self) -> EngineKind {
        EngineKind::MariaDb
    }

    fn restores_beside_target(&self) -> bool {
        false
    }

    /// Connect and authenticate, the dump tool's presence, tables the user cannot read
    /// (`SHOW TABLES` against the schema's list: a table the user cannot see fails the dump),
    /// and the database's size.
    fn preflight(&self, db: &Database, cancel: &Cancel) -> super::Preflight {
        use crate::model::finding::Finding;
        let t = db.spec.to_string();
        let mut out = super::Preflight::default();
        let conn = match db.conn() {
            Ok(c) => c,
            Err(e) => {
                out.findings.push(Finding::fail("credentials", &t, format!("{e:#}"), "set the user and password"));
                return out;
            }
        };
        let server = match self.query(&conn, Some(&db.spec.database), "SELECT VERSION()", cancel) {
            Ok(v) => {
                out.findings.push(Finding::pass("connect", &t, format!("MariaDB {}", v.trim())));
                v
            }
            Err(e) => {
                let fix = "check the host, port, user and password for this database (docs/CONFIG.md#credentials)";
                out.findings.push(Finding::fail("connect", &t, format!("{e:#}"), fix));
                return out;
            }
        };
        let mut version = Command::new(self.dump_command(db, &conn).get_program());
        version.arg("--version");
        match process::capture(version, "mariadb-dump", cancel) {
            Ok(v) => out.findings.push(match older_client(&v, &server) {
                Some(why) => {
                    Finding::warn("client version", &t, why, "use a mariadb-dump of the server's series or newer")
                }
                None => Finding::pass("client version", &t, v.trim().to_string()),
            }),
            Err(e) => out.findings.push(Finding::fail("client version", &t, format!("{e:#}"), "install mariadb-dump")),
        }
        let size = "SELECT COALESCE(SUM(data_length + index_length), 0) FROM information_schema.tables WHERE table_schema = DATABASE()";
        out.database_bytes =
            self.query(&conn, Some(&db.spec.database), size, cancel).ok().and_then(|s| s.trim().parse().ok());
        out
    }

    fn dump(&self, db: &Database, out: &mut dyn Write, cancel: &Cancel) -> anyhow::Result<DumpInfo> {
        let conn = db.conn()?;
        let server = self
            .query(&conn, Some(&db.spec.database), "SELECT VERSION()", cancel)
            .context("connecting to the database")?;
        let dump = self.dump_command(db, &conn);
        let mut version = Command::new(dump.get_program());
        version.arg("--version");
        let client = process::capture(version, "mariadb-dump", cancel).ok().map(|v| v.trim().to_string());
        if let Some(why) = client.as_deref().and_then(|c| older_client(c, &server)) {
            // Not refused: the image's client is 10.11, and refusing would refuse every 11.x server.
            tracing::warn!(reason = %why, "The MariaDB client is older than the server.");
        }
        let options: Vec<String> = dump
            .get_args()
            .map(|a| a.to_string_lossy().into_owned())
            .skip_while(|a| a != "--single-transaction")
            .take_while(|a| a != "--")
            .collect();
        process::stream_stdout(dump, "mariadb-dump", out, cancel).context("dumping the database")?;
        Ok(DumpInfo {
            server_version: Some(format!("MariaDB {}", server.trim())),
            server_major: series(&server),
            client_major: client.as_deref().and_then(series),
            client_version: client,
            options,
            ..DumpInfo::default()
        })
    }

    fn load<'a>(
        &'a self,
        req: &'a RestoreRequest,
        sql: &mut (dyn BufRead + Send),
        cancel: &Cancel,
    ) -> anyhow::Result<(Box<dyn Loaded + 'a>, RestoreReport)> {
        restore::load(self, req, sql, cancel)
    }

    fn count_rows(
        &self,
        conn: &Conn,
        database: &str,
        stream: &Summary,
        cancel: &Cancel,
    ) -> anyhow::Result<load::CountCheck> {
        restore::count_check(self, conn, database, stream, cancel)
    }

    /// In MariaDB a schema is a database: `TABLE_SCHEMA` names those; by default the database.
    fn schema_stats(
        &self,
        conn: &Conn,
        database: &str,
        schemas: Option<&[String]>,
        cancel: &Cancel,
    ) -> anyhow::Result<(Vec<SchemaStats>, u64)> {
        let quote = |s: &str| format!("'{}'", s.replace('\\', "\\\\").replace('\'', "''"));
        let filter = match schemas {
            Some(list) => list.iter().map(|s| quote(s)).collect::<Vec<_>>().join(", "),
            None => quote(database),
        };
        let stats = self.query(
            conn,
            None,
            &format!(
                "SELECT table_schema, COUNT(*), COALESCE(SUM(data_length + index_length), 0) \
                 FROM information_schema.tables WHERE table_type = 'BASE TABLE' AND table_schema IN ({filter}) \
                 GROUP BY table_schema"
            ),
            cancel,
        )?;
        let mut schemas = Vec::new();
        let mut size = 0u64;
        for line in stats.lines() {
            if let [schema, tables, bytes] = line.split('\t').collect::<Vec<_>>().as_slice() {
                schemas.push(SchemaStats { schema: schema.to_string(), tables: tables.parse()?, rows: 0 });
                size += bytes.parse::<u64>()?;
            }
        }
        Ok((schemas, size))
    }

    fn drop_database(&self, conn: &Conn, database: &str, cancel: &Cancel) -> anyhow::Result<()> {
        self.query(conn, None, &format!("DROP DATABASE {}", quote_ident(database)), cancel).map(drop)
    }

    fn start_server(
        &self,
        _major: Option<u32>,
        opts: &ServerOptions,
        cancel: &Cancel,
    ) -> anyhow::Result<Box<dyn Server>> {
        Ok(Box::new(server::Throwaway::start(&self.options, opts, cancel)?))
    }

    fn list_databases(&self, db: &Database, cancel: &Cancel) -> anyhow::Result<Vec<String>> {
        const SYSTEM: [&str; 4] = ["information_schema", "performance_schema", "mysql", "sys"];
        // Hexadecimal, never the names themselves: the client's batch output escapes some
        // characters and a name may hold a newline (`safe_name`).
        let out = self.query(&db.conn()?, None, "SELECT HEX(SCHEMA_NAME) FROM information_schema.SCHEMATA", cancel)?;
        let mut names = Vec::new();
        for line in out.lines().map(str::trim).filter(|l| !l.is_empty()) {
            let name =
                hex_name(line).ok_or_else(|| anyhow::anyhow!("unexpected database name {line:?} in the listing"))?;
            if !SYSTEM.contains(&name.as_str()) {
                names.push(name);
            }
        }
        names.sort();
        Ok(names)
    }

    fn execute_sql(
        &self,
        db: &Database,
        sql: &str,
        timeout: std::time::Duration,
        cancel: &Cancel,
    ) -> anyhow::Result<String> {
        let sql = format!("SET SESSION max_statement_time = {}; {sql}", timeout.as_secs_f64().max(0.001));
        self.query(&db.conn()?, Some(&db.spec.database), &sql, cancel)
    }
}

/// A MariaDB release series as a number, `major * 100 + minor` (`10.11.6-MariaDB` → 1011,
/// `11.4.2-MariaDB` → 1104), from a server's `VERSION()` or a client's `--version`
/// (`... Distrib 10.11.6-MariaDB, ...`, `... from 11.4.2-MariaDB, ...`). `None` for MySQL,
/// whose numbers are not compared.
fn series(text: &str) -> Option<u32> {
    let word = text.split([' ', ',']).find(|w| w.contains("-MariaDB"))?;
    let mut parts = word.split(['.', '-']);
    let major: u32 = parts.next()?.parse().ok()?;
    let minor: u32 = parts.next()?.parse().ok()?;
    Some(major * 100 + minor)
}

/// Why a client is older than the server's series, when it is.
fn older_client(client: &str, server: &str) -> Option<String> {
    let (c, s) = (series(client)?, series(server)?);
    (c < s).then(|| {
        format!(
            "mariadb-dump {}.{} is older than the MariaDB {}.{} server: a dump may miss what the newer server has",
            c / 100,
            c % 100,
            s / 100,
            s % 100
        )
    })
}

/// The name `HEX(name)` printed (UTF-8, as the server's connection character set sends it).
fn hex_name(hex: &str) -> Option<String> {
    let bytes: Option<Vec<u8>> =
        (0..hex.len()).step_by(2).map(|i| hex.get(i..i + 2).and_then(|h| u8::from_str_radix(h, 16).ok())).collect();
    String::from_utf8(bytes?).ok()
}

/// `'user'@'%'` (or the `user@host` given).
pub(super) fn quote_account(owner: &str) -> String {
    let (user, host) = owner.split_once('@').unwrap_or((owner, "%"));
    format!("'{}'@'{}'", user.replace('\'', "''"), host.replace('\'', "''"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::database::Credentials;
    use crate::model::secret::Secret;

    #[test]
    fn release_series_are_numbers_and_mysql_is_not_compared() {
        assert_eq!(series("10.11.6-MariaDB-0+deb12u1"), Some(1011));
        assert_eq!(series("11.4.2-MariaDB-ubu2404"), Some(1104));
        assert_eq!(series("mariadb-dump from 11.4.2-MariaDB, client 10.19 for debian-linux-gnu (x86_64)"), Some(1104));
        assert_eq!(series("mysqldump  Ver 10.19 Distrib 10.11.6-MariaDB, for debian-linux-gnu (x86_64)"), Some(1011));
        assert_eq!(series("8.0.36"), None, "MySQL");
        let client = "mysqldump  Ver 10.19 Distrib 10.11.6-MariaDB, for debian-linux-gnu (x86_64)";
        assert!(
            older_client(client, "11.4.2-MariaDB").is_some_and(|w| w.contains("10.11 is older than the MariaDB 11.4"))
        );
        assert_eq!(older_client(client, "10.11.9-MariaDB"), None);
        assert_eq!(older_client(client, "10.6.3-MariaDB"), None);
        assert_eq!(older_client(client, "8.0.36"), None, "MySQL is not compared");
    }

    #[test]
    fn listed_names_are_read_whole() {
        assert_eq!(hex_name("6E6C0A78").as_deref(), Some("nl\nx"));
        assert_eq!(hex_name("2E2E2F78").as_deref(), Some("../x"));
        assert_eq!(hex_name("C3BC").as_deref(), Some("ü"));
        assert_eq!(hex_name("6"), None);
        assert_eq!(hex_name("ZZ"), None);
    }

    #[test]
    fn dump_command_is_consistent_and_keeps_the_password_out_of_argv() {
        let db = Database {
            spec: "mariadb=maria.example.com/shop".parse().unwrap(),
            credentials: Credentials {
                user: Some("backup".into()),
                user_source: "X".into(),
                password: Some(crate::model::database::PasswordSource::Value(Secret::new("s3cret"))),
                password_source: Some("Y".into()),
            },
            options: crate::engine::DumpOptions { exclude_tables: vec!["sessions".into()], ..Default::default() },
        };
        let cmd =
            MariaDbEngine::new(EngineOptions { pg_bin_dirs: vec![], connect_timeout_secs: 10, ..Default::default() })
                .dump_command(&db, &db.conn().unwrap());
        let args: Vec<String> = cmd.get_args().map(|a| a.to_string_lossy().into_owned()).collect();
        assert_eq!(
            args,
            [
                "--no-defaults",
                "--protocol=TCP",
                "-h",
                "maria.example.com",
                "-P",
                "3306",
                "-u",
                "backup",
                "--single-transaction",
                "--quick",
                "--routines",
                "--events",
                "--triggers",
                "--hex-blob",
                "--default-character-set=utf8mb4",
                "--ignore-table=shop.sessions",
                "--",
                "shop"
            ]
        );
        let pwd = cmd
            .get_envs()
            .find(|(k, _)| *k == "MYSQL_PWD")
            .and_then(|(_, v)| v)
            .map(|v| v.to_string_lossy().into_owned());
        assert_eq!(pwd.as_deref(), Some("s3cret"));
    }

    #[test]
    fn identifiers_and_accounts_are_quoted() {
        assert_eq!(quote_ident("we`ird"), "`we``ird`");
        assert_eq!(quote_account("app"), "'app'@'%'");
        assert_eq!(quote_account("app@10.0.0.%"), "'app'@'10.0.0.%'");
    }
}
