//! The point-in-time archive on the mirrors (`pitr::mirror`): with FTPS (vsftpd) and S3 with
//! Object Lock (the current moto) configured and encryption on, the daemon copies every
//! finished segment and the base backup byte for byte, one FTPS login carrying many files;
//! WAL and base backups are locked, the index (replaced as it grows) is not; nothing on a
//! mirror is readable without the identity; `backup_pitr_mirror_lag_seconds` reaches 0. With
//! the backup volume gone, `-r --at latest --remote NAME` restores from each mirror's copy (one
//! of them with `BACKUP_COMPRESSION` changed since the archive was written).

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::harness::app::Fixture;
use crate::harness::daemon::{Daemon, get, metric, wait_until};
use crate::harness::moto::MotoServer;
use crate::harness::pitr::work;
use crate::harness::vsftpd::{self, Cert, Vsftpd};

const BUCKET: &str = "pitr-copies";
/// moto answers HEAD and GET only to a request with credentials (it does not check them).
const AUTH: &str =
    "AWS4-HMAC-SHA256 Credential=test/20261206/us-east-1/s3/aws4_request, SignedHeaders=host, Signature=0";

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder().http_status_as_error(false).build().into()
}

/// An object lock: its mode and retain-until date.
type Lock = (String, chrono::DateTime<chrono::Utc>);

/// The object `key` on moto: its bytes and its lock, when it has one.
fn object(moto: &MotoServer, key: &str) -> Option<(Vec<u8>, Option<Lock>)> {
    let mut resp =
        agent().get(format!("{}/{BUCKET}/{key}", moto.endpoint())).header("authorization", AUTH).call().ok()?;
    if resp.status().as_u16() != 200 {
        return None;
    }
    let header = |n: &str| resp.headers().get(n).and_then(|v| v.to_str().ok()).map(str::to_string);
    let lock = header("x-amz-object-lock-mode").zip(
        header("x-amz-object-lock-retain-until-date")
            .and_then(|d| chrono::DateTime::parse_from_rfc3339(&d).ok())
            .map(|d| d.with_timezone(&chrono::Utc)),
    );
    Some((resp.body_mut().with_config().limit(1 << 30).read_to_vec().ok()?, lock))
}

/// The archive's files that never change once stored: WAL segments, history, base backups.
fn settled(archive: &Path) -> Vec<PathBuf> {
    walkdir::WalkDir::new(archive)
        .into_iter()
        .map(|e| e.unwrap().path().to_path_buf())
        .filter(|p| p.is_file())
        .filter(|p| {
            let rel = p.strip_prefix(archive).unwrap().to_string_lossy().into_owned();
            (rel.starts_with("wal/") || rel.starts_with("base/") || rel.starts_with("history/"))
                && !rel.contains(".partial")
                && !rel.ends_with(".in_progress")
        })
        .collect()
}

