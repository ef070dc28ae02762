//! From an app as written to an [`AppConfig`] ready to run: defaults filled
//! in, paths made absolute against the file's folder, `instances` counted,
//! `env_<name>` applied over `env`, and the rules that tie keys together.

use std::collections::BTreeMap;
use std::path::{Component, Path, PathBuf};

use toml::Spanned;

use crate::diag::Diag;
use crate::health::PORT_PLACEHOLDER;
use crate::raw::{HEALTH_TUNING, PORT_TUNING, RawApp, RawWatch, WATCH_TUNING};
use crate::values::{self, Instances};
use crate::{AppConfig, DEV_NULL};

/// What resolving needs besides the app itself.
pub(crate) struct Context<'a> {
    /// The ecosystem file's folder (canonical, absolute).
    pub dir: &'a Path,
    /// `--env NAME`.
    pub env: Option<&'a str>,
    /// Cores, for `instances = "max"` and `-1`.
    pub cores: u32,
}

/// Resolves one app; `None` when a required key is missing or invalid (already reported).
pub(crate) fn resolve(raw: RawApp, ctx: &Context<'_>, diag: &mut Diag<'_>) -> Option<AppConfig> {
    let index = raw.index;
    let instances = raw
        .instances
        .as_ref()
        .map(|at| at.get_ref().resolve(ctx.cores));

    // max_instances caps instances; its reason means nothing without it.
    if let (Some(at), Some(count)) = (&raw.instances, instances) {
        let reason = raw
            .max_instances_reason
            .as_ref()
            .map(|r| r.get_ref().as_str());
        if let Err(message) = values::check_instance_cap(count, raw.max_instances, reason) {
            let how = match at.get_ref() {
                Instances::Count(_) => String::new(),
                Instances::Max => format!(" (\"max\" is {count} on this machine)"),
                Instances::AllButOne => format!(" (-1 is {count} on this machine)"),
            };
            diag.at(
                at.span(),
                format!("apps[{index}].instances: {message}{how}"),
            );
        }
    }
    if let (Some(reason), None) = (&raw.max_instances_reason, raw.max_instances) {
        diag.at(
            reason.span(),
            format!("apps[{index}].max_instances_reason: has no effect without max_instances"),
        );
    }

    // `{port}` in health_check needs a port.
    if let Some(check) = &raw.health_check {
        // An invalid port is reported on its own; not again here.
        let port_given = raw.spans.contains_key("port");
        if !port_given
            && check.get_ref().contains(PORT_PLACEHOLDER)
            && let Err(message) = crate::health::parse(check.get_ref(), None)
        {
            diag.at(
                check.span(),
                format!("apps[{index}].health_check: {message}"),
            );
        }
    }
    // Tuning keys need what they tune.
    needs("health_check", HEALTH_TUNING, &raw, diag);
    needs("watch", WATCH_TUNING, &raw, diag);
    // A host says where the daemon's socket for the port listens; an app
    // without a port binds its own sockets, wherever it likes.
    needs("port", PORT_TUNING, &raw, diag);

    let cwd = raw
        .cwd
        .map_or_else(|| ctx.dir.to_path_buf(), |cwd| resolve_path(&cwd, ctx.dir));
    let watch = raw
        .watch
        .map(|watch| resolve_watch(watch, &cwd, index, diag))
        .unwrap_or_default();
    let files = resolve_files(&raw.files, index, &cwd, diag);
    let name = raw.name?.into_inner();
    let script = resolve_script(&raw.script?, ctx.dir);
    let mut app = AppConfig::with_defaults(name, script, cwd);
    app.args = raw.args.unwrap_or(app.args);
    app.apply_interpreter();
    app.exec_mode = raw.exec_mode.unwrap_or(app.exec_mode);
    app.instances = instances.unwrap_or(app.instances);
    app.port = raw.port.map(Spanned::into_inner);
    app.host = raw.host;
    app.wait_ready = raw.wait_ready.unwrap_or(app.wait_ready);
    app.wait_ready_written = raw.wait_ready.is_some();
    app.listen_timeout = raw.listen_timeout.unwrap_or(app.listen_timeout);
    app.kill_signal = raw.kill_signal.unwrap_or(app.kill_signal);
    app.kill_timeout = raw.kill_timeout.unwrap_or(app.kill_timeout);
    app.autorestart = raw.autorestart.unwrap_or(app.autorestart);
    app.max_restarts = raw.max_restarts.unwrap_or(app.max_restarts);
    app.min_uptime = raw.min_uptime.unwrap_or(app.min_uptime);
    app.restart_delay = raw.restart_delay.unwrap_or(app.restart_delay);
    app.exp_backoff_restart_delay = raw.exp_backoff_restart_delay;
    app.stop_exit_codes = raw.stop_exit_codes.unwrap_or(app.stop_exit_codes);
    app.max_memory_restart = raw.max_memory_restart;
    app.cron_restart = raw.cron_restart;
    app.instance_var = raw.instance_var.unwrap_or(app.instance_var);
    app.max_instances = raw.max_instances;
    app.max_instances_reason = raw.max_instances_reason.map(Spanned::into_inner);
    app.log_date_format = raw.log_date_format;
    app.health_check = raw.health_check.map(Spanned::into_inner);
    app.health_interval = raw.health_interval.unwrap_or(app.health_interval);
    app.health_timeout = raw.health_timeout.unwrap_or(app.health_timeout);
    app.health_retries = raw.health_retries.unwrap_or(app.health_retries);
    app.watchdog = raw.watchdog;
    app.log_max_size = raw.log_max_size;
    app.log_retain = raw.log_retain;
    app.log_compress = raw.log_compress;
    app.log_rotate_interval = raw.log_rotate_interval;
    app.merge_logs = raw.merge_logs.unwrap_or(app.merge_logs);
    let file = |key: &str| files.get(key).cloned();
    app.out_file = file("out_file");
    app.error_file = file("error_file");
    app.log_file = file("log_file");
    app.pid_file = file("pid_file");
    app.watch = watch;
    app.ignore_watch = raw.ignore_watch.unwrap_or_default();
    app.watch_delay = raw.watch_delay.unwrap_or(app.watch_delay);
    app.env = raw.env;
    if let Some(set) = ctx.env.and_then(|name| raw.env_sets.get(name)) {
        app.env
            .extend(set.iter().map(|(k, v)| (k.clone(), v.clone())));
    }
    // (An app over its max_instances is refused for that, once.)
    let capped = app.max_instances.is_some_and(|cap| app.instances > cap);
    if let Some(message) = app.unshared_cluster().filter(|_| !capped) {
        let span = raw
            .spans
            .get("exec_mode")
            .or_else(|| raw.spans.get("instances"));
        if let Some(span) = span {
            diag.at(span.clone(), format!("apps[{index}].exec_mode: {message}"));
        }
    }
    Some(app)
}

