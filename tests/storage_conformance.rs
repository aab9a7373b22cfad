//! The `Storage` conformance suite (`backup_container::storage::conformance`) against every
//! remote kind on real servers: FTPS on pyftpdlib and on vsftpd (explicit and implicit TLS),
//! S3 on s3s-fs. (The local folder and the in-memory storage run it as unit tests.)

use std::time::Duration;

use backup_container::config::{FtpSettings, MirrorSettings, S3Settings};
use backup_container::model::secret::Secret;
use backup_container::storage::{self, conformance};

use crate::harness::ftps::{self, FtpsServer};
use crate::harness::s3::{self, S3Server};
use crate::harness::vsftpd::{self, Cert, Vsftpd};

fn ftp(url: String, user: &str, password: &str, ca: &std::path::Path) -> MirrorSettings {
    MirrorSettings {
        ftp: Some(FtpSettings {
            url: Secret::new(url),
            user: Some(user.into()),
            password: Some(Secret::new(password)),
            ca_file: Some(ca.to_path_buf()),
            allow_plaintext: false,
            implicit_tls: None,
            prune: true,
            timeout: Duration::from_secs(10),
        }),
        s3: None,
        attempts: 1,
        catchup: 0,
    }
}

fn check(settings: &MirrorSettings) {
    let scratch = tempfile::tempdir().unwrap();
    let mirrors = storage::from_mirrors(settings, None, &backup_container::system::cancel::Cancel::new()).unwrap();
    assert_eq!(mirrors.len(), 1);
    conformance::check(mirrors[0].as_ref(), scratch.path()).unwrap_or_else(|e| panic!("{e:#}"));
}

#[test]
fn ftps_on_pyftpdlib() {
    let dir = tempfile::tempdir().unwrap();
    let Some(server) = FtpsServer::start(&dir.path().join("root")) else { return };
    check(&ftp(server.url("base/"), ftps::USER, ftps::PASSWORD, &server.ca));
}

#[test]
fn ftps_on_vsftpd_explicit_and_implicit() {
    for (implicit, scheme) in [(false, "ftp"), (true, "ftps")] {
        let Some(server) = Vsftpd::start(implicit, Cert::CaSigned) else { return };
        let url = format!("{scheme}://127.0.0.1:{}/base/", server.port);
        check(&ftp(url, &server.user, vsftpd::PASSWORD, &server.trust));
    }
}

#[test]
fn s3_on_s3s_fs() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("s3");
    std::fs::create_dir_all(root.join("backups")).unwrap();
    let Some(server) = S3Server::start(&root) else { return };
    check(&MirrorSettings {
        ftp: None,
        s3: Some(S3Settings {
            endpoint: server.endpoint(),
            bucket: "backups".into(),
            region: "us-east-1".into(),
            access_key: s3::ACCESS_KEY.into(),
            secret_key: Secret::new(s3::SECRET_KEY),
            prefix: "team".into(),
            path_style: true,
            part_size: 5 << 20,
            prune: true,
            timeout: Duration::from_secs(10),
            object_lock: None,
            object_lock_min: Duration::ZERO,
        }),
        attempts: 1,
        catchup: 0,
    });
}

#[test]
fn s3_on_moto() {
    let Some(server) = crate::harness::moto::MotoServer::start() else { return };
    check(&MirrorSettings {
        ftp: None,
        s3: Some(S3Settings {
            endpoint: server.endpoint(),
            bucket: "conformance".into(),
            region: "us-east-1".into(),
            access_key: "test".into(),
            secret_key: Secret::new("test-secret"),
            prefix: String::new(),
            path_style: true,
            part_size: 5 << 20,
            prune: true,
            timeout: Duration::from_secs(10),
            object_lock: None,
            object_lock_min: Duration::ZERO,
        }),
        attempts: 1,
        catchup: 0,
    });
}
