//! PM2's `log_date_format` (moment.js tokens) as a chrono strftime format.

/// moment.js tokens and their chrono equivalents, longest first.
const TOKENS: &[(&str, &str)] = &[
    ("YYYY", "%Y"),
    ("YY", "%y"),
    ("MMMM", "%B"),
    ("MMM", "%b"),
    ("MM", "%m"),
    ("M", "%-m"),
    ("DDDD", "%j"),
    ("DD", "%d"),
    ("Do", ""),
    ("D", "%-d"),
    ("dddd", "%A"),
    ("ddd", "%a"),
    ("HH", "%H"),
    ("H", "%-H"),
    ("hh", "%I"),
    ("h", "%-I"),
    ("mm", "%M"),
    ("m", "%-M"),
    ("ss", "%S"),
    ("s", "%-S"),
    ("SSSSSSSSS", "%9f"),
    ("SSSSSS", "%6f"),
    ("SSS", "%3f"),
    ("ZZ", "%z"),
    ("Z", "%:z"),
    ("A", "%p"),
    ("a", "%P"),
    ("X", "%s"),
];

/// Letters that are moment.js tokens (or parts of one); other letters are
/// printed as they are, as moment does.
const TOKEN_LETTERS: &str = "YMDdHhkmsSZAaQWwEeXxGgNLlo";

/// Converts `format`; the second value lists the tokens that have no chrono
/// equivalent (they are left out of the result).
pub fn convert(format: &str) -> (String, Vec<String>) {
    let mut out = String::new();
    let mut lost = Vec::new();
    let mut rest = format;
    while let Some(c) = rest.chars().next() {
        if c == '[' {
            // [literal text]
            let end = rest.find(']').unwrap_or(rest.len());
            push_literal(&mut out, &rest[1..end]);
            rest = rest.get(end + 1..).unwrap_or("");
            continue;
        }
        if let Some((token, to)) = TOKENS.iter().find(|(t, _)| rest.starts_with(t)) {
            if to.is_empty() {
                lost.push((*token).to_string());
            } else {
                out.push_str(to);
            }
            rest = &rest[token.len()..];
            continue;
        }
        if TOKEN_LETTERS.contains(c) {
            // An unknown run of one token letter (`Q`, `ww`, `x`…).
            let run = rest.len() - rest.trim_start_matches(c).len();
            lost.push(rest[..run].to_string());
            rest = &rest[run..];
            continue;
        }
        push_literal(&mut out, &rest[..c.len_utf8()]);
        rest = &rest[c.len_utf8()..];
    }
    (out, lost)
}

/// Literal text, with `%` escaped for strftime.
fn push_literal(out: &mut String, text: &str) {
    out.push_str(&text.replace('%', "%%"));
}

#[cfg(test)]
mod tests {
    use super::convert;

    #[test]
    fn common_formats() {
        let ok = |m: &str, c: &str| assert_eq!(convert(m), (c.to_string(), vec![]), "{m}");
        ok("YYYY-MM-DD HH:mm:ss", "%Y-%m-%d %H:%M:%S");
        ok("YYYY-MM-DD HH:mm Z", "%Y-%m-%d %H:%M %:z");
        ok("YYYY-MM-DDTHH:mm:ss.SSSZ", "%Y-%m-%dT%H:%M:%S.%3f%:z");
        ok("DD/MM/YY hh:mm A", "%d/%m/%y %I:%M %p");
        ok("[at] HH:mm 100%", "at %H:%M 100%%");
    }

    #[test]
    fn lost_tokens() {
        let (out, lost) = convert("Do MMM YYYY, Q");
        assert_eq!(out, " %b %Y, ");
        assert_eq!(lost, vec!["Do", "Q"]);
    }
}
