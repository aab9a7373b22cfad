//! Reading backups back: verification runs and restore drills, and fetching a backup from a mirror.

pub mod fetch;
pub mod verify;
