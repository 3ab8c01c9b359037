//! `cargo xtask tidy`, whose steps `cargo xtask test` runs too:
//!
//! - `layering`: no protocol crate depends on another protocol crate (see
//!   [`layering_violations`]);
//! - `docs`: every library crate meant for users has `#![deny(missing_docs)]`
//!   (see [`docs_violations`]);
//! - `fmt`, `clippy` (`--workspace --all-targets -D warnings`) and `deny`
//!   (`cargo deny check licenses bans sources`).
//!
//! The two crate checks read the manifests and `src/lib.rs` files by hand:
//! a few lines of table parsing instead of a TOML dependency, which CI would
//! have to compile cold before anything else.

// It reads what child processes print (ffmpeg's framecrc and logs, the
// server's metrics, cargo's output): an unexpected line is an error or is
// skipped, never a panic of the task.
#![cfg_attr(
    not(test),
    deny(
        clippy::indexing_slicing,
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::panic
    )
)]

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use anyhow::{Context, Result, bail};

use crate::cmd::{Steps, Workspace};
use crate::install::{Install, ensure_cargo_tool, ensure_component};

/// The shared seam crates: the only workspace crates a protocol crate may
/// depend on. A new seam crate (a relay or transcode seam, say) is added
/// here, and nowhere else, when it lands.
/// `tidewater-transcode` is one: the audio conversion WHEP and the RTMP/TS
/// outputs share, once per stream.
const SEAM_CRATES: &[&str] = &[
    "tidewater-core",
    "tidewater-media",
    "tidewater-http",
    "tidewater-transcode",
];

/// The test and benchmark support libraries, which protocol crates may use
/// as dev-dependencies (and only as such): the end-to-end helpers, and the
/// benchmark harness (its library depends on no workspace crate; the WHEP
/// bench takes its RTMP writer to publish in process).
const TEST_SUPPORT: &[&str] = &["tidewater-tests", "tidewater-bench"];

/// Library crates for the workspace's own tests and benchmarks, not for
/// users: exempt from the `missing_docs` rule that every other library crate
/// follows.
const INTERNAL_LIBS: &[&str] = &["tidewater-tests", "tidewater-bench"];

pub(crate) fn tidy(ws: &Workspace) -> Result<()> {
    let mut steps = Steps::new("tidy");
    tidy_steps(ws, &mut steps, None)?;
    steps.finish();
    Ok(())
}

pub(crate) fn tidy_steps(
    ws: &Workspace,
    steps: &mut Steps,
    deny_install: Option<Install>,
) -> Result<()> {
    steps.run("layering", || {
        let members = read_members(&ws.root)?;
        report(
            layering_violations(&members),
            &format!(
                "protocol crates depend only on the shared seam crates ({})",
                SEAM_CRATES.join(", ")
            ),
            "protocol crates depend on one another",
        )
    })?;
    steps.run("docs", || {
        let members = read_members(&ws.root)?;
        report(
            docs_violations(&members),
            "every library crate has #![deny(missing_docs)]",
            "library crates without #![deny(missing_docs)]",
        )
    })?;
    steps.run("fmt", || {
        ensure_component(ws, "fmt", "rustfmt")?;
        ws.run(ws.cargo().args(["fmt", "--all", "--", "--check"]))
    })?;
    steps.run("clippy", || {
        ensure_component(ws, "clippy", "clippy")?;
        ws.run(ws.cargo().args([
            "clippy",
            "--workspace",
            "--all-targets",
            "--",
            "-D",
            "warnings",
        ]))
    })?;
    steps.run("deny", || {
        match deny_install {
            Some(install) => install.wait()?,
            None => ensure_cargo_tool(ws, "deny", "cargo-deny")?,
        }
        ws.run(
            ws.cargo()
                .args(["deny", "check", "licenses", "bans", "sources"]),
        )
    })
}

/// Prints the violations one a line and fails counting them, or prints `ok`.
fn report(violations: Vec<String>, ok: &str, failed: &str) -> Result<()> {
    if violations.is_empty() {
        eprintln!("xtask: {ok}");
        return Ok(());
    }
    for violation in &violations {
        eprintln!("{violation}");
    }
    bail!("{failed} ({} found)", violations.len())
}

// ---------------------------------------------------------------------------
// the workspace as the checks see it

