//! Opening a backup to read it back — the one path restores, verifications, drills and
//! rehearsals share: the checksum (or, without one, the whole stream) proven, completeness
//! proven or known from the record, the scan recorded, then the decoded stream with a
//! progress meter.

use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};

use anyhow::Context;

use crate::catalog;
use crate::catalog::checksum::{Integrity, check_integrity};
use crate::catalog::selection::Choice;
use crate::model::spec::EngineKind;
use crate::stream::compress;
use crate::stream::crypt::Keys;
use crate::stream::progress::Meter;

/// A backup proven intact and complete.
#[derive(Debug, Clone)]
pub struct Checked {
    pub path: PathBuf,
    pub size: u64,
    pub integrity: Integrity,
}

/// Proves `choice` intact and complete: its sha256 matches the recorded one (or, without one,
/// the whole stream decodes), and its record says it is complete — or, when it has no such
/// record or `full_scan` asks (a load that drops the target first), a scan of the whole
/// stream does. A scan is recorded in the backup's manifest.
///
/// # Errors
/// A mismatch, an incomplete or undecodable backup, a read error.
pub fn check(root: &Path, choice: &Choice, kind: &EngineKind, full_scan: bool, keys: &Keys) -> anyhow::Result<Checked> {
    let path = choice.path().to_path_buf();
    let expected = choice.expected_sha256()?;
    let known_complete = choice.check_recorded()?;
    let checked = check_integrity(&path, expected.as_deref(), kind, full_scan || !known_complete, keys)?;
    if let Choice::Catalog(b) = choice {
        catalog::record_scan(root, b, &checked);
    }
    checked.require_complete(&path)?;
    let size = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
    Ok(Checked { path, size, integrity: checked.integrity })
}

/// A backup's decoded SQL, its progress shown as `label` while it is read.
pub struct Opened {
    pub sql: Box<dyn BufRead + Send>,
    _meter: Meter,
}

/// Opens `path` (`size` bytes) decrypted and decompressed.
///
/// # Errors
/// The file cannot be opened, or its decryption key is missing.
pub fn open(path: &Path, size: u64, label: &str, keys: &Keys) -> anyhow::Result<Opened> {
    let meter = Meter::start(label, size);
    let file = File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let sql = BufReader::with_capacity(1 << 20, compress::decoder(path, meter.reader(file), keys)?);
    Ok(Opened { sql: Box::new(sql), _meter: meter })
}
