//! Resident memory of an instance, read from `/proc` when `list` asks.
//!
//! An instance is its process group, so its memory is the sum of the RSS of
//! every process whose group id is the instance's pid (a shell wrapper's
//! children included). Periodic CPU and memory sampling is the monitor's job
//! (issue 4); until then `cpu` is reported as 0.

use std::fs;

/// Bytes resident in the process group `pgid`.
pub fn group_rss(pgid: u32) -> u64 {
    let page = nix::unistd::sysconf(nix::unistd::SysconfVar::PAGE_SIZE)
        .ok()
        .flatten()
        .unwrap_or(4096) as u64;
    let Ok(entries) = fs::read_dir("/proc") else { return 0 };
    entries
        .flatten()
        .filter(|e| e.file_name().to_str().is_some_and(|n| n.bytes().all(|b| b.is_ascii_digit())))
        .filter_map(|e| fs::read_to_string(e.path().join("stat")).ok())
        .filter_map(|stat| parse_stat(&stat))
        .filter(|&(pgrp, _)| pgrp == pgid)
        .map(|(_, rss_pages)| rss_pages * page)
        .sum()
}

/// `(pgrp, rss in pages)` from a `/proc/PID/stat` line. The command name can
/// hold spaces and parentheses, so fields are counted after its last `)`.
fn parse_stat(stat: &str) -> Option<(u32, u64)> {
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split(' ').collect();
    // After the name: state(0) ppid(1) pgrp(2) ... rss(21).
    Some((fields.get(2)?.parse().ok()?, fields.get(21)?.parse().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_stat_with_odd_names() {
        let line = "42 (a) b (c)) S 1 42 42 0 -1 4194560 1 0 0 0 0 0 0 0 20 0 1 0 1 100 250 rest";
        assert_eq!(parse_stat(line), Some((42, 250)));
    }
}
