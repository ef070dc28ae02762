//! systemd: per app a service unit (a template `NAME@.service` and a
//! `NAME.target` that wants its N instances, for more than one), and a
//! `NAME.socket` for an app with a port.
//!
//! The socket unit is what supd's daemon-held port is: systemd binds it
//! (`ReusePort=`, as supd binds), keeps it across restarts, and passes it to
//! every instance as fd 3 with `LISTEN_FDS=1`, `LISTEN_PID` and
//! `LISTEN_FDNAMES=NAME`, exactly as supd does; the instances of a template
//! share it (`Sockets=`), as a cluster's instances share supd's. An app
//! that says READY=1 (`wait_ready`) is `Type=notify` on the same protocol.
//! A unit runs at most once by construction, so a capped app needs nothing
//! more than its instance count.

use std::net::IpAddr;

use supd_config::{AppConfig, Readiness};

use crate::fate::{self, Format};
use crate::text;
use crate::{Document, Export, vars};

/// Every app of `apps` as units.
pub fn export(apps: &[AppConfig]) -> Export {
    let mut export = Export::default();
    for app in apps {
        export.warnings.extend(fate::lost(app, Format::Systemd));
        let mut app = app.clone();
        app.apply_interpreter();
        let units = Units::of(&app);
        export.documents.push(Document {
            file: units.service.clone(),
            text: service(&app, &units),
        });
        if let Some(port) = app.port {
            export.documents.push(Document {
                file: format!("{}.socket", app.name),
                text: socket(&app, port, &units),
            });
        }
        if let Some(target) = &units.target {
            export.documents.push(Document {
                file: target.clone(),
                text: target_unit(&app),
            });
        }
    }
    export
}

/// The names of an app's units.
struct Units {
    /// `NAME.service`, or the template `NAME@.service`.
    service: String,
    /// With instances: `NAME.target`.
    target: Option<String>,
    /// What the socket activates: the service, or the template's instance 0.
    activated: String,
}

impl Units {
    fn of(app: &AppConfig) -> Units {
        let name = &app.name;
        if app.instances > 1 {
            Units {
                service: format!("{name}@.service"),
                target: Some(format!("{name}.target")),
                activated: format!("{name}@0.service"),
            }
        } else {
            Units {
                service: format!("{name}.service"),
                target: None,
                activated: format!("{name}.service"),
            }
        }
    }
}

/// A unit file from its sections, each a list of `Key=value` lines
/// (sections without lines are left out).
fn unit(sections: &[(&str, Vec<String>)]) -> String {
    sections
        .iter()
        .filter(|(_, lines)| !lines.is_empty())
        .map(|(name, lines)| format!("[{name}]\n{}\n", lines.join("\n")))
        .collect::<Vec<_>>()
        .join("\n")
}

/// The service unit (or template).
fn service(app: &AppConfig, units: &Units) -> String {
    let install = if units.target.is_some() {
        Vec::new()
    } else {
        vec!["WantedBy=multi-user.target".into()]
    };
    unit(&[
        ("Unit", unit_section(app, units)),
        ("Service", service_section(app, units)),
        ("Install", install),
    ])
}

/// `[Unit]`: what the service belongs to and needs, and when to give up.
fn unit_section(app: &AppConfig, units: &Units) -> Vec<String> {
    let name = &app.name;
    let instance = if units.target.is_some() {
        " (instance %i)"
    } else {
        ""
    };
    let mut lines = vec![description(app, instance)];
    if let Some(target) = &units.target {
        lines.push(format!("PartOf={target}"));
    }
    if app.port.is_some() {
        lines.push(format!("Requires={name}.socket"));
        lines.push(format!("After={name}.socket"));
    }
    // supd gives up after max_restarts runs shorter than min_uptime in a
    // row; systemd after StartLimitBurst starts within the interval: those
    // runs (and their delays) fit in it.
    let burst = app.max_restarts.max(1);
    let unstable = (app.min_uptime + app.restart_delay) * burst;
    lines.push(format!(
        "StartLimitIntervalSec={}",
        text::seconds(unstable, 1)
    ));
    lines.push(format!("StartLimitBurst={burst}"));
    lines
}

