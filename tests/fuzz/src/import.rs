//! The PM2 importer: arbitrary text read as a `.json` and as a `.yaml`
//! PM2 file, and every value that parses converted to `ecosystem.toml`.
//!
//! Properties: every error and every note is one line naming the file or
//! the app key; the TOML printed is one `supctl check` accepts (problems
//! with paths that do not exist on this machine aside: the importer keeps
//! them as PM2 had them).

use std::path::Path;

use serde_json::Value;
use supd_config::{LoadOptions, load_str};
use supd_import::{convert, parse_text};

/// The name the file is given (the importer only shows it).
const LABEL: &str = "pm2.config";
/// The file's folder; it does not exist, so nothing on the fuzzing
/// machine is found by chance.
const BASE: &str = "/nonexistent/supd-fuzz";

/// Checks one input; panics on a broken property.
pub fn check(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    for json in [true, false] {
        match parse_text(text, json, LABEL) {
            Ok(value) => check_convert(&value),
            Err(e) => assert!(format!("{e:#}").starts_with(LABEL), "{e:#}"),
        }
    }
}

/// Converts `value`; checks the notes and errors, and the TOML with the
/// loader.
fn check_convert(value: &Value) {
    let (toml, notes) = match convert(value, LABEL, Path::new(BASE)) {
        Ok(converted) => converted,
        Err(e) => {
            let shown = format!("{e:#}");
            assert!(shown.starts_with(LABEL), "{shown}");
            assert_eq!(shown.lines().count(), 1, "{shown}");
            return;
        }
    };
    for note in &notes {
        assert_eq!(note.lines().count(), 1, "a note of several lines: {note:?}");
    }
    let file = Path::new(BASE).join("ecosystem.toml");
    if let Err(e) = load_str(&toml, &file, &LoadOptions::default()) {
        let refused: Vec<_> = e
            .problems
            .iter()
            .filter(|p| {
                !p.message.contains("does not exist") && !p.message.contains("not a folder")
            })
            .collect();
        assert!(
            refused.is_empty(),
            "the imported file fails check:\n{e}\n---\n{toml}"
        );
    }
}
