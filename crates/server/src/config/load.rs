//! Loading: the built-in defaults, the TOML file and the `TIDEWATER_…`
//! environment layered into one table, deserialized with
//! `serde_path_to_error` (so an unknown key or a wrong type names its path),
//! then checked; every error is annotated with where its key's value came
//! from (`in FILE`, `set by VARIABLE`).

use std::collections::{HashMap, HashSet};
use std::ffi::OsString;
use std::path::Path;

use super::{Config, segment, setting_error};
use crate::error::{Error, Result};

/// Prefix of the environment variables that override settings.
pub const ENV_PREFIX: &str = "TIDEWATER_";
/// The environment variable that names the configuration file (like `--config`).
pub const ENV_CONFIG_FILE: &str = "TIDEWATER_CONFIG";
/// Where the values of a loaded configuration came from, for error messages.
#[derive(Debug, Default)]
struct Origins {
    file: Option<String>,
    /// Dotted paths of every key and section the file has.
    file_keys: HashSet<String>,
    /// Dotted key path → the variable that set it.
    env: HashMap<String, String>,
}

impl Origins {
    fn of(&self, key: &str) -> Option<String> {
        // An element of a list (`apps.live.push[1]`), or a key of one
        // (`srt.encryption[0].passphrase`), comes from where the list came from.
        if let Some((list, _)) = key.strip_suffix(']').and_then(|k| k.rsplit_once('[')) {
            return self.of(list);
        }
        if let Some((element, _)) = key.rsplit_once('.').filter(|(e, _)| e.ends_with(']')) {
            return self.of(element);
        }
        let env = |var: &String| format!("set by {var}");
        let file = || self.file.as_ref().map(|f| format!("in {f}"));
        if let Some(var) = self.env.get(key) {
            return Some(env(var));
        }
        if self.file_keys.contains(key) {
            return file();
        }
        // A section the environment created by setting a key inside it.
        let inside = format!("{key}.");
        let mut vars: Vec<_> = self
            .env
            .iter()
            .filter(|(k, _)| k.starts_with(&inside))
            .map(|(_, v)| v)
            .collect();
        vars.sort();
        vars.first().map(|var| env(var)).or_else(|| {
            // Deeper inside a list (`auth.users[1].permissions[0].path`):
            // from where the outermost list came from.
            key.split_once('[')
                .map(|(list, _)| list)
                .filter(|list| !list.is_empty())
                .and_then(|list| self.of(list))
        })
    }

    fn annotate(&self, err: Error) -> Error {
        match err {
            Error::Setting {
                key,
                message,
                origin: None,
            } => {
                let origin = self.of(&key);
                Error::Setting {
                    key,
                    message,
                    origin,
                }
            }
            other => other,
        }
    }
}

impl Config {
    /// Loads the configuration: the defaults, then `file` (if any), then the
    /// `TIDEWATER_…` variables of `env` (pass [`std::env::vars_os`]), and
    /// validates the result.
    pub fn load(
        file: Option<&Path>,
        env: impl IntoIterator<Item = (OsString, OsString)>,
    ) -> Result<Config> {
        let text = match file {
            Some(path) => {
                Some(
                    std::fs::read_to_string(path).map_err(|source| Error::ReadConfig {
                        path: path.to_path_buf(),
                        source,
                    })?,
                )
            }
            None => None,
        };
        Self::layered(text.as_deref().zip(file), env)
    }

    /// Parses and validates a configuration from TOML text, without the environment.
    pub fn from_toml_str(text: &str) -> Result<Config> {
        Self::layered(Some((text, Path::new("<string>"))), std::iter::empty())
    }

    pub(super) fn layered(
        file: Option<(&str, &Path)>,
        env: impl IntoIterator<Item = (OsString, OsString)>,
    ) -> Result<Config> {
        let mut origins = Origins::default();
        let mut table = match file {
            Some((text, path)) => {
                origins.file = Some(path.display().to_string());
                let table = parse_file(text, path)?;
                collect_keys(&table, "", &mut origins.file_keys);
                table
            }
            None => toml::Table::new(),
        };
        for (var, path, value) in env_overrides(env)? {
            let key = path
                .iter()
                .map(|s| segment(s))
                .collect::<Vec<_>>()
                .join(".");
            insert(&mut table, &path, value).map_err(|message| Error::Env {
                var: var.clone(),
                message,
            })?;
            origins.env.insert(key, var);
        }
        let config: Config = serde_path_to_error::deserialize(table)
            .map_err(|e| origins.annotate(deserialize_error(e)))?;
        config.validate().map_err(|e| origins.annotate(e))?;
        Ok(config)
    }
}

