//! FTPS mirror (suppaftp, rustls). TLS is required, in the mode the URL names as curl reads
//! it: `ftp://` explicit (`AUTH TLS` after a plain greeting), `ftps://` implicit (TLS from the
//! first byte, port 990); `FTP_TLS` overrides. Then `PBSZ 0`/`PROT P` for a protected data
//! channel. Certificates: see `ftps_tls` (system roots, `FTP_CA_FILE`, pinning). Passive mode,
//! socket timeouts on every connection and handshake. Failures that a retry cannot fix (TLS,
//! mode, certificate, login) are `Permanent`: reported once, not retried.
//! Uploads go to `.<name>.part`, are renamed, and their size is checked with `SIZE`.
//! Plain FTP only with `FTP_ALLOW_PLAINTEXT=true` (a warning on every use).

use std::fs::File;
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, anyhow, bail};
use std::io::Read;
use suppaftp::rustls::ClientConfig;
use suppaftp::types::FileType;

use suppaftp::{FtpError, ImplFtpStream, RustlsConnector, Status, TlsStream};
use tracing::warn;

use super::ftps_tls::{TimeoutConnector, TlsMode, client_config, greeting_error, handshake_error};
use super::{Permanent, RemoteObject, Storage, is_layout_dir};
use crate::catalog::manifest::CATALOG_DIR;
use crate::config::FtpSettings;
use crate::model::secret::{Secret, redact_url};

pub struct FtpsStorage {
    host: String,
    port: u16,
    /// Base folder, without leading or trailing slashes ("" = the login folder).
    base: String,
    user: String,
    password: Secret,
    /// `None` = plain FTP (explicit opt-in).
    tls: Option<Arc<ClientConfig>>,
    mode: TlsMode,
    timeout: Duration,
    prune: bool,
    display: String,
}

impl FtpsStorage {
    /// # Errors
    /// A malformed `FTP_URL`, a missing user, or an unreadable `FTP_CA_FILE`.
    pub fn new(s: &FtpSettings) -> anyhow::Result<FtpsStorage> {
        let url = url::Url::parse(s.url.expose()).map_err(|e| anyhow!("FTP_URL is not a URL: {e}"))?;
        let mode = match (s.implicit_tls, url.scheme()) {
            (Some(true), _) | (None, "ftps") => TlsMode::Implicit,
            (Some(false), _) | (None, "ftp") => TlsMode::Explicit,
            _ => bail!("FTP_URL must start with ftp:// (explicit TLS) or ftps:// (implicit TLS)"),
        };
        let host = url.host_str().ok_or_else(|| anyhow!("FTP_URL has no host"))?.to_string();
        let user = s.user.clone().or_else(|| Some(url.username().to_string()).filter(|u| !u.is_empty()));
        let password =
            s.password.clone().or_else(|| url.password().map(Secret::new)).unwrap_or_else(|| Secret::new(""));
        let tls = if s.allow_plaintext { None } else { Some(Arc::new(client_config(s.ca_file.as_deref())?)) };
        Ok(FtpsStorage {
            port: url.port().unwrap_or(mode.default_port()),
            mode,
            base: url.path().trim_matches('/').to_string(),
            user: user.ok_or_else(|| anyhow!("FTP_USER is not set"))?,
            password,
            tls,
            timeout: s.timeout,
            prune: s.prune,
            display: format!("{}{}", redact_url(s.url.expose()), if url.path() == "/" { "" } else { url.path() }),
            host,
        })
    }

    /// Connects, secures, logs in and switches to binary mode; runs `f`; quits.
    fn session<R>(&self, f: impl FnOnce(&mut dyn Ftp) -> anyhow::Result<R>) -> anyhow::Result<R> {
        let addr = (self.host.as_str(), self.port)
            .to_socket_addrs()
            .with_context(|| format!("resolving {}", self.host))?
            .next()
            .ok_or_else(|| anyhow!("{} has no address", self.host))?;
        match &self.tls {
            Some(cfg) => {
                let connector = TimeoutConnector { inner: RustlsConnector::from(cfg.clone()), timeout: self.timeout };
                let stream = match self.mode {
                    TlsMode::Explicit => connect(addr, self.timeout, suppaftp::RustlsFtpStream::connect_with_stream)?
                        .into_secure(connector, &self.host)
                        .map_err(|e| Permanent(handshake_error(&self.host, self.mode, &e.to_string())))?,
                    TlsMode::Implicit => self.connect_implicit(addr, connector)?,
                };
                self.run(stream, f)
            }
            None => {
                warn!(storage = %self.display, "FTP without TLS (FTP_ALLOW_PLAINTEXT): the password and backups cross the network in clear text.");
                self.run(connect(addr, self.timeout, suppaftp::FtpStream::connect_with_stream)?, f)
            }
        }
    }

