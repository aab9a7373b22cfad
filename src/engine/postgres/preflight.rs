//! `--check` for a PostgreSQL database: what makes `pg_dump` fail in practice, found without
//! writing a backup. Connect and authenticate (the server's own message); the client's major
//! version against the server's; tables, views and sequences the backup user cannot read;
//! tables with row level security it would be refused on; large objects it cannot read
//! (PostgreSQL 16 and later); `pg_dumpall --roles-only`; the database's size.

use super::PostgresEngine;
use crate::engine::{Preflight, process};
use crate::model::database::Database;
use crate::model::finding::Finding;
use crate::system::cancel::Cancel;

/// Objects the current user cannot read, one row each: `kind<TAB>name`.
const UNREADABLE: &str = "SELECT kind || E'\\t' || name FROM (
  SELECT CASE c.relkind WHEN 'S' THEN 'sequence' WHEN 'v' THEN 'view' WHEN 'm' THEN 'materialized view' ELSE 'table' END AS kind,
         format('%I.%I', n.nspname, c.relname) AS name
  FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
  WHERE c.relkind IN ('r', 'p', 'S', 'v', 'm', 'f')
    AND n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg\\_toast%'
    AND NOT (CASE WHEN c.relkind = 'S' THEN has_sequence_privilege(c.oid, 'SELECT') ELSE has_table_privilege(c.oid, 'SELECT') END)
  ORDER BY 2) u";

/// Tables with row level security the user neither owns nor bypasses (`pg_dump` stops with
/// "query would be affected by row-level security policy").
const RLS: &str = "SELECT format('%I.%I', n.nspname, c.relname)
  FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
  WHERE c.relrowsecurity AND NOT pg_has_role(c.relowner, 'USAGE')
    AND NOT (SELECT rolsuper OR rolbypassrls FROM pg_roles WHERE rolname = current_user)
  ORDER BY 1";

/// Large objects the user cannot read (PostgreSQL 16+: `has_largeobject_privilege`).
const LARGE_OBJECTS: &str =
    "SELECT count(*) FROM pg_largeobject_metadata WHERE NOT has_largeobject_privilege(oid, 'SELECT')";

