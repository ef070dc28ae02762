//! Durations and sizes written the way PM2 users write them.
//!
//! A bare number keeps PM2's meaning (milliseconds, bytes); a suffix makes the
//! unit explicit. Fractions are allowed (`1.5s`, `0.5G`) because people write
//! them, and every overflow is an error rather than a wrap-around.

use std::time::Duration;

/// What a duration may look like, for error messages.
const DURATION_FORMS: &str =
    "use milliseconds or a number with ms, s, m or h, e.g. \"500ms\", \"10s\", \"2m\", \"1h\"";

/// What a size may look like, for error messages.
const SIZE_FORMS: &str = "use bytes or a number with K, M or G, e.g. \"512K\", \"150M\", \"1G\"";

/// Parses a duration: an integer is milliseconds, else `500ms`, `10s`, `2m`, `1h`.
pub(crate) fn parse_duration(text: &str) -> Result<Duration, String> {
    let (number, unit) = split_number(text, "duration", DURATION_FORMS)?;
    let millis_per_unit: u64 = match unit.to_ascii_lowercase().as_str() {
        "" | "ms" => 1,
        "s" => 1_000,
        "m" => 60_000,
        "h" => 3_600_000,
        _ => {
            return Err(format!(
                "{text:?} has an unknown unit {unit:?}; {DURATION_FORMS}"
            ));
        }
    };
    let too_large = || format!("{text:?} is too large a duration");
    match number {
        Number::Whole(n) => n
            .checked_mul(millis_per_unit)
            .map(Duration::from_millis)
            .ok_or_else(too_large),
        Number::Fraction(f) => Duration::try_from_secs_f64(f * millis_per_unit as f64 / 1_000.0)
            .map_err(|_| too_large()),
    }
}

/// Parses a size: an integer is bytes, else `512K`, `150M`, `1G` (powers of
/// 1024; lower case and a trailing `B` are accepted).
pub(crate) fn parse_size(text: &str) -> Result<u64, String> {
    let (number, unit) = split_number(text, "size", SIZE_FORMS)?;
    let unit = unit.to_ascii_uppercase();
    let unit = unit.strip_suffix('B').unwrap_or(&unit);
    let shift = match unit {
        "" => 0,
        "K" => 10,
        "M" => 20,
        "G" => 30,
        _ => return Err(format!("{text:?} has an unknown unit; {SIZE_FORMS}")),
    };
    let too_large = || format!("{text:?} is too large a size");
    match number {
        Number::Whole(n) => n.checked_mul(1 << shift).ok_or_else(too_large),
        Number::Fraction(f) => {
            let bytes = (f * (1u64 << shift) as f64).floor();
            // `u64::MAX as f64` rounds up to 2^64, so `<` keeps the cast exact.
            if bytes.is_finite() && bytes < u64::MAX as f64 {
                Ok(bytes as u64)
            } else {
                Err(too_large())
            }
        }
    }
}

/// The numeric part of a duration or size.
enum Number {
    /// Digits only: kept exact.
    Whole(u64),
    /// Digits with a decimal point.
    Fraction(f64),
}

/// Splits `"1.5s"` into `(Fraction(1.5), "s")`; `what` names the quantity in errors.
fn split_number<'t>(text: &'t str, what: &str, forms: &str) -> Result<(Number, &'t str), String> {
    let trimmed = text.trim();
    if trimmed.is_empty() {
        return Err(format!("an empty string is not a {what}; {forms}"));
    }
    if trimmed.starts_with('-') {
        return Err(format!("{text:?} is negative; a {what} must be 0 or more"));
    }
    let end = trimmed
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(trimmed.len());
    let (digits, unit) = trimmed.split_at(end);
    let not_a = || format!("{text:?} is not a {what}; {forms}");
    // Require a digit on each side of a decimal point: `1.5`, not `.5` or `1.`.
    let well_formed = match digits.split_once('.') {
        None => !digits.is_empty(),
        Some((whole, frac)) => !whole.is_empty() && !frac.is_empty() && !frac.contains('.'),
    };
    if !well_formed {
        return Err(not_a());
    }
    let number = if digits.contains('.') {
        Number::Fraction(digits.parse().map_err(|_| not_a())?)
    } else {
        Number::Whole(
            digits
                .parse()
                .map_err(|_| format!("{text:?} is too large a {what}"))?,
        )
    };
    Ok((number, unit.trim()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        let ms = Duration::from_millis;
        for (text, want) in [
            ("0", ms(0)),
            ("1500", ms(1500)),
            ("500ms", ms(500)),
            ("10s", ms(10_000)),
            ("2m", ms(120_000)),
            ("1h", ms(3_600_000)),
            ("1.5s", ms(1500)),
            (" 10 s ", ms(10_000)),
            ("10S", ms(10_000)),
            ("0.25m", ms(15_000)),
        ] {
            assert_eq!(parse_duration(text), Ok(want), "{text:?}");
        }
    }

    #[test]
    fn bad_durations() {
        for (text, needle) in [
            ("", "empty"),
            ("-5s", "negative"),
            ("abc", "not a duration"),
            ("10x", "unknown unit"),
            ("1.2.3s", "not a duration"),
            (".5s", "not a duration"),
            ("5.s", "not a duration"),
            ("99999999999999999999999h", "too large"),
            ("18446744073709551615h", "too large"),
            ("1e400s", "unknown unit"),
        ] {
            let err = parse_duration(text).expect_err(text);
            assert!(err.contains(needle), "{text:?}: {err}");
        }
    }

    #[test]
    fn sizes() {
        for (text, want) in [
            ("0", 0),
            ("4096", 4096),
            ("512K", 512 << 10),
            ("512k", 512 << 10),
            ("512KB", 512 << 10),
            ("150M", 150 << 20),
            ("150mb", 150 << 20),
            ("1G", 1 << 30),
            ("1.5G", 3 << 29),
            ("100B", 100),
        ] {
            assert_eq!(parse_size(text), Ok(want), "{text:?}");
        }
    }

    #[test]
    fn bad_sizes() {
        for (text, needle) in [
            ("", "empty"),
            ("-1M", "negative"),
            ("lots", "not a size"),
            ("1T", "unknown unit"),
            ("1KK", "unknown unit"),
            ("99999999999G", "too large"),
            ("99999999999999999999999", "too large"),
        ] {
            let err = parse_size(text).expect_err(text);
            assert!(err.contains(needle), "{text:?}: {err}");
        }
    }
}
