//! The real software the tests run, installed by the tests themselves so the
//! README's test command works on a fresh machine: Express and Fastify with
//! `npm ci`, gunicorn, uvicorn, Flask and Starlette with pip into a venv.
//!
//! Each kind is installed once per target folder, into
//! `target/real-apps/<kind>/`, from the pinned manifests of
//! `tests/fixtures/realapps/` (`package.json` + `package-lock.json`,
//! `requirements.txt`). An exclusive file lock (`<kind>.lock`) makes the
//! tests of this binary, and any other process that installs the same cache
//! (the keep-alive benchmark does, see `tests/bench/benchlib.py`), wait for
//! one install instead of racing. The manifests' contents, written into
//! `<kind>/.installed` last, mark a finished install: a changed pin or an
//! interrupted install installs again. A failed install fails the test with
//! the command's output.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use nix::fcntl::{Flock, FlockArg};

use crate::support::wait_for;

/// How long one install command may take (a slow registry, a cold cache).
const COMMAND_LIMIT: Duration = Duration::from_secs(600);

/// How long a test waits for another process's install to finish.
const LOCK_LIMIT: Duration = Duration::from_secs(1200);

/// The folder of the real apps and their manifests.
pub fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/realapps")
}

/// Express and Fastify: the `node_modules` folder to put on `NODE_PATH`.
pub fn node() -> PathBuf {
    let dir = cached(
        "node",
        &fixtures(),
        &["package.json", "package-lock.json"],
        |dir| {
            for manifest in ["package.json", "package-lock.json"] {
                std::fs::copy(fixtures().join(manifest), dir.join(manifest))
                    .map_err(|e| format!("copy {manifest}: {e}"))?;
            }
            run(Command::new("npm")
                .args(["ci", "--no-audit", "--no-fund", "--loglevel=error"])
                .current_dir(dir))
        },
    );
    dir.join("node_modules")
}

/// gunicorn, uvicorn, Flask and Starlette: the venv's `bin` folder.
pub fn python() -> PathBuf {
    venv("python", &fixtures())
}

/// A venv of the pinned `requirements.txt` in `folder`, installed into
/// `target/real-apps/<kind>/venv`: its `bin` folder.
pub fn venv(kind: &str, folder: &Path) -> PathBuf {
    let requirements = folder.join("requirements.txt");
    let dir = cached(kind, folder, &["requirements.txt"], |dir| {
        let venv = dir.join("venv");
        run(Command::new("python3").args(["-m", "venv"]).arg(&venv))?;
        run(Command::new(venv.join("bin/pip"))
            .args(["install", "--no-input", "--disable-pip-version-check", "-r"])
            .arg(&requirements))
    });
    dir.join("venv/bin")
}

/// `target/real-apps/<kind>`, installed by `install` (given the empty
/// folder) unless a finished install of the same `manifests` (in `folder`)
/// is there.
pub fn cached(
    kind: &str,
    folder: &Path,
    manifests: &[&str],
    install: impl FnOnce(&Path) -> Result<(), String>,
) -> PathBuf {
    let root = cache_root();
    std::fs::create_dir_all(&root).unwrap();
    let dir = root.join(kind);
    let _lock = lock(&root.join(format!("{kind}.lock")));
    let wanted: String = manifests
        .iter()
        .map(|m| std::fs::read_to_string(folder.join(m)).unwrap())
        .collect();
    let stamp = dir.join(".installed");
    if std::fs::read_to_string(&stamp).is_ok_and(|s| s == wanted) {
        return dir;
    }
    if dir.exists() {
        std::fs::remove_dir_all(&dir).unwrap();
    }
    std::fs::create_dir_all(&dir).unwrap();
    if let Err(e) = install(&dir) {
        panic!(
            "installing the real apps ({kind}) into {} failed: {e}",
            dir.display()
        );
    }
    std::fs::write(&stamp, wanted).unwrap();
    dir
}

/// `target/real-apps`: beside the profile folders of the target folder this
/// test binary was built in (`target/<profile>/deps/e2e-HASH`).
fn cache_root() -> PathBuf {
    let exe = std::env::current_exe().expect("current_exe");
    let target = exe
        .ancestors()
        .nth(3)
        .expect("the test binary is in target/<profile>/deps");
    target.join("real-apps")
}

/// Holds the exclusive lock on `path` (created if missing), waiting for
/// another installer at most [`LOCK_LIMIT`]. Released when dropped.
fn lock(path: &Path) -> Flock<File> {
    let mut file = Some(File::create(path).unwrap());
    wait_for(
        LOCK_LIMIT,
        "another install of the real apps",
        || match Flock::lock(file.take()?, FlockArg::LockExclusiveNonblock) {
            Ok(lock) => Some(lock),
            Err((f, _)) => {
                file = Some(f);
                None
            }
        },
    )
}

/// Runs an install command to completion within [`COMMAND_LIMIT`]; its
/// output in the error when it fails or overruns.
pub fn run(cmd: &mut Command) -> Result<(), String> {
    use std::io::{Read, Seek};
    let shown = format!("{cmd:?}");
    let mut out = tempfile::tempfile().map_err(|e| e.to_string())?;
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(out.try_clone().map_err(|e| e.to_string())?)
        .stderr(out.try_clone().map_err(|e| e.to_string())?)
        .spawn()
        .map_err(|e| format!("{shown}: {e}"))?;
    let deadline = Instant::now() + COMMAND_LIMIT;
    let status = loop {
        if let Some(status) = child.try_wait().map_err(|e| e.to_string())? {
            break Some(status);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let mut output = String::new();
    let _ = out.rewind().and_then(|()| out.read_to_string(&mut output));
    match status {
        Some(s) if s.success() => Ok(()),
        Some(s) => Err(format!("{shown} failed ({s}):\n{output}")),
        None => Err(format!(
            "{shown} did not finish within {COMMAND_LIMIT:?}:\n{output}"
        )),
    }
}