/// `out_file`, `error_file`, `log_file` and `pid_file`, absolute (relative
/// ones against the app's `cwd`, as PM2 does), by key. Each must name a
/// file, not a folder, and no two the same file (`/dev/null` aside): two
/// writers, or two rotations, of one file would garble it.
fn resolve_files(
    files: &BTreeMap<&'static str, Spanned<String>>,
    index: usize,
    cwd: &Path,
    diag: &mut Diag<'_>,
) -> BTreeMap<String, PathBuf> {
    let mut resolved: BTreeMap<String, PathBuf> = BTreeMap::new();
    // In file order, so a clash is reported at the later key.
    let mut written: Vec<_> = files.iter().collect();
    written.sort_by_key(|(_, path)| path.span().start);
    for (key, path) in written {
        let absolute = resolve_path(path.get_ref(), cwd);
        let at = format!("apps[{index}].{key}");
        if absolute.is_dir() {
            let shown = absolute.display();
            diag.at(
                path.span(),
                format!("{at}: {shown} is a folder; give a file name"),
            );
            continue;
        }
        let same = resolved
            .iter()
            .find(|(_, other)| **other == absolute && absolute != Path::new(DEV_NULL));
        if let Some((other, _)) = same {
            let hint = if *key != "pid_file" && other != "pid_file" {
                " (set log_file for one file with both streams)"
            } else {
                ""
            };
            diag.at(
                path.span(),
                format!("{at}: {} is also {other}{hint}", absolute.display()),
            );
            continue;
        }
        resolved.insert((*key).to_owned(), absolute);
    }
    resolved
}

