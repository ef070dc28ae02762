//! `out_file`, `error_file`, `log_file`, `pid_file` (PM2's keys): the files
//! are written where the file says (relative to the app's `cwd`), `logs`,
//! `flush` and `show` use them, they survive `update` and `resurrect`, and
//! a path that cannot be written is a clear error.

use std::path::Path;
use std::time::Duration;

use crate::support::{Supd, wait_for};

/// Waits until `path` holds a line equal to `line`.
fn wait_line(path: &Path, line: &str) {
    wait_for(
        Duration::from_secs(15),
        &format!("{line:?} in {}", path.display()),
        || {
            let text = std::fs::read_to_string(path).ok()?;
            text.lines().any(|l| l == line).then_some(())
        },
    );
}

/// The pid in a pid file.
fn pid_in(path: &Path) -> Option<u64> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

/// One line on each stream, then a line on stdout per second, forever.
const TALKER: &str = "echo \"out $INSTANCE_ID\"; echo \"err $INSTANCE_ID\" >&2\n\
                      n=0; while :; do sleep 0.2; n=$((n+1)); echo \"tick $INSTANCE_ID $n\"; done";

#[test]
fn a_fork_app_writes_its_files_where_configured() {
    let supd = Supd::new();
    let work = supd.work();
    let script = supd.script("talk.sh", TALKER);
    std::fs::create_dir(work.join("app")).unwrap();
    let file = supd.write(
        "eco.toml",
        &format!(
            "[[apps]]\nname = \"talk\"\nscript = \"{}\"\ncwd = \"app\"\n\
             out_file = \"logs/out.log\"\nerror_file = \"{}/err.log\"\n\
             log_file = \"all.log\"\npid_file = \"run/talk.pid\"\n",
            script.display(),
            work.display()
        ),
    );
    supd.ok(&["start", file.to_str().unwrap()]);
    // Relative to the app's cwd; missing folders made, as PM2 does.
    let (out, err, all) = (
        work.join("app/logs/out.log"),
        work.join("err.log"),
        work.join("app/all.log"),
    );
    wait_line(&out, "out 0");
    wait_line(&err, "err 0");
    wait_line(&all, "out 0");
    wait_line(&all, "err 0");
    assert!(!std::fs::read_to_string(&out).unwrap().contains("err 0"));
    assert!(
        !supd.home().join("logs/talk-out.log").exists(),
        "no default file"
    );

    // `logs` reads the configured files.
    let logs = supd.ok(&["logs", "talk", "--lines", "100", "--nostream"]);
    assert!(
        logs.contains("talk:0 | out 0") && logs.contains("talk:0 | err 0"),
        "{logs}"
    );
    let json = supd.ok(&["logs", "talk", "--err", "--json", "--nostream"]);
    let first: serde_json::Value = serde_json::from_str(json.lines().next().unwrap()).unwrap();
    assert_eq!(
        (first["message"].as_str(), first["instance"].as_u64()),
        (Some("err 0"), Some(0))
    );

    // The pid file (instance 0's, PM2's name) holds the pid `list` shows.
    let pid_file = work.join("app/run/talk-0.pid");
    let pid = supd.instance("talk", 0)["pid"].as_u64().unwrap();
    wait_for(Duration::from_secs(5), "the pid file", || {
        (pid_in(&pid_file) == Some(pid)).then_some(())
    });

    // `show` gives each key at its value.
    let show = supd.show("talk");
    let config = &show["config"];
    assert_eq!(config["out_file"], out.to_str().unwrap(), "{show}");
    assert_eq!(config["log_file"], all.to_str().unwrap());
    assert_eq!(
        config["pid_file"],
        work.join("app/run/talk.pid").to_str().unwrap()
    );
    let text = supd.ok(&["show", "talk"]);
    assert!(text.contains(&out.display().to_string()), "{text}");

    // `flush` empties every file, the combined one too.
    supd.ok(&["flush", "talk"]);
    for file in [&out, &err, &all] {
        let text = std::fs::read_to_string(file).unwrap();
        assert!(
            !text.contains("out 0") && !text.contains("err 0"),
            "{}: {text}",
            file.display()
        );
    }

    // An update in place keeps writing there, and the pid file stays.
    supd.ok(&["update"]);
    let n: u32 = wait_for(Duration::from_secs(10), "a tick after the update", || {
        let text = std::fs::read_to_string(&out).ok()?;
        text.lines().last()?.strip_prefix("tick 0 ")?.parse().ok()
    });
    wait_line(&out, &format!("tick 0 {}", n + 2));
    wait_line(&all, &format!("tick 0 {}", n + 2));
    assert_eq!(pid_in(&pid_file), Some(pid));

    // Gone once the instance has stopped.
    supd.ok(&["stop", "talk"]);
    assert!(!pid_file.exists(), "pid file removed at stop");

    // save / resurrect bring the keys back.
    supd.ok(&["save"]);
    supd.ok(&["kill"]);
    supd.ok(&["resurrect"]);
    assert_eq!(
        supd.show("talk")["config"]["out_file"],
        out.to_str().unwrap()
    );
}

