//! What a notifier missed: the events of a run that an endpoint did not get (it failed one
//! event after all its attempts and was not tried again in that run, or the run ended before
//! the queue drained). Kept per notifier in
//! `BACKUP_DIR/.backup_container/notify/missed_<sha256 of its name>.json` (no `-` in the
//! path, so no core name can match it; in a folder, so the catalog never takes it for a
//! record), so that the next run — often another process — sends one summary first.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::event::{Event, Level};
use crate::catalog::durable::write_atomic;
use crate::catalog::manifest::{CATALOG_DIR, digest_name};

/// The titles kept for the summary (the newest ones).
const TITLES: usize = 10;

/// The newest missed event of one database (`""`: events without a database).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Latest {
    pub level: Level,
    pub kind: String,
    pub title: String,
    pub time: DateTime<Utc>,
    pub details: Map<String, Value>,
}

/// The tally of missed events.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Missed {
    pub events: u64,
    /// Per level: `INFO`, `WARN`, `ERROR`.
    pub by_level: BTreeMap<String, u64>,
    pub highest: Option<Level>,
    pub first: Option<DateTime<Utc>>,
    pub last: Option<DateTime<Utc>>,
    /// Why the endpoint was given up (its first failure in the run).
    pub reason: String,
    /// The newest titles, oldest first.
    pub titles: Vec<String>,
    /// The newest event per database (PagerDuty sends the latest state of each key).
    pub latest: BTreeMap<String, Latest>,
}

impl Missed {
    pub fn is_empty(&self) -> bool {
        self.events == 0
    }

    pub fn add(&mut self, e: &Event) {
        self.events += 1;
        *self.by_level.entry(e.level.as_str().to_string()).or_default() += 1;
        self.highest = self.highest.max(Some(e.level));
        self.first = Some(self.first.map_or(e.time, |f| f.min(e.time)));
        self.last = Some(self.last.map_or(e.time, |l| l.max(e.time)));
        self.titles.push(e.title.clone());
        if self.titles.len() > TITLES {
            self.titles.remove(0);
        }
        let latest = Latest {
            level: e.level,
            kind: e.kind.to_string(),
            title: e.title.clone(),
            time: e.time,
            details: e.details.clone(),
        };
        self.latest.insert(e.database.clone().unwrap_or_default(), latest);
    }

    /// `earlier` (an older run's tally) folded in before this one.
    pub fn merge_earlier(&mut self, earlier: Missed) {
        let mut merged = earlier;
        merged.events += self.events;
        for (level, n) in &self.by_level {
            *merged.by_level.entry(level.clone()).or_default() += n;
        }
        merged.highest = merged.highest.max(self.highest);
        merged.first = merged.first.or(self.first);
        merged.last = self.last.or(merged.last);
        if merged.reason.is_empty() {
            merged.reason = self.reason.clone();
        }
        merged.titles.append(&mut self.titles);
        let excess = merged.titles.len().saturating_sub(TITLES);
        merged.titles.drain(..excess);
        merged.latest.append(&mut self.latest);
        *self = merged;
    }

    /// The newest missed event of each database, as events to send again (PagerDuty).
    pub fn replay(&self) -> Vec<Event> {
        self.latest
            .iter()
            .map(|(db, l)| Event {
                level: l.level,
                kind: if l.kind == "backup_succeeded" { "backup_succeeded" } else { "missed" },
                database: (!db.is_empty()).then(|| db.clone()),
                title: l.title.clone(),
                message: l.title.clone(),
                time: l.time,
                details: l.details.clone(),
            })
            .collect()
    }
}

/// Where `notifier`'s tally is kept under `root`.
pub fn path(root: &Path, notifier: &str) -> PathBuf {
    root.join(CATALOG_DIR).join("notify").join(format!("missed_{}.json", &digest_name(notifier)[..16]))
}

/// The tally an earlier run left, if any (an unreadable one is treated as none: it only
/// ever adds a summary).
pub fn load(path: &Path) -> Option<Missed> {
    serde_json::from_slice(&std::fs::read(path).ok()?).ok()
}

/// Saves `missed` atomically.
///
/// # Errors
/// The folder or the file cannot be written.
pub fn save(path: &Path, missed: &Missed) -> anyhow::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    write_atomic(path, &serde_json::to_vec_pretty(missed)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::notify::event;

    fn at(mut e: Event, secs: i64) -> Event {
        e.time = DateTime::from_timestamp(1_800_000_000 + secs, 0).unwrap();
        e
    }

    #[test]
    fn the_tally_counts_levels_keeps_the_newest_per_database_and_merges_in_order() {
        let mut older = Missed::default();
        older.add(&at(event::backup_failed("a", "boom"), 0));
        older.reason = "timed out".into();
        let mut now = Missed::default();
        for i in 0..12 {
            now.add(&at(event::mirror_succeeded("b", &format!("k{i}"), "s3"), 10 + i));
        }
        now.add(&at(event::config_error("bad"), 30));
        now.merge_earlier(older);
        assert_eq!(now.events, 14);
        assert_eq!(now.by_level["ERROR"], 2);
        assert_eq!(now.by_level["INFO"], 12);
        assert_eq!(now.highest, Some(Level::Error));
        assert_eq!(now.first.unwrap().timestamp(), 1_800_000_000);
        assert_eq!(now.last.unwrap().timestamp(), 1_800_000_030);
        assert_eq!(now.reason, "timed out");
        assert_eq!(now.titles.len(), TITLES);
        assert_eq!(now.latest.keys().cloned().collect::<Vec<_>>(), vec!["", "a", "b"]);
        let replay = now.replay();
        assert_eq!(replay.len(), 3);
        assert_eq!(replay[1].database.as_deref(), Some("a"));
        assert_eq!(replay[1].level, Level::Error);
    }

    #[test]
    fn the_file_name_has_no_dash_and_round_trips() {
        let dir = tempfile::tempdir().unwrap();
        let p = path(dir.path(), "webhook https://chat.example.com");
        let name = p.file_name().unwrap().to_string_lossy().to_string();
        assert!(!name.contains('-') && name.starts_with("missed_"), "{name}");
        let mut m = Missed::default();
        m.add(&event::backup_failed("x-y", "e"));
        save(&p, &m).unwrap();
        assert_eq!(load(&p), Some(m));
        std::fs::write(&p, b"not json").unwrap();
        assert_eq!(load(&p), None);
    }
}