/// One workspace member: its directory relative to the workspace root (as
/// the root manifest lists it, `crates/core`), its manifest text, and the
/// text of its `src/lib.rs` if it has one.
#[derive(Debug)]
pub(crate) struct Member {
    dir: String,
    manifest: String,
    lib: Option<String>,
}

fn read_members(root: &Path) -> Result<Vec<Member>> {
    let path = root.join("Cargo.toml");
    let text =
        std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    let mut dirs = Vec::new();
    for entry in workspace_members(&text) {
        // `crates/*`: every directory below with a manifest.
        if let Some(parent) = entry.strip_suffix("/*") {
            let listing = root.join(parent);
            let mut found = Vec::new();
            for item in std::fs::read_dir(&listing)
                .with_context(|| format!("listing {}", listing.display()))?
            {
                let item = item?;
                if item.path().join("Cargo.toml").is_file() {
                    found.push(format!("{parent}/{}", item.file_name().to_string_lossy()));
                }
            }
            found.sort();
            dirs.extend(found);
        } else {
            dirs.push(entry);
        }
    }
    dirs.into_iter()
        .map(|dir| {
            let base = root.join(&dir);
            let manifest_path = base.join("Cargo.toml");
            let manifest = std::fs::read_to_string(&manifest_path)
                .with_context(|| format!("reading {}", manifest_path.display()))?;
            let lib = std::fs::read_to_string(base.join("src/lib.rs")).ok();
            Ok(Member { dir, manifest, lib })
        })
        .collect()
}

/// The entries of `members = [ … ]` in the root manifest's `[workspace]`.
fn workspace_members(root_manifest: &str) -> Vec<String> {
    let mut members = Vec::new();
    let mut in_array = false;
    for (table, line) in table_lines(root_manifest) {
        if table != "workspace" {
            in_array = false;
            continue;
        }
        let rest = if in_array {
            line
        } else if let Some((key, value)) = split_key_value(line)
            && key == "members"
        {
            in_array = true;
            value.trim_start().trim_start_matches('[')
        } else {
            continue;
        };
        let (items, closed) = match rest.find(']') {
            Some(end) => (&rest[..end], true),
            None => (rest, false),
        };
        members.extend(
            items
                .split(',')
                .map(unquote)
                .filter(|item| !item.is_empty())
                .map(str::to_owned),
        );
        if closed {
            in_array = false;
        }
    }
    members
}

/// Whether the crate in this workspace directory is a protocol crate: an
/// ingest, a packager, the recorder or the cluster relay, all under
/// `crates/`, so the rule covers each one as soon as it exists.
fn is_protocol_dir(dir: &str) -> bool {
    let Some(name) = dir.trim_end_matches('/').strip_prefix("crates/") else {
        return false;
    };
    !name.contains('/')
        && (name.starts_with("ingest-")
            || name.starts_with("pkg-")
            || name == "record"
            || name == "cluster")
}

// ---------------------------------------------------------------------------
// the checks

/// The dependencies between workspace crates that break the layering, one
/// message each: a protocol crate (see [`is_protocol_dir`]) may depend on
/// the [`SEAM_CRATES`] and on anything outside the workspace, in
/// `[dependencies]`, `[build-dependencies]` and `[dev-dependencies]` alike
/// (target-specific tables included); as a dev-dependency it may also use
/// [`TEST_SUPPORT`]. The umbrella, the server, the benchmarks and the tests
/// may depend on anything.
pub(crate) fn layering_violations(members: &[Member]) -> Vec<String> {
    let dirs: BTreeMap<String, &str> = members
        .iter()
        .filter_map(|m| Some((package_name(&m.manifest)?, m.dir.as_str())))
        .collect();
    let mut violations = Vec::new();
    for member in members.iter().filter(|m| is_protocol_dir(&m.dir)) {
        let own = package_name(&member.manifest).unwrap_or_else(|| member.dir.clone());
        for dep in dependencies(&member.manifest) {
            let Some(dep_dir) = dirs.get(&dep.package) else {
                continue; // not a workspace crate
            };
            if dep.package == own
                || SEAM_CRATES.contains(&dep.package.as_str())
                || (dep.kind == DepKind::Dev && TEST_SUPPORT.contains(&dep.package.as_str()))
            {
                continue;
            }
            let what = if is_protocol_dir(dep_dir) {
                format!("depends on protocol crate {}", dep.package)
            } else {
                format!(
                    "depends on workspace crate {}, which is not a shared seam crate",
                    dep.package
                )
            };
            let table = match dep.kind {
                DepKind::Normal => "",
                DepKind::Build => " (in [build-dependencies])",
                DepKind::Dev => " (in [dev-dependencies])",
            };
            violations.push(format!("{}/Cargo.toml: {own} {what}{table}", member.dir));
        }
    }
    violations
}

