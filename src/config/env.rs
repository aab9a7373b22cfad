//! The process environment as an injectable snapshot, and the names of every variable we read.
//!
//! Nothing outside `config/` reads the environment; tests build an `Env` from pairs.

use std::collections::BTreeMap;

/// A snapshot of environment variables. Empty values count as unset, as bash's `${X:-default}`.
#[derive(Clone, Default)]
pub struct Env(BTreeMap<String, String>);

/// Values may be secrets: `Debug` shows the count only.
impl std::fmt::Debug for Env {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Env({} variables)", self.0.len())
    }
}

impl Env {
    pub fn from_process() -> Env {
        Env(std::env::vars_os().filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?))).collect())
    }

    pub fn from_pairs<K: Into<String>, V: Into<String>>(pairs: impl IntoIterator<Item = (K, V)>) -> Env {
        Env(pairs.into_iter().map(|(k, v)| (k.into(), v.into())).collect())
    }

    /// The value of `name`, or `None` when unset or empty.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0.get(name).map(String::as_str).filter(|v| !v.is_empty())
    }

    /// Every variable name in the snapshot.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.0.keys().map(String::as_str)
    }

    /// The snapshot with `name` set to `value` (a command-line flag that stands for a variable).
    pub fn with(mut self, name: &str, value: &str) -> Env {
        self.0.insert(name.to_string(), value.to_string());
        self
    }

    /// Whether a flag-like variable (`RUN_ONCE=1`) is set to anything non-empty.
    pub fn is_set(&self, name: &str) -> bool {
        self.get(name).is_some()
    }
}

// Upstream names (reference §10), unchanged.
pub const BACKUP_STRATEGY: &str = "BACKUP_STRATEGY";
pub const BACKUP_DIR: &str = "BACKUP_DIR";
pub const ROOT_BACKUP_DIR: &str = "ROOT_BACKUP_DIR";
pub const NUM_BACKUPS: &str = "NUM_BACKUPS";
pub const DAILY_BACKUPS: &str = "DAILY_BACKUPS";
pub const WEEKLY_BACKUPS: &str = "WEEKLY_BACKUPS";
pub const MONTHLY_BACKUPS: &str = "MONTHLY_BACKUPS";
pub const BACKUP_PERIOD: &str = "BACKUP_PERIOD";
pub const BACKUP_CONF: &str = "BACKUP_CONF";
pub const DATABASE_SERVICE_NAME: &str = "DATABASE_SERVICE_NAME";
pub const POSTGRESQL_DATABASE: &str = "POSTGRESQL_DATABASE";
pub const POSTGRESQL_PORT_NUM: &str = "POSTGRESQL_PORT_NUM";
pub const TABLE_SCHEMA: &str = "TABLE_SCHEMA";
pub const DATABASE_SERVER_TIMEOUT: &str = "DATABASE_SERVER_TIMEOUT";
pub const DATABASE_USER: &str = "DATABASE_USER";
pub const DATABASE_PASSWORD: &str = "DATABASE_PASSWORD";
pub const POSTGRESQL_USER: &str = "POSTGRESQL_USER";
pub const POSTGRESQL_PASSWORD: &str = "POSTGRESQL_PASSWORD";
pub const FTP_URL: &str = "FTP_URL";
pub const FTP_USER: &str = "FTP_USER";
pub const FTP_PASSWORD: &str = "FTP_PASSWORD";
pub const S3_ENDPOINT: &str = "S3_ENDPOINT";
pub const S3_USER: &str = "S3_USER";
pub const S3_PASSWORD: &str = "S3_PASSWORD";
pub const S3_BUCKET: &str = "S3_BUCKET";
pub const WEBHOOK_URL: &str = "WEBHOOK_URL";
pub const ENVIRONMENT_FRIENDLY_NAME: &str = "ENVIRONMENT_FRIENDLY_NAME";
pub const ENVIRONMENT_NAME: &str = "ENVIRONMENT_NAME";
pub const BACKUP_LOG_LEVEL: &str = "BACKUP_LOG_LEVEL";
pub const TZ: &str = "TZ";
pub const RUN_ONCE: &str = "RUN_ONCE";
pub const SCHEDULED_RUN: &str = "SCHEDULED_RUN";
pub const RUN_PRUNE: &str = "RUN_PRUNE";
pub const IGNORE_ERRORS: &str = "IGNORE_ERRORS";

