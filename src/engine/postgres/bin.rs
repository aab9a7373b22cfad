//! Finding PostgreSQL's programs: every installed major, client and server tools apart.
//!
//! The folders are `PG_BIN_DIR` (a `:`-separated list), else every `/usr/lib/postgresql/*/bin`
//! (Debian's and PGDG's layout), else the folders of `pg_dump` and `initdb` on `PATH` (looking
//! through Debian's `pg_wrapper`). Each folder's major comes from running its own tools'
//! `--version`, never from its name: registry packages unpack to `package/native/bin` or
//! `pginstall/bin`. A folder may hold only clients (`pg_dump`, `psql`) or only a server
//! (`initdb`, `pg_ctl`, `postgres`). The engine looks once and keeps the answer (one
//! `--version` per program and folder and process: `engine::Engines`).
//!
//! The rule for a server of major N: dump with the client of major N when installed, else the
//! lowest installed client above N (pg_dump refuses servers newer than itself); verification
//! runs in a server of major N, else the nearest higher one.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::anyhow;

use crate::model::database::EngineOptions;

/// Where Debian installs versioned PostgreSQL binaries.
const VERSIONED_ROOT: &str = "/usr/lib/postgresql";

/// One folder of PostgreSQL programs and the majors its tools report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Folder {
    pub dir: PathBuf,
    /// `pg_dump --version`'s major and text, when the folder has pg_dump and psql.
    pub client: Option<(u32, String)>,
    /// `postgres --version`'s major, when the folder has initdb, pg_ctl and postgres.
    pub server: Option<u32>,
}

/// Every folder found, in the order looked at.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Installed {
    pub folders: Vec<Folder>,
}

impl Installed {
    /// What `options` points at (see the module doc), looked up now.
    pub fn look_up(options: &EngineOptions) -> Installed {
        Installed { folders: candidates(options).iter().map(|d| look(d)).collect() }
    }

    /// Installed client majors, ascending, without repeats.
    pub fn client_majors(&self) -> Vec<u32> {
        let mut m: Vec<u32> = self.folders.iter().filter_map(|f| Some(f.client.as_ref()?.0)).collect();
        m.sort_unstable();
        m.dedup();
        m
    }

    /// Installed server majors, ascending, without repeats.
    pub fn server_majors(&self) -> Vec<u32> {
        let mut m: Vec<u32> = self.folders.iter().filter_map(|f| f.server).collect();
        m.sort_unstable();
        m.dedup();
        m
    }

    /// The client for a server of major `server`: the same major, else the lowest above it.
    ///
    /// # Errors
    /// No installed client is at or above the server's major; the message names both and
    /// what to install.
    pub fn client_for(&self, server: u32) -> anyhow::Result<&Folder> {
        let pick = self
            .folders
            .iter()
            .filter(|f| f.client.as_ref().is_some_and(|(m, _)| *m >= server))
            .min_by_key(|f| f.client.as_ref().map(|(m, _)| *m));
        pick.ok_or_else(|| {
            let have = match self.client_majors().as_slice() {
                [] => "no pg_dump was found".to_string(),
                majors => format!("installed: pg_dump {}", join(majors)),
            };
            anyhow!(
                "no pg_dump can back up a PostgreSQL {server} server ({have}; pg_dump must be at least the server's \
                 major version): install the PostgreSQL {server} client tools or newer, or list their folder in PG_BIN_DIR"
            )
        })
    }

    /// The newest client: for psql sessions, which work with every server we support.
    pub fn newest_client(&self) -> Option<&Folder> {
        self.folders.iter().filter(|f| f.client.is_some()).max_by_key(|f| f.client.as_ref().map(|(m, _)| *m))
    }

    /// The server programs for a throwaway server of `major`: that major, else the nearest
    /// higher one (`None`: the newest installed).
    pub fn server_for(&self, major: Option<u32>) -> Option<(&Folder, u32)> {
        let servers = self.folders.iter().filter_map(|f| Some((f, f.server?)));
        match major {
            Some(m) => servers.filter(|(_, s)| *s >= m).min_by_key(|(_, s)| *s),
            None => servers.max_by_key(|(_, s)| *s),
        }
    }

