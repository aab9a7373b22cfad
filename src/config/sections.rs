//! The parts of `Settings` for notifications, mirrors, restore/verify and the daemon, and how
//! each is read (through the `Loader`, so backup.toml values and `*_FILE` secrets apply).

use std::path::PathBuf;
use std::time::Duration;

use super::env;
use super::loader::Loader;
use super::{DAY, Secret};
use crate::model::policy::LockMode;

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
    pub min_level: crate::model::severity::Level,
    /// `WEBHOOK_TIMEOUT` per attempt (default 10s).
    pub timeout: Duration,
    /// `WEBHOOK_ATTEMPTS` (default 3): tries on network errors, 429 and 5xx.
    pub attempts: u32,
    /// `NOTIFY_FLUSH_TIMEOUT` (default `timeout` × `attempts`): how long the end of a run waits
    /// for notifications still queued.
    pub flush_timeout: Duration,
    /// `PGDUTY_SVC_KEY`: the PagerDuty Events v2 routing key.
    pub pagerduty_key: Option<Secret>,
    /// `PGDUTY_URL` (default `https://events.pagerduty.com/v2/enqueue`).
    pub pagerduty_url: Secret,
}

impl NotifySettings {
    pub(super) fn load(l: &Loader) -> NotifySettings {
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
            None => crate::model::severity::Level::Info,
            Some(t) => crate::model::severity::Level::parse(&t).unwrap_or_else(|| {
                l.error(format!("environment: WEBHOOK_LEVEL=\"{t}\" (expected INFO, WARN or ERROR)"));
                crate::model::severity::Level::Info
            }),
        };
        let timeout = l.duration_max(env::WEBHOOK_TIMEOUT, Duration::from_secs(10), Duration::from_secs(600));
        let attempts = l.int_in(env::WEBHOOK_ATTEMPTS, 3, 1, 10) as u32;
        // Long enough for one event's every attempt, the pauses between them and a second.
        let pauses: Duration = (1..attempts).map(crate::net::backoff::pause).sum();
        let budget = timeout * attempts + pauses + Duration::from_secs(1);
        let flush_timeout = l.duration_max(env::NOTIFY_FLUSH_TIMEOUT, budget, Duration::from_secs(3600));
        NotifySettings {
            webhook_url: l.text(env::WEBHOOK_URL).map(Secret::new),
            friendly_name: l.text(env::ENVIRONMENT_FRIENDLY_NAME),
            environment_name: l.text(env::ENVIRONMENT_NAME),
            format,
            min_level,
            timeout,
            attempts,
            flush_timeout,
            pagerduty_key: l.text(env::PGDUTY_SVC_KEY).map(Secret::new),
            pagerduty_url: Secret::new(
                l.text(env::PGDUTY_URL).unwrap_or_else(|| "https://events.pagerduty.com/v2/enqueue".into()),
            ),
        }
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
    /// `FTP_TLS`: `Some(true)` implicit, `Some(false)` explicit, `None` by the URL's scheme.
    pub implicit_tls: Option<bool>,
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
    /// `S3_OBJECT_LOCK` (`governance` or `compliance`): lock every uploaded backup.
    pub object_lock: Option<LockMode>,
    /// `S3_OBJECT_LOCK_MIN_DAYS` (default 1): the shortest lock.
    pub object_lock_min: Duration,
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
    pub(super) fn load(l: &Loader) -> MirrorSettings {
        let ftp = l.text(env::FTP_URL).map(|url| FtpSettings {
            url: Secret::new(url),
            user: l.text(env::FTP_USER),
            password: l.text(env::FTP_PASSWORD).map(Secret::new),
            ca_file: l.text(env::FTP_CA_FILE).map(PathBuf::from),
            allow_plaintext: l.boolean(env::FTP_ALLOW_PLAINTEXT, false),
            implicit_tls: l.choice(env::FTP_TLS, &["explicit", "implicit"]).map(|m| m == "implicit"),
            prune: l.boolean(env::FTP_PRUNE_BACKUPS, false),
            timeout: l.duration_max(env::FTP_TIMEOUT, Duration::from_secs(60), Duration::from_secs(3600)),
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
                    path_style: l.boolean(env::S3_PATH_STYLE, true),
                    part_size: (l.int_in(env::S3_PART_SIZE_MB, 8, 5, 5000) as usize) << 20,
                    prune: l.boolean(env::S3_PRUNE_BACKUPS, false),
                    timeout: l.duration_max(env::S3_TIMEOUT, Duration::from_secs(60), Duration::from_secs(3600)),
                    object_lock: match l.choice(env::S3_OBJECT_LOCK, &["governance", "compliance", "off"]) {
                        Some("governance") => Some(LockMode::Governance),
                        Some("compliance") => Some(LockMode::Compliance),
                        _ => None,
                    },
                    object_lock_min: DAY * l.int_in(env::S3_OBJECT_LOCK_MIN_DAYS, 1, 0, 36_500) as u32,
                })
            }
        };
        MirrorSettings {
            ftp,
            s3,
            attempts: l.int_in(env::MIRROR_ATTEMPTS, 3, 1, 10) as u32,
            catchup: l.int_in(env::MIRROR_CATCHUP, 3, 0, 100) as usize,
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

impl DaemonSettings {
    pub(super) fn load(l: &Loader) -> DaemonSettings {
        let shutdown_grace = l.duration_max(env::SHUTDOWN_GRACE, Duration::from_secs(30), DAY);
        let command_timeout = l.duration_max(env::CRON_COMMAND_TIMEOUT, Duration::from_secs(3600), 7 * DAY);
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
        let stale_factor = l.float_in(env::STALE_FACTOR, 1.5, 1.0, 1000.0);
        let fail_when_stale = l.boolean(env::HEALTH_FAIL_WHEN_STALE, false);
        let target = |name: &str| l.text(name).is_some().then(|| l.duration_max(name, DAY, 3650 * DAY));
        DaemonSettings {
            health_addr,
            fail_when_stale,
            stale_factor,
            shutdown_grace,
            command_timeout,
            rpo_target: target(env::RPO_TARGET),
            startup_check: l.boolean(env::STARTUP_CHECK, true),
            monitor_only: l.boolean(env::MONITOR_ONLY, false),
            status_page: l.boolean(env::STATUS_PAGE, true),
            status_page_cache: match l.text(env::STATUS_PAGE_CACHE).as_deref().map(str::trim) {
                Some("0" | "0s") => Duration::ZERO,
                _ => l.duration_max(env::STATUS_PAGE_CACHE, Duration::from_secs(5), Duration::from_secs(3600)),
            },
            monitor_interval: l.duration_max(env::MONITOR_INTERVAL, Duration::from_secs(60), DAY),
            rto_target: target(env::RTO_TARGET),
        }
    }
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
    /// `STATUS_PAGE_CACHE` (default 5s; `0s`: render every request): how long a rendered
    /// status page is served again.
    pub status_page_cache: Duration,
    /// `STARTUP_CHECK` (default true): run `--check` at start (logged; WARN when it fails).
    pub startup_check: bool,
    /// `MONITOR_ONLY` (default false): no backups; health, `/status` and `/metrics` from the
    /// backup folder, read again every `MONITOR_INTERVAL` (default 60 s) — beside CronJob or
    /// Indexed-Job fleets, which have no daemon of their own.
    pub monitor_only: bool,
    /// `STATUS_PAGE` (default true): `GET /` on the health listener is the status page.
    pub status_page: bool,
    pub monitor_interval: Duration,
    /// `RPO_TARGET`: the newest verified backup of each database should be younger than this.
    pub rpo_target: Option<Duration>,
    /// `RTO_TARGET`: a verification restore should take less than this.
    pub rto_target: Option<Duration>,
}

/// `BACKUP_SHARD` (`I/N`; `--shard` sets it), or `BACKUP_SHARDS` (`N`) with the index Kubernetes
/// gives each pod of an Indexed Job (`JOB_COMPLETION_INDEX`).
pub(super) fn shard(l: &Loader) -> Option<crate::model::shard::Shard> {
    let text = match (l.text(env::BACKUP_SHARD), l.text(env::BACKUP_SHARDS), l.text(env::JOB_COMPLETION_INDEX)) {
        (Some(s), _, _) => s,
        (None, Some(n), Some(i)) => format!("{i}/{n}"),
        (None, Some(_), None) => {
            l.error(format!(
                "{}: BACKUP_SHARDS needs JOB_COMPLETION_INDEX (set in each pod of a Kubernetes Indexed Job); \
                 elsewhere use --shard I/N",
                l.origin(env::BACKUP_SHARDS)
            ));
            return None;
        }
        (None, None, _) => return None,
    };
    match crate::model::shard::Shard::parse(&text) {
        Ok(s) => Some(s),
        Err(e) => {
            l.error(format!("shard: {e}"));
            None
        }
    }
}
