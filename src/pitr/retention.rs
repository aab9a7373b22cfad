//! Retention of a server's archive: the newest `PITR_CHAINS` usable chains (a full base
//! backup whose own WAL is all there, and its incrementals) are kept, with every chain newer
//! than the oldest of them (one being taken, or one a gap made unusable); older chains go, and
//! so does WAL older than the oldest kept base backup's start on its timeline (and WAL of older
//! timelines), never WAL a kept base backup needs. Nothing is removed while no usable chain
//! would be kept.
//!
//! The plan is pure (table-tested); carrying it out records the removals in the index first
//! (one durable append), then deletes the files: a process killed in between leaves files the
//! index no longer names (harmless, gone at the next run), never an index naming files that
//! are gone (a false gap).

use std::collections::BTreeSet;

use anyhow::Context;

use super::archive::Store;
use super::index::{self, Event, Index};
use super::wal::Segment;
use crate::catalog::lock::{NotTaken, RunLock};

/// Holds the archive's read lock shared while a restore or a PITR drill reads it: retention
/// removes nothing meanwhile. Waits up to 30 s for a pruning in progress.
///
/// # Errors
/// Pruning held it longer, or the lock file cannot be opened.
pub fn reading(archive: &super::layout::Archive) -> anyhow::Result<RunLock> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        match RunLock::try_database_shared(archive.backup_dir(), &archive.read_lock(), "reading the archive") {
            Ok(lock) => return Ok(lock),
            Err(NotTaken::Busy(_)) if std::time::Instant::now() < deadline => {
                std::thread::sleep(std::time::Duration::from_millis(100));
            }
            Err(e) => return Err(anyhow::anyhow!("{e:#}")).context("taking the archive's read lock"),
        }
    }
}

/// What retention removes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Plan {
    pub keep_chains: Vec<u32>,
    pub drop_chains: Vec<u32>,
    pub drop_segments: Vec<Segment>,
    /// Bytes the removals free (stored sizes).
    pub freed: u64,
    /// The oldest WAL kept: the oldest kept base backup's start.
    pub from: Option<Segment>,
}

impl Plan {
    pub fn is_empty(&self) -> bool {
        self.drop_chains.is_empty() && self.drop_segments.is_empty()
    }
}

/// The plan for keeping `chains` usable chains (at least one).
pub fn plan(index: &Index, chains: usize) -> Plan {
    let mut fulls: Vec<_> = index.bases.iter().filter(|b| b.n == 0).collect();
    fulls.sort_by_key(|b| std::cmp::Reverse(b.chain));
    let mut keep = Vec::new();
    let mut usable = 0;
    for full in &fulls {
        if usable >= chains.max(1) {
            break;
        }
        keep.push(full.chain);
        usable += usize::from(index.usable(full));
    }
    // Incrementals of a chain whose full backup is gone cannot be restored: never kept alone.
    let Some(oldest) = fulls.iter().filter(|b| keep.contains(&b.chain)).min_by_key(|b| b.chain) else {
        return Plan::default();
    };
    if usable == 0 {
        return Plan { keep_chains: keep, ..Plan::default() };
    }
    let start = oldest.start_segment(index.segment_size);
    let drop_chains: BTreeSet<u32> = index.bases.iter().map(|b| b.chain).filter(|c| !keep.contains(c)).collect();
    let mut plan = Plan {
        keep_chains: keep,
        drop_chains: drop_chains.into_iter().collect(),
        from: Some(start),
        ..Plan::default()
    };
    plan.freed = index.bases.iter().filter(|b| plan.drop_chains.contains(&b.chain)).map(|b| b.size).sum();
    for a in index.segments() {
        if before(Segment { timeline: a.timeline, number: a.number }, start) {
            plan.drop_segments.push(Segment { timeline: a.timeline, number: a.number });
            plan.freed += a.size;
        }
    }
    plan
}

/// `-p` for every server in `PITR_SERVERS` whose archive no daemon is keeping (a daemon prunes
/// its own after each base backup): one line per server saying what was removed.
pub fn prune_archives(settings: &crate::config::Settings) -> Vec<Result<String, String>> {
    let mut out = Vec::new();
    for server in &settings.pitr.servers {
        let name = server.name();
        let spec = &server.database.spec;
        let archive = super::layout::Archive::new(&settings.backup_dir, &spec.host, spec.port.unwrap_or(5432));
        if !archive.index().exists() {
            continue;
        }
        let what = format!("pitr {name}");
        let _lock =
            match crate::catalog::lock::RunLock::try_database(&settings.backup_dir, &what, "pruning the archive") {
                Ok(lock) => lock,
                Err(crate::catalog::lock::NotTaken::Busy(b)) => {
                    out.push(Ok(format!("archive of {name}: kept by {} (it prunes after each base backup)", b.holder)));
                    continue;
                }
                Err(e) => {
                    out.push(Err(format!("archive of {name}: {e:#}")));
                    continue;
                }
            };
        let store = Store::new(archive, settings.compression, settings.encryption.clone());
        out.push(run(&store, settings.pitr.chains, true).map_err(|e| format!("archive of {name}: {e:#}")));
    }
    out
}

