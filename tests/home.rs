//! A home we own, or nothing; and failures that are loud (issue 15,
//! findings 2 and 5): a `SUPD_HOME` another user owns or anyone can write is
//! refused, nothing in it is followed through a symbolic link, and a state
//! file, a flush or a log write that fails says so instead of passing for a
//! success.

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt, symlink};
use std::path::Path;
use std::time::Duration;

use crate::support::{Supd, Tmpfs, wait_for};

/// A file outside the home that nothing supd does may change.
fn precious(supd: &Supd) -> std::path::PathBuf {
    supd.write("precious.txt", "precious\n")
}

fn mode(path: &Path) -> u32 {
    fs::metadata(path).unwrap().mode() & 0o7777
}

/// How a test spoils a home: what it does, how, and the fix the refusal names.
type Spoil = (&'static str, fn(&Path), &'static str);

#[test]
fn a_home_another_user_owns_or_anyone_can_write_is_refused() {
    let refusals: [Spoil; 2] = [
        (
            "owned by uid 65534",
            |home| std::os::unix::fs::chown(home, Some(65534), Some(65534)).unwrap(),
            "chown",
        ),
        (
            "world-writable",
            |home| fs::set_permissions(home, fs::Permissions::from_mode(0o777)).unwrap(),
            "chmod 700",
        ),
    ];
    for (what, setup, fix) in refusals {
        let supd = Supd::new();
        let home = supd.home();
        fs::create_dir(&home).unwrap();
        setup(&home);
        let err = supd.fails(&["ping"]);
        assert!(
            err.contains(&home.display().to_string()) && err.contains(fix),
            "a home {what}: {err}"
        );
        assert!(!home.join("supd.sock").exists(), "a home {what} was used");
        assert!(!home.join("logs").exists(), "a home {what} was used");
    }
}

#[test]
fn a_symlinked_home_is_checked_at_its_target_and_never_chmoded() {
    let supd = Supd::new();
    let target = supd.work().join("real-home");
    fs::create_dir(&target).unwrap();
    fs::set_permissions(&target, fs::Permissions::from_mode(0o755)).unwrap();
    symlink(&target, supd.home()).unwrap();
    supd.ok(&["ping"]);
    assert!(target.join("supd.sock").exists(), "the target is the home");
    assert_eq!(mode(&target), 0o755, "the target was chmod'ed");

    // A target anyone can write is refused, and left as it is.
    let open = Supd::new();
    let target = open.work().join("open-home");
    fs::create_dir(&target).unwrap();
    fs::set_permissions(&target, fs::Permissions::from_mode(0o777)).unwrap();
    symlink(&target, open.home()).unwrap();
    let err = open.fails(&["ping"]);
    assert!(err.contains("writable by group or others"), "{err}");
    assert_eq!(mode(&target), 0o777);
}

#[test]
fn a_log_file_or_folder_planted_as_a_symlink_is_never_followed() {
    let supd = Supd::new();
    supd.ok(&["ping"]);
    let outside = precious(&supd);
    let logs = supd.home().join("logs");
    fs::create_dir_all(&logs).unwrap();
    let talk = supd.script("talk.sh", "echo 'to the log'; exec sleep 300");
    let talk = talk.to_str().unwrap();

    symlink(&outside, logs.join("evil-out.log")).unwrap();
    let err = supd.fails(&["start", talk, "--name", "evil"]);
    assert!(
        err.contains("app \"evil\"") && err.contains("evil-out.log is a symbolic link"),
        "{err}"
    );
    supd.ok(&["flush"]);
    assert_eq!(fs::read_to_string(&outside).unwrap(), "precious\n");

    // The logs folder itself replaced by a link to another folder.
    let elsewhere = supd.work().join("elsewhere");
    fs::create_dir(&elsewhere).unwrap();
    fs::remove_dir_all(&logs).unwrap();
    symlink(&elsewhere, &logs).unwrap();
    let err = supd.fails(&["start", talk, "--name", "moved"]);
    assert!(err.contains("logs is a symbolic link"), "{err}");
    assert_eq!(fs::read_dir(&elsewhere).unwrap().count(), 0);
}

#[test]
fn supctl_logs_refuses_a_planted_symlink() {
    let supd = Supd::new();
    let talk = supd.script("talk.sh", "echo 'to the log'; exec sleep 300");
    supd.ok(&["start", talk.to_str().unwrap(), "--name", "talk"]);
    let log = supd.home().join("logs/talk-out.log");
    wait_for(Duration::from_secs(10), "the line logged", || {
        fs::read_to_string(&log)
            .ok()?
            .contains("to the log")
            .then_some(())
    });
    let secret = supd.write("secret.txt", "a secret line\n");
    fs::remove_file(&log).unwrap();
    symlink(&secret, &log).unwrap();
    let out = supd.run(&["logs", "talk", "--out", "--nostream"]);
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert!(!stdout.contains("a secret line"), "{stdout}");
    assert!(
        !out.status.success() && stderr.contains("talk-out.log is a symbolic link"),
        "{stderr}"
    );
}

