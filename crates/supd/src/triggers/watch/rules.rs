//! What counts as a change of one app: under a watched path, outside
//! SUPD_HOME, `node_modules` and `.git`, and not matched by `ignore_watch`;
//! and how a reason names a changed path.

use std::path::{Path, PathBuf};

use globset::GlobSet;
use supd_config::AppConfig;

/// Folder names whose contents never count, at any depth: dependencies and
/// version control.
const ALWAYS_IGNORED: &[&str] = &["node_modules", ".git"];

/// What counts as a change of one app.
#[derive(Debug)]
pub struct Rules {
    /// The watched paths (real paths, when they exist).
    pub roots: Vec<PathBuf>,
    /// The app's cwd (real path): PM2's base for patterns, and for names.
    pub cwd: PathBuf,
    /// `ignore_watch`.
    pub ignore: GlobSet,
    /// SUPD_HOME (real path): its logs and state files change at every
    /// restart, so they must never cause one.
    pub home: PathBuf,
}

impl Rules {
    pub fn new(config: &AppConfig, home: &Path) -> Result<Rules, String> {
        let real = |p: &Path| p.canonicalize().unwrap_or_else(|_| p.to_path_buf());
        Ok(Rules {
            roots: config.watch.iter().map(|p| real(p)).collect(),
            cwd: real(&config.cwd),
            ignore: config.watch_ignore()?,
            home: real(home),
        })
    }

    /// Whether a change at `path` restarts the app: it is a watched path or
    /// lies under one, outside SUPD_HOME, not under `node_modules` or
    /// `.git`, and no `ignore_watch` pattern matches it or a folder it is
    /// in. Patterns are matched against the path relative to the watched
    /// path, relative to the app's cwd (as PM2 does) and as an absolute
    /// path; a pattern without `/` also against each name in it.
    pub fn counts(&self, path: &Path) -> bool {
        let Some(root) = self.roots.iter().find(|root| path.starts_with(root)) else {
            return false;
        };
        if self.home.starts_with(root) && path.starts_with(&self.home) {
            return false;
        }
        let inside = path.strip_prefix(root).unwrap_or(path);
        if inside
            .components()
            .any(|c| ALWAYS_IGNORED.iter().any(|name| c.as_os_str() == *name))
        {
            return false;
        }
        if self.ignore.is_empty() {
            return true;
        }
        let from_cwd = path.strip_prefix(&self.cwd).ok();
        let names = inside.components().map(|c| Path::new(c.as_os_str()));
        let mut candidates = inside
            .ancestors()
            .chain(from_cwd.into_iter().flat_map(Path::ancestors))
            .chain(path.ancestors())
            .chain(names)
            .filter(|c| !c.as_os_str().is_empty());
        !candidates.any(|c| self.ignore.is_match(c))
    }

    /// How a reason names `path`: relative to the app's cwd when under it.
    pub fn name(&self, path: &Path) -> String {
        match path.strip_prefix(&self.cwd) {
            Ok(rel) if rel.as_os_str().is_empty() => ".".into(),
            Ok(rel) => rel.display().to_string(),
            Err(_) => path.display().to_string(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Rules over `root` (watched) inside `cwd`, with `ignore` patterns.
    fn rules(cwd: &str, roots: &[&str], ignore: &[&str]) -> Rules {
        let mut config = AppConfig::with_defaults("a".into(), "x".into(), cwd.into());
        config.watch = roots.iter().map(PathBuf::from).collect();
        config.ignore_watch = ignore.iter().map(|s| s.to_string()).collect();
        Rules {
            roots: config.watch.clone(),
            cwd: cwd.into(),
            ignore: config.watch_ignore().expect("valid patterns"),
            home: "/srv/app/.supd".into(),
        }
    }

    #[test]
    fn what_counts() {
        let r = rules(
            "/srv/app",
            &["/srv/app"],
            &["*.log", "tmp", "build/**", "docs/*.md", "/srv/app/cache"],
        );
        for counts in [
            "/srv/app",
            "/srv/app/server.js",
            "/srv/app/src/deep/a.js",
            "/srv/app/docs/deep/a.md",
            "/srv/app/builder/x.js",
            "/srv/app/logs.d/x",
        ] {
            assert!(r.counts(Path::new(counts)), "{counts} counts");
        }
        for ignored in [
            "/elsewhere/a.js",
            "/srv/application/a.js",
            "/srv/app/node_modules/x/index.js",
            "/srv/app/src/node_modules/y",
            "/srv/app/.git/index",
            "/srv/app/.supd/logs/a-out.log",
            "/srv/app/.supd/state.json",
            "/srv/app/a.log",
            "/srv/app/src/deep/b.log",
            "/srv/app/tmp",
            "/srv/app/src/tmp/x.js",
            "/srv/app/build",
            "/srv/app/build/out.js",
            "/srv/app/docs/a.md",
            "/srv/app/cache/x",
        ] {
            assert!(!r.counts(Path::new(ignored)), "{ignored} is ignored");
        }
    }

    #[test]
    fn patterns_match_from_the_cwd_and_from_the_watched_path() {
        let r = rules(
            "/srv/app",
            &["/srv/app/src", "/srv/app/config.json"],
            &["src/generated/**", "fixtures"],
        );
        assert!(r.counts(Path::new("/srv/app/src/a.js")));
        assert!(r.counts(Path::new("/srv/app/config.json")));
        // Beside a watched file, in its folder: not watched.
        assert!(!r.counts(Path::new("/srv/app/other.json")));
        // PM2's way: relative to the cwd.
        assert!(!r.counts(Path::new("/srv/app/src/generated/x.js")));
        // A name, under the watched folder.
        assert!(!r.counts(Path::new("/srv/app/src/fixtures/y.json")));
        assert_eq!(r.name(Path::new("/srv/app/src/a.js")), "src/a.js");
        assert_eq!(r.name(Path::new("/srv/app")), ".");
        assert_eq!(r.name(Path::new("/opt/x")), "/opt/x");
    }

    #[test]
    fn supd_home_counts_when_it_holds_the_app() {
        // An app kept inside SUPD_HOME is watched as usual.
        let mut r = rules("/srv/app", &["/srv/app"], &[]);
        r.home = "/srv".into();
        assert!(r.counts(Path::new("/srv/app/a.js")));
    }
}
