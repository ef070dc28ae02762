//! The monitor: samples the CPU and memory of every instance's process tree
//! on an interval (default 1 s, PM2 uses 30 s), and acts on memory limits.
//!
//! An instance's tree is found by walking `/proc/PID/task/*/children` from
//! its main process (a shell wrapper's children count too); sysinfo then
//! refreshes only those processes, never the whole system. CPU is the
//! percentage of one core since the previous sample. The monitor is the one
//! owner of the figures; `list`, `show`, metrics and the memory check read
//! its latest [`Samples`].

use std::collections::{HashMap, HashSet};
use std::fs;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use supd_proto::Status;
use sysinfo::{Pid, ProcessRefreshKind, ProcessesToUpdate, System};
use tokio::sync::watch;

use crate::registry::{Registry, Trouble};

/// How long after a memory report the same process is reported again if it
/// is still there (its replacement failed).
const REPORT_AGAIN: Duration = Duration::from_secs(30);

/// What one instance's process tree uses.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Usage {
    /// CPU percent of one core (can exceed 100 with several threads).
    pub cpu: f64,
    /// Resident bytes.
    pub memory: u64,
}

/// The latest figures, by instance main pid.
#[derive(Clone, Default)]
pub struct Samples(Arc<Mutex<HashMap<u32, Usage>>>);

impl Samples {
    /// The latest usage of the instance whose main process is `pid`.
    pub fn get(&self, pid: u32) -> Usage {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&pid)
            .copied()
            .unwrap_or_default()
    }

    fn replace(&self, figures: HashMap<u32, Usage>) {
        *self.0.lock().unwrap_or_else(|p| p.into_inner()) = figures;
    }
}

/// Samples every `interval` (which can change while running) until the
/// process exits.
pub async fn run(registry: Registry, samples: Samples, mut interval: watch::Receiver<Duration>) {
    let Ok(mut system) = System::new() else {
        tracing::error!("cannot read process information: CPU and memory will show as 0");
        return;
    };
    // Instances reported over their limit, and when: one breach causes one
    // restart, and a replacement that failed is asked for again later.
    let mut reported: HashMap<u64, Instant> = HashMap::new();
    loop {
        let period = *interval.borrow_and_update();
        tokio::select! {
            () = tokio::time::sleep(period) => {}
            _ = interval.changed() => continue,
        }
        let views = registry.views();
        let roots: Vec<u32> = views
            .iter()
            .flat_map(|v| v.instances.iter())
            .filter(|i| {
                matches!(
                    i.status,
                    Status::Launching | Status::Online | Status::Stopping
                )
            })
            .filter_map(|i| i.pid)
            .collect();
        let trees: HashMap<u32, Vec<u32>> = roots.iter().map(|&root| (root, tree(root))).collect();
        let pids: Vec<Pid> = trees
            .values()
            .flatten()
            .map(|&p| Pid::from_u32(p))
            .collect();
        system.refresh_processes_specifics(
            ProcessesToUpdate::Some(&pids),
            true,
            ProcessRefreshKind::nothing().with_cpu().with_memory(),
        );
        let figures: HashMap<u32, Usage> = trees
            .iter()
            .map(|(&root, members)| {
                let mut usage = Usage::default();
                for p in members
                    .iter()
                    .filter_map(|&p| system.process(Pid::from_u32(p)))
                {
                    usage.cpu += f64::from(p.cpu_usage());
                    usage.memory += p.memory();
                }
                usage.cpu = (usage.cpu * 10.0).round() / 10.0;
                (root, usage)
            })
            .collect();
        let mut live = HashSet::new();
        for view in &views {
            let Some(limit) = view.config.max_memory_restart else {
                continue;
            };
            for inst in view.instances.iter().filter(|i| i.status == Status::Online) {
                live.insert(inst.generation);
                let used = inst
                    .pid
                    .and_then(|p| figures.get(&p))
                    .map_or(0, |u| u.memory);
                let due = reported
                    .get(&inst.generation)
                    .is_none_or(|at| at.elapsed() >= REPORT_AGAIN);
                if used > limit && due {
                    reported.insert(inst.generation, Instant::now());
                    let reason = format!("memory limit {} exceeded: {}", size(limit), size(used));
                    registry.report(Trouble {
                        app: view.config.name.clone(),
                        generation: inst.generation,
                        reason,
                    });
                }
            }
        }
        reported.retain(|g, _| live.contains(g));
        samples.replace(figures);
    }
}

/// `root` and all its descendants, from `/proc/PID/task/TID/children`.
fn tree(root: u32) -> Vec<u32> {
    let mut members = vec![root];
    let mut next = 0;
    while next < members.len() {
        let pid = members[next];
        next += 1;
        let Ok(tasks) = fs::read_dir(format!("/proc/{pid}/task")) else {
            continue;
        };
        for task in tasks.flatten() {
            if let Ok(children) = fs::read_to_string(task.path().join("children")) {
                members.extend(
                    children
                        .split_whitespace()
                        .filter_map(|c| c.parse::<u32>().ok()),
                );
            }
        }
    }
    members
}

/// `150M`-style sizes for messages.
pub fn size(bytes: u64) -> String {
    const M: u64 = 1024 * 1024;
    if bytes >= 1024 * M && bytes.is_multiple_of(1024 * M) {
        format!("{}G", bytes / (1024 * M))
    } else {
        format!("{}M", bytes.div_ceil(M))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_children_of_a_tree() {
        let mut child = std::process::Command::new("sh")
            .args(["-c", "sleep 30 & sleep 30 & wait"])
            .spawn()
            .unwrap();
        let pid = child.id();
        let mut found = vec![];
        for _ in 0..200 {
            found = tree(pid);
            if found.len() == 3 {
                break;
            }
            std::thread::sleep(Duration::from_millis(5));
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

    #[test]
    fn sizes() {
        assert_eq!(size(150 * 1024 * 1024), "150M");
        assert_eq!(size(162 * 1024 * 1024 + 1), "163M");
        assert_eq!(size(2 * 1024 * 1024 * 1024), "2G");
    }
}
