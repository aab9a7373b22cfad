//! `-r SPEC --at T`: one database as it was at `T`, from its server's point-in-time archive,
//! into the live server. The archive's plan is made before anything is touched (a target it
//! cannot reach is refused, naming what it can); the chain is recovered in a throwaway server
//! under `VERIFY_DIR` (`pitr::recover`); the database is dumped from there by the engine's own
//! dump (roles, the database's settings, the data) straight into the restore path every dump
//! restore takes (`restore::database::restore_into`: beside the target, counted, swapped in);
//! the throwaway goes on every path. It takes neither the backup folder's lock nor the
//! archive's: nightly dumps and the daemon's archiving go on meanwhile.

use std::io::{BufRead, BufReader};

use anyhow::{Context, anyhow};

use crate::config::Settings;
use crate::engine::Engine;
use crate::model::database::{Credentials, Database};
use crate::model::spec::DatabaseSpec;
use crate::pitr::archive::{Store, partial_state};
use crate::pitr::index::{self, Index};
use crate::pitr::layout::Archive;
use crate::pitr::recover::plan::{self, Chosen, Target};
use crate::system::cancel::Cancel;

/// A point in time of one database, planned.
#[derive(Debug)]
pub struct FromArchive {
    /// `host:port` of the archived server.
    pub server: String,
    /// The database read from the recovered cluster (`-f`, else the target's name).
    pub source: String,
    pub target: Target,
    pub chosen: Chosen,
    pub folder: std::path::PathBuf,
    store: Store,
    index: Index,
    /// The mirror whose copy is read (`--remote`): its files streamed as recovery needs them.
    mirror: Option<Mirror>,
    /// The archive's read lock: retention removes nothing while this restore reads it.
    _reading: crate::catalog::lock::RunLock,
    /// The mirror's index, staged (`--remote`): removed after the lock is let go.
    _staged: Option<super::pitr_fetch::Staged>,
}

/// A mirror, shown by its name.
struct Mirror(Box<dyn crate::storage::Storage>);

impl std::fmt::Debug for Mirror {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0.name())
    }
}

/// Plans the restore of `spec` as of `at` (nothing is touched), from the local archive or,
/// with `remote`, from its copy on that mirror (its index staged; the files the plan needs
/// are streamed from it when recovery reads them).
///
/// # Errors
/// The server is not archived here (or on the mirror), `at` does not parse, the archive
/// cannot reach it, or a download fails.
pub fn prepare(
    settings: &Settings,
    spec: &DatabaseSpec,
    filter: Option<&str>,
    at: &str,
    remote: Option<Box<dyn crate::storage::Storage>>,
) -> anyhow::Result<FromArchive> {
    let server = settings.pitr.find(&spec.host, spec.port).ok_or_else(|| {
        anyhow!(
            "{}:{} is not in PITR_SERVERS: no point-in-time archive of it is kept here",
            spec.host,
            spec.port.unwrap_or(5432)
        )
    })?;
    let target = Target::parse(at, &settings.zone).map_err(|e| anyhow!(e))?;
    let (host, port) = (&server.database.spec.host, spec.port.unwrap_or(5432));
    let (archive, staged) = match &remote {
        None => (Archive::new(&settings.backup_dir, host, port), None),
        Some(mirror) => {
            let (archive, staged) = super::pitr_fetch::stage(&settings.backup_dir, mirror.as_ref(), host, port)?;
            (archive, Some(staged))
        }
    };
    if !archive.index().exists() {
        anyhow::bail!("no archive of {} in {} yet (the daemon keeps it)", server.name(), archive.dir.display());
    }
    // Taken before the index is read: what the plan names stays until the restore is done.
    let reading = crate::pitr::retention::reading(&archive)?;
    let (index, _) = index::load(&archive.index())?;
    let chosen =
        plan::choose(&index, partial_state(&archive), target).map_err(|e| anyhow!("{}: {e}", server.name()))?;
    let store = Store::new(archive, settings.compression, settings.encryption.clone());
    Ok(FromArchive {
        server: server.name(),
        source: filter.unwrap_or(&spec.database).to_string(),
        target,
        chosen,
        folder: store.archive.dir.clone(),
        store,
        index,
        mirror: remote.map(Mirror),
        _reading: reading,
        _staged: staged,
    })
}

