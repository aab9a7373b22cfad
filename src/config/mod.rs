//! Settings: everything a run needs, loaded once from the environment and `backup.conf`,
//! validated, then immutable.
//!
//! Parse, then validate, then build: every problem is collected with its source
//! (`backup.conf:12: ...`, `environment: NUM_BACKUPS=...`) and reported together; the caller
//! exits 2 before doing any work. Nothing outside this module reads the environment.

pub mod backup_conf;
pub mod env;
pub mod secret;
pub mod toml_file;

use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

pub use backup_conf::CronLine;
pub use env::Env;
pub use secret::{Secret, redact_url};

use crate::compress::Compression;
use crate::engine::EngineOptions;
use crate::retention::Policy;
use crate::schedule::parse_duration;
use crate::spec::{DatabaseSpec, EngineKind};
use crate::timezone::Zone;

/// Credentials for one database, with the variable names they came from (for `-c`).
#[derive(Debug, Clone)]
pub struct Credentials {
    pub user: Option<String>,
    /// The variables consulted for the user, e.g. `DB_USER, DATABASE_USER, POSTGRESQL_USER`,
    /// or the one that supplied it.
    pub user_source: String,
    pub password: Option<Secret>,
    pub password_source: Option<String>,
}

/// A database to back up: its spec and credentials.
#[derive(Debug, Clone)]
pub struct Database {
    pub spec: DatabaseSpec,
    pub credentials: Credentials,
    /// Engine options (backup.toml): extra dump arguments, excluded tables.
    pub options: crate::engine::DumpOptions,
}

impl Database {
    /// How the engine connects for a backup: the spec's host and port, these credentials.
    pub fn conn(&self) -> crate::engine::Conn {
        crate::engine::Conn {
            host: self.spec.host.clone(),
            port: self.spec.port,
            user: self.credentials.user.clone(),
            password: self.credentials.password.clone(),
        }
    }
}

/// A database spec that this process does not back up, and why.
#[derive(Debug, Clone)]
pub struct Skipped {
    pub spec: DatabaseSpec,
    pub reason: String,
}

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

/// `WEBHOOK_FORMAT`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WebhookFormat {
    /// Upstream's form-urlencoded fields (default; Rocket.Chat scripts keep working).
    Form,
    Json,
    /// A Microsoft Teams workflow message with an Adaptive Card.
    Teams,
}

/// Notification settings.
#[derive(Debug, Clone)]
pub struct NotifySettings {
    pub webhook_url: Option<Secret>,
    pub friendly_name: Option<String>,
    pub environment_name: Option<String>,
    pub format: WebhookFormat,
    /// `WEBHOOK_LEVEL`: events below it are not sent (default INFO: everything).
    pub min_level: crate::notify::Level,
    /// `WEBHOOK_TIMEOUT` per attempt (default 10s).
    pub timeout: Duration,
    /// `WEBHOOK_ATTEMPTS` (default 3): tries on network errors, 429 and 5xx.
    pub attempts: u32,
    /// `PGDUTY_SVC_KEY`: the PagerDuty Events v2 routing key.
    pub pagerduty_key: Option<Secret>,
    /// `PGDUTY_URL` (default `https://events.pagerduty.com/v2/enqueue`).
    pub pagerduty_url: Secret,
}

