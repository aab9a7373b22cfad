//! The contract every `Storage` keeps, as one suite that the tests run against each kind
//! (local folder, memory, FTPS on pyftpdlib and vsftpd, S3 on s3s-fs): nested keys and
//! records in the hidden catalog folder are created, listed with the right size (where the storage reports sizes), downloaded
//! byte for byte, replaced, and deleted (a missing key cannot be downloaded), and the listing is back to what it was.

use std::path::Path;

use anyhow::{Context, ensure};

use super::Storage;
use crate::catalog::manifest::{self, Manifest, Origin};

const DAILY: &str = "daily/2026-11-20/db-app_2026-11-20_01-00-00.sql.gz";
const FLAT: &str = "2026-11-19/db-app_2026-11-19_01-00-00.sql.gz";
const MISSING: &str = "daily/2026-11-18/db-app_2026-11-18_01-00-00.sql.gz";

/// Runs the suite against `storage`, with scratch files in `scratch`.
///
/// # Errors
/// The first broken promise, naming it.
pub fn check(storage: &dyn Storage, scratch: &Path) -> anyhow::Result<()> {
    let file = |name: &str, len: usize| -> anyhow::Result<std::path::PathBuf> {
        let p = scratch.join(name);
        let bytes: Vec<u8> = (0..len).map(|i| (i * 31 % 251) as u8).collect();
        std::fs::write(&p, bytes).with_context(|| format!("writing {}", p.display()))?;
        Ok(p)
    };
    let keys = |s: &dyn Storage| -> anyhow::Result<Vec<(String, Option<u64>)>> {
        let mut l: Vec<_> = s.list()?.into_iter().map(|o| (o.key, o.size)).collect();
        l.sort();
        Ok(l)
    };
    let name = storage.name();
    let before = keys(storage)?;
    ensure!(!before.iter().any(|(k, _)| k == DAILY || k == FLAT), "{name}: not empty at the start: {before:?}");

    let big = file("big", 70_000)?;
    let small = file("small", 65)?;
    let record = scratch.join("record.json");
    std::fs::write(&record, serde_json::to_vec(&Manifest::new(DAILY, Origin::Written, 70_000))?)?;
    let record_key = manifest::record_key(DAILY);
    storage.put(&big, DAILY).context("put of a nested key")?;
    storage.put(&record, &record_key).context("put of a record in the catalog folder")?;
    storage.put(&small, FLAT).context("put of a flat-layout key")?;
    let listed = keys(storage)?;
    for (key, len) in [(DAILY, 70_000), (FLAT, 65)] {
        let found = listed.iter().find(|(k, _)| k == key);
        ensure!(found.is_some(), "{name}: {key} not listed after put: {listed:?}");
        if let Some((_, Some(size))) = found {
            ensure!(*size == len, "{name}: {key} listed with {size} bytes, put {len}");
        }
    }
    ensure!(listed.iter().any(|(k, _)| *k == record_key), "{name}: the record is not listed: {listed:?}");

    for (key, source) in [(DAILY, &big), (record_key.as_str(), &record)] {
        let back = scratch.join("downloaded");
        let n = storage.get(key, &back).with_context(|| format!("get of {key}"))?;
        let (got, want) = (std::fs::read(&back)?, std::fs::read(source)?);
        ensure!(n == want.len() as u64 && got == want, "{name}: {key} came back as {n} different bytes");
    }
    ensure!(storage.get(MISSING, &scratch.join("missing")).is_err(), "{name}: get of a missing key succeeded");
    // A stream: the sink sees the first bytes as they come; what it leaves is read and counted;
    // the sink's own error is the stream's, its words kept.
    let mut head = [0u8; 10];
    let n = storage.stream(DAILY, &mut |r| Ok(r.read_exact(&mut head)?)).context("stream of a nested key")?;
    let want = std::fs::read(&big)?;
    ensure!(n == 70_000 && head[..] == want[..10], "{name}: a stream counted {n} bytes or began with other bytes");
    let refused = storage.stream(DAILY, &mut |_| anyhow::bail!("the sink refuses")).err().map(|e| format!("{e:#}"));
    ensure!(
        refused.as_deref().is_some_and(|e| e.contains("the sink refuses")),
        "{name}: a failing sink's error was {refused:?}"
    );

    storage.put(&small, DAILY).context("replacing an object")?;
    if let Some((_, Some(size))) = keys(storage)?.into_iter().find(|(k, _)| k == DAILY) {
        ensure!(size == 65, "{name}: a replaced object kept its old size ({size})");
    }

    storage.delete(DAILY).context("delete")?;
    storage.delete(&record_key).context("delete of the record")?;
    storage.delete(FLAT).context("delete of the flat key")?;
    let after = keys(storage)?;
    ensure!(after == before, "{name}: after deleting everything put, the listing is {after:?}, was {before:?}");
    // Deleting a missing key may succeed (S3 deletes are idempotent) or fail (FTP's 550); it
    // must not bring anything back.
    let _ = storage.delete(DAILY);
    ensure!(keys(storage)? == before, "{name}: deleting a missing key changed the listing");
    Ok(())
}
