//! `health_check`: an `http://` URL, with `{port}` replaced by the app's
//! port, or a shell command.
//!
//! The URL is checked when the file is loaded and can be had parsed into
//! host, port and path ([`crate::AppConfig::health_probe`]).

use crate::HealthProbe;

/// The placeholder replaced by the app's port.
pub(crate) const PORT_PLACEHOLDER: &str = "{port}";

/// Parses a `health_check` value: exactly `http://…` is a URL, in which
/// `port` replaces `{port}` (an error when it is used and `port` is `None`);
/// anything else is a shell command, taken as is. Messages quote `text`.
pub(crate) fn parse(text: &str, port: Option<u16>) -> Result<HealthProbe, String> {
    if text.trim().is_empty() {
        return Err("must not be empty; write an http:// URL or a shell command".into());
    }
    match scheme(text) {
        Some(("http", rest)) => {
            if !rest.contains(PORT_PLACEHOLDER) {
                return http(text, text, rest);
            }
            let Some(port) = port else {
                return Err(format!(
                    "{text:?} uses {PORT_PLACEHOLDER} but the app has no port; set port, or write the port number in the URL"
                ));
            };
            let port = port.to_string();
            http(
                text,
                &text.replace(PORT_PLACEHOLDER, &port),
                &rest.replace(PORT_PLACEHOLDER, &port),
            )
        }
        Some((scheme, _)) if scheme.eq_ignore_ascii_case("https") => Err(format!(
            "{text:?}: only http:// health checks are supported (the daemon probes the app locally, without TLS); use http://, or a command such as \"curl -fsS https://…\""
        )),
        Some((scheme, _)) if scheme.eq_ignore_ascii_case("http") => {
            Err(format!("{text:?}: write the scheme in lower case, http://"))
        }
        Some((scheme, _)) => Err(format!(
            "{text:?}: {scheme}:// is not supported; only http:// health checks (or a shell command)"
        )),
        None if text.contains(PORT_PLACEHOLDER) => Err(format!(
            "{text:?}: {PORT_PLACEHOLDER} is replaced only in http:// URLs; a command finds the port in $PORT"
        )),
        None => Ok(HealthProbe::Command(text.to_owned())),
    }
}

/// `("http", "host/path")` when `text` starts with `scheme://`.
fn scheme(text: &str) -> Option<(&str, &str)> {
    let (scheme, rest) = text.split_once("://")?;
    let mut chars = scheme.chars();
    let well_formed = chars.next().is_some_and(|c| c.is_ascii_alphabetic())
        && chars.all(|c| c.is_ascii_alphanumeric() || "+.-".contains(c));
    well_formed.then_some((scheme, rest))
}

/// Splits the part after `http://` into host, port and path.
fn http(text: &str, url: &str, rest: &str) -> Result<HealthProbe, String> {
    let bad = |why: &str| Err(format!("{text:?} is not a valid http:// URL: {why}"));
    if url.chars().any(char::is_whitespace) {
        return bad("it contains a space (a command is written without http:// in front)");
    }
    if url.contains(['{', '}']) {
        return bad("only the {port} placeholder is replaced");
    }
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(end);
    // The fragment is never sent.
    let tail = tail.split_once('#').map_or(tail, |(before, _)| before);
    let path = if tail.starts_with('/') {
        tail.to_owned()
    } else {
        format!("/{tail}")
    };
    if authority.contains('@') {
        return bad("user names and passwords are not supported");
    }
    let (host, port) = if let Some(bracketed) = authority.strip_prefix('[') {
        let Some((host, after)) = bracketed.split_once(']') else {
            return bad("an IPv6 address needs a closing ]");
        };
        match after {
            "" => (host, None),
            _ => match after.strip_prefix(':') {
                Some(port) => (host, Some(port)),
                None => return bad("unexpected text after the IPv6 address"),
            },
        }
    } else {
        match authority.split_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (authority, None),
        }
    };
    if host.is_empty() {
        return bad("it has no host (e.g. http://127.0.0.1:{port}/health)");
    }
    let port = match port {
        None => 80,
        Some(digits) => match digits.parse::<u16>() {
            Ok(port) if port >= 1 && digits.bytes().all(|b| b.is_ascii_digit()) => port,
            _ => return bad(&format!("{digits:?} is not a port (1-65535)")),
        },
    };
    Ok(HealthProbe::Http {
        url: url.to_owned(),
        host: host.to_owned(),
        port,
        path,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn http(url: &str, host: &str, port: u16, path: &str) -> HealthProbe {
        HealthProbe::Http {
            url: url.into(),
            host: host.into(),
            port,
            path: path.into(),
        }
    }

    #[test]
    fn urls() {
        assert_eq!(
            parse("http://127.0.0.1:{port}/health", Some(30000)),
            Ok(http(
                "http://127.0.0.1:30000/health",
                "127.0.0.1",
                30000,
                "/health"
            ))
        );
        assert_eq!(
            parse("http://localhost", None),
            Ok(http("http://localhost", "localhost", 80, "/"))
        );
        assert_eq!(
            parse("http://h:{port}/{port}", Some(8)),
            Ok(http("http://h:8/8", "h", 8, "/8"))
        );
        assert_eq!(
            parse("http://[::1]:8080/a?b=1#frag", None),
            Ok(http("http://[::1]:8080/a?b=1#frag", "::1", 8080, "/a?b=1"))
        );
        assert_eq!(
            parse("http://[::1]?x", None),
            Ok(http("http://[::1]?x", "::1", 80, "/?x"))
        );
    }

    #[test]
    fn commands() {
        assert_eq!(
            parse("curl -fsS http://localhost:$PORT/health", None),
            Ok(HealthProbe::Command(
                "curl -fsS http://localhost:$PORT/health".into()
            ))
        );
        // Only exactly `http://` is a URL; anything else is run as is.
        assert_eq!(
            parse(" http://x", None),
            Ok(HealthProbe::Command(" http://x".into()))
        );
        assert_eq!(
            parse("test -f /tmp/ok", None),
            Ok(HealthProbe::Command("test -f /tmp/ok".into()))
        );
    }

    #[test]
    fn bad() {
        for (text, port, needle) in [
            ("", None, "must not be empty"),
            ("   ", None, "must not be empty"),
            ("https://x/health", None, "only http:// health checks"),
            ("ftp://x/", None, "ftp:// is not supported"),
            ("http://x:{port}/", None, "the app has no port"),
            ("curl localhost:{port}", Some(80), "only in http:// URLs"),
            ("HTTP://x/", None, "lower case"),
            ("HTTPS://x/", None, "only http:// health checks"),
            ("http:///health", None, "no host"),
            ("http://:80/", None, "no host"),
            ("http://x:0/", None, "\"0\" is not a port"),
            ("http://x:99999/", None, "is not a port"),
            ("http://x:+80/", None, "is not a port"),
            ("http://x:/", None, "\"\" is not a port"),
            ("http://u:p@x/", None, "passwords"),
            ("http://[::1/", None, "closing ]"),
            ("http://[::1]x/", None, "after the IPv6"),
            ("http://x/{host}", Some(1), "only the {port} placeholder"),
            ("http://x/a b", None, "contains a space"),
        ] {
            let err = parse(text, port).expect_err(text);
            assert!(err.contains(needle), "{text:?}: {err}");
        }
    }
}