impl NotifySettings {
    fn load(l: &Loader) -> NotifySettings {
        let format = match l.text(env::WEBHOOK_FORMAT).map(|f| f.to_ascii_lowercase()).as_deref() {
            None | Some("form") => WebhookFormat::Form,
            Some("json") => WebhookFormat::Json,
            Some("teams") => WebhookFormat::Teams,
            Some(other) => {
                l.error(format!("environment: WEBHOOK_FORMAT=\"{other}\" (expected form, json or teams)"));
                WebhookFormat::Form
            }
        };
        let min_level = match l.text(env::WEBHOOK_LEVEL) {
            None => crate::notify::Level::Info,
            Some(t) => crate::notify::Level::parse(&t).unwrap_or_else(|| {
                l.error(format!("environment: WEBHOOK_LEVEL=\"{t}\" (expected INFO, WARN or ERROR)"));
                crate::notify::Level::Info
            }),
        };
        let timeout = l.duration(env::WEBHOOK_TIMEOUT, Duration::from_secs(10));
        let attempts = l.int(env::WEBHOOK_ATTEMPTS, 3).clamp(1, 10) as u32;
        NotifySettings {
            webhook_url: l.text(env::WEBHOOK_URL).map(Secret::new),
            friendly_name: l.text(env::ENVIRONMENT_FRIENDLY_NAME),
            environment_name: l.text(env::ENVIRONMENT_NAME),
            format,
            min_level,
            timeout,
            attempts,
            pagerduty_key: l.text(env::PGDUTY_SVC_KEY).map(Secret::new),
            pagerduty_url: Secret::new(
                l.text(env::PGDUTY_URL).unwrap_or_else(|| "https://events.pagerduty.com/v2/enqueue".into()),
            ),
        }
    }

    /// Notification settings from the environment alone: for reporting a configuration error
    /// when the rest of the settings could not be loaded.
    pub fn from_env(env: &Env) -> NotifySettings {
        NotifySettings::load(&Loader {
            env,
            layer: BTreeMap::new(),
            errors: Default::default(),
            sources: Default::default(),
        })
    }
}

/// The FTPS mirror (`FTP_URL` and friends).
#[derive(Debug, Clone)]
pub struct FtpSettings {
    pub url: Secret,
    pub user: Option<String>,
    pub password: Option<Secret>,
    /// `FTP_CA_FILE`: PEM certificates trusted in addition to the system roots.
    pub ca_file: Option<PathBuf>,
    /// `FTP_ALLOW_PLAINTEXT`: permit FTP without TLS (warned on every use).
    pub allow_plaintext: bool,
    /// `FTP_PRUNE_BACKUPS`: apply the retention policy to the mirror too.
    pub prune: bool,
    pub timeout: Duration,
}

/// The S3 mirror (`S3_ENDPOINT` and friends).
#[derive(Debug, Clone)]
pub struct S3Settings {
    pub endpoint: String,
    pub bucket: String,
    pub region: String,
    pub access_key: String,
    pub secret_key: Secret,
    pub prefix: String,
    pub path_style: bool,
    pub part_size: usize,
    pub prune: bool,
    pub timeout: Duration,
}

/// Mirrors and how they are used.
#[derive(Debug, Clone, Default)]
pub struct MirrorSettings {
    pub ftp: Option<FtpSettings>,
    pub s3: Option<S3Settings>,
    /// `MIRROR_ATTEMPTS` (default 3) per operation.
    pub attempts: u32,
    /// `MIRROR_CATCHUP` (default 3): how many older local backups missing on a mirror are
    /// uploaded after a new one.
    pub catchup: usize,
}