/// Records the dotted path of every key and section of `table`.
fn collect_keys(table: &toml::Table, prefix: &str, out: &mut HashSet<String>) {
    for (name, value) in table {
        let path = format!("{prefix}{}", segment(name));
        if let Some(inner) = value.as_table() {
            collect_keys(inner, &format!("{path}."), out);
        }
        out.insert(path);
    }
}

/// Parses the file into a table; a syntax error gives line and column.
fn parse_file(text: &str, path: &Path) -> Result<toml::Table> {
    text.parse::<toml::Table>().map_err(|e| {
        let at = e.span().map(|span| {
            let before = &text[..span.start.min(text.len())];
            let line = before.matches('\n').count() + 1;
            let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
            format!("line {line}, column {column}: ")
        });
        Error::ParseConfig {
            path: path.to_path_buf(),
            message: format!("{}{}", at.unwrap_or_default(), one_line(e.message())),
        }
    })
}

fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Maps a deserialization error to the key it concerns.
fn deserialize_error(err: serde_path_to_error::Error<toml::de::Error>) -> Error {
    use serde_path_to_error::Segment;
    let mut key: Vec<String> = err
        .path()
        .iter()
        .filter_map(|s| match s {
            Segment::Map { key } => Some(segment(key)),
            Segment::Enum { variant } => Some(segment(variant)),
            Segment::Seq { index } => Some(format!("[{index}]")),
            Segment::Unknown => None,
        })
        .collect();
    let mut message = one_line(err.inner().message());
    // "unknown field `x`, expected …": the path stops at the section; name the key.
    if let Some(rest) = message.strip_prefix("unknown field `")
        && let Some((field, expected)) = rest.split_once('`')
    {
        if key.last().map(String::as_str) != Some(&segment(field)) {
            key.push(segment(field));
        }
        message = format!("unknown key{expected}");
    }
    let key = if key.is_empty() {
        "(top level)".to_string()
    } else {
        // `auth.users[0].pasword`: an index belongs to the list before it.
        key.iter().fold(String::new(), |mut out, segment| {
            if !out.is_empty() && !segment.starts_with('[') {
                out.push('.');
            }
            out.push_str(segment);
            out
        })
    };
    setting_error(key, message)
}

/// The `TIDEWATER_…` overrides of `env`, sorted by variable name: (variable,
/// key path, value).
fn env_overrides(
    env: impl IntoIterator<Item = (OsString, OsString)>,
) -> Result<Vec<(String, Vec<String>, toml::Value)>> {
    let mut out = Vec::new();
    for (name, value) in env {
        let Some(name) = name.to_str() else {
            if name.as_encoded_bytes().starts_with(ENV_PREFIX.as_bytes()) {
                return Err(Error::Env {
                    var: name.to_string_lossy().into_owned(),
                    message: "name is not valid UTF-8".into(),
                });
            }
            continue;
        };
        let Some(rest) = name.strip_prefix(ENV_PREFIX) else {
            continue;
        };
        if name == ENV_CONFIG_FILE {
            continue;
        }
        let env_error = |message: String| Error::Env {
            var: name.to_string(),
            message,
        };
        let path: Vec<String> = rest.split("__").map(str::to_ascii_lowercase).collect();
        if path.len() < 2 || path.iter().any(String::is_empty) {
            return Err(env_error(format!(
                "not a setting: expected {ENV_PREFIX}SECTION__KEY with a double underscore between \
                 path segments (for example {ENV_PREFIX}HTTP__LISTEN)"
            )));
        }
        let value = value
            .to_str()
            .ok_or_else(|| env_error("value is not valid UTF-8".into()))?;
        out.push((name.to_string(), path, env_value(value)));
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(out)
}

/// An environment variable's value: a TOML value when it parses as one (other
/// than a table), else the text itself.
pub fn env_value(text: &str) -> toml::Value {
    format!("value = {text}")
        .parse::<toml::Table>()
        .ok()
        .filter(|t| t.len() == 1)
        .and_then(|mut t| t.remove("value"))
        .filter(|v| !v.is_table())
        .unwrap_or_else(|| toml::Value::String(text.to_string()))
}

fn insert(table: &mut toml::Table, path: &[String], value: toml::Value) -> Result<(), String> {
    let Some((last, parents)) = path.split_last() else {
        return Err("empty key".into());
    };
    let mut current = table;
    for (depth, name) in parents.iter().enumerate() {
        let entry = current
            .entry(name.clone())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()));
        current = entry.as_table_mut().ok_or_else(|| {
            let key = path
                .iter()
                .take(depth + 1)
                .map(|s| segment(s))
                .collect::<Vec<_>>()
                .join(".");
            format!("{key} is a value, not a section")
        })?;
    }
    current.insert(last.clone(), value);
    Ok(())
}
