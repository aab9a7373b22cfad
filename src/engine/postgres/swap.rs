//! Where a PostgreSQL restore loads, and how the result replaces the target.
//!
//! Default (`Placement::Swap`): load into `<db>__bc_restore` (created from `template0`, as
//! pg_dump's documentation asks for a plain dump), check it, then in one transaction terminate
//! the target's sessions and rename the target aside and the new database in; drop the old one
//! unless it is to be kept. Until that transaction commits the target is untouched, and a
//! failed or interrupted load drops the temporary database (`LoadDatabase`'s `Drop`).

use anyhow::Context;
use chrono::Utc;
use tracing::{info, warn};

use super::settings::Locale;
use super::{PostgresEngine, quote_ident, quote_literal};
use crate::engine::{Placement, RestoreRequest};
use crate::system::cancel::Cancel;

/// The maintenance database the admin connects to.
pub const MAINTENANCE_DB: &str = "postgres";
/// PostgreSQL's limit on identifier length, in bytes.
const NAME_MAX: usize = 63;
/// Attempts at the rename transaction (a client may reconnect between terminate and rename).
const SWAP_ATTEMPTS: u32 = 5;

/// A query with one row when `role` exists on the server, none otherwise.
fn role_exists(role: &str) -> String {
    format!("SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = {}", quote_literal(role))
}

/// `<db><suffix>`, the database name cut (at a character boundary) so that the whole fits.
pub fn side_name(db: &str, suffix: &str) -> String {
    let mut cut = NAME_MAX.saturating_sub(suffix.len()).min(db.len());
    while !db.is_char_boundary(cut) {
        cut -= 1;
    }
    format!("{}{suffix}", &db[..cut])
}

/// The database a load writes into. Dropped before `finish`, a temporary one is removed.
pub struct LoadDatabase<'a> {
    engine: &'a PostgresEngine,
    req: &'a RestoreRequest,
    pub name: String,
    temporary: bool,
    major: u32,
}

impl<'a> LoadDatabase<'a> {
    /// Creates the database to load into (dropping, for `InPlace`, the target first), with the
    /// backup's encoding and locale when it recorded them.
    /// Returns it and the number of sessions terminated on the target.
    ///
    /// # Errors
    /// The admin cannot drop or create databases.
    pub fn create(
        engine: &'a PostgresEngine,
        req: &'a RestoreRequest,
        major: u32,
        locale: Option<&Locale>,
        cancel: &Cancel,
    ) -> anyhow::Result<(Self, u64)> {
        let db = &req.database;
        let (name, temporary) = match req.placement {
            Placement::Swap { .. } => (side_name(db, "__bc_restore"), true),
            Placement::InPlace | Placement::Fresh => (db.clone(), false),
        };
        let mut sql = Vec::new();
        let mut terminated = 0;
        if req.placement == Placement::InPlace {
            info!(database = %db, "Dropping and recreating the database (RESTORE_IN_PLACE).");
            terminated = count_sessions(engine, req, db, cancel)?;
            sql.extend(drop_statements(db, major));
        } else if temporary {
            // A temporary database left by a killed restore of the same target.
            sql.extend(drop_statements(&name, major));
        }
        let create = format!("CREATE DATABASE {} TEMPLATE template0", quote_ident(&name));
        let options = locale.map(|l| l.create_options(major)).unwrap_or_default();
        sql.push(format!("{create}{options}"));
        let statements: Vec<&str> = sql.iter().map(String::as_str).collect();
        let what = if req.placement == Placement::InPlace {
            format!("dropping and recreating database {db} (the old copy may already be gone)")
        } else {
            format!("creating database {name} to restore into (the target {db} is untouched)")
        };
        match engine.queries(&req.admin, MAINTENANCE_DB, &statements, cancel) {
            Ok(_) => {}
            // A throwaway verification server may lack the backup's locale; the data is
            // still proven with the server's own.
            Err(e) if req.placement == Placement::Fresh && !options.is_empty() => {
                warn!(error = %format!("{e:#}"), locale = %options.trim(), "The verification server cannot create the backup's locale; using its own.");
                engine.queries(&req.admin, MAINTENANCE_DB, &[&create], cancel).context(what)?;
            }
            Err(e) if !options.is_empty() => {
                return Err(e).context(format!(
                    "{what}, with the backup's encoding and locale ({}): install that locale on the server",
                    options.trim()
                ));
            }
            Err(e) => return Err(e).context(what),
        }
        Ok((LoadDatabase { engine, req, name, temporary, major }, terminated))
    }

