//! Encryption at rest with age (age-encryption.org/v1, the `age` crate: files the `age` and
//! `rage` CLIs read and write). A backup with recipients configured is compressed, then
//! encrypted, streamed: `<name>.sql.gz.age`. Its checksum and manifest are of the stored
//! ciphertext. Decryption (restore, verify, scanning a file found in the folder) needs the
//! identity file; the backup daemon itself does not.

use std::io::{self, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::str::FromStr;

use anyhow::{Context, anyhow, bail};
use sha2::{Digest, Sha256};

/// The suffix of an encrypted backup, after the compression's extension.
pub const SUFFIX: &str = ".age";

/// `BACKUP_ENCRYPTION_RECIPIENTS`: public keys (`age1...`, `ssh-ed25519 ...`, `ssh-rsa ...`),
/// checked at load, parsed again for each backup.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recipients(Vec<String>);

impl Recipients {
    /// Parses one recipient per line (or separated by commas); `#` comments and blank lines
    /// are skipped, as in an age recipients file.
    ///
    /// # Errors
    /// A line that is no recipient (its position, never a secret: these are public keys).
    pub fn parse(text: &str) -> Result<Recipients, String> {
        let mut keys = Vec::new();
        for (i, item) in text.lines().flat_map(|l| l.split(',')).map(str::trim).enumerate() {
            if item.is_empty() || item.starts_with('#') {
                continue;
            }
            parse_recipient(item).map_err(|e| format!("recipient {} (\"{}\"): {e}", i + 1, shorten(item)))?;
            keys.push(item.to_string());
        }
        if keys.is_empty() {
            return Err("no recipient given".into());
        }
        Ok(Recipients(keys))
    }

    /// Fingerprints for the manifest: the first 16 hex digits of the sha256 of each
    /// recipient as written (`printf %s 'age1...' | sha256sum | cut -c1-16`).
    pub fn fingerprints(&self) -> Vec<String> {
        self.0.iter().map(|k| fingerprint(k)).collect()
    }

    /// Wraps `inner` so that everything written is encrypted to every recipient.
    ///
    /// # Errors
    /// When the age header cannot be written.
    pub fn seal<W: Write>(&self, inner: W) -> io::Result<age::stream::StreamWriter<W>> {
        let parsed: Vec<Box<dyn age::Recipient>> = self.0.iter().filter_map(|k| parse_recipient(k).ok()).collect();
        let encryptor = age::Encryptor::with_recipients(parsed.iter().map(|r| r.as_ref()))
            .map_err(|e| io::Error::other(format!("setting up encryption: {e}")))?;
        encryptor.wrap_output(inner)
    }
}

fn parse_recipient(text: &str) -> Result<Box<dyn age::Recipient>, String> {
    if text.starts_with("age1") {
        return age::x25519::Recipient::from_str(text).map(|r| Box::new(r) as _).map_err(|e| e.to_string());
    }
    if text.starts_with("ssh-") {
        return age::ssh::Recipient::from_str(text)
            .map(|r| Box::new(r) as _)
            .map_err(|e| format!("not a usable SSH public key ({e:?})"));
    }
    Err("expected an age public key (age1...) or an SSH public key (ssh-ed25519, ssh-rsa)".into())
}

/// The first 16 hex digits of the sha256 of `key`.
pub fn fingerprint(key: &str) -> String {
    Sha256::digest(key.as_bytes()).iter().take(8).map(|b| format!("{b:02x}")).collect()
}

fn shorten(key: &str) -> String {
    let short: String = key.chars().take(24).collect();
    if short.len() < key.len() { format!("{short}...") } else { short }
}

/// The file writer behind the compressor: plain, or encrypting.
pub enum Sealed<W: Write> {
    Plain(W),
    Age(age::stream::StreamWriter<W>),
}

impl<W: Write> Sealed<W> {
    /// `inner`, encrypted to `recipients` when there are any.
    ///
    /// # Errors
    /// When the age header cannot be written.
    pub fn new(inner: W, recipients: Option<&Recipients>) -> io::Result<Sealed<W>> {
        Ok(match recipients {
            Some(r) => Sealed::Age(r.seal(inner)?),
            None => Sealed::Plain(inner),
        })
    }

    /// Writes the last encrypted chunk (its tag marks the end: a cut file fails to decrypt).
    ///
    /// # Errors
    /// Write errors of the last chunk.
    pub fn finish(self) -> io::Result<W> {
        match self {
            Sealed::Plain(w) => Ok(w),
            Sealed::Age(w) => w.finish(),
        }
    }
}

impl<W: Write> Write for Sealed<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Sealed::Plain(w) => w.write(buf),
            Sealed::Age(w) => w.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Sealed::Plain(w) => w.flush(),
            Sealed::Age(w) => w.flush(),
        }
    }
}

/// Where the identity comes from: `BACKUP_ENCRYPTION_IDENTITY_FILE`, read at each use.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Keys {
    pub identity_file: Option<PathBuf>,
}

