//! The apps' lines on the daemon's own stdout and stderr (`supd run`, a
//! container's entry point, where the engine collects what PID 1 prints).
//!
//! It is a mode of the whole process, chosen once at start: every app's log
//! thread then also writes the whole lines it cuts to the daemon's stdout
//! (the app's stdout) or stderr (its stderr), each line tagged `app:N | `,
//! or as one JSON object per line for log collectors. A line is written
//! whole under the stream's lock, so lines of different apps never mix; a
//! reader slower than the apps blocks their log threads, and so the apps,
//! as a slow disk does: nothing is dropped.

use std::io::Write;
use std::sync::OnceLock;

use super::Stream;
use super::lines::stamp;

/// How lines are printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Console {
    /// `api-gateway:0 | the line`.
    Tagged,
    /// `{"app":"api-gateway","instance":0,"stream":"out","line":"the line"}`.
    Json,
}

static MODE: OnceLock<Console> = OnceLock::new();

/// Prints every app's lines from now on, in `mode`; called once, before any
/// app starts.
pub fn print(mode: Console) {
    let _ = MODE.set(mode);
}

/// Prints `lines` (whole lines, each ending in a newline) of `app`'s
/// `instance` on the daemon's stream for `stream`, if the daemon prints
/// them ([`print`]). A failed write (nobody reads) is not retried: the log
/// files have the lines.
pub fn write(app: &str, instance: u32, stream: Stream, lines: &[u8]) {
    let Some(mode) = MODE.get() else {
        return;
    };
    let text = render(*mode, app, instance, stream, lines);
    let _ = match stream {
        Stream::Out => std::io::stdout().lock().write_all(&text),
        Stream::Err => std::io::stderr().lock().write_all(&text),
    };
}

/// `lines` as `mode` prints them.
fn render(mode: Console, app: &str, instance: u32, stream: Stream, lines: &[u8]) -> Vec<u8> {
    let mut text = Vec::new();
    match mode {
        Console::Tagged => stamp(lines, &format!("{app}:{instance} | "), &mut text),
        Console::Json => {
            let stream = match stream {
                Stream::Out => "out",
                Stream::Err => "err",
            };
            let lines = lines.strip_suffix(b"\n").unwrap_or(lines);
            for line in lines.split(|&b| b == b'\n') {
                let object = serde_json::json!({
                    "app": app,
                    "instance": instance,
                    "stream": stream,
                    "line": String::from_utf8_lossy(line),
                });
                text.extend_from_slice(object.to_string().as_bytes());
                text.push(b'\n');
            }
        }
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_tagged_or_objects() {
        let lines = b"first\nsecond \xff\n";
        assert_eq!(
            render(Console::Tagged, "api", 3, Stream::Out, lines),
            b"api:3 | first\napi:3 | second \xff\n"
        );
        let json = render(Console::Json, "api", 0, Stream::Err, lines);
        let objects: Vec<serde_json::Value> = String::from_utf8(json)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(objects.len(), 2);
        assert_eq!(objects[0]["line"], "first");
        assert_eq!(objects[0]["stream"], "err");
        assert_eq!(objects[1]["line"], "second \u{fffd}");
        assert_eq!(objects[1]["app"], "api");
    }
}
