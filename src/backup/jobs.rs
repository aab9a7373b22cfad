//! `BACKUP_JOBS`: up to N databases of one run at once, at most `BACKUP_JOBS_PER_HOST` on one
//! server (`workers::run_capped`). Each database keeps its own hooks, mirrors, retention and
//! notifications (the same `Run::backup_database` as the sequential run); reports come back in
//! configuration order. Compression threads are divided between the jobs
//! (`Compression::shared`), so N jobs never run N × cores compressor threads.

use std::sync::Mutex;

use super::{DatabaseReport, Run};
use crate::model::database::Database;

/// The server a database is on, for the per-host cap.
fn server(db: &Database) -> String {
    format!("{}:{}:{}", db.spec.engine.name(), db.spec.host, db.spec.effective_port().unwrap_or(0))
}

impl<'a> Run<'a> {
    /// Backs up `dbs` with `jobs` workers, `per_host` at most on one server.
    pub(super) fn backup_concurrently(&self, dbs: &'a [Database], jobs: usize, per_host: usize) -> Vec<DatabaseReport> {
        let written: Mutex<Vec<String>> = Mutex::new(Vec::new());
        crate::system::workers::run_capped(dbs, jobs, per_host, server, |db| {
            // Keys written by every job so far: retention never deletes them.
            let mut mine = written.lock().map(|w| w.clone()).unwrap_or_default();
            let before = mine.len();
            let report = self.backup_database(db, &mut mine);
            if let Ok(mut w) = written.lock() {
                w.extend(mine.drain(before..));
            }
            report
        })
    }
}