/// `[Service]`: how it runs, restarts and stops.
fn service_section(app: &AppConfig, units: &Units) -> Vec<String> {
    let mut lines = Vec::new();
    if app.readiness() == Readiness::Notified {
        lines.push("Type=notify".into());
        lines.push("NotifyAccess=all".into());
        let timeout = text::duration(app.listen_timeout);
        lines.push(format!("TimeoutStartSec={timeout}"));
    } else {
        lines.push("Type=simple".into());
    }
    if app.port.is_some() {
        lines.push(format!("Sockets={}.socket", app.name));
    }
    let command: Vec<String> = std::iter::once(&app.script)
        .chain(&app.args)
        .map(|word| exec_word(word))
        .collect();
    lines.push(format!("ExecStart={}", command.join(" ")));
    let cwd = escape_specifiers(&app.cwd.display().to_string());
    lines.push(format!("WorkingDirectory={cwd}"));
    lines.extend(environment(app, units));
    let restart = if app.autorestart { "always" } else { "no" };
    lines.push(format!("Restart={restart}"));
    lines.push(format!("RestartSec={}", text::duration(app.restart_delay)));
    if !app.stop_exit_codes.is_empty() {
        let codes: Vec<String> = app.stop_exit_codes.iter().map(i32::to_string).collect();
        lines.push(format!("RestartPreventExitStatus={}", codes.join(" ")));
    }
    lines.push(format!("KillSignal={}", app.kill_signal));
    lines.push(format!(
        "TimeoutStopSec={}",
        text::duration(app.kill_timeout)
    ));
    if let Some(bytes) = app.max_memory_restart {
        let size = text::size(bytes, text::SYSTEMD_UNITS);
        lines.push(format!("MemoryMax={size}"));
    }
    if let Some(watchdog) = app.watchdog {
        lines.push(format!("WatchdogSec={}", text::duration(watchdog)));
    }
    for (key, file) in [
        ("StandardOutput", &app.out_file),
        ("StandardError", &app.error_file),
    ] {
        if let Some(file) = file {
            let path = escape_specifiers(&file.display().to_string());
            lines.push(format!("{key}=append:{path}"));
        }
    }
    lines
}

/// The `Environment=` lines: the app's values literal (`%` escaped), the
/// instance number the one specifier meant as one (`%i` in a template).
fn environment(app: &AppConfig, units: &Units) -> Vec<String> {
    let instance = if units.target.is_some() { "%i" } else { "0" };
    let own = vars::own(app, &[])
        .into_iter()
        .chain(vars::supd(app))
        .map(|(k, v)| format!("{k}={}", escape_specifiers(&v)));
    let numbered = vars::instance_names(app)
        .into_iter()
        .map(|k| format!("{k}={instance}"));
    own.chain(numbered)
        .map(|pair| format!("Environment={}", quote(&pair)))
        .collect()
}

/// The socket unit: the port, held by systemd across restarts.
fn socket(app: &AppConfig, port: u16, units: &Units) -> String {
    let listen = match app.host {
        None => port.to_string(),
        Some(IpAddr::V4(ip)) => format!("{ip}:{port}"),
        Some(IpAddr::V6(ip)) => format!("[{ip}]:{port}"),
    };
    unit(&[
        ("Unit", vec![description(app, " (its port)")]),
        (
            "Socket",
            vec![
                format!("ListenStream={listen}"),
                "ReusePort=yes".into(),
                format!("FileDescriptorName={}", app.name),
                format!("Service={}", units.activated),
            ],
        ),
        ("Install", vec!["WantedBy=sockets.target".into()]),
    ])
}

/// The target that starts an app's N instances: `systemctl start NAME.target`.
fn target_unit(app: &AppConfig) -> String {
    let instances: Vec<String> = (0..app.instances)
        .map(|i| format!("{}@{i}.service", app.name))
        .collect();
    unit(&[
        (
            "Unit",
            vec![
                description(app, &format!(" ({} instances)", app.instances)),
                format!("Wants={}", instances.join(" ")),
            ],
        ),
        ("Install", vec!["WantedBy=multi-user.target".into()]),
    ])
}

/// `Description=`.
fn description(app: &AppConfig, suffix: &str) -> String {
    format!("Description={}{suffix}, exported by supctl", app.name)
}

/// `%` written `%%`, so systemd reads no specifier.
fn escape_specifiers(text: &str) -> String {
    text.replace('%', "%%")
}

/// One `ExecStart=` word: specifiers and `$` variables escaped, quoted when
/// it has anything systemd would split or unescape.
fn exec_word(word: &str) -> String {
    let word = escape_specifiers(word).replace('$', "$$");
    let plain = !word.is_empty()
        && !word
            .chars()
            .any(|c| c.is_whitespace() || matches!(c, '"' | '\'' | '\\' | ';'));
    if plain { word } else { quote(&word) }
}