#[test]
fn a_two_instance_app_writes_one_set_per_instance_or_merged() {
    let supd = Supd::new();
    let script = supd.script("talk.sh", TALKER);
    // merge_logs = false: `-N` before `.log` and `.pid`, as PM2 names them.
    supd.start_script(
        "split",
        &script,
        "exec_mode = \"fork\"\ninstances = 2\nmerge_logs = false\n\
         out_file = \"s.log\"\nerror_file = \"s-err.log\"\nlog_file = \"s-all.log\"\npid_file = \"s.pid\"\n",
    );
    let work = supd.work();
    for i in 0..2u64 {
        wait_line(&work.join(format!("s-{i}.log")), &format!("out {i}"));
        wait_line(&work.join(format!("s-err-{i}.log")), &format!("err {i}"));
        let all = work.join(format!("s-all-{i}.log"));
        wait_line(&all, &format!("out {i}"));
        wait_line(&all, &format!("err {i}"));
        let pid = supd.instance("split", i)["pid"].as_u64().unwrap();
        let pid_file = work.join(format!("s-{i}.pid"));
        wait_for(Duration::from_secs(5), "the pid file", || {
            (pid_in(&pid_file) == Some(pid)).then_some(())
        });
    }
    let logs = supd.ok(&["logs", "split", "--err", "--nostream"]);
    assert!(
        logs.contains("split:0 | err 0") && logs.contains("split:1 | err 1"),
        "{logs}"
    );

    // Merged (the default): one file for both instances, and `logs` still
    // knows whose each line is (the index beside the file).
    supd.start_script(
        "merged",
        &script,
        "exec_mode = \"fork\"\ninstances = 2\nout_file = \"m.log\"\npid_file = \"m.pid\"\n",
    );
    wait_line(&work.join("m.log"), "out 0");
    wait_line(&work.join("m.log"), "out 1");
    let json = supd.ok(&[
        "logs",
        "merged",
        "--out",
        "--json",
        "--lines",
        "1000",
        "--nostream",
    ]);
    for line in json.lines().filter(|l| l.contains("\"out ")) {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        assert_eq!(v["message"], format!("out {}", v["instance"]), "{line}");
    }
    supd.ok(&["stop", "all"]);
    for name in ["s-0.pid", "s-1.pid", "m-0.pid", "m-1.pid"] {
        assert!(!work.join(name).exists(), "{name} removed at stop");
    }
}

#[test]
fn a_path_that_cannot_be_written_is_a_clear_error() {
    let supd = Supd::new();
    let script = supd.script("talk.sh", TALKER);
    let dir = supd.work().join("locked");
    std::fs::create_dir(&dir).unwrap();
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o500)).unwrap();
    }
    // Root writes anywhere; /proc refuses everyone.
    let locked = if nix::unistd::Uid::effective().is_root() {
        Path::new("/proc/1").to_path_buf()
    } else {
        dir
    };
    let out = locked.join("out.log");
    let pid = locked.join("x.pid");
    for (key, path) in [("out_file", &out), ("pid_file", &pid)] {
        let file = supd.write(
            "bad.toml",
            &format!(
                "[[apps]]\nname = \"bad\"\nscript = \"{}\"\n{key} = \"{}\"\n",
                script.display(),
                path.display()
            ),
        );
        let err = supd.fails(&["start", file.to_str().unwrap()]);
        assert!(
            err.contains("app \"bad\"") && err.contains(&locked.display().to_string()),
            "{key}: {err}"
        );
        if key == "pid_file" {
            assert!(err.contains("pid_file"), "{err}");
        }
    }
    // The daemon is fine, and has no such app.
    supd.ok(&["ping"]);
    assert!(supd.list().is_empty());
    // A folder is refused by the file check, at its line and column.
    let file = supd.write(
        "folder.toml",
        &format!(
            "[[apps]]\nname = \"f\"\nscript = \"{}\"\nout_file = \".\"\n",
            script.display()
        ),
    );
    let err = supd.fails(&["start", file.to_str().unwrap()]);
    assert!(
        err.contains("folder.toml:4:12: apps[0].out_file:") && err.contains("is a folder"),
        "{err}"
    );
}