    /// TLS from the first byte, then `PBSZ 0` and `PROT P` as in explicit mode.
    fn connect_implicit(
        &self,
        addr: SocketAddr,
        connector: TimeoutConnector,
    ) -> anyhow::Result<suppaftp::RustlsFtpStream> {
        // suppaftp's implicit connect has no connect timeout: probe the port with one first.
        drop(
            TcpStream::connect_timeout(&addr, self.timeout)
                .with_context(|| format!("connecting to FTP server {addr}"))?,
        );
        let timeout = self.timeout;
        let mut stream = suppaftp::RustlsFtpStream::connect_secure_implicit(addr, connector, &self.host)
            .map_err(|e| Permanent(handshake_error(&self.host, self.mode, &e.to_string())))?
            .passive_stream_builder(move |a| {
                let s = TcpStream::connect_timeout(&a, timeout).map_err(FtpError::ConnectionError)?;
                s.set_read_timeout(Some(timeout)).map_err(FtpError::ConnectionError)?;
                s.set_write_timeout(Some(timeout)).map_err(FtpError::ConnectionError)?;
                Ok(s)
            });
        stream.set_passive_nat_workaround(true);
        for command in ["PBSZ 0", "PROT P"] {
            stream
                .custom_command(command, &[Status::CommandOk])
                .map_err(|e| Permanent(format!("{command} after implicit TLS with {}: {e}", self.host)))?;
        }
        Ok(stream)
    }

    fn run<T: TlsStream + Send, R>(
        &self,
        mut stream: ImplFtpStream<T>,
        f: impl FnOnce(&mut dyn Ftp) -> anyhow::Result<R>,
    ) -> anyhow::Result<R> {
        stream
            .login(self.user.as_str(), self.password.expose())
            .map_err(|e| Permanent(format!("FTP login as {} failed: {e}", self.user)))?;
        stream.transfer_type(FileType::Binary).map_err(|e| anyhow!("{e}"))?;
        let result = (|| {
            for dir in self.base.split('/').filter(|d| !d.is_empty()) {
                stream.mkdir_cd(dir).with_context(|| format!("FTP folder /{} is not usable", self.base))?;
            }
            f(&mut stream)
        })();
        let _ = stream.quit();
        result
    }
}

/// A TCP connection with timeouts, and data connections with the same timeouts.
fn connect<T: TlsStream>(
    addr: SocketAddr,
    timeout: Duration,
    greet: fn(TcpStream) -> suppaftp::FtpResult<ImplFtpStream<T>>,
) -> anyhow::Result<ImplFtpStream<T>> {
    let open = move |a: SocketAddr| -> std::io::Result<TcpStream> {
        let s = TcpStream::connect_timeout(&a, timeout)?;
        s.set_read_timeout(Some(timeout))?;
        s.set_write_timeout(Some(timeout))?;
        Ok(s)
    };
    let tcp = open(addr).with_context(|| format!("connecting to FTP server {addr}"))?;
    let mut stream = greet(tcp)
        .map_err(|e| Permanent(greeting_error(&addr.to_string(), &e.to_string())))?
        .passive_stream_builder(move |a| open(a).map_err(FtpError::ConnectionError));
    stream.set_passive_nat_workaround(true);
    Ok(stream)
}

