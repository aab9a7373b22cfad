//! An explicit-FTPS server for tests: pyftpdlib's TLS_FTPHandler (TLS required on control
//! and data channels) on 127.0.0.1, with a CA and a leaf certificate generated per server.
//! Python comes from `FTPS_TEST_PYTHON` or the `.tools/venv` that `scripts/install-deps.sh
//! ftps` creates. Dropping it kills the server.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use super::{free_port, missing};

pub const USER: &str = "backup";
pub const PASSWORD: &str = "ftp s3cret";
/// An account that may list and read but not write (same password).
pub const READ_ONLY_USER: &str = "reader";

const SERVER: &str = r#"
import sys
from pyftpdlib.authorizers import DummyAuthorizer
from pyftpdlib.handlers import TLS_FTPHandler
from pyftpdlib.servers import FTPServer
port, root, cert, key, user, pw = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4], sys.argv[5], sys.argv[6]
a = DummyAuthorizer(); a.add_user(user, pw, root, perm="elradfmwMT"); a.add_user("reader", pw, root, perm="elr")
h = TLS_FTPHandler; h.certfile, h.keyfile, h.authorizer = cert, key, a
h.tls_control_required = h.tls_data_required = True
srv = FTPServer(("127.0.0.1", port), h); print("READY", flush=True); srv.serve_forever()
"#;

pub struct FtpsServer {
    child: Child,
    pub port: u16,
    pub root: PathBuf,
    pub ca: PathBuf,
    _dir: tempfile::TempDir,
}

fn python() -> Option<PathBuf> {
    if let Ok(p) = std::env::var("FTPS_TEST_PYTHON") {
        return Some(PathBuf::from(p));
    }
    let venv = Path::new(env!("CARGO_MANIFEST_DIR")).join(".tools/venv/bin/python");
    venv.exists().then_some(venv)
}

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl").args(args).current_dir(dir).output().expect("openssl");
    assert!(out.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
}

/// A CA and a leaf certificate for 127.0.0.1/localhost, in `dir`.
pub fn make_certificates(dir: &Path) {
    openssl(
        dir,
        &[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "ca.key",
            "-out",
            "ca.pem",
            "-days",
            "30",
            "-subj",
            "/CN=test CA",
            "-addext",
            "basicConstraints=critical,CA:TRUE",
            "-addext",
            "keyUsage=critical,keyCertSign,cRLSign",
        ],
    );
    openssl(
        dir,
        &[
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "server.key",
            "-out",
            "server.csr",
            "-subj",
            "/CN=localhost",
        ],
    );
    std::fs::write(dir.join("ext.cnf"), "subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n").unwrap();
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            "server.pem",
            "-days",
            "30",
            "-extfile",
            "ext.cnf",
        ],
    );
}

impl FtpsServer {
    /// Starts a server serving `root` (created if missing); `None` (skip) without pyftpdlib.
    pub fn start(root: &Path) -> Option<FtpsServer> {
        let Some(python) = python() else {
            return missing("ftps", "pyftpdlib venv not found (scripts/install-deps.sh ftps)");
        };
        let dir = tempfile::tempdir().unwrap();
        make_certificates(dir.path());
        std::fs::write(dir.path().join("server.py"), SERVER).unwrap();
        std::fs::create_dir_all(root).unwrap();
        let port = free_port();
        let mut child = Command::new(python)
            .arg(dir.path().join("server.py"))
            .arg(port.to_string())
            .arg(root)
            .arg(dir.path().join("server.pem"))
            .arg(dir.path().join("server.key"))
            .args([USER, PASSWORD])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
        assert_eq!(line.trim(), "READY", "pyftpdlib did not start");
        Some(FtpsServer { child, port, root: root.to_path_buf(), ca: dir.path().join("ca.pem"), _dir: dir })
    }

    pub fn url(&self, path: &str) -> String {
        format!("ftp://127.0.0.1:{}/{path}", self.port)
    }
}

impl Drop for FtpsServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
