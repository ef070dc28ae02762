//! `out_file`, `error_file`, `log_file`, `pid_file`: resolved against the
//! app's `cwd`, `NULL` is `/dev/null`, bad paths located.

use std::path::{Path, PathBuf};

use super::{File, app, problems};
use crate::{AppConfig, LoadOptions};

#[test]
fn file_keys_resolve_against_the_apps_cwd() {
    let file = File::new(
        "[[apps]]\nname = \"a\"\nscript = \"x\"\ncwd = \"svc\"\n\
         out_file = \"logs/out.log\"\nerror_file = \"/var/tmp/a-err.log\"\n\
         log_file = \"../all.log\"\npid_file = \"~/a.pid\"\n\
         [[apps]]\nname = \"b\"\nscript = \"x\"\nout_file = \"NULL\"\nerror_file = \"/dev/null\"\n\
         [[apps]]\nname = \"c\"\nscript = \"x\"\n",
    );
    let eco = file.load(&LoadOptions::default()).expect("valid");
    let dir = file.folder();
    let home = PathBuf::from(std::env::var_os("HOME").expect("HOME"));
    let a = &eco.apps[0];
    assert_eq!(a.out_file, Some(dir.join("svc/logs/out.log")));
    assert_eq!(
        a.error_file.as_deref(),
        Some(Path::new("/var/tmp/a-err.log"))
    );
    assert_eq!(a.log_file, Some(dir.join("all.log")));
    assert_eq!(a.pid_file, Some(home.join("a.pid")));
    let b = &eco.apps[1];
    assert_eq!(b.out_file.as_deref(), Some(Path::new("/dev/null")));
    assert_eq!(b.error_file.as_deref(), Some(Path::new("/dev/null")));
    let c = &eco.apps[2];
    assert!(c.out_file.is_none() && c.error_file.is_none());
    assert!(c.log_file.is_none() && c.pid_file.is_none());
    for app in &eco.apps {
        assert_eq!(app.validate(), Ok(()), "{}", app.name);
    }
}

#[test]
fn bad_file_paths_are_located() {
    let cases: &[(&str, &str)] = &[
        (
            "out_file = 3",
            "4:12: apps[0].out_file: expected a string, found an integer",
        ),
        (
            "error_file = \"\"",
            "4:14: apps[0].error_file: must not be empty",
        ),
        (
            "log_file = \"logs/\"",
            "4:12: apps[0].log_file: \"logs/\" names a folder; give a file name",
        ),
        (
            "pid_file = true",
            "4:12: apps[0].pid_file: expected a string, found a boolean",
        ),
        (
            "out_file = \"a.log\"\nerror_file = \"./a.log\"",
            "5:14: apps[0].error_file: {DIR}/a.log is also … (set log_file for one file with both streams)",
        ),
    ];
    for (extra, expected) in cases {
        let got = problems(&app(extra));
        assert_eq!(got.len(), 1, "{extra}: {got:?}");
        // The folder is a fresh temporary one; compare around it.
        let (head, tail) = expected.split_once("{DIR}").unwrap_or((expected, ""));
        let tail = tail.split_once('…').map_or(tail, |(_, t)| t);
        assert!(
            got[0].starts_with(head) && got[0].ends_with(tail),
            "{extra}: {got:?}"
        );
    }
    // A folder that exists is refused once resolved.
    let file = File::new(&app("out_file = \".\""));
    let err = file.load(&LoadOptions::default()).expect_err("a folder");
    assert_eq!(err.problems.len(), 1);
    let message = &err.problems[0].message;
    assert!(
        message.ends_with("is a folder; give a file name"),
        "{message}"
    );
    assert_eq!((err.problems[0].line, err.problems[0].column), (4, 12));
}

#[test]
fn instance_files_follow_pm2() {
    let cases = [
        ("/l/api.log", 1, "log", "/l/api-1.log"),
        ("/l/api-out", 0, "log", "/l/api-out-0"),
        ("/run/api.pid", 2, "pid", "/run/api-2.pid"),
        ("/run/api", 2, "pid", "/run/api-2"),
        ("/dev/null", 3, "log", "/dev/null"),
    ];
    for (path, instance, ext, expected) in cases {
        assert_eq!(
            AppConfig::instance_file(Path::new(path), instance, ext),
            Path::new(expected),
            "{path}"
        );
    }
}

#[test]
fn validate_wants_absolute_file_paths() {
    let mut app = AppConfig::with_defaults("a".into(), "x".into(), "/".into());
    app.pid_file = Some("a.pid".into());
    assert_eq!(
        app.validate(),
        Err("pid_file: \"a.pid\" is not an absolute path".into())
    );
}
