//! The monitor: samples the CPU and memory of every instance's process tree
//! on an interval (default 1 s, PM2 uses 30 s), and acts on memory limits.
//!
//! An instance's tree is found by walking `/proc/PID/task/*/children` from
//! its main process ([`procfs::descendants`]; a shell wrapper's children
//! count too). One read of
//! `/proc/PID/stat` per process gives its CPU ticks, resident pages and
//! thread count; a process with one thread has one `children` file, so it
//! costs no directory listing. CPU is the percentage of one core since the
//! previous sample. The monitor is the one owner of the figures; `list`,
//! `show`, metrics and the memory check read its latest [`Samples`]. An
//! instance started since the last sample is read when first asked for, so
//! `supctl start` and a `list` right after it show its memory; what that
//! read finds outside the instance's group counts as seen by the monitor.
//!
//! The same tick has every app with a port look at its accept queues, so a
//! port nobody serves is seen without a timer of its own
//! ([`crate::unserved`]).

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use supd_proto::{ProcessInfo, Status};
use supd_supervisor::procfs;
use supd_supervisor::tree::Tree;
use tokio::sync::{mpsc, watch};

use crate::app::{AppView, Trouble};
use crate::views::Views;
use limits::{CLOSE_LOOK, Limits};

mod limits;

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
pub struct Samples(Arc<Mutex<Latest>>);

/// What [`Samples`] holds.
#[derive(Default)]
struct Latest {
    /// The figures of the last tick, and of first reads since.
    figures: HashMap<u32, Usage>,
    /// The trees with escaped descendants that first reads found since the
    /// last tick, by root: the next tick takes them, so an instance whose
    /// main process ends before that tick still has them killed.
    escapes: HashMap<u32, Tree>,
}

impl Samples {
    /// The process table of `views`, as `list` shows it.
    pub fn table(&self, views: &[AppView]) -> Vec<ProcessInfo> {
        views.iter().flat_map(|v| self.rows(v)).collect()
    }

    /// The `list` rows of one app, each instance with its latest figures
    /// (`problem` only for an online instance whose port nobody serves).
    pub fn rows(&self, view: &AppView) -> Vec<ProcessInfo> {
        let c = &view.config;
        view.instances
            .iter()
            .map(|i| (i, i.pid.map(|p| self.get(p)).unwrap_or_default()))
            .map(|(i, usage)| ProcessInfo {
                name: c.name.clone(),
                instance: i.slot,
                pid: i.pid,
                status: i.status,
                mode: c.exec_mode,
                restarts: i.restarts,
                uptime_ms: i.uptime_ms(),
                cpu: usage.cpu,
                memory: usage.memory,
                port: c.port,
                host: view.host,
                problem: match i.status {
                    Status::Online => view.unserved.get(&i.slot).cloned(),
                    _ => None,
                },
            })
            .collect()
    }

    /// The latest usage of the instance whose main process is `pid`. One
    /// the monitor has not sampled yet (it started since the last tick) is
    /// read now, memory only (CPU needs two readings), and kept until the
    /// next tick: a live process never shows 0 bytes.
    pub fn get(&self, pid: u32) -> Usage {
        let mut latest = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(usage) = latest.figures.get(&pid) {
            return *usage;
        }
        let walked = procfs::descendants(pid);
        let usage = Usage {
            cpu: 0.0,
            memory: resident(&walked, procfs::page_size()),
        };
        // Right after its exec a process has no resident page yet: read it
        // again next time rather than keep a 0.
        if usage.memory > 0 {
            latest.figures.insert(pid, usage);
        }
        let tree = Tree::from_walk(pid, &walked);
        if !tree.escaped().is_empty() {
            latest.escapes.insert(pid, tree);
        }
        usage
    }

    /// Starts the next tick's figures; the trees with escaped descendants
    /// found by first reads since the last tick are added to `trees`, where
    /// the tick did not walk the same root itself.
    fn replace(&self, figures: HashMap<u32, Usage>, trees: &mut HashMap<u32, Tree>) {
        let mut latest = self.0.lock().unwrap_or_else(|p| p.into_inner());
        latest.figures = figures;
        for (root, tree) in latest.escapes.drain() {
            trees.entry(root).or_insert(tree);
        }
    }
}

/// Samples every `interval` (which can change while running) until the
/// process exits, reporting instances over their memory limit on `trouble`.
pub async fn run(
    apps: Views,
    trouble: mpsc::UnboundedSender<Trouble>,
    samples: Samples,
    mut interval: watch::Receiver<Duration>,
) {
    let mut meter = Meter::new();
    let mut limits = Limits::default();
    let mut escaped = Escaped::default();
    'samples: loop {
        let period = *interval.borrow_and_update();
        let next = tokio::time::Instant::now() + period;
        // Until the next sample, instances that may cross their memory
        // limit meanwhile are looked at every CLOSE_LOOK.
        loop {
            let wake = if limits.watching() {
                next.min(tokio::time::Instant::now() + CLOSE_LOOK)
            } else {
                next
            };
            tokio::select! {
                () = tokio::time::sleep_until(wake) => {}
                _ = interval.changed() => continue 'samples,
            }
            if tokio::time::Instant::now() >= next {
                break;
            }
            limits.look_closer(meter.page_size, &trouble);
        }
        let handles = apps.handles();
        let views: Vec<AppView> = handles.iter().map(|a| a.view()).collect();
        let roots: HashSet<u32> = views
            .iter()
            .flat_map(|v| &v.instances)
            .filter(|i| crate::instance::live(i.status))
            .filter_map(|i| i.pid)
            .collect();
        let mut trees = HashMap::new();
        let figures = meter.sample(&roots, &mut trees);
        limits.after_sample(&handles, &views, &figures, &trouble);
        samples.replace(figures, &mut trees);
        escaped.end_with(&roots, trees);
        // Apps without a port are not asked (see [`crate::unserved`]).
        handles.iter().for_each(|a| a.look_at_queues());
    }
}

