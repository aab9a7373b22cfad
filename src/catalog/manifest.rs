//! The manifest: one versioned JSON document per backup, what the backup holds and what was
//! proved about it (docs/VERIFY.md documents every field).
//!
//! Where it lives: `BACKUP_DIR/.backup_container/<sha256 of the backup's key>.json` (and the
//! same key under a mirror's base). Never beside the backup: the bash version's restore picks
//! the newest *file* whose path contains the database's name, and its pruning counts every such
//! file; a digest-named record in a hidden folder is invisible to both (`find ${BACKUP_DIR}*`
//! skips dot folders; the daily strategy's `find /backups* | grep <name>` walks them but never
//! matches: every core name holds a `-` (`host-db`), and no path we write in `BACKUP_DIR`
//! does). The folder may be deleted by its empty-folder cleanup; it is recreated when a record
//! is written.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::Context;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::catalog::durable::write_atomic;
use crate::model::stats::SchemaStats;
use crate::stream::scan::{Summary, TableData};

/// The folder (under the backup root or a mirror's base) that holds every record.
pub const CATALOG_DIR: &str = ".backup_container";
/// `format` of every manifest.
pub const FORMAT: &str = "backup-container/manifest";
/// The current version; readers accept this one and older ones.
pub const VERSION: u32 = 1;

/// How the record came to be.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum Origin {
    /// Written with the backup by this program.
    #[default]
    Written,
    /// A file found in the folder (the bash version's, or ours from before manifests), whose
    /// stream was decoded and scanned to fill the record.
    Scanned,
    /// Built from the `.sha256` and `.verified` files of an older release, which were then
    /// removed from the dated folder.
    Migrated,
}

/// One verification (or restore drill) of the backup.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Verification {
    /// RFC 3339 time of the verification.
    pub verified_at: String,
    pub ok: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(default)]
    pub tables: u64,
    /// Rows counted in the restored tables (equal to the dump's when `ok`).
    #[serde(default)]
    pub rows: u64,
    #[serde(default)]
    pub schemas: Vec<SchemaStats>,
    #[serde(default)]
    pub database_size_bytes: u64,
    /// How long the verification restore took (the RTO measured).
    #[serde(default)]
    pub duration_ms: u64,
    /// "checksum" (the recorded sha256 matched) or "stream" (no checksum; decoded cleanly).
    #[serde(default)]
    pub integrity: String,
    /// The major of the throwaway server it ran in (PostgreSQL: the source's when installed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server_major: Option<u32>,
    /// Why that is not the source's major, when it is not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

/// The record of one backup.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    pub format: String,
    pub version: u32,
    /// The backup's key: its path relative to the backup root.
    pub backup: String,
    #[serde(default)]
    pub origin: Origin,
    /// The database spec it was taken from (`host:port/db`), when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub database: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub engine: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server_version: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_version: Option<String>,
    /// The server's and the dump client's major versions as numbers (PostgreSQL `15`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server_major: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_major: Option<u32>,
    /// Header lines of a newer client written in a form the source's own major accepts
    /// (`SELECT set_config(...) FROM pg_settings WHERE name = ...` for `SET transaction_timeout`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub portable_header_lines: Option<u64>,
    /// Options the dump ran with (connection options left out).
    #[serde(default)]
    pub dump_options: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub compression: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration_ms: Option<u64>,
    /// Size of the stored file, and its modification time (seconds since the epoch): a record
    /// whose file changed is taken again.
    pub size_bytes: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub modified_unix: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uncompressed_bytes: Option<u64>,
    /// sha256 of the stored file, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
    /// Whether the dump ends as its tool ends a finished dump; `None` = not checked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub complete: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub incomplete_reason: Option<String>,
    /// False when the dump's rows are not counted (`--inserts`): `tables[].rows` are then 0
    /// and mean "unknown".
    #[serde(default)]
    pub rows_known: bool,
    #[serde(default)]
    pub tables: Vec<TableData>,
    /// Objects by kind, from the dump's own headers.
    #[serde(default)]
    pub objects: BTreeMap<String, u64>,
    #[serde(default)]
    pub verifications: Vec<Verification>,
    /// Upgrade rehearsals: restores into the newest installed major (`VERIFY_UPGRADE`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub upgrade_rehearsals: Vec<Verification>,
    /// How the stored file is encrypted, when it is (the checksum is of the ciphertext).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub encryption: Option<Encryption>,
    /// What the anomaly guard found against the previous good backup (`anomaly`), if anything.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub anomaly: Option<Anomaly>,
}

