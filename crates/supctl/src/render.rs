//! Human output: the process table and the `show` page.

use std::net::IpAddr;

use comfy_table::{CellAlignment, Table, presets::NOTHING};
use supd_config::Wrapper;
use supd_proto::{AppDetail, ProcessInfo, Status};

/// The status cell of an online instance that does not serve its port: no
/// wider than `launching`, so the table keeps its width.
const UNSERVED: &str = "unserved";

/// The widest the `list` table gets, in columns: a classic terminal's width,
/// which a realistic table fits without wrapping.
const WIDTH: usize = 80;

/// The narrowest a name column cut to fit [`WIDTH`] gets: past that, the
/// table is wider rather than the names unreadable.
const MIN_NAME: usize = 8;

/// The table's columns: header, and whether the cells are right-aligned
/// (figures). Short headers as PM2's (`↺` for restarts, `mem`).
const COLUMNS: [(&str, bool); 10] = [
    ("name", false),
    ("id", true),
    ("mode", false),
    ("pid", true),
    ("status", false),
    ("↺", true),
    ("uptime", true),
    ("cpu", true),
    ("mem", true),
    ("port", true),
];

/// The `list` table: no borders, two spaces between columns, or one when
/// that keeps it within [`WIDTH`]; names that still do not fit are cut
/// with an ellipsis (`list --json` and `show` have them whole). An online
/// instance reported as not serving its port shows [`UNSERVED`] as its
/// status, explained under the table.
pub fn process_table(processes: &[ProcessInfo]) -> String {
    let mut rows: Vec<[String; 10]> = processes.iter().map(cells).collect();
    let widths = COLUMNS.map(|(header, _)| header.chars().count());
    let widths = rows.iter().fold(widths, |w, row| {
        std::array::from_fn(|c| w[c].max(row[c].chars().count()))
    });
    let (gap, name_width) = fit(&widths);
    for row in &mut rows {
        row[0] = shorten(&row[0], name_width);
    }
    let mut table = Table::new();
    table
        .load_style(NOTHING)
        .set_header(COLUMNS.map(|(header, _)| header))
        .add_rows(rows);
    for (i, column) in table.column_iter_mut().enumerate() {
        column.set_padding((if i == 0 { 0 } else { gap }, 0));
        if COLUMNS[i].1 {
            column.set_cell_alignment(CellAlignment::Right);
        }
    }
    let mut out = table.to_string();
    if let Some(p) = processes.iter().find(|p| p.problem.is_some()) {
        out.push_str(&format!(
            "\n{UNSERVED}: online, but nothing accepts the connections on its port;\n  see supctl show {}",
            p.name
        ));
    }
    out
}

/// One instance's cells, in [`COLUMNS`] order.
fn cells(p: &ProcessInfo) -> [String; 10] {
    let running = |cell: String| if p.pid.is_some() { cell } else { "-".into() };
    [
        p.name.clone(),
        p.instance.to_string(),
        format!("{:?}", p.mode).to_lowercase(),
        p.pid.map_or("-".into(), |pid| pid.to_string()),
        match (p.status, &p.problem) {
            (Status::Online, Some(_)) => UNSERVED.to_string(),
            (status, _) => status.as_str().to_string(),
        },
        p.restarts.to_string(),
        running(duration(p.uptime_ms)),
        running(cpu(p.cpu)),
        running(memory(p.memory)),
        p.port.map_or("-".into(), |port| port.to_string()),
    ]
}

/// The gap between columns and the name column's width, for columns
/// `widths` wide (the name's first): two spaces if the names fit whole
/// within [`WIDTH`], else one, and the names get what is left (at least
/// [`MIN_NAME`]).
fn fit(widths: &[usize; 10]) -> (u16, usize) {
    let others: usize = widths[1..].iter().sum();
    let gaps = widths.len() - 1;
    if others + 2 * gaps + widths[0] <= WIDTH {
        return (2, widths[0]);
    }
    let left = WIDTH.saturating_sub(others + gaps).max(MIN_NAME);
    (1, widths[0].min(left))
}

/// Resident memory in [`bytes`]' units, without the decimal from 100 up
/// (`45.6mb`, `150mb`, `1023mb`), so the cell stays 6 wide.
fn memory(n: u64) -> String {
    let mut value = n as f64;
    let mut units = ["b", "kb", "mb", "gb"].into_iter();
    while value >= 1024.0 && units.len() > 1 {
        value /= 1024.0;
        units.next();
    }
    let unit = units.next().unwrap_or("gb");
    match unit == "b" || value >= 99.95 {
        true => format!("{value:.0}{unit}"),
        false => format!("{value:.1}{unit}"),
    }
}

