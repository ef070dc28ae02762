//! Reading one TOML value as the type a key wants, reporting `path: problem`
//! at the value's span when it is not.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::ops::Range;
use std::time::Duration;

use toml::Spanned;
use toml::de::DeValue;

use crate::ExecMode;
use crate::diag::Diag;
use crate::raw::RawWatch;
use crate::units::{parse_duration, parse_size};
use crate::values::{self, INSTANCES_FORMS, Instances};

/// What a duration may be, for type errors.
const DURATION: &str = "a duration (integer milliseconds or a string like \"10s\")";

/// `"a string"`, `"an integer"`…: a TOML value's type, for messages.
pub(crate) fn kind(value: &DeValue<'_>) -> &'static str {
    match value {
        DeValue::String(_) => "a string",
        DeValue::Integer(_) => "an integer",
        DeValue::Float(_) => "a float",
        DeValue::Boolean(_) => "a boolean",
        DeValue::Datetime(_) => "a datetime",
        DeValue::Array(_) => "an array",
        DeValue::Table(_) => "a table",
    }
}

/// The integer in a TOML value, or `None` when it does not fit an `i64`.
fn integer(value: &toml::de::DeInteger<'_>) -> Option<i64> {
    i64::from_str_radix(value.as_str(), value.radix()).ok()
}

/// Refuses a blank string: `must not be empty`.
fn non_empty(text: &str) -> Result<(), String> {
    if text.trim().is_empty() {
        Err("must not be empty".into())
    } else {
        Ok(())
    }
}

/// One value being read: reports its problems as `path: …` at its span.
pub(super) struct Value<'d, 'a, 'v, 'i> {
    pub(super) diag: &'d mut Diag<'a>,
    /// `apps[0].port`, `apps[0].args[1]`…
    pub(super) path: String,
    pub(super) value: &'v Spanned<DeValue<'i>>,
}

impl<'a, 'v, 'i> Value<'_, 'a, 'v, 'i> {
    /// The value itself, borrowed from the document rather than from `self`.
    fn get(&self) -> &'v DeValue<'i> {
        self.value.get_ref()
    }

    /// Where the value is in the file.
    fn span(&self) -> Range<usize> {
        self.value.span()
    }

    /// Reports `message` about this value; returns `None` for convenience.
    fn fail<T>(&mut self, message: impl std::fmt::Display) -> Option<T> {
        self.diag
            .at(self.span(), format!("{}: {message}", self.path));
        None
    }

    /// Reports a type mismatch: `expected an integer, found a boolean`.
    fn wrong_type<T>(&mut self, expected: &str) -> Option<T> {
        let found = kind(self.get());
        self.fail(format!("expected {expected}, found {found}"))
    }

    /// A reader for one element of this array, or one entry of this table.
    fn child<'w, 'c>(
        &'w mut self,
        path: String,
        value: &'c Spanned<DeValue<'i>>,
    ) -> Value<'w, 'a, 'c, 'i> {
        Value {
            diag: &mut *self.diag,
            path,
            value,
        }
    }

    /// A string, as written.
    pub(super) fn string(&mut self) -> Option<String> {
        match self.get() {
            DeValue::String(s) => Some(s.to_string()),
            _ => self.wrong_type("a string"),
        }
    }

    /// A string passed through `check`, which may reject or normalize it.
    pub(super) fn checked(
        &mut self,
        check: impl FnOnce(&str) -> Result<String, String>,
    ) -> Option<Spanned<String>> {
        let text = self.string()?;
        match check(&text) {
            Ok(value) => Some(Spanned::new(self.span(), value)),
            Err(message) => self.fail(message),
        }
    }

    /// A string kept as written once `check` accepts it.
    pub(super) fn checked_string(
        &mut self,
        check: impl FnOnce(&str) -> Result<(), String>,
    ) -> Option<String> {
        self.checked(|s| check(s).map(|()| s.to_owned()))
            .map(Spanned::into_inner)
    }

    /// A string, integer, float or boolean as text (env values, args).
    fn scalar_text(&mut self) -> Option<String> {
        match self.get() {
            DeValue::String(s) => Some(s.to_string()),
            DeValue::Integer(n) => match integer(n) {
                Some(n) => Some(n.to_string()),
                None => self.fail("integer out of range"),
            },
            DeValue::Float(f) => Some(f.as_str().to_owned()),
            DeValue::Boolean(b) => Some(b.to_string()),
            _ => self.wrong_type("a string"),
        }
    }

    /// `true` or `false`.
    pub(super) fn boolean(&mut self) -> Option<bool> {
        match self.get() {
            DeValue::Boolean(b) => Some(*b),
            _ => self.wrong_type("a boolean (true or false)"),
        }
    }

    /// An integer; `expected` describes the accepted forms for type errors.
    fn int(&mut self, expected: &str) -> Option<i64> {
        match self.get() {
            DeValue::Integer(n) => match integer(n) {
                Some(n) => Some(n),
                None => self.fail(format!("{n} is out of range")),
            },
            _ => self.wrong_type(expected),
        }
    }

    /// An integer from `min` up to `u32::MAX`.
    pub(super) fn count(&mut self, min: u32) -> Option<u32> {
        let expected = if min == 0 {
            "a non-negative integer"
        } else {
            "a positive integer"
        };
        let n = self.int(expected)?;
        if n < i64::from(min) {
            return self.fail(format!("{n} is not allowed; expected {expected}"));
        }
        match u32::try_from(n) {
            Ok(n) => Some(n),
            Err(_) => self.fail(format!("{n} is too large")),
        }
    }

    /// `script`: a non-empty string (resolved later against the file's folder).
    pub(super) fn script(&mut self) -> Option<String> {
        self.checked_string(non_empty)
    }

    /// An array of strings, or one string split like a shell.
    pub(super) fn args(&mut self) -> Option<Vec<String>> {
        let path = self.path.clone();
        match self.get() {
            DeValue::String(s) => match shlex::split(s) {
                Some(args) => Some(args),
                None => self.fail(format!(
                    "cannot split {s:?} like a shell (unbalanced quotes?)"
                )),
            },
            DeValue::Array(items) => {
                let mut args = Vec::with_capacity(items.len());
                let mut ok = true;
                for (i, item) in items.iter().enumerate() {
                    match self.child(format!("{path}[{i}]"), item).scalar_text() {
                        Some(arg) => args.push(arg),
                        None => ok = false,
                    }
                }
                ok.then_some(args)
            }
            _ => self.wrong_type("an array of strings or a string"),
        }
    }

    /// `exec_mode`: `"fork"` or `"cluster"`.
    pub(super) fn exec_mode(&mut self) -> Option<ExecMode> {
        let forms = "\"fork\" or \"cluster\"";
        match self.get() {
            // PM2 also writes the `_mode` forms.
            DeValue::String(s) => match s.as_ref() {
                "fork" | "fork_mode" => Some(ExecMode::Fork),
                "cluster" | "cluster_mode" => Some(ExecMode::Cluster),
                other => self.fail(format!("unknown mode {other:?}; expected {forms}")),
            },
            _ => self.wrong_type(forms),
        }
    }

    /// `instances`: a positive integer, `"max"` or -1 (also as strings).
    pub(super) fn instances(&mut self) -> Option<Spanned<Instances>> {
        let parsed = match self.get() {
            DeValue::Integer(n) => match integer(n) {
                Some(n) => Instances::from_int(n),
                None => Err(format!("{n} is too many")),
            },
            DeValue::String(s) => Instances::from_text(s),
            _ => return self.wrong_type(INSTANCES_FORMS),
        };
        match parsed {
            Ok(instances) => Some(Spanned::new(self.span(), instances)),
            Err(message) => self.fail(message),
        }
    }

    /// `port`: 1-65535.
    pub(super) fn port(&mut self) -> Option<Spanned<u16>> {
        let n = self.int("an integer port (1-65535)")?;
        match u16::try_from(n) {
            Ok(port) if port >= 1 => Some(Spanned::new(self.span(), port)),
            _ => self.fail(format!("{n} is out of range (1-65535)")),
        }
    }

    /// Integer milliseconds, or a string with a unit (see `units`).
    pub(super) fn duration(&mut self) -> Option<Duration> {
        match self.get() {
            DeValue::Integer(n) => match integer(n).map(u64::try_from) {
                Some(Ok(ms)) => Some(Duration::from_millis(ms)),
                Some(Err(_)) => self.fail(format!("{n} is negative; a duration must be 0 or more")),
                None => self.fail(format!("{n} is too large a duration")),
            },
            DeValue::String(s) => match parse_duration(s) {
                Ok(duration) => Some(duration),
                Err(message) => self.fail(message),
            },
            _ => self.wrong_type(DURATION),
        }
    }

    /// `exp_backoff_restart_delay`: a duration above zero (0 would never grow).
    pub(super) fn backoff(&mut self) -> Option<Duration> {
        match self.duration()? {
            Duration::ZERO => {
                self.fail("must be more than 0 (leave the key out to disable back-off)")
            }
            delay => Some(delay),
        }
    }

    /// A duration within `min` and, when given, `max`.
    pub(super) fn duration_within(
        &mut self,
        min: Duration,
        max: Option<Duration>,
    ) -> Option<Duration> {
        let duration = self.duration()?;
        match values::check_duration_bounds(duration, min, max) {
            Ok(()) => Some(duration),
            Err(message) => self.fail(message),
        }
    }

    /// A size: integer bytes, or a string with a unit (see `units`).
    fn size(&mut self) -> Option<u64> {
        match self.get() {
            DeValue::Integer(n) => match integer(n).map(u64::try_from) {
                Some(Ok(bytes)) => Some(bytes),
                _ => self.fail(format!("{n} is not a size; a size must be more than 0")),
            },
            DeValue::String(s) => match parse_size(s) {
                Ok(bytes) => Some(bytes),
                Err(message) => self.fail(message),
            },
            _ => self.wrong_type("a size (integer bytes or a string like \"512M\")"),
        }
    }

    /// `max_memory_restart`: a size above zero.
    pub(super) fn memory(&mut self) -> Option<u64> {
        match self.size()? {
            0 => self.fail("0 bytes is impossible; a size must be more than 0"),
            bytes => Some(bytes),
        }
    }

    /// `log_max_size`: a size of at least 1K.
    pub(super) fn log_size(&mut self) -> Option<u64> {
        let bytes = self.size()?;
        match values::check_log_size(bytes) {
            Ok(()) => Some(bytes),
            Err(message) => self.fail(message),
        }
    }

    /// A string turned into a `T` by `parse`, which may reject it.
    fn parsed<T>(&mut self, parse: fn(&str) -> Result<T, String>) -> Option<T> {
        let text = self.string()?;
        match parse(&text) {
            Ok(value) => Some(value),
            Err(message) => self.fail(message),
        }
    }

    /// `metrics`: `"IP:PORT"`.
    pub(super) fn socket_addr(&mut self) -> Option<SocketAddr> {
        self.parsed(values::parse_metrics_addr)
    }

    /// `host`: an IP address, or `"localhost"`.
    pub(super) fn host(&mut self) -> Option<IpAddr> {
        self.parsed(values::parse_host)
    }

    /// An array whose every element `one` reads (its problems reported at
    /// `path[i]`), or a single value that `single` accepts, read by `one` as
    /// a list of one; `expected` names both forms for type errors.
    fn one_or_array<T>(
        &mut self,
        expected: &str,
        single: fn(&DeValue<'_>) -> bool,
        mut one: impl FnMut(&mut Value<'_, 'a, '_, 'i>) -> Option<T>,
    ) -> Option<Vec<T>> {
        match self.get() {
            DeValue::Array(items) => {
                let path = self.path.clone();
                let mut all = Vec::with_capacity(items.len());
                let mut ok = true;
                for (i, item) in items.iter().enumerate() {
                    match one(&mut self.child(format!("{path}[{i}]"), item)) {
                        Some(value) => all.push(value),
                        None => ok = false,
                    }
                }
                ok.then_some(all)
            }
            value if single(value) => one(self).map(|value| vec![value]),
            _ => self.wrong_type(expected),
        }
    }

    /// `stop_exit_codes`: an array of exit codes, or one.
    pub(super) fn exit_codes(&mut self) -> Option<Vec<i32>> {
        self.one_or_array(
            "an integer or an array of integers",
            |v| matches!(v, DeValue::Integer(_)),
            |v| v.exit_code("an integer"),
        )
    }

    /// `watch`: `true` (the app's `cwd`), `false`, or paths (an array, or one).
    pub(super) fn watch(&mut self) -> Option<RawWatch> {
        match self.get() {
            DeValue::Boolean(true) => Some(RawWatch::Cwd(self.span())),
            DeValue::Boolean(false) => Some(RawWatch::Off),
            DeValue::Array(items) if items.is_empty() => self
                .fail("an empty list watches nothing; write true to watch the app's cwd, or false"),
            _ => self
                .one_or_array(
                    "true, false or an array of paths",
                    |v| matches!(v, DeValue::String(_)),
                    |v| {
                        let path = v.checked(|path| non_empty(path).map(|()| path.to_owned()))?;
                        Some((v.path.clone(), path))
                    },
                )
                .map(RawWatch::Paths),
        }
    }

    /// `ignore_watch`: glob patterns (an array, or one).
    pub(super) fn globs(&mut self) -> Option<Vec<String>> {
        self.one_or_array(
            "a glob pattern or an array of them",
            |v| matches!(v, DeValue::String(_)),
            |v| v.checked_string(values::check_glob),
        )
    }

    /// One exit code, 0-255.
    fn exit_code(&mut self, expected: &str) -> Option<i32> {
        let n = self.int(expected)?;
        match u8::try_from(n) {
            Ok(code) => Some(i32::from(code)),
            Err(_) => self.fail(format!("{n} is not an exit code (0-255)")),
        }
    }

    /// `env` or `env_<name>`: variable names to text values.
    pub(super) fn env(&mut self) -> Option<BTreeMap<String, String>> {
        let DeValue::Table(table) = self.get() else {
            return self.wrong_type("a table of environment variables");
        };
        let path = self.path.clone();
        let mut env = BTreeMap::new();
        let mut ok = true;
        for (key, value) in table.iter() {
            let name: &str = key.get_ref();
            if let Err(message) = values::check_env_name(name) {
                self.diag.at(key.span(), format!("{path}: {message}"));
                ok = false;
                continue;
            }
            match self.child(format!("{path}.{name}"), value).scalar_text() {
                Some(text) => {
                    env.insert(name.to_owned(), text);
                }
                None => ok = false,
            }
        }
        ok.then_some(env)
    }
}
