//! An instance's whole process tree: its process group, plus the
//! descendants that left the group (`setsid`, `setpgid`), so a stop reaches
//! every process the instance started.
//!
//! A signal to the group reaches only the processes still in it. Those that
//! left it are found by walking the tree from the main process while it
//! lives ([`procfs::descendants`]) and remembered by pid *and* start time:
//! once the main process is gone they are reparented to supd (a child
//! subreaper), out of reach of any walk from it, and a remembered pid the
//! kernel has given to another process since is never signalled. Each one
//! is signalled through a pidfd opened before its start time is checked, so
//! it cannot be recycled between the check and the signal.
//!
//! Why not a cgroup with `cgroup.kill`: it needs a cgroup2 hierarchy the
//! daemon's user may write to (root, or a systemd delegation), which a
//! PM2-style per-user daemon seldom has, and a process moved into it by the
//! daemon after the spawn could fork before the move. The walk works for
//! every user; its limits are in docs/hardening.md.

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use nix::sys::signal::Signal;

use crate::group;
use crate::procfs::{self, Stat};

/// One process, named for the whole boot: a recycled pid has another start
/// time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Member {
    /// Its pid.
    pub pid: u32,
    /// Its start time, in clock ticks since boot (see [`procfs::Stat`]).
    pub start_time: u64,
}

/// An instance's process group and the descendants seen outside it.
#[derive(Debug, Clone, Default)]
pub struct Tree {
    /// The group, led by the instance's main process (same id as its pid).
    pgid: u32,
    /// The main process, while it is known to live: walked from, never
    /// after its pid may have gone to another process.
    leader: Option<Member>,
    /// Descendants seen in another group, alive when last looked at.
    escaped: Vec<Member>,
}

impl Tree {
    /// The tree of the instance whose main process (and group) is `pgid`,
    /// as `/proc` shows it now.
    pub fn of(pgid: u32) -> Tree {
        Tree::from_walk(pgid, &procfs::descendants(pgid))
    }

    /// The tree of the instance whose main process (and group) is `pgid`,
    /// from a walk of it ([`procfs::descendants`]) done by the caller.
    pub fn from_walk(pgid: u32, walked: &[(u32, Stat)]) -> Tree {
        match walked.first() {
            Some(&(pid, s)) if leads(pgid, pid, s) => Tree {
                pgid,
                leader: Some(Member {
                    pid,
                    start_time: s.start_time,
                }),
                escaped: outside(pgid, walked),
            },
            _ => Tree::group(pgid),
        }
    }

    /// Only the group `pgid`, nothing walked: for an instance whose main
    /// process is already reaped, so its pid may name another process now.
    pub fn group(pgid: u32) -> Tree {
        Tree {
            pgid,
            leader: None,
            escaped: Vec::new(),
        }
    }

    /// Looks again, from the main process if it lives and from every
    /// escaped descendant still alive, for descendants outside the group;
    /// forgets the processes that are gone.
    pub fn refresh(&mut self) {
        let roots: Vec<Member> = self.leader.iter().chain(&self.escaped).copied().collect();
        let mut found = Vec::new();
        for root in roots {
            let walked = procfs::descendants(root.pid);
            // The root itself comes first: walked only if it is still the
            // process that was seen, not one that got its pid since.
            if walked.first().is_some_and(|&(_, s)| is_same(root, Some(s))) {
                found.extend(outside(self.pgid, &walked));
            } else if self.leader == Some(root) {
                self.leader = None;
            }
        }
        // An escaped process is walked from the leader and from itself.
        found.sort_by_key(|m| m.pid);
        found.dedup();
        self.escaped = found;
    }

    /// The descendants outside the group, as last seen.
    pub fn escaped(&self) -> &[Member] {
        &self.escaped
    }

    /// Sends `signal` to the group and to every escaped descendant that is
    /// still the process that was seen; false if none of them was there.
    pub fn signal(&self, signal: Signal) -> bool {
        let group = group::signal(self.pgid, signal);
        self.signal_escaped(signal) || group
    }

    /// Sends `signal` to every escaped descendant that is still the process
    /// that was seen, not to the group (whose id may belong to another
    /// group once its processes are gone); false if none was there.
    pub fn signal_escaped(&self, signal: Signal) -> bool {
        // Every one of them, not only up to the first reached.
        let mut reached = false;
        for &member in &self.escaped {
            reached |= signal_member(member, signal);
        }
        reached
    }

    /// Whether any process of the tree is left: a process of the group
    /// (zombies included, as [`group::alive`] counts them) or an escaped
    /// descendant that has not exited.
    pub fn alive(&self) -> bool {
        group::alive(self.pgid)
            || self
                .escaped
                .iter()
                .any(|m| is_same(*m, procfs::stat(m.pid)))
    }
}

/// Whether process `pid` (with `stat`) is a live leader of the group
/// `pgid`, as an instance's main process is: a walk from anything else
/// (a pid the kernel gave to another process) finds no tree of ours.
fn leads(pgid: u32, pid: u32, stat: Stat) -> bool {
    pid == pgid && stat.pgid == pgid && !stat.exited
}

/// The processes of a walked tree that are outside the group `pgid` and
/// have not exited: those a signal to the group would miss.
fn outside(pgid: u32, walked: &[(u32, Stat)]) -> Vec<Member> {
    walked
        .iter()
        .filter(|(_, stat)| stat.pgid != pgid && !stat.exited)
        .map(|&(pid, stat)| Member {
            pid,
            start_time: stat.start_time,
        })
        .collect()
}