/// The library crates without `#![deny(missing_docs)]` (or `forbid`) in
/// their `src/lib.rs`, one message each naming the file; members without a
/// library and the [`INTERNAL_LIBS`] are skipped.
pub(crate) fn docs_violations(members: &[Member]) -> Vec<String> {
    members
        .iter()
        .filter(|m| {
            package_name(&m.manifest).is_none_or(|name| !INTERNAL_LIBS.contains(&name.as_str()))
        })
        .filter_map(|m| {
            let lib = m.lib.as_deref()?;
            (!denies_missing_docs(lib))
                .then(|| format!("{}/src/lib.rs: no #![deny(missing_docs)]", m.dir))
        })
        .collect()
}

/// Whether a crate root carries an inner `deny` or `forbid` attribute that
/// names `missing_docs` (outside comments).
fn denies_missing_docs(lib_rs: &str) -> bool {
    let code: String = lib_rs
        .lines()
        .filter(|line| !line.trim_start().starts_with("//"))
        .flat_map(|line| line.chars().chain(['\n']))
        .filter(|c| !c.is_whitespace())
        .collect();
    ["#![deny(", "#![forbid("].iter().any(|open| {
        code.match_indices(open).any(|(at, _)| {
            let list = &code[at + open.len()..];
            let list = &list[..list.find(")]").unwrap_or(list.len())];
            list.split(',').any(|lint| lint == "missing_docs")
        })
    })
}

// ---------------------------------------------------------------------------
// just enough TOML

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum DepKind {
    Normal,
    Build,
    Dev,
}

/// A dependency as declared: the table kind and the package it names (the
/// key, or its `package = "…"` when renamed).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Dep {
    kind: DepKind,
    package: String,
}

/// `[package] name`.
fn package_name(manifest: &str) -> Option<String> {
    table_lines(manifest)
        .filter(|(table, _)| table == "package")
        .find_map(|(_, line)| {
            let (key, value) = split_key_value(line)?;
            (key == "name").then(|| unquote(value).to_owned())
        })
}

/// Every dependency a manifest declares, in any of the forms cargo accepts
/// one per line: `a.workspace = true`, `a = { workspace = true, … }`,
/// `a = "1"`, `a = { …, package = "b" }`, `a.package = "b"`, and
/// `[dependencies.a]` tables; under `[target.'…'.…]` as well.
fn dependencies(manifest: &str) -> BTreeSet<Dep> {
    // (kind, key) -> package, so that a rename on a later line wins.
    let mut deps: BTreeMap<(DepKind, String), String> = BTreeMap::new();
    for (table, line) in table_lines(manifest) {
        let path = split_outside_quotes(&table, '.');
        let path: Vec<&str> = path.iter().map(|s| unquote(s)).collect();
        let rest = match path.as_slice() {
            ["target", _, rest @ ..] => rest,
            rest => rest,
        };
        let (kind, named) = match rest {
            [kind] => (dep_kind(kind), None),
            [kind, name] => (dep_kind(kind), Some(*name)),
            _ => continue,
        };
        let Some(kind) = kind else { continue };
        let Some((key, value)) = split_key_value(line) else {
            continue;
        };
        let key_path = split_outside_quotes(key, '.');
        let key_path: Vec<&str> = key_path.iter().map(|s| unquote(s)).collect();
        let (name, field) = match (named, key_path.as_slice()) {
            // `[dependencies.a]` / `package = "b"`
            (Some(name), [field, ..]) => (name, Some(*field)),
            // `a.package = "b"`, `a.workspace = true`
            (None, [name, field, ..]) => (*name, Some(*field)),
            // `a = …`
            (None, [name]) => (*name, None),
            _ => continue,
        };
        let renamed = match field {
            Some("package") => Some(unquote(value).to_owned()),
            Some(_) => None,
            None => inline_field(value, "package"),
        };
        let entry = deps
            .entry((kind, name.to_owned()))
            .or_insert_with(|| name.to_owned());
        if let Some(package) = renamed {
            *entry = package;
        }
    }
    deps.into_iter()
        .map(|((kind, _), package)| Dep { kind, package })
        .collect()
}

