//! backup-container: a containerized database backup daemon, compatible with the bash
//! `backup-container` (same `backup.conf`, env vars, flags, file layout and webhook), with
//! streamed, checksummed, atomic backups that never fail silently.
//!
//! ```text
//! env + backup.conf ─► config::Settings ─► cmd::dispatch ─► mode (once | prune | list | ...)
//!                                                  │
//!      run::run_backups: lock, then per database:  ▼
//!        engine.dump ─stream─► compress ─► checksum ─► <name>.in_progress ─► fsync ─► rename
//!        ─► <name>.sha256 ─► retention::plan + catalog::delete_backup ─► RunReport ─► exit code
//! ```
//!
//! # Layout
//! - `cli`, `mode`: flags and upstream's mode precedence.
//! - `config`: env snapshot, backup.conf parser, `Secret`, validated `Settings`.
//! - `spec`: `[type=]host[:port]/db`. `schedule`, `timezone`: cron/DST and `TZ`.
//! - `engine`: the `Engine` trait, PostgreSQL, child-process handling.
//! - `pipeline` (one database), `run` (one run), `compress`, `checksum`, `durable` (atomic files).
//! - `layout` (names and folders), `catalog` (files on disk), `retention` (pure plan), `lock`.
//! - `cmd`: one module per CLI mode. `cancel`: shutdown token. `error`: exit codes.

pub mod backoff;
pub mod cancel;
pub mod catalog;
pub mod checksum;
pub mod cli;
pub mod cmd;
pub mod command;
pub mod compress;
pub mod config;
pub mod daemon;
pub mod database;
pub mod durable;
pub mod engine;
pub mod error;
pub mod hooks;
pub mod http_client;
pub mod human;
pub mod layout;
pub mod lock;
pub mod logging;
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
pub mod scan;
pub mod schedule;
pub mod secret;
pub mod selection;
pub mod severity;
pub mod spec;
pub mod storage;
pub mod timezone;
pub mod verification;
pub mod verify;
