//! S3 Object Lock for the S3 mirror (`S3_OBJECT_LOCK=governance|compliance`): every backup
//! uploaded gets a retain-until date derived from its retention tier, so that nobody holding
//! the mirror's credentials (or ransomware that stole them) can delete it before then.
//!
//! The arithmetic: a copy lives about as long as the schedule's interval × the tier's count
//! (`DAILY_BACKUPS=6` on an hourly schedule: six hours, not six days); weekly and monthly
//! tiers get at least one backup per week / per 28 days, so their interval is at least that;
//! the daily strategy's flat folders use `NUM_BACKUPS`. `S3_OBJECT_LOCK_MIN_DAYS` (default 1)
//! is the floor. Records in the catalog folder are not locked (they are rewritten).
//!
//! Deleting on a versioned bucket: a plain DELETE only adds a delete marker, which is not a
//! deletion, so pruning lists the key's versions and deletes each by `versionId`; a version
//! still locked is refused by the server (403), reported as `Locked` and tried again on a
//! later run. Requests rusty-s3 has no action for are presigned with `rusty_s3::signing`.

use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::catalog::layout::Class;
use crate::model::policy::{Policy, Strategy};

const WEEK: Duration = Duration::from_secs(7 * 86_400);
const MONTH: Duration = Duration::from_secs(28 * 86_400);
const DAY: Duration = Duration::from_secs(86_400);

pub use crate::model::policy::LockMode;

/// How long each copy is locked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lock {
    pub mode: LockMode,
    pub policy: Policy,
    /// The schedule's interval between backups (a day when the schedule runs none).
    pub interval: Duration,
    /// `S3_OBJECT_LOCK_MIN_DAYS`.
    pub min: Duration,
}

impl Lock {
    /// How long the backup at `key` is locked after its upload.
    pub fn retain_for(&self, key: &str) -> Duration {
        let p = &self.policy;
        let class =
            crate::catalog::layout::parse_relative(std::path::Path::new(key)).and_then(|placement| placement.class);
        let (interval, count) = match (p.strategy, class) {
            (Strategy::Rolling, Some(Class::Weekly)) => (self.interval.max(WEEK), p.weekly),
            (Strategy::Rolling, Some(Class::Monthly)) => (self.interval.max(MONTH), p.monthly),
            (Strategy::Rolling, _) => (self.interval, p.daily),
            (Strategy::Daily, _) => (self.interval, p.num_backups),
        };
        interval.saturating_mul(count).max(self.min)
    }

    /// The `x-amz-object-lock-retain-until-date` for `key` uploaded at `now`.
    pub fn retain_until(&self, key: &str, now: DateTime<Utc>) -> DateTime<Utc> {
        let d = chrono::Duration::from_std(self.retain_for(key)).unwrap_or(chrono::Duration::MAX);
        now.checked_add_signed(d).unwrap_or(DateTime::<Utc>::MAX_UTC)
    }
}

/// How an upload is locked: by the retention policy (a dump, by its tier; records are not
/// locked), or until a date the caller worked out (`None`: not locked).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LockFor {
    Policy,
    Until(Option<DateTime<Utc>>),
}

/// The lock headers for a backup at `rel` (its path under the mirror's base) and the body's
/// Content-MD5 (S3 requires one on uploads to a bucket with Object Lock); none without a lock.
pub fn headers(lock: Option<&Lock>, rel: &str, body: Option<&[u8]>, how: LockFor) -> Vec<(&'static str, String)> {
    let Some(lock) = lock else { return Vec::new() };
    let mut h = Vec::new();
    if let Some(b) = body {
        h.push(("content-md5", content_md5(b)));
    }
    let until = match how {
        LockFor::Policy if !rel.starts_with(crate::catalog::manifest::CATALOG_DIR) => {
            Some(lock.retain_until(rel, chrono::Utc::now()))
        }
        LockFor::Policy => None,
        LockFor::Until(until) => until,
    };
    if let Some(until) = until {
        h.push(("x-amz-object-lock-mode", lock.mode.header().to_string()));
        h.push(("x-amz-object-lock-retain-until-date", until.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)));
    }
    h
}

