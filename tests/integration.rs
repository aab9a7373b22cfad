//! One integration-test binary (ripgrep style): the real `backup-container` binary against
//! real servers started by `harness`.

mod harness;

mod backup;
mod bash_compat;
mod check;
mod cli;
mod config_examples;
mod daemon;
mod data_dir_server;
mod db_settings;
mod encryption;
mod evidence;
mod fleet;
mod fleet_faults;
mod ftps_modes;
mod health_listener;
mod hooks;
mod in_process;
mod loader;
mod locks;
mod mariadb;
mod mirror;
mod module_graph;
mod module_map;
mod names;
mod notify;
mod object_lock;
mod parallel_restore;
mod pitr_base;
mod pitr_busy;
mod pitr_check;
mod pitr_daemon;
mod pitr_mirror;
mod pitr_restore;
mod pitr_stream;
mod progress_line;
mod prune;
mod restore;
mod restore_safety;
mod server_names;
mod status_page;
mod storage_conformance;
mod verify;
mod versions;
mod wide_schema;