/// The descendants that left their instance's process group, by the pid of
/// the instance's main process, as the latest sample saw them. A stop brings down the tree
/// it stops (`app::retire`); this is for an instance whose main process
/// ended by itself (a crash, a failed launch): its escaped descendants were
/// reparented to supd, out of reach of its group, and are SIGKILLed at the
/// next sample, like its group was.
#[derive(Default)]
struct Escaped(HashMap<u32, Tree>);

impl Escaped {
    /// Kills the escaped descendants of the instances whose main process is
    /// no longer an `active` root (launching, online or stopping: a
    /// stopping one's tree is the stop's), among those kept and those in
    /// `latest` (a first read's, of an instance ended since), then keeps
    /// the `latest` trees of the active ones.
    fn end_with(&mut self, active: &HashSet<u32>, latest: HashMap<u32, Tree>) {
        let kept = std::mem::take(&mut self.0);
        for (root, tree) in kept.into_iter().chain(latest) {
            if active.contains(&root) {
                self.0.insert(root, tree);
            } else if tree.signal_escaped(Signal::SIGKILL) {
                tracing::warn!(
                    root,
                    ?tree,
                    "its main process has ended: SIGKILL to the processes that left its group"
                );
            }
        }
    }
}

/// Reads process trees, and turns the CPU ticks each process used between
/// two samples into a percentage.
struct Meter {
    /// Each process's start time and CPU ticks at the previous sample; the
    /// start time tells a recycled pid from the process that had it.
    previous: HashMap<u32, (u64, u64)>,
    /// When the previous sample was taken.
    at: Instant,
    /// The unit of CPU ticks (`sysconf(_SC_CLK_TCK)`).
    ticks_per_second: f64,
    /// The unit of resident pages.
    page_size: u64,
}

impl Meter {
    fn new() -> Meter {
        Meter {
            previous: HashMap::new(),
            at: Instant::now(),
            ticks_per_second: procfs::clock_ticks() as f64,
            page_size: procfs::page_size(),
        }
    }

    /// The usage of each tree, by its root's pid. A process seen for the
    /// first time counts its memory but no CPU yet. The trees with
    /// descendants outside their group go to `escaped`, by root.
    fn sample(
        &mut self,
        roots: &HashSet<u32>,
        escaped: &mut HashMap<u32, Tree>,
    ) -> HashMap<u32, Usage> {
        let seconds = self.at.elapsed().as_secs_f64().max(1e-3);
        self.at = Instant::now();
        let mut seen = HashMap::new();
        let figures = roots
            .iter()
            .map(|&root| {
                let mut ticks = 0;
                let walked = procfs::descendants(root);
                let tree = Tree::from_walk(root, &walked);
                if !tree.escaped().is_empty() {
                    escaped.insert(root, tree);
                }
                for &(pid, stat) in &walked {
                    if let Some(&(start, before)) = self.previous.get(&pid)
                        && start == stat.start_time
                    {
                        ticks += stat.cpu_ticks.saturating_sub(before);
                    }
                    seen.insert(pid, (stat.start_time, stat.cpu_ticks));
                }
                let percent = ticks as f64 / self.ticks_per_second / seconds * 100.0;
                let usage = Usage {
                    cpu: (percent * 10.0).round() / 10.0,
                    memory: resident(&walked, self.page_size),
                };
                (root, usage)
            })
            .collect();
        self.previous = seen;
        figures
    }
}

/// The resident bytes of a walked process tree, its pages `page_size` big.
fn resident(walked: &[(u32, procfs::Stat)], page_size: u64) -> u64 {
    walked
        .iter()
        .map(|(_, stat)| stat.rss_pages * page_size)
        .sum()
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
    fn a_busy_tree_shows_cpu_and_memory() {
        let mut child = std::process::Command::new("sh")
            .args(["-c", "while :; do :; done"])
            .spawn()
            .unwrap();
        let pid = child.id();
        let mut meter = Meter::new();
        let first = meter.sample(&HashSet::from([pid]), &mut HashMap::new())[&pid];
        let start = procfs::stat(pid).unwrap().cpu_ticks;
        let deadline = Instant::now() + Duration::from_secs(10);
        while procfs::stat(pid).unwrap().cpu_ticks < start + 5 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        let second = meter.sample(&HashSet::from([pid]), &mut HashMap::new())[&pid];
        let _ = child.kill();
        let _ = child.wait();
        assert_eq!(first.cpu, 0.0, "no CPU before a second reading");
        assert!(second.cpu > 0.0 && second.memory > 0, "{second:?}");
    }

    #[test]
    fn a_process_not_sampled_yet_is_read_at_once() {
        let mut child = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .unwrap();
        let pid = child.id();
        // `spawn` returns once the exec is done, before the new image has
        // run (and faulted in a page): wait until it has.
        let deadline = Instant::now() + Duration::from_secs(10);
        while procfs::stat(pid).map_or(0, |s| s.rss_pages) == 0 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
        let samples = Samples::default();
        let first = samples.get(pid);
        let _ = child.kill();
        let _ = child.wait();
        assert!(first.memory > 0 && first.cpu == 0.0, "{first:?}");
        assert_eq!(samples.get(child.id()), first, "kept until the next tick");
    }

    #[test]
    fn sizes() {
        assert_eq!(size(150 * 1024 * 1024), "150M");
        assert_eq!(size(162 * 1024 * 1024 + 1), "163M");
        assert_eq!(size(2 * 1024 * 1024 * 1024), "2G");
    }
}
