//! Finding PostgreSQL's programs: `PG_BIN_DIR` when set, else `PATH`; Debian's wrapper is
//! looked through.
//!
//! On Debian and Ubuntu (and images built from the PGDG packages) `/usr/bin/psql`,
//! `pg_dump` and friends are symlinks to `pg_wrapper`, a Perl script that picks a version
//! and then runs `/usr/lib/postgresql/<version>/bin/<tool>`. Starting Perl costs 60–90 ms
//! per call, a large share of a short query. With `-h` on the command line (we always pass
//! it) the wrapper takes the newest installed version that has the tool, so we do the same
//! and run that binary directly.

use std::fs;
use std::path::{Path, PathBuf};

use anyhow::anyhow;

use crate::database::EngineOptions;

/// Where Debian installs versioned PostgreSQL binaries.
const VERSIONED_ROOT: &str = "/usr/lib/postgresql";

/// The program to run for a client tool such as `psql` or `pg_dump`.
pub fn client_tool(options: &EngineOptions, name: &str) -> PathBuf {
    if let Some(dir) = &options.pg_bin_dir {
        return dir.join(name);
    }
    match options.find(&[name], &[]) {
        Some(found) if is_debian_wrapper(&found) => newest_versioned(Path::new(VERSIONED_ROOT), name).unwrap_or(found),
        Some(found) => found,
        // Spawning the bare name fails with an error that names it.
        None => PathBuf::from(name),
    }
}

/// The folder holding `initdb` and `pg_ctl`: `PG_BIN_DIR`, else `PATH`, else the newest
/// `/usr/lib/postgresql/*/bin` (Debian keeps server binaries off `PATH`).
///
/// # Errors
/// When no folder has both programs.
pub fn server_bin_dir(options: &EngineOptions) -> anyhow::Result<PathBuf> {
    if let Some(dir) = &options.pg_bin_dir {
        return Ok(dir.to_path_buf());
    }
    if let Some(dir) = options.find(&["initdb"], &[]).and_then(|initdb| initdb.parent().map(Path::to_path_buf))
        && dir.join("pg_ctl").is_file()
    {
        return Ok(dir);
    }
    newest_versioned(Path::new(VERSIONED_ROOT), "initdb").and_then(|p| p.parent().map(Path::to_path_buf)).ok_or_else(
        || {
            anyhow!(
                "PostgreSQL server binaries (initdb, pg_ctl) not found; install the server package or set PG_BIN_DIR"
            )
        },
    )
}

fn is_debian_wrapper(path: &Path) -> bool {
    fs::canonicalize(path).is_ok_and(|real| real.file_name().is_some_and(|n| n == "pg_wrapper"))
}

/// `<root>/<version>/bin/<name>` for the highest version that has it ("9.6" < "10" < "15").
fn newest_versioned(root: &Path, name: &str) -> Option<PathBuf> {
    let version = |s: &str| -> Option<(u32, u32)> {
        let mut parts = s.splitn(2, '.');
        Some((parts.next()?.parse().ok()?, parts.next().map_or(Some(0), |m| m.parse().ok())?))
    };
    fs::read_dir(root)
        .ok()?
        .flatten()
        .filter_map(|e| Some((version(e.file_name().to_str()?)?, e.path().join("bin").join(name))))
        .filter(|(_, tool)| tool.is_file())
        .max_by_key(|(v, _)| *v)
        .map(|(_, tool)| tool)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn newest_version_with_the_tool_wins() {
        let root = tempfile::tempdir().unwrap();
        for (version, tools) in
            [("9.6", &["psql"][..]), ("10", &["psql", "pg_dump"]), ("15", &["pg_dump"]), ("x", &["psql"])]
        {
            let bin = root.path().join(version).join("bin");
            fs::create_dir_all(&bin).unwrap();
            for t in tools {
                fs::write(bin.join(t), "").unwrap();
            }
        }
        assert_eq!(newest_versioned(root.path(), "psql").unwrap(), root.path().join("10/bin/psql"));
        assert_eq!(newest_versioned(root.path(), "pg_dump").unwrap(), root.path().join("15/bin/pg_dump"));
        assert_eq!(newest_versioned(root.path(), "initdb"), None);
    }

    #[test]
    fn only_a_link_to_pg_wrapper_counts_as_the_wrapper() {
        let dir = tempfile::tempdir().unwrap();
        let wrapper = dir.path().join("pg_wrapper");
        fs::write(&wrapper, "#!/usr/bin/perl\n").unwrap();
        std::os::unix::fs::symlink(&wrapper, dir.path().join("psql")).unwrap();
        fs::write(dir.path().join("pg_dump"), "").unwrap();
        assert!(is_debian_wrapper(&dir.path().join("psql")));
        assert!(!is_debian_wrapper(&dir.path().join("pg_dump")));
    }

    #[test]
    fn a_configured_folder_is_used_as_is_and_path_is_the_loaded_one() {
        let configured = EngineOptions { pg_bin_dir: Some(PathBuf::from("/opt/pg/bin")), ..Default::default() };
        assert_eq!(client_tool(&configured, "psql"), PathBuf::from("/opt/pg/bin/psql"));
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("pg_dump"), "").unwrap();
        let on_path = EngineOptions { search_path: vec![dir.path().to_path_buf()], ..Default::default() };
        assert_eq!(client_tool(&on_path, "pg_dump"), dir.path().join("pg_dump"));
        assert_eq!(client_tool(&EngineOptions::default(), "pg_dump"), PathBuf::from("pg_dump"), "nothing on PATH");
    }
}
