//! The child side of a spawn: everything it needs is prepared before it
//! exists, and it is started the way `vfork` and `posix_spawn` start one.
//!
//! `clone(CLONE_VM | CLONE_VFORK)` runs the child in the daemon's own memory,
//! on a stack of its own, while the calling thread waits until the child has
//! exec'd or failed to. Nothing of the daemon's address space is copied, so a
//! spawn costs the same with 5 or 1,000 instances; a `fork` copies the page
//! tables and every memory mapping (each log writer thread's stack among
//! them), and the exec throws the copy away again: with 1,000 apps that was
//! most of the daemon's CPU while starting them.
//!
//! Sharing memory makes the rules stricter than after a fork: the child
//! makes only plain system calls on memory prepared beforehand, writes only
//! its own stack, the `LISTEN_PID=` buffer and the error slot, and runs with
//! every signal blocked until its handlers are back to the default, so no
//! handler of the daemon's ever runs in it.

use std::collections::BTreeMap;
use std::ffi::{CString, c_char, c_int, c_void};
use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::sync::atomic::{AtomicI32, Ordering};

use super::{MAX_PASSED_FDS, SpawnSpec};

/// The child's stack: it calls a handful of system call wrappers, nothing more.
const STACK_SIZE: usize = 64 * 1024;
/// Signals are numbered below this (the kernel's `_NSIG`).
const NSIG: c_int = 65;
/// Descriptors placed at fixed numbers: stdin, stdout, stderr and the passed ones.
const MAX_PLACED: usize = 3 + MAX_PASSED_FDS;
/// The prefix of the pre-built `LISTEN_PID=` entry.
const LISTEN_PID_PREFIX: &[u8] = b"LISTEN_PID=";

/// Everything the child needs to exec, allocated before it exists.
pub(super) struct ExecPlan {
    program: CString,
    cwd: CString,
    /// Owns the strings `argv` points into.
    _args: Vec<CString>,
    argv: Vec<*const c_char>,
    /// Owns the strings `envp` points into.
    _env: Vec<CString>,
    envp: Vec<*const c_char>,
    /// `LISTEN_PID=` followed by room for the digits and a NUL, when asked.
    listen_pid: Option<Box<[u8; 32]>>,
    /// (source, target) descriptors: stdio first, then the passed ones.
    fds: Vec<(RawFd, RawFd)>,
    /// The descriptor limit to give back (see [`crate::limits`]).
    open_files: Option<libc::rlimit>,
    /// The errno of the step that failed in the child (0: it exec'd).
    error: AtomicI32,
}

