//! The shape docs/architecture.md promises, checked on the source itself:
//! the daemon's modules depend one way (no import circle), and no source
//! file is much over 400 lines, tests aside.
//!
//! A module depends on another when its code (not its comments, not its
//! `#[cfg(test)] mod tests`) names `crate::other`; a module is a top-level
//! file or folder of `crates/supd/src` with everything under it.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// "About 400 lines": what the longest file may hold before its tests.
const MOST_LINES: usize = 430;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Every `.rs` file under `dir`.
fn sources(dir: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(dir) = todo.pop() {
        for entry in std::fs::read_dir(&dir).unwrap().flatten() {
            let path = entry.path();
            if path.is_dir() {
                todo.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                found.push(path);
            }
        }
    }
    found.sort();
    found
}

/// A file's lines before its unit tests (`#[cfg(test)]` then `mod tests`).
fn before_tests(path: &Path) -> Vec<String> {
    let text = std::fs::read_to_string(path).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    let end = lines
        .windows(2)
        .position(|w| w[0].starts_with("#[cfg(test)]") && w[1].starts_with("mod tests"))
        .unwrap_or(lines.len());
    lines[..end].iter().map(|l| l.to_string()).collect()
}

/// A file's code before its unit tests, without comment lines.
fn code(path: &Path) -> Vec<String> {
    before_tests(path)
        .into_iter()
        .filter(|l| !l.trim_start().starts_with("//"))
        .collect()
}

/// The modules `line` names as `crate::x` or in `crate::{x, y::z}`.
fn named(line: &str) -> Vec<String> {
    let mut names = Vec::new();
    for (at, _) in line.match_indices("crate::") {
        let rest = &line[at + "crate::".len()..];
        if let Some(group) = rest.strip_prefix('{') {
            // The group's text at its own depth: nested groups left out.
            let mut depth = 0;
            let mut flat = String::new();
            for c in group.chars() {
                match c {
                    '{' => depth += 1,
                    '}' if depth == 0 => break,
                    '}' => depth -= 1,
                    c if depth == 0 => flat.push(c),
                    _ => {}
                }
            }
            for item in flat.split(',') {
                names.push(item.trim().split("::").next().unwrap_or("").to_string());
            }
        } else {
            let name: String = rest
                .chars()
                .take_while(|c| c.is_ascii_lowercase() || *c == '_' || c.is_ascii_digit())
                .collect();
            names.push(name);
        }
    }
    names.retain(|n| !n.is_empty());
    names
}

/// The daemon's module graph: each top-level module and those it names.
fn module_graph() -> BTreeMap<String, BTreeSet<String>> {
    let src = root().join("crates/supd/src");
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for path in sources(&src) {
        let relative = path.strip_prefix(&src).unwrap();
        let first = relative.components().next().unwrap();
        let module = first.as_os_str().to_str().unwrap().trim_end_matches(".rs");
        if module == "main" {
            continue;
        }
        let deps = graph.entry(module.to_string()).or_default();
        for line in code(&path) {
            deps.extend(named(&line).into_iter().filter(|n| n != module));
        }
    }
    let modules: BTreeSet<String> = graph.keys().cloned().collect();
    for deps in graph.values_mut() {
        deps.retain(|d| modules.contains(d));
    }
    graph
}

/// A circle through `from`, if one exists: the path back to it.
fn circle_through(graph: &BTreeMap<String, BTreeSet<String>>, from: &str) -> Option<Vec<String>> {
    let mut todo = vec![vec![from.to_string()]];
    let mut seen = BTreeSet::new();
    while let Some(path) = todo.pop() {
        for next in &graph[path.last().unwrap()] {
            if next == from {
                let mut circle = path.clone();
                circle.push(from.to_string());
                return Some(circle);
            }
            if seen.insert(next.clone()) {
                let mut longer = path.clone();
                longer.push(next.clone());
                todo.push(longer);
            }
        }
    }
    None
}

#[test]
fn the_daemons_modules_depend_one_way() {
    let graph = module_graph();
    assert!(graph.len() > 10, "modules found: {graph:?}");
    assert!(graph["control"].contains("registry"), "{graph:?}");
    let circles: Vec<String> = graph
        .keys()
        .filter_map(|m| circle_through(&graph, m))
        .map(|c| c.join(" -> "))
        .collect();
    assert!(
        circles.is_empty(),
        "import circles among crates/supd/src's modules:\n{}",
        circles.join("\n")
    );
}

#[test]
fn the_module_reader_sees_every_form_of_a_path() {
    assert_eq!(named("use crate::app::{AppHandle, Launch};"), ["app"]);
    assert_eq!(
        named("use crate::{home::sibling, logs, state::StateFile};"),
        ["home", "logs", "state"]
    );
    assert_eq!(
        named("use crate::{app::{AppView, Launch}, dump};"),
        ["app", "dump"]
    );
    assert_eq!(named("    crate::pid_file::write(&c, 0, 1);"), ["pid_file"]);
    assert!(named("use super::Command;").is_empty());
}

#[test]
fn no_source_file_is_much_over_400_lines_before_its_tests() {
    let root = root();
    let long: Vec<String> = sources(&root.join("crates"))
        .into_iter()
        .filter(|p| !p.components().any(|c| c.as_os_str() == "tests"))
        .filter(|p| !p.ends_with("tests.rs"))
        .filter_map(|p| {
            let lines = before_tests(&p).len();
            let name = p.strip_prefix(&root).unwrap_or(&p).display().to_string();
            (lines > MOST_LINES).then(|| format!("{name}: {lines} lines"))
        })
        .collect();
    assert!(
        long.is_empty(),
        "files over {MOST_LINES} lines:\n{}",
        long.join("\n")
    );
}
