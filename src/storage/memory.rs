//! A `Storage` in memory, for in-process tests of runs, mirrors and the daemon (and for the
//! conformance suite to be checked against something with no server at all).

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Mutex;

use anyhow::{Context, bail};

use super::{RemoteObject, Storage, is_layout_dir};

/// Objects by key; clones share nothing.
#[derive(Debug, Default)]
pub struct MemoryStorage {
    objects: Mutex<BTreeMap<String, Vec<u8>>>,
    prune: bool,
}

impl MemoryStorage {
    pub fn new(prune: bool) -> MemoryStorage {
        MemoryStorage { objects: Mutex::default(), prune }
    }

    /// Every key stored, sorted.
    pub fn keys(&self) -> Vec<String> {
        self.objects.lock().map(|o| o.keys().cloned().collect()).unwrap_or_default()
    }

    /// The bytes stored under `key`.
    pub fn bytes(&self, key: &str) -> Option<Vec<u8>> {
        self.objects.lock().ok()?.get(key).cloned()
    }
}

impl Storage for MemoryStorage {
    fn name(&self) -> String {
        "memory".into()
    }

    fn put(&self, local: &Path, key: &str) -> anyhow::Result<()> {
        let bytes = std::fs::read(local).with_context(|| format!("reading {}", local.display()))?;
        self.objects.lock().map_err(|_| anyhow::anyhow!("memory storage poisoned"))?.insert(key.to_string(), bytes);
        Ok(())
    }

    fn list(&self) -> anyhow::Result<Vec<RemoteObject>> {
        let objects = self.objects.lock().map_err(|_| anyhow::anyhow!("memory storage poisoned"))?;
        Ok(objects
            .iter()
            .filter(|(k, _)| k.split('/').next().is_some_and(is_layout_dir))
            .map(|(k, v)| RemoteObject { key: k.clone(), size: Some(v.len() as u64) })
            .collect())
    }

    fn stream(&self, key: &str, sink: &mut super::Sink) -> anyhow::Result<u64> {
        let bytes = self.bytes(key).ok_or_else(|| anyhow::anyhow!("downloading {key}: no such object"))?;
        super::feed(&mut bytes.as_slice(), sink)
    }

    fn delete(&self, key: &str) -> anyhow::Result<()> {
        let mut objects = self.objects.lock().map_err(|_| anyhow::anyhow!("memory storage poisoned"))?;
        if objects.remove(key).is_none() {
            bail!("deleting {key}: no such object");
        }
        Ok(())
    }

    fn prunes(&self) -> bool {
        self.prune
    }
}
