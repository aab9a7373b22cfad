//! Fleets: `*` specs (every database on a server), exclusions, the coverage audit, shards.
//!
//! `resolve` turns the configured databases into the ones a run covers: a spec
//! `postgres=host:port/*` becomes one `Database` per database listed on that server at that
//! moment (templates, databases that refuse connections and `BACKUP_EXCLUDE_DATABASES` left
//! out; an explicit spec for the same database keeps its own settings), then a shard
//! (`--shard I/N`, or `BACKUP_SHARDS` with Kubernetes' `JOB_COMPLETION_INDEX`) keeps its share.
//! Everything downstream (backup runs, `--check`, `-v all`) sees plain `Database` values.
//!
//! The exclusion globs (`*`, `?`) are matched by hand: twelve lines, no crate needed.

use crate::config::Settings;
use crate::model::database::Database;
use crate::model::spec::DatabaseSpec;
use crate::system::cancel::Cancel;

pub mod audit;

pub use crate::model::shard::Shard;

/// The database name that means "every database on the server".
pub const ALL: &str = "*";

/// The databases of one run, and what could not be listed.
#[derive(Debug, Default)]
pub struct Fleet {
    pub databases: Vec<Database>,
    /// `*` specs whose server could not be listed: (the spec, why). A run fails them.
    pub unlisted: Vec<(DatabaseSpec, String)>,
    /// Databases a `*` spec found whose names cannot be a backup file's name: (the database,
    /// why). A run fails them, naming each (escaped); nothing is written for them.
    pub unrepresentable: Vec<(DatabaseSpec, String)>,
}

/// Whether a database's backups can be named: its encoded core name (`safe_name`) must leave
/// room for the timestamp and the longest suffixes in a 255-byte file name.
///
/// # Errors
/// Why not, for the run's report.
pub fn representable(spec: &DatabaseSpec) -> Result<(), String> {
    let core = spec.core_name();
    if core.len() > crate::catalog::layout::MAX_CORE_LEN {
        return Err(format!(
            "its file name would be {} bytes long once encoded ({} allowed); give it a shorter name, or leave it out with BACKUP_EXCLUDE_DATABASES",
            core.len(),
            crate::catalog::layout::MAX_CORE_LEN
        ));
    }
    Ok(())
}

/// The configured databases with `*` specs expanded, exclusions and the shard applied.
pub fn resolve(settings: &Settings, cancel: &Cancel) -> Fleet {
    let mut fleet = Fleet::default();
    let explicit: Vec<&DatabaseSpec> =
        settings.databases.iter().filter(|d| d.spec.database != ALL).map(|d| &d.spec).collect();
    for db in &settings.databases {
        if db.spec.database != ALL {
            fleet.databases.push(db.clone());
            continue;
        }
        match list(db, settings, cancel) {
            Err(e) => fleet.unlisted.push((db.spec.clone(), format!("{e:#}"))),
            Ok(names) => {
                for name in names {
                    let spec = DatabaseSpec { database: name, ..db.spec.clone() };
                    if let Err(why) = representable(&spec) {
                        fleet.unrepresentable.push((spec, why));
                        continue;
                    }
                    let excluded = settings.exclude_databases.iter().any(|g| glob(g, &spec.database));
                    let duplicate = explicit.iter().any(|e| same_database(e, &spec))
                        || fleet.databases.iter().any(|d| same_database(&d.spec, &spec));
                    if !excluded && !duplicate {
                        fleet.databases.push(Database { spec, ..db.clone() });
                    }
                }
            }
        }
    }
    if let Some(shard) = settings.shard {
        fleet.databases.retain(|d| shard.takes(&d.spec));
        // A server that cannot be listed is reported once, by shard 0.
        fleet.unlisted.retain(|_| shard.index == 0);
        fleet.unrepresentable.retain(|(spec, _)| shard.takes(spec));
    }
    fleet
}

/// The databases on `db`'s server (system and template databases left out).
///
/// # Errors
/// The server cannot be reached or listed with `db`'s credentials.
pub fn list(db: &Database, settings: &Settings, cancel: &Cancel) -> anyhow::Result<Vec<String>> {
    let engine = settings
        .engines
        .get(&db.spec.engine)
        .ok_or_else(|| anyhow::anyhow!("no engine for {} in this build", db.spec.engine.name()))?;
    engine.list_databases(db, cancel)
}

/// The same database on the same server (the loopback names count as one host, as in the audit).
fn same_database(a: &DatabaseSpec, b: &DatabaseSpec) -> bool {
    a.database == b.database && server_of(a) == server_of(b)
}

