//! `supctl monit`: a live dashboard of the daemon's apps in the terminal.
//!
//! Layers, each in its own file: [`state`] is what the screen shows and how
//! samples and keys change it (pure), [`draw`] renders it with ratatui,
//! [`feed`] holds the threads that talk to the daemon, [`tail`] reads the
//! selected app's log files. This file owns the terminal (raw mode, the
//! alternate screen, restoring both on every way out) and the event loop
//! that ties them together.

mod draw;
mod feed;
mod state;
mod tail;

use std::io::{self, IsTerminal, Stdout};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, Sender, TryRecvError};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use ratatui::Terminal;
use ratatui::backend::CrosstermBackend;
use ratatui::crossterm::event::{self, Event, KeyEventKind};
use ratatui::crossterm::terminal::{EnterAlternateScreen, LeaveAlternateScreen};
use ratatui::crossterm::{cursor, execute, terminal};
use supd_proto::Home;

use self::feed::Feed;
use self::state::{Action, Dashboard, KeyOutcome, Tone};
use self::tail::LogTail;
use crate::args::MonitArgs;
use crate::client::Client;

/// How long the loop waits for a key before looking at its other inputs.
const INPUT_WAIT: Duration = Duration::from_millis(50);
/// How often the selected app's log files are checked for new lines.
const LOG_POLL: Duration = Duration::from_millis(250);

/// Set by SIGTERM, SIGINT and SIGHUP: leave cleanly at the next turn of the loop.
static SIGNALLED: AtomicBool = AtomicBool::new(false);
/// Set by the panic hook: a background thread died, so stop (the hook has
/// already restored the terminal).
static PANICKED: AtomicBool = AtomicBool::new(false);

/// Runs `supctl monit` until the user quits.
pub fn run(home: &Home, args: &MonitArgs) -> anyhow::Result<()> {
    if !io::stdout().is_terminal() {
        bail!(
            "monit needs a terminal, and stdout is not one (for a one-shot table, use supctl list)"
        );
    }
    // A daemon that went away must be an error on the socket, not a SIGPIPE
    // that kills us with the terminal still in raw mode.
    // SAFETY: changing a signal disposition to SIG_IGN runs no code of ours.
    unsafe {
        use nix::sys::signal::{SigHandler, Signal, signal};
        signal(Signal::SIGPIPE, SigHandler::SigIgn).context("cannot ignore SIGPIPE")?;
    }
    // Before the screen changes: a daemon that cannot start is a plain error line.
    let client = Client::connect(home)?;
    let (feed_tx, feed) = mpsc::channel();
    let interval = Duration::from_millis(args.interval);
    let nudge = feed::spawn_poller(home.clone(), client, interval, feed_tx.clone());
    let actions = feed::spawn_worker(home.clone(), feed_tx, nudge);
    install_signal_handlers()?;
    let mut screen = Screen::enter().context("cannot set up the terminal")?;
    event_loop(&mut screen.terminal, &feed, &actions)
    // `screen` drops here and restores the terminal, on success and on error alike.
}

/// The loop: take what the threads sent, follow the selected app's logs,
/// draw when something changed, handle keys.
fn event_loop(
    terminal: &mut Terminal<CrosstermBackend<Stdout>>,
    feed: &Receiver<Feed>,
    actions: &Sender<Action>,
) -> anyhow::Result<()> {
    let mut dash = Dashboard::new();
    let mut tail: Option<LogTail> = None;
    let mut last_log_poll = Instant::now();
    let mut dirty = true;
    loop {
        if SIGNALLED.load(Ordering::Relaxed) {
            return Ok(());
        }
        if PANICKED.load(Ordering::Relaxed) {
            bail!("internal error in monit (see the panic message above)");
        }
        loop {
            match feed.try_recv() {
                Ok(message) => {
                    apply(&mut dash, message);
                    dirty = true;
                }
                Err(TryRecvError::Empty) => break,
                Err(TryRecvError::Disconnected) => {
                    bail!("internal error: monit's daemon poller stopped")
                }
            }
        }
        if follow_logs(&dash, &mut tail, &mut last_log_poll) {
            dash.logs = tail.as_ref().map(LogTail::lines).unwrap_or_default();
            dirty = true;
        }
        if dirty {
            terminal.draw(|frame| draw::draw(frame, &dash))?;
            dirty = false;
        }
        if !event::poll(INPUT_WAIT)? {
            continue;
        }
        match event::read()? {
            Event::Key(key) if key.kind == KeyEventKind::Press => match dash.key(key) {
                KeyOutcome::Nothing => {}
                KeyOutcome::Redraw => dirty = true,
                KeyOutcome::Quit => return Ok(()),
                KeyOutcome::Act(action) => {
                    dirty = true;
                    if actions.send(action).is_err() {
                        dash.set_status(
                            Tone::Error,
                            "internal error: monit's action worker stopped",
                        );
                    }
                }
            },
            // ratatui notices the new size on the next draw and repaints all.
            Event::Resize(..) => dirty = true,
            _ => {}
        }
    }
}

