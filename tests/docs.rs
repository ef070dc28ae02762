//! The guide shows only commands supctl accepts: every `supctl …` line of a
//! code block in README.md and docs/ is parsed by the real binary.

use std::path::{Path, PathBuf};

use crate::support::bin;

/// The `supctl` command lines of the shell blocks (`sh`, `console`) of one
/// Markdown file: a line starting with `supctl`, `$ supctl` or `sudo
/// supctl`, cut at a comment, a pipe, a redirection or `&&` (whose right
/// side is taken too).
fn commands(path: &Path) -> Vec<String> {
    let text = std::fs::read_to_string(path).unwrap();
    let mut block: Option<&str> = None;
    let mut found = Vec::new();
    for line in text.lines() {
        if let Some(fence) = line.trim_start().strip_prefix("```") {
            block = if block.is_some() { None } else { Some(fence) };
            continue;
        }
        if !matches!(block, Some("sh" | "console")) {
            continue;
        }
        let line = line
            .trim()
            .trim_start_matches("$ ")
            .trim_start_matches("sudo ");
        if !line.starts_with("supctl ") {
            continue;
        }
        let line = line.split(" #").next().unwrap();
        for part in line.split("&&") {
            let part = part.split(['|', '>']).next().unwrap().trim();
            let part = part.trim_start_matches("sudo ");
            if let Some(args) = part.strip_prefix("supctl ") {
                found.push(args.trim().to_string());
            }
        }
    }
    found
}

fn guide() -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let mut files = vec![root.join("README.md")];
    let mut docs: Vec<PathBuf> = std::fs::read_dir(root.join("docs"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "md"))
        .collect();
    docs.sort();
    files.extend(docs);
    files
}

#[test]
fn every_documented_command_parses() {
    let home = tempfile::tempdir().unwrap();
    let home = home.path().join("never-created");
    let mut checked = 0;
    for file in guide() {
        for args in commands(&file) {
            let mut words =
                shlex::split(&args).unwrap_or_else(|| panic!("{}: {args}", file.display()));
            // `--help` after supctl's own words makes clap check them and
            // stop there: nothing runs, no daemon starts. (After `--` it
            // would be an argument of the program to start.)
            let end = words.iter().position(|w| w == "--").unwrap_or(words.len());
            words.insert(end, "--help".into());
            let out = std::process::Command::new(bin("supctl"))
                .args(&words)
                .env("SUPD_HOME", &home)
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "{}: `supctl {args}` is not a valid command: {}",
                file.display(),
                String::from_utf8_lossy(&out.stderr)
            );
            checked += 1;
        }
    }
    assert!(checked > 30, "only {checked} commands found in the guide");
    assert!(
        !home.exists(),
        "a documented command ran instead of being parsed"
    );
}
