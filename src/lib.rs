//! backup-container: a containerized database backup daemon, compatible with the bash
//! `backup-container` (same `backup.conf`, env vars, flags, file layout and webhook), with
//! streamed, checksummed, atomic backups that never fail silently, and restores that refuse
//! incomplete dumps and never destroy the target.
//!
//! ```text
//! env + backup.conf + backup.toml ─► config::Settings (once) ─► cmd::dispatch ─► mode
//!                                                                     │
//!   run::run_backups: lock, remove dead partials, then per database   ▼
//!     Run::backup_database:  dump ─► copy ─► prune ─► notify   (each inside its hooks)
//!       dump  = engine.dump ─stream─► scan ─► compress ─► sha256 ─► <name>.in_progress ─► fsync ─► rename
//!       copy  = mirror::mirror_database (Storage: FTPS, S3)
//!       prune = retention::plan (pure) ─► prune::apply(Storage: local folder)
//!   ─► RunReport ─► summary log lines ─► exit code
//! ```
//!
//! # Layout
//! - `cli`, `mode`: flags and upstream's mode precedence. `cmd`: one module per CLI mode
//!   (printing lives there only). `daemon`: scheduler loop, jobs, health state, listener.
//! - `config`: the loader (env, `*_FILE`, backup.toml), backup.conf parser, hook data,
//!   credentials, validated `Settings`.
//! - Leaf types: `spec` (`[type=]host[:port]/db`), `database` (database, credentials,
//!   connection, engine options), `secret`, `policy`, `severity`, `schedule`, `timezone`.
//! - `engine`: the `Engine` trait, PostgreSQL, MariaDB, child processes, load accounting.
//! - `scan`: the dump stream scanner (completeness, rows per table).
//! - `run` (one run), `pipeline` (one dump into a file), `compress`, `checksum`, `durable`.
//! - `safe_name`: a database name as a file-name part (reversible), escaped for terminals;
//!   the one join that cannot leave its root.
//! - `layout` (names and folders), `catalog` (files on disk), `retention` (pure plan),
//!   `prune` (applying a plan to a `Storage`), `lock`.
//! - `storage`: the `Storage` trait — local folder, FTPS, S3, memory — with retries and a
//!   conformance suite; `mirror`: the copy step.
//! - `verify`, `verification`, `selection`: verification runs, their records, picking a backup.
//! - `notify`: events and notifiers; `http_client`, `backoff`: the shared HTTP client and retry.
//! - `hooks` (running hooks), `command` (user commands), `cancel` (shutdown token and waits),
//!   `error` (exit codes), `progress`, `prompt`, `human`, `logging`.

pub mod anomaly;
pub mod backoff;
pub mod cancel;
pub mod catalog;
pub mod check;
pub mod checksum;
pub mod cli;
pub mod cmd;
pub mod command;
pub mod compress;
pub mod config;
pub mod crypt;
pub mod daemon;
pub mod database;
pub mod durable;
pub mod engine;
pub mod error;
pub mod fetch;
pub mod finding;
pub mod fleet;
pub mod fleet_audit;
pub mod hooks;
pub mod http_client;
pub mod human;
pub mod layout;
pub mod lock;
pub mod logging;
pub mod manifest;
pub mod mirror;
pub mod mode;
pub mod notify;
pub mod pipeline;
pub mod policy;
pub mod progress;
pub mod prompt;
pub mod prune;
pub mod retention;
pub mod run;
pub mod safe_name;
pub mod scan;
pub mod schedule;
pub mod secret;
pub mod selection;
pub mod severity;
pub mod shard;
pub mod spec;
pub mod storage;
pub mod timezone;
pub mod verify;
pub mod workers;
