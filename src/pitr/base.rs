//! Base backups: `pg_basebackup -Ft -D - -X none` (one tar on stdout; the archive supplies the
//! WAL) streamed through the archive's compression, encryption and hashing into
//! `base/<chain>/<n>/`: no uncompressed copy on disk, memory bounded by the pipe's buffers and
//! the manifest. Each file is checked against the `backup_manifest` as it passes
//! (`manifest::Checked`); only a backup that matches is renamed into place and recorded in the
//! index, with the WAL range its manifest names, the server's major and its bootstrap
//! superuser. The manifest is stored beside it (an incremental backup names its predecessor's).
//!
//! A chain is a full backup (`n` = 0) and the incrementals taken on it (17+ with
//! `summarize_wal`, `--incremental` with the previous backup's manifest, decrypted to a
//! private temporary file). The checkpoint is fast (one burst of writes instead of waiting up
//! to `checkpoint_timeout`). Clusters with extra tablespaces are refused: stdout holds one.

use std::io::Write;
use std::path::PathBuf;

use anyhow::{Context, anyhow};
use chrono::Utc;

use super::archive::{Store, prepare};
use super::index::{self, BaseBackup, Event};
use super::manifest::Checked;
use crate::engine::process;
use crate::model::database::Conn;
use crate::stream::crypt::Keys;
use crate::system::cancel::Cancel;

/// How long the replication connection may take.
const CONNECT_TIMEOUT_SECS: u32 = 30;

/// What a base backup needs.
#[derive(Debug, Clone)]
pub struct BaseSetup {
    /// `host:port`, for messages.
    pub server: String,
    /// The replication connection.
    pub conn: Conn,
    pub pg_basebackup: PathBuf,
    pub store: Store,
    /// The server's major and its bootstrap superuser, recorded with the backup.
    pub major: u32,
    pub superuser: String,
}

/// A full backup starts a chain; an incremental goes on the newest one.
#[derive(Debug)]
pub enum Kind {
    Full,
    /// The previous backup of the chain's manifest, as plain text (`previous_manifest`).
    Incremental(tempfile::NamedTempFile),
}

/// Takes a base backup and records it.
///
/// # Errors
/// `pg_basebackup` failed (its message, or what to do about tablespaces), the stream did not
/// match its manifest (nothing is kept), or the archive could not be written.
pub fn take(setup: &BaseSetup, kind: &Kind, cancel: &Cancel) -> anyhow::Result<BaseBackup> {
    let index_path = setup.store.archive.index();
    let (index, _) = index::load(&index_path)?;
    let (chain, n) = match kind {
        Kind::Full => (index.bases.iter().map(|b| b.chain).max().unwrap_or(0) + 1, 0),
        Kind::Incremental(_) => {
            let last = index.bases.iter().max_by_key(|b| (b.chain, b.n));
            let last =
                last.ok_or_else(|| anyhow!("an incremental backup of {} needs a full one first", setup.server))?;
            (last.chain, last.n + 1)
        }
    };
    let extension = setup.store.extension();
    let target = setup.store.archive.base(chain, n, &extension);
    let (guard, file) = prepare(&target)?;
    let mut checked = Checked::new(setup.store.writer(file, true)?);
    let started_at = Utc::now();
    process::stream_stdout(command(setup, chain, n, kind), "pg_basebackup", &mut checked, cancel)
        .map_err(|e| explain(e, &setup.server))?;
    let (encoder, manifest, manifest_text) = checked
        .finish()
        .map_err(|e| anyhow!("the base backup of {} is not what the server sent: {e}", setup.server))?;
    let (file, sha256, size) =
        Store::finish_writer(encoder).with_context(|| format!("writing {}", guard.partial_path().display()))?;
    guard.commit(file)?;
    let stored = setup.store.bytes(&manifest_text, &setup.store.archive.base_manifest(chain, n, &extension))?;
    tracing::debug!(path = %stored.path.display(), "Stored the base backup's manifest.");
    let (timeline, start, _) = manifest.wal_ranges[0];
    let end = manifest.wal_ranges.last().map_or(start, |r| r.2);
    let record = BaseBackup {
        chain,
        n,
        timeline,
        start_lsn: start.to_string(),
        end_lsn: end.to_string(),
        started_at,
        finished_at: Utc::now(),
        size,
        sha256,
        major: setup.major,
        superuser: setup.superuser.clone(),
        manifest_checksum: manifest.checksum,
        files: manifest.files.len() as u64,
        plain_size: manifest.files.values().map(|(size, _)| size).sum(),
    };
    index::append(&index_path, &Event::Base(record.clone()))?;
    Ok(record)
}

fn command(setup: &BaseSetup, chain: u32, n: u32, kind: &Kind) -> std::process::Command {
    let conninfo = crate::engine::postgres::conninfo(&setup.conn, "postgres");
    let mut cmd =
        crate::engine::postgres::libpq_command(&setup.pg_basebackup, &setup.conn, &conninfo, CONNECT_TIMEOUT_SECS);
    cmd.args(["-D", "-", "-F", "t", "-X", "none", "--checkpoint=fast", "--manifest-checksums=CRC32C"]);
    cmd.arg(format!("--label=backup-container chain {chain} backup {n}"));
    if let Kind::Incremental(previous) = kind {
        cmd.arg(format!("--incremental={}", previous.path().display()));
    }
    cmd
}

/// pg_basebackup's refusal of a second tablespace, said as what to do.
fn explain(e: anyhow::Error, server: &str) -> anyhow::Error {
    if format!("{e:#}").contains("single tablespace") {
        return anyhow!(
            "{server} has tablespaces besides pg_default and pg_global: base backups of such clusters are not \
             supported (docs/PITR.md); dumps of its databases go on as before ({e:#})"
        );
    }
    e.context(format!("base backup of {server}"))
}

/// The manifest of `base`, decoded into a private temporary file in `dir` (an incremental
/// backup names it).
///
/// # Errors
/// The stored manifest is missing, does not decode (an encrypted archive without its
/// identity), or the file cannot be written.
pub fn previous_manifest(
    store: &Store,
    base: &BaseBackup,
    keys: &Keys,
    dir: &std::path::Path,
) -> anyhow::Result<tempfile::NamedTempFile> {
    let stored = store.existing(&store.archive.base_manifest(base.chain, base.n, &store.extension()));
    let raw = std::fs::File::open(&stored).with_context(|| format!("opening {}", stored.display()))?;
    let mut decoded = crate::stream::compress::decoder(&stored, raw, keys)?;
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let mut file = tempfile::Builder::new()
        .prefix("backup_manifest_")
        .tempfile_in(dir)
        .with_context(|| format!("creating a file in {}", dir.display()))?;
    std::io::copy(&mut decoded, &mut file)
        .and_then(|_| file.flush())
        .with_context(|| format!("decoding {}", stored.display()))?;
    Ok(file)
}
