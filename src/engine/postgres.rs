//! PostgreSQL: a backup is the `pg_dumpall --roles-only --no-role-passwords` output followed by
//! the `pg_dump -Fp` output, in one stream (contract C4, the same content as upstream).
//!
//! Passwords go to the children through `PGPASSWORD` in their environment, never argv; `-w`
//! makes the tools fail instead of prompting on a terminal.

use std::io::Write;
use std::path::PathBuf;
use std::process::Command;

use anyhow::Context;

use super::{Engine, EngineOptions, process};
use crate::cancel::Cancel;
use crate::config::Database;
use crate::spec::EngineKind;

/// The PostgreSQL engine.
#[derive(Debug, Clone)]
pub struct PostgresEngine {
    options: EngineOptions,
}

impl PostgresEngine {
    pub fn new(options: EngineOptions) -> Self {
        PostgresEngine { options }
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
        process::stream_stdout(self.roles_command(db), "pg_dumpall", out, cancel)
            .context("dumping roles")?;
        process::stream_stdout(self.dump_command(db), "pg_dump", out, cancel)
            .context("dumping the database")?;
        Ok(())
    }
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
