//! backup-container: a containerized database backup daemon, compatible with the bash
//! `backup-container` (same `backup.conf`, env vars, flags, file layout and webhook), with
//! streamed, checksummed, atomic backups that never fail silently, and restores that refuse
//! incomplete dumps and never destroy the target.
//!
//! ```text
//! env + backup.conf + backup.toml ─► config::Settings (once) ─► cli::dispatch ─► mode
//!                                                                     │
//!   backup::run_backups: lock, remove dead partials, then per database   ▼
//!     backup::Run::backup_database:  dump ─► copy ─► prune ─► notify   (each inside its hooks)
//!       dump  = engine.dump ─stream─► scan ─► compress ─► sha256 ─► <name>.in_progress ─► fsync ─► rename
//!       copy  = mirror::mirror_database (Storage: FTPS, S3)
//!       prune = retention::plan (pure) ─► prune::apply(Storage: local folder)
//!   ─► RunReport ─► summary log lines ─► exit code
//! ```
//!
//! # Layout
//! Folders follow the pipeline, lower ones never naming higher ones (docs/ARCHITECTURE.md has
//! the same list with what each module owns; `tests/module_map.rs` keeps the two true):
//! - `model/`: leaf types: `database`, `error`, `finding`, `human`, `policy`, `run`, `safe_name`, `schedule`, `secret`, `severity`, `shard`, `spec`, `stats`, `timezone`
//! - `system/`: the process and its OS: `cancel`, `command`, `logging`, `prompt`, `usage`, `workers`
//! - `net/`: HTTP client and retries: `backoff`, `http_client`
//! - `stream/`: the bytes of a backup: `compress`, `crypt`, `progress`, `scan`
//! - `engine/`: database kinds and their primitives: `load`, `mariadb`, `postgres`, `process`, `server`
//! - `catalog/`: the backup folder: `anomaly`, `checksum`, `durable`, `layout`, `lock`, `manifest`, `retention`, `selection`, `tidy`
//! - `config/`: settings read once: `backup_conf`, `credentials`, `env`, `hooks`, `loader`, `never_panics`, `pitr`, `restore`, `sections`, `toml_file`
//! - `notify/`: events, queued senders: `event`, `missed`, `pagerduty`, `queue`, `webhook`
//! - `fleet/`: `host/*` expansion and the coverage audit: `audit`
//! - `storage/`: where backups are kept: `conformance`, `ftps`, `ftps_tls`, `local`, `memory`, `prune`, `s3`, `s3_lock`
//! - `pitr/`: point-in-time recovery: `archive`, `archiver`, `base`, `drill`, `index`, `layout`, `manifest`, `mirror`, `preflight`, `recover`, `report`, `retention`, `slot`, `source`, `status`, `stream`, `wal`
//! - `backup/`: one run, the per-database pipeline: `hooks`, `jobs`, `mirror`, `pipeline`, `report`, `steps`, `view`
//! - `restore/`: reading backups back: `database`, `fetch`, `open`, `pitr`, `pitr_fetch`, `pool`, `run`, `verify`
//! - `check/`: `--check`: `site`
//! - `daemon/`: the long-running process: `archive_card`, `evidence`, `gzip`, `http`, `jobs`, `page`, `state`
//! - `cli/`: dispatch and one module per mode: `check`, `flags`, `list`, `mode`, `once`, `prune`, `restore`, `show_config`, `verify`

pub mod backup;
pub mod catalog;
pub mod check;
pub mod cli;
pub mod config;
pub mod daemon;
pub mod engine;
pub mod fleet;
pub mod model;
pub mod net;
pub mod notify;
pub mod pitr;
pub mod restore;
pub mod storage;
pub mod stream;
pub mod system;
