//! The ecosystem loader: arbitrary text loaded as an `ecosystem.toml`.
//!
//! Properties: a file that loads gives apps and a `[daemon]` table the
//! daemon accepts over the wire (what `check` passes, `start` can send);
//! a file that does not gives at least one problem, each rendered as one
//! `file:line:column: message` line whose place is inside the text.

use std::path::Path;

use supd_config::{ConfigError, LoadOptions, load_str};

/// The name problems carry; its folder does not exist, so relative paths
/// resolve without touching the fuzzing machine's files.
const FILE: &str = "/nonexistent/supd-fuzz/ecosystem.toml";

/// Checks one input; panics on a broken property.
pub fn check(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let opts = LoadOptions {
        env: Some("production".to_owned()),
        only: None,
    };
    match load_str(text, Path::new(FILE), &opts) {
        Ok(eco) => {
            assert!(!eco.apps.is_empty(), "a file with no app loaded");
            for app in &eco.apps {
                if let Err(e) = app.validate() {
                    panic!("app {:?} loaded but the daemon refuses it: {e}", app.name);
                }
            }
            if let Err(e) = eco.daemon.validate() {
                panic!("[daemon] loaded but the daemon refuses it: {e}");
            }
        }
        Err(e) => check_problems(text, &e),
    }
}

/// Each problem is one line, placed inside `text` (or nowhere: line 0).
fn check_problems(text: &str, e: &ConfigError) {
    assert!(!e.problems.is_empty(), "an error without a problem");
    let shown = e.to_string();
    assert_eq!(shown.lines().count(), e.problems.len(), "{shown}");
    let lines: Vec<&str> = text.split('\n').collect();
    for (problem, line) in e.problems.iter().zip(shown.lines()) {
        let place = format!("{FILE}:{}:{}: ", problem.line, problem.column);
        assert!(
            line.starts_with(&place),
            "{line:?} does not start with {place:?}"
        );
        assert!(
            !problem.message.trim().is_empty(),
            "an empty message: {line:?}"
        );
        assert!(
            !problem.message.contains(['\n', '\r']),
            "{:?}",
            problem.message
        );
        if problem.line == 0 {
            assert_eq!(problem.column, 0, "{line:?}");
            continue;
        }
        let Some(at) = lines.get(problem.line - 1) else {
            panic!("{line:?}: the text has {} lines", lines.len());
        };
        let columns = at.chars().count() + 1;
        assert!(
            (1..=columns).contains(&problem.column),
            "{line:?}: line {} has {columns} columns",
            problem.line
        );
    }
}
