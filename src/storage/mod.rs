//! Where backups are kept: the local backup folder and the mirrors (FTPS, S3-compatible). One
//! `Storage` trait, one implementation per kind (`local`, `ftps`, `s3`, `memory` for tests, built
//! only with the `test-support` feature that the tests turn on), a
//! `Retrying` decorator, and one factory for the mirrors (`from_settings`).
//!
//! Contract of every implementation: keys are the backup's path relative to the backup root
//! (`daily/2026-11-22/db-app_2026-11-22_01-00-00.sql.gz`) under the mirror's base; a `put` is
//! complete or absent (temporary name + rename, or a multipart upload that only appears when
//! completed) and checks the stored size; `list` returns every object under the base that
//! lies in our folder layout; `delete` removes one key.

#[cfg(any(test, feature = "test-support"))]
pub mod conformance;
pub mod ftps;
mod ftps_tls;
pub mod local;
#[cfg(any(test, feature = "test-support"))]
pub mod memory;
pub mod prune;
pub mod s3;
pub mod s3_lock;

use std::path::Path;
use tracing::warn;

use crate::config::{ConfigErrors, MirrorSettings, Settings};
use crate::net::backoff;
use crate::system::cancel::Cancel;

/// An object on a mirror.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteObject {
    pub key: String,
    pub size: Option<u64>,
}

/// A remote place for copies of backups.
pub trait Storage: Send + Sync {
    /// Printable, secret-free name, e.g. `ftps://ftp.example.com/backups`.
    fn name(&self) -> String;

    /// Uploads `local` as `key`; on success the object is complete and its size checked.
    ///
    /// # Errors
    /// Connection, authentication, TLS, transfer or size-check failures.
    fn put(&self, local: &Path, key: &str) -> anyhow::Result<()>;

    /// Objects under the base in our folder layout.
    ///
    /// # Errors
    /// Connection or listing failures.
    fn list(&self) -> anyhow::Result<Vec<RemoteObject>>;

    /// Hands `key`'s bytes to `sink` as they arrive (nothing staged on disk; what `sink`
    /// leaves unread is read after it); returns the object's size. A transfer that ends short
    /// of the size the server announced is an error, after `sink` has seen it: the caller
    /// checks the content (sha256) before it uses it. `sink` is called at most once.
    ///
    /// # Errors
    /// Connection, missing object or transfer failures, or `sink`'s own error.
    fn stream(&self, key: &str, sink: &mut Sink) -> anyhow::Result<u64>;

    /// Downloads `key` into the file `local` (created or replaced), streamed and synced to
    /// disk; returns the bytes written. The caller checks the content (sha256).
    ///
    /// # Errors
    /// Connection, missing object, transfer or write failures.
    fn get(&self, key: &str, local: &Path) -> anyhow::Result<u64> {
        self.stream(key, &mut |from| write_download(from, local).map(|_| ()))
    }

    /// Deletes one object.
    ///
    /// # Errors
    /// Connection or deletion failures.
    fn delete(&self, key: &str) -> anyhow::Result<()>;

    /// Whether this mirror's old copies are pruned by the retention policy.
    fn prunes(&self) -> bool;

    /// Uploads `files` in order, stopping at the first failure; returns how many were stored
    /// before it. Kinds that log in (FTPS) do it once for all of them: the point-in-time
    /// archive sends a file per WAL segment. Each file carries its own S3 Object Lock date.
    ///
    /// # Errors
    /// As `put`, with the count of the files stored before the failure.
    fn put_many(&self, files: &[Upload]) -> Result<(), PutMany> {
        for (done, f) in files.iter().enumerate() {
            self.put(&f.local, &f.key).map_err(|error| PutMany { done, error })?;
        }
        Ok(())
    }
}

/// What `Storage::stream` hands an object's bytes to.
pub type Sink<'a> = dyn FnMut(&mut (dyn std::io::Read + Send)) -> anyhow::Result<()> + 'a;

/// Hands `from` to `sink`, then reads what it left; returns the bytes read in all.
///
/// # Errors
/// `sink`'s error, or reading the rest.
pub fn feed(from: &mut (dyn std::io::Read + Send), sink: &mut Sink) -> anyhow::Result<u64> {
    struct Counted<'r> {
        inner: &'r mut (dyn std::io::Read + Send),
        n: u64,
    }
    impl std::io::Read for Counted<'_> {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            let n = self.inner.read(buf)?;
            self.n += n as u64;
            Ok(n)
        }
    }
    let mut counted = Counted { inner: from, n: 0 };
    sink(&mut counted)?;
    std::io::copy(&mut counted, &mut std::io::sink())?;
    Ok(counted.n)
}

/// One file for `put_many`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Upload {
    pub local: std::path::PathBuf,
    pub key: String,
    /// The S3 Object Lock retain-until date (when the mirror locks): `None` leaves the copy
    /// unlocked (a file that is replaced, like the archive's index).
    pub lock_until: Option<chrono::DateTime<chrono::Utc>>,
}

/// A `put_many` that stopped: how many files were stored first, and why it stopped.
#[derive(Debug)]
pub struct PutMany {
    pub done: usize,
    pub error: anyhow::Error,
}

/// A failure that retrying cannot fix (TLS mode, certificate, login): reported at once.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct Permanent(pub String);

/// Retries every operation of `inner` with a pause between attempts (1 s, 2 s, 4 s, ...),
/// except `Permanent` failures.
pub struct Retrying {
    inner: Box<dyn Storage>,
    attempts: u32,
    /// Ends a pause between attempts at once on shutdown.
    cancel: Cancel,
}