impl MirrorSettings {
    fn load(l: &Loader) -> MirrorSettings {
        let ftp = l.text(env::FTP_URL).map(|url| FtpSettings {
            url: Secret::new(url),
            user: l.text(env::FTP_USER),
            password: l.text(env::FTP_PASSWORD).map(Secret::new),
            ca_file: l.text(env::FTP_CA_FILE).map(PathBuf::from),
            allow_plaintext: l.flag(env::FTP_ALLOW_PLAINTEXT),
            prune: l.flag(env::FTP_PRUNE_BACKUPS),
            timeout: l.duration(env::FTP_TIMEOUT, Duration::from_secs(60)),
        });
        let s3 = match l.text(env::S3_ENDPOINT) {
            None => None,
            Some(endpoint) => {
                let bucket = l.text(env::S3_BUCKET).unwrap_or_else(|| {
                    l.error("environment: S3_ENDPOINT is set but S3_BUCKET is not".into());
                    String::new()
                });
                let access_key = l.text(env::S3_USER).or_else(|| l.text(env::AWS_ACCESS_KEY_ID)).unwrap_or_else(|| {
                    l.error("environment: S3_ENDPOINT is set but S3_USER (or AWS_ACCESS_KEY_ID) is not".into());
                    String::new()
                });
                Some(S3Settings {
                    endpoint,
                    bucket,
                    region: l
                        .text(env::S3_REGION)
                        .or_else(|| l.text(env::AWS_REGION))
                        .or_else(|| l.text(env::AWS_DEFAULT_REGION))
                        .unwrap_or_else(|| "us-east-1".into()),
                    access_key,
                    secret_key: Secret::new(
                        l.text(env::S3_PASSWORD).or_else(|| l.text(env::AWS_SECRET_ACCESS_KEY)).unwrap_or_default(),
                    ),
                    prefix: l.text(env::S3_PREFIX).unwrap_or_default(),
                    path_style: l.text(env::S3_PATH_STYLE).is_none_or(|_| l.flag(env::S3_PATH_STYLE)),
                    part_size: (l.int(env::S3_PART_SIZE_MB, 8).clamp(5, 5000) as usize) << 20,
                    prune: l.flag(env::S3_PRUNE_BACKUPS),
                    timeout: l.duration(env::S3_TIMEOUT, Duration::from_secs(60)),
                })
            }
        };
        MirrorSettings {
            ftp,
            s3,
            attempts: l.int(env::MIRROR_ATTEMPTS, 3).clamp(1, 10) as u32,
            catchup: l.int(env::MIRROR_CATCHUP, 3).clamp(0, 100) as usize,
        }
    }
}

/// `VERIFY_MAX_AGE`: how old the newest backup may be before verification fails.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MaxAge {
    /// `0`: no staleness check.
    Disabled,
    Fixed(Duration),
    /// Unset: twice the backup interval implied by the schedule, else 48 hours.
    Default,
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
}

/// Daemon settings: health listener, staleness, shutdown.
#[derive(Debug, Clone)]
pub struct DaemonSettings {
    /// `HEALTH_ADDR` (default `0.0.0.0:8080`; `off` disables the listener).
    pub health_addr: Option<std::net::SocketAddr>,
    /// `HEALTH_FAIL_WHEN_STALE`: `/healthz` answers 503 while any database is stale.
    pub fail_when_stale: bool,
    /// `STALE_FACTOR` (default 1.5): stale when the newest good backup is older than the
    /// backup interval times this.
    pub stale_factor: f64,
    /// `SHUTDOWN_GRACE` (default 30s): how long an in-flight run may continue after SIGTERM.
    pub shutdown_grace: Duration,
    /// `CRON_COMMAND_TIMEOUT` (default 1h): limit for shell commands in cron lines.
    pub command_timeout: Duration,
}

