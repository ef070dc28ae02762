//! YAML documents built in the order a reader expects (`apiVersion`, `kind`,
//! `metadata`, `spec`), not alphabetically: serde_norway's `Mapping` keeps
//! insertion order, and absent values ([`Value::Null`]) are left out, so
//! optional fields read as one list.

pub use serde_norway::Value;

/// A mapping of `pairs` in that order, without the pairs whose value is
/// null, an empty sequence or an empty mapping.
pub fn map<const N: usize>(pairs: [(&str, Value); N]) -> Value {
    let mut mapping = serde_norway::Mapping::new();
    for (key, value) in pairs {
        let empty = match &value {
            Value::Null => true,
            Value::Sequence(items) => items.is_empty(),
            Value::Mapping(entries) => entries.is_empty(),
            _ => false,
        };
        if !empty {
            mapping.insert(Value::from(key), value);
        }
    }
    Value::Mapping(mapping)
}

/// A mapping from `(key, value)` strings, in their order.
pub fn strings<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> Value {
    Value::Mapping(
        pairs
            .into_iter()
            .map(|(k, v)| (Value::from(k), Value::from(v)))
            .collect(),
    )
}

/// A sequence.
pub fn seq(items: impl IntoIterator<Item = Value>) -> Value {
    Value::Sequence(items.into_iter().collect())
}

/// `value` if present, else null (left out by [`map`]).
pub fn opt<T: Into<Value>>(value: Option<T>) -> Value {
    value.map_or(Value::Null, Into::into)
}

/// One YAML document's text.
pub fn render(value: &Value) -> String {
    serde_norway::to_string(value).expect("a YAML value of strings, numbers and maps serializes")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_order_and_drops_absent_values() {
        let doc = map([
            ("kind", "Service".into()),
            ("apiVersion", "v1".into()),
            ("empty", seq([])),
            ("none", opt(None::<u64>)),
            ("labels", strings([("b", "1"), ("a", "2")])),
        ]);
        assert_eq!(
            render(&doc),
            "kind: Service\napiVersion: v1\nlabels:\n  b: '1'\n  a: '2'\n"
        );
    }
}
