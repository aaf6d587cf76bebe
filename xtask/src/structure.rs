//! `cargo xtask structure`: ARCHITECTURE.md's claims about the crate graph,
//! checked against `cargo metadata` (as rust-analyzer's tidy tests check
//! its docs).
//!
//! - **Layers.** ARCHITECTURE.md's "Dependency rule" has a table of layers,
//!   each a list of packages. Every workspace package is in exactly one
//!   layer, and a package's normal dependencies on workspace packages are
//!   all in lower layers. The table is the one statement of the rule: the
//!   check reads it from the document, so the two cannot drift.
//! - **The testkit.** `botfleet-testkit` is a dev-dependency everywhere but
//!   in the packages the document names as allowed (the bench crate and
//!   xtask).
//! - **The lean build.** The binary without its default features reaches
//!   neither the testkit nor the bench crate through its normal,
//!   non-optional dependencies.
//! - **The code map.** Every workspace package has a `###` section in the
//!   code map whose heading names its directory, and every module file of
//!   the bench crate (one per benchmark) is named in the document.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// The heading of the section that holds the layer table.
const RULE_HEADING: &str = "## Dependency rule";
/// A line of that section naming who may depend on the testkit normally.
const TESTKIT_LINE: &str = "Normal dependencies on `botfleet-testkit`:";
const TESTKIT: &str = "botfleet-testkit";

/// A workspace package as the check sees it.
#[derive(Clone)]
struct Package {
    name: String,
    /// Its directory, relative to the workspace root.
    dir: String,
    /// Workspace packages it depends on, with the kind (`normal`, `dev`,
    /// `build`).
    deps: Vec<(String, String)>,
    /// Of those, the normal dependencies that are optional (behind a
    /// feature).
    optional: Vec<String>,
}

/// The binary, and what its lean build must not contain.
const BINARY: &str = "botfleet";
const NOT_IN_LEAN_BUILD: [&str; 2] = [TESTKIT, "botfleet-bench"];

/// Runs every check; the error lists every problem found.
pub(crate) fn check(root: &Path, metadata: &str) -> Result<(), String> {
    let doc_path = root.join("ARCHITECTURE.md");
    let doc = std::fs::read_to_string(&doc_path)
        .map_err(|e| format!("cannot read {}: {e}", doc_path.display()))?;
    let packages = packages(metadata, root)?;
    let mut problems = Vec::new();
    let layers = layers(&doc)?;
    check_layers(&packages, &layers, &mut problems);
    check_testkit(&packages, &doc, &mut problems);
    check_lean_build(&packages, &mut problems);
    check_code_map(root, &packages, &doc, &mut problems)?;
    if problems.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "ARCHITECTURE.md and the crate graph disagree:\n{}",
            problems
                .iter()
                .map(|p| format!("  - {p}"))
                .collect::<Vec<_>>()
                .join("\n")
        ))
    }
}

/// The workspace's packages from `cargo metadata --no-deps` JSON.
fn packages(metadata: &str, root: &Path) -> Result<Vec<Package>, String> {
    let json: serde_json::Value =
        serde_json::from_str(metadata).map_err(|e| format!("cargo metadata: {e}"))?;
    let list = json["packages"]
        .as_array()
        .ok_or("cargo metadata: no `packages`")?;
    let names: BTreeSet<&str> = list.iter().filter_map(|p| p["name"].as_str()).collect();
    let mut out = Vec::new();
    for p in list {
        let name = p["name"]
            .as_str()
            .ok_or("cargo metadata: a package without a name")?;
        let manifest = Path::new(p["manifest_path"].as_str().unwrap_or_default());
        let dir = manifest
            .parent()
            .and_then(|d| d.strip_prefix(root).ok())
            .map(|d| d.display().to_string())
            .unwrap_or_default();
        let deps = p["dependencies"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|d| {
                let dep = d["name"].as_str()?;
                names.contains(dep).then(|| {
                    let kind = d["kind"].as_str().unwrap_or("normal").to_owned();
                    (dep.to_owned(), kind)
                })
            })
            .collect();
        let optional = p["dependencies"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|d| d["optional"].as_bool() == Some(true))
            .filter_map(|d| d["name"].as_str())
            .filter(|dep| names.contains(dep))
            .map(str::to_owned)
            .collect();
        out.push(Package {
            name: name.to_owned(),
            dir,
            deps,
            optional,
        });
    }
    Ok(out)
}

