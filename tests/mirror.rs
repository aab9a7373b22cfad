//! Mirrors end to end against real servers: one scenario for every kind (FTPS on pyftpdlib,
//! S3 on s3s-fs): uploads with sidecars in the local layout, listing, an outage and its
//! catch-up, remote pruning; then what is particular to each: untrusted certificates and
//! plaintext refused (FTPS), multipart uploads and a wrong secret (S3). What every storage
//! promises is checked by the conformance suite (tests/storage_conformance.rs).

use std::fs;
use std::path::Path;

use crate::harness::app::Fixture;
use crate::harness::ftps::{self, FtpsServer};
use crate::harness::receiver::{Behaviour, Receiver};
use crate::harness::s3::{self, S3Server};
use crate::harness::{backups_under, files_under, run};

fn ftp_env(cmd: &mut std::process::Command, server: &FtpsServer) {
    cmd.env("FTP_URL", server.url("offsite/"))
        .env("FTP_USER", ftps::USER)
        .env("FTP_PASSWORD", ftps::PASSWORD)
        .env("FTP_CA_FILE", &server.ca)
        .env("MIRROR_ATTEMPTS", "2");
}

/// Every local backup file (and its record) that the remote folder holds, byte-identical; the
/// records live in the catalog folder, never beside the backups.
fn assert_mirrored(local_root: &Path, remote_root: &Path) -> usize {
    let remote = backups_under(remote_root);
    for f in &remote {
        assert_eq!(fs::read(remote_root.join(f)).unwrap(), fs::read(local_root.join(f)).unwrap(), "{f} differs");
        let record = backup_container::catalog::manifest::record_key(f);
        assert_eq!(
            fs::read(remote_root.join(&record)).unwrap(),
            fs::read(local_root.join(&record)).unwrap(),
            "{record}"
        );
        assert!(!remote_root.join(format!("{f}.sha256")).exists(), "no sidecar beside {f}");
    }
    remote.len()
}

/// A mirror server for the shared scenario.
trait Mirror: Sized {
    fn start(root: &Path) -> Option<Self>;
    fn port(&self) -> u16;
    /// Points `cmd` at this server (`port` overrides where it listens).
    fn env(&self, cmd: &mut std::process::Command, port: u16);
    /// Where the mirrored files land on the server's disk.
    fn remote(root: &Path) -> std::path::PathBuf;
    /// The variable that turns remote pruning on.
    const PRUNE: &'static str;
}

impl Mirror for FtpsServer {
    fn start(root: &Path) -> Option<Self> {
        FtpsServer::start(root)
    }
    fn port(&self) -> u16 {
        self.port
    }
    fn env(&self, cmd: &mut std::process::Command, port: u16) {
        ftp_env(cmd, self);
        cmd.env("FTP_URL", format!("ftp://127.0.0.1:{port}/offsite/"));
    }
    fn remote(root: &Path) -> std::path::PathBuf {
        root.join("offsite")
    }
    const PRUNE: &'static str = "FTP_PRUNE_BACKUPS";
}

impl Mirror for S3Server {
    fn start(root: &Path) -> Option<Self> {
        S3Server::start(root)
    }
    fn port(&self) -> u16 {
        self.port
    }
    fn env(&self, cmd: &mut std::process::Command, port: u16) {
        s3_env(cmd, self);
        cmd.env("S3_ENDPOINT", format!("http://127.0.0.1:{port}"));
    }
    fn remote(root: &Path) -> std::path::PathBuf {
        root.join("backups/team-a")
    }
    const PRUNE: &'static str = "S3_PRUNE_BACKUPS";
}

