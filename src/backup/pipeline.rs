//! One backup of one database: engine dump → scan (completeness, rows per table) → compress →
//! encrypt (age, when recipients are configured) → hash → `<name>.in_progress` → fsync → rename → manifest (sha256, versions, rows per table). Streaming end to end: no uncompressed bytes touch the disk and
//! memory stays bounded whatever the database size.

use std::fs::DirBuilder;
use std::io::BufWriter;
use std::os::unix::fs::DirBuilderExt;
use std::path::Path;
use std::time::Instant;

use anyhow::{Context, bail};
use chrono::{NaiveDateTime, Utc};

use crate::catalog::checksum::HashingWriter;
use crate::catalog::durable::PartialFile;
use crate::catalog::layout;
use crate::catalog::manifest::{self, Manifest, Origin};
use crate::engine::{DumpInfo, Engine};
use crate::model::database::Database;
use crate::stream::compress::Compression;
use crate::stream::crypt::{Recipients, Sealed};
use crate::stream::scan::ScanWriter;
use crate::system::cancel::Cancel;

/// Output buffer between the compressor and the file.
const WRITE_BUFFER: usize = 1 << 20;

/// How a backup is stored: compressed, and encrypted when there are recipients.
#[derive(Debug, Clone, Copy)]
pub struct Format<'a> {
    pub compression: Compression,
    pub recipients: Option<&'a Recipients>,
    /// Counts the dumped bytes for a progress line.
    pub progress: Option<&'a crate::stream::progress::Meter>,
}

impl Format<'_> {
    /// The file extension: `sql.gz`, `sql.zst`, with `.age` when encrypted.
    pub fn extension(&self) -> String {
        let suffix = if self.recipients.is_some() { crate::stream::crypt::SUFFIX } else { "" };
        format!("{}{suffix}", self.compression.extension())
    }
}

pub use crate::catalog::Written;

/// Backs up `db` into `dir` (under the backup `root`) with a file name stamped `timestamp`,
/// and writes its manifest.
///
/// # Errors
/// Any failure of the dump, compression, write, fsync, rename or manifest; the partial (or
/// final) file is removed and no backup exists.
pub fn backup_one(
    db: &Database,
    engine: &dyn Engine,
    root: &Path,
    dir: &Path,
    timestamp: NaiveDateTime,
    format: &Format,
    cancel: &Cancel,
) -> anyhow::Result<Written> {
    let compression = format.compression;
    let started = Instant::now();
    let started_at = Utc::now();
    DirBuilder::new()
        .recursive(true)
        .mode(0o775)
        .create(dir)
        .with_context(|| format!("creating backup folder {}", dir.display()))?;
    let name = layout::file_name(&db.spec.core_name(), timestamp, &format.extension());
    // The one join that cannot leave the folder: a name from a server is encoded, never a path.
    let target = crate::model::safe_name::join_under(dir, &name)?;
    if target.exists() {
        bail!("{} already exists; not overwriting it", target.display());
    }
    let (partial, file) = PartialFile::create(&target)?;
    let sealed = Sealed::new(HashingWriter::new(BufWriter::with_capacity(WRITE_BUFFER, file)), format.recipients)
        .with_context(|| format!("setting up encryption of {}", partial.partial_path().display()))?;
    let mut encoder = compression.encoder(sealed).context("setting up compression")?;
    let (stream, info) = {
        let scanner = crate::stream::scan::for_kind(&db.spec.engine).context("no scanner for this engine")?;
        let mut scanned = ScanWriter::new(&mut encoder, scanner);
        let info = match format.progress {
            Some(meter) => engine.dump(db, &mut meter.writer(&mut scanned), cancel)?,
            None => engine.dump(db, &mut scanned, cancel)?,
        };
        (scanned.finish(), info)
    };
    // The tools exited 0; the stream must still end as a finished dump does.
    stream.check_complete().context("the dump tools reported success, but their output is not a complete dump")?;
    let sealed = encoder.finish().with_context(|| format!("finishing {}", partial.partial_path().display()))?;
    let hashing = sealed.finish().with_context(|| format!("finishing {}", partial.partial_path().display()))?;
    let (buffered, sha256, bytes) = hashing.finish();
    let file = buffered
        .into_inner()
        .map_err(|e| e.into_error())
        .with_context(|| format!("writing {}", partial.partial_path().display()))?;
    cancel.check()?;
    partial.commit(file)?;
    let written = Written { path: target, bytes, sha256, duration: started.elapsed(), stream };
    let mut m = manifest_of(db, &info, compression, root, &written, started_at);
    m.encryption =
        format.recipients.map(|r| manifest::Encryption { scheme: "age".into(), recipients: r.fingerprints() });
    if let Err(e) = manifest::write(root, &m) {
        // A backup without its record would be counted but not provable: it is not kept.
        let _ = std::fs::remove_file(&written.path);
        return Err(e).context("the backup was written but its manifest was not; the backup was removed");
    }
    Ok(written)
}

/// The record of a backup just written.
fn manifest_of(
    db: &Database,
    info: &DumpInfo,
    compression: Compression,
    root: &Path,
    w: &Written,
    started_at: chrono::DateTime<Utc>,
) -> Manifest {
    let key = crate::catalog::BackupKey::of(root, &w.path);
    let mut m = Manifest::new(&key, Origin::Written, w.bytes);
    m.database = Some(db.spec.exact());
    m.engine = Some(db.spec.engine.name().to_string());
    m.server_version = info.server_version.clone();
    m.client_version = info.client_version.clone();
    (m.server_major, m.client_major) = (info.server_major, info.client_major);
    m.portable_header_lines = Some(info.portable_header_lines).filter(|n| *n > 0);
    m.dump_options = info.options.clone();
    m.compression = Some(compression.describe());
    m.started_at = Some(started_at.to_rfc3339());
    m.finished_at = Some(Utc::now().to_rfc3339());
    m.duration_ms = Some(w.duration.as_millis() as u64);
    m.modified_unix = std::fs::metadata(&w.path)
        .and_then(|md| md.modified())
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map(|d| d.as_secs() as i64);
    m.sha256 = Some(w.sha256.clone());
    m.set_stream(&w.stream);
    m
}
