//! The instances' log pipes by name, and what of a pipe crosses an `update`.
//!
//! Each pipe is a FIFO named `<app>.<slot>.out|err` in `SUPD_HOME/run`
//! (unlinked once open): the name lets a restarted daemon tell, from
//! `/proc/PID/fd`, which app, instance and stream a surviving pipe belongs to.

use std::os::fd::RawFd;
use std::path::Path;

use serde::{Deserialize, Serialize};

/// Which of the two files.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Stream {
    /// stdout → `-out.log`.
    Out,
    /// stderr → `-err.log`.
    Err,
}

/// The name of an instance's pipe in [`crate::home::run_dir`]: `<app>.<slot>.out|err`.
pub fn pipe_name(app: &str, instance: u32, stream: Stream) -> String {
    let ext = match stream {
        Stream::Out => "out",
        Stream::Err => "err",
    };
    format!("{app}.{instance}.{ext}")
}

/// The app, instance and stream of a pipe, from where `/proc/PID/fd/N`
/// points (`<run_dir>/<app>.<slot>.out (deleted)`); `None` if `target` is not
/// one of the pipes in `run_dir`.
pub fn parse_pipe(run_dir: &Path, target: &Path) -> Option<(String, u32, Stream)> {
    let name = target.strip_prefix(run_dir).ok()?.to_str()?;
    let name = name.strip_suffix(" (deleted)").unwrap_or(name);
    let mut parts = name.rsplitn(3, '.');
    let stream = match parts.next()? {
        "out" => Stream::Out,
        "err" => Stream::Err,
        _ => return None,
    };
    let instance = parts.next()?.parse().ok()?;
    let app = parts.next().filter(|a| !a.is_empty() && !a.contains('/'))?;
    Some((app.to_string(), instance, stream))
}

/// The daemon's end of one log pipe.
#[derive(Debug, Serialize, Deserialize)]
pub struct FrozenPipe {
    /// stdout or stderr.
    pub stream: Stream,
    /// The instance slot writing to it.
    pub instance: u32,
    /// The pipe's read end.
    pub fd: RawFd,
    /// Bytes read but not written yet: the start of an incomplete line.
    pub pending: Vec<u8>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pipe_names_round_trip() {
        let run = Path::new("/h/run");
        let target = run.join(format!(
            "{} (deleted)",
            pipe_name("api.v2-x", 3, Stream::Err)
        ));
        assert_eq!(
            parse_pipe(run, &target),
            Some(("api.v2-x".to_string(), 3, Stream::Err))
        );
        assert_eq!(
            parse_pipe(run, &run.join("web.0.out")).unwrap().2,
            Stream::Out
        );
        for other in [
            "/h/logs/web.0.out",
            "/h/run/web.x.out",
            "/h/run/.0.out",
            "pipe:[12]",
        ] {
            assert_eq!(parse_pipe(run, Path::new(other)), None, "{other}");
        }
    }
}