/// `name` cut to `width` characters, the last one an ellipsis if cut.
fn shorten(name: &str, width: usize) -> String {
    match name.chars().count() > width {
        true => name.chars().take(width - 1).chain(['…']).collect(),
        false => name.to_string(),
    }
}

/// CPU percent: one decimal under 10 %, none above (`0.3%`, `12%`, `250%`),
/// so the cell stays 4 wide.
fn cpu(percent: f64) -> String {
    match percent < 9.95 {
        true => format!("{percent:.1}%"),
        false => format!("{percent:.0}%"),
    }
}

/// `show`'s port: as configured, or learned from the app's first `listen()`
/// (docs/cluster.md, "Zero-config Node clusters"), or still to be learned.
fn port_shown(c: &supd_config::AppConfig) -> String {
    match c.port {
        Some(port) if c.port_learned => format!("{port} (learned from the app's listen())"),
        Some(port) => port.to_string(),
        None if c.learns_port() => "- (learned at the app's first listen())".into(),
        None => "-".into(),
    }
}

/// The `show` page.
pub fn detail(app: &AppDetail) -> String {
    let c = &app.config;
    let mut out = String::new();
    let mut line = |k: &str, v: String| out.push_str(&format!("{k:<26} {v}\n"));
    line("name", c.name.clone());
    line("script", c.script.clone());
    line("args", format!("{:?}", c.args));
    line("cwd", c.cwd.display().to_string());
    line("exec_mode", format!("{:?}", c.exec_mode).to_lowercase());
    line("instances", c.instances.to_string());
    line("port", port_shown(c));
    line("host", listen_host(app.host));
    let readiness = c.readiness();
    line(
        "ready",
        match readiness.waits() {
            true => format!(
                "{readiness}, within {}",
                duration(c.listen_timeout.as_millis() as u64)
            ),
            false => readiness.to_string(),
        },
    );
    line("kill_signal", c.kill_signal.clone());
    line("kill_timeout", duration(c.kill_timeout.as_millis() as u64));
    line("autorestart", c.autorestart.to_string());
    line("max_restarts", c.max_restarts.to_string());
    line("min_uptime", duration(c.min_uptime.as_millis() as u64));
    line(
        "restart_delay",
        duration(c.restart_delay.as_millis() as u64),
    );
    line(
        "exp_backoff_restart_delay",
        c.exp_backoff_restart_delay
            .map_or("-".into(), |d| duration(d.as_millis() as u64)),
    );
    line("stop_exit_codes", format!("{:?}", c.stop_exit_codes));
    line(
        "max_instances",
        c.max_instances.map_or("-".into(), |m| m.to_string()),
    );
    line(
        "max_memory_restart",
        c.max_memory_restart
            .map_or("-".into(), |m| format!("{} ({m} bytes)", bytes(m))),
    );
    line(
        "cron_restart",
        c.cron_restart.clone().unwrap_or_else(|| "-".into()),
    );
    if let Some(next) = &app.next_cron_restart {
        line("next cron restart", next.clone());
    }
    line(
        "watch",
        list(c.watch.iter().map(|p| p.display().to_string())),
    );
    if !c.watch.is_empty() {
        line("ignore_watch", list(c.ignore_watch.iter().cloned()));
        line("watch_delay", duration(c.watch_delay.as_millis() as u64));
    }
    if let Some(problem) = &app.watch_problem {
        line("watch problem", problem.clone());
    }
    line("out log", app.logs.out.display().to_string());
    if let Some(problem) = &app.log_problem {
        line("log problem", problem.clone());
    }
    line("err log", app.logs.err.display().to_string());
    let file = |path: &Option<std::path::PathBuf>| {
        path.as_ref()
            .map_or("-".into(), |p| p.display().to_string())
    };
    line("log_file", file(&c.log_file));
    line("pid_file", file(&c.pid_file));
    for (k, v) in &c.env {
        line(&format!("env.{k}"), v.clone());
    }
    let processes: Vec<ProcessInfo> = app.instances.iter().map(|i| i.process.clone()).collect();
    out.push_str(&process_table(&processes));
    out.push('\n');
    for i in &app.instances {
        let exit = i
            .last_exit
            .map_or("-".into(), |e| match (e.code, e.signal) {
                (Some(code), _) => format!("exit code {code}"),
                (_, Some(sig)) => format!("signal {sig}"),
                _ => "-".into(),
            });
        out.push_str(&format!(
            "instance {}: last exit {exit}, unstable restarts {}{}\n",
            i.process.instance,
            i.unstable_restarts,
            i.last_error
                .as_ref()
                .map_or(String::new(), |e| format!(", last error: {e}")),
        ));
        if let Some(reason) = &i.restart_reason {
            out.push_str(&format!(
                "instance {}: last restarted by supd: {reason}\n",
                i.process.instance
            ));
        }
        if let Some(status) = &i.status_text {
            out.push_str(&format!(
                "instance {}: status: {status}\n",
                i.process.instance
            ));
        }
        if let Some(problem) = &i.process.problem {
            out.push_str(&format!(
                "instance {}: not serving: {problem}\n",
                i.process.instance
            ));
        }
    }
    if app.instances.iter().any(|i| i.process.problem.is_some()) {
        out.push_str(&format!("hint: {}\n", unserved_hint(c)));
    }
    out
}

