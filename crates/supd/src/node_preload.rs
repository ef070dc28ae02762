//! The Node preload (`node/preload.js`, built into the daemon): written to
//! `SUPD_HOME/node-preload.js` at start and given to every instance of an
//! app with a `port` through `NODE_OPTIONS=--require`, so an unmodified Node
//! app that calls `server.listen(PORT)` takes the daemon's socket on fd 3.
//! Programs that are not Node ignore `NODE_OPTIONS`.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use supd_proto::Home;

/// The script itself.
const SOURCE: &str = include_str!("../node/preload.js");

/// Where it was written, once written.
static INSTALLED: OnceLock<PathBuf> = OnceLock::new();

/// Writes the preload under `home` (once per daemon), replacing whatever
/// was there (a link planted there is replaced, never followed).
pub fn install(home: &Home) -> std::io::Result<()> {
    let path = home.dir().join("node-preload.js");
    crate::home::write_atomically(&path, SOURCE.as_bytes(), false)?;
    let _ = INSTALLED.set(path);
    Ok(())
}

/// `NODE_OPTIONS` for an instance: the caller's, plus our `--require`.
pub fn node_options(existing: Option<&str>) -> Option<String> {
    let path: &Path = INSTALLED.get()?;
    let require = format!("--require \"{}\"", path.display());
    Some(match existing {
        Some(options) if !options.trim().is_empty() => format!("{options} {require}"),
        _ => require,
    })
}