fn dep_kind(table: &str) -> Option<DepKind> {
    match table {
        "dependencies" => Some(DepKind::Normal),
        "build-dependencies" | "build_dependencies" => Some(DepKind::Build),
        "dev-dependencies" | "dev_dependencies" => Some(DepKind::Dev),
        _ => None,
    }
}

/// A string field of a one-line inline table: `package` in
/// `{ workspace = true, package = "b" }`.
fn inline_field(value: &str, field: &str) -> Option<String> {
    let inner = value
        .trim()
        .strip_prefix('{')?
        .trim_end()
        .strip_suffix('}')?;
    split_outside_quotes(inner, ',').iter().find_map(|pair| {
        let (key, value) = split_key_value(pair)?;
        (unquote(key) == field).then(|| unquote(value).to_owned())
    })
}

/// The non-blank lines of a TOML text without comments, each with the
/// table it is in (`dependencies`, `target.'cfg(unix)'.dependencies`,
/// `bin` for `[[bin]]`; empty before the first header).
fn table_lines(toml: &str) -> impl Iterator<Item = (String, &str)> {
    let mut table = String::new();
    toml.lines().filter_map(move |line| {
        let line = strip_comment(line).trim();
        if line.is_empty() {
            return None;
        }
        if let Some(header) = line.strip_prefix('[') {
            let header = header.trim_start_matches('[');
            let header = header.trim_end().trim_end_matches(']');
            table = split_outside_quotes(header, '.')
                .iter()
                .map(|part| part.trim())
                .collect::<Vec<_>>()
                .join(".");
            return None;
        }
        Some((table.clone(), line))
    })
}

/// `key = value` split at the first `=` outside quotes, both trimmed.
fn split_key_value(line: &str) -> Option<(&str, &str)> {
    let at = find_outside_quotes(line, '=')?;
    Some((line[..at].trim(), line[at + 1..].trim()))
}

/// The line up to a `#` outside quotes.
fn strip_comment(line: &str) -> &str {
    find_outside_quotes(line, '#').map_or(line, |at| &line[..at])
}

fn find_outside_quotes(text: &str, wanted: char) -> Option<usize> {
    let mut quote = None;
    for (at, c) in text.char_indices() {
        match (quote, c) {
            (None, '"' | '\'') => quote = Some(c),
            (Some(q), _) if c == q => quote = None,
            (None, _) if c == wanted => return Some(at),
            _ => {}
        }
    }
    None
}

fn split_outside_quotes(text: &str, separator: char) -> Vec<&str> {
    let mut parts = Vec::new();
    let mut rest = text;
    while let Some(at) = find_outside_quotes(rest, separator) {
        parts.push(&rest[..at]);
        rest = &rest[at + separator.len_utf8()..];
    }
    parts.push(rest);
    parts
}

