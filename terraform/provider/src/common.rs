//! What the resources share: schema helpers, value conversions, timeouts, and how an API error
//! becomes diagnostics attached to the attributes it names.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::time::Duration;

use hangar_client::ClientError;
use serde::{Deserialize, Serialize};
use tf_provider::schema::{Attribute, AttributeConstraint, AttributeType, Block, Description};
use tf_provider::value::{Value, ValueMap, ValueNumber, ValueString};
use tf_provider::{AttributePath, Diagnostics};

/// An attribute with a Markdown description.
pub fn attr(ty: AttributeType, constraint: AttributeConstraint, description: &str) -> Attribute {
    Attribute {
        attr_type: ty,
        description: Description::markdown(description),
        constraint,
        ..Default::default()
    }
}

/// A map of strings.
pub fn string_map() -> AttributeType {
    AttributeType::Map(Box::new(AttributeType::String))
}

/// A block's attributes from `(name, attribute)` pairs.
pub fn attributes(
    list: impl IntoIterator<Item = (&'static str, Attribute)>,
) -> std::collections::HashMap<String, Attribute> {
    list.into_iter().map(|(k, v)| (k.to_owned(), v)).collect()
}

/// The string of a known, non-null value.
pub fn known<'b>(v: &'b ValueString<'_>) -> Option<&'b str> {
    v.as_ref_option().map(|s| s.as_ref())
}

/// A known string value.
pub fn string<'a>(s: impl Into<String>) -> ValueString<'a> {
    Value::Value(Cow::Owned(s.into()))
}

/// A known string, or null.
pub fn opt_string<'a>(s: Option<impl Into<String>>) -> ValueString<'a> {
    s.map(|s| string(s)).unwrap_or(Value::Null)
}

/// A known number.
pub fn number(n: impl Into<i64>) -> ValueNumber {
    Value::Value(n.into())
}

/// A map for the state: null when empty, so that an attribute left out of the configuration
/// and an empty map read back from Hangar are the same thing.
pub fn map_value<'a>(m: &BTreeMap<String, String>) -> ValueMap<'a, ValueString<'a>> {
    if m.is_empty() {
        return Value::Null;
    }
    Value::Value(
        m.iter()
            .map(|(k, v)| (Cow::Owned(k.clone()), string(v.clone())))
            .collect(),
    )
}

/// The known entries of a map value (null: empty).
pub fn map_of(v: &ValueMap<'_, ValueString<'_>>) -> BTreeMap<String, String> {
    v.as_ref_option()
        .map(|m| {
            m.iter()
                .filter_map(|(k, v)| Some((k.to_string(), known(v)?.to_owned())))
                .collect()
        })
        .unwrap_or_default()
}

/// Whether a map value holds an unknown entry (or is unknown).
pub fn map_unknown(v: &ValueMap<'_, ValueString<'_>>) -> bool {
    match v {
        Value::Unknown => true,
        Value::Value(m) => m.values().any(|v| v.is_unknown()),
        Value::Null => false,
    }
}

/// A number that fits the API's unsigned fields, or an error on its attribute.
pub fn u32_of(v: &ValueNumber, field: &'static str, diags: &mut Diagnostics) -> Option<u32> {
    let n = *v.as_ref_option()?;
    match u32::try_from(n) {
        Ok(n) => Some(n),
        Err(_) => {
            diags.error(
                format!("{field} must be a whole number from 0 to {}", u32::MAX),
                format!("got {n}"),
                AttributePath::new(field),
            );
            None
        }
    }
}

/// The `timeouts` block of the resources that wait: how long `create`, `update` and `delete`
/// may take, as Go durations (`30m`, `1h`, `90s`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Timeouts<'a> {
    #[serde(borrow = "'a")]
    pub create: ValueString<'a>,
    pub update: ValueString<'a>,
    pub delete: ValueString<'a>,
}

/// Which operation a timeout is for.
#[derive(Debug, Clone, Copy)]
pub enum Operation {
    Create,
    Update,
    Delete,
}

impl Operation {
    fn name(self) -> &'static str {
        match self {
            Operation::Create => "create",
            Operation::Update => "update",
            Operation::Delete => "delete",
        }
    }
}

/// How long environments may take unless `timeouts` says otherwise.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30 * 60);

pub fn timeouts_block() -> Block {
    let one = |what: &str| {
        attr(
            AttributeType::String,
            AttributeConstraint::Optional,
            &format!(
                "How long to wait for the {what}, as a duration such as `30m`, `1h` or `90s` \
                 (default `30m`)."
            ),
        )
    };
    Block {
        description: Description::markdown("How long operations may take."),
        attributes: attributes([
            ("create", one("environment to be created and AVAILABLE")),
            (
                "update",
                one("environment to be AVAILABLE with an update applied"),
            ),
            ("delete", one("environment to be gone")),
        ]),
        ..Default::default()
    }
}

