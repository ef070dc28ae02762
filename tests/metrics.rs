//! `/metrics` as real scrapers read it: what the daemon serves is run
//! through Prometheus' own parsers — `promtool check metrics` (Debian's
//! `prometheus` package) for the text format 0.0.4, and the Python client's
//! two parsers (pinned in `tests/fixtures/metrics/requirements.txt`,
//! installed by the test into a venv) for 0.0.4 and OpenMetrics.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde_json::Value;

use crate::realapps::install;
use crate::support::{Supd, free_port};

/// The `Accept` header Prometheus 2.x scrapes with.
const PROMETHEUS_ACCEPT: &str = "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1";

const TEXT: &str = "text/plain; version=0.0.4; charset=utf-8";
const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// A daemon serving metrics at its port, with apps whose figures differ:
/// `nap` (2 instances, restarted once) and `idle` (stopped).
pub fn serving() -> (Supd, u16) {
    let supd = Supd::new();
    let port = free_port();
    let file = supd.write(
        "m.toml",
        &format!(
            "[daemon]\nmetrics = \"127.0.0.1:{port}\"\n\n[[apps]]\nname = \"nap\"\nscript = \"sleep\"\nargs = [\"300\"]\ninstances = 2\n\n[[apps]]\nname = \"idle\"\nscript = \"sleep\"\nargs = [\"300\"]\n"
        ),
    );
    supd.ok(&["start", file.to_str().unwrap()]);
    supd.ok(&["restart", "nap"]);
    supd.ok(&["stop", "idle"]);
    (supd, port)
}

/// GET `/metrics` with `accept` (if any): the content type and the body.
fn scrape(port: u16, accept: Option<&str>) -> (String, String) {
    let mut request = ureq::get(&format!("http://127.0.0.1:{port}/metrics"));
    if let Some(accept) = accept {
        request = request.header("Accept", accept);
    }
    let mut response = request.call().expect("GET /metrics");
    let content_type = response.headers()["content-type"]
        .to_str()
        .unwrap()
        .to_string();
    (content_type, response.body_mut().read_to_string().unwrap())
}

/// The venv with prometheus_client: its `python`.
fn python() -> PathBuf {
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/metrics");
    install::venv("metrics", &fixtures).join("python")
}

/// `program` found on PATH, as a shell would.
fn which(program: &str) -> Option<PathBuf> {
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|dir| dir.join(program))
        .find(|path| path.is_file())
}

