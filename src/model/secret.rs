//! `Secret`: a string that cannot be printed by accident.
//!
//! `Debug` and `Display` print `****`; `expose()` is the only way to the value, so every place
//! that hands a secret to a child process or a server is easy to find.

use std::fmt;

/// A password, key or URL token. Never printed.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Secret {
        Secret(value.into())
    }

    /// The secret value, for handing to a child's environment or a server. Never log it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("****")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("****")
    }
}

/// Shows a URL as `scheme://host[:port]` only: paths and user info of webhook and FTP URLs
/// carry tokens and passwords.
pub fn redact_url(url: &str) -> String {
    let (scheme, rest) = match url.split_once("://") {
        Some((scheme, rest)) => (scheme, rest),
        None => return "(unparseable URL, hidden)".to_string(),
    };
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    let host = authority.rsplit('@').next().unwrap_or_default();
    format!("{scheme}://{host}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_never_prints() {
        let s = Secret::new("hunter2");
        assert_eq!(format!("{s} {s:?}"), "**** ****");
        assert_eq!(s.expose(), "hunter2");
    }

    #[test]
    fn redact_url_keeps_scheme_and_host_only() {
        assert_eq!(redact_url("https://chat.example.com/hooks/abc/TOKEN?x=1"), "https://chat.example.com");
        assert_eq!(redact_url("ftp://user:pw@ftp.example.com:2121/backups/"), "ftp://ftp.example.com:2121");
        assert_eq!(redact_url("not a url with secret"), "(unparseable URL, hidden)");
    }
}