    /// The administrative connection that made it.
    pub fn admin(&self) -> &'a crate::engine::Conn {
        &self.req.admin
    }

    /// Grants the application user everything on the new database, as upstream does; a
    /// warning when that role does not exist on this server.
    pub fn grant_owner(&self, cancel: &Cancel) -> anyhow::Result<Option<String>> {
        let Some(owner) = &self.req.owner else { return Ok(None) };
        let exists = role_exists(owner);
        let grant = format!("GRANT ALL ON DATABASE {} TO {}", quote_ident(&self.name), quote_ident(owner));
        let sql = [
            format!("SELECT count(*) FROM ({exists}) AS owner"),
            format!("DO {}", quote_literal(&format!("BEGIN IF EXISTS ({exists}) THEN {grant}; END IF; END"))),
        ];
        let statements: Vec<&str> = sql.iter().map(String::as_str).collect();
        let out = self.engine.queries(&self.req.admin, MAINTENANCE_DB, &statements, cancel)?;
        Ok((out.trim() != "1").then(|| format!("role {owner} does not exist on the target server; GRANT skipped")))
    }

    /// Hands the new database to the owner it had when it was backed up (the settings section
    /// records it), so that its owner may again do what only the owner may: on PostgreSQL 15+,
    /// create in schema `public`, which belongs to `pg_database_owner`. A warning, never a
    /// failure, when that role does not exist here or the admin may not hand the database over.
    pub fn set_owner(&self, owner: &str, cancel: &Cancel) -> anyhow::Result<Option<String>> {
        let what = || format!("making {owner} the owner of database {}", self.name);
        let mut session = self.engine.session(&self.req.admin, MAINTENANCE_DB, "").with_context(what)?;
        let _watch = session.watch(cancel);
        let exists = format!("SELECT count(*) FROM ({}) AS owner", role_exists(owner));
        let rows = session.query(&exists).map_err(|e| anyhow::anyhow!("{}", e.lines().join(" "))).with_context(what)?;
        if rows.first().and_then(|r| r.first()).and_then(Option::as_deref) != Some("1") {
            return Ok(Some(format!(
                "the backup's database owner {owner} does not exist on the target server; the database is owned by the admin user"
            )));
        }
        let alter = format!("ALTER DATABASE {} OWNER TO {}", quote_ident(&self.name), quote_ident(owner));
        Ok(session
            .exec(alter.as_bytes())
            .err()
            .map(|e| format!("the backup's database owner {owner} could not be restored: {}", e.lines().join(" "))))
    }

    /// Puts the loaded database in the target's place (`Swap`), or just keeps it.
    /// Returns the sessions terminated and the name of a kept previous database.
    ///
    /// # Errors
    /// The rename fails (the loaded copy is then dropped and the target is as it was).
    pub fn finish(mut self, cancel: &Cancel) -> anyhow::Result<(u64, Option<String>)> {
        let Placement::Swap { keep_previous } = self.req.placement else {
            self.temporary = false;
            return Ok((0, None));
        };
        let db = self.req.database.clone();
        let previous = if keep_previous {
            side_name(&db, &format!("_before_restore_{}", Utc::now().format("%Y%m%d%H%M%S")))
        } else {
            side_name(&db, "__bc_old")
        };
        let (engine, major) = (self.engine, self.major);
        let admin = &self.req.admin;
        if !keep_previous {
            let leftover = drop_statements(&previous, major);
            let leftover: Vec<&str> = leftover.iter().map(String::as_str).collect();
            engine.queries(admin, MAINTENANCE_DB, &leftover, cancel)?;
        }
        let terminated = count_sessions(engine, self.req, &db, cancel)?;
        let swap = swap_statement(&db, &self.name, &previous, major);
        let mut attempt = 1;
        loop {
            match engine.queries(admin, MAINTENANCE_DB, &[&swap], cancel) {
                Ok(_) => break,
                Err(e) if attempt < SWAP_ATTEMPTS && !cancel.is_cancelled() => {
                    warn!(database = %db, attempt, error = %format!("{e:#}"), "Swapping the restored database in failed; retrying.");
                    std::thread::sleep(std::time::Duration::from_millis(200 * u64::from(attempt)));
                    attempt += 1;
                }
                Err(e) => {
                    return Err(e).with_context(|| format!("renaming the restored copy to {db}; {db} was not changed"));
                }
            }
        }
        self.temporary = false;
        if terminated > 0 {
            warn!(database = %db, sessions = terminated, "Terminated sessions that were connected to the database.");
        }
        if keep_previous {
            info!(database = %db, previous = %previous, "The previous database was kept (RESTORE_KEEP_PREVIOUS).");
            return Ok((terminated, Some(previous)));
        }
        let drop = drop_statements(&previous, major);
        let drop: Vec<&str> = drop.iter().map(String::as_str).collect();
        if let Err(e) = engine.queries(admin, MAINTENANCE_DB, &drop, cancel) {
            warn!(database = %previous, error = %format!("{e:#}"), "The previous copy could not be dropped; drop it by hand.");
        }
        Ok((terminated, None))
    }
}

