//! How PM2 runs an app's `script`, as pure rules taken from PM2's own
//! source (`lib/Common.js`): a script with a space is a command line run
//! by `bash -c` (`verifyConfs`); the interpreter comes from the extension,
//! else `node` for any text file, else none (`resolveInterpreter`); and an
//! app with `instances` whose interpreter is Node (or Bun) and no
//! `exec_mode` is cluster mode (`determineExecMode`).

use std::io::Read;
use std::path::{Path, PathBuf};

/// The shell PM2 runs a command line with: `bash` when it is in PATH, else
/// `sh`.
pub fn shell() -> &'static str {
    if in_path("bash").is_some() {
        "bash"
    } else {
        "sh"
    }
}

/// Whether PM2 runs `script` as a command line (it holds a space).
pub fn is_command_line(script: &str) -> bool {
    script.contains(' ')
}

/// The interpreter PM2 picks for `script` when none is written: by the
/// extension; else, for a file that exists (`found`: the local file, or the
/// command found in PATH), `node` unless the file is binary. One exception:
/// a file whose `#!` line names another interpreter runs as itself (PM2
/// would hand a shell script to node, which fails).
pub fn default_interpreter(script: &str, found: Option<&Path>) -> Option<&'static str> {
    let by_ext = Path::new(script)
        .extension()
        .and_then(|e| e.to_str())
        .and_then(|ext| {
            Some(match ext {
                "js" | "cjs" | "mjs" => "node",
                "ts" => "ts-node",
                "coffee" => "coffee",
                "py" => "python3",
                "sh" => "bash",
                "rb" => "ruby",
                "php" => "php",
                "pl" => "perl",
                _ => return None,
            })
        });
    by_ext.or_else(|| found.filter(|f| node_text(f)).map(|_| "node"))
}

/// PM2's rule for cluster mode: `exec_mode` when written; else cluster when
/// `instances` is ≥ 1, 0 ("max") or -1 and the interpreter is Node or Bun.
pub fn pm2_cluster(
    exec_mode: Option<bool>,
    instances: Option<i64>,
    interpreter: Option<&str>,
) -> bool {
    if let Some(cluster) = exec_mode {
        return cluster;
    }
    let has_instances = matches!(instances, Some(n) if n >= 1 || n == 0 || n == -1);
    has_instances && interpreter.is_some_and(|i| i.contains("node") || i.contains("bun"))
}

/// `command` looked up in PATH, as PM2's `which` does.
pub fn in_path(command: &str) -> Option<PathBuf> {
    if command.contains('/') {
        return None;
    }
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|dir| dir.join(command))
        .find(|p| p.is_file())
}

/// Whether PM2 would run the file with node: text (its first kilobyte
/// holds no NUL byte, else it is a compiled program) without a `#!` line
/// naming another interpreter.
fn node_text(file: &Path) -> bool {
    let mut head = [0u8; 1024];
    let Ok(n) = std::fs::File::open(file).and_then(|mut f| f.read(&mut head)) else {
        return false;
    };
    let head = &head[..n];
    let first = head.split(|b| *b == b'\n').next().unwrap_or_default();
    !head.contains(&0) && (!first.starts_with(b"#!") || first.windows(4).any(|w| w == b"node"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pm2s_cluster_rule() {
        let node = Some("node");
        for (exec_mode, instances, interpreter, cluster) in [
            (None, Some(4), node, true),
            (None, Some(1), node, true),
            (None, Some(0), node, true),
            (None, Some(-1), node, true),
            (None, Some(-2), node, false),
            (None, None, node, false),
            (None, Some(4), Some("bun"), true),
            (None, Some(4), Some("/usr/bin/nodejs"), true),
            (None, Some(4), Some("python3"), false),
            (None, Some(4), None, false),
            (Some(false), Some(4), node, false),
            (Some(true), None, Some("python3"), true),
        ] {
            assert_eq!(
                pm2_cluster(exec_mode, instances, interpreter),
                cluster,
                "{exec_mode:?} {instances:?} {interpreter:?}"
            );
        }
    }

    #[test]
    fn interpreters_by_extension_and_content() {
        let dir = std::env::temp_dir().join(format!("supd-import-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let text = dir.join("www");
        std::fs::write(&text, "#!/usr/bin/env node\nrequire('../app')\n").unwrap();
        let shell = dir.join("run");
        std::fs::write(&shell, "#!/bin/sh\nexec sleep 60\n").unwrap();
        let bin = dir.join("server");
        std::fs::write(&bin, b"\x7fELF\x02\x01\x01\0\0\0").unwrap();
        for (script, found, interpreter) in [
            ("app.js", None, Some("node")),
            ("app.mjs", None, Some("node")),
            ("worker.py", None, Some("python3")),
            ("run.sh", None, Some("bash")),
            ("bin/www", Some(text.as_path()), Some("node")),
            ("server", Some(bin.as_path()), None),
            ("run", Some(shell.as_path()), None),
            ("missing", None, None),
        ] {
            assert_eq!(default_interpreter(script, found), interpreter, "{script}");
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn command_lines() {
        assert!(is_command_line("npm run start:prod"));
        assert!(is_command_line("node server.js"));
        assert!(!is_command_line("./server.js"));
    }
}
