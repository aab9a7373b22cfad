//! `-r`/`-v` with `--remote [NAME]`: the backup taken from a mirror, for the day the backup
//! volume is gone. The mirror is listed, the backup chosen by the same rules as locally
//! (`selection`), its record downloaded from the mirror's catalog folder and the backup
//! streamed into a staging folder in `BACKUP_DIR`; then the usual restore or verification runs
//! on it, checking the file against the record's sha256 before anything is touched. The staged
//! file is removed afterwards (and at the next fetch, if a run was killed): the mirror keeps
//! the copy, the local catalog is not changed.

use std::path::{Path, PathBuf};

use anyhow::{Context, anyhow, bail};
use tracing::{info, warn};

use crate::backup::mirror::remote_backup;
use crate::catalog::BackupFile;
use crate::catalog::manifest;
use crate::catalog::selection::{self, Choice};
use crate::storage::Storage;

/// The staging folder under the backup root (hidden, no `-` in its name).
pub const STAGING_DIR: &str = ".backup_container_fetch";

/// A backup downloaded from a mirror; the staged file is removed when this is dropped.
#[derive(Debug)]
pub struct Fetched {
    /// `Choice::Remote` with the staged path and the mirror's record.
    pub choice: Choice,
    staging: PathBuf,
}

impl Drop for Fetched {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.staging);
    }
}

/// The mirror `--remote NAME` means: the only one when `name` is empty, else the one whose
/// kind (`ftp`, `ftps`, `s3`) or printable name matches.
///
/// # Errors
/// No mirror configured, none matching, or several matching.
pub fn pick_mirror<'a>(mirrors: &'a [Box<dyn Storage>], name: &str) -> anyhow::Result<&'a dyn Storage> {
    let names: Vec<String> = mirrors.iter().map(|m| m.name()).collect();
    if mirrors.is_empty() {
        bail!("--remote: no mirror is configured (FTP_URL or S3_ENDPOINT)");
    }
    let wanted = name.trim().to_ascii_lowercase();
    let matching: Vec<&dyn Storage> = mirrors
        .iter()
        .map(|m| m.as_ref())
        .filter(|m| {
            let n = m.name().to_ascii_lowercase();
            wanted.is_empty()
                || n.starts_with(&wanted)
                || (wanted == "ftps" && n.starts_with("ftp"))
                || n.contains(&wanted)
        })
        .collect();
    match matching.as_slice() {
        [one] => Ok(*one),
        [] => bail!("--remote {name}: no mirror matches; configured: {}", names.join(", ")),
        _ => bail!("--remote: several mirrors are configured ({}); name one, e.g. --remote s3", names.join(", ")),
    }
}

/// The mirror `name` picks (as `pick_mirror`), taken out of `mirrors`.
///
/// # Errors
/// As `pick_mirror`.
pub fn take_mirror(mut mirrors: Vec<Box<dyn Storage>>, name: &str) -> anyhow::Result<Box<dyn Storage>> {
    let picked = pick_mirror(&mirrors, name)?.name();
    let i = mirrors.iter().position(|m| m.name() == picked).unwrap_or_default();
    Ok(mirrors.swap_remove(i))
}

/// Downloads the backup of `core` that `filter` chooses on `mirror` (with `for_restore`, the
/// restore rules: another database's backup needs `-f`).
///
/// # Errors
/// Listing or download failures, no matching backup, a download whose size is not the
/// listed one.
pub fn fetch(
    root: &Path,
    mirror: &dyn Storage,
    core: &str,
    filter: Option<&str>,
    for_restore: bool,
) -> anyhow::Result<Fetched> {
    let name = mirror.name();
    let listing = mirror.list().with_context(|| format!("listing {name}"))?;
    let backups: Vec<BackupFile> = listing.iter().filter_map(remote_backup).collect();
    let base = Path::new(&name);
    let chosen = if for_restore {
        selection::choose_for_restore(&backups, base, core, filter)
    } else {
        selection::choose(&backups, base, core, filter)
    }?;
    let Choice::Catalog(mut b) = chosen else {
        bail!("with --remote, -f names a backup on the mirror (a file name or text of its path), not a local file");
    };
    let staging = root.join(STAGING_DIR);
    // Left by a killed fetch: the caller holds the run lock, so nothing else uses it.
    let _ = std::fs::remove_dir_all(&staging);
    std::fs::create_dir_all(&staging).with_context(|| format!("creating {}", staging.display()))?;
    let mut fetched = Fetched { choice: Choice::Path(PathBuf::new()), staging: staging.clone() };
    let key = b.key().to_string();
    let record_key = manifest::record_key(&key);
    b.manifest = if listing.iter().any(|o| o.key == record_key) {
        let local = staging.join("record.json");
        mirror.get(&record_key, &local).with_context(|| format!("downloading the record of {key} from {name}"))?;
        let bytes = std::fs::read(&local).with_context(|| format!("reading {}", local.display()))?;
        Some(manifest::parse(&bytes, &key).ok_or_else(|| anyhow!("the record of {key} on {name} is not readable"))?)
    } else {
        warn!(storage = %name, key = %key, "The copy has no record on the mirror: no checksum to check; the whole stream is decoded and scanned instead.");
        None
    };
    let file = crate::model::safe_name::join_under(&staging, b.file_name())?;
    info!(storage = %name, key = %key, "Downloading the backup from the mirror.");
    let started = std::time::Instant::now();
    let n = mirror.get(&key, &file).with_context(|| format!("downloading {key} from {name}"))?;
    if let Some(listed) = listing.iter().find(|o| o.key == key).and_then(|o| o.size).filter(|s| *s != n) {
        bail!("downloading {key} from {name}: received {n} bytes, the mirror lists {listed}");
    }
    if let Some(m) = b.manifest.as_ref().filter(|m| m.size_bytes != n) {
        bail!("downloading {key} from {name}: received {n} bytes, its record says {}", m.size_bytes);
    }
    info!(storage = %name, key = %key, bytes = n, duration_ms = started.elapsed().as_millis() as u64, "Downloaded.");
    b.path = file;
    b.size = n;
    fetched.choice = Choice::Remote(b);
    Ok(fetched)
}
