//! Names that reach SQL, paths, bucket keys, processes and Kubernetes objects. Each is an
//! RFC 1123 label of at most 40 characters (short enough to prefix Kubernetes names, Redis key
//! prefixes and database names), validated once on construction.

use std::fmt;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// Longest tenant or environment name. RFC 1123 allows 63; 40 leaves room for the prefixes and
/// suffixes the runtimes add (`hangar-<tenant>-<env>-scheduler-0`).
pub const MAX_NAME_LEN: usize = 40;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    #[error("must not be empty")]
    Empty,
    #[error("must be at most {MAX_NAME_LEN} characters (got {0})")]
    TooLong(usize),
    #[error("must contain only lower-case letters, digits and '-' (found {0:?})")]
    InvalidChar(char),
    #[error("must start and end with a lower-case letter or digit")]
    BadEdge,
}

fn validate_label(s: &str) -> Result<(), NameError> {
    if s.is_empty() {
        return Err(NameError::Empty);
    }
    let len = s.chars().count();
    if len > MAX_NAME_LEN {
        return Err(NameError::TooLong(len));
    }
    if let Some(c) = s
        .chars()
        .find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '-'))
    {
        return Err(NameError::InvalidChar(c));
    }
    if s.starts_with('-') || s.ends_with('-') {
        return Err(NameError::BadEdge);
    }
    Ok(())
}

macro_rules! label_newtype {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, ToSchema)]
        #[serde(transparent)]
        #[schema(value_type = String, pattern = "^[a-z0-9]([-a-z0-9]{0,38}[a-z0-9])?$")]
        pub struct $name(String);

        impl $name {
            pub fn parse(s: impl Into<String>) -> Result<Self, NameError> {
                let s = s.into();
                validate_label(&s)?;
                Ok(Self(s))
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = String::deserialize(d)?;
                Self::parse(s).map_err(serde::de::Error::custom)
            }
        }
    };
}

label_newtype!(
    /// A tenant's name: an RFC 1123 label, unique on the platform.
    TenantName
);
label_newtype!(
    /// An environment's name: an RFC 1123 label, unique among a tenant's live environments.
    EnvName
);
label_newtype!(
    /// A data-plane cell's name: an RFC 1123 label, unique on the platform.
    CellName
);

#[cfg(test)]
mod tests {
    use super::*;
    use rstest::rstest;

    #[rstest]
    #[case("a")]
    #[case("analytics")]
    #[case("team-42")]
    #[case("0abc")]
    #[case(&"a".repeat(40))]
    fn accepts_rfc1123_labels(#[case] s: &str) {
        assert!(EnvName::parse(s).is_ok(), "{s}");
    }

    #[rstest]
    #[case("", NameError::Empty)]
    #[case("Analytics", NameError::InvalidChar('A'))]
    #[case("../x", NameError::InvalidChar('.'))]
    #[case("a_b", NameError::InvalidChar('_'))]
    #[case("-a", NameError::BadEdge)]
    #[case("a-", NameError::BadEdge)]
    #[case(&"a".repeat(41), NameError::TooLong(41))]
    #[case(&"a".repeat(64), NameError::TooLong(64))]
    fn refuses_anything_else(#[case] s: &str, #[case] err: NameError) {
        assert_eq!(TenantName::parse(s), Err(err));
    }

    #[test]
    fn deserialising_validates() {
        let r: Result<EnvName, _> = serde_json::from_str("\"UPPER\"");
        assert!(r.is_err());
    }
}