/// Applies one message from the threads.
fn apply(dash: &mut Dashboard, message: Feed) {
    match message {
        Feed::Sample(Ok(sample)) => {
            dash.update(sample.processes);
            dash.set_log_paths(sample.logs);
        }
        Feed::Sample(Err(reason)) => dash.disconnected(reason),
        Feed::Progress(step) => dash.set_status(Tone::Busy, step),
        Feed::Done {
            label,
            result: Ok(()),
        } => dash.set_status(Tone::Ok, format!("{label}: ok")),
        Feed::Done {
            label,
            result: Err(reason),
        } => dash.set_status(Tone::Error, format!("{label}: {reason}")),
    }
}

/// Keeps `tail` on the selected app's files and reads what they grew by;
/// `true` when the lines to show changed.
fn follow_logs(dash: &Dashboard, tail: &mut Option<LogTail>, last_poll: &mut Instant) -> bool {
    let wanted = dash.selected_app().and_then(|a| a.logs.as_ref());
    match (wanted, tail.as_mut()) {
        (None, None) => false,
        (None, Some(_)) => {
            *tail = None;
            true
        }
        (Some(paths), Some(t)) if t.app == paths.name => {
            if last_poll.elapsed() < LOG_POLL {
                return false;
            }
            *last_poll = Instant::now();
            t.poll()
        }
        (Some(paths), _) => {
            *tail = Some(LogTail::open(paths));
            *last_poll = Instant::now();
            true
        }
    }
}

/// The terminal in raw mode on the alternate screen; dropping it restores it.
struct Screen {
    terminal: Terminal<CrosstermBackend<Stdout>>,
}

impl Screen {
    fn enter() -> io::Result<Screen> {
        install_panic_hook();
        terminal::enable_raw_mode()?;
        // From here on, any failure drops the guard, which restores.
        let guard = Restore;
        execute!(io::stdout(), EnterAlternateScreen, cursor::Hide)?;
        let terminal = Terminal::new(CrosstermBackend::new(io::stdout()))?;
        std::mem::forget(guard);
        Ok(Screen { terminal })
    }
}

impl Drop for Screen {
    fn drop(&mut self) {
        restore();
    }
}

/// Restores the terminal when dropped, until [`Screen`] takes over.
struct Restore;

impl Drop for Restore {
    fn drop(&mut self) {
        restore();
    }
}

/// Leaves raw mode and the alternate screen and shows the cursor. Safe to
/// call more than once; errors are ignored (the terminal may be gone).
fn restore() {
    let _ = terminal::disable_raw_mode();
    let _ = execute!(io::stdout(), LeaveAlternateScreen, cursor::Show);
}

/// A panic restores the terminal first, so that its message is readable
/// and the shell is usable, then reports as usual.
fn install_panic_hook() {
    let previous = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        PANICKED.store(true, Ordering::Relaxed);
        restore();
        previous(info);
    }));
}

/// SIGTERM, SIGINT and SIGHUP end the loop, which restores the terminal.
/// (In raw mode Ctrl-C is a key, not a SIGINT.)
fn install_signal_handlers() -> anyhow::Result<()> {
    use nix::sys::signal::{SaFlags, SigAction, SigHandler, SigSet, Signal, sigaction};
    extern "C" fn on_signal(_: nix::libc::c_int) {
        SIGNALLED.store(true, Ordering::Relaxed);
    }
    let action = SigAction::new(
        SigHandler::Handler(on_signal),
        SaFlags::SA_RESTART,
        SigSet::empty(),
    );
    for sig in [Signal::SIGTERM, Signal::SIGINT, Signal::SIGHUP] {
        // SAFETY: the handler only stores to an atomic, which is async-signal-safe.
        unsafe { sigaction(sig, &action) }.with_context(|| format!("cannot handle {sig}"))?;
    }
    Ok(())
}
