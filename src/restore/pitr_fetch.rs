//! `-r SPEC --at T --remote [NAME]`: the point-in-time archive's copy on a mirror
//! (`pitr::mirror` keeps it in the archive's own layout), for the day the backup volume is
//! gone. The mirror's index and the `.partial`'s record go into a staging archive under
//! `BACKUP_DIR` (`.backup_container_fetch/pitr_<pid>/pitr/<server>/`); the plan is made from
//! them exactly as from the local archive. Nothing else is staged: recovery streams what the
//! plan needs from the mirror (`pitr::source`) — the chain's base backups unpacked as they
//! arrive, the history files, the segments to replay and, when the target is past the last
//! whole segment, the `.partial` — each checked against the index's sha256 before it is used.
//! The staging folder is removed when the restore ends (and a killed run's at the next fetch,
//! never a running one's).

use std::path::{Path, PathBuf};

use anyhow::Context;
use tracing::info;

use super::fetch::STAGING_DIR;
use crate::pitr::layout::Archive;
use crate::storage::Storage;

/// A staging archive; removed when dropped.
#[derive(Debug)]
pub struct Staged {
    root: PathBuf,
}

impl Drop for Staged {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.root);
    }
}

/// Makes the staging archive of the server at `host:port` and downloads the mirror's index
/// and `.partial` record into it.
///
/// # Errors
/// The staging folder cannot be made, or the mirror holds no archive of the server.
pub fn stage(backup_dir: &Path, mirror: &dyn Storage, host: &str, port: u16) -> anyhow::Result<(Archive, Staged)> {
    let staging = backup_dir.join(STAGING_DIR);
    // A killed run's staging archive; never one of a run still going (these restores take no
    // folder lock: two may run at once).
    for entry in std::fs::read_dir(&staging).into_iter().flatten().flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(pid) = name.strip_prefix("pitr_").and_then(|p| p.parse::<i32>().ok()) else { continue };
        if pid > 0 && !alive(pid) {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
    let root = staging.join(format!("pitr_{}", std::process::id()));
    let staged = Staged { root: root.clone() };
    let archive = Archive::new(&root, host, port);
    std::fs::create_dir_all(&archive.dir).with_context(|| format!("creating {}", archive.dir.display()))?;
    let name = mirror.name();
    mirror
        .get(&archive.key(&archive.index()), &archive.index())
        .with_context(|| format!("{name} holds no point-in-time archive of {host}:{port} (its index.jsonl)"))?;
    let partial = archive.dir.join("partial.json");
    if mirror.get(&archive.key(&partial), &partial).is_err() {
        let _ = std::fs::remove_file(&partial);
    }
    info!(mirror = %name, "Read the archive's index from the mirror.");
    Ok((archive, staged))
}

/// Whether process `pid` exists (signal 0; a process of another user counts).
fn alive(pid: i32) -> bool {
    !matches!(nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None), Err(nix::errno::Errno::ESRCH))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The staging folders of killed runs go; a running one's (here: process 1's) stays; a
    /// mirror without the archive is a clear error.
    #[test]
    fn staging_clears_only_what_killed_runs_left() {
        let dir = tempfile::tempdir().unwrap();
        let (root, remote) = (dir.path().join("backups"), dir.path().join("remote"));
        let staging = root.join(STAGING_DIR);
        for name in ["pitr_1", "pitr_999999999", "pitr_x", "other"] {
            std::fs::create_dir_all(staging.join(name)).unwrap();
        }
        let mirror = crate::storage::local::LocalStorage::new(&remote);
        let err = stage(&root, &mirror, "db", 5432).unwrap_err();
        assert!(format!("{err:#}").contains("holds no point-in-time archive of db:5432"), "{err:#}");
        let left: std::collections::BTreeSet<String> = std::fs::read_dir(&staging)
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        assert!(left.contains("pitr_1") && left.contains("pitr_x") && left.contains("other"), "{left:?}");
        assert!(!left.contains("pitr_999999999"), "{left:?}");
        assert!(!left.contains(&format!("pitr_{}", std::process::id())), "a failed stage removes its own: {left:?}");

        let archive = Archive::new(&remote, "db", 5432);
        std::fs::create_dir_all(&archive.dir).unwrap();
        std::fs::write(archive.index(), "{}\n").unwrap();
        let (staged_archive, staged) = stage(&root, &mirror, "db", 5432).unwrap();
        assert_eq!(std::fs::read(staged_archive.index()).unwrap(), b"{}\n");
        drop(staged);
        assert!(!staged_archive.dir.exists(), "removed when dropped");
    }
}
