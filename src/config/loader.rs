//! Where a setting's value comes from: the environment, a `<NAME>_FILE` named there, then
//! backup.toml (and its `*_FILE` keys). Records each value's source for `-c`, and collects
//! every problem instead of stopping at the first.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::time::Duration;

use super::Env;
use crate::model::schedule::parse_duration;

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

    /// A whole number within `min..=max` (an error names the range).
    pub(super) fn int_in(&self, name: &str, default: i64, min: i64, max: i64) -> i64 {
        match self.text(name) {
            None => default,
            Some(v) => match v.trim().parse::<i64>() {
                Ok(n) if (min..=max).contains(&n) => n,
                Ok(_) => {
                    self.error(format!("{}: {name}=\"{v}\" is out of range ({min} to {max})", self.origin(name)));
                    default
                }
                Err(_) => {
                    self.error(format!("{}: {name}=\"{v}\" is not a whole number", self.origin(name)));
                    default
                }
            },
        }
    }

    /// A number within `min..=max`, finite.
    pub(super) fn float_in(&self, name: &str, default: f64, min: f64, max: f64) -> f64 {
        match self.text(name) {
            None => default,
            Some(v) => match v.trim().parse::<f64>() {
                Ok(f) if f.is_finite() && (min..=max).contains(&f) => f,
                _ => {
                    self.error(format!("{}: {name}=\"{v}\" must be a number from {min} to {max}", self.origin(name)));
                    default
                }
            },
        }
    }

    /// One of `choices` (case-insensitive); anything else is an error with a suggestion.
    pub(super) fn choice(&self, name: &str, choices: &[&'static str]) -> Option<&'static str> {
        let v = self.text(name)?;
        let lower = v.trim().to_ascii_lowercase();
        match choices.iter().find(|c| **c == lower) {
            Some(c) => Some(*c),
            None => {
                let hint = suggest(&lower, choices.iter().copied())
                    .map(|s| format!("; did you mean {s}?"))
                    .unwrap_or_default();
                self.error(format!("{}: {name}=\"{v}\" is not one of {}{hint}", self.origin(name), choices.join(", ")));
                None
            }
        }
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

    /// A duration (`45s`, `30m`, `12h`, `1d`, combinations) of at most `max`.
    pub(super) fn duration_max(&self, name: &str, default: Duration, max: Duration) -> Duration {
        match self.text(name) {
            None => default,
            Some(text) => match parse_duration(&text) {
                Ok(d) if d <= max => d,
                Ok(_) => {
                    self.error(format!(
                        "{}: {name}=\"{text}\" is too long (at most {})",
                        self.origin(name),
                        crate::model::schedule::format_duration(max)
                    ));
                    default
                }
                Err(e) => {
                    self.error(format!("{}: {name}: {e}", self.origin(name)));
                    default
                }
            },
        }
    }
}

/// The closest of `choices` to `input`, when it is close enough to be a typo.
pub(super) fn suggest<'c>(input: &str, choices: impl Iterator<Item = &'c str>) -> Option<&'c str> {
    choices
        .map(|c| (strsim::damerau_levenshtein(&input.to_ascii_lowercase(), &c.to_ascii_lowercase()), c))
        .filter(|(d, c)| *d <= 2.max(c.len() / 4))
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}
