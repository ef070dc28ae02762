//! `supctl update` from the release before this build: the handover it
//! writes must be one this build takes over. The fixture is a real
//! handover.json written by that release's daemon (a cluster app with a
//! port, a fork app restarted once, a stopped app, an app waiting to
//! restart), captured from its `--handover-check` step.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::support::{Supd, bin};

fn previous() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/handover/previous.json")
}

/// Runs `supd --handover-check FILE`: success, and what it said.
fn check(file: &Path) -> (bool, String) {
    let out = Command::new(bin("supd"))
        .arg("--handover-check")
        .arg(file)
        .output()
        .unwrap();
    let said =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    (out.status.success(), said.trim().to_string())
}

#[test]
fn the_previous_release_handover_is_taken_over() {
    let (ok, said) = check(&previous());
    assert!(ok, "{said}");
    assert!(said.contains("(handover format 1)"), "{said}");

    // The check reads every record: one it cannot read is refused, in one
    // line that names the file.
    let supd = Supd::new();
    let text = std::fs::read_to_string(previous()).unwrap();
    assert!(
        text.contains("\"waiting-restart\""),
        "the fixture has every kind of record"
    );
    let mangled = supd.write(
        "mangled.json",
        &text.replace("\"waiting-restart\"", "\"asleep\""),
    );
    let (ok, said) = check(&mangled);
    assert!(!ok, "{said}");
    assert!(
        said.contains("mangled.json") && said.lines().count() == 1,
        "{said}"
    );
}
