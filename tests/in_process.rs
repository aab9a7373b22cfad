//! The library driven in-process (no binary): a backup run with an in-memory mirror that
//! prunes, and the daemon loop started and stopped through its shutdown token.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use backup_container::backup::run_backups;
use backup_container::config::{Env, Settings};
use backup_container::model::error::Exit;
use backup_container::notify::Notifiers;
use backup_container::storage::memory::MemoryStorage;
use backup_container::storage::{RemoteObject, Storage};
use backup_container::system::cancel::Cancel;

use crate::harness::app::{APP_PASSWORD, Fixture};
use crate::harness::backups_under;

/// Shares one in-memory storage between the run and the test.
struct Shared(Arc<MemoryStorage>);

impl Storage for Shared {
    fn name(&self) -> String {
        self.0.name()
    }
    fn put(&self, local: &Path, key: &str) -> anyhow::Result<()> {
        self.0.put(local, key)
    }
    fn list(&self) -> anyhow::Result<Vec<RemoteObject>> {
        self.0.list()
    }
    fn stream(&self, key: &str, sink: &mut backup_container::storage::Sink) -> anyhow::Result<u64> {
        self.0.stream(key, sink)
    }
    fn delete(&self, key: &str) -> anyhow::Result<()> {
        self.0.delete(key)
    }
    fn prunes(&self) -> bool {
        self.0.prunes()
    }
}

fn settings(fx: &Fixture, extra: &[(&str, &str)]) -> Settings {
    let backups = fx.backups().display().to_string();
    let mut pairs = vec![
        ("BACKUP_DIR", backups.as_str()),
        ("LOCALHOST_USER", "app"),
        ("LOCALHOST_PASSWORD", APP_PASSWORD),
        ("BACKUP_STRATEGY", "daily"),
        ("TZ", "UTC"),
        ("HEALTH_ADDR", "off"),
    ];
    pairs.extend_from_slice(extra);
    let conf = fx.dir.path().join("in-process.conf");
    let text =
        format!("localhost:{}/app1\n{}", fx.pg.port, extra.iter().find(|(k, _)| *k == "CRON").map_or("", |(_, v)| v));
    std::fs::write(&conf, text).unwrap();
    let pairs: Vec<(&str, &str)> = pairs.into_iter().filter(|(k, _)| *k != "CRON").collect();
    Settings::load(Env::from_pairs(pairs), Some(&conf)).unwrap()
}

#[test]
fn a_run_with_an_in_memory_mirror_copies_and_prunes() {
    let Some(fx) = Fixture::start(20) else { return };
    let memory = Arc::new(MemoryStorage::new(true));
    let mirrors: Vec<Box<dyn Storage>> = vec![Box::new(Shared(memory.clone()))];
    let s = settings(&fx, &[("NUM_BACKUPS", "1")]);
    let notifiers = Notifiers::from_settings(&s.notify, &s.backup_dir, &Cancel::new());
    for round in 1..=2 {
        let report = run_backups(&s, &mirrors, &notifiers, &Cancel::new()).unwrap();
        assert!(report.succeeded(), "round {round}: {report:?}");
    }
    let local = backups_under(&fx.backups());
    assert_eq!(local.len(), 1, "NUM_BACKUPS=1 pruned the older local backup: {local:?}");
    let keys = memory.keys();
    let mut want = vec![local[0].clone(), backup_container::catalog::manifest::record_key(&local[0])];
    want.sort();
    assert_eq!(keys, want, "the backup and its record, pruned the same way");
    assert_eq!(memory.bytes(&local[0]).unwrap(), std::fs::read(fx.backups().join(&local[0])).unwrap());
}

#[test]
fn the_daemon_loop_runs_schedules_and_stops_on_its_token() {
    let Some(fx) = Fixture::start(5) else { return };
    let s = settings(&fx, &[("CRON", "@every 1s default ./backup.sh -s\n")]);
    let shutdown = Cancel::new();
    let token = shutdown.clone();
    let notifiers = Notifiers::from_settings(&s.notify, &s.backup_dir, &shutdown);
    let daemon = std::thread::spawn(move || backup_container::daemon::run(s, notifiers, &token));
    let deadline = Instant::now() + Duration::from_secs(60);
    while backups_under(&fx.backups()).len() < 2 {
        assert!(Instant::now() < deadline, "no backups from the schedule");
        std::thread::sleep(Duration::from_millis(100));
    }
    let stopping = Instant::now();
    shutdown.cancel();
    let exit = daemon.join().unwrap().unwrap();
    assert_eq!(exit, Exit::Success);
    assert!(stopping.elapsed() < Duration::from_secs(15), "{:?}", stopping.elapsed());
}

