//! Settings: everything a run needs, loaded once from the environment, `backup.conf` and
//! `backup.toml`, validated, then immutable. Credentials and `PATH` are taken at load too;
//! only password files are read again at use (rotated secrets).
//!
//! Parse, then validate, then build: every problem is collected with its source
//! (`backup.conf:12: ...`, `environment: NUM_BACKUPS=...`) and reported together; the caller
//! exits 2 before doing any work. Nothing outside this module reads the environment.

pub mod backup_conf;
mod credentials;
pub mod env;
pub mod hooks;
mod loader;
pub mod pitr;
mod restore;
mod sections;
pub mod toml_file;

use loader::Loader;

pub use restore::{Rehearsal, RestoreSettings};
pub use sections::{DaemonSettings, FtpSettings, MaxAge, MirrorSettings, NotifySettings, S3Settings, WebhookFormat};

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::time::Duration;

pub use crate::model::database::{Credentials, Database};
pub use crate::model::secret::{Secret, redact_url};
pub use backup_conf::CronLine;
pub use env::Env;

use crate::catalog::anomaly::Thresholds;
use crate::model::database::EngineOptions;
use crate::model::policy::Policy;
use crate::model::spec::{DatabaseSpec, EngineKind};
use crate::model::timezone::Zone;
use crate::stream::compress::Compression;
use crate::stream::crypt::{Keys, Recipients};

/// A database spec that this process does not back up, and why.
#[derive(Debug, Clone)]
pub struct Skipped {
    pub spec: DatabaseSpec,
    pub reason: String,
}

pub use crate::model::error::ConfigErrors;

/// Validated settings.
#[derive(Debug, Clone)]
pub struct Settings {
    pub policy: Policy,
    /// `BACKUP_ANOMALY_ROWS_PCT`, `BACKUP_ANOMALY_SIZE_PCT` (the hold is in `policy`).
    pub anomaly: Thresholds,
    /// `BACKUP_ENCRYPTION_RECIPIENTS`: new backups are encrypted to these (`crypt`).
    pub encryption: Option<Recipients>,
    /// `BACKUP_ENCRYPTION_IDENTITY_FILE`: what restore and verify decrypt with.
    pub keys: Keys,
    pub backup_dir: PathBuf,
    pub backup_period: Duration,
    pub conf_path: PathBuf,
    pub conf_found: bool,
    /// The configured databases; a `*` spec stands for every database on its server
    /// (`fleet::resolve` expands it at each run).
    pub databases: Vec<Database>,
    /// `BACKUP_EXCLUDE_DATABASES`: globs of databases a `*` spec leaves out.
    pub exclude_databases: Vec<String>,
    /// `--shard I/N`, `BACKUP_SHARD`, or `BACKUP_SHARDS` with `JOB_COMPLETION_INDEX`.
    pub shard: Option<crate::model::shard::Shard>,
    /// `BACKUP_JOBS` (default 1): databases backed up at once by one run.
    pub jobs: usize,
    /// `BACKUP_JOBS_PER_HOST` (default `BACKUP_JOBS`): of those, at most this many on one server.
    pub jobs_per_host: usize,
    /// `BACKUP_WHEN_LOCKED` (default skip): a database another process is backing up.
    pub when_locked: crate::catalog::lock::WhenLocked,
    pub skipped: Vec<Skipped>,
    /// True when the databases came from the env fallback (no spec lines in backup.conf).
    pub databases_from_env: bool,
    pub cron: Vec<CronLine>,
    pub zone: Zone,
    /// `TABLE_SCHEMA` (comma-separated); `None` = every non-system schema.
    pub table_schema: Option<Vec<String>>,
    pub restore: RestoreSettings,
    pub daemon: DaemonSettings,
    pub server_timeout: Duration,
    pub compression: Compression,
    /// The engines, built once for the process from `PG_BIN_DIR`, `PATH` and the connect
    /// timeout (their options: `engines.options()`).
    pub engines: crate::engine::Engines,
    pub notify: NotifySettings,
    pub mirrors: MirrorSettings,
    /// `BACKUP_TOML` (default: `backup.toml` beside backup.conf) and whether it exists.
    pub toml_path: PathBuf,
    pub toml_found: bool,
    /// Lifecycle hooks (backup.toml only).
    pub hooks: hooks::Hooks,
    /// Per-database settings from backup.toml, by core name.
    database_overrides: HashMap<String, toml_file::TomlDatabase>,
    /// Variable → where its value came from (`environment`, `backup.toml:12 [...] key`, a file).
    pub sources: BTreeMap<String, String>,
    /// `PITR_SERVERS`: the servers whose WAL is archived (being built).
    pub pitr: pitr::PitrSettings,
    /// The credential variables, taken from the environment at load.
    credentials: credentials::CredentialVars,
}