/// All problems found while loading settings.
#[derive(Debug)]
pub struct ConfigErrors(pub Vec<String>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "configuration error{}:", if self.0.len() == 1 { "" } else { "s" })?;
        for e in &self.0 {
            write!(f, "\n  {e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

/// Validated settings.
#[derive(Debug, Clone)]
pub struct Settings {
    pub policy: Policy,
    pub backup_dir: PathBuf,
    pub backup_period: Duration,
    pub conf_path: PathBuf,
    pub conf_found: bool,
    pub databases: Vec<Database>,
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
    pub engine: EngineOptions,
    pub notify: NotifySettings,
    pub mirrors: MirrorSettings,
    /// `BACKUP_TOML` (default: `backup.toml` beside backup.conf) and whether it exists.
    pub toml_path: PathBuf,
    pub toml_found: bool,
    /// Lifecycle hooks (backup.toml only).
    pub hooks: crate::hooks::Hooks,
    /// Per-database settings from backup.toml, by core name.
    database_overrides: HashMap<String, toml_file::TomlDatabase>,
    /// Variable → where its value came from (`environment`, `backup.toml:12 [...] key`, a file).
    pub sources: BTreeMap<String, String>,
    env: Env,
}

struct Loader<'a> {
    env: &'a Env,
    /// backup.toml values: variable → (value, source).
    layer: BTreeMap<String, (String, String)>,
    errors: RefCell<Vec<String>>,
    /// Where each non-default value came from (for `-c`).
    sources: RefCell<BTreeMap<String, String>>,
}

impl Loader<'_> {
    fn error(&self, message: String) {
        self.errors.borrow_mut().push(message);
    }

    /// The value of `name`: the environment, then `<name>_FILE` (a file's content, for mounted
    /// secrets), then backup.toml (and its `<name>_FILE`). Records the source.
    fn text(&self, name: &str) -> Option<String> {
        let file_var = format!("{name}_FILE");
        let found = if let Some(v) = self.env.get(name) {
            Some((v.to_string(), "environment".to_string()))
        } else if let Some(path) = self.env.get(&file_var) {
            self.read_secret(path, &format!("environment {file_var}")).map(|v| (v, format!("file {path} ({file_var})")))
        } else if let Some((v, src)) = self.layer.get(name) {
            Some((v.clone(), src.clone()))
        } else if let Some((path, src)) = self.layer.get(&file_var) {
            self.read_secret(path, src).map(|v| (v, format!("file {path} ({src})")))
        } else {
            None
        };
        found.map(|(value, source)| {
            self.sources.borrow_mut().insert(name.to_string(), source);
            value
        })
    }

    fn read_secret(&self, path: &str, source: &str) -> Option<String> {
        match std::fs::read_to_string(path) {
            Ok(v) => Some(v.trim_end_matches(['\n', '\r']).to_string()).filter(|v| !v.is_empty()),
            Err(e) => {
                self.error(format!("{source}: cannot read {path}: {e}"));
                None
            }
        }
    }

    /// Where `name`'s value came from, for error messages.
    fn origin(&self, name: &str) -> String {
        self.sources.borrow().get(name).cloned().unwrap_or_else(|| "environment".into())
    }

    fn int(&self, name: &str, default: i64) -> i64 {
        match self.text(name) {
            None => default,
            Some(v) => v.trim().parse().unwrap_or_else(|_| {
                self.error(format!("{}: {name}=\"{v}\" is not a whole number", self.origin(name)));
                default
            }),
        }
    }

    /// `1`, `true`, `yes`, `on` (any case) are true; unset or anything else is false.
    fn flag(&self, name: &str) -> bool {
        self.text(name).is_some_and(|v| matches!(v.to_ascii_lowercase().as_str(), "1" | "true" | "yes" | "on"))
    }

    fn duration(&self, name: &str, default: Duration) -> Duration {
        match self.text(name) {
            None => default,
            Some(text) => parse_duration(&text).unwrap_or_else(|e| {
                self.error(format!("{}: {name}: {e}", self.origin(name)));
                default
            }),
        }
    }
}

