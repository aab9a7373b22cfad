//! The backup folder as a `Storage`: its listing is the catalog (backups, their sidecars,
//! partial files), deleting a key removes that file and the dated and class folders it leaves
//! empty. Writing a new backup stays the streaming pipeline's job; `put` copies a finished
//! file in (atomically), for the conformance suite and for restoring copies from a mirror.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use anyhow::Context;

use super::{RemoteObject, Storage};
use crate::catalog::durable::PartialFile;
use crate::catalog::manifest::record_key;
use crate::catalog::{self, BackupFile};
use crate::model::safe_name;

pub struct LocalStorage {
    root: PathBuf,
}

impl LocalStorage {
    pub fn new(root: &Path) -> LocalStorage {
        LocalStorage { root: root.to_path_buf() }
    }
}

/// The objects of a catalog: every backup file and the record of each that has one.
pub fn objects(backups: &[BackupFile]) -> Vec<RemoteObject> {
    let mut out = Vec::new();
    for b in backups {
        let key = b.key().to_string();
        if b.manifest.is_some() {
            out.push(RemoteObject { key: record_key(&key), size: None });
        }
        out.push(RemoteObject { key, size: Some(b.size) });
    }
    out
}

impl Storage for LocalStorage {
    fn name(&self) -> String {
        format!("local {}", self.root.display())
    }

    fn put(&self, local: &Path, key: &str) -> anyhow::Result<()> {
        let target = safe_name::join_under(&self.root, key)?;
        if let Some(dir) = target.parent() {
            fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        }
        let (partial, mut file) = PartialFile::create(&target)?;
        let mut source = fs::File::open(local).with_context(|| format!("opening {}", local.display()))?;
        io::copy(&mut source, &mut file).with_context(|| format!("writing {}", partial.partial_path().display()))?;
        partial.commit(file)
    }

    fn list(&self) -> anyhow::Result<Vec<RemoteObject>> {
        Ok(objects(&catalog::scan(&self.root)?))
    }

    fn stream(&self, key: &str, sink: &mut super::Sink) -> anyhow::Result<u64> {
        let path = safe_name::join_under(&self.root, key)?;
        let mut source = fs::File::open(&path).with_context(|| format!("opening {}", path.display()))?;
        super::feed(&mut source, sink).with_context(|| format!("reading {}", path.display()))
    }

    fn delete(&self, key: &str) -> anyhow::Result<()> {
        let path = safe_name::join_under(&self.root, key)?;
        fs::remove_file(&path).with_context(|| format!("deleting {}", path.display()))?;
        catalog::remove_empty_dirs(&self.root, path.parent());
        Ok(())
    }

    fn prunes(&self) -> bool {
        true
    }
}