/// Runs `program` with `args`, `body` on its standard input: its standard
/// output, or a panic with everything it said when it fails.
fn run_on(program: &Path, args: &[&str], body: &str) -> String {
    let mut child = Command::new(program)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{}: {e}", program.display()));
    child
        .stdin
        .take()
        .unwrap()
        .write_all(body.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert!(
        out.status.success(),
        "{} {args:?} failed ({}):\n{stdout}{stderr}\non:\n{body}",
        program.display(),
        out.status
    );
    stdout.into_owned()
}

/// prometheus_client's parser of `format` ("text" or "openmetrics") on
/// `body`: one `[name, type, [[sample, labels, value]…]]` per family.
fn parse(python: &Path, format: &str, body: &str) -> Vec<Value> {
    const SCRIPT: &str = "
import json, sys
from prometheus_client.parser import text_string_to_metric_families as text
from prometheus_client.openmetrics.parser import text_string_to_metric_families as openmetrics
parse = {'text': text, 'openmetrics': openmetrics}[sys.argv[1]]
json.dump([[f.name, f.type, [[s.name, s.labels, s.value] for s in f.samples]]
           for f in parse(sys.stdin.read())], sys.stdout)
";
    serde_json::from_str(&run_on(python, &["-c", SCRIPT, format], body)).unwrap()
}

/// The families without the values that change between two scrapes (CPU,
/// memory, uptime): names, types, sample names and labels, and the values
/// of restarts, statuses and instance counts.
fn steady(families: &[Value]) -> Vec<Value> {
    families
        .iter()
        .map(|f| {
            let keep = !["cpu", "memory", "uptime"]
                .iter()
                .any(|w| f[0].as_str().unwrap().contains(w));
            let samples: Vec<Value> = f[2]
                .as_array()
                .unwrap()
                .iter()
                .map(|s| {
                    let value = if keep { s[2].clone() } else { Value::Null };
                    serde_json::json!([s[0], s[1], value])
                })
                .collect();
            serde_json::json!([f[0], f[1], samples])
        })
        .collect()
}

#[test]
fn metrics_parse_as_text_0_0_4_and_as_openmetrics_when_asked() {
    let (_supd, port) = serving();
    let python = python();

    let (content_type, text) = scrape(port, None);
    assert_eq!(content_type, TEXT, "{text}");
    // .ci/run installs promtool; a developer's machine may not have it, and
    // the Python client's parser below checks the same text either way.
    match which("promtool") {
        Some(promtool) => drop(run_on(&promtool, &["check", "metrics"], &text)),
        None => eprintln!(
            "promtool is not on PATH (Debian: apt-get install prometheus): skipping its check"
        ),
    }
    let families = parse(&python, "text", &text);
    let names: Vec<&str> = families.iter().map(|f| f[0].as_str().unwrap()).collect();
    assert_eq!(
        names,
        [
            "supd_instance_cpu_percent",
            "supd_instance_memory_bytes",
            "supd_instance_restarts",
            "supd_instance_uptime_seconds",
            "supd_instance_status",
            "supd_app_desired_instances",
            "supd_app_online_instances",
            "supd_daemon_memory_bytes",
            "supd_daemon_cpu_seconds",
        ],
        "every family once, in this order:\n{text}"
    );
    for family in &families {
        let samples = family[2].as_array().unwrap();
        assert!(
            matches!(family[1].as_str(), Some("gauge" | "counter")) && !samples.is_empty(),
            "a typed family with samples: {family}\n{text}"
        );
    }
    // The restart counter, typed as a counter with its samples, by instance.
    let restarts: Vec<(String, String, f64)> = families[2][2]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s[0].as_str().unwrap().to_string(),
                format!("{}:{}", s[1]["app"], s[1]["instance"]).replace('"', ""),
                s[2].as_f64().unwrap(),
            )
        })
        .collect();
    assert_eq!(families[2][1], "counter", "{text}");
    assert!(
        !text.contains("# EOF"),
        "OpenMetrics' end in 0.0.4:\n{text}"
    );
    let sample = |app: &str, restarts: f64| {
        (
            "supd_instance_restarts_total".to_string(),
            app.to_string(),
            restarts,
        )
    };
    assert_eq!(
        restarts,
        [
            sample("idle:0", 0.0),
            sample("nap:0", 1.0),
            sample("nap:1", 1.0)
        ],
        "sorted by app and instance:\n{text}"
    );

    // Prometheus' own Accept header: OpenMetrics, which its strict parser
    // reads (it insists on `# EOF`), with the same families and samples.
    let (content_type, openmetrics) = scrape(port, Some(PROMETHEUS_ACCEPT));
    assert_eq!(content_type, OPENMETRICS, "{openmetrics}");
    assert!(openmetrics.ends_with("# EOF\n"), "{openmetrics}");
    let parsed = parse(&python, "openmetrics", &openmetrics);
    assert_eq!(
        steady(&parsed),
        steady(&families),
        "the same metrics in both formats:\n{text}\n{openmetrics}"
    );

    // A stable order: another scrape lists the same samples the same way.
    let (_, again) = scrape(port, None);
    assert_eq!(
        steady(&parse(&python, "text", &again)),
        steady(&families),
        "{text}\n{again}"
    );
}

#[test]
fn metrics_answer_get_and_head_only() {
    let (_supd, port) = serving();
    let url = format!("http://127.0.0.1:{port}/metrics");
    let head = ureq::head(&url).call().expect("HEAD /metrics");
    assert_eq!(head.status(), 200);
    assert_eq!(head.headers()["content-type"], TEXT);
    for path in ["/metrics", "/json"] {
        let url = format!("http://127.0.0.1:{port}{path}");
        for method in ["POST", "PUT", "DELETE"] {
            let request = ureq::http::Request::builder()
                .method(method)
                .uri(&url)
                .body(())
                .unwrap();
            let response = ureq::Agent::config_builder()
                .http_status_as_error(false)
                .build()
                .new_agent()
                .run(request)
                .unwrap_or_else(|e| panic!("{method} {path}: {e}"));
            assert_eq!(response.status(), 405, "{method} {path}");
            assert_eq!(response.headers()["allow"], "GET, HEAD", "{method} {path}");
        }
    }
}