/// A value or key without its surrounding quotes and whitespace.
fn unquote(text: &str) -> &str {
    let text = text.trim();
    ['"', '\'']
        .iter()
        .find_map(|&q| text.strip_prefix(q)?.strip_suffix(q))
        .unwrap_or(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn member(dir: &str, manifest: &str, lib: Option<&str>) -> Member {
        Member {
            dir: dir.to_owned(),
            manifest: manifest.to_owned(),
            lib: lib.map(str::to_owned),
        }
    }

    fn manifest(name: &str, rest: &str) -> String {
        format!("[package]\nname = \"{name}\"\nversion.workspace = true\n\n{rest}")
    }

    /// The workspace as it is laid out today, every crate within the rules.
    fn tree() -> Vec<Member> {
        let seam = "[dependencies]\ntidewater-core.workspace = true\n";
        let protocol = "[dependencies]\n\
            axum.workspace = true\n\
            tidewater-core.workspace = true\n\
            tidewater-http.workspace = true\n\
            tidewater-media.workspace = true\n\
            tokio = { workspace = true, features = [\"net\"] }\n\
            \n\
            [dev-dependencies]\n\
            proptest.workspace = true\n\
            tidewater-tests.workspace = true\n";
        vec![
            member(
                "crates/core",
                &manifest("tidewater-core", "[dependencies]\nbytes.workspace = true\n"),
                Some("//! Core.\n#![deny(missing_docs)]\n"),
            ),
            member(
                "crates/media",
                &manifest("tidewater-media", seam),
                Some("#![deny(missing_docs)]"),
            ),
            member(
                "crates/http-out",
                &manifest("tidewater-http", seam),
                Some("#![deny(missing_docs)]"),
            ),
            member(
                "crates/ingest-rtmp",
                &manifest("tidewater-ingest-rtmp", protocol),
                Some("#![deny(missing_docs)]"),
            ),
            member(
                "crates/pkg-hls",
                &manifest("tidewater-pkg-hls", protocol),
                Some("#![deny(missing_docs)]"),
            ),
            member(
                "crates/pkg-dash",
                &manifest("tidewater-pkg-dash", protocol),
                Some("#![deny(missing_docs)]"),
            ),
            member(
                "crates/tidewater",
                &manifest(
                    "tidewater",
                    "[dependencies]\n\
                     tidewater-core.workspace = true\n\
                     tidewater-pkg-hls = { workspace = true, optional = true }\n\
                     tidewater-pkg-dash = { workspace = true, optional = true }\n",
                ),
                Some("#![deny(missing_docs)]"),
            ),
            member(
                "crates/server",
                &manifest(
                    "tidewater-server",
                    "[dependencies]\n\
                     tidewater = { workspace = true, features = [\"hls\", \"dash\"] }\n",
                ),
                Some("#![deny(missing_docs)]"),
            ),
            member(
                "crates/bench",
                &manifest(
                    "tidewater-bench",
                    "[dev-dependencies]\ntidewater-pkg-hls.workspace = true\n",
                ),
                Some("//! Bench helpers, documented but not denying.\n"),
            ),
            member(
                "tests",
                &manifest(
                    "tidewater-tests",
                    "[dev-dependencies]\ntidewater-pkg-hls.workspace = true\n",
                ),
                Some("//! Test support.\n"),
            ),
            member("xtask", &manifest("xtask", ""), None),
        ]
    }

    fn replace(tree: &mut [Member], dir: &str, new: Member) {
        let slot = tree.iter_mut().find(|m| m.dir == dir).expect("member");
        *slot = new;
    }

    #[test]
    fn the_tree_as_laid_out_passes_both_checks() {
        let tree = tree();
        assert_eq!(layering_violations(&tree), Vec::<String>::new());
        assert_eq!(docs_violations(&tree), Vec::<String>::new());
    }

    #[test]
    fn a_protocol_crate_depending_on_a_sibling_fails() {
        let mut tree = tree();
        replace(
            &mut tree,
            "crates/pkg-dash",
            member(
                "crates/pkg-dash",
                &manifest(
                    "tidewater-pkg-dash",
                    "[dependencies]\n\
                     tidewater-core.workspace = true\n\
                     tidewater-pkg-hls = { workspace = true, optional = true } # shares CMAF\n",
                ),
                None,
            ),
        );
        assert_eq!(
            layering_violations(&tree),
            [
                "crates/pkg-dash/Cargo.toml: tidewater-pkg-dash depends on protocol crate tidewater-pkg-hls"
            ]
        );
    }

    #[test]
    fn every_dependency_table_is_checked() {
        let mut tree = tree();
        replace(
            &mut tree,
            "crates/ingest-rtmp",
            member(
                "crates/ingest-rtmp",
                &manifest(
                    "tidewater-ingest-rtmp",
                    "[build-dependencies.tidewater-pkg-dash]\n\
                     workspace = true\n\
                     \n\
                     [target.'cfg(unix)'.dependencies]\n\
                     tidewater-server.workspace = true\n\
                     \n\
                     [dev-dependencies]\n\
                     tidewater-tests.workspace = true\n\
                     hls = { workspace = true, package = \"tidewater-pkg-hls\" }\n",
                ),
                None,
            ),
        );
        assert_eq!(
            layering_violations(&tree),
            [
                "crates/ingest-rtmp/Cargo.toml: tidewater-ingest-rtmp depends on workspace crate \
                 tidewater-server, which is not a shared seam crate",
                "crates/ingest-rtmp/Cargo.toml: tidewater-ingest-rtmp depends on protocol crate \
                 tidewater-pkg-dash (in [build-dependencies])",
                "crates/ingest-rtmp/Cargo.toml: tidewater-ingest-rtmp depends on protocol crate \
                 tidewater-pkg-hls (in [dev-dependencies])",
            ]
        );
    }

    #[test]
    fn future_protocol_crates_are_covered() {
        let mut tree = tree();
        tree.push(member(
            "crates/record",
            &manifest(
                "tidewater-record",
                "[dependencies]\ntidewater-core.workspace = true\n",
            ),
            Some("#![deny(missing_docs)]"),
        ));
        tree.push(member(
            "crates/cluster",
            &manifest(
                "tidewater-cluster",
                "[dependencies]\ntidewater-record = { path = \"../record\" }\n",
            ),
            Some("#![deny(missing_docs)]"),
        ));
        assert_eq!(
            layering_violations(&tree),
            [
                "crates/cluster/Cargo.toml: tidewater-cluster depends on protocol crate tidewater-record"
            ]
        );
        assert!(is_protocol_dir("crates/ingest-whip"));
        assert!(!is_protocol_dir("crates/http-out"));
        assert!(!is_protocol_dir("crates/tidewater"));
        assert!(!is_protocol_dir("crates/recorder"));
        assert!(!is_protocol_dir("tests"));
    }

    #[test]
    fn a_library_without_deny_missing_docs_fails_naming_the_file() {
        let mut tree = tree();
        replace(
            &mut tree,
            "crates/media",
            member(
                "crates/media",
                &manifest("tidewater-media", ""),
                Some("//! Media.\n// #![deny(missing_docs)]\n#![warn(missing_docs)]\n"),
            ),
        );
        assert_eq!(
            docs_violations(&tree),
            ["crates/media/src/lib.rs: no #![deny(missing_docs)]"]
        );
    }

    #[test]
    fn deny_attributes_are_read_in_their_forms() {
        assert!(denies_missing_docs("#![deny(missing_docs)]"));
        assert!(denies_missing_docs(
            "//! Docs.\n\n#![deny(\n    unsafe_code,\n    missing_docs,\n)]\n"
        ));
        assert!(denies_missing_docs("#![forbid(missing_docs)]"));
        assert!(!denies_missing_docs(
            "#![deny(missing_docs_in_private_items)]"
        ));
        assert!(!denies_missing_docs("//! #![deny(missing_docs)]\n"));
        assert!(!denies_missing_docs("#![deny(unsafe_code)]\n"));
    }

    #[test]
    fn dependencies_are_read_in_every_form() {
        let deps = dependencies(
            "[package]\n\
             name = \"x\" # [dependencies]\n\
             \n\
             [dependencies]\n\
             a.workspace = true\n\
             b = { workspace = true, optional = true }\n\
             c = \"1\"\n\
             d = { version = \"1\", package = \"dee\" }\n\
             e.workspace = true\n\
             e.package = \"eee\"\n\
             \n\
             [dependencies.f]\n\
             path = \"../f\"\n\
             package = \"eff\"\n\
             \n\
             [ target.\"cfg(unix)\".build-dependencies ]\n\
             g = \"1\"\n\
             \n\
             [dev-dependencies]\n\
             h = { workspace = true, features = [\"a,b\", \"c\"] }\n\
             \n\
             [[bench]]\n\
             name = \"not-a-dependency\"\n",
        );
        let found: Vec<(DepKind, &str)> =
            deps.iter().map(|d| (d.kind, d.package.as_str())).collect();
        assert_eq!(
            found,
            [
                (DepKind::Normal, "a"),
                (DepKind::Normal, "b"),
                (DepKind::Normal, "c"),
                (DepKind::Normal, "dee"),
                (DepKind::Normal, "eee"),
                (DepKind::Normal, "eff"),
                (DepKind::Build, "g"),
                (DepKind::Dev, "h"),
            ]
        );
    }

    #[test]
    fn workspace_members_are_read_on_one_line_or_many() {
        let one = "[workspace]\nresolver = \"3\"\n\
                   members = [\"crates/core\", \"xtask\", \"tests\"]\n\
                   default-members = [\"crates/core\"]\n";
        assert_eq!(workspace_members(one), ["crates/core", "xtask", "tests"]);
        let many = "[workspace]\nmembers = [\n  \"crates/*\", # all\n  \"xtask\",\n]\n\
                    \n[workspace.package]\nversion = \"0.1.0\"\n";
        assert_eq!(workspace_members(many), ["crates/*", "xtask"]);
        assert_eq!(
            package_name("[package]\nname = \"tidewater-core\"\n"),
            Some("tidewater-core".to_owned())
        );
    }
}
