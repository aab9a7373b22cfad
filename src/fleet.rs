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

use crate::cancel::Cancel;
use crate::config::Settings;
use crate::database::Database;
use crate::engine;
use crate::spec::DatabaseSpec;

pub use crate::shard::Shard;

/// The database name that means "every database on the server".
pub const ALL: &str = "*";

/// The databases of one run, and what could not be listed.
#[derive(Debug, Default)]
pub struct Fleet {
    pub databases: Vec<Database>,
    /// `*` specs whose server could not be listed: (the spec, why). A run fails them.
    pub unlisted: Vec<(DatabaseSpec, String)>,
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
    }
    fleet
}

/// The databases on `db`'s server (system and template databases left out).
///
/// # Errors
/// The server cannot be reached or listed with `db`'s credentials.
pub fn list(db: &Database, settings: &Settings, cancel: &Cancel) -> anyhow::Result<Vec<String>> {
    let engine = engine::for_kind(&db.spec.engine, &settings.engine)
        .ok_or_else(|| anyhow::anyhow!("no engine for {} in this build", db.spec.engine.name()))?;
    engine.list_databases(db, cancel)
}

fn same_database(a: &DatabaseSpec, b: &DatabaseSpec) -> bool {
    a.engine == b.engine && a.host == b.host && a.effective_port() == b.effective_port() && a.database == b.database
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