impl ExecPlan {
    /// Prepares the exec of `spec` with `stdin` as the child's stdin.
    pub(super) fn new(spec: &SpawnSpec<'_>, stdin: RawFd) -> io::Result<ExecPlan> {
        let cstring = |s: &[u8]| {
            CString::new(s).map_err(|_| {
                io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!("NUL byte in {:?}", String::from_utf8_lossy(s)),
                )
            })
        };
        let program = cstring(resolve_program(spec.program, spec.env)?.as_bytes())?;
        let cwd = cstring(spec.cwd.as_os_str().as_bytes())?;
        let args = std::iter::once(spec.program)
            .chain(spec.args.iter().map(String::as_str))
            .map(|a| cstring(a.as_bytes()))
            .collect::<io::Result<Vec<_>>>()?;
        let env = spec
            .env
            .iter()
            .filter(|(k, _)| !(spec.listen_pid && k.as_str() == "LISTEN_PID"))
            .map(|(k, v)| cstring(format!("{k}={v}").as_bytes()))
            .collect::<io::Result<Vec<_>>>()?;
        let mut listen_pid = spec.listen_pid.then(|| Box::new([0u8; 32]));
        let mut envp: Vec<*const c_char> = env.iter().map(|c| c.as_ptr()).collect();
        if let Some(buf) = listen_pid.as_mut() {
            buf[..LISTEN_PID_PREFIX.len()].copy_from_slice(LISTEN_PID_PREFIX);
            envp.push(buf.as_ptr().cast());
        }
        envp.push(std::ptr::null());
        let mut argv: Vec<*const c_char> = args.iter().map(|c| c.as_ptr()).collect();
        argv.push(std::ptr::null());
        let stdio = [
            (stdin, 0),
            (spec.stdout.as_raw_fd(), 1),
            (spec.stderr.as_raw_fd(), 2),
        ];
        let fds = stdio
            .into_iter()
            .chain(spec.pass_fds.iter().map(|(fd, t)| (fd.as_raw_fd(), *t)))
            .collect();
        Ok(ExecPlan {
            program,
            cwd,
            _args: args,
            argv,
            _env: env,
            envp,
            listen_pid,
            fds,
            open_files: crate::limits::for_children(),
            error: AtomicI32::new(0),
        })
    }

    /// Starts the child and returns its pid once it has exec'd; if it could
    /// not, it has exited and the error says why (the caller reaps it).
    pub(super) fn start(&mut self) -> Result<libc::pid_t, (Option<libc::pid_t>, io::Error)> {
        let mut stack = vec![0u8; STACK_SIZE];
        // The stack grows down from its (16-byte aligned) end.
        let top = (stack.as_mut_ptr() as usize + STACK_SIZE) & !15;
        let arg: *mut ExecPlan = self;
        // SAFETY: sigset_t is plain data, initialised by sigfillset.
        let mut all: libc::sigset_t = unsafe { std::mem::zeroed() };
        // SAFETY: as above.
        let mut old: libc::sigset_t = unsafe { std::mem::zeroed() };
        // SAFETY: signal masks of this thread only; the child inherits the
        // blocked mask, and this thread gets its own back right after. The
        // child runs `child_main` on `stack`, which outlives it (this thread
        // is suspended until the child has exec'd or exited: CLONE_VFORK),
        // and touches only `self`, which is not used meanwhile.
        let pid = unsafe {
            libc::sigfillset(&mut all);
            libc::pthread_sigmask(libc::SIG_SETMASK, &all, &mut old);
            let pid = libc::clone(
                child_main,
                top as *mut c_void,
                libc::CLONE_VM | libc::CLONE_VFORK | libc::SIGCHLD,
                arg.cast(),
            );
            let clone_error = io::Error::last_os_error();
            libc::pthread_sigmask(libc::SIG_SETMASK, &old, std::ptr::null_mut());
            if pid < 0 {
                return Err((None, clone_error));
            }
            pid
        };
        drop(stack);
        match self.error.load(Ordering::Acquire) {
            0 => Ok(pid),
            errno => Err((Some(pid), io::Error::from_raw_os_error(errno))),
        }
    }

    /// Runs in the child: plain system calls only, no allocation. Returns
    /// the errno of the step that failed; does not return if exec succeeds.
    fn exec(&mut self) -> c_int {
        let errno = || {
            io::Error::last_os_error()
                .raw_os_error()
                .unwrap_or(libc::EIO)
        };
        // SAFETY: system calls on values prepared before the clone; the
        // signal actions changed are the child's own (no CLONE_SIGHAND).
        unsafe {
            // A handler of the daemon's must not run in shared memory:
            // every handled signal goes back to its default while all are
            // blocked. SIGPIPE, which Rust ignores, goes back too, as
            // std::process::Command does; other ignored signals stay ignored.
            let mut action: libc::sigaction = std::mem::zeroed();
            for sig in 1..NSIG {
                if libc::sigaction(sig, std::ptr::null(), &mut action) != 0 {
                    continue;
                }
                let handler = action.sa_sigaction;
                if handler == libc::SIG_DFL || (handler == libc::SIG_IGN && sig != libc::SIGPIPE) {
                    continue;
                }
                let mut default: libc::sigaction = std::mem::zeroed();
                default.sa_sigaction = libc::SIG_DFL;
                libc::sigaction(sig, &default, std::ptr::null_mut());
            }
            if libc::setpgid(0, 0) != 0 || libc::chdir(self.cwd.as_ptr()) != 0 {
                return errno();
            }
            // Move every source out of the way first, so a source that sits
            // on another's target number is not clobbered: above the highest
            // target is enough (a fixed floor like 64 fails with EINVAL under
            // `ulimit -n 64`).
            let floor = self.fds.iter().map(|&(_, t)| t + 1).max().unwrap_or(0);
            let mut moved = [-1; MAX_PLACED];
            for (slot, &(fd, _)) in moved.iter_mut().zip(&self.fds) {
                *slot = libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, floor);
                if *slot < 0 {
                    return errno();
                }
            }
            // dup2 clears close-on-exec on the target; the moved copies
            // close at exec.
            for (&tmp, &(_, target)) in moved.iter().zip(&self.fds) {
                if libc::dup2(tmp, target) < 0 {
                    return errno();
                }
            }
            if let Some(limit) = &self.open_files {
                // Lowering a soft limit cannot fail (and would be harmless if it did).
                libc::setrlimit(libc::RLIMIT_NOFILE, limit);
            }
            if let Some(buf) = self.listen_pid.as_mut() {
                let pid = libc::getpid() as u32;
                write_decimal(&mut buf[LISTEN_PID_PREFIX.len()..], pid);
            }
            let mut none: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut none);
            libc::pthread_sigmask(libc::SIG_SETMASK, &none, std::ptr::null_mut());
            libc::execve(
                self.program.as_ptr(),
                self.argv.as_ptr(),
                self.envp.as_ptr(),
            );
        }
        errno()
    }
}

