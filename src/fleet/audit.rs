//! The coverage audit's memory: one WARN notification per change of a server's uncovered
//! databases, not one per run. The last findings are kept in
//! `BACKUP_DIR/.backup_container/coverage.txt` (no database name in the path; not `.json`, so
//! the catalog never takes it for a backup's record).

use std::collections::BTreeMap;
use std::path::Path;

use tracing::{info, warn};

use crate::fleet::Coverage;
use crate::notify::{Notifiers, event};

const STATE: &str = ".backup_container/coverage.txt";

/// Logs the audit, notifies the servers whose uncovered databases changed to a non-empty
/// set, and remembers the findings.
pub fn report(root: &Path, coverage: &[Coverage], notifiers: &Notifiers) {
    let path = root.join(STATE);
    let before = read(&path);
    let mut now = BTreeMap::new();
    for c in coverage {
        if let Some(e) = &c.error {
            warn!(server = %c.server, error = %e, "Coverage audit: could not list the server's databases.");
            continue;
        }
        let list = c.uncovered.join(",");
        if !c.uncovered.is_empty() {
            warn!(server = %c.server, databases = %list, "Coverage audit: databases no line of the configuration covers.");
            if before.get(&c.server) != Some(&list) {
                notifiers.notify(event::uncovered(&c.server, &c.uncovered));
            }
        } else if before.get(&c.server).is_some_and(|b| !b.is_empty()) {
            info!(server = %c.server, "Coverage audit: every database is covered again.");
        }
        now.insert(c.server.clone(), list);
    }
    if now == before {
        return;
    }
    let text: String = now.iter().map(|(s, l)| format!("{s}\t{l}\n")).collect();
    if let Some(dir) = path.parent() {
        let _ = std::fs::create_dir_all(dir);
    }
    if let Err(e) = crate::catalog::durable::write_atomic(&path, text.as_bytes()) {
        warn!(error = %format!("{e:#}"), "Could not remember the coverage audit; it may notify again.");
    }
}

fn read(path: &Path) -> BTreeMap<String, String> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.split_once('\t').map(|(s, d)| (s.to_string(), d.to_string())))
        .collect()
}
