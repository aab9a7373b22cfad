//! S3 Object Lock against moto (a server that enforces it): uploads carry the mode and a
//! retain-until date from the retention tier; remote retention keeps a copy that is still
//! locked without failing, and deletes every version of it once the lock has expired; the
//! server itself refuses to delete a locked version; a bucket without Object Lock is a clear
//! error.

use std::time::Duration;

use crate::harness::app::Fixture;
use crate::harness::daemon::wait_until;
use crate::harness::moto::MotoServer;
use crate::harness::run;

const BUCKET: &str = "locked-backups";

fn get(url: &str) -> (u16, String) {
    let agent: ureq::Agent = ureq::Agent::config_builder().http_status_as_error(false).build().into();
    let mut resp = agent.get(url).call().unwrap();
    (resp.status().as_u16(), resp.body_mut().read_to_string().unwrap_or_default())
}

/// `(key, versionId)` of every object version in the bucket.
fn versions(moto: &MotoServer, bucket: &str) -> Vec<(String, String)> {
    let (_, body) = get(&format!("{}/{bucket}?versions", moto.endpoint()));
    body.split("<Version>")
        .skip(1)
        .map(|v| {
            let field = |n: &str| v.split(&format!("<{n}>")).nth(1).unwrap().split(&format!("</{n}>")).next().unwrap();
            (field("Key").to_string(), field("VersionId").to_string())
        })
        .filter(|(k, _)| k.ends_with(".sql.gz"))
        .collect()
}

/// The lock mode and retain-until date of `key` (HEAD).
fn lock_of(moto: &MotoServer, key: &str) -> (String, chrono::DateTime<chrono::Utc>) {
    let agent: ureq::Agent = ureq::Agent::config_builder().http_status_as_error(false).build().into();
    // moto answers HEAD only to a request with credentials (it does not check them).
    let head = agent
        .head(format!("{}/{BUCKET}/{key}", moto.endpoint()))
        .header(
            "authorization",
            "AWS4-HMAC-SHA256 Credential=test/20261202/us-east-1/s3/aws4_request, SignedHeaders=host, Signature=0",
        )
        .call()
        .unwrap();
    assert_eq!(head.status().as_u16(), 200);
    let header = |n: &str| head.headers().get(n).and_then(|v| v.to_str().ok()).unwrap_or_default().to_string();
    let until = chrono::DateTime::parse_from_rfc3339(&header("x-amz-object-lock-retain-until-date"))
        .unwrap_or_else(|e| panic!("no retain-until date on {key}: {e}"));
    (header("x-amz-object-lock-mode"), until.with_timezone(&chrono::Utc))
}

fn backup(fx: &Fixture, conf: &std::path::Path, moto: &MotoServer, bucket: &str) -> crate::harness::Run {
    run(fx
        .once(conf)
        .env("S3_ENDPOINT", moto.endpoint())
        .env("S3_BUCKET", bucket)
        .env("S3_USER", "test")
        .env("S3_PASSWORD", "test-secret")
        .env("S3_OBJECT_LOCK", "governance")
        .env("S3_PRUNE_BACKUPS", "true")
        .env("MIRROR_ATTEMPTS", "1")
        .env("BACKUP_STRATEGY", "daily")
        .env("NUM_BACKUPS", "1")
        .env("TZ", "UTC"))
}

#[test]
fn locked_copies_are_kept_until_they_expire_and_the_server_refuses_to_delete_them() {
    let Some(fx) = Fixture::start(20) else { return };
    let Some(moto) = MotoServer::start() else { return };
    // Legacy mode, BACKUP_PERIOD 1d, NUM_BACKUPS=1: each copy is locked for one day.
    let conf = fx.conf(&format!("localhost:{}/app1\n", fx.pg.port));
    let r = backup(&fx, &conf, &moto, BUCKET);
    assert_eq!(r.code, 0, "{}", r.all());
    let first = versions(&moto, BUCKET);
    assert_eq!(first.len(), 1, "{first:?}");
    let agent: ureq::Agent = ureq::Agent::config_builder().http_status_as_error(false).build().into();
    let (mode, until) = lock_of(&moto, &first[0].0);
    assert_eq!(mode, "GOVERNANCE");
    let left = until - chrono::Utc::now();
    assert!(left > chrono::Duration::hours(23) && left <= chrono::Duration::hours(24), "{left:?}");

    // The next run's retention would delete the first copy: it is locked, kept, no failure.
    let r = backup(&fx, &conf, &moto, BUCKET);
    assert_eq!(r.code, 0, "{}", r.all());
    assert!(r.stderr.contains("still locked"), "{}", r.all());
    assert_eq!(versions(&moto, BUCKET).len(), 2);

    // The server itself refuses to delete the locked version.
    let (key, version) = &first[0];
    let resp = agent.delete(format!("{}/{BUCKET}/{key}?versionId={version}", moto.endpoint())).call().unwrap();
    assert_eq!(resp.status().as_u16(), 403, "a locked version was deleted");
    assert!(versions(&moto, BUCKET).contains(&first[0]));

    // A bucket without Object Lock: a clear error, the local backup kept.
    agent.put(format!("{}/plain-bucket", moto.endpoint())).send(&[][..]).unwrap();
    let r = backup(&fx, &conf, &moto, "plain-bucket");
    assert_eq!(r.code, 1, "{}", r.all());
    assert!(r.stderr.contains("does not have Object Lock enabled"), "{}", r.all());
}

