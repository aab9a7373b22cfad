//! The two sections of a PostgreSQL backup: the `pg_dumpall --roles-only` output (when
//! present, it comes first, in our files and in the bash version's) and the `pg_dump` output.
//!
//! Pure stream handling: split the roles section off the front, and make its `CREATE ROLE`
//! statements tolerate roles that already exist (upstream issue #132).

use std::io::{self, BufRead};

const HEADER: &str = "-- PostgreSQL database cluster dump";
const FOOTER: &str = "-- PostgreSQL database cluster dump complete";
/// A roles section larger than this is not a roles section.
const MAX_ROLES_BYTES: usize = 64 << 20;

/// The front of a backup stream, split.
#[derive(Debug, PartialEq, Eq)]
pub struct Split {
    /// The roles section, when the stream starts with one.
    pub roles: Option<String>,
    /// Bytes read while looking that belong to the database section (replay them first).
    pub replay: Vec<u8>,
}

/// Reads the roles section off the front of `sql`, leaving the database section unread
/// (except for `replay`).
///
/// # Errors
/// Read errors, or a roles section that never ends or is implausibly large.
pub fn split_roles(sql: &mut dyn BufRead) -> io::Result<Split> {
    let mut first = String::new();
    sql.read_line(&mut first)?;
    if first.trim_end() != "--" {
        return Ok(Split { roles: None, replay: first.into_bytes() });
    }
    let mut second = String::new();
    sql.read_line(&mut second)?;
    if second.trim_end() != HEADER {
        return Ok(Split { roles: None, replay: [first, second].concat().into_bytes() });
    }
    let mut roles = [first, second].concat();
    loop {
        let mut line = String::new();
        if sql.read_line(&mut line)? == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the roles section of the backup never ends (truncated file?)",
            ));
        }
        let done = line.trim_end() == FOOTER;
        roles.push_str(&line);
        if roles.len() > MAX_ROLES_BYTES {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "the roles section of the backup is larger than 64 MiB",
            ));
        }
        if done {
            break;
        }
    }
    Ok(Split { roles: Some(roles), replay: Vec::new() })
}

/// Rewrites each `CREATE ROLE name;` line so that an existing role is kept instead of being an
/// error; everything else (the `ALTER ROLE` lines, grants, settings) is left as it is.
pub fn tolerate_existing_roles(roles: &str) -> String {
    let mut out = String::with_capacity(roles.len() + 256);
    for line in roles.split_inclusive('\n') {
        let body = line.trim_end();
        match body.strip_prefix("CREATE ROLE ").and_then(|r| r.strip_suffix(';')) {
            Some(name) if !name.contains('\n') => {
                out.push_str(&format!(
                    "DO $bc$ BEGIN CREATE ROLE {name}; EXCEPTION WHEN duplicate_object THEN NULL; END $bc$;\n"
                ));
            }
            _ => out.push_str(line),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const ROLES: &str = "--\n-- PostgreSQL database cluster dump\n--\n\n\\restrict abc\n\nSET default_transaction_read_only = off;\n\nCREATE ROLE app;\nALTER ROLE app WITH LOGIN;\nCREATE ROLE \"odd name\";\n\n\\unrestrict abc\n\n--\n-- PostgreSQL database cluster dump complete\n--\n\n";
    const DUMP: &str = "--\n-- PostgreSQL database dump\n--\n\nCREATE TABLE t (id int);\n";

    #[test]
    fn splits_roles_first_files() {
        let text = format!("{ROLES}{DUMP}");
        let mut reader = text.as_bytes();
        let split = split_roles(&mut reader).unwrap();
        let roles = split.roles.unwrap();
        assert!(roles.starts_with("--\n-- PostgreSQL database cluster dump\n"));
        assert!(roles.ends_with("-- PostgreSQL database cluster dump complete\n"));
        let rest = [split.replay, reader.to_vec()].concat();
        assert_eq!(String::from_utf8(rest).unwrap(), format!("--\n\n{DUMP}"));
    }

    #[test]
    fn files_without_roles_pass_through_whole() {
        let mut reader = DUMP.as_bytes();
        let split = split_roles(&mut reader).unwrap();
        assert_eq!(split.roles, None);
        let rest = [split.replay, reader.to_vec()].concat();
        assert_eq!(String::from_utf8(rest).unwrap(), DUMP);
        let mut reader = "SELECT 1;\n".as_bytes();
        assert_eq!(split_roles(&mut reader).unwrap().replay, b"SELECT 1;\n");
    }

    #[test]
    fn unterminated_roles_section_is_an_error() {
        let mut reader = "--\n-- PostgreSQL database cluster dump\n--\nCREATE ROLE app;\n".as_bytes();
        assert!(split_roles(&mut reader).is_err());
    }

    #[test]
    fn create_role_becomes_tolerant() {
        let out = tolerate_existing_roles(ROLES);
        assert!(out.contains("DO $bc$ BEGIN CREATE ROLE app; EXCEPTION WHEN duplicate_object THEN NULL; END $bc$;\n"));
        assert!(out.contains("CREATE ROLE \"odd name\"; EXCEPTION"));
        assert!(out.contains("ALTER ROLE app WITH LOGIN;\n"));
        assert!(!out.lines().any(|l| l.starts_with("CREATE ROLE")));
    }
}