#[test]
fn the_archive_is_copied_to_ftps_and_locked_s3_byte_for_byte() {
    let Some(fx) = Fixture::start(5) else { return };
    let Some(ftp) = Vsftpd::start(false, Cert::CaSigned) else { return };
    let Some(moto) = MotoServer::start_current() else { return };
    let keys = tempfile::tempdir().unwrap();
    let key = keys.path().join("key.txt");
    let Ok(out) = std::process::Command::new("age-keygen").arg("-o").arg(&key).output() else {
        crate::harness::missing::<()>("age", "age-keygen not on PATH (apt install age)");
        return;
    };
    assert!(out.status.success());
    let public = std::process::Command::new("age-keygen").arg("-y").arg(&key).output().unwrap();
    let public = String::from_utf8(public.stdout).unwrap().trim().to_string();
    let port = fx.pg.port;
    let server = format!("localhost:{port}");
    let conf = fx.conf(&format!("localhost:{port}/app1\n0 0 1 1 * default ./backup.sh -s\n"));
    let with_env = |cmd: &mut std::process::Command| {
        cmd.env("PITR_SERVERS", &server)
            .env("LOCALHOST_REPLICATION_USER", "postgres")
            .env("LOCALHOST_REPLICATION_PASSWORD", "admin-secret")
            .env("PITR_SPOOL_DIR", fx.dir.path().join("spool"))
            .env("PITR_BASE_SCHEDULE", "@every 24h")
            .env("PITR_CHAINS", "2")
            .env("BACKUP_ENCRYPTION_RECIPIENTS", &public)
            .env("FTP_URL", format!("ftp://127.0.0.1:{}/offsite/", ftp.port))
            .env("FTP_USER", &ftp.user)
            .env("FTP_PASSWORD", vsftpd::PASSWORD)
            .env("FTP_CA_FILE", &ftp.trust)
            .env("S3_ENDPOINT", moto.endpoint())
            .env("S3_BUCKET", BUCKET)
            .env("S3_USER", "test")
            .env("S3_PASSWORD", "test-secret")
            .env("S3_OBJECT_LOCK", "governance")
            .env("VERIFY_DIR", fx.verify_dir());
    };
    let mut cmd = fx.cmd(&conf);
    with_env(&mut cmd);
    let mut d = Daemon::start(cmd, fx.dir.path());
    d.wait_for("A full base backup of", Duration::from_secs(90));
    fx.pg.psql("postgres", "CREATE TABLE t (x int)");
    fx.pg.psql("app1", "SET ROLE app; CREATE TABLE marker AS SELECT 42 AS x");
    work(&fx.pg, 3);
    fx.pg.psql("postgres", "SELECT pg_switch_wal()");
    let archive = std::fs::read_dir(fx.backups().join("pitr")).unwrap().next().unwrap().unwrap().path();
    let key_of = |p: &Path| p.strip_prefix(fx.backups()).unwrap().to_string_lossy().into_owned();
    let lag = format!("backup_pitr_mirror_lag_seconds{{server=\"{server}\"}}");
    // Caught up: the metric says 0 and both mirrors hold every settled file, byte for byte.
    let caught_up = || {
        let files = settled(&archive);
        metric(&get(&d.addr, "/metrics").1, &lag) == Some(0.0)
            && files.iter().any(|p| key_of(p).contains("/wal/"))
            && files.iter().all(|p| {
                let local = std::fs::read(p).unwrap();
                std::fs::read(ftp.root.join("offsite").join(key_of(p))).is_ok_and(|c| c == local)
                    && object(&moto, &key_of(p)).is_some_and(|(c, _)| c == local)
            })
    };
    assert!(
        wait_until(Duration::from_secs(120), caught_up),
        "{}\n{}\n{}",
        get(&d.addr, "/metrics").1,
        d.log(),
        ftp.log()
    );
    let files = settled(&archive);
    let base = files.iter().find(|p| key_of(p).ends_with("base.tar.gz.age")).expect("the base backup");
    let copy = std::fs::read(ftp.root.join("offsite").join(key_of(base))).unwrap();
    assert!(copy.starts_with(b"age-encryption.org/v1"), "encrypted on the mirror");
    // Locked: WAL and the base backup, until the chain is expected to expire (two daily chains:
    // two days; never less than a day); the index is replaced and stays unlocked.
    for p in files.iter().filter(|p| !key_of(p).contains("/history/")) {
        let (_, lock) = object(&moto, &key_of(p)).unwrap();
        let (mode, until) = lock.unwrap_or_else(|| panic!("{} is not locked", key_of(p)));
        assert_eq!(mode, "GOVERNANCE");
        let left = until - chrono::Utc::now();
        assert!(left > chrono::Duration::hours(47) && left <= chrono::Duration::hours(48), "{}: {left:?}", key_of(p));
    }
    assert!(
        wait_until(Duration::from_secs(90), || object(&moto, &key_of(&archive.join("index.jsonl"))).is_some()),
        "the index goes up within a minute"
    );
    let (_, index_lock) = object(&moto, &key_of(&archive.join("index.jsonl"))).unwrap();
    assert_eq!(index_lock, None, "the index is not locked");
    assert!(!ftp.root.join("offsite").join(key_of(&archive.join("mirrored"))).exists(), "ledgers stay local");
    // One login carries many files.
    let log = ftp.log();
    let (logins, uploads) = (log.matches("OK LOGIN").count(), log.matches("OK UPLOAD").count());
    let retries: Vec<String> = d.log().lines().filter(|l| l.contains("retrying")).map(str::to_string).collect();
    assert!(logins >= 1 && uploads > logins, "{logins} logins for {uploads} uploads:\n{log}\n{retries:?}");
    // The mirrors' index catches up with ours (at most a minute after it changed).
    let index = std::fs::read(archive.join("index.jsonl")).unwrap();
    let same_index = || {
        let now = std::fs::read(archive.join("index.jsonl")).unwrap();
        std::fs::read(ftp.root.join("offsite").join(key_of(&archive.join("index.jsonl")))).is_ok_and(|c| c == now)
            && object(&moto, &key_of(&archive.join("index.jsonl"))).is_some_and(|(c, _)| c == now)
    };
    assert!(
        wait_until(Duration::from_secs(150), same_index),
        "{} bytes locally
{}",
        index.len(),
        d.log()
    );
    let (code, _) = d.terminate();
    assert_eq!(code, 0, "{}", d.log());

    // The mistake, then the backup volume lost: each mirror's copy alone restores app1 as
    // it was, the marker back, nothing staged left behind.
    fx.pg.psql("app1", "DROP TABLE marker");
    std::fs::remove_dir_all(fx.backups().join("pitr")).unwrap();
    // From S3 with BACKUP_COMPRESSION changed since the archive was written (gzip then, zstd
    // now): the copies are found under the extension they were stored with.
    for (mirror, compression) in [("ftp", "gzip"), ("s3", "zstd")] {
        let mut cmd = fx.cmd(&conf);
        with_env(&mut cmd);
        cmd.args(["-r", &format!("localhost:{port}/app1"), "--at", "latest", "--remote", mirror, "-s"])
            .env("BACKUP_ENCRYPTION_IDENTITY_FILE", &key)
            .env("BACKUP_COMPRESSION", compression);
        let r = crate::harness::run(&mut cmd);
        assert_eq!(r.code, 0, "--remote {mirror}: {}", r.all());
        assert!(r.stderr.contains("Streamed what the recovery needs from the mirror (nothing staged)"), "{}", r.all());
        assert_eq!(fx.pg.psql("app1", "SELECT x FROM marker"), "42", "--remote {mirror}");
        fx.pg.psql("app1", "DROP TABLE marker");
        let staged = std::fs::read_dir(fx.backups().join(".backup_container_fetch"))
            .map(|d| d.flatten().map(|e| e.file_name()).collect::<Vec<_>>())
            .unwrap_or_default();
        assert!(staged.is_empty(), "{staged:?}");
    }
    assert!(!fx.backups().join("pitr").exists(), "a remote restore leaves the local archive as it was");
}