/// The PutObjectRetention body that sets the lock of `headers` again, and its Content-MD5;
/// `None` when they lock nothing.
pub fn retention_body(headers: &[(&'static str, String)]) -> Option<(String, String)> {
    let field = |name: &str| headers.iter().find(|(k, _)| *k == name).map(|(_, v)| v.as_str());
    let (Some(mode), Some(until)) = (field("x-amz-object-lock-mode"), field("x-amz-object-lock-retain-until-date"))
    else {
        return None;
    };
    let body = format!(
        "<Retention xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\"><Mode>{mode}</Mode>\
         <RetainUntilDate>{until}</RetainUntilDate></Retention>"
    );
    let md5 = content_md5(body.as_bytes());
    Some((body, md5))
}

fn content_md5(body: &[u8]) -> String {
    use base64::Engine;
    use md5::Digest;
    base64::engine::general_purpose::STANDARD.encode(md5::Md5::digest(body))
}

/// The default floor: one day.
pub const DEFAULT_MIN: Duration = DAY;

/// A deletion the server refused because the object version is still locked: not a failure;
/// the copy is pruned on a later run, once the lock has expired.
#[derive(Debug, thiserror::Error)]
#[error("{key} is locked (S3 Object Lock) until its retain-until date; it is pruned on a later run")]
pub struct Locked {
    pub key: String,
}

/// `(key, versionId)` of every version and delete marker of exactly `key` in a
/// ListObjectVersions response.
pub fn versions_of(body: &str, key: &str) -> Vec<String> {
    let mut out = Vec::new();
    for tag in ["Version", "DeleteMarker"] {
        for chunk in body.split(&format!("<{tag}>")).skip(1) {
            let entry = chunk.split(&format!("</{tag}>")).next().unwrap_or_default();
            let field = |name: &str| {
                entry.split(&format!("<{name}>")).nth(1).and_then(|r| r.split(&format!("</{name}>")).next())
            };
            if field("Key").map(unescape).as_deref() == Some(key)
                && let Some(v) = field("VersionId")
            {
                out.push(v.to_string());
            }
        }
    }
    out
}

/// Whether a GetObjectLockConfiguration response says Object Lock is enabled.
pub fn lock_enabled(body: &str) -> bool {
    body.contains("<ObjectLockEnabled>Enabled</ObjectLockEnabled>")
}

fn unescape(s: &str) -> String {
    s.replace("&lt;", "<").replace("&gt;", ">").replace("&quot;", "\"").replace("&apos;", "'").replace("&amp;", "&")
}

/// A GET or DELETE on the bucket or one object with query parameters rusty-s3 has no action
/// for (`?versions`, `?object-lock`, `?versionId=`), presigned like its own actions.
pub struct Request<'a> {
    pub method: rusty_s3::Method,
    pub bucket: &'a rusty_s3::Bucket,
    pub credentials: &'a rusty_s3::Credentials,
    /// `None`: the bucket itself.
    pub object: Option<&'a str>,
    /// Sorted by name.
    pub query: Vec<(&'a str, &'a str)>,
    /// Headers sent and signed (S3 refuses unsigned `x-amz-*` headers).
    pub headers: Vec<(&'a str, &'a str)>,
}

impl Request<'_> {
    /// The presigned URL, valid for `expires`.
    pub fn sign(&self, expires: Duration) -> url::Url {
        let url = match self.object {
            Some(o) => self.bucket.object_url(o),
            None => self.bucket.base_url().clone(),
        };
        rusty_s3::signing::sign(
            &jiff::Timestamp::now(),
            self.method,
            url,
            self.credentials.key(),
            self.credentials.secret(),
            self.credentials.token(),
            self.bucket.region(),
            expires.as_secs(),
            self.query.iter().copied(),
            self.headers.iter().copied(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn lock(interval_h: u64, min_days: u64) -> Lock {
        Lock {
            mode: LockMode::Governance,
            policy: Policy::from_counts("rolling", 31, 6, 4, 1).unwrap(),
            interval: Duration::from_secs(interval_h * 3600),
            min: DAY * min_days as u32,
        }
    }

    #[test]
    fn retention_follows_the_tier_and_the_schedule() {
        let hourly = lock(1, 0);
        assert_eq!(hourly.retain_for("daily/2026-11-22/h-d_2026-11-22_01-00-00.sql.gz"), Duration::from_secs(6 * 3600));
        assert_eq!(hourly.retain_for("weekly/2026-11-22/h-d_2026-11-22_01-00-00.sql.gz"), WEEK * 4);
        assert_eq!(hourly.retain_for("monthly/2026-11-30/h-d_2026-11-30_01-00-00.sql.gz"), MONTH);
        assert_eq!(lock(1, 1).retain_for("daily/2026-11-22/h-d_2026-11-22_01-00-00.sql.gz"), DAY, "the floor");
        assert_eq!(lock(24, 1).retain_for("daily/2026-11-22/h-d_2026-11-22_01-00-00.sql.gz"), DAY * 6);
        let daily = Lock { policy: Policy::from_counts("daily", 10, 6, 4, 1).unwrap(), ..lock(24, 1) };
        assert_eq!(daily.retain_for("2026-11-22/h-d_2026-11-22_01-00-00.sql.gz.age"), DAY * 10);
        let now = Utc.with_ymd_and_hms(2026, 11, 22, 1, 0, 0).unwrap();
        assert_eq!(
            lock(24, 1).retain_until("daily/2026-11-22/h-d_2026-11-22_01-00-00.sql.gz", now),
            Utc.with_ymd_and_hms(2026, 11, 28, 1, 0, 0).unwrap()
        );
    }

    #[test]
    fn version_listings_are_read_for_the_exact_key() {
        let body = "<ListVersionsResult><Version><Key>a/b.sql.gz</Key><VersionId>v1</VersionId></Version>\
            <Version><Key>a/b.sql.gz.age</Key><VersionId>v2</VersionId></Version>\
            <DeleteMarker><Key>a/b.sql.gz</Key><VersionId>m1</VersionId></DeleteMarker></ListVersionsResult>";
        assert_eq!(versions_of(body, "a/b.sql.gz"), ["v1", "m1"]);
        assert!(lock_enabled("<ObjectLockConfiguration><ObjectLockEnabled>Enabled</ObjectLockEnabled>"));
        assert!(!lock_enabled("<Error><Code>ObjectLockConfigurationNotFoundError</Code></Error>"));
    }
}
