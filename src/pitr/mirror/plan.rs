//! What one pass of an archive's mirror does, decided from the archive's files, its index and
//! what the mirror already holds (its ledger): pure, table-tested.

use std::collections::BTreeMap;

use chrono::{DateTime, Duration, Utc};

use crate::pitr::index::Index;
use crate::pitr::wal::Segment;

/// A file of the archive: its key (its path under `BACKUP_DIR`, `/`-separated), size and
/// modification time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalFile {
    pub key: String,
    pub size: u64,
    pub mtime: DateTime<Utc>,
}

/// How long copies stay locked on a mirror with S3 Object Lock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LockPolicy {
    /// `PITR_CHAINS`.
    pub chains: u32,
    /// The interval of the full base backup schedule.
    pub interval: Duration,
    /// `S3_OBJECT_LOCK_MIN_DAYS`.
    pub min: Duration,
}

/// One pass: the files to send, in order, each with its lock date, the replaced files that
/// changed but wait until they are due, and the copies to delete.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Pass {
    pub uploads: Vec<(LocalFile, Option<DateTime<Utc>>)>,
    pub held_back: Vec<LocalFile>,
    pub deletes: Vec<String>,
}

/// What kind of file a key is, by the archive's layout (`pitr/<server>/…`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Kind {
    Id,
    History,
    BaseManifest(u32, u32),
    Base(u32, u32),
    Wal,
    /// The segment being written, its record, and the index: replaced as they change.
    Partial,
    PartialRecord,
    Index,
    Other,
}

impl Kind {
    fn replaced(self) -> bool {
        matches!(self, Kind::Partial | Kind::PartialRecord | Kind::Index)
    }
}

fn kind(key: &str) -> Kind {
    let parts: Vec<&str> = key.split('/').skip(2).collect();
    let num = |s: &str| s.parse::<u32>().ok();
    match parts.as_slice() {
        ["archive_id"] => Kind::Id,
        ["index.jsonl"] => Kind::Index,
        ["partial.json"] => Kind::PartialRecord,
        ["history", _] => Kind::History,
        ["wal", _, name] if name.contains(".partial") => Kind::Partial,
        ["wal", _, _] => Kind::Wal,
        ["base", c, n, f] => match (num(c), num(n)) {
            (Some(c), Some(n)) if f.starts_with("backup_manifest") => Kind::BaseManifest(c, n),
            (Some(c), Some(n)) => Kind::Base(c, n),
            _ => Kind::Other,
        },
        _ => Kind::Other,
    }
}

/// The segment a WAL key holds.
fn segment_of(key: &str, segment_size: u64) -> Option<Segment> {
    let name = key.rsplit('/').next()?;
    Segment::parse(name.get(..24)?, segment_size)
}

/// The pass for `local` files against the ledger `held` (key → size and mtime as sent).
/// Changed or new files go, oldest kind first (the archive's id, history, each base backup's
/// manifest before its tar, WAL in order) and the index last, so a copy of the index never
/// names a file the mirror lacks; the files that are replaced as they change (the
/// `.partial`, its record, the index) only when `replaced_due`. A copy whose file is gone is
/// deleted only when the index no longer names it (retention removed it) or a newer file
/// replaced it (an old `.partial`): a file lost here is what the mirror's copy can heal.
pub fn pass(
    local: &[LocalFile],
    held: &BTreeMap<String, (u64, i64)>,
    index: &Index,
    lock: Option<LockPolicy>,
    replaced_due: bool,
    now: DateTime<Utc>,
) -> Pass {
    let changed = local
        .iter()
        .filter(|f| kind(&f.key) != Kind::Other)
        .filter(|f| held.get(&f.key) != Some(&(f.size, f.mtime.timestamp())));
    let (mut uploads, held_back): (Vec<&LocalFile>, Vec<&LocalFile>) =
        changed.partition(|f| replaced_due || !kind(&f.key).replaced());
    uploads.sort_by(|a, b| (kind(&a.key), &a.key).cmp(&(kind(&b.key), &b.key)));
    let here: std::collections::HashSet<&str> = local.iter().map(|f| f.key.as_str()).collect();
    let deletes = held
        .keys()
        .filter(|k| !here.contains(k.as_str()))
        .filter(|k| match kind(k) {
            Kind::Wal => segment_of(k, index.segment_size.max(1)).is_some_and(|s| !index.has(s)),
            Kind::Base(c, _) | Kind::BaseManifest(c, _) => !index.bases.iter().any(|b| b.chain == c),
            Kind::Partial => true,
            _ => false,
        })
        .cloned()
        .collect();
    let uploads = uploads.into_iter().map(|f| (f.clone(), lock.and_then(|l| lock_until(f, index, l, now)))).collect();
    Pass { uploads, held_back: held_back.into_iter().cloned().collect(), deletes }
}

/// Until when the copy of `f` stays locked: until its chain is expected to expire (the
/// chain's full base backup start + `PITR_CHAINS` base intervals; WAL belongs to the newest
/// chain started before it was stored), and at least `min` from now; files that are replaced
/// (the index, the `.partial`) are not locked.
fn lock_until(f: &LocalFile, index: &Index, l: LockPolicy, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
    let started = |chain: u32| index.bases.iter().find(|b| b.chain == chain && b.n == 0).map(|b| b.started_at);
    let from = match kind(&f.key) {
        Kind::Index | Kind::Partial | Kind::PartialRecord | Kind::Other => return None,
        Kind::Base(c, _) | Kind::BaseManifest(c, _) => started(c).unwrap_or(now),
        Kind::Wal => index
            .bases
            .iter()
            .filter(|b| b.n == 0 && b.started_at <= f.mtime)
            .map(|b| b.started_at)
            .max()
            .unwrap_or(f.mtime),
        Kind::Id | Kind::History => now,
    };
    let later = |t: DateTime<Utc>, d: Option<Duration>| {
        d.and_then(|d| t.checked_add_signed(d)).unwrap_or(DateTime::<Utc>::MAX_UTC)
    };
    let span = l.interval.checked_mul(i32::try_from(l.chains.max(1)).unwrap_or(i32::MAX));
    Some(later(from, span).max(later(now, Some(l.min))))
}

#[cfg(test)]
mod tests;