/// The one mirror scenario, for every kind: nested upload with checksum, `-l --remote`, an
/// outage (local kept, exit 1, WARN notified), catch-up when the server is back, then remote
/// pruning that leaves foreign files alone.
fn mirror_scenario<M: Mirror>() {
    let Some(fx) = Fixture::start(50) else { return };
    let remote_root = fx.dir.path().join("remote-root");
    let Some(server) = M::start(&remote_root) else { return };
    let conf = fx.conf(&format!("localhost:{}/app1\n", fx.pg.port));
    let remote = M::remote(&remote_root);
    let port = server.port();
    let with = |server: &M, port: u16| {
        let mut cmd = fx.once(&conf);
        server.env(&mut cmd, port);
        cmd
    };

    let r = run(&mut with(&server, port));
    assert_eq!(r.code, 0, "{}", r.all());
    assert_eq!(assert_mirrored(&fx.backups(), &remote), 1);
    assert!(backups_under(&remote)[0].contains('/'), "class/date folders are kept remotely");

    let mut list = fx.cmd(&conf);
    server.env(list.args(["-l", "--remote"]), port);
    let l = run(&mut list);
    assert_eq!(l.code, 0, "{}", l.all());
    assert!(l.stdout.contains("localhost-app1: 1 copies") && l.stdout.contains("record"), "{}", l.stdout);

    // Outage: the local backup is kept, the run exits 1, a WARN is notified.
    drop(server);
    let Some(elsewhere) = M::start(&fx.dir.path().join("unused")) else { return };
    let rx = Receiver::start(Behaviour::Ok);
    let mut cmd = with(&elsewhere, port);
    cmd.env("MIRROR_ATTEMPTS", "1").env("WEBHOOK_URL", &rx.url);
    let r = run(&mut cmd);
    assert_eq!(r.code, 1, "{}", r.all());
    assert!(r.stderr.contains("mirror FAILED (local backup kept)"), "{}", r.all());
    assert_eq!(backups_under(&fx.backups()).len(), 2);
    let warn =
        rx.requests().into_iter().find(|q| q.form_field("statusCode").as_deref() == Some("WARN")).expect("a WARN");
    assert!(warn.form_field("message").unwrap().contains("The local backup is kept"), "{}", warn.body);

    // Back again (same files, new port): the missed backup is caught up.
    let Some(server) = M::start(&remote_root) else { return };
    let r = run(&mut with(&server, server.port()));
    assert_eq!(r.code, 0, "{}", r.all());
    assert_eq!(assert_mirrored(&fx.backups(), &remote), 3, "the new one and the missed one");

    // Remote pruning: counts of 1; foreign files on the server are untouched.
    fs::write(remote.join("README.txt"), "not ours").unwrap();
    let foreign = remote.join("daily/2026-01-01/someone-else.sql.gz");
    fs::create_dir_all(foreign.parent().unwrap()).unwrap();
    fs::write(&foreign, "not ours either").unwrap();
    let mut cmd = with(&server, server.port());
    cmd.env(M::PRUNE, "true").env("DAILY_BACKUPS", "1").env("WEEKLY_BACKUPS", "1").env("MONTHLY_BACKUPS", "1");
    let r = run(&mut cmd);
    assert_eq!(r.code, 0, "{}", r.all());
    let ours: Vec<String> = backups_under(&remote).into_iter().filter(|f| f.contains("localhost-app1")).collect();
    assert_eq!(ours.len(), 1, "{ours:?}");
    assert!(remote.join("README.txt").exists() && foreign.exists());
    assert!(files_under(&remote).iter().all(|f| !f.ends_with(".part")), "no temporary files left");
}

/// The disaster case, for every kind: the backup volume is gone; `-r --remote` restores from
/// the mirror (checksum checked against the mirror's record), `-v --remote` verifies the
/// mirror's copy, nothing is left staged; a copy changed on the mirror is refused before the
/// database is touched.
fn restore_when_the_volume_is_gone<M: Mirror>() {
    let Some(fx) = Fixture::start(50) else { return };
    fx.pg.seed_extras("app1", "app");
    let remote_root = fx.dir.path().join("remote-root");
    let Some(server) = M::start(&remote_root) else { return };
    let db = format!("localhost:{}/app1", fx.pg.port);
    let conf = fx.conf(&format!("{db}\n"));
    let port = server.port();
    let with = |cmd: &mut std::process::Command| {
        server.env(cmd, port);
    };
    let mut once = fx.once(&conf);
    with(&mut once);
    assert_eq!(run(&mut once).code, 0);
    let digest = fx.pg.content_digest("app1");
    fs::remove_dir_all(fx.backups()).unwrap();
    fx.pg.psql("app1", "DELETE FROM sales.orders");

    let mut restore = fx.cmd(&conf);
    restore.args(["-r", &db, "--remote", "-s"]);
    with(&mut restore);
    let r = run(&mut restore);
    assert_eq!(r.code, 0, "{}", r.all());
    assert!(r.stderr.contains("Downloaded.") && r.stderr.contains("Restore complete."), "{}", r.all());
    assert_eq!(fx.pg.content_digest("app1"), digest, "restored from the mirror");
    let left: Vec<String> = files_under(&fx.backups()).into_iter().filter(|f| !f.ends_with(".lock")).collect();
    assert!(left.is_empty(), "nothing staged or recorded locally: {left:?}");

    let mut verify = fx.cmd(&conf);
    verify.args(["-v", "all", "--remote"]).env("VERIFY_DIR", fx.verify_dir());
    with(&mut verify);
    let v = run(&mut verify);
    assert_eq!(v.code, 0, "{}", v.all());
    assert!(v.stderr.contains("Verification succeeded."), "{}", v.all());

    // A copy changed on the mirror (same size) is refused before anything is touched.
    let remote = M::remote(&remote_root);
    let key = &backups_under(&remote)[0];
    let mut bytes = fs::read(remote.join(key)).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0xff;
    fs::write(remote.join(key), bytes).unwrap();
    fx.pg.psql("app1", "DELETE FROM sales.orders");
    let changed = fx.pg.content_digest("app1");
    let r = run(&mut restore);
    assert_eq!(r.code, 1, "{}", r.all());
    assert!(r.stderr.contains("does not match its checksum"), "{}", r.all());
    assert_eq!(fx.pg.content_digest("app1"), changed, "the database was not touched");

    // Without a mirror, or naming one that is not configured: a clear error.
    let r = run(fx.cmd(&conf).args(["-r", &db, "--remote", "-s"]));
    assert_ne!(r.code, 0);
    assert!(r.stderr.contains("no mirror is configured"), "{}", r.all());
    let mut wrong = fx.cmd(&conf);
    wrong.args(["-r", &db, "--remote", "nowhere", "-s"]);
    with(&mut wrong);
    let r = run(&mut wrong);
    assert!(r.code != 0 && r.stderr.contains("no mirror matches"), "{}", r.all());
}