/// A run reads the backup folder once, however many databases and backups it holds; every
/// step after that works on the run's own view (and retention gives the same result).
#[test]
fn a_run_reads_the_catalog_once_and_prunes_as_before() {
    let Some((fx, s)) = two_databases(2) else { return };
    let memory = Arc::new(MemoryStorage::new(true));
    let mirrors: Vec<Box<dyn Storage>> = vec![Box::new(Shared(memory.clone()))];
    let notifiers = Notifiers::none();
    for round in 1..=4 {
        let before = backup_container::catalog::scans_of(&s.backup_dir);
        let report = run_backups(&s, &mirrors, &notifiers, &Cancel::new()).unwrap();
        assert!(report.succeeded(), "round {round}: {report:?}");
        let scans = backup_container::catalog::scans_of(&s.backup_dir) - before;
        assert_eq!(scans, 1, "round {round}: the folder was walked {scans} times for 2 databases");
    }
    let local = backups_under(&fx.backups());
    for db in ["localhost-app1_", "localhost-app2_"] {
        assert_eq!(local.iter().filter(|f| f.contains(db)).count(), 2, "NUM_BACKUPS=2 for {db}: {local:?}");
    }
    let remote = memory.keys().into_iter().filter(|k| k.ends_with(".sql.gz")).count();
    assert_eq!(remote, 4, "the mirror pruned the same way: {:?}", memory.keys());
}

/// The tidy work is a run's only when it has the folder to itself: with another run holding
/// the folder (shared), an old sidecar stays; alone, the run moves it into the record.
#[test]
fn a_run_tidies_the_folder_only_when_it_has_it_to_itself() {
    let Some((fx, s)) = two_databases(2) else { return };
    let (mirrors, notifiers): (Vec<Box<dyn Storage>>, _) = (vec![], Notifiers::none());
    assert!(run_backups(&s, &mirrors, &notifiers, &Cancel::new()).unwrap().succeeded());
    let local = backups_under(&fx.backups());
    let newest = local.iter().filter(|f| f.contains("localhost-app1_")).max().unwrap().clone();
    let sidecar = fx.backups().join(format!("{newest}.verified"));
    let record = serde_json::json!({"verified_at": "2026-01-01T00:00:00Z", "ok": true, "tables": 1, "rows": 1,
        "schemas": [], "database_size_bytes": 1, "duration_ms": 1, "integrity": "checksum"});
    std::fs::write(&sidecar, record.to_string()).unwrap();
    let other = backup_container::catalog::lock::RunLock::acquire_shared(&s.backup_dir, "another run").unwrap();
    assert!(run_backups(&s, &mirrors, &notifiers, &Cancel::new()).unwrap().succeeded());
    assert!(sidecar.exists(), "another run is working: no tidying");
    drop(other);
    assert!(run_backups(&s, &mirrors, &notifiers, &Cancel::new()).unwrap().succeeded());
    assert!(!sidecar.exists(), "alone: the sidecar moved into the record");
    let moved = backup_container::catalog::load(&s.backup_dir).unwrap();
    let b = moved.iter().find(|b| b.key().as_str() == newest).expect("kept: the newest verified backup");
    assert!(b.verified(), "{:?}", b.manifest);
}

/// Two databases of the fixture's server in one backup.conf, daily retention keeping `keep`.
fn two_databases(keep: u32) -> Option<(Fixture, Settings)> {
    let fx = Fixture::start(10)?;
    let dir = fx.backups().display().to_string();
    let conf = fx.dir.path().join("two.conf");
    std::fs::write(&conf, format!("localhost:{port}/app1\nlocalhost:{port}/app2\n", port = fx.pg.port)).unwrap();
    let keep = keep.to_string();
    let s = Settings::load(
        Env::from_pairs([
            ("BACKUP_DIR", dir.as_str()),
            ("LOCALHOST_USER", "app"),
            ("LOCALHOST_PASSWORD", APP_PASSWORD),
            ("BACKUP_STRATEGY", "daily"),
            ("NUM_BACKUPS", keep.as_str()),
            ("BACKUP_ANOMALY_HOLD", "0"),
            ("TZ", "UTC"),
            ("HEALTH_ADDR", "off"),
        ]),
        Some(&conf),
    )
    .unwrap();
    Some((fx, s))
}