/// The encryption of a stored backup.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Encryption {
    /// `age` (age-encryption.org/v1).
    pub scheme: String,
    /// Fingerprints of the recipients it was encrypted to (`crypt::fingerprint`).
    pub recipients: Vec<String>,
}

/// The anomaly guard's finding on a backup.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Anomaly {
    /// The key of the previous good backup it was compared with (retention holds it).
    pub baseline: String,
    pub findings: Vec<Finding>,
}

/// One difference beyond the thresholds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum Finding {
    /// A table of the baseline is not in this backup.
    TableDisappeared { table: String, rows: u64 },
    /// A table lost more than the allowed share of its rows.
    RowsDropped { table: String, before: u64, after: u64 },
    /// The dump's size (uncompressed when known) changed by more than allowed.
    SizeChanged { before: u64, after: u64 },
}

impl std::fmt::Display for Finding {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let pct = |before: u64, after: u64| {
            if before == 0 { 0.0 } else { (after as f64 - before as f64) * 100.0 / before as f64 }
        };
        match self {
            Finding::TableDisappeared { table, rows } => write!(f, "table {table} disappeared (had {rows} rows)"),
            Finding::RowsDropped { table, before, after } => {
                write!(f, "table {table}: {before} → {after} rows ({:+.0}%)", pct(*before, *after))
            }
            Finding::SizeChanged { before, after } => {
                write!(f, "size {before} → {after} bytes ({:+.0}%)", pct(*before, *after))
            }
        }
    }
}

impl Manifest {
    /// An empty record for `backup` (a key), `size` bytes.
    pub fn new(backup: &str, origin: Origin, size: u64) -> Manifest {
        Manifest {
            format: FORMAT.into(),
            version: VERSION,
            backup: backup.into(),
            origin,
            database: None,
            engine: None,
            server_version: None,
            client_version: None,
            server_major: None,
            client_major: None,
            portable_header_lines: None,
            dump_options: vec![],
            compression: None,
            started_at: None,
            finished_at: None,
            duration_ms: None,
            size_bytes: size,
            modified_unix: None,
            uncompressed_bytes: None,
            sha256: None,
            complete: None,
            incomplete_reason: None,
            rows_known: false,
            tables: vec![],
            objects: BTreeMap::new(),
            verifications: vec![],
            upgrade_rehearsals: vec![],
            encryption: None,
            anomaly: None,
        }
    }

    /// Fills in what the scanner found in the stream.
    pub fn set_stream(&mut self, s: &Summary) {
        self.complete = Some(s.check_complete().is_ok());
        self.incomplete_reason = s.check_complete().err().map(|e| e.to_string());
        self.uncompressed_bytes = Some(s.bytes);
        self.rows_known = s.rows_known;
        self.tables = s.tables.clone();
        self.objects = s.objects.clone();
    }

    /// Rows of every table (when known).
    pub fn rows(&self) -> Option<u64> {
        self.rows_known.then(|| self.tables.iter().map(|t| t.rows).sum())
    }

    /// The newest verification, if any.
    pub fn last_verification(&self) -> Option<&Verification> {
        self.verifications.iter().max_by(|a, b| a.verified_at.cmp(&b.verified_at))
    }

    /// Whether the newest verification passed.
    pub fn verified(&self) -> bool {
        self.last_verification().is_some_and(|v| v.ok)
    }
}

/// The key (relative to the root or a mirror's base) of `backup_key`'s record.
pub fn record_key(backup_key: &str) -> String {
    format!("{CATALOG_DIR}/{}.json", digest_name(backup_key))
}

