//! Reading backups back: one path that opens a checked backup, the restore and verify
//! workflows written once over the engines' primitives, the throwaway servers a verification
//! run shares, restores (`-r`), verification runs and drills, and fetching a backup from a
//! mirror.

pub mod database;
pub mod fetch;
pub mod open;
pub mod pitr;
pub mod pitr_fetch;
pub mod pool;
pub mod run;
pub mod verify;