#[test]
fn an_expired_lock_lets_retention_delete_every_version() {
    let Some(fx) = Fixture::start(20) else { return };
    let Some(moto) = MotoServer::start() else { return };
    // A 2-second schedule with NUM_BACKUPS=1 and no floor: two-second locks.
    let conf = fx.conf(&format!("localhost:{}/app1\n@every 2s default ./backup.sh -s\n", fx.pg.port));
    let backup = || {
        let r = run(fx
            .once(&conf)
            .env("S3_ENDPOINT", moto.endpoint())
            .env("S3_BUCKET", BUCKET)
            .env("S3_USER", "test")
            .env("S3_PASSWORD", "test-secret")
            .env("S3_OBJECT_LOCK", "compliance")
            .env("S3_OBJECT_LOCK_MIN_DAYS", "0")
            .env("S3_PRUNE_BACKUPS", "true")
            .env("BACKUP_STRATEGY", "daily")
            .env("NUM_BACKUPS", "1"));
        assert_eq!(r.code, 0, "{}", r.all());
        r
    };
    backup();
    let first = versions(&moto, BUCKET);
    assert_eq!(first.len(), 1);
    let (mode, until) = lock_of(&moto, &first[0].0);
    assert_eq!(mode, "COMPLIANCE");
    let left = until - chrono::Utc::now();
    assert!(left <= chrono::Duration::seconds(3), "a two-second lock: {left:?}");
    assert!(wait_until(Duration::from_secs(10), || chrono::Utc::now() > until + chrono::Duration::seconds(1)));
    let r = backup();
    assert!(!r.stderr.contains("still locked"), "{}", r.all());
    let now = versions(&moto, BUCKET);
    assert_eq!(now.len(), 1, "{now:?}");
    assert!(!now.contains(&first[0]), "the expired copy's version is gone, not hidden behind a delete marker");
    let (_, body) = get(&format!("{}/{BUCKET}?versions", moto.endpoint()));
    assert!(!body.contains("<DeleteMarker>"), "no delete marker left: {body}");
}

/// A backup larger than one part goes up as a multipart upload (Content-MD5 on every part)
/// and is locked like a single PUT, on the pinned moto and on its current release (which
/// answered 500 to CreateMultipartUpload sent as `?uploads=1`).
#[test]
fn a_multipart_upload_is_locked_too() {
    multipart_is_locked(MotoServer::start);
}

#[test]
fn a_multipart_upload_is_locked_too_on_the_current_moto() {
    multipart_is_locked(MotoServer::start_current);
}

fn multipart_is_locked(start: fn() -> Option<MotoServer>) {
    let Some(fx) = Fixture::start(20) else { return };
    let Some(moto) = start() else { return };
    // About 10 MB of gzip output: random bytes, hex in the dump.
    fx.pg.psql(
        "app1",
        "SET ROLE app; CREATE TABLE noise AS SELECT decode(md5(g::text) || md5((g * 7)::text), 'hex') AS b FROM generate_series(1, 300000) g",
    );
    let conf = fx.conf(&format!("localhost:{}/app1\n", fx.pg.port));
    let r = run(fx
        .once(&conf)
        .env("S3_ENDPOINT", moto.endpoint())
        .env("S3_BUCKET", BUCKET)
        .env("S3_USER", "test")
        .env("S3_PASSWORD", "test-secret")
        .env("S3_OBJECT_LOCK", "governance")
        .env("S3_PART_SIZE_MB", "5")
        .env("BACKUP_STRATEGY", "daily")
        .env("NUM_BACKUPS", "2"));
    assert_eq!(r.code, 0, "{}", r.all());
    let local = fx.newest("localhost-app1");
    assert!(local.metadata().unwrap().len() > 5 << 20, "the backup must exceed one part");
    let copies = versions(&moto, BUCKET);
    assert_eq!(copies.len(), 1, "{copies:?}");
    let (mode, until) = lock_of(&moto, &copies[0].0);
    assert_eq!(mode, "GOVERNANCE");
    let left = until - chrono::Utc::now();
    assert!(left > chrono::Duration::days(1), "NUM_BACKUPS=2 on a daily period: two days, got {left:?}");
}