/// `--pitr-datadir DIR --at T [--pitr-server HOST:PORT]`: the whole cluster recovered to `T`,
/// promoted, shut down cleanly, with the source's configuration back, in `DIR` (missing or
/// empty), to mount as the database's volume.
///
/// # Errors
/// `DIR` is not empty, the server is not archived here (or not named when several are), the
/// archive cannot reach `T`, or the recovery fails (nothing is left in `DIR`).
pub fn datadir(
    settings: &Settings,
    server: Option<&str>,
    dir: &std::path::Path,
    at: &str,
    remote: Option<Box<dyn crate::storage::Storage>>,
    cancel: &Cancel,
) -> anyhow::Result<String> {
    if std::fs::read_dir(dir).is_ok_and(|mut d| d.next().is_some()) {
        anyhow::bail!(
            "{} is not empty: --pitr-datadir writes a whole data directory into an empty folder",
            dir.display()
        );
    }
    let server = match (server, settings.pitr.servers.as_slice()) {
        (Some(text), _) => settings.pitr.find_text(text).map_err(|e| anyhow!("--pitr-server {e}"))?,
        (None, [only]) => only,
        (None, []) => anyhow::bail!("PITR_SERVERS lists no server"),
        (None, _) => anyhow::bail!("PITR_SERVERS lists several servers: name one with --pitr-server HOST:PORT"),
    };
    let from = prepare(settings, &server.database.spec, None, at, remote)?;
    let server = recovered(settings, &from, cancel)?;
    server.keep_data(dir).context("keeping the recovered data directory")?;
    let reached = match from.target {
        Target::Latest => "the newest archived WAL".to_string(),
        Target::Time(t) => settings.zone.local(t).format("%Y-%m-%d %H:%M:%S").to_string(),
    };
    Ok(format!(
        "{} holds the cluster of {} as of {reached} (chain {}, PostgreSQL {}), promoted and shut down cleanly",
        dir.display(),
        from.server,
        from.chosen.chain.last().map_or(0, |b| b.chain),
        from.chosen.chain.last().map_or(0, |b| b.major),
    ))
}

/// `from` recovered in a throwaway server under `VERIFY_DIR`.
fn recovered(
    settings: &Settings,
    from: &FromArchive,
    cancel: &Cancel,
) -> anyhow::Result<Box<dyn crate::engine::Server>> {
    let sources = crate::pitr::recover::Sources {
        store: &from.store,
        mirror: from.mirror.as_ref().map(|m| m.0.as_ref()),
        index: &from.index,
        keys: &settings.keys,
    };
    crate::pitr::recover::recover(settings, sources, &from.chosen, cancel)
        .context("recovering the archive in a throwaway server; the database was not touched")
}

/// Recovers `from` in a throwaway server and gives its database's dump, as it streams, to
/// `load`; returns what `load` returned. The throwaway is stopped and removed before this
/// returns.
///
/// # Errors
/// The recovery failed (nothing was touched), the dump failed, or `load` did.
pub fn with_dump<T>(
    settings: &Settings,
    engine: &dyn Engine,
    from: &FromArchive,
    cancel: &Cancel,
    load: impl FnOnce(&mut (dyn BufRead + Send)) -> anyhow::Result<T>,
) -> anyhow::Result<T> {
    let server = recovered(settings, from, cancel)?;
    let conn = server.conn();
    let db = Database {
        spec: DatabaseSpec {
            engine: crate::model::spec::EngineKind::Postgres,
            typed: true,
            host: conn.host.clone(),
            port: conn.port,
            database: from.source.clone(),
        },
        credentials: Credentials {
            user: conn.user.clone(),
            user_source: "the recovered cluster".into(),
            password: None,
            password_source: None,
        },
        options: Default::default(),
    };
    let (reader, mut writer) = std::io::pipe().context("making a pipe")?;
    std::thread::scope(|scope| {
        let dumper = scope.spawn(move || {
            let dumped = engine.dump(&db, &mut writer, cancel);
            drop(writer);
            dumped
        });
        let mut sql = BufReader::with_capacity(1 << 20, reader);
        let loaded = load(&mut sql);
        drop(sql);
        let dumped = dumper.join().map_err(|_| anyhow!("the dump thread panicked"))?;
        match (loaded, dumped) {
            (Ok(t), Ok(_)) => Ok(t),
            // The load's own error, unless it only saw the dump stop.
            (Err(e), Err(d)) => Err(e.context(format!("dumping {} from the recovered cluster: {d:#}", from.source))),
            (Err(e), Ok(_)) => Err(e),
            (Ok(_), Err(d)) => Err(d.context(format!("dumping {} from the recovered cluster", from.source))),
        }
    })
}