/// Reports each key of `tuning` written without `key`: it would do nothing.
fn needs(key: &str, tuning: &[&str], raw: &RawApp, diag: &mut Diag<'_>) {
    if raw.spans.contains_key(key) {
        return;
    }
    for tuned in tuning {
        if let Some(span) = raw.spans.get(*tuned) {
            diag.at(
                span.clone(),
                format!("apps[{}].{tuned}: has no effect without {key}", raw.index),
            );
        }
    }
}

/// The watched paths, absolute (relative ones against the app's `cwd`, as
/// PM2 does); each must exist, or nothing would ever be seen there.
fn resolve_watch(watch: RawWatch, cwd: &Path, index: usize, diag: &mut Diag<'_>) -> Vec<PathBuf> {
    let paths = match watch {
        RawWatch::Off => return Vec::new(),
        RawWatch::Cwd(span) => {
            if !cwd.is_dir() {
                diag.at(
                    span,
                    format!(
                        "apps[{index}].watch: true watches the app's cwd, {}, which is not a folder",
                        cwd.display()
                    ),
                );
            }
            return vec![cwd.to_path_buf()];
        }
        RawWatch::Paths(paths) => paths,
    };
    let mut resolved = Vec::with_capacity(paths.len());
    for (at, path) in paths {
        let absolute = resolve_path(path.get_ref(), cwd);
        if !absolute.exists() {
            diag.at(
                path.span(),
                format!(
                    "{at}: {:?} does not exist ({})",
                    path.get_ref(),
                    absolute.display()
                ),
            );
        }
        resolved.push(absolute);
    }
    resolved
}

/// A script with a `/` is a path (relative to the file's folder); a bare
/// name stays as is, for a PATH lookup when the app starts.
fn resolve_script(script: &str, dir: &Path) -> String {
    if script.contains('/') {
        resolve_path(script, dir).to_string_lossy().into_owned()
    } else {
        script.to_owned()
    }
}

/// Makes `path` absolute: `~/` is the user's home, a relative path is
/// relative to `dir`. `.` components are dropped; a leading `..` climbs out
/// of `dir` (canonical, so that is exact), while a `..` after a folder name
/// is kept, since that folder may be a symlink.
fn resolve_path(path: &str, dir: &Path) -> PathBuf {
    let home = std::env::var_os("HOME")
        .filter(|h| !h.is_empty())
        .map(PathBuf::from);
    let (mut resolved, rest, mut canonical) = match (home, path.strip_prefix('~')) {
        (Some(home), Some(rest)) if rest.is_empty() || rest.starts_with('/') => {
            (home, rest.trim_start_matches('/'), false)
        }
        _ => (dir.to_path_buf(), path, true),
    };
    for component in Path::new(rest).components() {
        match component {
            Component::CurDir => {}
            Component::ParentDir if canonical => {
                resolved.pop();
            }
            Component::RootDir | Component::Prefix(_) => {
                resolved = PathBuf::from(component.as_os_str());
                canonical = false;
            }
            other => {
                resolved.push(other);
                canonical = false;
            }
        }
    }
    resolved
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths() {
        let dir = Path::new("/srv/eco");
        assert_eq!(resolve_path(".", dir), dir);
        assert_eq!(
            resolve_path("./app/../x", dir),
            Path::new("/srv/eco/app/../x")
        );
        assert_eq!(resolve_path("/opt/x", dir), Path::new("/opt/x"));
        assert_eq!(resolve_path("data", dir), Path::new("/srv/eco/data"));
        assert_eq!(resolve_script("node", dir), "node");
        assert_eq!(resolve_script("./bin/api", dir), "/srv/eco/bin/api");
        assert_eq!(
            resolve_script("target/release/api", dir),
            "/srv/eco/target/release/api"
        );
        assert_eq!(resolve_script("/usr/bin/env", dir), "/usr/bin/env");
    }
}