#[test]
fn ftps_restore_when_the_volume_is_gone() {
    restore_when_the_volume_is_gone::<FtpsServer>();
}

#[test]
fn s3_restore_when_the_volume_is_gone() {
    restore_when_the_volume_is_gone::<S3Server>();
}

#[test]
fn ftps_mirror_outage_catch_up_and_pruning() {
    mirror_scenario::<FtpsServer>();
}

#[test]
fn s3_mirror_outage_catch_up_and_pruning() {
    mirror_scenario::<S3Server>();
}

/// An untrusted server certificate (no FTP_CA_FILE) and a client configured for plain FTP
/// against a server that requires TLS: clear errors, nothing uploaded, local backup kept.
#[test]
fn ftps_refuses_untrusted_certificates_and_plaintext() {
    let Some(fx) = Fixture::start(10) else { return };
    let remote_root = fx.dir.path().join("ftp-root");
    let Some(server) = FtpsServer::start(&remote_root) else { return };
    let conf = fx.conf(&format!("localhost:{}/app1\n", fx.pg.port));

    let mut cmd = fx.once(&conf);
    ftp_env(&mut cmd, &server);
    cmd.env_remove("FTP_CA_FILE");
    let r = run(&mut cmd);
    assert_eq!(r.code, 1, "{}", r.all());
    assert!(r.stderr.contains("UnknownIssuer") && r.stderr.contains("FTP_CA_FILE"), "{}", r.all());

    let mut cmd = fx.once(&conf);
    ftp_env(&mut cmd, &server);
    cmd.env("FTP_ALLOW_PLAINTEXT", "true");
    let r = run(&mut cmd);
    assert_eq!(r.code, 1, "{}", r.all());
    assert!(r.stderr.contains("FTP login as backup failed"), "{}", r.all());
    assert!(r.stderr.contains("clear text"), "plaintext is warned about: {}", r.all());

    assert!(backups_under(&remote_root).is_empty());
    assert_eq!(backups_under(&fx.backups()).len(), 2, "local backups kept");
    assert!(!r.all().contains(ftps::PASSWORD));
}

fn s3_env(cmd: &mut std::process::Command, server: &S3Server) {
    cmd.env("S3_ENDPOINT", server.endpoint())
        .env("S3_BUCKET", "backups")
        .env("S3_USER", s3::ACCESS_KEY)
        .env("S3_PASSWORD", s3::SECRET_KEY)
        .env("S3_PREFIX", "team-a")
        .env("S3_PART_SIZE_MB", "5")
        .env("MIRROR_ATTEMPTS", "1");
}

/// S3: a backup larger than one part goes up as a multipart upload (the bucket is created),
/// byte-identical; a wrong secret surfaces the 403 without leaking the secret.
#[test]
fn s3_multipart_and_wrong_secret() {
    let Some(fx) = Fixture::start(10) else { return };
    // Incompressible rows so that the backup is larger than one 5 MiB part.
    fx.pg.psql("app1", "SET ROLE app; CREATE TABLE noise AS SELECT g, md5(random()::text) || md5(random()::text) || md5(random()::text) AS r FROM generate_series(1, 150000) g");
    let s3_root = fx.dir.path().join("s3-root");
    let Some(server) = S3Server::start(&s3_root) else { return };
    let conf = fx.conf(&format!("localhost:{}/app1\n", fx.pg.port));
    let mirrored = s3_root.join("backups/team-a");

    let mut cmd = fx.once(&conf);
    s3_env(&mut cmd, &server);
    let r = run(&mut cmd);
    assert_eq!(r.code, 0, "{}", r.all());
    let files = backups_under(&fx.backups());
    assert!(fs::metadata(fx.backups().join(&files[0])).unwrap().len() > 5 << 20, "needs more than one part");
    assert_eq!(assert_mirrored(&fx.backups(), &mirrored), 1);

    let mut cmd = fx.once(&conf);
    s3_env(&mut cmd, &server);
    cmd.env("S3_PASSWORD", "wrong-secret");
    let r = run(&mut cmd);
    assert_eq!(r.code, 1, "{}", r.all());
    assert!(r.stderr.contains("403") && r.stderr.contains("SignatureDoesNotMatch"), "{}", r.all());
    assert!(!r.all().contains("wrong-secret") && !r.all().contains("X-Amz-Signature"), "{}", r.all());
    assert_eq!(assert_mirrored(&fx.backups(), &mirrored), 1);
}