    /// `13, 15, 18`
    pub fn describe(majors: &[u32]) -> String {
        if majors.is_empty() { "none".into() } else { join(majors) }
    }
}

fn join(majors: &[u32]) -> String {
    majors.iter().map(u32::to_string).collect::<Vec<_>>().join(", ")
}

/// The folders to look at, in order.
fn candidates(options: &EngineOptions) -> Vec<PathBuf> {
    if !options.pg_bin_dirs.is_empty() {
        return options.pg_bin_dirs.clone();
    }
    let mut versioned: Vec<PathBuf> = fs::read_dir(VERSIONED_ROOT)
        .map(|entries| entries.flatten().map(|e| e.path().join("bin")).filter(|p| p.is_dir()).collect())
        .unwrap_or_default();
    versioned.sort();
    if !versioned.is_empty() {
        return versioned;
    }
    // No versioned install: the folders of the programs on PATH (pg_wrapper looked through).
    let mut dirs: Vec<PathBuf> = Vec::new();
    for name in ["pg_dump", "initdb"] {
        if let Some(found) = options.find(&[name], &[])
            && !is_debian_wrapper(&found)
            && let Some(dir) = found.parent()
            && !dirs.iter().any(|d| d == dir)
        {
            dirs.push(dir.to_path_buf());
        }
    }
    dirs
}

/// A folder's tools and their majors.
fn look(dir: &Path) -> Folder {
    let has = |names: &[&str]| names.iter().all(|n| dir.join(n).is_file());
    let version = |tool: &str| -> Option<(u32, String)> {
        let out = Command::new(dir.join(tool)).arg("--version").output().ok()?;
        let text = String::from_utf8_lossy(&out.stdout).trim().to_string();
        out.status.success().then_some(())?;
        Some((parse_major(&text)?, text))
    };
    Folder {
        dir: dir.to_path_buf(),
        client: if has(&["pg_dump", "psql"]) { version("pg_dump") } else { None },
        server: if has(&["initdb", "pg_ctl", "postgres"]) { version("postgres").map(|(m, _)| m) } else { None },
    }
}

/// The major version in `<tool> (PostgreSQL) 15.18 ...` output (9.6.24 gives 9, matching
/// `server_version_num / 10000`).
pub fn parse_major(version_output: &str) -> Option<u32> {
    let word = version_output.split_whitespace().find(|w| w.starts_with(|c: char| c.is_ascii_digit()))?;
    let digits: String = word.chars().take_while(char::is_ascii_digit).collect();
    digits.parse().ok()
}

fn is_debian_wrapper(path: &Path) -> bool {
    fs::canonicalize(path).is_ok_and(|real| real.file_name().is_some_and(|n| n == "pg_wrapper"))
}

impl Installed {
    /// The folder holding `initdb` and `pg_ctl` for a throwaway server of `major` (or the
    /// newest), and its major.
    ///
    /// # Errors
    /// When no folder has a server of that major or newer.
    /// The server programs of exactly `major`: a data directory, a WAL file or a base backup
    /// of one major is read only by that major's programs.
    ///
    /// # Errors
    /// That major is not installed (the message names the installed ones).
    pub fn server_dir_exact(&self, major: u32) -> anyhow::Result<PathBuf> {
        match self.server_dir(Some(major)) {
            Ok((dir, found)) if found == major => Ok(dir),
            _ => Err(anyhow!(
                "this needs the PostgreSQL {major} server programs, which are not installed (installed servers: {}); \
                 install them or list their bin folder in PG_BIN_DIR",
                Installed::describe(&self.server_majors())
            )),
        }
    }