impl Settings {
    /// How throwaway servers start (verification, drills, point-in-time recovery): under
    /// `VERIFY_DIR`, within `DATABASE_SERVER_TIMEOUT`, with `VERIFY_SERVER_OPTIONS`.
    pub fn throwaway_options(&self) -> crate::engine::ServerOptions {
        crate::engine::ServerOptions {
            work_dir: self.restore.verify_dir.clone(),
            start_timeout: self.server_timeout,
            settings: self.restore.verify_server_options.clone(),
        }
    }

    /// Loads settings from `env` and the backup.conf at `conf_override`, `BACKUP_CONF`, or
    /// `./backup.conf`.
    ///
    /// # Errors
    /// Every problem found, each naming its file and line or its variable.
    pub fn load(env: Env, conf_override: Option<&Path>) -> Result<Settings, ConfigErrors> {
        let conf_path = conf_override
            .map(Path::to_path_buf)
            .unwrap_or_else(|| PathBuf::from(env.get(env::BACKUP_CONF).unwrap_or("backup.conf")));
        let toml_path = env
            .get(env::BACKUP_TOML)
            .map(PathBuf::from)
            .unwrap_or_else(|| conf_path.parent().unwrap_or(Path::new("")).join("backup.toml"));
        let (toml, mut early_errors) = match toml_file::load(&toml_path) {
            Ok(t) => (t, Vec::new()),
            Err(e) => (None, e),
        };
        let toml_found = toml.is_some();
        let toml = toml.unwrap_or_default();
        let l = Loader::new(&env, toml.layer.clone(), std::mem::take(&mut early_errors));
        let strategy = l.text(env::BACKUP_STRATEGY).unwrap_or_else(|| "rolling".into());
        // Counts: upstream gave a negative WEEKLY_BACKUPS a meaning (the daily strategy) and a
        // negative MONTHLY_BACKUPS one under it (ignored); other negatives had none.
        let num = l.int_in(env::NUM_BACKUPS, 31, 0, MAX_COUNT);
        let daily = l.int_in(env::DAILY_BACKUPS, 6, 0, MAX_COUNT);
        let weekly = l.int_in(env::WEEKLY_BACKUPS, 4, -MAX_COUNT, MAX_COUNT);
        let monthly = l.int_in(env::MONTHLY_BACKUPS, 1, -MAX_COUNT, MAX_COUNT);
        let mut policy = Policy::from_counts(&strategy, num, daily, weekly, monthly).unwrap_or_else(|e| {
            l.error(format!("{}: BACKUP_STRATEGY: {e}", l.origin(env::BACKUP_STRATEGY)));
            Policy::from_counts("rolling", 31, 6, 4, 1).expect("defaults are valid")
        });
        policy.anomaly_hold = l.int_in(env::BACKUP_ANOMALY_HOLD, 2, 0, MAX_COUNT) as u32;
        let anomaly = Thresholds {
            rows_pct: l.int_in(env::BACKUP_ANOMALY_ROWS_PCT, 50, 0, 100) as u32,
            size_pct: l.int_in(env::BACKUP_ANOMALY_SIZE_PCT, 50, 0, 100_000) as u32,
        };
        let backup_dir = backup_dir(&l);
        let backup_period = l.duration_max(env::BACKUP_PERIOD, DAY, 366 * DAY);
        let timeout = l.int_in(env::DATABASE_SERVER_TIMEOUT, 120, 1, 86_400);
        l.choice(env::LOG_FORMAT, &["text", "json"]);
        l.choice(env::BACKUP_LOG_LEVEL, &["error", "warn", "info", "debug", "trace"]);
        let notify = NotifySettings::load(&l);
        let mirrors = MirrorSettings::load(&l);
        let connect_timeout = l.int_in(env::DATABASE_CONNECT_TIMEOUT, 30, 1, 3600);
        let compression = Compression::parse(
            l.text(env::BACKUP_COMPRESSION).as_deref(),
            l.text(env::BACKUP_COMPRESSION_LEVEL).as_deref(),
            l.text(env::BACKUP_COMPRESSION_THREADS).as_deref(),
        )
        .unwrap_or_else(|e| {
            l.error(format!("{}: {e}", l.origin(env::BACKUP_COMPRESSION_LEVEL)));
            Compression::default()
        });
        let (conf, conf_found) = read_conf(&conf_path, &mut l.errors.borrow_mut());
        let mut cron = toml.schedules.clone();
        cron.extend(conf.cron);

        let (encryption, keys) = encryption(&l);
        let mut settings = Settings {
            policy,
            anomaly,
            encryption,
            keys,
            backup_dir,
            backup_period,
            conf_path,
            conf_found,
            databases: Vec::new(),
            exclude_databases: l
                .text(env::BACKUP_EXCLUDE_DATABASES)
                .map(|t| t.split([',', ' ']).filter(|s| !s.is_empty()).map(str::to_string).collect())
                .unwrap_or_default(),
            shard: sections::shard(&l),
            jobs: l.int_in(env::BACKUP_JOBS, 1, 1, 64) as usize,
            // A user who asks for 4 gets 4, also on one server, unless capped.
            jobs_per_host: {
                let jobs = l.int_in(env::BACKUP_JOBS, 1, 1, 64);
                l.int_in(env::BACKUP_JOBS_PER_HOST, jobs, 1, 64) as usize
            },
            when_locked: l
                .choice(env::BACKUP_WHEN_LOCKED, &crate::catalog::lock::WhenLocked::CHOICES)
                .and_then(crate::catalog::lock::WhenLocked::parse)
                .unwrap_or_default(),
            skipped: Vec::new(),
            databases_from_env: false,
            cron,
            zone: Zone::parse(l.text(env::TZ).as_deref()).unwrap_or_else(|e| {
                l.error(format!("{}: {e}", l.origin(env::TZ)));
                Zone::System(None)
            }),
            toml_path,
            toml_found,
            hooks: hooks::Hooks(toml.hooks.clone()),
            database_overrides: toml.databases.iter().map(|d| (d.spec.core_name(), d.clone())).collect(),
            table_schema: l
                .text(env::TABLE_SCHEMA)
                .map(|t| t.split(',').map(|s| s.trim().to_string()).filter(|s| !s.is_empty()).collect()),
            daemon: DaemonSettings::load(&l),
            restore: RestoreSettings::load(&l),
            server_timeout: Duration::from_secs(timeout.max(1) as u64),
            compression,
            engines: crate::engine::Engines::new(EngineOptions {
                // A `:`-separated list of folders, as PATH is written.
                pg_bin_dirs: l.text(env::PG_BIN_DIR).map(|t| std::env::split_paths(&t).collect()).unwrap_or_default(),
                connect_timeout_secs: connect_timeout as u32,
                search_path: env.get("PATH").map(|p| std::env::split_paths(p).collect()).unwrap_or_default(),
                restore_loader: match l.choice(env::RESTORE_LOADER, &["libpq", "psql"]) {
                    Some("psql") => crate::model::database::RestoreLoader::Psql,
                    _ => crate::model::database::RestoreLoader::Libpq,
                },
                restore_spill_bytes: (l.int_in(env::RESTORE_SPILL_MB, 512, 0, 1 << 20) as u64) << 20,
            }),
            notify,
            mirrors,
            credentials: credentials::CredentialVars::capture(
                &env,
                toml.databases.iter().map(|d| (d.spec.core_name(), d.clone())).collect(),
            ),
            sources: BTreeMap::new(),
            pitr: pitr::PitrSettings::default(),
        };
        settings.pitr = pitr::PitrSettings::load(
            &l,
            &settings.credentials,
            &settings.restore.verify_dir,
            &mut settings.cron,
            compression,
        );

        let mut specs: Vec<(DatabaseSpec, String)> =
            toml.databases.iter().map(|d| (d.spec.clone(), d.source.clone())).collect();
        specs.extend(conf.specs.into_iter().map(|s| (s.spec, format!("{}:{}", settings.conf_path.display(), s.line))));
        if specs.is_empty() {
            settings.databases_from_env = true;
            match fallback_spec(&env) {
                Ok(spec) => specs.push((spec, "environment".into())),
                Err(e) => l.error(e),
            }
        }
        let mut seen: HashMap<String, String> = HashMap::new();
        for (spec, source) in specs {
            if let EngineKind::Foreign(kind) = &spec.engine {
                let reason = format!("{kind} databases are backed up by the {kind} variant of backup-container");
                settings.skipped.push(Skipped { spec, reason });
                continue;
            }
            if let Some(first) = seen.insert(spec.core_name(), source.clone()) {
                l.error(format!(
                    "{source}: database {spec} has the same host and database name as {first}; \
                     their backup files would collide"
                ));
                continue;
            }
            let (credentials, problems) = settings.credentials.resolve(&spec);
            for p in problems {
                l.error(p);
            }
            let options =
                settings.database_overrides.get(&spec.core_name()).map(|d| d.options.clone()).unwrap_or_default();
            settings.databases.push(Database { spec, credentials, options });
        }
        settings.sources = l.sources.take();
        let errors = l.errors.into_inner();
        if errors.is_empty() { Ok(settings) } else { Err(ConfigErrors(errors)) }
    }

