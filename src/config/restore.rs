//! Restore and verification settings (`BACKUP_ADMIN_*`, `RESTORE_*`, `VERIFY_*`), and how
//! many sessions a load uses.

use std::path::PathBuf;

use super::env;
use super::loader::Loader;
use super::sections::MaxAge;
use super::{DAY, Secret};
use crate::model::spec::EngineKind;

impl RestoreSettings {
    /// The restore admin for an engine: `BACKUP_ADMIN_USER`, else (PostgreSQL) `PGUSER` or
    /// `postgres`, (MariaDB) `root`.
    pub fn admin_user_for(&self, kind: &EngineKind) -> String {
        if let Some(u) = &self.admin_user {
            return u.clone();
        }
        match kind {
            EngineKind::MariaDb => "root".into(),
            _ => self.pg_user.clone().unwrap_or_else(|| "postgres".into()),
        }
    }
}

impl RestoreSettings {
    pub(super) fn load(l: &Loader) -> RestoreSettings {
        let verify_max_age = match l.text(env::VERIFY_MAX_AGE).as_deref() {
            None => MaxAge::Default,
            Some("0") => MaxAge::Disabled,
            Some(_) => MaxAge::Fixed(l.duration_max(env::VERIFY_MAX_AGE, 2 * DAY, 3650 * DAY)),
        };
        RestoreSettings {
            admin_user: l.text(env::BACKUP_ADMIN_USER),
            pg_user: l.text(env::PGUSER),
            admin_password: l.text(env::BACKUP_ADMIN_PASSWORD).map(Secret::new),
            verify_dir: PathBuf::from(l.text(env::VERIFY_DIR).unwrap_or_else(|| "/var/lib/pgsql/data".into())),
            verify_max_age,
            verify_server_options: server_options(l),
            verify_drill: l.boolean(env::VERIFY_DRILL, false),
            verify_upgrade: match l.choice(env::VERIFY_UPGRADE, &["daily", "always", "false"]) {
                Some("always") => Rehearsal::Always,
                Some("false") => Rehearsal::Off,
                _ => Rehearsal::Daily,
            },
            in_place: l.boolean(env::RESTORE_IN_PLACE, false),
            keep_previous: l.boolean(env::RESTORE_KEEP_PREVIOUS, false),
            count_check: l.boolean(env::RESTORE_COUNT_CHECK, true),
            accept_errors: l.boolean(env::RESTORE_ACCEPT_ERRORS, false),
            jobs: l.text(env::RESTORE_JOBS).map(|_| l.int_in(env::RESTORE_JOBS, 4, 1, 64) as usize),
            verify_databases: l.int_in(env::VERIFY_JOBS, 1, 1, 32) as usize,
        }
    }
}

/// `VERIFY_SERVER_OPTIONS`: space-separated `name=value` settings.
fn server_options(l: &Loader) -> Vec<String> {
    let options: Vec<String> = l
        .text(env::VERIFY_SERVER_OPTIONS)
        .map(|t| t.split_whitespace().map(str::to_string).collect())
        .unwrap_or_default();
    for o in options.iter().filter(|o| !o.contains('=') || o.starts_with('=')) {
        l.error(format!("{}: VERIFY_SERVER_OPTIONS: \"{o}\" is not name=value", l.origin(env::VERIFY_SERVER_OPTIONS)));
    }
    options
}

