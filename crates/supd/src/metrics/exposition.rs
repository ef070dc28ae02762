//! The two exposition formats a Prometheus scraper reads, written from one
//! model: the text format 0.0.4 (the default, what every scraper parses) and
//! OpenMetrics 1.0.0 (when the scraper's `Accept` header prefers it).
//!
//! They differ where a parser notices: a 0.0.4 counter's family is named
//! with its `_total` suffix (`# TYPE x_total counter`, then `x_total 3`),
//! an OpenMetrics counter's family without it (`# TYPE x counter`, then
//! `x_total 3`), and only OpenMetrics ends with `# EOF`. Families and
//! samples come out in the order they are given, so a scrape is stable.

use std::fmt::Write;

/// The content type of the text format 0.0.4.
pub const TEXT: &str = "text/plain; version=0.0.4; charset=utf-8";

/// The content type of OpenMetrics 1.0.0.
pub const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// An exposition format.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// Prometheus text format 0.0.4.
    Text,
    /// OpenMetrics 1.0.0.
    OpenMetrics,
}

impl Format {
    /// The `Content-Type` a body of this format is served with.
    pub fn content_type(self) -> &'static str {
        match self {
            Format::Text => TEXT,
            Format::OpenMetrics => OPENMETRICS,
        }
    }

    /// The format a scraper sending `accept` prefers: OpenMetrics when the
    /// header gives it a higher quality than the text format (Prometheus
    /// sends `application/openmetrics-text;version=1.0.0,…,
    /// text/plain;version=0.0.4;q=0.5,…`), the text format otherwise,
    /// including without a header and on a tie.
    pub fn negotiate(accept: Option<&str>) -> Format {
        let Some(accept) = accept else {
            return Format::Text;
        };
        let quality = |kind: &str, subtype: &str| {
            accept
                .split(',')
                .filter_map(|range| media_range(range, kind, subtype))
                .fold(0.0, f64::max)
        };
        if quality("application", "openmetrics-text") > quality("text", "plain") {
            Format::OpenMetrics
        } else {
            Format::Text
        }
    }
}

/// The quality `range` (one element of an `Accept` header) gives
/// `kind/subtype`, if it matches it (exactly, `kind/*` or `*/*`).
fn media_range(range: &str, kind: &str, subtype: &str) -> Option<f64> {
    let mut parts = range.split(';').map(str::trim);
    let (k, s) = parts.next()?.split_once('/')?;
    let matches = (k == "*" && s == "*")
        || (k.eq_ignore_ascii_case(kind) && (s == "*" || s.eq_ignore_ascii_case(subtype)));
    if !matches {
        return None;
    }
    let q = parts
        .filter_map(|p| p.split_once('='))
        .find(|(name, _)| name.trim().eq_ignore_ascii_case("q"))
        .map_or(Some(1.0), |(_, q)| q.trim().parse::<f64>().ok())?;
    Some(q.clamp(0.0, 1.0))
}

/// What a family's samples measure, as both formats type it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// A value that goes up and down.
    Gauge,
    /// A total that only goes up (its sample is named `NAME_total`).
    Counter,
}

/// One metric family: its name (without `_total` for a counter), help
/// text, kind and samples.
#[derive(Clone, Debug, PartialEq)]
pub struct Family {
    /// The name; a counter's samples add `_total`.
    pub name: &'static str,
    /// One line saying what it measures.
    pub help: &'static str,
    /// Gauge or counter.
    pub kind: Kind,
    /// The samples, in the order they are written.
    pub samples: Vec<Sample>,
}

/// One sample: its label pairs, in order, and its value.
#[derive(Clone, Debug, PartialEq)]
pub struct Sample {
    /// `(name, value)` pairs, written in this order.
    pub labels: Vec<(&'static str, String)>,
    /// The value.
    pub value: f64,
}

impl Family {
    /// An empty family.
    pub fn new(name: &'static str, kind: Kind, help: &'static str) -> Family {
        Family {
            name,
            help,
            kind,
            samples: Vec::new(),
        }
    }