/// No identity to decrypt with: the file stays as it is, nothing is recorded about it.
#[derive(Debug, thiserror::Error)]
#[error(
    "{0} is encrypted (age) and BACKUP_ENCRYPTION_IDENTITY_FILE is not set: give the identity file \
     (the age or SSH private key) to restore or verify it"
)]
pub struct NoIdentity(pub String);

impl Keys {
    /// Wraps `raw` (the bytes of the encrypted file at `path`) in a decrypting reader.
    ///
    /// # Errors
    /// No identity configured (`NoIdentity`), an unreadable identity file, or identities that
    /// do not match the file's recipients; each names the file.
    pub fn open<'a, R: Read + Send + 'a>(&self, path: &Path, raw: R) -> anyhow::Result<Box<dyn Read + Send + 'a>> {
        let Some(file) = &self.identity_file else {
            return Err(NoIdentity(path.display().to_string()).into());
        };
        let identities = load_identities(file)?;
        let decryptor = age::Decryptor::new(BufReader::with_capacity(1 << 16, raw))
            .with_context(|| format!("{} is not a readable age file", path.display()))?;
        let reader =
            decryptor.decrypt(identities.iter().map(|i| i.as_ref() as &dyn age::Identity)).map_err(|e| match e {
                age::DecryptError::NoMatchingKeys => anyhow!(
                    "the identity in {} does not match {} (it was encrypted to other recipients)",
                    file.display(),
                    path.display()
                ),
                other => anyhow!("decrypting {}: {other}", path.display()),
            })?;
        Ok(Box::new(reader))
    }
}

/// The identities in `file`: age keys (`AGE-SECRET-KEY-1...`, as `age-keygen` writes them) or
/// one unencrypted OpenSSH private key.
fn load_identities(file: &Path) -> anyhow::Result<Vec<Box<dyn age::Identity + Send + Sync>>> {
    let shown = file.display();
    let bytes = std::fs::read(file)
        .with_context(|| format!("reading the identity file {shown} (BACKUP_ENCRYPTION_IDENTITY_FILE)"))?;
    if let Ok(parsed) = age::IdentityFile::from_buffer(bytes.as_slice())
        && let Ok(ids) = parsed.into_identities()
        && !ids.is_empty()
    {
        return Ok(ids);
    }
    match age::ssh::Identity::from_buffer(bytes.as_slice(), Some(shown.to_string())) {
        Ok(age::ssh::Identity::Unencrypted(key)) => Ok(vec![Box::new(age::ssh::Identity::Unencrypted(key))]),
        Ok(age::ssh::Identity::Encrypted(_)) => {
            bail!("the SSH key in {shown} is passphrase-protected; give an unencrypted key to the restore job")
        }
        Ok(age::ssh::Identity::Unsupported(k)) => bail!("the SSH key in {shown} is not supported by age ({k:?})"),
        Err(_) => bail!("{shown} holds no age identity (AGE-SECRET-KEY-1...) and no OpenSSH private key"),
    }
}

/// Whether `path` names an encrypted backup.
pub fn is_encrypted(path: &Path) -> bool {
    path.to_string_lossy().ends_with(SUFFIX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recipients_are_checked_and_round_trip() {
        let id = age::x25519::Identity::generate();
        let public = id.to_public().to_string();
        let r = Recipients::parse(&format!("# ops team\n{public}\n\n")).unwrap();
        assert_eq!(r.fingerprints(), [fingerprint(&public)]);
        assert_eq!(r.fingerprints()[0].len(), 16);
        assert!(Recipients::parse("age1notakey").unwrap_err().starts_with("recipient 1"));
        assert!(Recipients::parse("gpg:ABCDEF").is_err());
        assert!(Recipients::parse("# nothing\n").is_err());

        let dir = tempfile::tempdir().unwrap();
        let mut sealed = r.seal(Vec::new()).unwrap();
        sealed.write_all(b"SELECT 1;\n").unwrap();
        let ciphertext = sealed.finish().unwrap();
        let key = dir.path().join("key.txt");
        let path = dir.path().join("x.sql.gz.age");
        let keys = Keys { identity_file: Some(key.clone()) };
        std::fs::write(
            &key,
            format!("# created: now\n{}\n", age::secrecy::ExposeSecret::expose_secret(&id.to_string())),
        )
        .unwrap();
        let mut plain = String::new();
        keys.open(&path, ciphertext.as_slice()).unwrap().read_to_string(&mut plain).unwrap();
        assert_eq!(plain, "SELECT 1;\n");

        let other = age::x25519::Identity::generate();
        std::fs::write(&key, age::secrecy::ExposeSecret::expose_secret(&other.to_string())).unwrap();
        let err = keys.open(&path, ciphertext.as_slice()).err().unwrap().to_string();
        assert!(err.contains("does not match") && err.contains("key.txt"), "{err}");
        let none = Keys::default().open(&path, ciphertext.as_slice()).err().unwrap();
        assert!(none.downcast_ref::<NoIdentity>().is_some());
        std::fs::write(&key, "not a key").unwrap();
        let err = keys.open(&path, ciphertext.as_slice()).err().unwrap().to_string();
        assert!(err.contains("holds no age identity"), "{err}");
    }
}
