//! The catalog's tidy work, the only writes of a walk: old sidecar files moved into records,
//! records whose backup is gone dropped. `load` reads sidecars into the records it returns
//! (`read_sidecars`), so a run that does not tidy sees the same catalog.

use std::collections::HashSet;
use std::fs;
use std::path::{Path, PathBuf};

use super::BackupFile;
use super::layout::{CHECKSUM_SUFFIX, VERIFIED_SUFFIX, with_suffix};
use super::manifest::{self, Manifest, Origin};

/// Moves every file's sidecars into its record (then removes them; they stay when the record
/// cannot be written, e.g. a read-only volume) and drops orphaned records.
pub fn tidy(root: &Path, files: &mut [BackupFile]) {
    for file in files.iter_mut().filter(|f| f.sidecars) {
        migrate(root, file);
    }
    drop_orphans(root, files);
}

/// Reads `<backup>.sha256` and `<backup>.verified` (older releases; `names` holds the files
/// the walk found) into `file`'s record, in memory.
pub(super) fn read_sidecars(file: &mut BackupFile, names: &HashSet<PathBuf>) {
    let sha_path = with_suffix(&file.path, CHECKSUM_SUFFIX);
    let verified_path = with_suffix(&file.path, VERIFIED_SUFFIX);
    let (has_sha, has_verified) = (names.contains(&sha_path), names.contains(&verified_path));
    if !has_sha && !has_verified {
        return;
    }
    let mut m = file.manifest.clone().unwrap_or_else(|| Manifest::new(file.key(), Origin::Migrated, file.size));
    if has_sha && m.sha256.is_none() {
        m.sha256 = fs::read_to_string(&sha_path)
            .ok()
            .and_then(|t| t.split_whitespace().next().map(str::to_ascii_lowercase))
            .filter(|d| d.len() == 64 && d.bytes().all(|b| b.is_ascii_hexdigit()));
    }
    if has_verified && let Some(v) = fs::read(&verified_path).ok().and_then(|b| serde_json::from_slice(&b).ok()) {
        m.verifications.push(v);
    }
    file.manifest = Some(m);
    file.sidecars = true;
}

/// Writes the record `read_sidecars` made, then removes the sidecars.
fn migrate(root: &Path, file: &mut BackupFile) {
    let Some(m) = &file.manifest else { return };
    match manifest::write(root, m) {
        Ok(()) => {
            for p in [with_suffix(&file.path, CHECKSUM_SUFFIX), with_suffix(&file.path, VERIFIED_SUFFIX)] {
                match fs::remove_file(&p) {
                    Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                        tracing::warn!(path = %p.display(), error = %e, "Could not remove an old sidecar file.");
                    }
                    _ => {}
                }
            }
            tracing::info!(path = %file.path.display(), "Moved the backup's checksum and verification into its manifest.");
            file.sidecars = false;
            super::reread_record(root, file);
        }
        Err(e) => {
            tracing::warn!(path = %file.path.display(), error = %format!("{e:#}"), "Could not write a manifest; the old sidecar files stay.");
        }
    }
}

/// Removes records whose backup file is gone. A record may belong to a file this walk saw
/// under its `.in_progress` name (another job renamed it and wrote its record meanwhile): a
/// record whose backup exists now is kept.
pub(super) fn drop_orphans(root: &Path, backups: &[BackupFile]) {
    let dir = root.join(manifest::CATALOG_DIR);
    let Ok(entries) = fs::read_dir(&dir) else { return };
    let live: HashSet<String> = backups.iter().map(|b| manifest::record_key(b.key())).collect();
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let key = format!("{}/{name}", manifest::CATALOG_DIR);
        if name.ends_with(".json") && !live.contains(&key) && !backup_exists(root, &entry.path()) {
            let _ = fs::remove_file(entry.path());
        }
    }
}

/// Whether the backup file a record names exists (the record's `backup` field).
fn backup_exists(root: &Path, record: &Path) -> bool {
    let Ok(bytes) = fs::read(record) else { return false };
    let named = serde_json::from_slice::<serde_json::Value>(&bytes)
        .ok()
        .and_then(|v| v.get("backup").and_then(|b| b.as_str()).map(str::to_string));
    named.is_some_and(|rel| crate::model::safe_name::join_under(root, rel).is_ok_and(|p| p.is_file()))
}
