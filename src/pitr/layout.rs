//! Where the archive keeps things under `BACKUP_DIR`: `pitr/<server>/` with the index, the
//! archive's id, WAL per timeline, history files and base backups per chain. No path holds a
//! `-`: the bash version's pruning greps every path under the folder for a database's core name
//! (`host-db`, which always has one) with an unanchored regex, and must never match ours.

use std::path::{Path, PathBuf};

/// The archive's folder under `BACKUP_DIR`.
pub const ROOT: &str = "pitr";

/// A server's folder name: `host_port`, lowercased, every character outside `[a-z0-9_]`
/// replaced by `_`; when anything was replaced, 8 hex digits of the sha256 of `host:port`
/// follow, so that two servers (`a-b` and `a.b`) never share a folder.
pub fn server_name(host: &str, port: u16) -> String {
    let raw = format!("{host}_{port}").to_lowercase();
    let clean: String =
        raw.chars().map(|c| if c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' { c } else { '_' }).collect();
    if clean == raw {
        return clean;
    }
    let digest = crate::catalog::manifest::digest_name(&format!("{host}:{port}"));
    format!("{clean}_{}", &digest[..8])
}

/// One server's archive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Archive {
    pub dir: PathBuf,
}

impl Archive {
    pub fn new(backup_dir: &Path, host: &str, port: u16) -> Archive {
        Archive { dir: backup_dir.join(ROOT).join(server_name(host, port)) }
    }

    /// The name of the lock readers of the archive (restores, PITR drills) hold shared and
    /// retention takes exclusively before it removes anything (`catalog::lock`).
    pub fn read_lock(&self) -> String {
        format!("pitr read {}", self.dir.display())
    }

    /// The backup folder the archive is in.
    pub fn backup_dir(&self) -> &Path {
        self.dir.parent().and_then(Path::parent).unwrap_or(&self.dir)
    }

    /// A file's key on a mirror: its path under the backup folder (a mirror's copy keeps the
    /// archive's layout).
    pub fn key(&self, path: &Path) -> String {
        path.strip_prefix(self.backup_dir()).unwrap_or(path).to_string_lossy().into_owned()
    }

    /// The index (`index`).
    pub fn index(&self) -> PathBuf {
        self.dir.join("index.jsonl")
    }

    /// The archive's random id, written once (the default slot name depends on it).
    pub fn id_file(&self) -> PathBuf {
        self.dir.join("archive_id")
    }

    /// A WAL file of `timeline` (a segment, or its `.partial`) with the archive's extension.
    pub fn wal(&self, timeline: u32, name: &str, extension: &str) -> PathBuf {
        self.dir.join("wal").join(format!("{timeline:08X}")).join(format!("{name}{extension}"))
    }

    /// A timeline's history file with the archive's extension.
    pub fn history(&self, timeline: u32, extension: &str) -> PathBuf {
        self.dir.join("history").join(format!("{timeline:08X}.history{extension}"))
    }

    /// Base backup `n` of `chain` (0: the full one).
    pub fn base(&self, chain: u32, n: u32, extension: &str) -> PathBuf {
        self.dir.join("base").join(chain.to_string()).join(n.to_string()).join(format!("base.tar{extension}"))
    }

    /// Base backup `n` of `chain`'s `backup_manifest` (an incremental backup names it).
    pub fn base_manifest(&self, chain: u32, n: u32, extension: &str) -> PathBuf {
        self.dir.join("base").join(chain.to_string()).join(n.to_string()).join(format!("backup_manifest{extension}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_names_are_safe_and_never_shared() {
        assert_eq!(server_name("db", 5432), "db_5432");
        let hostile = ["wallet-db", "wallet.db", "WALLET_DB", "../x", "a/b", "ü", "a b", "x\ny"];
        let names: Vec<String> = hostile.iter().map(|h| server_name(h, 5432)).collect();
        for n in &names {
            assert!(n.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_'), "{n}");
        }
        let distinct: std::collections::HashSet<&String> = names.iter().collect();
        assert_eq!(distinct.len(), names.len(), "{names:?}");
        assert_ne!(server_name("db", 5432), server_name("db", 5433));
    }

    /// The bash version's pruning: `find` every file, `grep` the core name (an unanchored
    /// regex); core names always hold a `-`, and no archive path does.
    #[test]
    fn no_archive_path_can_match_the_bash_versions_pruning() {
        let a = Archive::new(Path::new("/backups"), "wallet-db", 5432);
        let paths = [
            a.index(),
            a.id_file(),
            a.wal(1, "0000000100000016000000B3", ".gz.age"),
            a.wal(10, "0000000A00000016000000B3.partial", ".zst"),
            a.history(2, ".gz"),
            a.base(3, 1, ".gz"),
            a.base_manifest(3, 1, ".zst.age"),
        ];
        // `-` is literal in the regex: a path without one never matches a core name.
        for p in paths {
            let rel = p.strip_prefix("/backups").unwrap().to_string_lossy().into_owned();
            assert!(!rel.contains('-'), "{rel}");
        }
        assert!(a.dir.to_string_lossy().starts_with("/backups/pitr/wallet_db_5432_"), "{}", a.dir.display());
        assert_eq!(a.wal(1, "0000000100000016000000B3", ".gz"), a.dir.join("wal/00000001/0000000100000016000000B3.gz"));
        assert_eq!(a.base(3, 0, ".gz"), a.dir.join("base/3/0/base.tar.gz"));
    }
}