    /// The configured database for `spec`, or one with the usual credentials when `spec`
    /// is not configured (restore or verify of another database).
    pub fn database_for(&self, spec: &DatabaseSpec) -> Database {
        // For a database that is not configured, problems (an unreadable password file) show
        // when it is used: `Database::conn` reads the file again and names it.
        self.databases.iter().find(|d| d.spec.core_name() == spec.core_name()).cloned().unwrap_or_else(|| Database {
            spec: spec.clone(),
            credentials: self.credentials.resolve(spec).0,
            options: Default::default(),
        })
    }

    /// Problems that stop a backup before it starts: databases without a user.
    pub fn check_backup_ready(&self) -> Result<(), ConfigErrors> {
        let errors: Vec<String> = self
            .databases
            .iter()
            .filter(|d| d.credentials.user.is_none())
            .map(|d| format!("database {}: no user name: set one of {}", d.spec, d.credentials.user_source))
            .collect();
        if errors.is_empty() { Ok(()) } else { Err(ConfigErrors(errors)) }
    }

    /// The interval between backups that the schedule implies at `now`: the longest gap of
    /// the cron lines that run backups, or `BACKUP_PERIOD` in legacy mode; `None` when cron
    /// lines exist but none runs a backup.
    pub fn backup_interval(&self, now: chrono::DateTime<chrono::Utc>) -> Option<Duration> {
        if self.cron.is_empty() {
            return Some(self.backup_period);
        }
        self.cron
            .iter()
            .filter(|c| c.action() == backup_conf::CronAction::Backup)
            .filter_map(|c| c.schedule.interval_hint(now, &self.zone))
            .max()
    }