/// Uploads `local` as `key` (under the current folder): to `.<name>.part`, renamed, its size
/// checked.
fn put_in(ftp: &mut dyn Ftp, local: &Path, key: &str) -> anyhow::Result<()> {
    let expected = std::fs::metadata(local).with_context(|| format!("reading {}", local.display()))?.len();
    let (dirs, name) = key.rsplit_once('/').unwrap_or(("", key));
    for dir in dirs.split('/').filter(|d| !d.is_empty()) {
        ftp.mkdir_cd(dir)?;
    }
    let part = format!(".{name}.part");
    let mut file = File::open(local).with_context(|| format!("opening {}", local.display()))?;
    ftp.upload(&part, &mut file)?;
    ftp.rename(&part, name)?;
    let stored = ftp.size(name)?;
    if stored != expected {
        let _ = ftp.remove(name);
        bail!("{key}: the server stored {stored} bytes instead of {expected}; the copy was deleted");
    }
    Ok(())
}

/// The FTP operations we use, object-safe over TLS and plain streams.
trait Ftp {
    fn pwd(&mut self) -> anyhow::Result<String>;
    fn cd(&mut self, dir: &str) -> anyhow::Result<()>;
    fn mkdir_cd(&mut self, dir: &str) -> anyhow::Result<()>;
    fn upload(&mut self, name: &str, file: &mut File) -> anyhow::Result<()>;
    fn rename(&mut self, from: &str, to: &str) -> anyhow::Result<()>;
    fn size(&mut self, name: &str) -> anyhow::Result<u64>;
    /// Base names in `dir`; an empty or missing folder is an empty list.
    fn names(&mut self, dir: Option<&str>) -> anyhow::Result<Vec<String>>;
    /// Hands `path`'s bytes to `sink` as they arrive; returns the bytes read.
    fn stream(&mut self, path: &str, sink: &mut super::Sink) -> anyhow::Result<u64>;
    fn remove(&mut self, path: &str) -> anyhow::Result<()>;
    fn remove_dir(&mut self, path: &str) -> bool;
}

impl<T: TlsStream + Send> Ftp for ImplFtpStream<T> {
    fn pwd(&mut self) -> anyhow::Result<String> {
        ImplFtpStream::pwd(self).map_err(|e| anyhow!("PWD: {e}"))
    }

    fn cd(&mut self, dir: &str) -> anyhow::Result<()> {
        self.cwd(dir).map_err(|e| anyhow!("entering FTP folder {dir}: {e}"))
    }

    fn mkdir_cd(&mut self, dir: &str) -> anyhow::Result<()> {
        if self.cwd(dir).is_err() {
            self.mkdir(dir).map_err(|e| anyhow!("creating FTP folder {dir}: {e}"))?;
            self.cwd(dir).map_err(|e| anyhow!("entering FTP folder {dir}: {e}"))?;
        }
        Ok(())
    }

    fn upload(&mut self, name: &str, file: &mut File) -> anyhow::Result<()> {
        self.put_file(name, file).map(|_| ()).map_err(|e| anyhow!("uploading {name}: {e}"))
    }

    fn rename(&mut self, from: &str, to: &str) -> anyhow::Result<()> {
        ImplFtpStream::rename(self, from, to).map_err(|e| anyhow!("renaming {from} to {to}: {e}"))
    }

    fn size(&mut self, name: &str) -> anyhow::Result<u64> {
        ImplFtpStream::size(self, name).map(|s| s as u64).map_err(|e| anyhow!("SIZE {name}: {e}"))
    }

    fn names(&mut self, dir: Option<&str>) -> anyhow::Result<Vec<String>> {
        let command = dir.map_or_else(|| "NLST".to_string(), |d| format!("NLST {d}"));
        let shown = dir.unwrap_or(".");
        let (_, mut stream) = match self.custom_data_command(command, &[Status::AboutToSend, Status::AlreadyOpen]) {
            Ok(opened) => opened,
            // An empty or missing folder.
            Err(FtpError::UnexpectedResponse(r)) if r.status.code() == 550 || r.status.code() == 450 => {
                return Ok(Vec::new());
            }
            Err(e) => return Err(anyhow!("listing {shown}: {e}")),
        };
        let mut data = Vec::new();
        match stream.read_to_end(&mut data) {
            Ok(_) => {}
            // NOTE: some servers (pyftpdlib, for empty listings) close the TLS data channel
            // without close_notify. The server's 226 on the control channel, checked by
            // `finish`, is what proves the listing complete (a cut transfer gets 426).
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => {}
            Err(e) => return Err(anyhow!("listing {shown}: {e}")),
        }
        stream.finish().map_err(|e| anyhow!("listing {shown}: {e}"))?;
        // NOTE: some servers answer NLST of a folder with `folder/name`, others with `name`.
        Ok(String::from_utf8_lossy(&data)
            .lines()
            .map(|l| l.trim_end_matches('\r'))
            .filter(|l| !l.is_empty())
            .filter_map(|n| n.rsplit('/').next().map(str::to_string))
            .collect())
    }

