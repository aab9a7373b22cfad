//! Point-in-time recovery from the archive: the plan (`plan`), then the chosen base backups
//! extracted under `VERIFY_DIR` (each stored file's sha256 checked as it streams; combined with
//! `pg_combinebackup` of the backups' own major when the chain has incrementals), the WAL to
//! replay put in `pg_wal` (each file checked against its record first; from the local archive
//! or streamed from a mirror's copy, `pitr::source`), and a throwaway server
//! of the backups' own major started on it (`Engine::start_server_on`), recovering to the
//! target and promoted. The WAL is staged before the server starts (the server's
//! `restore_command` fails for every file, so recovery reads `pg_wal`): the server's user needs
//! no access to the archive, and nothing is left to serve it.
//!
//! A target after the last commit in the WAL staged for it (which reaches past the target)
//! stops PostgreSQL with "recovery ended before configured recovery target was reached"; the
//! state at the target is then the end of that WAL, and recovery is run once more without a
//! target time.

pub mod plan;

use std::io::Read;
use std::path::Path;
use std::process::Command;

use anyhow::{Context, anyhow, bail};
use sha2::Digest;
use tracing::info;

use super::archive::Store;
use super::index::{BaseBackup, Index};
use super::source::Source;
use crate::config::Settings;
use crate::engine::postgres::Installed;
use crate::engine::{DataDir, Engine, Recovery, Server, ServerOptions};
use crate::model::spec::EngineKind;
use crate::stream::crypt::Keys;
use crate::system::cancel::Cancel;
use plan::Chosen;

/// What recovery reads: the archive's files (local, or a mirror's copy with `mirror`), its
/// index, and the identity for an encrypted one.
#[derive(Clone, Copy)]
pub struct Sources<'a> {
    pub store: &'a Store,
    pub mirror: Option<&'a dyn crate::storage::Storage>,
    pub index: &'a Index,
    pub keys: &'a Keys,
}

/// Recovers `chosen` from the archive into a throwaway server (`settings`' throwaway options,
/// the backups' own major).
///
/// # Errors
/// Too little space under `opts.work_dir`; a stored file missing or not matching its record;
/// an archive encrypted without the identity in `keys`; `pg_combinebackup` failing; the server
/// not starting or not reaching the target (its log quoted). The throwaway's folder is removed
/// on every path.
pub fn recover(
    settings: &Settings,
    from: Sources,
    chosen: &Chosen,
    cancel: &Cancel,
) -> anyhow::Result<Box<dyn Server>> {
    let engine =
        settings.engines.get(&EngineKind::Postgres).ok_or_else(|| anyhow!("this build has no PostgreSQL engine"))?;
    let tools = settings.engines.postgres().installed();
    let opts = &settings.throwaway_options();
    check_space(from.index, chosen, &opts.work_dir)?;
    let target_time = chosen.target.recovery_target_time();
    match attempt(engine, tools, from, chosen, opts, target_time.clone(), cancel) {
        Err(e)
            if target_time.is_some() && format!("{e:#}").contains("before configured recovery target was reached") =>
        {
            info!("No commit after the target in the WAL that reaches past it: recovering to the end of that WAL.");
            attempt(engine, tools, from, chosen, opts, None, cancel)
        }
        other => other,
    }
}

fn attempt(
    engine: &dyn Engine,
    tools: &Installed,
    from: Sources,
    chosen: &Chosen,
    opts: &ServerOptions,
    target_time: Option<String>,
    cancel: &Cancel,
) -> anyhow::Result<Box<dyn Server>> {
    let Sources { store, mirror, index, keys } = from;
    let source = Source { store, mirror };
    let started = std::time::Instant::now();
    let mut read = 0;
    let folder = tempfile::Builder::new()
        .prefix("pitr")
        .tempdir_in(&opts.work_dir)
        .with_context(|| format!("creating a folder in {}", opts.work_dir.display()))?;
    let data = folder.path().join("data");
    let last = chosen.chain.last().ok_or_else(|| anyhow!("no base backup was chosen"))?;
    if let [only] = chosen.chain.as_slice() {
        read += extract(source, only, keys, &data, cancel)?;
    } else {
        let mut parts = Vec::new();
        for b in &chosen.chain {
            let part = folder.path().join(format!("part{}", b.n));
            read += extract(source, b, keys, &part, cancel)?;
            parts.push(part);
        }
        let combine = tools.server_dir_exact(last.major)?.join("pg_combinebackup");
        let out = Command::new(&combine)
            .args(&parts)
            .arg("-o")
            .arg(&data)
            .output()
            .with_context(|| format!("starting {}", combine.display()))?;
        if !out.status.success() {
            bail!("pg_combinebackup failed: {}", String::from_utf8_lossy(&out.stderr).trim());
        }
        for part in parts {
            let _ = std::fs::remove_dir_all(part);
        }
    }
    read += stage_wal(source, index, chosen, keys, &data.join("pg_wal"))?;
    cancel.check()?;
    if let Some(mirror) = mirror {
        info!(bytes = read, seconds = started.elapsed().as_secs_f64(), mirror = %mirror.name(), "Streamed what the recovery needs from the mirror (nothing staged).");
    }
    let recovery = Recovery { restore_command: "false".into(), target_time };
    info!(chain = last.chain, backup = last.n, segments = chosen.segments.len(), "Recovering in a throwaway server.");
    engine.start_server_on(DataDir { folder, superuser: last.superuser.clone() }, Some(&recovery), opts, cancel)
}