#[test]
fn a_state_file_that_cannot_be_written_fails_the_command_that_changed_the_apps() {
    let supd = Supd::new();
    supd.ok(&["ping"]);
    // The temporary file the state is written to cannot be made.
    let blocker = supd.home().join("state.json.tmp");
    fs::create_dir(&blocker).unwrap();
    let err = supd.fails(&["start", "sleep", "--name", "unrecorded", "--", "300"]);
    assert!(
        err.contains("not recorded") && err.contains("state.json.tmp"),
        "{err}"
    );
    let daemon_log = fs::read_to_string(supd.home().join("supd.log")).unwrap();
    assert!(
        daemon_log.contains("cannot write the state file"),
        "{daemon_log}"
    );
    // Once it can be written again, the next change is recorded.
    fs::remove_dir(&blocker).unwrap();
    supd.ok(&["stop", "unrecorded"]);
    let state = fs::read_to_string(supd.home().join("state.json")).unwrap();
    assert!(state.contains("\"unrecorded\""), "{state}");
}

/// 3,000 lines of 100 bytes each (`line NNNNNN xxx…`), then quiet.
const FLOOD: &str = "i=0; pad=$(printf '%087d' 0 | tr 0 x); \
     while [ $i -lt 3000 ]; do printf 'line %06d %s\\n' $i \"$pad\"; i=$((i+1)); done; \
     exec sleep 300";

/// The number that ends right before `marker` in `text`.
fn number_before(text: &str, marker: &str) -> Option<u64> {
    let head = &text[..text.find(marker)?];
    let start = head
        .rfind(|c: char| !c.is_ascii_digit())
        .map_or(0, |i| i + 1);
    head[start..].parse().ok()
}

/// Every line of `text` is one the flood wrote, whole.
fn whole_lines(text: &str) -> bool {
    text.ends_with('\n')
        && text.lines().all(|l| {
            l.len() == 99
                && l.starts_with("line ")
                && l[5..11].bytes().all(|b| b.is_ascii_digit())
                && l[12..].bytes().all(|b| b == b'x')
        })
}

#[test]
fn a_full_disk_leaves_whole_lines_and_flush_says_what_it_could_not_do() {
    let supd = Supd::new();
    supd.ok(&["ping"]);
    let logs = supd.home().join("logs");
    let disk = Tmpfs::mount(&logs, "64k");
    let flood = supd.script("flood.sh", FLOOD);
    supd.ok(&["start", flood.to_str().unwrap(), "--name", "full"]);
    let current = logs.join("full-out.log");
    // Every line is either in the file or counted as dropped (in `show`
    // while the disk is full, in supd.log each time a line fits again):
    // once they add up, the log thread has read the whole flood.
    let problem = wait_for(
        Duration::from_secs(30),
        "every line written or dropped",
        || {
            let problem = supd.show("full")["log_problem"]
                .as_str()
                .unwrap_or_default()
                .to_string();
            let now: u64 = number_before(&problem, " lines dropped)").unwrap_or(0);
            let daemon_log = fs::read_to_string(supd.home().join("supd.log")).ok()?;
            let before: u64 = daemon_log
                .lines()
                .filter_map(|l| number_before(l, " lines were dropped"))
                .sum();
            let kept = fs::metadata(&current).ok()?.len() / 100;
            (now > 0 && now + before + kept == 3000).then_some(problem)
        },
    );
    assert!(problem.contains("No space left on device"), "{problem}");
    let text = fs::read_to_string(&current).unwrap();
    assert!(
        text.len() > 30_000 && whole_lines(&text),
        "{} bytes, ending {:?}",
        text.len(),
        &text[text.len().saturating_sub(120)..]
    );

    // A file flush cannot empty is named, and the command fails.
    let outside = precious(&supd);
    let aside = supd.work().join("full-out.log");
    fs::copy(&current, &aside).unwrap();
    fs::remove_file(&current).unwrap();
    symlink(&outside, &current).unwrap();
    let err = supd.fails(&["flush", "full"]);
    assert!(
        err.contains("app \"full\"") && err.contains("full-out.log is a symbolic link"),
        "{err}"
    );
    assert_eq!(fs::read_to_string(&outside).unwrap(), "precious\n");

    // The file back: flush empties it, although the disk was full.
    fs::remove_file(&current).unwrap();
    fs::copy(&aside, &current).unwrap();
    supd.ok(&["flush", "full"]);
    assert_eq!(
        fs::metadata(&current).unwrap().len(),
        0,
        "flushed, not emptied"
    );
    drop(disk);
}
