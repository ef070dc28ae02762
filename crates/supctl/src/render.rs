//! Human output: the process table and the `show` page.

use std::net::IpAddr;

use comfy_table::{Table, presets::UTF8_FULL_CONDENSED};
use supd_config::Wrapper;
use supd_proto::{AppDetail, ProcessInfo, Status};

/// The status cell of an online instance that does not serve its port: no
/// wider than `launching`, so the table keeps its width.
const UNSERVED: &str = "unserved";

/// The `list` table. An online instance reported as not serving its port
/// shows [`UNSERVED`] as its status, explained under the table.
pub fn process_table(processes: &[ProcessInfo]) -> String {
    let mut table = Table::new();
    table.load_style(UTF8_FULL_CONDENSED).set_header([
        "name", "id", "mode", "pid", "status", "restarts", "uptime", "cpu", "memory",
    ]);
    for p in processes {
        table.add_row([
            p.name.clone(),
            p.instance.to_string(),
            format!("{:?}", p.mode).to_lowercase(),
            p.pid.map_or("-".into(), |pid| pid.to_string()),
            match (p.status, &p.problem) {
                (Status::Online, Some(_)) => UNSERVED.to_string(),
                (status, _) => status.as_str().to_string(),
            },
            p.restarts.to_string(),
            if p.pid.is_some() {
                duration(p.uptime_ms)
            } else {
                "-".into()
            },
            format!("{:.1}%", p.cpu),
            bytes(p.memory),
        ]);
    }
    let mut out = table.to_string();
    if let Some(p) = processes.iter().find(|p| p.problem.is_some()) {
        out.push_str(&format!(
            "\n{UNSERVED}: online, but nothing accepts the connections on its port (supctl show {})",
            p.name
        ));
    }
    out
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
    line("port", c.port.map_or("-".into(), |p| p.to_string()));
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
            .filter(|l| l.contains(" web "))
            .map(|l| l.split(['│', '┆']).nth(5).unwrap().trim().to_string())
            .collect()
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
}