/// The child's entry point: exec, or record why not and exit.
extern "C" fn child_main(arg: *mut c_void) -> c_int {
    // SAFETY: `arg` is the plan `ExecPlan::start` passed, alive (and not
    // used by the suspended parent thread) until this child execs or exits.
    let plan = unsafe { &mut *arg.cast::<ExecPlan>() };
    let errno = plan.exec();
    plan.error.store(errno, Ordering::Release);
    // SAFETY: ends the child without running anything of the parent's.
    unsafe { libc::_exit(127) }
}

/// Writes `n` in decimal followed by a NUL into `out` (which has room).
fn write_decimal(out: &mut [u8], mut n: u32) {
    let mut digits = [0u8; 10];
    let mut len = 0;
    loop {
        digits[len] = b'0' + (n % 10) as u8;
        len += 1;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    for i in 0..len {
        out[i] = digits[len - 1 - i];
    }
    out[len] = 0;
}

/// The path to exec: `program` itself if it has a `/`, else the first
/// executable of that name in the `PATH` of `env` (or ours), like a shell.
pub(super) fn resolve_program(program: &str, env: &BTreeMap<String, String>) -> io::Result<String> {
    if program.contains('/') {
        return Ok(program.to_string());
    }
    let path = env
        .get("PATH")
        .cloned()
        .or_else(|| std::env::var("PATH").ok())
        .unwrap_or_default();
    path.split(':')
        .filter(|dir| !dir.is_empty())
        .map(|dir| Path::new(dir).join(program))
        .find(|candidate| {
            nix::unistd::access(candidate, nix::unistd::AccessFlags::X_OK).is_ok()
                && candidate.is_file()
        })
        .map(|p| p.to_string_lossy().into_owned())
        .ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::NotFound,
                format!("{program}: not found in PATH"),
            )
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decimal() {
        let mut buf = [0xffu8; 12];
        write_decimal(&mut buf, 40213);
        assert_eq!(&buf[..6], b"40213\0");
        write_decimal(&mut buf, 0);
        assert_eq!(&buf[..2], b"0\0");
    }
}
