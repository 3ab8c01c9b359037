//! Embeds the player libraries of the web console's player pages.
//!
//! hls.js and dash.js are pinned by `tests/web/package-lock.json` (the same
//! builds the browser tests play with). When `npm ci` has run in
//! `tests/web` (`cargo xtask test` runs it), their minified dist files are
//! copied into `OUT_DIR` and embedded in the binary; otherwise empty files
//! are, and the player pages load them from `[web] player_scripts_url`, or
//! say that the player is missing. No third-party code is committed to the
//! repository, and a build never goes to the network.

use std::path::{Path, PathBuf};

/// (file name in `OUT_DIR`, package directory, dist file, version constant)
const PLAYERS: [(&str, &str, &str, &str); 2] = [
    ("hls.min.js", "hls.js", "dist/hls.min.js", "HLSJS_VERSION"),
    (
        "dash.all.min.js",
        "dashjs",
        "dist/modern/umd/dash.all.min.js",
        "DASHJS_VERSION",
    ),
];

fn main() {
    let manifest = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").expect("cargo sets it"));
    let out = PathBuf::from(std::env::var_os("OUT_DIR").expect("cargo sets it"));
    let web = manifest.join("../../tests/web");
    let modules = web.join("node_modules");
    println!("cargo:rerun-if-changed=build.rs");
    if web.join("package-lock.json").is_file() {
        println!(
            "cargo:rerun-if-changed={}",
            web.join("package-lock.json").display()
        );
    }
    if !modules.is_dir() && web.is_dir() {
        // Rerun once `npm ci` creates node_modules (cheap while it is absent).
        println!("cargo:rerun-if-changed={}", web.display());
    }
    // The versions go in a generated file, not in environment variables:
    // those would reach the server's environment under `cargo test`.
    let mut versions = String::new();
    for (name, package, dist, constant) in PLAYERS {
        let source = modules.join(package).join(dist);
        let (body, version) = match std::fs::read(&source) {
            Ok(body) => {
                println!("cargo:rerun-if-changed={}", source.display());
                let version = version_of(&modules.join(package).join("package.json"));
                (body, version)
            }
            Err(_) => (Vec::new(), String::new()),
        };
        std::fs::write(out.join(name), body).expect("write to OUT_DIR");
        versions.push_str(&format!(
            "/// The version of {package} embedded in this build (empty when none is).\n\
             pub const {constant}: &str = {version:?};\n"
        ));
    }
    std::fs::write(out.join("players.rs"), versions).expect("write to OUT_DIR");
}

/// The `"version"` of a package.json, without a JSON parser.
fn version_of(package_json: &Path) -> String {
    let Ok(text) = std::fs::read_to_string(package_json) else {
        return String::new();
    };
    text.lines()
        .filter_map(|l| l.trim().strip_prefix("\"version\""))
        .filter_map(|rest| rest.trim_start().strip_prefix(':'))
        .map(|v| v.trim().trim_end_matches(',').trim_matches('"').to_string())
        .find(|v| {
            !v.is_empty()
                && v.chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '+'))
        })
        .unwrap_or_default()
}