/// Free space for the chain, the combined copy and the WAL; a record without the plain size
/// (an older archive) counts 4× its stored size.
fn check_space(index: &Index, chosen: &Chosen, work_dir: &Path) -> anyhow::Result<()> {
    let plain = |b: &BaseBackup| if b.plain_size > 0 { b.plain_size } else { b.size.saturating_mul(4) };
    let mut need: u64 = chosen.chain.iter().map(plain).sum();
    if chosen.chain.len() > 1 {
        need += chosen.chain.last().map_or(0, plain);
    }
    need += (chosen.segments.len() as u64 + 1) * index.segment_size;
    let free = nix::sys::statvfs::statvfs(work_dir)
        .map(|s| s.blocks_available() * s.fragment_size())
        .with_context(|| format!("reading the free space of {}", work_dir.display()))?;
    if free < need {
        bail!(
            "recovering needs about {} in {} (the base backups, their combination and the WAL); {} is free",
            crate::model::human::bytes(need),
            work_dir.display(),
            crate::model::human::bytes(free)
        );
    }
    Ok(())
}

/// Reads a stored file, hashing what it reads.
struct Hashing<R> {
    inner: R,
    hash: sha2::Sha256,
}

impl<R: Read> Read for Hashing<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hash.update(&buf[..n]);
        Ok(n)
    }
}

/// Unpacks base backup `b` into `dest` as it streams, its stored file's sha256 checked against
/// the record once the whole file has passed (the folder is discarded on a mismatch); returns
/// the stored size.
fn extract(source: Source, b: &BaseBackup, keys: &Keys, dest: &Path, cancel: &Cancel) -> anyhow::Result<u64> {
    cancel.check()?;
    let path = source.store.archive.base(b.chain, b.n, &source.store.extension());
    source.read(&path, &mut |name, raw| {
        // A download that is retried starts over in an empty folder.
        let _ = std::fs::remove_dir_all(dest);
        let mut hashing = Hashing { inner: std::io::BufReader::with_capacity(1 << 20, raw), hash: sha2::Sha256::new() };
        {
            let mut decoded = crate::stream::compress::decoder(name, &mut hashing, keys)?;
            tar::Archive::new(&mut decoded).unpack(dest).with_context(|| format!("unpacking {}", name.display()))?;
            std::io::copy(&mut decoded, &mut std::io::sink()).with_context(|| format!("reading {}", name.display()))?;
        }
        // What the decoder left unread (the gzip trailer's padding) counts too.
        std::io::copy(&mut hashing, &mut std::io::sink()).with_context(|| format!("reading {}", name.display()))?;
        let got = crate::catalog::checksum::hex(&std::mem::take(&mut hashing.hash).finalize());
        if got != b.sha256 {
            bail!("{} does not match its record (sha256 {got}, recorded {})", name.display(), b.sha256);
        }
        Ok(())
    })
}

/// The chosen segments, the `.partial` when needed, and the history files, into `pg_wal`;
/// returns the stored bytes read.
fn stage_wal(source: Source, index: &Index, chosen: &Chosen, keys: &Keys, pg_wal: &Path) -> anyhow::Result<u64> {
    std::fs::create_dir_all(pg_wal).with_context(|| format!("creating {}", pg_wal.display()))?;
    let (store, size) = (source.store, index.segment_size);
    let mut read = 0;
    for a in &chosen.segments {
        source.segment(a, size, keys, pg_wal)?;
        read += a.size;
    }
    if let Some(segment) = chosen.partial {
        let (_, _, sha) = super::archive::partial_record(&store.archive)
            .filter(|(s, _, _)| *s == segment)
            .ok_or_else(|| anyhow!("the archive's partial segment changed while recovering; try again"))?;
        read += source.partial(segment, &sha, size, keys, pg_wal)?.1;
    }
    for timeline in &chosen.histories {
        let (stored, raw) = source.bytes(&store.archive.history(*timeline, &store.extension()), HISTORY_LIMIT)?;
        read += raw.len() as u64;
        let mut text = Vec::new();
        crate::stream::compress::decoder(&stored, &raw[..], keys)?
            .read_to_end(&mut text)
            .with_context(|| format!("decoding {}", stored.display()))?;
        crate::catalog::durable::write_atomic(&pg_wal.join(format!("{timeline:08X}.history")), &text)?;
    }
    Ok(read)
}

/// The most a stored history file may hold (a few lines per timeline switch).
const HISTORY_LIMIT: u64 = 16 << 20;