/// The layer table: rows `| N name | `pkg`, `pkg` | what |`, lowest first.
fn layers(doc: &str) -> Result<BTreeMap<String, (u32, String)>, String> {
    let section = section(doc, RULE_HEADING)
        .ok_or_else(|| format!("ARCHITECTURE.md has no `{RULE_HEADING}` section"))?;
    let mut out = BTreeMap::new();
    for line in section.lines() {
        let cells: Vec<&str> = line.split('|').map(str::trim).collect();
        // "", "layer", "packages", "what", ""
        if cells.len() < 4 || !line.trim_start().starts_with('|') {
            continue;
        }
        let Some((number, layer)) = cells[1].split_once(' ') else {
            continue;
        };
        let Ok(number) = number.parse::<u32>() else {
            continue;
        };
        for package in backticked(cells[2]) {
            if out
                .insert(package.to_owned(), (number, layer.trim().to_owned()))
                .is_some()
            {
                return Err(format!("ARCHITECTURE.md puts `{package}` in two layers"));
            }
        }
    }
    if out.is_empty() {
        return Err(format!(
            "ARCHITECTURE.md's `{RULE_HEADING}` has no layer table (rows `| 0 name | `package`, ... | what |`)"
        ));
    }
    Ok(out)
}

fn check_layers(
    packages: &[Package],
    layers: &BTreeMap<String, (u32, String)>,
    problems: &mut Vec<String>,
) {
    let names: BTreeSet<&str> = packages.iter().map(|p| p.name.as_str()).collect();
    for listed in layers.keys() {
        if !names.contains(listed.as_str()) {
            problems.push(format!(
                "the layer table lists `{listed}`, which is not a workspace package"
            ));
        }
    }
    for p in packages {
        let Some((level, layer)) = layers.get(&p.name) else {
            problems.push(format!(
                "`{}` ({}) is in no layer of the table; add it to the one it belongs to",
                p.name, p.dir
            ));
            continue;
        };
        for (dep, kind) in &p.deps {
            if kind != "normal" {
                continue;
            }
            match layers.get(dep) {
                Some((dep_level, dep_layer)) if dep_level >= level => problems.push(format!(
                    "`{}` (layer {level} {layer}) depends on `{dep}` (layer {dep_level} {dep_layer}); a package may depend only on lower layers",
                    p.name
                )),
                _ => {}
            }
        }
    }
}

fn check_testkit(packages: &[Package], doc: &str, problems: &mut Vec<String>) {
    let allowed: BTreeSet<&str> = doc
        .lines()
        .find_map(|l| l.trim().strip_prefix(TESTKIT_LINE))
        .map(|rest| backticked(rest).collect())
        .unwrap_or_default();
    if allowed.is_empty() {
        problems.push(format!(
            "the dependency rule needs a line `{TESTKIT_LINE} `package`, ...`"
        ));
    }
    for p in packages {
        let normal = p
            .deps
            .iter()
            .any(|(dep, kind)| dep == TESTKIT && kind != "dev");
        if normal && !allowed.contains(p.name.as_str()) {
            problems.push(format!(
                "`{}` has `{TESTKIT}` as a normal dependency; it may be a dev-dependency only (allowed: {})",
                p.name,
                allowed.iter().copied().collect::<Vec<_>>().join(", ")
            ));
        }
    }
}

fn check_lean_build(packages: &[Package], problems: &mut Vec<String>) {
    let by_name: BTreeMap<&str, &Package> = packages.iter().map(|p| (p.name.as_str(), p)).collect();
    let mut seen = BTreeSet::new();
    let mut stack = vec![BINARY];
    while let Some(name) = stack.pop() {
        if !seen.insert(name) {
            continue;
        }
        let Some(p) = by_name.get(name) else { continue };
        for (dep, kind) in &p.deps {
            if kind == "normal" && !p.optional.contains(dep) {
                stack.push(dep.as_str());
            }
        }
    }
    for banned in NOT_IN_LEAN_BUILD {
        if seen.contains(banned) {
            problems.push(format!(
                "`{BINARY}` without its default features reaches `{banned}`; put it behind the `bench` feature"
            ));
        }
    }
}

fn check_code_map(
    root: &Path,
    packages: &[Package],
    doc: &str,
    problems: &mut Vec<String>,
) -> Result<(), String> {
    let map = section(doc, "## Code map").ok_or("ARCHITECTURE.md has no `## Code map` section")?;
    let headings: Vec<&str> = map.lines().filter(|l| l.starts_with("### ")).collect();
    for p in packages {
        let named = format!("`{}", p.dir);
        if !headings.iter().any(|h| h.contains(&named)) {
            problems.push(format!(
                "the code map has no `### `{}`...` section for `{}`",
                p.dir, p.name
            ));
        }
    }
    let bench = root.join("crates/bench/src");
    let entries =
        std::fs::read_dir(&bench).map_err(|e| format!("cannot list {}: {e}", bench.display()))?;
    let mut files: Vec<String> = entries
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|f| f.ends_with(".rs") && f != "lib.rs")
        .collect();
    files.sort();
    for file in files {
        if !map.contains(&format!("`{file}`")) {
            problems.push(format!(
                "the code map does not name crates/bench/src/{file}"
            ));
        }
    }
    Ok(())
}