impl Settings {
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
        let l = Loader {
            env: &env,
            layer: toml.layer.clone(),
            errors: RefCell::new(std::mem::take(&mut early_errors)),
            sources: Default::default(),
        };
        let strategy = l.text(env::BACKUP_STRATEGY).unwrap_or_else(|| "rolling".into());
        let num = l.int(env::NUM_BACKUPS, 31);
        let daily = l.int(env::DAILY_BACKUPS, 6);
        let weekly = l.int(env::WEEKLY_BACKUPS, 4);
        let monthly = l.int(env::MONTHLY_BACKUPS, 1);
        let policy = Policy::from_counts(&strategy, num, daily, weekly, monthly).unwrap_or_else(|e| {
            l.error(format!("{}: BACKUP_STRATEGY: {e}", l.origin(env::BACKUP_STRATEGY)));
            Policy::from_counts("rolling", 31, 6, 4, 1).expect("defaults are valid")
        });
        let backup_dir = PathBuf::from(
            l.text(env::ROOT_BACKUP_DIR).or_else(|| l.text(env::BACKUP_DIR)).unwrap_or_else(|| "/backups/".into()),
        );
        let period_text = l.text(env::BACKUP_PERIOD).unwrap_or_else(|| "1d".into());
        let backup_period = parse_duration(&period_text).unwrap_or_else(|e| {
            l.error(format!("{}: BACKUP_PERIOD: {e}", l.origin(env::BACKUP_PERIOD)));
            Duration::from_secs(86400)
        });
        let timeout = l.int(env::DATABASE_SERVER_TIMEOUT, 120);
        let shutdown_grace = l.duration(env::SHUTDOWN_GRACE, Duration::from_secs(30));
        let command_timeout = l.duration(env::CRON_COMMAND_TIMEOUT, Duration::from_secs(3600));
        let health_addr = match l.text(env::HEALTH_ADDR).as_deref() {
            Some("off") | Some("none") => None,
            Some(text) => text.parse().map(Some).unwrap_or_else(|_| {
                l.error(format!(
                    "{}: HEALTH_ADDR=\"{text}\" is not an address like 0.0.0.0:8080 (or off)",
                    l.origin(env::HEALTH_ADDR)
                ));
                None
            }),
            None => Some(std::net::SocketAddr::from(([0, 0, 0, 0], 8080))),
        };
        let stale_factor = match l.text(env::STALE_FACTOR) {
            None => 1.5,
            Some(t) => t.parse::<f64>().ok().filter(|f| *f >= 1.0).unwrap_or_else(|| {
                l.error(format!("{}: STALE_FACTOR=\"{t}\" must be a number >= 1", l.origin(env::STALE_FACTOR)));
                1.5
            }),
        };
        let fail_when_stale = l.flag(env::HEALTH_FAIL_WHEN_STALE);
        let notify = NotifySettings::load(&l);
        let mirrors = MirrorSettings::load(&l);
        let verify_max_age = match l.text(env::VERIFY_MAX_AGE).as_deref() {
            None => MaxAge::Default,
            Some("0") => MaxAge::Disabled,
            Some(text) => parse_duration(text).map(MaxAge::Fixed).unwrap_or_else(|e| {
                l.error(format!("{}: VERIFY_MAX_AGE: {e}", l.origin(env::VERIFY_MAX_AGE)));
                MaxAge::Default
            }),
        };
        let connect_timeout = l.int(env::DATABASE_CONNECT_TIMEOUT, 30);
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