    pub fn server_dir(&self, major: Option<u32>) -> anyhow::Result<(PathBuf, u32)> {
        self.server_for(major).map(|(f, m)| (f.dir.clone(), m)).ok_or_else(|| {
            anyhow!(
                "no PostgreSQL server binaries (initdb, pg_ctl, postgres) were found{}; install the server package or \
                 list its bin folder in PG_BIN_DIR",
                match major {
                    Some(m) => format!(
                        " for PostgreSQL {m} or newer (installed servers: {})",
                        Installed::describe(&self.server_majors())
                    ),
                    None => String::new(),
                }
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn folder(dir: &str, client: Option<u32>, server: Option<u32>) -> Folder {
        Folder { dir: dir.into(), client: client.map(|m| (m, format!("pg_dump (PostgreSQL) {m}.1"))), server }
    }

    #[test]
    fn the_client_of_the_servers_major_else_the_lowest_above() {
        let i = Installed {
            folders: vec![
                folder("/a", Some(18), Some(18)),
                folder("/b", Some(15), Some(15)),
                folder("/c", None, Some(13)),
                folder("/d", Some(16), None),
            ],
        };
        assert_eq!(i.client_for(15).unwrap().dir, Path::new("/b"));
        assert_eq!(i.client_for(13).unwrap().dir, Path::new("/b"), "no 13 client: the lowest above");
        assert_eq!(i.client_for(17).unwrap().dir, Path::new("/a"));
        let e = i.client_for(19).unwrap_err().to_string();
        assert!(e.contains("PostgreSQL 19 server") && e.contains("installed: pg_dump 15, 16, 18"), "{e}");
        assert_eq!(i.newest_client().unwrap().dir, Path::new("/a"));
        assert_eq!(i.client_majors(), [15, 16, 18]);
        assert_eq!(i.server_majors(), [13, 15, 18]);
        assert_eq!(i.server_for(Some(14)).map(|(f, m)| (f.dir.clone(), m)), Some(("/b".into(), 15)));
        assert_eq!(i.server_for(Some(13)).map(|(_, m)| m), Some(13));
        assert_eq!(i.server_for(None).map(|(_, m)| m), Some(18));
        assert_eq!(i.server_for(Some(19)), None);
    }

    #[test]
    fn majors_come_from_the_tools_not_the_folder_name() {
        let dir = tempfile::tempdir().unwrap();
        let bin = dir.path().join("pginstall/bin");
        fs::create_dir_all(&bin).unwrap();
        for (tool, text) in [("pg_dump", "pg_dump (PostgreSQL) 17.2"), ("psql", "psql (PostgreSQL) 17.2")] {
            let p = bin.join(tool);
            fs::write(&p, format!("#!/bin/sh\necho '{text}'\n")).unwrap();
            use std::os::unix::fs::PermissionsExt;
            fs::set_permissions(&p, fs::Permissions::from_mode(0o755)).unwrap();
        }
        let f = look(&bin);
        assert_eq!((f.client.map(|c| c.0), f.server), (Some(17), None), "clients only");
        assert_eq!(parse_major("postgres (PostgreSQL) 9.6.24"), Some(9));
    }

    #[test]
    fn configured_folders_are_used_in_order_and_only_link_to_pg_wrapper_is_the_wrapper() {
        let o = EngineOptions { pg_bin_dirs: vec!["/x/bin".into(), "/y/bin".into()], ..Default::default() };
        assert_eq!(candidates(&o), [PathBuf::from("/x/bin"), PathBuf::from("/y/bin")]);
        let dir = tempfile::tempdir().unwrap();
        let wrapper = dir.path().join("pg_wrapper");
        fs::write(&wrapper, "#!/usr/bin/perl\n").unwrap();
        std::os::unix::fs::symlink(&wrapper, dir.path().join("psql")).unwrap();
        fs::write(dir.path().join("pg_dump"), "").unwrap();
        assert!(is_debian_wrapper(&dir.path().join("psql")));
        assert!(!is_debian_wrapper(&dir.path().join("pg_dump")));
    }
}
