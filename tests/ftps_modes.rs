//! FTPS as the bash version's users have it (it ran `curl --ftp-ssl -T file $FTP_URL`), against
//! vsftpd: `ftp://` is explicit TLS, `ftps://` implicit TLS as curl reads it (`FTP_TLS`
//! overrides); the wrong mode fails fast, once, naming TLS and the mode; a self-signed
//! certificate made the usual way is trusted when it is the server's own (pinned), a different
//! one with the same name is not; one log line per failure.

use std::time::{Duration, Instant};

use crate::harness::app::Fixture;
use crate::harness::vsftpd::{self, Cert, Vsftpd};
use crate::harness::{Run, backups_under, run};

fn mirror_run(fx: &Fixture, server: &Vsftpd, url: &str, trust: &std::path::Path, extra: &[(&str, &str)]) -> Run {
    let conf = fx.conf(&format!("localhost:{}/app1\n", fx.pg.port));
    let mut cmd = fx.once(&conf);
    cmd.env("FTP_URL", url)
        .env("FTP_USER", &server.user)
        .env("FTP_PASSWORD", vsftpd::PASSWORD)
        .env("FTP_CA_FILE", trust)
        .env("FTP_TIMEOUT", "3s")
        .env("MIRROR_ATTEMPTS", "3");
    for (k, v) in extra {
        cmd.env(k, v);
    }
    run(&mut cmd)
}

#[test]
fn explicit_and_implicit_tls_against_vsftpd() {
    let Some(fx) = Fixture::start(20) else { return };
    let Some(explicit) = Vsftpd::start(false, Cert::CaSigned) else { return };
    let r = mirror_run(&fx, &explicit, &format!("ftp://127.0.0.1:{}/offsite/", explicit.port), &explicit.trust, &[]);
    assert_eq!(r.code, 0, "{}\n{}", r.all(), explicit.log());
    assert_eq!(backups_under(&explicit.root.join("offsite")).len(), 1);

    let Some(implicit) = Vsftpd::start(true, Cert::CaSigned) else { return };
    let r = mirror_run(&fx, &implicit, &format!("ftps://127.0.0.1:{}/offsite/", implicit.port), &implicit.trust, &[]);
    assert_eq!(r.code, 0, "{}\n{}", r.all(), implicit.log());
    assert_eq!(backups_under(&implicit.root.join("offsite")).len(), 2, "both backups, the new one and the catch-up");
    // FTP_TLS overrides the scheme.
    let url = format!("ftp://127.0.0.1:{}/other/", implicit.port);
    let r = mirror_run(&fx, &implicit, &url, &implicit.trust, &[("FTP_TLS", "implicit")]);
    assert_eq!(r.code, 0, "{}", r.all());
}

#[test]
fn the_wrong_mode_fails_fast_once_and_says_why() {
    let Some(fx) = Fixture::start(5) else { return };
    let Some(implicit) = Vsftpd::start(true, Cert::CaSigned) else { return };
    let Some(explicit) = Vsftpd::start(false, Cert::CaSigned) else { return };
    // Explicit client, implicit server: it never greets in plain text.
    let started = Instant::now();
    let r = mirror_run(&fx, &implicit, &format!("ftp://127.0.0.1:{}/offsite/", implicit.port), &implicit.trust, &[]);
    let took = started.elapsed();
    assert_eq!(r.code, 1, "{}", r.all());
    assert!(r.stderr.contains("explicit TLS mode") && r.stderr.contains("FTP_TLS=implicit"), "{}", r.all());
    assert!(r.stderr.contains("not retried"), "{}", r.all());
    assert!(took < Duration::from_secs(15), "3 s timeout, 3 attempts allowed, took {took:?}");
    assert_eq!(r.stderr.matches("Mirror failed").count(), 1, "{}", r.all());
    assert!(!r.stderr.contains("rustls stream"), "no library noise: {}", r.all());
    // Implicit client, explicit server: the server answers in plain text.
    let r = mirror_run(&fx, &explicit, &format!("ftps://127.0.0.1:{}/offsite/", explicit.port), &explicit.trust, &[]);
    assert_eq!(r.code, 1, "{}", r.all());
    assert!(r.stderr.contains("implicit mode") && r.stderr.contains("FTP_TLS=explicit"), "{}", r.all());
    assert_eq!(r.stderr.matches("Mirror failed").count(), 1, "{}", r.all());
    assert!(backups_under(&fx.backups()).len() == 2, "local backups kept");
}

#[test]
fn a_self_signed_certificate_is_pinned_and_another_refused() {
    let Some(fx) = Fixture::start(5) else { return };
    let Some(server) = Vsftpd::start(false, Cert::SelfSigned) else { return };
    let url = format!("ftp://127.0.0.1:{}/offsite/", server.port);
    // The usual openssl self-signed certificate is CA:TRUE; WebPKI alone rejects it as a leaf.
    let text = std::process::Command::new("openssl")
        .args(["x509", "-noout", "-text", "-in"])
        .arg(&server.trust)
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&text.stdout).contains("CA:TRUE"), "the test certificate is CA:TRUE");
    let r = mirror_run(&fx, &server, &url, &server.trust, &[]);
    assert_eq!(r.code, 0, "{}\n{}", r.all(), server.log());
    assert_eq!(backups_under(&server.root.join("offsite")).len(), 1);
    // Another self-signed certificate for the same name: refused.
    let other = tempfile::tempdir().unwrap();
    vsftpd::self_signed(other.path(), "other");
    let r = mirror_run(&fx, &server, &url, &other.path().join("other.pem"), &[]);
    assert_eq!(r.code, 1, "{}", r.all());
    assert!(r.stderr.contains("not trusted") && r.stderr.contains("FTP_CA_FILE"), "{}", r.all());
    assert_eq!(r.stderr.matches("Mirror failed").count(), 1, "{}", r.all());
}