impl Retrying {
    pub fn new(inner: Box<dyn Storage>, attempts: u32, cancel: &Cancel) -> Retrying {
        Retrying { inner, attempts: attempts.max(1), cancel: cancel.clone() }
    }

    fn retry<T>(&self, what: &str, mut op: impl FnMut() -> anyhow::Result<T>) -> anyhow::Result<T> {
        let name = self.inner.name();
        backoff::retry(
            &self.cancel,
            self.attempts,
            |_| op(),
            |e: &anyhow::Error| {
                e.downcast_ref::<Permanent>().is_none() && e.downcast_ref::<s3_lock::Locked>().is_none()
            },
            |attempt, e| warn!(storage = %name, attempt, error = %format!("{e:#}"), "{what} failed; retrying."),
        )
        .map_err(|f| {
            if f.error.downcast_ref::<Permanent>().is_some() {
                return f.error.context(format!("{what} failed (not retried: a retry cannot fix this)"));
            }
            let took = crate::model::human::age(f.elapsed);
            f.error.context(format!("{what} failed after {} attempt(s) in {took}", f.attempts))
        })
    }
}

impl Storage for Retrying {
    fn name(&self) -> String {
        self.inner.name()
    }

    fn put(&self, local: &Path, key: &str) -> anyhow::Result<()> {
        self.retry("upload", || self.inner.put(local, key))
    }

    fn list(&self) -> anyhow::Result<Vec<RemoteObject>> {
        self.retry("listing", || self.inner.list())
    }

    fn get(&self, key: &str, local: &Path) -> anyhow::Result<u64> {
        self.retry("download", || self.inner.get(key, local))
    }

    /// Retried as a whole: `sink` is called again on each attempt and must start over.
    fn stream(&self, key: &str, sink: &mut Sink) -> anyhow::Result<u64> {
        self.retry("download", || self.inner.stream(key, sink))
    }

    fn delete(&self, key: &str) -> anyhow::Result<()> {
        self.retry("deletion", || self.inner.delete(key))
    }

    fn prunes(&self) -> bool {
        self.inner.prunes()
    }

    /// Retries from the file that failed, keeping what was stored.
    fn put_many(&self, files: &[Upload]) -> Result<(), PutMany> {
        let mut done = 0;
        self.retry("upload", || match self.inner.put_many(&files[done..]) {
            Ok(()) => Ok(()),
            Err(stopped) => {
                done += stopped.done;
                Err(stopped.error)
            }
        })
        .map_err(|error| PutMany { done, error })
    }
}

/// Every configured mirror, each wrapped in `Retrying`: the one place mirrors are built.
///
/// # Errors
/// A mirror whose settings cannot be used (bad URL, unreadable CA file): a configuration
/// error (exit 2) for every mode alike.
pub fn from_settings(settings: &Settings, cancel: &Cancel) -> Result<Vec<Box<dyn Storage>>, ConfigErrors> {
    let lock = settings.mirrors.s3.as_ref().and_then(|s3| s3.object_lock).map(|mode| s3_lock::Lock {
        mode,
        policy: settings.policy,
        interval: settings.backup_interval(chrono::Utc::now()).unwrap_or(s3_lock::DEFAULT_MIN),
        min: settings.mirrors.s3.as_ref().map_or(s3_lock::DEFAULT_MIN, |s| s.object_lock_min),
    });
    from_mirrors(&settings.mirrors, lock, cancel)
}

/// `from_settings` for mirror settings alone, with the S3 mirror's lock given.
///
/// # Errors
/// As `from_settings`.
pub fn from_mirrors(
    m: &MirrorSettings,
    lock: Option<s3_lock::Lock>,
    cancel: &Cancel,
) -> Result<Vec<Box<dyn Storage>>, ConfigErrors> {
    let bad = |e: anyhow::Error| ConfigErrors(vec![format!("mirror configuration: {e:#}")]);
    let mut out: Vec<Box<dyn Storage>> = Vec::new();
    if let Some(ftp) = &m.ftp {
        out.push(Box::new(Retrying::new(Box::new(ftps::FtpsStorage::new(ftp).map_err(bad)?), m.attempts, cancel)));
    }
    if let Some(s3) = &m.s3 {
        out.push(Box::new(Retrying::new(Box::new(s3::S3Storage::new(s3, lock).map_err(bad)?), m.attempts, cancel)));
    }
    Ok(out)
}

/// Whether `key` is in our layout (`[class/]YYYY-MM-DD/<backup or sidecar>`), i.e. a folder
/// level worth listing into.
pub fn is_layout_dir(name: &str) -> bool {
    name == crate::catalog::manifest::CATALOG_DIR
        || crate::catalog::layout::Class::from_dir(name).is_some()
        || chrono::NaiveDate::parse_from_str(name, "%Y-%m-%d").is_ok()
}

/// Copies `from` into a new file at `local` and syncs it: the end of every `get`.
///
/// # Errors
/// Read or write failures, naming the file.
pub fn write_download(from: &mut dyn std::io::Read, local: &Path) -> anyhow::Result<u64> {
    use anyhow::Context;
    let mut file = std::fs::File::create(local).with_context(|| format!("creating {}", local.display()))?;
    let n = std::io::copy(from, &mut file).with_context(|| format!("downloading into {}", local.display()))?;
    file.sync_all().with_context(|| format!("syncing {}", local.display()))?;
    Ok(n)
}

#[cfg(test)]
mod tests {
    #[test]
    fn local_and_memory_storage_keep_the_contract() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("root");
        let scratch = dir.path().join("scratch");
        std::fs::create_dir_all(&scratch).unwrap();
        super::conformance::check(&super::local::LocalStorage::new(&root), &scratch).unwrap();
        super::conformance::check(&super::memory::MemoryStorage::new(true), &scratch).unwrap();
    }
}
