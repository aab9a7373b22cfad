//! Leaf types every layer uses: what a database is, names, secrets, policies, schedules, time zones, exit codes.

pub mod database;
pub mod error;
pub mod finding;
pub mod human;
pub mod policy;
pub mod run;
pub mod safe_name;
pub mod schedule;
pub mod secret;
pub mod severity;
pub mod shard;
pub mod spec;
pub mod stats;
pub mod timezone;
