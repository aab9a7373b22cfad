//! `BACKUP_JOBS`: up to N databases of one run at once, at most `BACKUP_JOBS_PER_HOST` on one
//! server. Each database keeps its own hooks, mirrors, retention and notifications (the same
//! `Run::backup_database` as the sequential run); reports come back in configuration order.
//! Compression threads are divided between the jobs (`Compression::shared`), so N jobs never
//! run N × cores compressor threads.

use std::collections::HashMap;
use std::sync::{Condvar, Mutex};

use super::{DatabaseReport, Run};
use crate::database::Database;

/// The server a database is on, for the per-host cap.
fn server(db: &Database) -> String {
    format!("{}:{}:{}", db.spec.engine.name(), db.spec.host, db.spec.effective_port().unwrap_or(0))
}

struct Queue {
    taken: Vec<bool>,
    busy: HashMap<String, usize>,
}

impl<'a> Run<'a> {
    /// Backs up `dbs` with `jobs` workers, `per_host` at most on one server.
    pub(super) fn backup_concurrently(&self, dbs: &'a [Database], jobs: usize, per_host: usize) -> Vec<DatabaseReport> {
        let queue = Mutex::new(Queue { taken: vec![false; dbs.len()], busy: HashMap::new() });
        let freed = Condvar::new();
        let written: Mutex<Vec<String>> = Mutex::new(Vec::new());
        let reports: Mutex<Vec<Option<DatabaseReport>>> = Mutex::new((0..dbs.len()).map(|_| None).collect());
        std::thread::scope(|scope| {
            for _ in 0..jobs.min(dbs.len()) {
                scope.spawn(|| {
                    while let Some(i) = next(dbs, &queue, &freed, per_host) {
                        // Keys written by every job so far: retention never deletes them.
                        let mut mine = written.lock().map(|w| w.clone()).unwrap_or_default();
                        let before = mine.len();
                        let report = self.backup_database(&dbs[i], &mut mine);
                        if let Ok(mut w) = written.lock() {
                            w.extend(mine.drain(before..));
                        }
                        if let Ok(mut r) = reports.lock() {
                            r[i] = Some(report);
                        }
                        if let Ok(mut q) = queue.lock()
                            && let Some(n) = q.busy.get_mut(&server(&dbs[i]))
                        {
                            *n -= 1;
                        }
                        freed.notify_all();
                    }
                });
            }
        });
        reports.into_inner().unwrap_or_default().into_iter().flatten().collect()
    }
}

/// The next database whose server is under its cap, waiting while every remaining one's
/// server is busy; `None` when none remain.
fn next(dbs: &[Database], queue: &Mutex<Queue>, freed: &Condvar, per_host: usize) -> Option<usize> {
    let mut q = queue.lock().ok()?;
    loop {
        if q.taken.iter().all(|t| *t) {
            return None;
        }
        let free =
            (0..dbs.len()).find(|&i| !q.taken[i] && q.busy.get(&server(&dbs[i])).copied().unwrap_or(0) < per_host);
        if let Some(i) = free {
            q.taken[i] = true;
            *q.busy.entry(server(&dbs[i])).or_default() += 1;
            return Some(i);
        }
        q = freed.wait(q).ok()?;
    }
}