/// Where a port listens, as bound: the address, and what an unspecified
/// one means; `-` without a port.
fn listen_host(host: Option<IpAddr>) -> String {
    match host {
        None => "-".into(),
        Some(ip @ IpAddr::V6(_)) if ip.is_unspecified() => {
            format!("{ip} (every interface, IPv4 too)")
        }
        Some(ip @ IpAddr::V4(_)) if ip.is_unspecified() => {
            format!("{ip} (every interface, IPv4 only)")
        }
        Some(ip) => ip.to_string(),
    }
}

/// What to do about a port nobody serves: the wrapper's advice, or what
/// any program must do with the socket.
fn unserved_hint(app: &supd_config::AppConfig) -> String {
    match Wrapper::of_app(app) {
        Some(wrapper) => format!(
            "{} runs the server as a child process, which does not get the port's socket; {}",
            wrapper.name(),
            wrapper.advice()
        ),
        None => "the program must accept connections on the socket it gets as fd 3 (LISTEN_FDS=1, LISTEN_PID = its own pid); one that binds the port itself or leaves it to a child process never does (see docs/cluster.md, \"A port nobody serves\")".into(),
    }
}

/// Items separated by commas; `-` for none.
fn list(items: impl Iterator<Item = String>) -> String {
    let joined = items.collect::<Vec<_>>().join(", ");
    if joined.is_empty() {
        "-".into()
    } else {
        joined
    }
}

/// `950ms`, `42s`, `5m`, `3h`, `2d`.
pub fn duration(ms: u64) -> String {
    match ms {
        0..1000 => format!("{ms}ms"),
        1000..60_000 => format!("{}s", ms / 1000),
        60_000..3_600_000 => format!("{}m", ms / 60_000),
        3_600_000..86_400_000 => format!("{}h", ms / 3_600_000),
        _ => format!("{}d", ms / 86_400_000),
    }
}

