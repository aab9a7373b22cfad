//! vsftpd (the Debian package), the FTPS server many sites run, in explicit (`AUTH TLS`) or
//! implicit (TLS from the first byte, `implicit_ssl=YES`) mode, TLS required on control and
//! data channels. It needs root and a real local user: the harness creates one with a
//! password (removed on drop) whose home is a temporary folder. Dropping it stops the server.

use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use super::ftps::make_certificates;
use super::{free_port, missing};

pub const PASSWORD: &str = "vs ftp pw";

/// Which certificate the server presents.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cert {
    /// A leaf signed by a per-run CA (`ca.pem` is what clients trust).
    CaSigned,
    /// Self-signed the usual way: `openssl req -x509 -newkey rsa:2048 -nodes ...` (CA:TRUE).
    SelfSigned,
}

pub struct Vsftpd {
    child: Child,
    pub port: u16,
    pub user: String,
    /// The user's home: what the server serves.
    pub root: PathBuf,
    /// What a client should trust: the CA, or the self-signed certificate itself.
    pub trust: PathBuf,
    dir: tempfile::TempDir,
}

fn vsftpd() -> Option<PathBuf> {
    ["/usr/sbin/vsftpd", "/usr/bin/vsftpd"].iter().map(PathBuf::from).find(|p| p.exists())
}

fn must(cmd: &mut Command) {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(out.status.success(), "{cmd:?}: {}", String::from_utf8_lossy(&out.stderr));
}

/// `openssl req -x509` the way most guides write it, for 127.0.0.1 and localhost.
pub fn self_signed(dir: &Path, name: &str) {
    must(Command::new("openssl").current_dir(dir).args([
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        &format!("{name}.key"),
        "-out",
        &format!("{name}.pem"),
        "-days",
        "30",
        "-subj",
        "/CN=localhost",
        "-addext",
        "subjectAltName=DNS:localhost,IP:127.0.0.1",
    ]));
}

impl Vsftpd {
    /// Starts a server, or `None` (skip) when vsftpd is missing or we are not root.
    pub fn start(implicit: bool, cert: Cert) -> Option<Vsftpd> {
        let Some(bin) = vsftpd() else { return missing("vsftpd", "not installed (apt-get install vsftpd)") };
        if !nix::unistd::Uid::effective().is_root() {
            return missing("vsftpd", "vsftpd needs root (and a local user)");
        }
        let dir = tempfile::Builder::new().prefix("vsftpd").tempdir().unwrap();
        let (pem, key, trust) = match cert {
            Cert::CaSigned => {
                make_certificates(dir.path());
                ("server.pem", "server.key", dir.path().join("ca.pem"))
            }
            Cert::SelfSigned => {
                self_signed(dir.path(), "self");
                ("self.pem", "self.key", dir.path().join("self.pem"))
            }
        };
        let port = free_port();
        let pasv = free_port();
        let user = format!("bcftp{port}");
        let root = dir.path().join("home");
        let empty = dir.path().join("empty");
        std::fs::create_dir_all(&empty).unwrap();
        must(Command::new("useradd").args(["-M", "-d"]).arg(&root).args(["-s", "/bin/sh", &user]));
        std::fs::create_dir_all(&root).unwrap();
        let pw = nix::unistd::User::from_name(&user).unwrap().unwrap();
        nix::unistd::chown(&root, Some(pw.uid), Some(pw.gid)).unwrap();
        let mut chpasswd = Command::new("chpasswd").stdin(std::process::Stdio::piped()).spawn().unwrap();
        std::io::Write::write_all(chpasswd.stdin.as_mut().unwrap(), format!("{user}:{PASSWORD}\n").as_bytes()).unwrap();
        assert!(chpasswd.wait().unwrap().success());
        let conf = dir.path().join("vsftpd.conf");
        let d = dir.path().display();
        std::fs::write(
            &conf,
            format!(
                "listen=YES\nlisten_ipv6=NO\nlisten_address=127.0.0.1\nlisten_port={port}\nbackground=NO\n\
                 anonymous_enable=NO\nlocal_enable=YES\nwrite_enable=YES\nlocal_umask=022\n\
                 chroot_local_user=YES\nallow_writeable_chroot=YES\npasv_enable=YES\n\
                 pasv_min_port={pasv}\npasv_max_port={pasv}\npasv_address=127.0.0.1\nport_enable=NO\n\
                 ssl_enable=YES\nimplicit_ssl={}\nallow_anon_ssl=NO\nforce_local_logins_ssl=YES\n\
                 force_local_data_ssl=YES\nssl_tlsv1=NO\nssl_sslv2=NO\nssl_sslv3=NO\nssl_ciphers=HIGH\n\
                 require_ssl_reuse=YES\nrsa_cert_file={d}/{pem}\nrsa_private_key_file={d}/{key}\n\
                 secure_chroot_dir={}\npam_service_name=vsftpd\nseccomp_sandbox=NO\nuserlist_enable=NO\n\
                 check_shell=NO\nxferlog_enable=YES\nvsftpd_log_file={d}/vsftpd.log\n",
                if implicit { "YES" } else { "NO" },
                empty.display(),
            ),
        )
        .unwrap();
        let child = Command::new(bin).arg(&conf).spawn().unwrap();
        let server = Vsftpd { child, port, user, root, trust, dir };
        let deadline = Instant::now() + Duration::from_secs(20);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "vsftpd did not start: {}", server.log());
            std::thread::sleep(Duration::from_millis(50));
        }
        Some(server)
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("vsftpd.log")).unwrap_or_default()
    }
}

impl Drop for Vsftpd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        // Its sessions are processes of their own; end them before the user goes.
        let _ = Command::new("pkill").args(["-KILL", "-u", &self.user]).output();
        let _ = Command::new("userdel").arg(&self.user).output();
    }
}