/// Restore and verification settings.
#[derive(Debug, Clone)]
pub struct RestoreSettings {
    /// `BACKUP_ADMIN_USER` (see `admin_user_for`).
    pub admin_user: Option<String>,
    /// `PGUSER`: libpq's default user, the PostgreSQL admin when `BACKUP_ADMIN_USER` is unset.
    pub pg_user: Option<String>,
    /// `BACKUP_ADMIN_PASSWORD` (`-a` overrides; a terminal prompt when neither is given).
    pub admin_password: Option<Secret>,
    /// `VERIFY_DIR` (default `/var/lib/pgsql/data`, the upstream verification volume).
    pub verify_dir: PathBuf,
    pub verify_max_age: MaxAge,
    /// `VERIFY_SERVER_OPTIONS`: extra `name=value` settings for the throwaway server.
    pub verify_server_options: Vec<String>,
    /// `VERIFY_DRILL` (default false): each verification also restores one older backup per
    /// database, the one verified longest ago.
    pub verify_drill: bool,
    /// `VERIFY_UPGRADE` (default daily): after a PostgreSQL verification in the source's
    /// major, also restore into the newest installed major (an upgrade rehearsal).
    pub verify_upgrade: Rehearsal,
    /// `RESTORE_IN_PLACE` (default false): drop the target and load into it, instead of
    /// loading beside it and swapping (for servers without room for two copies).
    pub in_place: bool,
    /// `RESTORE_KEEP_PREVIOUS` (default false): keep the replaced database, renamed.
    pub keep_previous: bool,
    /// `RESTORE_COUNT_CHECK` (default true): compare each table's rows with the dump's.
    pub count_check: bool,
    /// `RESTORE_ACCEPT_ERRORS` (default false): a `-I` restore whose load had SQL errors (or
    /// missing rows) exits 0 instead of 1.
    pub accept_errors: bool,
    /// `RESTORE_JOBS` (1 to 64): parallel sessions of a PostgreSQL load, for restores and
    /// verifications alike; 1 loads in one session. Unset: see `jobs_for`.
    pub jobs: Option<usize>,
    /// `VERIFY_JOBS` (default 1, 1 to 32): databases a verification run checks at once, in
    /// its one throwaway server per engine.
    pub verify_databases: usize,
}

/// How often a database's newest backup is also restored into the newest installed PostgreSQL
/// major (`VERIFY_UPGRADE`): a rehearsal of a major upgrade, reported apart, never failing the
/// verification. Only when a major newer than the one verified in is installed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Rehearsal {
    /// At most once per database per day (a 2-core verification schedule does not double).
    #[default]
    Daily,
    Always,
    Off,
}

impl RestoreSettings {
    /// Sessions of a load into the server at `host`: `RESTORE_JOBS` when set; else, for a
    /// server on this machine (a unix socket, `localhost`, a loopback address — every
    /// throwaway server), this machine's cores, which the server shares with us; else 4.
    pub fn jobs_for(&self, host: &str) -> usize {
        match self.jobs {
            Some(n) => n,
            None if is_local(host) => cores(),
            None => 4,
        }
    }

    /// Sessions of a verification's load (its throwaway server runs here): `jobs_for` a
    /// local server.
    pub fn verify_sessions(&self) -> usize {
        self.jobs_for("/")
    }
}

fn cores() -> usize {
    std::thread::available_parallelism().map(std::num::NonZero::get).unwrap_or(1).clamp(1, 64)
}

/// A server on this machine, told from its name alone (nothing is resolved).
fn is_local(host: &str) -> bool {
    host.starts_with('/')
        || host.eq_ignore_ascii_case("localhost")
        || host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_local_server_is_told_by_its_name_alone() {
        for local in ["/var/run/postgresql", "localhost", "LOCALHOST", "127.0.0.1", "127.3.2.1", "::1", "[::1]"] {
            assert!(is_local(local), "{local}");
        }
        for remote in ["db", "db.example.org", "10.0.0.5", "::2", "localhost.example.org", "", "local"] {
            assert!(!is_local(remote), "{remote}");
        }
    }

    #[test]
    fn sessions_follow_restore_jobs_else_the_cores_for_a_local_server_else_four() {
        let env = super::super::Env::from_pairs::<&str, &str>([]);
        let mut s = RestoreSettings::load(&Loader::new(&env, Default::default(), Vec::new()));
        assert_eq!(s.jobs, None);
        assert_eq!(s.jobs_for("db.example.org"), 4);
        assert_eq!(s.jobs_for("127.0.0.1"), cores());
        assert_eq!(s.verify_sessions(), cores());
        s.jobs = Some(3);
        assert_eq!((s.jobs_for("db.example.org"), s.jobs_for("localhost"), s.verify_sessions()), (3, 3, 3));
    }
}
