//! The index's records: the events of its log, and what they describe.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::lsn;
use crate::pitr::wal::Segment;

/// One line of the log.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Event {
    /// The archive's first line: the server's `wal_segment_size`.
    Started {
        segment_size: u64,
        server: String,
    },
    Segment(Archived),
    History {
        timeline: u32,
        switches: Vec<(u32, String)>,
    },
    Base(BaseBackup),
    /// Retention removed a segment.
    Removed {
        timeline: u32,
        number: u64,
    },
    /// Retention removed a chain of base backups.
    ChainRemoved {
        chain: u32,
    },
    /// A PITR drill: a restore from the archive, proven.
    Drill(Drill),
}

/// A PITR drill's outcome.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Drill {
    pub at: DateTime<Utc>,
    pub chain: u32,
    pub n: u32,
    /// The time recovered to (the newest WAL's for a drill to the latest).
    pub target: DateTime<Utc>,
    pub latest: bool,
    pub ok: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    pub duration_seconds: f64,
    pub databases: u64,
    pub tables: u64,
    pub rows: u64,
    /// `pg_amcheck` ran and found nothing (14+).
    #[serde(default)]
    pub amcheck: bool,
}

/// A segment in the archive.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Archived {
    pub timeline: u32,
    pub number: u64,
    pub size: u64,
    pub sha256: String,
    pub received_at: DateTime<Utc>,
}

/// A base backup in the archive.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct BaseBackup {
    /// The chain (a full backup and its incrementals) and the place in it (0: the full one).
    pub chain: u32,
    pub n: u32,
    pub timeline: u32,
    pub start_lsn: String,
    pub end_lsn: String,
    pub started_at: DateTime<Utc>,
    /// When `pg_basebackup` finished, by our clock: never before the server's end of backup.
    pub finished_at: DateTime<Utc>,
    /// The stored file's size and sha256.
    #[serde(default)]
    pub size: u64,
    #[serde(default)]
    pub sha256: String,
    /// The server's major: the throwaway server that recovers it must be the same.
    #[serde(default)]
    pub major: u32,
    /// The cluster's bootstrap superuser (the role a restored copy is reached as).
    #[serde(default)]
    pub superuser: String,
    /// The `backup_manifest`'s own checksum, and how many files it lists.
    #[serde(default)]
    pub manifest_checksum: String,
    #[serde(default)]
    pub files: u64,
    /// The files' total size before compression (the manifest's sizes).
    #[serde(default)]
    pub plain_size: u64,
}

impl BaseBackup {
    /// The segment its WAL starts in.
    pub fn start_segment(&self, segment_size: u64) -> Segment {
        Segment { timeline: self.timeline, number: lsn(&self.start_lsn).segment(segment_size.max(1)) }
    }
}

/// Segments missing from a timeline: `from` to `to`, both included.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Gap {
    pub timeline: u32,
    pub from: u64,
    pub to: u64,
}

/// A span of time any moment of which can be recovered to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
}