        let mut settings = Settings {
            policy,
            backup_dir,
            backup_period,
            conf_path,
            conf_found,
            databases: Vec::new(),
            skipped: Vec::new(),
            databases_from_env: false,
            cron,
            zone: Zone::parse(l.text(env::TZ).as_deref()),
            toml_path,
            toml_found,
            hooks: crate::hooks::Hooks(toml.hooks.clone()),
            database_overrides: toml.databases.iter().map(|d| (d.spec.core_name(), d.clone())).collect(),
            table_schema: l
                .text(env::TABLE_SCHEMA)
                .map(|t| t.split(',').map(|s| s.trim().to_string()).filter(|s| !s.is_empty()).collect()),
            daemon: DaemonSettings { health_addr, fail_when_stale, stale_factor, shutdown_grace, command_timeout },
            restore: RestoreSettings {
                admin_user: l.text(env::BACKUP_ADMIN_USER),
                pg_user: l.text(env::PGUSER),
                admin_password: l.text(env::BACKUP_ADMIN_PASSWORD).map(Secret::new),
                verify_dir: PathBuf::from(l.text(env::VERIFY_DIR).unwrap_or_else(|| "/var/lib/pgsql/data".into())),
                verify_max_age,
                verify_server_options: l
                    .text(env::VERIFY_SERVER_OPTIONS)
                    .map(|t| t.split_whitespace().map(str::to_string).collect())
                    .unwrap_or_default(),
            },
            server_timeout: Duration::from_secs(timeout.max(1) as u64),
            compression,
            engine: EngineOptions {
                pg_bin_dir: l.text(env::PG_BIN_DIR).map(PathBuf::from),
                connect_timeout_secs: connect_timeout.clamp(1, 3600) as u32,
            },
            notify,
            mirrors,
            env: env.clone(),
            sources: BTreeMap::new(),
        };

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
            let credentials = settings.credentials(&spec);
            let options =
                settings.database_overrides.get(&spec.core_name()).map(|d| d.options.clone()).unwrap_or_default();
            settings.databases.push(Database { spec, credentials, options });
        }
        settings.sources = l.sources.take();
        let errors = l.errors.into_inner();
        if errors.is_empty() { Ok(settings) } else { Err(ConfigErrors(errors)) }
    }

    /// Credentials for any spec: `<HOST>_USER`/`<HOST>_PASSWORD` (host upper-cased, `-` and
    /// `.` → `_`), then `DATABASE_USER`/`DATABASE_PASSWORD`, then
    /// `POSTGRESQL_USER`/`POSTGRESQL_PASSWORD`. Empty values count as unset, as upstream.
    pub fn credentials(&self, spec: &DatabaseSpec) -> Credentials {
        let prefix = spec.credential_prefix();
        let over = self.database_overrides.get(&spec.core_name());
        let mut user_vars = vec![format!("{prefix}_USER"), env::DATABASE_USER.into(), env::POSTGRESQL_USER.into()];
        let mut password_vars =
            vec![format!("{prefix}_PASSWORD"), env::DATABASE_PASSWORD.into(), env::POSTGRESQL_PASSWORD.into()];
        if let Some(v) = over.and_then(|o| o.user_env.clone()) {
            user_vars.insert(0, v);
        }
        if let Some(v) = over.and_then(|o| o.password_env.clone()) {
            password_vars.insert(0, v);
        }
        // Each variable, or the file its `_FILE` twin names (mounted Kubernetes secrets).
        let lookup = |var: &String| -> Option<(String, String)> {
            if let Some(v) = self.env.get(var) {
                return Some((var.clone(), v.to_string()));
            }
            let file_var = format!("{var}_FILE");
            let path = self.env.get(&file_var)?;
            let text = std::fs::read_to_string(path).ok()?;
            Some((file_var, text.trim_end_matches(['\n', '\r']).to_string())).filter(|(_, t)| !t.is_empty())
        };
        let user = match over.and_then(|o| o.user.clone()) {
            Some(u) => Some((format!("backup.toml ({})", over.map(|o| o.source.as_str()).unwrap_or_default()), u)),
            None => user_vars.iter().find_map(lookup),
        };
        let from_file = over.and_then(|o| o.password_file.as_ref()).and_then(|p| {
            let text = std::fs::read_to_string(p).ok()?;
            Some((format!("file {}", p.display()), text.trim_end_matches(['\n', '\r']).to_string()))
        });
        let password = from_file.or_else(|| password_vars.iter().find_map(lookup));
        Credentials {
            user_source: match &user {
                Some((var, _)) => var.clone(),
                None => user_vars.join(", "),
            },
            user: user.map(|(_, u)| u),
            password_source: password.as_ref().map(|(var, _)| var.clone()),
            password: password.map(|(_, p)| Secret::new(p)),
        }
    }

    /// The configured database for `spec`, or one with the usual credentials when `spec`
    /// is not configured (restore or verify of another database).
    pub fn database_for(&self, spec: &DatabaseSpec) -> Database {
        self.databases.iter().find(|d| d.spec.core_name() == spec.core_name()).cloned().unwrap_or_else(|| Database {
            spec: spec.clone(),
            credentials: self.credentials(spec),
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

    /// The environment snapshot, for modules that take extra variables (`config` only).
    pub fn env(&self) -> &Env {
        &self.env
    }
}

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
mod tests;