    /// The staleness limit for verification at `now`, or `None` when disabled.
    pub fn verify_max_age(&self, now: chrono::DateTime<chrono::Utc>) -> Option<Duration> {
        match self.restore.verify_max_age {
            MaxAge::Disabled => None,
            MaxAge::Fixed(d) => Some(d),
            MaxAge::Default => Some(self.backup_interval(now).map_or(Duration::from_secs(48 * 3600), |d| d * 2)),
        }
    }
}

/// `ROOT_BACKUP_DIR`, else `BACKUP_DIR`, else `/backups/` (upstream's order and default).
fn backup_dir(l: &Loader) -> PathBuf {
    PathBuf::from(
        l.text(env::ROOT_BACKUP_DIR).or_else(|| l.text(env::BACKUP_DIR)).unwrap_or_else(|| "/backups/".into()),
    )
}

/// What is still needed when the settings cannot be loaded: where to notify about it, and
/// the backup folder (for PagerDuty's state), by the same rules as `Settings::load`.
pub fn for_config_error(env: &Env) -> (NotifySettings, PathBuf) {
    let l = Loader::new(env, Default::default(), Vec::new());
    (NotifySettings::load(&l), backup_dir(&l))
}

/// Upper bound of every retention count (more would be a typo, not a policy).
const MAX_COUNT: i64 = 100_000;
pub(super) const DAY: Duration = Duration::from_secs(86_400);