/// The databases the folder holds backups of, by the configuration, without asking any
/// server: each explicit line, and for a `host/*` line every database of that host with
/// backups in the folder (named as a run names them). For `-p` and the daemon's state.
pub fn on_disk(settings: &Settings, backups: &[crate::catalog::BackupFile]) -> Vec<Database> {
    let mut out: Vec<Database> = settings.databases.iter().filter(|d| d.spec.database != ALL).cloned().collect();
    for all in settings.databases.iter().filter(|d| d.spec.database == ALL) {
        let prefix = format!("{}-", all.spec.host);
        for core in backups.iter().map(|b| &b.core).filter(|c| c.starts_with(&prefix)) {
            let database = crate::model::safe_name::decode(&core[prefix.len()..]);
            let spec = DatabaseSpec { database, ..all.spec.clone() };
            // A core an explicit line owns stays that line's (names like `a-b`/`c` collide, C3).
            if !out.iter().any(|d| d.spec.core_name() == *core || same_database(&d.spec, &spec)) {
                out.push(Database { spec, ..all.clone() });
            }
        }
    }
    out
}

/// `*` (any run of characters) and `?` (one character) glob matching.
pub fn glob(pattern: &str, text: &str) -> bool {
    let (p, t): (Vec<char>, Vec<char>) = (pattern.chars().collect(), text.chars().collect());
    let (mut pi, mut ti, mut star, mut mark) = (0, 0, None, 0);
    while ti < t.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == t[ti]) {
            (pi, ti) = (pi + 1, ti + 1);
        } else if pi < p.len() && p[pi] == '*' {
            (star, mark, pi) = (Some(pi), ti, pi + 1);
        } else if let Some(s) = star {
            (pi, mark, ti) = (s + 1, mark + 1, mark + 1);
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|c| *c == '*')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs() {
        assert!(glob("*_test", "shop_test") && glob("tmp?", "tmp1") && glob("*", "") && glob("a*b*c", "aXbYbc"));
        assert!(!glob("*_test", "shop_tests") && !glob("tmp?", "tmp12") && !glob("a*b", "ac"));
        assert!(glob("ü*", "übung") && glob("shop", "shop") && !glob("shop", "Shop"));
    }
}

/// Databases on a configured server that no line covers (the coverage audit).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Coverage {
    /// `engine=host:port`.
    pub server: String,
    pub uncovered: Vec<String>,
    /// Why the server could not be listed, if it could not.
    pub error: Option<String>,
}

/// PostgreSQL's maintenance database: on every server, usually empty; not reported (list it in
/// a line, or back the server up with `host/*`, to cover it).
const MAINTENANCE: &str = "postgres";

/// The server of a spec, as the audit names it (the loopback names count as one host; a
/// server reached under two other names is audited as two).
pub fn server_of(spec: &DatabaseSpec) -> String {
    let host = if crate::model::spec::host_key(&spec.host) == "localhost" { "localhost" } else { &spec.host };
    format!("{}={host}:{}", spec.engine.name(), spec.effective_port().unwrap_or(0))
}

/// For every server in the configuration without a `*` line, the databases it holds that no
/// line covers and no `BACKUP_EXCLUDE_DATABASES` glob leaves out. Listed with the credentials
/// of the server's first line (MariaDB shows only what that user may see).
pub fn audit(settings: &Settings, cancel: &Cancel) -> Vec<Coverage> {
    let mut servers: Vec<(String, &Database)> = Vec::new();
    for db in &settings.databases {
        let server = server_of(&db.spec);
        if !servers.iter().any(|(s, _)| *s == server) {
            servers.push((server, db));
        }
    }
    let mut out = Vec::new();
    for (server, first) in servers {
        let lines: Vec<&Database> = settings.databases.iter().filter(|d| server_of(&d.spec) == server).collect();
        if lines.iter().any(|d| d.spec.database == ALL) {
            continue;
        }
        let coverage = match list(first, settings, cancel) {
            Err(e) => Coverage { server, uncovered: Vec::new(), error: Some(format!("{e:#}")) },
            Ok(names) => {
                let uncovered = names
                    .into_iter()
                    .filter(|n| !(first.spec.engine == crate::model::spec::EngineKind::Postgres && n == MAINTENANCE))
                    .filter(|n| !lines.iter().any(|d| d.spec.database == *n))
                    .filter(|n| !settings.exclude_databases.iter().any(|g| glob(g, n)))
                    // Reported in logs, notifications and a state file: escaped (`safe_name`).
                    .map(|n| crate::model::safe_name::printable(&n).into_owned())
                    .collect();
                Coverage { server, uncovered, error: None }
            }
        };
        out.push(coverage);
    }
    out
}
