//! What `/proc` says about a process: its process group, whether it has
//! already exited, when it started, what it uses, and its descendants.
//!
//! A pid alone names a process only until the kernel recycles it; a pid with
//! its start time (field 22 of `/proc/PID/stat`, in clock ticks since boot)
//! names one process for the whole boot. [`boot_id`] tells boots apart.

use std::fs;

/// The fields of `/proc/PID/stat` supd relies on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stat {
    /// The process group.
    pub pgid: u32,
    /// When the process started, in clock ticks since boot.
    pub start_time: u64,
    /// It has exited and waits to be reaped (a zombie): it holds no
    /// descriptor, no port and no memory any more.
    pub exited: bool,
    /// How many threads it has.
    pub threads: u32,
    /// CPU time used so far (user + system), in clock ticks ([`clock_ticks`]
    /// a second).
    pub cpu_ticks: u64,
    /// Resident memory, in pages ([`page_size`] bytes each).
    pub rss_pages: u64,
}

/// The stat of `pid`, or `None` if there is no such process.
pub fn stat(pid: u32) -> Option<Stat> {
    parse_stat(&fs::read_to_string(format!("/proc/{pid}/stat")).ok()?)
}

/// Parses a `/proc/PID/stat` line. The command name (field 2) may hold
/// spaces and parentheses, so the fields are counted after its last `)`.
fn parse_stat(line: &str) -> Option<Stat> {
    let (_, rest) = line.rsplit_once(')')?;
    let fields: Vec<&str> = rest.split_ascii_whitespace().collect();
    // `fields[0]` is field 3 of the line (the state).
    let field = |n: usize| fields.get(n - 3).copied();
    let number = |n: usize| field(n)?.parse::<u64>().ok();
    Some(Stat {
        exited: matches!(field(3)?, "Z" | "X"),
        pgid: field(5)?.parse().ok()?,
        cpu_ticks: number(14)? + number(15)?,
        threads: field(20)?.parse().ok()?,
        start_time: number(22)?,
        rss_pages: number(24)?,
    })
}

/// The clock ticks a second in [`Stat::cpu_ticks`] and
/// [`Stat::start_time`] (`sysconf(_SC_CLK_TCK)`, 100 on Linux).
pub fn clock_ticks() -> u64 {
    sysconf_or(nix::unistd::SysconfVar::CLK_TCK, 100)
}

/// The bytes in a page of [`Stat::rss_pages`].
pub fn page_size() -> u64 {
    sysconf_or(nix::unistd::SysconfVar::PAGE_SIZE, 4096)
}

fn sysconf_or(var: nix::unistd::SysconfVar, default: u64) -> u64 {
    nix::unistd::sysconf(var)
        .ok()
        .flatten()
        .and_then(|v| u64::try_from(v).ok())
        .filter(|&v| v > 0)
        .unwrap_or(default)
}

/// `root` and all its descendants that still exist, with their stats,
/// `root` first. A process's children are listed in
/// `/proc/PID/task/TID/children` for each of its threads; one with a single
/// thread has one such file, so it costs no directory listing.
pub fn descendants(root: u32) -> Vec<(u32, Stat)> {
    let mut members = Vec::new();
    let mut queue = vec![root];
    while let Some(pid) = queue.pop() {
        let Some(stat) = stat(pid) else {
            continue;
        };
        let mut add = |path: std::path::PathBuf| {
            if let Ok(children) = fs::read_to_string(path) {
                queue.extend(
                    children
                        .split_whitespace()
                        .filter_map(|c| c.parse::<u32>().ok()),
                );
            }
        };
        if stat.threads == 1 {
            add(format!("/proc/{pid}/task/{pid}/children").into());
        } else if let Ok(tasks) = fs::read_dir(format!("/proc/{pid}/task")) {
            for task in tasks.flatten() {
                add(task.path().join("children"));
            }
        }
        members.push((pid, stat));
    }
    members
}

/// Every pid in `/proc`, at one moment.
pub fn pids() -> Vec<u32> {
    fs::read_dir("/proc")
        .map(|entries| {
            entries
                .flatten()
                .filter_map(|e| e.file_name().to_str()?.parse().ok())
                .collect()
        })
        .unwrap_or_default()
}

/// This boot's id (`/proc/sys/kernel/random/boot_id`), if the kernel tells.
pub fn boot_id() -> Option<String> {
    fs::read_to_string("/proc/sys/kernel/random/boot_id")
        .ok()
        .map(|id| id.trim().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_stat_with_a_strange_command_name() {
        let line =
            "4242 (a) b (c) S 1 4240 4240 0 -1 4194560 1 2 3 4 5 6 7 8 20 0 3 0 987654 1000 50";
        assert_eq!(
            parse_stat(line),
            Some(Stat {
                pgid: 4240,
                start_time: 987_654,
                exited: false,
                threads: 3,
                cpu_ticks: 5 + 6,
                rss_pages: 50,
            })
        );
        assert!(parse_stat(&line.replace(") S ", ") Z ")).unwrap().exited);
        assert_eq!(parse_stat("12 (x) S 1"), None);
    }

    #[test]
    fn reads_this_process() {
        let me = stat(std::process::id()).unwrap();
        assert!(!me.exited && me.start_time > 0);
        assert!(me.threads >= 1 && me.rss_pages * page_size() > 1 << 20);
        assert!(pids().contains(&std::process::id()));
        let again = stat(std::process::id()).unwrap();
        assert_eq!(
            (me.pgid, me.start_time, me.exited),
            (again.pgid, again.start_time, again.exited),
            "group and start time are stable"
        );
    }

    #[test]
    fn finds_children_of_a_tree() {
        let mut child = std::process::Command::new("sh")
            .args(["-c", "sleep 30 & sleep 30 & wait"])
            .spawn()
            .unwrap();
        let pid = child.id();
        let mut found = vec![];
        for _ in 0..200 {
            found = descendants(pid).into_iter().map(|(p, _)| p).collect();
            if found.len() == 3 {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        for p in &found {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(*p as i32),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
        let _ = child.wait();
        assert_eq!(found.len(), 3, "{found:?}");
        assert_eq!(found[0], pid);
    }
}
