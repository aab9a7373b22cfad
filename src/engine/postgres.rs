//! PostgreSQL: a backup is the `pg_dumpall --roles-only --no-role-passwords` output followed by
//! the `pg_dump -Fp` output, in one stream (contract C4, the same content as upstream).
//!
//! Passwords go to the children through `PGPASSWORD` in their environment, never argv; `-w`
//! makes the tools fail instead of prompting on a terminal.

use std::io::Write;
use std::path::PathBuf;
use std::process::Command;
use std::sync::OnceLock;

use anyhow::{Context, anyhow, bail};

use super::{Engine, EngineOptions, process};
use crate::cancel::Cancel;
use crate::config::Database;
use crate::spec::EngineKind;

/// The PostgreSQL engine.
#[derive(Debug)]
pub struct PostgresEngine {
    options: EngineOptions,
    /// Major version of the pg_dump in use, looked up once.
    client_major: OnceLock<u32>,
}

impl PostgresEngine {
    pub fn new(options: EngineOptions) -> Self {
        PostgresEngine {
            options,
            client_major: OnceLock::new(),
        }
    }

    fn tool(&self, name: &str) -> PathBuf {
        match &self.options.pg_bin_dir {
            Some(dir) => dir.join(name),
            None => PathBuf::from(name),
        }
    }

    /// A client command with connection flags and environment for `db`.
    fn client(&self, tool: &str, db: &Database) -> Command {
        let mut cmd = Command::new(self.tool(tool));
        cmd.arg("-h").arg(&db.spec.host);
        if let Some(port) = db.spec.port {
            cmd.arg("-p").arg(port.to_string());
        }
        if let Some(user) = &db.credentials.user {
            cmd.arg("-U").arg(user);
        }
        cmd.arg("-w");
        if let Some(password) = &db.credentials.password {
            cmd.env("PGPASSWORD", password.expose());
        }
        cmd.env(
            "PGCONNECT_TIMEOUT",
            self.options.connect_timeout_secs.max(1).to_string(),
        );
        cmd.env("PGAPPNAME", "backup-container");
        cmd
    }

    /// `pg_dumpall --roles-only --no-role-passwords`, connecting to the database being backed
    /// up (`-l`), which the backup user can certainly reach.
    pub fn roles_command(&self, db: &Database) -> Command {
        let mut cmd = self.client("pg_dumpall", db);
        cmd.args(["--roles-only", "--no-role-passwords", "-l"])
            .arg(&db.spec.database);
        cmd
    }

    /// `psql -c "SHOW server_version_num"`: checks connection and credentials with the
    /// server's own message (pg_dumpall only says "could not connect"), and gets the version.
    pub fn version_command(&self, db: &Database) -> Command {
        let mut cmd = self.client("psql", db);
        cmd.args(["-X", "-A", "-t", "-c", "SHOW server_version_num", "-d"])
            .arg(&db.spec.database);
        cmd
    }

    /// The server's major version (e.g. 15), after connecting with `db`'s credentials.
    ///
    /// # Errors
    /// The connection failure as psql reports it (refused, timeout, authentication).
    pub fn server_major(&self, db: &Database, cancel: &Cancel) -> anyhow::Result<u32> {
        let out = process::capture(self.version_command(db), "psql", cancel)?;
        let num: u32 = out
            .trim()
            .parse()
            .map_err(|_| anyhow!("unexpected server_version_num {:?}", out.trim()))?;
        Ok(num / 10000)
    }

    /// The major version of `pg_dump` (`pg_dump (PostgreSQL) 15.18 (Debian ...)` → 15).
    fn client_major(&self, cancel: &Cancel) -> anyhow::Result<u32> {
        if let Some(v) = self.client_major.get() {
            return Ok(*v);
        }
        let mut cmd = Command::new(self.tool("pg_dump"));
        cmd.arg("--version");
        let out = process::capture(cmd, "pg_dump", cancel)?;
        let major = parse_major(&out)
            .ok_or_else(|| anyhow!("cannot read the pg_dump version from {:?}", out.trim()))?;
        Ok(*self.client_major.get_or_init(|| major))
    }

    /// `pg_dump -Fp <database>`.
    pub fn dump_command(&self, db: &Database) -> Command {
        let mut cmd = self.client("pg_dump", db);
        cmd.arg("-Fp").arg(&db.spec.database);
        cmd
    }
}

impl Engine for PostgresEngine {
    fn kind(&self) -> EngineKind {
        EngineKind::Postgres
    }

