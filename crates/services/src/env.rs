//! Reading configuration from the environment, with defaults.
//!
//! Every setting of every service is an environment variable (that is what a
//! supervisor's ecosystem file sets), read once at start-up. A value that is
//! present but unparsable is an error, not a silent default: a typo in
//! `ORDER_TTL_MS` should stop the service, not run it with 15 minutes.

use std::str::FromStr;

use anyhow::{Context as _, Result};

/// The value of `name`, or `None` when it is unset or empty.
pub fn var(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

/// The value of `name`, or `default` when it is unset or empty.
pub fn var_or(name: &str, default: &str) -> String {
    var(name).unwrap_or_else(|| default.to_owned())
}

/// `name` parsed as `T`, or `default` when it is unset or empty.
///
/// # Errors
/// When the variable is set but does not parse as `T`.
pub fn parse_or<T>(name: &str, default: T) -> Result<T>
where
    T: FromStr,
    T::Err: std::error::Error + Send + Sync + 'static,
{
    match var(name) {
        None => Ok(default),
        Some(raw) => raw
            .trim()
            .parse()
            .with_context(|| format!("invalid {name}={raw:?}")),
    }
}

/// Whether `name` is set to a true-ish value (`1`, `true`, `yes`, `on`).
pub fn flag(name: &str) -> bool {
    var(name).is_some_and(|v| {
        matches!(
            v.trim().to_ascii_lowercase().as_str(),
            "1" | "true" | "yes" | "on"
        )
    })
}
