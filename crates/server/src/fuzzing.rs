//! Entry points shared by the fuzz targets (`fuzz/`) and their stable
//! property-test twins. Not a stable API.

use std::ffi::OsString;

use crate::Config;

/// The configuration loader on untrusted text: `data` up to its first NUL
/// byte is a configuration file (TOML parsing, every section's keys and
/// types, every setting's checks and the kernel's own), the lines after it
/// are `NAME=VALUE` environment variables, each read as
/// `TIDEWATER_NAME` (the variable parser, key paths and the layering over
/// the defaults). Never panics; an error is one line.
pub fn config(data: &[u8]) {
    let (file, env) = match data.iter().position(|b| *b == 0) {
        Some(i) => (data.get(..i).unwrap_or_default(), data.get(i + 1..)),
        None => (data, None),
    };
    if let Ok(text) = std::str::from_utf8(file) {
        check(Config::from_toml_str(text));
    }
    if let Some(env) = env {
        let vars = String::from_utf8_lossy(env)
            .lines()
            .filter_map(|line| line.split_once('='))
            .map(|(name, value)| {
                (
                    OsString::from(format!("TIDEWATER_{name}")),
                    OsString::from(value),
                )
            })
            .collect::<Vec<_>>();
        check(Config::load(None, vars));
    }
}

fn check(result: crate::Result<Config>) {
    match result {
        // What loads, validates (the server's reload compares and rebuilds it).
        Ok(config) => {
            assert!(
                config.validate().is_ok(),
                "a loaded config does not validate"
            );
            assert!(config.changed_sections(&config).is_empty());
        }
        Err(e) => {
            let message = e.to_string();
            assert!(!message.contains('\n'), "a multi-line error: {message:?}");
        }
    }
}