impl PostgresEngine {
    pub(super) fn check(&self, db: &Database, cancel: &Cancel) -> Preflight {
        let target = db.spec.to_string();
        let t = target.as_str();
        let mut out = Preflight::default();
        let conn = match db.conn() {
            Ok(c) => c,
            Err(e) => {
                out.findings.push(Finding::fail("credentials", t, format!("{e:#}"), "set the user and password"));
                return out;
            }
        };
        let server = match self.server_version(&conn, &db.spec.database, cancel) {
            Ok(v) => {
                out.findings.push(Finding::pass("connect", t, format!("PostgreSQL {}", v.1.trim())));
                v
            }
            Err(e) => {
                out.findings.push(Finding::fail(
                    "connect",
                    t,
                    format!("{e:#}"),
                    "check the host, port, user and password for this database (docs/CONFIG.md#credentials)",
                ));
                return out;
            }
        };
        // The client the dump will use for this server (`bin`): "server 14 → pg_dump 18".
        match self.installed().client_for(server.0) {
            Ok(folder) => {
                let (major, text) = folder.client.clone().unwrap_or_default();
                out.findings.push(Finding::pass(
                    "client version",
                    t,
                    format!("server {} → pg_dump {major} ({text}, {})", server.0, folder.dir.display()),
                ))
            }
            Err(e) => out.findings.push(Finding::fail(
                "client version",
                t,
                format!("{e:#}"),
                format!(
                    "install the PostgreSQL {} client tools or newer, or list their folder in PG_BIN_DIR",
                    server.0
                ),
            )),
        }
        // One session for every catalog question: each row is `tag<TAB>value`.
        let mut sql = format!(
            "SELECT 'U' || E'\\t' || x FROM ({UNREADABLE}) AS u(x) UNION ALL SELECT 'R' || E'\\t' || x FROM ({RLS}) AS r(x) \
             UNION ALL SELECT 'S' || E'\\t' || pg_database_size(current_database())"
        );
        if server.0 >= 16 {
            sql.push_str(&format!(" UNION ALL SELECT 'L' || E'\\t' || n FROM ({LARGE_OBJECTS}) AS l(n)"));
        }
        let answer = match self.queries(&conn, &db.spec.database, &[&sql], cancel) {
            Ok(a) => a,
            Err(e) => {
                out.findings.push(Finding::fail("privileges", t, format!("{e:#}"), ""));
                String::new()
            }
        };
        let tagged = |tag: &str| -> Vec<&str> {
            answer.lines().filter_map(|l| l.strip_prefix(tag)?.strip_prefix('\t')).collect()
        };
        let unreadable = tagged("U");
        if unreadable.is_empty() {
            out.findings.push(Finding::pass("privileges", t, "every table, view and sequence is readable"));
        } else {
            let shown: Vec<String> = unreadable.iter().take(10).map(|l| l.replace('\t', " ")).collect();
            out.findings.push(Finding::fail(
                "privileges",
                t,
                format!("{} object(s) the backup user cannot read: {}", unreadable.len(), shown.join(", ")),
                "GRANT SELECT on them to the backup user (or back up as their owner)",
            ));
        }
        let rls = tagged("R");
        if !rls.is_empty() {
            out.findings.push(Finding::fail(
                "row level security",
                t,
                format!("pg_dump refuses tables with row level security: {}", rls.join(", ")),
                "ALTER ROLE <backup user> BYPASSRLS, or back up as the tables' owner",
            ));
        }
        if let Some(n) = tagged("L").first().and_then(|n| n.parse::<u64>().ok()).filter(|n| *n > 0) {
            out.findings.push(Finding::fail(
                "large objects",
                t,
                format!("{n} large object(s) the backup user cannot read"),
                "GRANT SELECT ON LARGE OBJECT ... to the backup user",
            ));
        }
        out.database_bytes = tagged("S").first().and_then(|n| n.parse().ok());
        match process::capture(self.roles_command(db, &conn), "pg_dumpall", cancel) {
            Ok(_) => out.findings.push(Finding::pass("roles", t, "pg_dumpall --roles-only works")),
            Err(e) => out.findings.push(Finding::fail(
                "roles",
                t,
                format!("{e:#}"),
                "pg_dumpall --roles-only must work for the backup user (it reads pg_roles); see docs/CHECK.md",
            )),
        }
        out
    }
}

/// An SQL hook, checked without running it: compiled in a `DO` block that returns before its
/// first statement (PL/pgSQL parses every statement when it compiles: syntax errors show);
/// a single `SELECT`/`INSERT`/`UPDATE`/`DELETE`/`WITH`/`VALUES` is also `PREPARE`d in a
/// rolled-back transaction (missing tables and columns show).
pub fn check_sql(engine: &PostgresEngine, db: &Database, sql: &str, cancel: &Cancel) -> anyhow::Result<Option<String>> {
    let body = sql.trim().trim_end_matches(';').trim_end();
    if body.is_empty() || body.contains("$bc_check$") {
        return Ok(None);
    }
    let conn = db.conn()?;
    let compile = format!("DO $bc_check$ BEGIN RETURN; {body}; END $bc_check$");
    let lower = body.to_ascii_lowercase();
    let preparable = !body.contains(';')
        && ["select", "insert", "update", "delete", "with", "values"].iter().any(|k| lower.starts_with(k));
    if preparable {
        let prepare = format!("PREPARE bc_check AS {body}");
        engine.queries(&conn, &db.spec.database, &[&compile, "BEGIN", &prepare, "ROLLBACK"], cancel)?;
        Ok(Some("syntax and the objects it names checked (compiled, and PREPAREd in a rolled-back transaction)".into()))
    } else {
        engine.queries(&conn, &db.spec.database, &[&compile], cancel)?;
        Ok(Some("syntax checked (compiled in a DO block that returns before running it); not run".into()))
    }
}
