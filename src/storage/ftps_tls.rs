//! TLS for the FTPS mirror: which certificates are trusted, a connector that bounds every
//! read and write of the handshake, and error messages that name TLS and the mode.
//!
//! Trust: the system roots, the certificates in `FTP_CA_FILE` as roots, and — because a
//! self-signed certificate made the usual way (`openssl req -x509 ...`, CA:TRUE in OpenSSL 3)
//! is rejected by WebPKI as a leaf (`CaUsedAsEndEntity`), while curl accepts it — each of those
//! certificates also pinned: a server presenting exactly that certificate (compared byte for
//! byte) is accepted; its handshake signature is still verified, so only the holder of the
//! certificate's key passes. A different certificate with the same name is not.

use std::net::TcpStream;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use suppaftp::rustls::client::WebPkiServerVerifier;
use suppaftp::rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use suppaftp::rustls::crypto::{CryptoProvider, verify_tls12_signature, verify_tls13_signature};
use suppaftp::rustls::pki_types::pem::PemObject;
use suppaftp::rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use suppaftp::rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
use suppaftp::{FtpResult, RustlsConnector, TlsConnector};

/// suppaftp's rustls stream (not exported by name).
type RustlsStream = <RustlsConnector as TlsConnector>::Stream;

/// `FTP_TLS`: how TLS starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TlsMode {
    /// A plain greeting, then `AUTH TLS` (`ftp://`, port 21 by default).
    Explicit,
    /// TLS from the first byte (`ftps://`, port 990 by default), as curl does.
    Implicit,
}

impl TlsMode {
    pub fn name(self) -> &'static str {
        match self {
            TlsMode::Explicit => "explicit",
            TlsMode::Implicit => "implicit",
        }
    }

    pub fn default_port(self) -> u16 {
        match self {
            TlsMode::Explicit => 21,
            TlsMode::Implicit => 990,
        }
    }
}

/// The client configuration: system roots plus `ca_file`, with its certificates pinned.
///
/// # Errors
/// An unreadable or malformed `FTP_CA_FILE`.
pub fn client_config(ca_file: Option<&Path>) -> anyhow::Result<ClientConfig> {
    let provider = Arc::new(suppaftp::rustls::crypto::ring::default_provider());
    let mut roots = RootCertStore::empty();
    for cert in rustls_native_certs::load_native_certs().certs {
        let _ = roots.add(cert);
    }
    let mut pinned = Vec::new();
    if let Some(path) = ca_file {
        let certs =
            CertificateDer::pem_file_iter(path).with_context(|| format!("reading FTP_CA_FILE {}", path.display()))?;
        for cert in certs {
            let cert = cert.with_context(|| format!("parsing FTP_CA_FILE {}", path.display()))?;
            // Accepted as a root when it is one; pinned either way.
            let _ = roots.add(cert.clone());
            pinned.push(cert);
        }
        anyhow::ensure!(!pinned.is_empty(), "FTP_CA_FILE {} holds no PEM certificate", path.display());
    }
    let webpki = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider.clone())
        .build()
        .context("setting up certificate verification (FTP_CA_FILE)")?;
    let verifier = Arc::new(PinningVerifier { pinned, webpki, provider: provider.clone() });
    Ok(ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth())
}

#[derive(Debug)]
struct PinningVerifier {
    pinned: Vec<CertificateDer<'static>>,
    webpki: Arc<WebPkiServerVerifier>,
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for PinningVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, suppaftp::rustls::Error> {
        if self.pinned.iter().any(|p| p.as_ref() == end_entity.as_ref()) {
            return Ok(ServerCertVerified::assertion());
        }
        self.webpki.verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, suppaftp::rustls::Error> {
        verify_tls12_signature(message, cert, dss, &self.provider.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, suppaftp::rustls::Error> {
        verify_tls13_signature(message, cert, dss, &self.provider.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider.signature_verification_algorithms.supported_schemes()
    }
}

/// The rustls connector with socket timeouts set before the handshake, so that a server that
/// never answers (an explicit-TLS server spoken to in implicit mode) fails within the timeout.
#[derive(Debug)]
pub struct TimeoutConnector {
    pub inner: RustlsConnector,
    pub timeout: Duration,
}

impl TlsConnector for TimeoutConnector {
    type Stream = RustlsStream;

    fn connect(&self, domain: &str, stream: TcpStream) -> FtpResult<RustlsStream> {
        stream.set_read_timeout(Some(self.timeout)).map_err(suppaftp::FtpError::ConnectionError)?;
        stream.set_write_timeout(Some(self.timeout)).map_err(suppaftp::FtpError::ConnectionError)?;
        self.inner.connect(domain, stream)
    }
}

/// A message for a failed TLS handshake, naming the mode and what to do.
pub fn handshake_error(host: &str, mode: TlsMode, error: &str) -> String {
    let hint = if error.contains("UnknownIssuer")
        || error.contains("CaUsedAsEndEntity")
        || error.contains("NotValidForName")
    {
        "the server's certificate is not trusted: put its CA, or the server's own certificate, in FTP_CA_FILE"
    } else if mode == TlsMode::Implicit
        && (error.contains("InvalidContentType") || error.contains("corrupt") || error.contains("InvalidMessage"))
    {
        "the server answered in plain text: it expects explicit TLS (AUTH TLS); use an ftp:// URL or FTP_TLS=explicit"
    } else if error.contains("os error 11") || error.contains("timed out") || error.contains("WouldBlock") {
        "no answer within FTP_TIMEOUT"
    } else {
        "check FTP_URL, FTP_TLS and FTP_CA_FILE"
    };
    format!("TLS ({} mode) with {host} failed: {error}; {hint}", mode.name())
}

/// A message for a server that sent no FTP greeting in explicit mode.
pub fn greeting_error(addr: &str, error: &str) -> String {
    let hint = if error.contains("os error 11") || error.contains("timed out") || error.contains("WouldBlock") {
        "; it may be an implicit-TLS server (port 990): use an ftps:// URL or FTP_TLS=implicit"
    } else {
        ""
    };
    format!("FTP server {addr} sent no greeting in explicit TLS mode: {error}{hint}")
}
