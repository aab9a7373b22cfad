//! Throwaway servers shared by the databases of one verification run, one per engine and
//! major (PostgreSQL verifies in the source's major): each database loads into the run's
//! server and is dropped after its check, instead of an initdb and a start per database; with
//! `VERIFY_JOBS`, several at once. A server that misbehaved is discarded (the next database
//! gets a fresh one). Servers stop and their folders are removed when the pool and the last
//! database using one let go (the end of the run, on every path).

use std::sync::{Arc, Mutex};

use crate::engine::Server;
use crate::model::spec::EngineKind;

/// Which server: the engine, and the major where versions matter.
type Key = (EngineKind, Option<u32>);
/// The servers running, by key.
type Running = Vec<(Key, Arc<dyn Server>)>;

#[derive(Clone, Default)]
pub struct ServerPool(Arc<Mutex<Running>>);

impl std::fmt::Debug for ServerPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ServerPool")
    }
}

impl ServerPool {
    /// The run's server for `key` and whether it was already running; `start` makes it when
    /// there is none (one start at a time: databases arriving meanwhile wait for it rather
    /// than each starting one).
    fn get_or_start(
        &self,
        key: &Key,
        start: impl FnOnce() -> anyhow::Result<Box<dyn Server>>,
    ) -> anyhow::Result<(Arc<dyn Server>, bool)> {
        let mut kept = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((_, server)) = kept.iter().find(|(k, _)| k == key) {
            return Ok((Arc::clone(server), true));
        }
        let server: Arc<dyn Server> = Arc::from(start()?);
        kept.push((key.clone(), Arc::clone(&server)));
        Ok((server, false))
    }

    /// Runs `check` in the run's server for `engine` and `major` (started by `start` when
    /// there is none), then `clean` (drop the database); a failed check or clean-up takes the
    /// server out of use for the rest of the run (it stops when the checks still using it end).
    ///
    /// # Errors
    /// `start`'s, or `check`'s.
    pub fn check_in<R>(
        &self,
        engine: EngineKind,
        major: Option<u32>,
        start: impl FnOnce() -> anyhow::Result<Box<dyn Server>>,
        check: impl FnOnce(&dyn Server) -> anyhow::Result<R>,
        clean: impl FnOnce(&dyn Server) -> anyhow::Result<()>,
    ) -> anyhow::Result<R> {
        let (server, reused) = self.get_or_start(&(engine, major), start)?;
        tracing::debug!(reused, "Verification server.");
        let checked = check(server.as_ref());
        if checked.is_err() || clean(server.as_ref()).is_err() {
            self.discard(&server);
        }
        checked
    }

    /// Forgets `server`: it stops when the databases still using it are done.
    fn discard(&self, server: &Arc<dyn Server>) {
        let mut kept = self.0.lock().unwrap_or_else(|e| e.into_inner());
        kept.retain(|(_, s)| !Arc::ptr_eq(s, server));
    }
}

#[cfg(test)]
mod tests {
    use super::ServerPool;
    use crate::engine::{Conn, Server};
    use crate::model::spec::EngineKind;
    use std::sync::atomic::{AtomicUsize, Ordering};

    struct Fake(usize);
    impl Server for Fake {
        fn conn(&self) -> Conn {
            Conn { host: self.0.to_string(), port: None, user: None, password: None }
        }
    }

    #[test]
    fn one_server_serves_every_check_until_one_fails() {
        let pool = ServerPool::default();
        let started = AtomicUsize::new(0);
        let start =
            || -> anyhow::Result<Box<dyn Server>> { Ok(Box::new(Fake(started.fetch_add(1, Ordering::SeqCst)))) };
        let id = |s: &dyn Server| -> anyhow::Result<String> { Ok(s.conn().host) };
        let pg = |major| (EngineKind::Postgres, Some(major));
        let used = |pool: &ServerPool, ok: bool| {
            let (kind, major) = pg(15);
            pool.check_in(kind, major, start, |s| if ok { id(s) } else { anyhow::bail!("load failed") }, |_| Ok(()))
        };
        assert_eq!(used(&pool, true).unwrap(), "0");
        assert_eq!(used(&pool, true).unwrap(), "0", "reused");
        assert!(used(&pool, false).is_err());
        assert_eq!(used(&pool, true).unwrap(), "1", "a failed check takes the server out of use");
        // A failed clean-up too.
        assert!(pool.check_in(EngineKind::Postgres, Some(15), start, id, |_| anyhow::bail!("drop failed")).is_ok());
        assert_eq!(used(&pool, true).unwrap(), "2");
        // Another major, and another engine, get their own server; each is reused for its own.
        assert_eq!(pool.check_in(EngineKind::Postgres, Some(13), start, id, |_| Ok(())).unwrap(), "3");
        assert_eq!(pool.check_in(EngineKind::Postgres, Some(13), start, id, |_| Ok(())).unwrap(), "3");
        assert_eq!(pool.check_in(EngineKind::MariaDb, None, start, id, |_| Ok(())).unwrap(), "4");
        assert_eq!(pool.check_in(EngineKind::MariaDb, None, start, id, |_| Ok(())).unwrap(), "4");
        assert_eq!(used(&pool, true).unwrap(), "2");
        assert_eq!(started.load(Ordering::SeqCst), 5);
    }
}
