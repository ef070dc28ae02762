//! Reading a PM2 ecosystem file into a JSON value.

use std::io::Read;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde_json::Value;

/// How long `node` may take to evaluate a config file.
const NODE_LIMIT: Duration = Duration::from_secs(20);

/// Loads the file and prints `module.exports` as JSON (ES modules through
/// `import()`, a `default` export unwrapped); errors as one line on stderr.
const NODE_SCRIPT: &str = r#"
const p = process.argv[1];
const fail = (e) => {
  const stack = String((e && e.stack) || '');
  const first = stack.split('\n')[0];
  const loc = first.startsWith(p) ? first.slice(p.length + 1) + ': ' : '';
  process.stderr.write((loc ? 'line ' + loc : '') + ((e && e.message) || String(e)).split('\n')[0] + '\n');
  process.exit(1);
};
const out = (m) => {
  if (m && typeof m === 'object' && !Array.isArray(m) && !('apps' in m) && !('script' in m) && 'default' in m) m = m.default;
  process.stdout.write(JSON.stringify(m === undefined ? null : m));
};
const viaImport = () => import(require('url').pathToFileURL(p).href).then(out, fail);
if (p.endsWith('.mjs')) { viaImport(); } else {
  let m, ok = false;
  try { m = require(p); ok = true; } catch (e) {
    if (e && (e.code === 'ERR_REQUIRE_ESM' || e.code === 'ERR_REQUIRE_ASYNC_MODULE')) viaImport(); else fail(e);
  }
  if (ok) out(m);
}
"#;

/// PM2 reads a `.json` file as a JavaScript expression
/// (`Common.parseConfig`: `vm.runInThisContext('(' + text + ')')`), so
/// comments and trailing commas pass; a file strict JSON refuses is read
/// that way.
const NODE_JSON_SCRIPT: &str = r#"
const p = process.argv[1];
try {
  const m = require('vm').runInThisContext('(' + require('fs').readFileSync(p, 'utf8') + ')', { filename: p, timeout: 1000 });
  process.stdout.write(JSON.stringify(m === undefined ? null : m));
} catch (e) {
  process.stderr.write(String((e && e.message) || e).split('\n')[0] + '\n');
  process.exit(1);
}
"#;

/// The file's contents as JSON; an error naming the file when it cannot be read.
pub fn read(file: &Path) -> anyhow::Result<Value> {
    let label = file.display();
    let ext = file
        .extension()
        .map(|e| e.to_string_lossy().to_ascii_lowercase())
        .unwrap_or_default();
    if !file.exists() {
        // The OS error, phrased like the other file errors of supctl.
        std::fs::metadata(file).with_context(|| format!("cannot read {label}"))?;
    }
    match ext.as_str() {
        "js" | "cjs" | "mjs" => node(file, NODE_SCRIPT),
        "json" => {
            let text =
                std::fs::read_to_string(file).with_context(|| format!("cannot read {label}"))?;
            // Strict JSON first; what it refuses, as PM2 reads it.
            parse_text(&text, true, &label.to_string())
                .or_else(|strict| node(file, NODE_JSON_SCRIPT).map_err(|_| strict))
        }
        "yaml" | "yml" => {
            let text =
                std::fs::read_to_string(file).with_context(|| format!("cannot read {label}"))?;
            parse_text(&text, false, &label.to_string())
        }
        "toml" => bail!("{label} is already a TOML file: check it with supctl check {label}"),
        _ => bail!(
            "{label}: unknown kind of file (expected a PM2 ecosystem file: .js, .cjs, .mjs, .json, .yaml or .yml)"
        ),
    }
}

/// The text of a `.json` file (`json`), else of a `.yaml`/`.yml` file, as
/// JSON; an error naming `label` when it does not parse.
pub fn parse_text(text: &str, json: bool, label: &str) -> anyhow::Result<Value> {
    if json {
        serde_json::from_str(text).map_err(|e| anyhow::anyhow!("{label}: invalid JSON: {e}"))
    } else {
        serde_norway::from_str(text).map_err(|e| anyhow::anyhow!("{label}: invalid YAML: {e}"))
    }
}

/// Evaluates a JavaScript config with `node` running `script` and parses
/// the JSON it prints.
fn node(file: &Path, script: &str) -> anyhow::Result<Value> {
    let label = file.display();
    let path = std::path::absolute(file).with_context(|| format!("cannot read {label}"))?;
    std::fs::File::open(&path).with_context(|| format!("cannot read {label}"))?;
    let mut child = match Command::new("node")
        .arg("-e")
        .arg(script)
        .arg(&path)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
    {
        Ok(child) => child,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => bail!(
            "cannot read {label}: node is needed to evaluate a JavaScript ecosystem file and was not found in PATH (or convert it to JSON first)"
        ),
        Err(e) => bail!("cannot read {label}: cannot run node: {e}"),
    };
    let drain = |r: Option<Box<dyn Read + Send>>| {
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            if let Some(mut r) = r {
                let _ = r.read_to_end(&mut buf);
            }
            buf
        })
    };
    let stdout = drain(child.stdout.take().map(|s| Box::new(s) as _));
    let stderr = drain(child.stderr.take().map(|s| Box::new(s) as _));
    let deadline = Instant::now() + NODE_LIMIT;
    let status = loop {
        if let Some(status) = child.try_wait()? {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            bail!(
                "cannot read {label}: node did not finish evaluating it within {} s",
                NODE_LIMIT.as_secs()
            );
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    let stdout = stdout.join().unwrap_or_default();
    let stderr = String::from_utf8_lossy(&stderr.join().unwrap_or_default()).into_owned();
    if !status.success() {
        let reason = stderr
            .lines()
            .map(str::trim)
            .find(|l| !l.is_empty())
            .unwrap_or("node failed");
        bail!("cannot read {label}: {reason}");
    }
    let value: Value = serde_json::from_slice(&stdout)
        .map_err(|e| anyhow::anyhow!("cannot read {label}: node printed no JSON: {e}"))?;
    Ok(value)
}