    fn stream(&mut self, path: &str, sink: &mut super::Sink) -> anyhow::Result<u64> {
        let mut stream = self.retr_as_stream(path).map_err(|e| anyhow!("downloading {path}: {e}"))?;
        let fed = super::feed(&mut stream, sink);
        // Always finished (the transfer's reply read), but the sink's error is the cause.
        let finished = stream.finish();
        let n = fed.with_context(|| format!("downloading {path}"))?;
        finished.map_err(|e| anyhow!("downloading {path}: {e}"))?;
        Ok(n)
    }

    fn remove(&mut self, path: &str) -> anyhow::Result<()> {
        self.rm(path).map_err(|e| anyhow!("deleting {path}: {e}"))
    }

    fn remove_dir(&mut self, path: &str) -> bool {
        self.rmdir(path).is_ok()
    }
}

impl Storage for FtpsStorage {
    fn name(&self) -> String {
        self.display.clone()
    }

    fn put(&self, local: &Path, key: &str) -> anyhow::Result<()> {
        self.session(|ftp| put_in(ftp, local, key))
    }

    /// One login for every file, each sent from the base folder.
    fn put_many(&self, files: &[super::Upload]) -> Result<(), super::PutMany> {
        if files.is_empty() {
            return Ok(());
        }
        let mut done = 0;
        self.session(|ftp| {
            let base = ftp.pwd()?;
            for f in files {
                ftp.cd(&base)?;
                put_in(ftp, &f.local, &f.key)?;
                done += 1;
            }
            Ok(())
        })
        .map_err(|error| super::PutMany { done, error })
    }

    fn list(&self) -> anyhow::Result<Vec<RemoteObject>> {
        self.session(|ftp| {
            let mut out = Vec::new();
            for top in ftp.names(None)?.into_iter().filter(|n| is_layout_dir(n)) {
                let second = ftp.names(Some(&top))?;
                if crate::catalog::layout::Class::from_dir(&top).is_some() {
                    for date in second.into_iter().filter(|n| is_layout_dir(n)) {
                        let dir = format!("{top}/{date}");
                        out.extend(
                            ftp.names(Some(&dir))?
                                .into_iter()
                                .map(|f| RemoteObject { key: format!("{dir}/{f}"), size: None }),
                        );
                    }
                } else if top != CATALOG_DIR {
                    out.extend(second.into_iter().map(|f| RemoteObject { key: format!("{top}/{f}"), size: None }));
                }
            }
            // The catalog folder is hidden: servers leave dot folders out of listings.
            out.extend(
                ftp.names(Some(CATALOG_DIR))?
                    .into_iter()
                    .map(|f| RemoteObject { key: format!("{CATALOG_DIR}/{f}"), size: None }),
            );
            Ok(out)
        })
    }

    fn stream(&self, key: &str, sink: &mut super::Sink) -> anyhow::Result<u64> {
        self.session(|ftp| {
            let expected = ftp.size(key)?;
            let n = ftp.stream(key, sink)?;
            if n != expected {
                bail!("downloading {key}: received {n} bytes of {expected}");
            }
            Ok(n)
        })
    }

    fn delete(&self, key: &str) -> anyhow::Result<()> {
        self.session(|ftp| {
            ftp.remove(key)?;
            // Remove the dated and class folders when they became empty (errors: not empty).
            let mut dir = key.rsplit_once('/').map(|(d, _)| d.to_string());
            while let Some(d) = dir {
                if !ftp.remove_dir(&d) {
                    break;
                }
                dir = d.rsplit_once('/').map(|(p, _)| p.to_string());
            }
            Ok(())
        })
    }

    fn prunes(&self) -> bool {
        self.prune
    }
}