/// `text` in double quotes, C-escaped as systemd unquotes it.
fn quote(text: &str) -> String {
    let mut out = String::from("\"");
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::testing::app;

    #[test]
    fn exec_words() {
        for (word, written) in [
            ("/usr/bin/node", "/usr/bin/node"),
            ("--port=3000", "--port=3000"),
            ("two words", "\"two words\""),
            ("100%", "100%%"),
            ("$HOME", "$$HOME"),
            ("say \"hi\"", "\"say \\\"hi\\\"\""),
            (";", "\";\""),
            ("", "\"\""),
        ] {
            assert_eq!(exec_word(word), written, "{word}");
        }
    }

    #[test]
    fn sections_without_lines_are_left_out() {
        assert_eq!(
            unit(&[("Unit", vec!["A=1".into()]), ("Install", vec![])]),
            "[Unit]\nA=1\n"
        );
    }

    /// The units of `app` by file name.
    fn units(app: AppConfig) -> std::collections::BTreeMap<String, String> {
        export(&[app])
            .documents
            .into_iter()
            .map(|doc| (doc.file, doc.text))
            .collect()
    }

    /// Whether `text` has the line `line`.
    fn has(text: &str, line: &str) -> bool {
        text.lines().any(|l| l == line)
    }

    #[test]
    fn instances_are_a_template_and_a_target() {
        let units = units(app("api", |a| {
            a.instances = 3;
            a.port = Some(3000);
        }));
        let files: Vec<&str> = units.keys().map(String::as_str).collect();
        assert_eq!(files, ["api.socket", "api.target", "api@.service"]);
        assert!(has(
            &units["api.target"],
            "Wants=api@0.service api@1.service api@2.service"
        ));
        let service = &units["api@.service"];
        for line in [
            "Environment=\"INSTANCE_ID=%i\"",
            "Sockets=api.socket",
            "PartOf=api.target",
            "Type=simple",
        ] {
            assert!(has(service, line), "{line} in\n{service}");
        }
        let socket = &units["api.socket"];
        for line in [
            "ListenStream=3000",
            "ReusePort=yes",
            "FileDescriptorName=api",
            "Service=api@0.service",
        ] {
            assert!(has(socket, line), "{line} in\n{socket}");
        }
    }

    #[test]
    fn keys_become_directives() {
        let units = units(app("billing", |a| {
            a.port = Some(30005);
            a.host = Some("127.0.0.1".parse().unwrap());
            a.wait_ready = true;
            a.listen_timeout = Duration::from_secs(10);
            a.max_memory_restart = Some(300 << 20);
            a.kill_timeout = Duration::from_millis(1600);
            a.kill_signal = "SIGTERM".into();
            a.restart_delay = Duration::from_secs(4);
            a.stop_exit_codes = vec![0, 3];
            a.watchdog = Some(Duration::from_secs(30));
            a.out_file = Some("/var/log/billing.log".into());
            a.env.insert("RATE".into(), "100%".into());
        }));
        let service = &units["billing.service"];
        for line in [
            "Type=notify",
            "TimeoutStartSec=10s",
            "MemoryMax=300M",
            "TimeoutStopSec=1600ms",
            "KillSignal=SIGTERM",
            "Restart=always",
            "RestartSec=4s",
            "RestartPreventExitStatus=0 3",
            "WatchdogSec=30s",
            "StandardOutput=append:/var/log/billing.log",
            "Environment=\"RATE=100%%\"",
            "Environment=\"INSTANCE_ID=0\"",
            "Environment=\"PORT=30005\"",
            "ExecStart=/srv/p/bin/app",
            "WantedBy=multi-user.target",
        ] {
            assert!(has(service, line), "{line} in\n{service}");
        }
        assert!(has(
            &units["billing.socket"],
            "ListenStream=127.0.0.1:30005"
        ));
    }

    #[test]
    fn an_interpreted_script_runs_through_its_interpreter() {
        let units = units(app("web", |a| {
            a.script = "/srv/p/app.js".into();
            a.autorestart = false;
        }));
        let service = &units["web.service"];
        assert!(has(service, "ExecStart=node /srv/p/app.js"), "{service}");
        assert!(has(service, "Restart=no"));
    }
}
