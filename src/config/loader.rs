//! Where a setting's value comes from: the environment, a `<NAME>_FILE` named there, then
//! backup.toml (and its `*_FILE` keys). Records each value's source for `-c`, and collects
//! every problem instead of stopping at the first.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::time::Duration;

use super::Env;
use crate::schedule::parse_duration;

pub(super) struct Loader<'a> {
    pub(super) env: &'a Env,
    /// backup.toml values: variable → (value, source).
    layer: BTreeMap<String, (String, String)>,
    pub(super) errors: RefCell<Vec<String>>,
    /// Where each non-default value came from (for `-c`).
    pub(super) sources: RefCell<BTreeMap<String, String>>,
}

impl<'a> Loader<'a> {
    pub(super) fn new(env: &'a Env, layer: BTreeMap<String, (String, String)>, errors: Vec<String>) -> Loader<'a> {
        Loader { env, layer, errors: RefCell::new(errors), sources: Default::default() }
    }

    pub(super) fn error(&self, message: String) {
        self.errors.borrow_mut().push(message);
    }

    /// The value of `name`: the environment, then `<name>_FILE` (a file's content, for mounted
    /// secrets), then backup.toml (and its `<name>_FILE`). Records the source.
    pub(super) fn text(&self, name: &str) -> Option<String> {
        let file_var = format!("{name}_FILE");
        let found = if let Some(v) = self.env.get(name) {
            Some((v.to_string(), "environment".to_string()))
        } else if let Some(path) = self.env.get(&file_var) {
            self.read_secret(path, &format!("environment {file_var}")).map(|v| (v, format!("file {path} ({file_var})")))
        } else if let Some((v, src)) = self.layer.get(name) {
            Some((v.clone(), src.clone()))
        } else if let Some((path, src)) = self.layer.get(&file_var) {
            self.read_secret(path, src).map(|v| (v, format!("file {path} ({src})")))
        } else {
            None
        };
        found.map(|(value, source)| {
            self.sources.borrow_mut().insert(name.to_string(), source);
            value
        })
    }

    pub(super) fn read_secret(&self, path: &str, source: &str) -> Option<String> {
        match std::fs::read_to_string(path) {
            Ok(v) => Some(v.trim_end_matches(['\n', '\r']).to_string()).filter(|v| !v.is_empty()),
            Err(e) => {
                self.error(format!("{source}: cannot read {path}: {e}"));
                None
            }
        }
    }

    /// Where `name`'s value came from, for error messages.
    pub(super) fn origin(&self, name: &str) -> String {
        self.sources.borrow().get(name).cloned().unwrap_or_else(|| "environment".into())
    }

    pub(super) fn int(&self, name: &str, default: i64) -> i64 {
        match self.text(name) {
            None => default,
            Some(v) => v.trim().parse().unwrap_or_else(|_| {
                self.error(format!("{}: {name}=\"{v}\" is not a whole number", self.origin(name)));
                default
            }),
        }
    }

    /// `1`, `true`, `yes`, `on` (any case) are true; unset or anything else is false.
    pub(super) fn flag(&self, name: &str) -> bool {
        self.text(name).is_some_and(|v| matches!(v.to_ascii_lowercase().as_str(), "1" | "true" | "yes" | "on"))
    }

    /// A strict boolean: `true`/`false` (also `1`/`0`, `yes`/`no`, `on`/`off`, any case);
    /// anything else is an error naming the variable.
    pub(super) fn boolean(&self, name: &str, default: bool) -> bool {
        let Some(v) = self.text(name) else { return default };
        match v.trim().to_ascii_lowercase().as_str() {
            "true" | "1" | "yes" | "on" => true,
            "false" | "0" | "no" | "off" => false,
            _ => {
                self.error(format!("{}: {name}=\"{v}\" is not a boolean (use true or false)", self.origin(name)));
                default
            }
        }
    }

    pub(super) fn duration(&self, name: &str, default: Duration) -> Duration {
        match self.text(name) {
            None => default,
            Some(text) => parse_duration(&text).unwrap_or_else(|e| {
                self.error(format!("{}: {name}: {e}", self.origin(name)));
                default
            }),
        }
    }
}