/// The text of the `## ` section `heading`, up to the next `## `.
fn section<'d>(doc: &'d str, heading: &str) -> Option<&'d str> {
    let start = doc.find(&format!("\n{heading}\n"))? + 1;
    let body = &doc[start + heading.len()..];
    let end = body.find("\n## ").map_or(body.len(), |i| i + 1);
    Some(&body[..end])
}

/// The `backticked` words of `text`.
fn backticked(text: &str) -> impl Iterator<Item = &str> {
    text.split('`').skip(1).step_by(2)
}

#[cfg(test)]
mod tests {
    use super::*;

    const DOC: &str = "# A\n\n## Code map\n\n### `crates/a` — a\n\n### `crates/b` — b\n\n## Dependency rule\n\n| layer | packages | what |\n|---|---|---|\n| 0 base | `a` | the base |\n| 1 top | `b` | the top |\n\nNormal dependencies on `botfleet-testkit`: `b`.\n\n## Other\n";

    fn package(name: &str, deps: &[(&str, &str)]) -> Package {
        Package {
            name: name.to_owned(),
            dir: format!("crates/{name}"),
            deps: deps
                .iter()
                .map(|(d, k)| ((*d).to_owned(), (*k).to_owned()))
                .collect(),
            optional: Vec::new(),
        }
    }

    #[test]
    fn the_lean_build_reaches_neither_testkit_nor_benchmarks() {
        let mut binary = package(BINARY, &[("botfleet-bench", "normal"), ("lib", "normal")]);
        let lib = package("lib", &[]);
        let bench = package("botfleet-bench", &[(TESTKIT, "normal")]);
        let mut problems = Vec::new();
        check_lean_build(&[binary.clone(), lib.clone(), bench.clone()], &mut problems);
        assert_eq!(problems.len(), 2, "{problems:?}");
        binary.optional.push("botfleet-bench".to_owned());
        let mut problems = Vec::new();
        check_lean_build(&[binary, lib, bench], &mut problems);
        assert!(problems.is_empty(), "{problems:?}");
        // A library that pulls the testkit in normally is caught too.
        let binary = package(BINARY, &[("lib", "normal")]);
        let lib = package("lib", &[(TESTKIT, "normal")]);
        let mut problems = Vec::new();
        check_lean_build(&[binary, lib], &mut problems);
        assert_eq!(problems.len(), 1, "{problems:?}");
    }

    #[test]
    fn a_dependency_upwards_or_sideways_is_reported() {
        let layers = layers(DOC).unwrap();
        let mut problems = Vec::new();
        check_layers(
            &[
                package("a", &[("b", "normal")]),
                package("b", &[("a", "normal")]),
            ],
            &layers,
            &mut problems,
        );
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(problems[0].contains("`a` (layer 0 base) depends on `b`"));
        // A dev-dependency may go anywhere.
        let mut problems = Vec::new();
        check_layers(&[package("a", &[("b", "dev")])], &layers, &mut problems);
        assert!(
            problems.iter().all(|p| !p.contains("depends on")),
            "{problems:?}"
        );
    }

    #[test]
    fn a_package_in_no_layer_and_a_layer_naming_no_package_are_reported() {
        let layers = layers(DOC).unwrap();
        let mut problems = Vec::new();
        check_layers(
            &[package("a", &[]), package("c", &[])],
            &layers,
            &mut problems,
        );
        assert!(
            problems
                .iter()
                .any(|p| p.contains("`c` (crates/c) is in no layer"))
        );
        assert!(problems.iter().any(|p| p.contains("lists `b`")));
    }

    #[test]
    fn the_testkit_is_a_dev_dependency_but_where_allowed() {
        let mut problems = Vec::new();
        check_testkit(
            &[
                package("a", &[(TESTKIT, "normal")]),
                package("b", &[(TESTKIT, "normal")]),
                package("c", &[(TESTKIT, "dev")]),
            ],
            DOC,
            &mut problems,
        );
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(problems[0].starts_with("`a` has `botfleet-testkit`"));
    }

    #[test]
    fn sections_end_at_the_next_heading() {
        let rule = section(DOC, RULE_HEADING).unwrap();
        assert!(rule.contains("| 1 top |") && !rule.contains("## Other"));
        assert!(section(DOC, "## Missing").is_none());
    }
}
