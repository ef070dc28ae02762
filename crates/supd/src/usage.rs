//! CPU and resident memory of instances, read from `/proc` when `list` asks.
//!
//! An instance is its process group, so its figures are the sums over every
//! process whose group id is the instance's pid (a shell wrapper's children
//! included). One scan of `/proc` serves a whole `list`. CPU is the share of
//! one core used since the previous scan (or since the process started, on
//! the first look). Periodic sampling is the monitor's job (issue 4).

use std::collections::HashMap;
use std::fs;
use std::sync::Mutex;
use std::time::Instant;

/// What one process group uses.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Usage {
    /// CPU percent of one core.
    pub cpu: f64,
    /// Resident bytes.
    pub memory: u64,
}

/// CPU ticks per group at the previous scan, to turn totals into a rate.
static PREVIOUS: Mutex<Option<(Instant, HashMap<u32, u64>)>> = Mutex::new(None);

/// Usage of each of the process groups `pgids`.
pub fn sample(pgids: &[u32]) -> HashMap<u32, Usage> {
    let page = sysconf(nix::unistd::SysconfVar::PAGE_SIZE, 4096);
    let hz = sysconf(nix::unistd::SysconfVar::CLK_TCK, 100) as f64;
    let uptime = system_uptime();
    let mut totals: HashMap<u32, Stat> = pgids.iter().map(|&p| (p, Stat::default())).collect();
    if let Ok(entries) = fs::read_dir("/proc") {
        for entry in entries.flatten() {
            if !entry.file_name().to_str().is_some_and(|n| n.bytes().all(|b| b.is_ascii_digit())) {
                continue;
            }
            let Some(stat) = fs::read_to_string(entry.path().join("stat")).ok().and_then(|s| parse_stat(&s)) else {
                continue;
            };
            if let Some(total) = totals.get_mut(&stat.pgrp) {
                total.rss_pages += stat.rss_pages;
                total.ticks += stat.ticks;
                if stat.pid == stat.pgrp {
                    total.start_ticks = stat.start_ticks;
                }
            }
        }
    }
    let now = Instant::now();
    let mut previous = PREVIOUS.lock().unwrap_or_else(|p| p.into_inner());
    let usage = totals
        .iter()
        .map(|(&pgid, t)| {
            let before = previous.as_ref().and_then(|(at, ticks)| Some((*at, *ticks.get(&pgid)?)));
            let (ticks, seconds) = match before {
                Some((at, old)) => (t.ticks.saturating_sub(old), now.duration_since(at).as_secs_f64()),
                None => (t.ticks, uptime - t.start_ticks as f64 / hz),
            };
            let cpu = if seconds > 0.0 { ticks as f64 / hz / seconds * 100.0 } else { 0.0 };
            (pgid, Usage { cpu: (cpu * 10.0).round() / 10.0, memory: t.rss_pages * page })
        })
        .collect();
    *previous = Some((now, totals.iter().map(|(&p, t)| (p, t.ticks)).collect()));
    usage
}

fn sysconf(var: nix::unistd::SysconfVar, default: u64) -> u64 {
    nix::unistd::sysconf(var).ok().flatten().map_or(default, |v| v as u64)
}

/// Seconds since boot, from `/proc/uptime`.
fn system_uptime() -> f64 {
    fs::read_to_string("/proc/uptime")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .unwrap_or(0.0)
}

/// The fields of `/proc/PID/stat` we use.
#[derive(Debug, Default, PartialEq)]
struct Stat {
    pid: u32,
    pgrp: u32,
    ticks: u64,
    start_ticks: u64,
    rss_pages: u64,
}

/// Parses `/proc/PID/stat`. The command name can hold spaces and
/// parentheses, so fields are counted after its last `)`.
fn parse_stat(stat: &str) -> Option<Stat> {
    let pid = stat.split(' ').next()?.parse().ok()?;
    let fields: Vec<&str> = stat[stat.rfind(')')? + 2..].split(' ').collect();
    let field = |i: usize| fields.get(i)?.parse::<u64>().ok();
    // After the name: state(0) ppid(1) pgrp(2) … utime(11) stime(12) …
    // starttime(19) vsize(20) rss(21).
    Some(Stat {
        pid,
        pgrp: field(2)? as u32,
        ticks: field(11)? + field(12)?,
        start_ticks: field(19)?,
        rss_pages: field(21)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_stat_with_odd_names() {
        let line = "42 (a) b (c)) S 1 42 42 0 -1 4194560 1 0 0 0 7 3 0 0 20 0 1 0 1 100 250 rest";
        let want = Stat { pid: 42, pgrp: 42, ticks: 10, start_ticks: 1, rss_pages: 250 };
        assert_eq!(parse_stat(line), Some(want));
    }

    #[test]
    fn measures_our_own_group() {
        let me = nix::unistd::getpgrp().as_raw() as u32;
        let usage = sample(&[me]);
        assert!(usage[&me].memory > 0);
    }
}
