//! The verification record written beside a backup (`<backup>.verified`, JSON): when it was
//! verified, whether it passed, and the figures or the reason. `-l` shows it.

use std::path::Path;

use anyhow::Context;
use serde::{Deserialize, Serialize};

use crate::catalog::with_suffix;
use crate::durable::write_atomic;
use crate::engine::SchemaStats;
use crate::layout::VERIFIED_SUFFIX;

/// One verification's result.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Record {
    /// RFC 3339 time of the verification.
    pub verified_at: String,
    pub ok: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(default)]
    pub tables: u64,
    #[serde(default)]
    pub schemas: Vec<SchemaStats>,
    #[serde(default)]
    pub database_size_bytes: u64,
    #[serde(default)]
    pub duration_ms: u64,
    /// "checksum" (the .sha256 matched) or "stream" (no sidecar; decompressed cleanly).
    #[serde(default)]
    pub integrity: String,
}

/// Writes the record beside `backup`, atomically.
///
/// # Errors
/// When the file cannot be written.
pub fn write(backup: &Path, record: &Record) -> anyhow::Result<()> {
    let json = serde_json::to_vec_pretty(record).context("encoding the verification record")?;
    write_atomic(&with_suffix(backup, VERIFIED_SUFFIX), &json)
}

/// Reads the record beside `backup`, if there is a readable one.
pub fn read(backup: &Path) -> Option<Record> {
    let bytes = std::fs::read(with_suffix(backup, VERIFIED_SUFFIX)).ok()?;
    serde_json::from_slice(&bytes).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let backup = dir.path().join("a.sql.gz");
        assert_eq!(read(&backup), None);
        let r = Record {
            verified_at: "2026-11-22T10:00:00Z".into(),
            ok: true,
            error: None,
            tables: 3,
            schemas: vec![SchemaStats { schema: "public".into(), tables: 3, rows: 10 }],
            database_size_bytes: 8000,
            duration_ms: 1200,
            integrity: "checksum".into(),
        };
        write(&backup, &r).unwrap();
        assert_eq!(read(&backup), Some(r));
    }
}