impl Timeouts<'_> {
    /// The timeout of `op` (default 30 minutes), or an error on its attribute.
    pub fn of(
        timeouts: &Value<Timeouts<'_>>,
        op: Operation,
        diags: &mut Diagnostics,
    ) -> Option<Duration> {
        let Some(t) = timeouts.as_ref_option() else {
            return Some(DEFAULT_TIMEOUT);
        };
        let v = match op {
            Operation::Create => &t.create,
            Operation::Update => &t.update,
            Operation::Delete => &t.delete,
        };
        let Some(s) = known(v) else {
            return Some(DEFAULT_TIMEOUT);
        };
        match parse_duration(s) {
            Some(d) => Some(d),
            None => {
                diags.error(
                    format!("Invalid {} timeout {s:?}", op.name()),
                    "A timeout is a duration such as `30m`, `1h30m` or `90s`.",
                    AttributePath::new("timeouts").index(0).attribute(op.name()),
                );
                None
            }
        }
    }

    /// Checks every timeout of a configuration.
    pub fn validate(timeouts: &Value<Timeouts<'_>>, diags: &mut Diagnostics) {
        for op in [Operation::Create, Operation::Update, Operation::Delete] {
            let _ = Self::of(timeouts, op, diags);
        }
    }
}

/// A Go-style duration: one or more `<number><unit>` with units `h`, `m`, `s`.
pub fn parse_duration(s: &str) -> Option<Duration> {
    let mut total = 0u64;
    let mut digits = String::new();
    let mut any = false;
    for c in s.trim().chars() {
        if c.is_ascii_digit() {
            digits.push(c);
            continue;
        }
        let n: u64 = digits.parse().ok()?;
        digits.clear();
        total = total.checked_add(n.checked_mul(match c {
            'h' => 3600,
            'm' => 60,
            's' => 1,
            _ => return None,
        })?)?;
        any = true;
    }
    (any && digits.is_empty()).then(|| Duration::from_secs(total))
}

/// The attribute an API field names: a top-level attribute, or an entry of one of the map
/// attributes (`env_vars.FOO` is the key `FOO` of `env_vars`).
pub fn attribute_of(field: &str, maps: &[&str]) -> AttributePath {
    let mut parts = field.splitn(2, '.');
    let head = parts.next().unwrap_or(field).to_owned();
    match parts.next() {
        Some(key) if maps.contains(&head.as_str()) => AttributePath::new(head).key(key.to_owned()),
        _ => AttributePath::new(head),
    }
}

/// An API error as diagnostics: one per field it names, attached to that attribute, or one
/// for the whole resource.
pub fn api_error(diags: &mut Diagnostics, what: &str, err: &ClientError, maps: &[&str]) {
    match err.problem() {
        Some(p) if !p.errors.is_empty() => {
            for e in &p.errors {
                diags.error(
                    format!("{what}: {} {}", e.field, e.message),
                    format!(
                        "Hangar refused the request ({} {}): {}",
                        p.status, p.title, p.detail
                    ),
                    attribute_of(&e.field, maps),
                );
            }
        }
        _ => diags.root_error(what.to_owned(), err.to_string()),
    }
}

/// Whether an API error says the object does not exist (any more).
pub fn is_not_found(err: &ClientError) -> bool {
    err.status() == Some(404)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_as_go_writes_them() {
        assert_eq!(parse_duration("30m"), Some(Duration::from_secs(1800)));
        assert_eq!(parse_duration("1h30m"), Some(Duration::from_secs(5400)));
        assert_eq!(parse_duration("90s"), Some(Duration::from_secs(90)));
        assert_eq!(parse_duration("0s"), Some(Duration::ZERO));
        for bad in ["", "30", "m", "3d", "1.5h", "-1m", "1m30"] {
            assert_eq!(parse_duration(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn a_field_of_a_map_names_its_key() {
        let maps = ["env_vars", "airflow_config_overrides"];
        assert_eq!(
            attribute_of("airflow_config_overrides.core.dags_folder", &maps).to_string(),
            AttributePath::new("airflow_config_overrides")
                .key("core.dags_folder")
                .to_string()
        );
        assert_eq!(
            attribute_of("max_workers", &maps).to_string(),
            AttributePath::new("max_workers").to_string()
        );
        assert_eq!(
            attribute_of("name.first", &maps).to_string(),
            AttributePath::new("name").to_string()
        );
    }
}