    fn dump(&self, db: &Database, out: &mut dyn Write, cancel: &Cancel) -> anyhow::Result<()> {
        let server = self
            .server_major(db, cancel)
            .context("connecting to the database")?;
        let client = self.client_major(cancel)?;
        if client < server {
            bail!(
                "pg_dump {client} cannot back up a PostgreSQL {server} server (pg_dump must be at least the \
                 server's major version): use an image with PostgreSQL {server} client tools, or set PG_BIN_DIR"
            );
        }
        process::stream_stdout(self.roles_command(db), "pg_dumpall", out, cancel)
            .context("dumping roles")?;
        process::stream_stdout(self.dump_command(db), "pg_dump", out, cancel)
            .context("dumping the database")?;
        Ok(())
    }
}

/// The major version in `<tool> (PostgreSQL) 15.18 ...` output (9.6.24 gives 9, matching
/// `server_version_num / 10000`).
fn parse_major(version_output: &str) -> Option<u32> {
    let word = version_output
        .split_whitespace()
        .find(|w| w.starts_with(|c: char| c.is_ascii_digit()))?;
    let digits: String = word.chars().take_while(char::is_ascii_digit).collect();
    digits.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Credentials, Secret};

    fn db(spec: &str, user: Option<&str>, password: Option<&str>) -> Database {
        Database {
            spec: spec.parse().unwrap(),
            credentials: Credentials {
                user: user.map(str::to_string),
                user_source: "TEST_USER".into(),
                password: password.map(Secret::new),
                password_source: password.map(|_| "TEST_PASSWORD".into()),
            },
        }
    }

    fn argv(cmd: &Command) -> Vec<String> {
        std::iter::once(cmd.get_program())
            .chain(cmd.get_args())
            .map(|a| a.to_string_lossy().into_owned())
            .collect()
    }

    fn env(cmd: &Command, name: &str) -> Option<String> {
        cmd.get_envs()
            .find(|(k, _)| *k == name)
            .and_then(|(_, v)| v.map(|v| v.to_string_lossy().into_owned()))
    }

    #[test]
    fn commands_match_upstream_flags_and_keep_the_password_out_of_argv() {
        let engine = PostgresEngine::new(EngineOptions {
            pg_bin_dir: None,
            connect_timeout_secs: 10,
        });
        let d = db(
            "postgres=db.example.com:5433/app",
            Some("appuser"),
            Some("s3cret pw"),
        );
        let dump = engine.dump_command(&d);
        assert_eq!(
            argv(&dump),
            [
                "pg_dump",
                "-h",
                "db.example.com",
                "-p",
                "5433",
                "-U",
                "appuser",
                "-w",
                "-Fp",
                "app"
            ]
        );
        let roles = engine.roles_command(&d);
        assert_eq!(
            argv(&roles),
            [
                "pg_dumpall",
                "-h",
                "db.example.com",
                "-p",
                "5433",
                "-U",
                "appuser",
                "-w",
                "--roles-only",
                "--no-role-passwords",
                "-l",
                "app"
            ]
        );
        for cmd in [&dump, &roles] {
            assert!(!argv(cmd).iter().any(|a| a.contains("s3cret")));
            assert_eq!(env(cmd, "PGPASSWORD").as_deref(), Some("s3cret pw"));
            assert_eq!(env(cmd, "PGCONNECT_TIMEOUT").as_deref(), Some("10"));
        }
    }

    #[test]
    fn version_parsing() {
        assert_eq!(
            parse_major("pg_dump (PostgreSQL) 15.18 (Debian 15.18-0+deb12u1)\n"),
            Some(15)
        );
        assert_eq!(parse_major("pg_dump (PostgreSQL) 17beta1"), Some(17));
        assert_eq!(parse_major("pg_dump (PostgreSQL) 9.6.24"), Some(9));
        assert_eq!(parse_major("nonsense"), None);
    }

    #[test]
    fn version_probe_uses_psql_without_password_in_argv() {
        let engine = PostgresEngine::new(EngineOptions {
            pg_bin_dir: None,
            connect_timeout_secs: 10,
        });
        let d = db("db/app", Some("u"), Some("pw"));
        let cmd = engine.version_command(&d);
        assert_eq!(
            argv(&cmd),
            [
                "psql",
                "-h",
                "db",
                "-U",
                "u",
                "-w",
                "-X",
                "-A",
                "-t",
                "-c",
                "SHOW server_version_num",
                "-d",
                "app"
            ]
        );
        assert_eq!(env(&cmd, "PGPASSWORD").as_deref(), Some("pw"));
    }

    #[test]
    fn no_port_and_bin_dir() {
        let engine = PostgresEngine::new(EngineOptions {
            pg_bin_dir: Some("/usr/lib/postgresql/16/bin".into()),
            connect_timeout_secs: 5,
        });
        let d = db("db/app", None, None);
        let dump = engine.dump_command(&d);
        assert_eq!(
            argv(&dump),
            [
                "/usr/lib/postgresql/16/bin/pg_dump",
                "-h",
                "db",
                "-w",
                "-Fp",
                "app"
            ]
        );
        assert_eq!(env(&dump, "PGPASSWORD"), None);
    }
}