    /// Adds a sample.
    pub fn sample(&mut self, labels: Vec<(&'static str, String)>, value: f64) {
        self.samples.push(Sample { labels, value });
    }
}

/// The body of `families` in `format`.
pub fn render(families: &[Family], format: Format) -> String {
    let mut out = String::new();
    for family in families {
        let sample_name = match family.kind {
            Kind::Gauge => family.name.to_string(),
            Kind::Counter => format!("{}_total", family.name),
        };
        let (family_name, kind) = match (family.kind, format) {
            (Kind::Gauge, _) => (family.name, "gauge"),
            (Kind::Counter, Format::Text) => (sample_name.as_str(), "counter"),
            (Kind::Counter, Format::OpenMetrics) => (family.name, "counter"),
        };
        let _ = writeln!(out, "# HELP {family_name} {}", escape(family.help, false));
        let _ = writeln!(out, "# TYPE {family_name} {kind}");
        for sample in &family.samples {
            out.push_str(&sample_name);
            if !sample.labels.is_empty() {
                let pairs: Vec<String> = sample
                    .labels
                    .iter()
                    .map(|(name, value)| format!("{name}=\"{}\"", escape(value, true)))
                    .collect();
                let _ = write!(out, "{{{}}}", pairs.join(","));
            }
            let _ = writeln!(out, " {}", number(sample.value));
        }
    }
    if format == Format::OpenMetrics {
        out.push_str("# EOF\n");
    }
    out
}

/// `text` with backslashes and line feeds escaped, and double quotes too in
/// a label value (the rule of both formats).
fn escape(text: &str, quotes: bool) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '"' if quotes => out.push_str("\\\""),
            c => out.push(c),
        }
    }
    out
}

/// A value as both formats spell it: shortest decimal, `NaN`, `+Inf`, `-Inf`.
fn number(value: f64) -> String {
    match value {
        v if v.is_nan() => "NaN".into(),
        f64::INFINITY => "+Inf".into(),
        f64::NEG_INFINITY => "-Inf".into(),
        v => v.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What Prometheus 2.x sends, and what other scrapers send.
    #[test]
    fn negotiation() {
        let prometheus = "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1";
        for (accept, want) in [
            (None, Format::Text),
            (Some(""), Format::Text),
            (Some("*/*"), Format::Text),
            (Some("text/plain"), Format::Text),
            (
                Some("text/plain;version=0.0.4;q=0.5,*/*;q=0.1"),
                Format::Text,
            ),
            (Some(prometheus), Format::OpenMetrics),
            (Some("application/openmetrics-text"), Format::OpenMetrics),
            (
                Some("Application/OpenMetrics-Text; version=1.0.0"),
                Format::OpenMetrics,
            ),
            (Some("application/*"), Format::OpenMetrics),
            (
                Some("application/openmetrics-text;q=0.3, text/plain;q=0.7"),
                Format::Text,
            ),
            (
                Some("application/openmetrics-text;q=0.7, text/plain;q=0.3"),
                Format::OpenMetrics,
            ),
            (Some("application/openmetrics-text;q=0"), Format::Text),
            (Some("application/openmetrics-text;q=oops"), Format::Text),
            (Some("application/json"), Format::Text),
            (Some("garbage"), Format::Text),
        ] {
            assert_eq!(Format::negotiate(accept), want, "{accept:?}");
        }
    }

    fn families() -> Vec<Family> {
        let mut restarts = Family::new("x_restarts", Kind::Counter, "Restarts");
        restarts.sample(vec![("app", "a\"b\\c\nd".into())], 3.0);
        let mut memory = Family::new("x_memory_bytes", Kind::Gauge, "Memory, \\ and\nmore");
        memory.sample(vec![], 0.5);
        memory.sample(vec![("a", "1".into()), ("b", "2".into())], f64::NAN);
        vec![
            restarts,
            memory,
            Family::new("x_empty", Kind::Gauge, "None"),
        ]
    }

    #[test]
    fn text_names_counters_with_total_and_has_no_eof() {
        assert_eq!(
            render(&families(), Format::Text),
            "# HELP x_restarts_total Restarts\n\
             # TYPE x_restarts_total counter\n\
             x_restarts_total{app=\"a\\\"b\\\\c\\nd\"} 3\n\
             # HELP x_memory_bytes Memory, \\\\ and\\nmore\n\
             # TYPE x_memory_bytes gauge\n\
             x_memory_bytes 0.5\n\
             x_memory_bytes{a=\"1\",b=\"2\"} NaN\n\
             # HELP x_empty None\n\
             # TYPE x_empty gauge\n"
        );
    }

    #[test]
    fn openmetrics_names_counter_families_without_total_and_ends_with_eof() {
        let body = render(&families(), Format::OpenMetrics);
        assert!(
            body.starts_with(
                "# HELP x_restarts Restarts\n\
                 # TYPE x_restarts counter\n\
                 x_restarts_total{app=\"a\\\"b\\\\c\\nd\"} 3\n"
            ),
            "{body}"
        );
        assert!(body.ends_with("# TYPE x_empty gauge\n# EOF\n"), "{body}");
    }

    #[test]
    fn numbers() {
        for (value, want) in [
            (0.0, "0"),
            (3.0, "3"),
            (0.25, "0.25"),
            (1e21, "1000000000000000000000"),
            (f64::INFINITY, "+Inf"),
            (f64::NEG_INFINITY, "-Inf"),
            (f64::NAN, "NaN"),
        ] {
            assert_eq!(number(value), want);
        }
    }
}