/// A metadata file's name for `text` (a backup key, a core name): its sha256 in hex, so the
/// path never carries a core name (nor a `-`) for the bash version's `grep` to match.
pub fn digest_name(text: &str) -> String {
    Sha256::digest(text.as_bytes()).iter().map(|b| format!("{b:02x}")).collect()
}

/// Where `backup_key`'s record is under `root`.
pub fn record_path(root: &Path, backup_key: &str) -> PathBuf {
    root.join(record_key(backup_key))
}

/// Reads the record of `backup_key`; `None` when there is none or it is unreadable.
pub fn read(root: &Path, backup_key: &str) -> Option<Manifest> {
    parse(&std::fs::read(record_path(root, backup_key)).ok()?, backup_key)
}

/// The record of `backup_key` in `bytes`; `None` when it is not one (another backup's, a
/// newer version's, not a manifest).
pub fn parse(bytes: &[u8], backup_key: &str) -> Option<Manifest> {
    let m: Manifest = serde_json::from_slice(bytes).ok()?;
    (m.format == FORMAT && m.version <= VERSION && m.backup == backup_key).then_some(m)
}

/// Writes `m` atomically (creating the catalog folder).
///
/// # Errors
/// When the record cannot be written.
pub fn write(root: &Path, m: &Manifest) -> anyhow::Result<()> {
    let path = record_path(root, &m.backup);
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let json = serde_json::to_vec_pretty(m).context("encoding the manifest")?;
    write_atomic(&path, &json).with_context(|| format!("writing the manifest of {}", m.backup))
}

/// Adds a verification to `backup_key`'s record (creating a minimal one when there is none).
///
/// # Errors
/// When the record cannot be written.
pub fn add_verification(root: &Path, backup_key: &str, size: u64, v: Verification) -> anyhow::Result<()> {
    let mut m = read(root, backup_key).unwrap_or_else(|| Manifest::new(backup_key, Origin::Scanned, size));
    m.verifications.push(v);
    write(root, &m)
}

/// Appends an upgrade rehearsal to the record of `backup_key` (as `add_verification`).
///
/// # Errors
/// The record cannot be written.
pub fn add_rehearsal(root: &Path, backup_key: &str, size: u64, v: Verification) -> anyhow::Result<()> {
    let mut m = read(root, backup_key).unwrap_or_else(|| Manifest::new(backup_key, Origin::Scanned, size));
    m.upgrade_rehearsals.push(v);
    write(root, &m)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip_under_a_digest_that_never_holds_the_name() {
        let dir = tempfile::tempdir().unwrap();
        let key = "daily/2026-11-22/host-app_2026-11-22_01-00-00.sql.gz";
        let rk = record_key(key);
        assert!(rk.starts_with(".backup_container/") && rk.ends_with(".json"));
        assert!(!rk.contains('-'), "no core name (they all hold a dash) can match {rk}");
        assert_eq!(read(dir.path(), key), None);
        let mut m = Manifest::new(key, Origin::Written, 10);
        m.sha256 = Some("ab".repeat(32));
        write(dir.path(), &m).unwrap();
        assert_eq!(read(dir.path(), key), Some(m.clone()));
        assert_eq!(read(dir.path(), "daily/other"), None);
        add_verification(
            dir.path(),
            key,
            10,
            Verification {
                verified_at: "2026-11-22T10:00:00Z".into(),
                ok: true,
                error: None,
                tables: 2,
                rows: 30,
                schemas: vec![],
                database_size_bytes: 1,
                duration_ms: 5,
                integrity: "checksum".into(),
                server_major: None,
                note: None,
            },
        )
        .unwrap();
        assert!(read(dir.path(), key).unwrap().verified());
        // A record from a newer release is not misread.
        let mut newer = m;
        newer.version = VERSION + 1;
        write(dir.path(), &newer).unwrap();
        assert_eq!(read(dir.path(), key), None);
    }
}