// Ours (documented in docs/CONFIG.md).
pub const LOG_FORMAT: &str = "LOG_FORMAT";
pub const BACKUP_COMPRESSION: &str = "BACKUP_COMPRESSION";
pub const BACKUP_COMPRESSION_LEVEL: &str = "BACKUP_COMPRESSION_LEVEL";
pub const BACKUP_COMPRESSION_THREADS: &str = "BACKUP_COMPRESSION_THREADS";
pub const PG_BIN_DIR: &str = "PG_BIN_DIR";
pub const PITR_SERVERS: &str = "PITR_SERVERS";
pub const PITR_SPOOL_DIR: &str = "PITR_SPOOL_DIR";
pub const PITR_SLOT_NAME: &str = "PITR_SLOT_NAME";
pub const PITR_CHAINS: &str = "PITR_CHAINS";
pub const PITR_SLOT_MAX_RETAINED: &str = "PITR_SLOT_MAX_RETAINED";
pub const PITR_MAX_BYTES: &str = "PITR_MAX_BYTES";
pub const PITR_BASE_SCHEDULE: &str = "PITR_BASE_SCHEDULE";
pub const PITR_INCREMENTAL_SCHEDULE: &str = "PITR_INCREMENTAL_SCHEDULE";
pub const PITR_DRILL_SCHEDULE: &str = "PITR_DRILL_SCHEDULE";
pub const PITR_DRILL_COUNTS: &str = "PITR_DRILL_COUNTS";
pub const DATABASE_CONNECT_TIMEOUT: &str = "DATABASE_CONNECT_TIMEOUT";
pub const BACKUP_ADMIN_USER: &str = "BACKUP_ADMIN_USER";
pub const BACKUP_ADMIN_PASSWORD: &str = "BACKUP_ADMIN_PASSWORD";
/// libpq's default user, used as the restore admin when `BACKUP_ADMIN_USER` is unset.
pub const PGUSER: &str = "PGUSER";
pub const VERIFY_DIR: &str = "VERIFY_DIR";
pub const VERIFY_MAX_AGE: &str = "VERIFY_MAX_AGE";
pub const VERIFY_SERVER_OPTIONS: &str = "VERIFY_SERVER_OPTIONS";
pub const VERIFY_DRILL: &str = "VERIFY_DRILL";
pub const VERIFY_UPGRADE: &str = "VERIFY_UPGRADE";
pub const RESTORE_IN_PLACE: &str = "RESTORE_IN_PLACE";
pub const RESTORE_KEEP_PREVIOUS: &str = "RESTORE_KEEP_PREVIOUS";
pub const RESTORE_COUNT_CHECK: &str = "RESTORE_COUNT_CHECK";
pub const RESTORE_ACCEPT_ERRORS: &str = "RESTORE_ACCEPT_ERRORS";
pub const RESTORE_JOBS: &str = "RESTORE_JOBS";
pub const RESTORE_LOADER: &str = "RESTORE_LOADER";
pub const RESTORE_SPILL_MB: &str = "RESTORE_SPILL_MB";
pub const BACKUP_EXCLUDE_DATABASES: &str = "BACKUP_EXCLUDE_DATABASES";
pub const BACKUP_SHARD: &str = "BACKUP_SHARD";
pub const BACKUP_JOBS: &str = "BACKUP_JOBS";
pub const MONITOR_ONLY: &str = "MONITOR_ONLY";
pub const STATUS_PAGE: &str = "STATUS_PAGE";
pub const STATUS_PAGE_CACHE: &str = "STATUS_PAGE_CACHE";
pub const MONITOR_INTERVAL: &str = "MONITOR_INTERVAL";
pub const BACKUP_JOBS_PER_HOST: &str = "BACKUP_JOBS_PER_HOST";
pub const BACKUP_WHEN_LOCKED: &str = "BACKUP_WHEN_LOCKED";
pub const VERIFY_JOBS: &str = "VERIFY_JOBS";
pub const BACKUP_SHARDS: &str = "BACKUP_SHARDS";
/// Set by Kubernetes in each pod of an Indexed Job.
pub const JOB_COMPLETION_INDEX: &str = "JOB_COMPLETION_INDEX";
pub const HEALTH_ADDR: &str = "HEALTH_ADDR";
pub const BACKUP_TOML: &str = "BACKUP_TOML";
pub const FTP_CA_FILE: &str = "FTP_CA_FILE";
pub const FTP_ALLOW_PLAINTEXT: &str = "FTP_ALLOW_PLAINTEXT";
pub const FTP_TLS: &str = "FTP_TLS";
pub const FTP_PRUNE_BACKUPS: &str = "FTP_PRUNE_BACKUPS";
pub const FTP_TIMEOUT: &str = "FTP_TIMEOUT";
pub const S3_REGION: &str = "S3_REGION";
pub const S3_PREFIX: &str = "S3_PREFIX";
pub const S3_PATH_STYLE: &str = "S3_PATH_STYLE";
pub const S3_PART_SIZE_MB: &str = "S3_PART_SIZE_MB";
pub const S3_PRUNE_BACKUPS: &str = "S3_PRUNE_BACKUPS";
pub const S3_TIMEOUT: &str = "S3_TIMEOUT";
pub const S3_OBJECT_LOCK: &str = "S3_OBJECT_LOCK";
pub const S3_OBJECT_LOCK_MIN_DAYS: &str = "S3_OBJECT_LOCK_MIN_DAYS";
pub const AWS_ACCESS_KEY_ID: &str = "AWS_ACCESS_KEY_ID";
pub const AWS_SECRET_ACCESS_KEY: &str = "AWS_SECRET_ACCESS_KEY";
pub const AWS_REGION: &str = "AWS_REGION";
pub const AWS_DEFAULT_REGION: &str = "AWS_DEFAULT_REGION";
pub const MIRROR_ATTEMPTS: &str = "MIRROR_ATTEMPTS";
pub const MIRROR_CATCHUP: &str = "MIRROR_CATCHUP";
pub const WEBHOOK_FORMAT: &str = "WEBHOOK_FORMAT";
pub const WEBHOOK_LEVEL: &str = "WEBHOOK_LEVEL";
pub const WEBHOOK_TIMEOUT: &str = "WEBHOOK_TIMEOUT";
pub const WEBHOOK_ATTEMPTS: &str = "WEBHOOK_ATTEMPTS";
pub const NOTIFY_FLUSH_TIMEOUT: &str = "NOTIFY_FLUSH_TIMEOUT";
pub const PGDUTY_SVC_KEY: &str = "PGDUTY_SVC_KEY";
pub const PGDUTY_URL: &str = "PGDUTY_URL";
pub const HEALTH_FAIL_WHEN_STALE: &str = "HEALTH_FAIL_WHEN_STALE";
pub const STALE_FACTOR: &str = "STALE_FACTOR";
pub const RPO_TARGET: &str = "RPO_TARGET";
pub const STARTUP_CHECK: &str = "STARTUP_CHECK";
pub const BACKUP_ENCRYPTION_RECIPIENTS: &str = "BACKUP_ENCRYPTION_RECIPIENTS";
pub const BACKUP_ENCRYPTION_IDENTITY_FILE: &str = "BACKUP_ENCRYPTION_IDENTITY_FILE";
pub const RTO_TARGET: &str = "RTO_TARGET";
pub const BACKUP_ANOMALY_ROWS_PCT: &str = "BACKUP_ANOMALY_ROWS_PCT";
pub const BACKUP_ANOMALY_SIZE_PCT: &str = "BACKUP_ANOMALY_SIZE_PCT";
pub const BACKUP_ANOMALY_HOLD: &str = "BACKUP_ANOMALY_HOLD";
pub const SHUTDOWN_GRACE: &str = "SHUTDOWN_GRACE";
pub const CRON_COMMAND_TIMEOUT: &str = "CRON_COMMAND_TIMEOUT";