/// `512b`, `12.3kb`, `45.6mb`, `1.2gb`.
pub fn bytes(n: u64) -> String {
    const K: f64 = 1024.0;
    let f = n as f64;
    if f < K {
        format!("{n}b")
    } else if f < K * K {
        format!("{:.1}kb", f / K)
    } else if f < K * K * K {
        format!("{:.1}mb", f / K / K)
    } else {
        format!("{:.1}gb", f / K / K / K)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{Ipv4Addr, Ipv6Addr};

    #[test]
    fn listen_hosts() {
        #[rustfmt::skip]
        let cases: &[(Option<IpAddr>, &str)] = &[
            (None, "-"),
            (Some(Ipv6Addr::UNSPECIFIED.into()), ":: (every interface, IPv4 too)"),
            (Some(Ipv4Addr::UNSPECIFIED.into()), "0.0.0.0 (every interface, IPv4 only)"),
            (Some(Ipv4Addr::LOCALHOST.into()), "127.0.0.1"),
            (Some(Ipv6Addr::LOCALHOST.into()), "::1"),
        ];
        for (host, want) in cases {
            assert_eq!(listen_host(*host), *want);
        }
    }

    use supd_config::{AppConfig, ExecMode};
    use supd_proto::{AppLogs, InstanceDetail};

    fn row(instance: u32, status: Status, problem: Option<&str>) -> ProcessInfo {
        ProcessInfo {
            name: "web".into(),
            instance,
            pid: Some(100 + instance),
            status,
            mode: ExecMode::Cluster,
            restarts: 0,
            uptime_ms: 1000,
            cpu: 0.0,
            memory: 0,
            port: Some(3000),
            host: None,
            problem: problem.map(str::to_string),
        }
    }

    /// The status cell of each row, read back from the table.
    fn statuses(table: &str) -> Vec<String> {
        table
            .lines()
            .filter(|l| l.starts_with("web "))
            .map(|l| l.split_whitespace().nth(4).unwrap().to_string())
            .collect()
    }

    /// A platform's table at its widest: `api-gateway` x4 with pids from
    /// `pid`, `waiting-restart`, `restarts`, busy CPUs, ports; the stopped
    /// `notification-service`; an online app called `name`.
    fn platform(name: &str, pid: u32, restarts: u32) -> Vec<ProcessInfo> {
        let mut rows = Vec::new();
        for (instance, status, problem) in [
            (0, Status::Online, None),
            (1, Status::WaitingRestart, None),
            (2, Status::Online, Some("nothing accepts")),
            (3, Status::Launching, None),
        ] {
            let mut p = row(instance, status, problem);
            p.name = "api-gateway".into();
            p.pid = (status != Status::WaitingRestart).then_some(pid + instance);
            p.restarts = restarts;
            p.uptime_ms = 950;
            p.cpu = 250.4;
            p.memory = 1023 * 1024 * 1024;
            rows.push(p);
        }
        let mut lone = row(0, Status::Stopped, None);
        lone.name = "notification-service".into();
        lone.mode = ExecMode::Fork;
        lone.pid = None;
        lone.port = None;
        rows.push(lone);
        let mut other = row(0, Status::Online, None);
        other.name = name.into();
        other.uptime_ms = 3 * 86_400_000;
        other.memory = 47_815_065;
        rows.push(other);
        rows
    }

    #[test]
    fn the_table_fits_80_columns_and_keeps_every_figure() {
        // (the other app, first pid, restarts, how its name and
        // notification-service's read): every column at its widest cuts a
        // 20-character name by 2.
        #[rustfmt::skip]
        let cases: &[(&str, u32, u32, &str, &str)] = &[
            ("web", 4_194_000, 16, "web", "notification-serv…"),
            ("web", 419_400, 16, "web", "notification-servi…"),
            ("web", 419_400, 3, "web", "notification-service"),
            ("reporting-worker-long-name", 419_400, 3, "reporting-worker-lo…", "notification-service"),
        ];
        for &(name, pid, restarts, shown, notification) in cases {
            let processes = platform(name, pid, restarts);
            let table = process_table(&processes);
            for line in table.lines() {
                assert!(line.chars().count() <= WIDTH, "{line:?}\n{table}");
                assert_eq!(line, line.trim_end(), "trailing spaces\n{table}");
            }
            let lines: Vec<Vec<&str>> = table
                .lines()
                .take(processes.len() + 1)
                .map(|l| l.split_whitespace().collect())
                .collect();
            assert_eq!(
                lines[0],
                [
                    "name", "id", "mode", "pid", "status", "↺", "uptime", "cpu", "mem", "port"
                ]
            );
            for (p, line) in processes.iter().zip(&lines[1..]) {
                let mut want = cells(p).to_vec();
                want[0] = match p.name.as_str() {
                    "notification-service" => notification.into(),
                    "api-gateway" => p.name.clone(),
                    _ => shown.into(),
                };
                assert_eq!(line, &want, "{table}");
            }
            for cell in [
                "waiting-restart",
                "unserved",
                "950ms",
                "250%",
                "1023mb",
                "45.6mb",
                "3d",
            ] {
                assert!(table.contains(cell), "{cell} missing\n{table}");
            }
        }
    }

    #[test]
    fn columns_are_two_spaces_apart_when_the_names_fit_and_one_when_not() {
        let cases: &[(&[usize; 10], (u16, usize))] = &[
            (&[4, 2, 7, 7, 6, 1, 6, 4, 6, 4], (2, 4)),
            (&[20, 2, 7, 7, 15, 2, 6, 4, 6, 4], (1, 18)),
            (&[20, 2, 7, 6, 15, 1, 6, 4, 6, 4], (1, 20)),
            (&[38, 2, 7, 7, 6, 2, 6, 4, 6, 4], (1, 27)),
            (&[60, 4, 7, 7, 15, 5, 6, 6, 8, 5], (1, MIN_NAME)),
        ];
        for (widths, want) in cases {
            assert_eq!(fit(widths), *want, "{widths:?}");
        }
        assert_eq!(shorten("notification-service", 12), "notificatio…");
        assert_eq!(shorten("api-gateway", 11), "api-gateway");
    }

    #[test]
    fn memory_cells_stay_six_wide() {
        #[rustfmt::skip]
        let cases: &[(u64, &str)] = &[
            (0, "0b"), (1023, "1023b"), (47_815_065, "45.6mb"),
            (150 * 1024 * 1024, "150mb"), (1023 * 1024, "1023kb"), (1024 * 1024, "1.0mb"), (1023 * 1024 * 1024, "1023mb"),
            (3 * 1024 * 1024 * 1024, "3.0gb"),
        ];
        for &(n, cell) in cases {
            assert_eq!(memory(n), cell);
        }
    }

    #[test]
    fn cpu_cells_stay_four_wide() {
        for (percent, cell) in [
            (0.0, "0.0%"),
            (0.34, "0.3%"),
            (9.94, "9.9%"),
            (9.96, "10%"),
            (99.5, "100%"),
            (250.4, "250%"),
        ] {
            assert_eq!(cpu(percent), cell);
        }
    }

    #[test]
    fn an_online_instance_nobody_serves_reads_unserved_in_the_table() {
        let cases: &[(Status, Option<&str>, &str)] = &[
            (Status::Online, None, "online"),
            (Status::Online, Some("nothing accepts"), "unserved"),
            (Status::Errored, None, "errored"),
        ];
        for &(status, problem, cell) in cases {
            let table = process_table(&[row(0, status, problem)]);
            assert_eq!(statuses(&table), [cell], "{table}");
            assert_eq!(
                table.contains("unserved: online, but nothing accepts"),
                problem.is_some(),
                "{table}"
            );
            assert_eq!(
                table.contains("\n  see supctl show web"),
                problem.is_some(),
                "{table}"
            );
        }
    }

    #[test]
    fn show_gives_the_hint_for_the_program() {
        let cases: &[(&str, &[&str], &str)] = &[
            (
                "npm",
                &["start"],
                "hint: npm runs the server as a child process",
            ),
            (
                "sh",
                &["-c", "node a.js"],
                "hint: sh -c runs the server as a child process",
            ),
            (
                "/srv/app",
                &[],
                "hint: the program must accept connections on the socket it gets as fd 3",
            ),
        ];
        for &(script, args, hint) in cases {
            let mut config = AppConfig::with_defaults("web".into(), script.into(), "/srv".into());
            config.args = args.iter().map(|a| a.to_string()).collect();
            config.port = Some(3000);
            let instance = |problem| InstanceDetail {
                process: row(0, Status::Online, problem),
                unstable_restarts: 0,
                last_exit: None,
                last_error: None,
                status_text: None,
                restart_reason: None,
            };
            let mut app = AppDetail {
                config,
                instances: vec![instance(None)],
                logs: AppLogs {
                    name: "web".into(),
                    out: "/o".into(),
                    err: "/e".into(),
                    log: None,
                    instances: Vec::new(),
                },
                next_cron_restart: None,
                log_problem: None,
                watch_problem: None,
                host: None,
            };
            assert!(!detail(&app).contains("hint:"));
            app.instances = vec![instance(Some("nothing accepts"))];
            let page = detail(&app);
            assert!(
                page.contains("instance 0: not serving: nothing accepts"),
                "{page}"
            );
            assert!(page.contains(hint), "{page}");
        }
    }

    #[test]
    fn show_says_where_the_port_comes_from() {
        let app = |script: &str, mode, port, learned| {
            let mut c = AppConfig::with_defaults("web".into(), script.into(), "/srv".into());
            c.apply_interpreter();
            (c.exec_mode, c.port, c.port_learned) = (mode, port, learned);
            c
        };
        use ExecMode::{Cluster, Fork};
        let table = [
            (app("node", Cluster, Some(3000), false), "3000"),
            (
                app("node", Cluster, Some(3000), true),
                "3000 (learned from the app's listen())",
            ),
            (
                app("app.js", Cluster, None, false),
                "- (learned at the app's first listen())",
            ),
            (app("app.js", Fork, None, false), "-"),
            (app("./server", Cluster, None, false), "-"),
        ];
        for (config, want) in table {
            assert_eq!(port_shown(&config), want, "{config:?}");
        }
    }
}
