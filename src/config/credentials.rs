//! Database credentials: `<HOST>_USER`/`<HOST>_PASSWORD` (host upper-cased, `-` and `.` → `_`),
//! then `DATABASE_USER`/`DATABASE_PASSWORD`, then `POSTGRESQL_USER`/`POSTGRESQL_PASSWORD`;
//! each variable also as `<NAME>_FILE` (a mounted Kubernetes or Vault secret); backup.toml can
//! name the user, other variables, or a password file per database. Empty values count as
//! unset, as upstream.
//!
//! The variables are taken from the environment once, at load. A password given as a file is
//! checked at load (an unreadable file is a configuration error, never a silent fallback to
//! the next variable) and read again each time it is used (`PasswordSource::read`), so a
//! long-running daemon picks up a rotated secret.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;

use super::env::{self, Env};
use super::toml_file::TomlDatabase;
use crate::model::database::{Credentials, PasswordSource};
use crate::model::secret::Secret;
use crate::model::spec::DatabaseSpec;

/// The credential variables of the environment, taken at load.
#[derive(Clone, Default)]
pub struct CredentialVars {
    vars: BTreeMap<String, String>,
    overrides: HashMap<String, TomlDatabase>,
}

/// Values are secrets: `Debug` shows the count only.
impl std::fmt::Debug for CredentialVars {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "CredentialVars({} variables)", self.vars.len())
    }
}

impl CredentialVars {
    /// Keeps the variables that can hold credentials (`*_USER`, `*_PASSWORD` and their
    /// `_FILE` twins, plus those backup.toml names).
    pub fn capture(env: &Env, overrides: HashMap<String, TomlDatabase>) -> CredentialVars {
        let named: Vec<String> =
            overrides.values().flat_map(|o| [o.user_env.clone(), o.password_env.clone()]).flatten().collect();
        let wanted = |k: &str| {
            let base = k.strip_suffix("_FILE").unwrap_or(k);
            base.ends_with("_USER") || base.ends_with("_PASSWORD") || named.iter().any(|n| n == base)
        };
        let vars =
            env.names().filter(|k| wanted(k)).filter_map(|k| Some((k.to_string(), env.get(k)?.to_string()))).collect();
        CredentialVars { vars, overrides }
    }

    /// The credentials for `spec`, and the problems found on the way (unreadable files).
    pub fn resolve(&self, spec: &DatabaseSpec) -> (Credentials, Vec<String>) {
        let prefix = spec.credential_prefix();
        let over = self.overrides.get(&spec.core_name());
        let mut user_vars = vec![format!("{prefix}_USER"), env::DATABASE_USER.into(), env::POSTGRESQL_USER.into()];
        let mut password_vars =
            vec![format!("{prefix}_PASSWORD"), env::DATABASE_PASSWORD.into(), env::POSTGRESQL_PASSWORD.into()];
        if let Some(v) = over.and_then(|o| o.user_env.clone()) {
            user_vars.insert(0, v);
        }
        if let Some(v) = over.and_then(|o| o.password_env.clone()) {
            password_vars.insert(0, v);
        }
        let mut problems = Vec::new();
        let user = match over.and_then(|o| o.user.clone()) {
            Some(u) => Some((format!("backup.toml ({})", over.map(|o| o.source.as_str()).unwrap_or_default()), u)),
            None => user_vars.iter().find_map(|v| self.lookup(v, &mut problems)).map(|(var, source)| {
                // A user name is not a secret and is not rotated: read it now.
                let text = source.read().map(|s| s.expose().to_string()).unwrap_or_default();
                (var, text)
            }),
        };
        let password = match over.and_then(|o| o.password_file.clone()) {
            Some(path) => {
                let source = PasswordSource::File(path.clone());
                if let Err(e) = source.read() {
                    problems.push(format!("database {spec}: {e:#}"));
                }
                Some((format!("file {}", path.display()), source))
            }
            None => password_vars.iter().find_map(|v| self.lookup(v, &mut problems)),
        };
        let credentials = Credentials {
            user_source: match &user {
                Some((var, _)) => var.clone(),
                None => user_vars.join(", "),
            },
            user: user.map(|(_, u)| u),
            password_source: password.as_ref().map(|(var, _)| var.clone()),
            password: password.map(|(_, p)| p),
        };
        (credentials, problems)
    }

    /// The replication role for `spec`'s server: `<HOST>_REPLICATION_USER` and
    /// `<HOST>_REPLICATION_PASSWORD` (or their `_FILE` twins), when the user is set.
    pub fn replication(&self, spec: &DatabaseSpec) -> (Option<Credentials>, Vec<String>) {
        let prefix = spec.credential_prefix();
        let (user_var, password_var) = (format!("{prefix}_REPLICATION_USER"), format!("{prefix}_REPLICATION_PASSWORD"));
        let mut problems = Vec::new();
        let Some((user_source, user)) = self.lookup(&user_var, &mut problems) else { return (None, problems) };
        let password = self.lookup(&password_var, &mut problems);
        let credentials = Credentials {
            user: user.read().ok().map(|s| s.expose().to_string()),
            user_source,
            password_source: password.as_ref().map(|(var, _)| var.clone()),
            password: password.map(|(_, p)| p),
        };
        (Some(credentials), problems)
    }

    /// `var` itself, or the file its `_FILE` twin names (when the file is not empty).
    fn lookup(&self, var: &str, problems: &mut Vec<String>) -> Option<(String, PasswordSource)> {
        if let Some(v) = self.vars.get(var).filter(|v| !v.is_empty()) {
            return Some((var.to_string(), PasswordSource::Value(Secret::new(v.clone()))));
        }
        let file_var = format!("{var}_FILE");
        let path = PathBuf::from(self.vars.get(&file_var).filter(|v| !v.is_empty())?);
        let source = PasswordSource::File(path);
        match source.read() {
            Ok(s) if s.expose().is_empty() => None,
            Ok(_) => Some((file_var, source)),
            Err(e) => {
                problems.push(format!("environment: {file_var}: {e:#}"));
                None
            }
        }
    }
}
