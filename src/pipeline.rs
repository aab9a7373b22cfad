//! One backup of one database: engine dump → scan (completeness, rows per table) → compress →
//! hash → `<name>.in_progress` → fsync → rename → `.sha256` sidecar. Streaming end to end: no uncompressed bytes touch the disk and
//! memory stays bounded whatever the database size.

use std::fs::DirBuilder;
use std::io::BufWriter;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use chrono::NaiveDateTime;

use crate::cancel::Cancel;
use crate::catalog::with_suffix;
use crate::checksum::{HashingWriter, sidecar_line};
use crate::compress::Compression;
use crate::database::Database;
use crate::durable::{PartialFile, write_atomic};
use crate::engine::Engine;
use crate::layout::{self, CHECKSUM_SUFFIX};
use crate::scan::{ScanWriter, Summary};

/// Output buffer between the compressor and the file.
const WRITE_BUFFER: usize = 1 << 20;

/// A backup that was written and committed.
#[derive(Debug, Clone)]
pub struct Written {
    pub path: PathBuf,
    /// Compressed size on disk.
    pub bytes: u64,
    pub sha256: String,
    pub duration: Duration,
    /// What the scanner counted in the uncompressed stream (rows per table, objects).
    pub stream: Summary,
}

/// Backs up `db` into `dir` with a file name stamped `timestamp`.
///
/// # Errors
/// Any failure of the dump, compression, write, fsync or rename; the partial file is removed
/// and no final file exists.
pub fn backup_one(
    db: &Database,
    engine: &dyn Engine,
    dir: &Path,
    timestamp: NaiveDateTime,
    compression: Compression,
    cancel: &Cancel,
) -> anyhow::Result<Written> {
    let started = Instant::now();
    DirBuilder::new()
        .recursive(true)
        .mode(0o775)
        .create(dir)
        .with_context(|| format!("creating backup folder {}", dir.display()))?;
    let name = layout::file_name(&db.spec.core_name(), timestamp, compression.extension());
    let target = dir.join(&name);
    if target.exists() {
        bail!("{} already exists; not overwriting it", target.display());
    }
    let (partial, file) = PartialFile::create(&target)?;
    let mut encoder = compression
        .encoder(HashingWriter::new(BufWriter::with_capacity(WRITE_BUFFER, file)))
        .context("setting up compression")?;
    let stream = {
        let scanner = crate::scan::for_kind(&db.spec.engine).context("no scanner for this engine")?;
        let mut scanned = ScanWriter::new(&mut encoder, scanner);
        engine.dump(db, &mut scanned, cancel)?;
        scanned.finish()
    };
    // The tools exited 0; the stream must still end as a finished dump does.
    stream.check_complete().context("the dump tools reported success, but their output is not a complete dump")?;
    let hashing = encoder.finish().with_context(|| format!("finishing {}", partial.partial_path().display()))?;
    let (buffered, sha256, bytes) = hashing.finish();
    let file = buffered
        .into_inner()
        .map_err(|e| e.into_error())
        .with_context(|| format!("writing {}", partial.partial_path().display()))?;
    cancel.check()?;
    partial.commit(file)?;
    write_atomic(&with_suffix(&target, CHECKSUM_SUFFIX), sidecar_line(&sha256, &name).as_bytes())
        .context("writing the checksum file")?;
    Ok(Written { path: target, bytes, sha256, duration: started.elapsed(), stream })
}