/// Plans and carries out retention on `store`; with `compact` (only while nothing else
/// appends: the caller holds the server's lock and no streamer runs) the index is rewritten.
///
/// # Errors
/// The index cannot be read or written, or files cannot be deleted.
pub fn run(store: &Store, chains: usize, compact: bool) -> anyhow::Result<String> {
    let path = store.archive.index();
    let (index, _) = index::load(&path)?;
    let plan = plan(&index, chains);
    if !apply(store, &index, &plan)? {
        return Ok(format!("archive of {}: a restore or PITR drill is reading it; pruned later", index.server));
    }
    if compact {
        let (after, _) = index::load(&path)?;
        index::rewrite(&path, &after)?;
    }
    let server = if index.server.is_empty() { store.archive.dir.display().to_string() } else { index.server.clone() };
    Ok(if plan.is_empty() {
        format!("archive of {server}: nothing to remove ({} chains kept)", plan.keep_chains.len())
    } else {
        format!(
            "archive of {server}: removed {} chains and {} WAL segments ({}); kept chains {:?}",
            plan.drop_chains.len(),
            plan.drop_segments.len(),
            crate::model::human::bytes(plan.freed),
            plan.keep_chains
        )
    })
}

/// Whether `s` is WAL no base backup from `start` on needs: an older timeline, or before
/// `start` on its own.
fn before(s: Segment, start: Segment) -> bool {
    s.timeline < start.timeline || (s.timeline == start.timeline && s.number < start.number)
}

/// Carries out `plan` on `store`'s archive: the removals recorded, then the files deleted,
/// then WAL files the index does not name and the plan would have removed (left by a process
/// killed after recording) swept.
///
/// Nothing is removed while a restore or a PITR drill reads the archive (they hold its read
/// lock shared): `Ok(false)`, and the next run tries again.
///
/// # Errors
/// The index cannot be written (nothing is deleted then), or a file cannot be deleted (it
/// stays, unnamed by the index; the next run tries again).
pub fn apply(store: &Store, index: &Index, plan: &Plan) -> anyhow::Result<bool> {
    let archive = &store.archive;
    let _alone = match RunLock::try_database(archive.backup_dir(), &archive.read_lock(), "pruning the archive") {
        Ok(lock) => lock,
        Err(NotTaken::Busy(_)) => {
            tracing::info!(archive = %archive.dir.display(), "A restore or PITR drill is reading the archive: pruning waits for it.");
            return Ok(false);
        }
        Err(e) => return Err(anyhow::anyhow!("{e:#}")),
    };
    let mut failed = Vec::new();
    if let Some(from) = plan.from {
        sweep(store, index, from, &mut failed);
    }
    if plan.is_empty() && failed.is_empty() {
        return Ok(true);
    }
    let mut events: Vec<Event> = plan.drop_chains.iter().map(|c| Event::ChainRemoved { chain: *c }).collect();
    events.extend(plan.drop_segments.iter().map(|s| Event::Removed { timeline: s.timeline, number: s.number }));
    if !events.is_empty() {
        index::append_all(&store.archive.index(), &events)?;
    }
    let extension = store.extension();
    for chain in &plan.drop_chains {
        let dir = store.archive.dir.join("base").join(chain.to_string());
        if let Err(e) = std::fs::remove_dir_all(&dir)
            && e.kind() != std::io::ErrorKind::NotFound
        {
            failed.push(format!("{}: {e}", dir.display()));
        }
    }
    for s in &plan.drop_segments {
        let path = store.existing(&store.archive.wal(s.timeline, &s.name(index.segment_size), &extension));
        if let Err(e) = std::fs::remove_file(&path)
            && e.kind() != std::io::ErrorKind::NotFound
        {
            failed.push(format!("{}: {e}", path.display()));
        }
    }
    if failed.is_empty() {
        Ok(true)
    } else {
        Err(anyhow::anyhow!("{}", failed.join("; "))).context("removing what the archive no longer keeps")
    }
}

/// Removes WAL files under `wal/` older than `from` that the index does not name, and old
/// `.partial` copies.
fn sweep(store: &Store, index: &Index, from: Segment, failed: &mut Vec<String>) {
    let size = index.segment_size;
    for entry in walkdir::WalkDir::new(store.archive.dir.join("wal")).min_depth(2).max_depth(2) {
        let Ok(entry) = entry else { continue };
        let name = entry.file_name().to_string_lossy();
        let Some(segment) = name.get(..24).and_then(|n| Segment::parse(n, size)) else { continue };
        // An old `.partial` copy, or a segment the index no longer names.
        if before(segment, from)
            && (name.contains("partial") || !index.has(segment))
            && let Err(e) = std::fs::remove_file(entry.path())
        {
            failed.push(format!("{}: {e}", entry.path().display()));
        }
    }
}

#[cfg(test)]
mod tests;