/// Every variable read by name (per-host credentials `<HOST>_USER`/`<HOST>_PASSWORD` and
/// `<NAME>_FILE` twins aside). docs/CONFIG.md documents each one (a test checks).
pub const KNOWN: &[&str] = &[
    BACKUP_STRATEGY,
    BACKUP_DIR,
    ROOT_BACKUP_DIR,
    NUM_BACKUPS,
    DAILY_BACKUPS,
    WEEKLY_BACKUPS,
    MONTHLY_BACKUPS,
    BACKUP_PERIOD,
    BACKUP_CONF,
    DATABASE_SERVICE_NAME,
    POSTGRESQL_DATABASE,
    POSTGRESQL_PORT_NUM,
    TABLE_SCHEMA,
    DATABASE_SERVER_TIMEOUT,
    DATABASE_USER,
    DATABASE_PASSWORD,
    POSTGRESQL_USER,
    POSTGRESQL_PASSWORD,
    FTP_URL,
    FTP_USER,
    FTP_PASSWORD,
    S3_ENDPOINT,
    S3_USER,
    S3_PASSWORD,
    S3_BUCKET,
    WEBHOOK_URL,
    ENVIRONMENT_FRIENDLY_NAME,
    ENVIRONMENT_NAME,
    BACKUP_LOG_LEVEL,
    TZ,
    RUN_ONCE,
    SCHEDULED_RUN,
    RUN_PRUNE,
    IGNORE_ERRORS,
    LOG_FORMAT,
    BACKUP_COMPRESSION,
    BACKUP_COMPRESSION_LEVEL,
    BACKUP_COMPRESSION_THREADS,
    PG_BIN_DIR,
    PITR_SERVERS,
    PITR_SPOOL_DIR,
    PITR_SLOT_NAME,
    PITR_CHAINS,
    PITR_SLOT_MAX_RETAINED,
    PITR_MAX_BYTES,
    PITR_BASE_SCHEDULE,
    PITR_INCREMENTAL_SCHEDULE,
    PITR_DRILL_SCHEDULE,
    PITR_DRILL_COUNTS,
    DATABASE_CONNECT_TIMEOUT,
    BACKUP_ADMIN_USER,
    BACKUP_ADMIN_PASSWORD,
    PGUSER,
    VERIFY_DIR,
    VERIFY_MAX_AGE,
    VERIFY_SERVER_OPTIONS,
    VERIFY_DRILL,
    VERIFY_UPGRADE,
    RESTORE_IN_PLACE,
    RESTORE_KEEP_PREVIOUS,
    RESTORE_COUNT_CHECK,
    RESTORE_ACCEPT_ERRORS,
    RESTORE_JOBS,
    RESTORE_LOADER,
    RESTORE_SPILL_MB,
    BACKUP_EXCLUDE_DATABASES,
    BACKUP_SHARD,
    BACKUP_JOBS,
    MONITOR_ONLY,
    STATUS_PAGE,
    STATUS_PAGE_CACHE,
    MONITOR_INTERVAL,
    BACKUP_JOBS_PER_HOST,
    BACKUP_WHEN_LOCKED,
    VERIFY_JOBS,
    BACKUP_SHARDS,
    HEALTH_ADDR,
    BACKUP_TOML,
    FTP_CA_FILE,
    FTP_ALLOW_PLAINTEXT,
    FTP_TLS,
    FTP_PRUNE_BACKUPS,
    FTP_TIMEOUT,
    S3_REGION,
    S3_PREFIX,
    S3_PATH_STYLE,
    S3_PART_SIZE_MB,
    S3_PRUNE_BACKUPS,
    S3_TIMEOUT,
    S3_OBJECT_LOCK,
    S3_OBJECT_LOCK_MIN_DAYS,
    AWS_ACCESS_KEY_ID,
    AWS_SECRET_ACCESS_KEY,
    AWS_REGION,
    AWS_DEFAULT_REGION,
    MIRROR_ATTEMPTS,
    MIRROR_CATCHUP,
    WEBHOOK_FORMAT,
    WEBHOOK_LEVEL,
    WEBHOOK_TIMEOUT,
    WEBHOOK_ATTEMPTS,
    NOTIFY_FLUSH_TIMEOUT,
    PGDUTY_SVC_KEY,
    PGDUTY_URL,
    HEALTH_FAIL_WHEN_STALE,
    STALE_FACTOR,
    RPO_TARGET,
    STARTUP_CHECK,
    BACKUP_ENCRYPTION_RECIPIENTS,
    BACKUP_ENCRYPTION_IDENTITY_FILE,
    RTO_TARGET,
    BACKUP_ANOMALY_ROWS_PCT,
    BACKUP_ANOMALY_SIZE_PCT,
    BACKUP_ANOMALY_HOLD,
    SHUTDOWN_GRACE,
    CRON_COMMAND_TIMEOUT,
];

/// Logging options: `RUST_LOG` wins, else `BACKUP_LOG_LEVEL` (default `info`); `LOG_FORMAT=json`.
pub fn log_options(env: &Env) -> crate::system::logging::LogOptions {
    // suppaftp logs its own view of failures (e.g. "error in flushing rustls stream on drop")
    // on top of ours, which already name what failed: keep one line per failure.
    let filter = env.get("RUST_LOG").map(str::to_string).unwrap_or_else(|| {
        format!("{},suppaftp=off", env.get(BACKUP_LOG_LEVEL).unwrap_or("info").to_ascii_lowercase())
    });
    crate::system::logging::LogOptions {
        filter,
        json: env.get(LOG_FORMAT).is_some_and(|f| f.eq_ignore_ascii_case("json")),
    }
}