/// Reads and parses backup.conf; a missing file is not an error (env fallback, as upstream).
fn read_conf(path: &Path, errors: &mut Vec<String>) -> (backup_conf::ConfFile, bool) {
    match std::fs::read(path) {
        Ok(bytes) => match String::from_utf8(bytes) {
            Ok(text) => {
                let conf = backup_conf::parse(&path.display().to_string(), &text);
                errors.extend(conf.errors.iter().map(ToString::to_string));
                (conf, true)
            }
            Err(_) => {
                errors.push(format!("{}: not a UTF-8 text file", path.display()));
                (backup_conf::ConfFile::default(), true)
            }
        },
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => (backup_conf::ConfFile::default(), false),
        Err(e) => {
            errors.push(format!("{}: cannot be read: {e}", path.display()));
            (backup_conf::ConfFile::default(), true)
        }
    }
}

/// Upstream's fallback: `${DATABASE_SERVICE_NAME}${DEFAULT_PORT:+:$DEFAULT_PORT}/${POSTGRESQL_DATABASE}`
/// with `DEFAULT_PORT=${POSTGRESQL_PORT_NUM:-5432}`.
fn fallback_spec(env: &Env) -> Result<DatabaseSpec, String> {
    let host = env.get(env::DATABASE_SERVICE_NAME).unwrap_or("postgresql");
    let port = env.get(env::POSTGRESQL_PORT_NUM).unwrap_or("5432");
    let db = env.get(env::POSTGRESQL_DATABASE).unwrap_or("my_postgres_db");
    let text = format!("{host}:{port}/{db}");
    text.parse().map_err(|e| {
        format!(
            "environment: the fallback database spec \"{text}\" (DATABASE_SERVICE_NAME, POSTGRESQL_PORT_NUM, \
             POSTGRESQL_DATABASE) is invalid: {e}"
        )
    })
}

#[cfg(test)]
mod never_panics;
#[cfg(test)]
mod tests;

/// `BACKUP_ENCRYPTION_RECIPIENTS` (checked keys) and `BACKUP_ENCRYPTION_IDENTITY_FILE` (a
/// readable file; read again at each use, so a rotated key is picked up).
fn encryption(l: &Loader) -> (Option<Recipients>, Keys) {
    let recipients = l.text(env::BACKUP_ENCRYPTION_RECIPIENTS).filter(|t| !t.trim().is_empty()).and_then(|t| {
        Recipients::parse(&t)
            .map_err(|e| {
                l.error(format!("{}: BACKUP_ENCRYPTION_RECIPIENTS: {e}", l.origin(env::BACKUP_ENCRYPTION_RECIPIENTS)))
            })
            .ok()
    });
    let identity_file =
        l.text(env::BACKUP_ENCRYPTION_IDENTITY_FILE).filter(|t| !t.trim().is_empty()).map(PathBuf::from);
    if let Some(f) = &identity_file
        && let Err(e) = std::fs::File::open(f)
    {
        l.error(format!(
            "{}: BACKUP_ENCRYPTION_IDENTITY_FILE: cannot read {}: {e}",
            l.origin(env::BACKUP_ENCRYPTION_IDENTITY_FILE),
            f.display()
        ));
    }
    (recipients, Keys { identity_file })
}