/// Whether `now` (the stat of the member's pid at this moment) is still
/// that member and has not exited: same start time, not a zombie.
fn is_same(member: Member, now: Option<Stat>) -> bool {
    now.is_some_and(|s| s.start_time == member.start_time && !s.exited)
}

/// Sends `signal` to `member` if its pid still names it; false otherwise.
fn signal_member(member: Member, signal: Signal) -> bool {
    // SAFETY: pidfd_open takes a pid and flags and returns a new descriptor
    // (or -1), which is owned here and closed on drop.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, member.pid as libc::pid_t, 0) };
    if fd < 0 {
        return false;
    }
    // SAFETY: a descriptor pidfd_open just returned, owned by nobody else.
    let pidfd = unsafe { OwnedFd::from_raw_fd(fd as i32) };
    // The pidfd names the process that had the pid when it was opened: if
    // that is still the member now, a signal through it cannot reach a
    // process that got the pid later.
    if !is_same(member, procfs::stat(member.pid)) {
        return false;
    }
    // SAFETY: pidfd_send_signal with a valid pidfd, a valid signal number,
    // no siginfo and no flags.
    let sent = unsafe {
        libc::syscall(
            libc::SYS_pidfd_send_signal,
            pidfd.as_raw_fd(),
            signal as libc::c_int,
            std::ptr::null::<libc::siginfo_t>(),
            0,
        )
    };
    sent == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stat(pgid: u32, start_time: u64, exited: bool) -> Stat {
        Stat {
            pgid,
            start_time,
            exited,
            threads: 1,
            cpu_ticks: 0,
            rss_pages: 0,
        }
    }

    #[test]
    fn only_live_processes_outside_the_group_are_escaped() {
        let walked = [
            (100, stat(100, 10, false)), // the main process
            (101, stat(100, 11, false)), // a child in the group
            (102, stat(102, 12, false)), // setsid: its own group
            (103, stat(102, 13, false)), // a child of that one
            (104, stat(104, 14, true)),  // left the group, then exited
        ];
        let pids: Vec<u32> = outside(100, &walked).iter().map(|m| m.pid).collect();
        assert_eq!(pids, [102, 103]);
        assert_eq!(outside(100, &walked[..2]), []);
    }

    #[test]
    fn a_tree_is_walked_only_from_a_live_leader_of_its_group() {
        let table = [
            (100, stat(100, 10, false), true, "the main process"),
            (100, stat(100, 10, true), false, "exited"),
            (
                100,
                stat(7, 10, false),
                false,
                "its pid is in another group now",
            ),
            (
                101,
                stat(100, 10, false),
                false,
                "another process of the group",
            ),
        ];
        for (pid, stat, expected, case) in table {
            assert_eq!(leads(100, pid, stat), expected, "{case}");
        }
        let walked = [(100, stat(7, 10, false)), (102, stat(102, 12, false))];
        assert_eq!(Tree::from_walk(100, &walked).escaped(), [], "not ours");
    }

    #[test]
    fn a_member_is_its_pid_only_with_its_start_time_and_until_it_exits() {
        let member = Member {
            pid: 102,
            start_time: 12,
        };
        let table = [
            (Some(stat(102, 12, false)), true, "still running"),
            (Some(stat(102, 12, true)), false, "a zombie"),
            (Some(stat(500, 99, false)), false, "the pid was recycled"),
            (None, false, "gone"),
        ];
        for (now, expected, case) in table {
            assert_eq!(is_same(member, now), expected, "{case}");
        }
    }

    #[test]
    fn reaches_a_descendant_that_left_the_group_after_its_parent_is_gone() {
        use std::os::unix::process::CommandExt;
        use std::time::{Duration, Instant};
        // A group of its own, with a child that calls setsid and ignores
        // SIGTERM, as a daemonizing worker would.
        let mut leader = std::process::Command::new("sh")
            .args([
                "-c",
                "setsid sh -c 'trap \"\" TERM; exec sleep 60' & exec sleep 60",
            ])
            .process_group(0)
            .spawn()
            .unwrap();
        let pgid = leader.id();
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut tree = Tree::of(pgid);
        // Seen once it has called setsid, but it ignores SIGTERM only from
        // its `trap` on, which comes before its `exec sleep`: wait for that.
        let ignores_term = |tree: &Tree| {
            tree.escaped().iter().any(|m| {
                std::fs::read_to_string(format!("/proc/{}/comm", m.pid))
                    .is_ok_and(|comm| comm.trim() == "sleep")
            })
        };
        while !ignores_term(&tree) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
            tree.refresh();
        }
        let escaped = tree.escaped().to_vec();
        assert_eq!(escaped.len(), 1, "{escaped:?}");
        assert!(tree.signal(Signal::SIGTERM));
        let _ = leader.wait();
        // The leader is gone; the escaped one ignored SIGTERM.
        tree.refresh();
        assert_eq!(tree.escaped(), escaped);
        assert!(tree.alive());
        assert!(tree.signal(Signal::SIGKILL));
        while tree.alive() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
        assert!(!tree.alive(), "the escaped process is gone");
    }

    #[test]
    fn a_recycled_pid_is_never_signalled() {
        let mut other = std::process::Command::new("sleep")
            .arg("60")
            .spawn()
            .unwrap();
        let now = procfs::stat(other.id()).unwrap();
        let stale = Member {
            pid: other.id(),
            start_time: now.start_time.wrapping_sub(1),
        };
        assert!(!signal_member(stale, Signal::SIGKILL));
        assert!(other.try_wait().unwrap().is_none(), "still running");
        let _ = other.kill();
        let _ = other.wait();
    }
}