impl Drop for LoadDatabase<'_> {
    fn drop(&mut self) {
        if !self.temporary {
            return;
        }
        // A fresh token: the restore's own may be cancelled, and this must still run.
        let sql = drop_statements(&self.name, self.major);
        let sql: Vec<&str> = sql.iter().map(String::as_str).collect();
        match self.engine.queries(&self.req.admin, MAINTENANCE_DB, &sql, &Cancel::new()) {
            Ok(_) => info!(database = %self.name, "Removed the temporary restore database; the target is untouched."),
            Err(e) => {
                warn!(database = %self.name, error = %format!("{e:#}"), "Could not remove the temporary restore database; drop it by hand.")
            }
        }
    }
}

fn count_sessions(engine: &PostgresEngine, req: &RestoreRequest, db: &str, cancel: &Cancel) -> anyhow::Result<u64> {
    let sql = format!(
        "SELECT count(*) FROM pg_stat_activity WHERE datname = {} AND pid <> pg_backend_pid()",
        quote_literal(db)
    );
    Ok(engine.queries(&req.admin, MAINTENANCE_DB, &[&sql], cancel)?.trim().parse().unwrap_or(0))
}

/// Drops `db` if it exists, ending its sessions first.
fn drop_statements(db: &str, major: u32) -> Vec<String> {
    if major >= 13 {
        vec![format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", quote_ident(db))]
    } else {
        vec![
            format!(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE datname = {} AND pid <> pg_backend_pid()",
                quote_literal(db)
            ),
            format!("DROP DATABASE IF EXISTS {}", quote_ident(db)),
        ]
    }
}

/// One transaction: end the target's sessions (waiting for them to go), rename the target
/// aside (when it exists) and the loaded copy in.
fn swap_statement(db: &str, loaded: &str, previous: &str, major: u32) -> String {
    let sessions = format!("FROM pg_stat_activity WHERE datname = {} AND pid <> pg_backend_pid()", quote_literal(db));
    let terminate = if major >= 14 {
        format!("PERFORM pg_terminate_backend(pid, 10000) {sessions};")
    } else {
        format!(
            "PERFORM pg_terminate_backend(pid) {sessions}; \
             FOR i IN 1..100 LOOP EXIT WHEN NOT EXISTS (SELECT 1 {sessions}); PERFORM pg_sleep(0.1); END LOOP;"
        )
    };
    let body = format!(
        "BEGIN {terminate} \
         IF EXISTS (SELECT 1 FROM pg_database WHERE datname = {}) THEN ALTER DATABASE {} RENAME TO {}; END IF; \
         ALTER DATABASE {} RENAME TO {}; END",
        quote_literal(db),
        quote_ident(db),
        quote_ident(previous),
        quote_ident(loaded),
        quote_ident(db),
    );
    format!("DO {}", quote_literal(&body))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn side_names_fit_postgres_identifiers() {
        assert_eq!(side_name("app", "__bc_restore"), "app__bc_restore");
        let long = "ä".repeat(40);
        let name = side_name(&long, "__bc_restore");
        assert!(name.len() <= 63 && name.ends_with("__bc_restore"), "{name}");
        assert!(name.starts_with("ää"));
    }

    #[test]
    fn swap_is_one_statement_that_renames_both() {
        let sql = swap_statement("app'db", "app'db__bc_restore", "app'db__bc_old", 15);
        assert!(sql.starts_with("DO '"), "{sql}");
        assert!(sql.contains("pg_terminate_backend(pid, 10000)"), "{sql}");
        assert!(sql.contains("ALTER DATABASE \"app''db\" RENAME TO \"app''db__bc_old\""), "{sql}");
        assert!(sql.contains("ALTER DATABASE \"app''db__bc_restore\" RENAME TO \"app''db\""), "{sql}");
        assert!(swap_statement("a", "b", "c", 13).contains("pg_sleep"));
    }
}
