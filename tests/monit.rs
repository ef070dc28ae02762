//! `supctl monit`: the real dashboard in a pseudo-terminal, read through a
//! terminal emulator the way a person sees it, driven with key presses.

use std::fs::File;
use std::io::{Read, Write};
use std::num::NonZeroU16;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::process::Stdio;
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};

use nix::fcntl::{FcntlArg, FdFlag, fcntl};
use nix::pty::{Winsize, openpty};

use crate::support::{KillOnDrop, Supd, wait_for};

const ROWS: u16 = 30;
const COLS: u16 = 120;

/// `supctl monit` running in a pseudo-terminal of `ROWS` x `COLS`.
struct Monit {
    /// The process, killed if the test fails before it exits.
    child: KillOnDrop,
    /// The terminal's input: what we "type".
    keys: File,
    /// The screen, as the emulator sees it after everything read so far.
    screen: Arc<Mutex<vt100::Parser>>,
    /// Tells when the terminal closed (the program and its output are done).
    closed: mpsc::Receiver<()>,
}

impl Monit {
    fn start(supd: &Supd) -> Monit {
        let size = Winsize {
            ws_row: ROWS,
            ws_col: COLS,
            ws_xpixel: 0,
            ws_ypixel: 0,
        };
        let pty = openpty(&size, None).expect("openpty");
        // Neither end may leak into the program's own children (a daemon it starts).
        for fd in [&pty.master, &pty.slave] {
            fcntl(fd.as_fd(), FcntlArg::F_SETFD(FdFlag::FD_CLOEXEC)).expect("FD_CLOEXEC");
        }
        let stdio = |fd: &OwnedFd| Stdio::from(fd.try_clone().expect("dup pty"));
        let mut cmd = supd.cmd(&["monit"]);
        cmd.stdin(stdio(&pty.slave))
            .stdout(stdio(&pty.slave))
            .stderr(stdio(&pty.slave));
        // Like a terminal emulator: a session of its own with the pty as its
        // controlling terminal, so /dev/tty is this pty too.
        // SAFETY: setsid and ioctl are async-signal-safe and touch no memory of ours.
        unsafe {
            cmd.pre_exec(|| {
                nix::unistd::setsid()?;
                if libc::ioctl(0, libc::TIOCSCTTY as _, 0) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let child = KillOnDrop(cmd.spawn().expect("spawn supctl monit"));
        // Only the child holds the terminal side now: when it exits, reads
        // of the master end fail and the reader stops.
        drop(pty.slave);
        let master = File::from(pty.master);
        let keys = master.try_clone().expect("dup pty master");
        let rows = NonZeroU16::new(ROWS).unwrap();
        let cols = NonZeroU16::new(COLS).unwrap();
        let screen = Arc::new(Mutex::new(vt100::Parser::new(rows, cols, 0)));
        let (done, closed) = mpsc::channel();
        let parser = screen.clone();
        std::thread::spawn(move || {
            let mut master = master;
            let mut buf = [0u8; 8192];
            // EIO once the child side is closed; bounded by the child's life.
            while let Ok(n @ 1..) = master.read(&mut buf) {
                parser.lock().unwrap().process(&buf[..n]);
            }
            let _ = done.send(());
        });
        Monit {
            child,
            keys,
            screen,
            closed,
        }
    }

    /// The screen's text.
    fn contents(&self) -> String {
        self.screen.lock().unwrap().screen().contents()
    }

    /// Waits until the screen shows every one of `needles`; on a timeout,
    /// fails with the screen as it was.
    fn wait_screen(&self, needles: &[&str]) {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let screen = self.contents();
            if needles.iter().all(|n| screen.contains(n)) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {needles:?}; the screen was:\n{screen}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn press(&mut self, key: &str) {
        self.keys
            .write_all(key.as_bytes())
            .expect("type into the pty");
    }
}

#[test]
fn monit_shows_apps_restarts_the_selected_one_and_quits_cleanly() {
    let supd = Supd::new();
    supd.ok(&["start", "sleep", "--name", "nap", "--", "300"]);
    supd.wait_instance("nap", 0, "nap online", |p| p["status"] == "online");

    let mut monit = Monit::start(&supd);
    monit.wait_screen(&["nap", "online", "nap · logs", "q quit"]);
    let first_pid = supd.instance("nap", 0)["pid"].clone();

    monit.press("r");
    supd.wait_instance("nap", 0, "nap restarted once", |p| {
        p["restarts"] == 1 && p["status"] == "online" && p["pid"] != first_pid
    });
    monit.wait_screen(&["restart nap: ok"]);

    monit.press("q");
    let status = wait_for(Duration::from_secs(10), "monit to exit after q", || {
        monit.child.0.try_wait().expect("wait monit")
    });
    assert!(
        status.success(),
        "monit exited with {status}:\n{}",
        monit.contents()
    );
    // The terminal is given back as it was: main screen, cursor shown.
    wait_for(Duration::from_secs(10), "the pty to close", || {
        monit.closed.try_recv().ok()
    });
    let parser = monit.screen.lock().unwrap();
    assert!(
        !parser.screen().alternate_screen(),
        "still on the alternate screen"
    );
    assert!(!parser.screen().hide_cursor(), "the cursor is still hidden");
}

#[test]
fn monit_without_a_terminal_is_one_clear_error() {
    let supd = Supd::new();
    let out = supd.run(&["monit"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        out.stdout.is_empty(),
        "nothing on stdout: {:?}",
        String::from_utf8_lossy(&out.stdout)
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.starts_with("error: monit needs a terminal"),
        "{stderr}"
    );
    // It said so before starting anything.
    assert_eq!(supd.daemon_pid(), None);
}

#[test]
fn monit_keeps_running_while_the_daemon_is_gone_and_reconnects() {
    let supd = Supd::new();
    supd.ok(&["start", "sleep", "--name", "nap", "--", "300"]);
    let mut monit = Monit::start(&supd);
    monit.wait_screen(&["nap", "online"]);

    supd.ok(&["kill"]);
    monit.wait_screen(&["supd is not running"]);
    supd.ok(&["start", "sleep", "--name", "doze", "--", "300"]);
    monit.wait_screen(&["doze", "1 app, 1 instance"]);

    monit.press("q");
    let status = wait_for(Duration::from_secs(10), "monit to exit after q", || {
        monit.child.0.try_wait().expect("wait monit")
    });
    assert!(status.success(), "monit exited with {status}");
}
