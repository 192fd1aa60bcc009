//! `DagPath`: a file's path inside an environment's `dags/` prefix, validated so that it can
//! never name anything outside it (no `..`, no absolute paths, no empty or `.` segments, no
//! backslashes or NUL).

use std::fmt;

const MAX_LEN: usize = 1024;
/// Leaves room in a file name (255 bytes on Linux) for the suffix a local-folder bucket gives
/// a file while it is written.
const MAX_SEGMENT: usize = 200;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DagPathError {
    #[error("must not be empty")]
    Empty,
    #[error("must be at most {MAX_LEN} bytes")]
    TooLong,
    #[error("must be relative (no leading '/')")]
    Absolute,
    #[error("must not contain '..', '.' or empty segments")]
    BadSegment,
    #[error("must not contain backslashes, NUL or control characters")]
    BadChar,
    #[error("each segment must be at most {MAX_SEGMENT} bytes")]
    SegmentTooLong,
}

/// A relative path under `dags/`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct DagPath(String);

/// [`DagPath::parse`]'s rules as the OpenAPI document states them (a JSON Schema `pattern`,
/// with `maxLength` 1024): relative segments of 1 to 200 characters, none `.` or `..`, no `\\`
/// or control characters. (The limits are in bytes in the code, in characters in the document:
/// they agree on ASCII.)
pub const PATTERN: &str = r"^(?:[^/\\\x00-\x1f\x7f-\x9f.][^/\\\x00-\x1f\x7f-\x9f]{0,199}|\.[^/\\\x00-\x1f\x7f-\x9f.][^/\\\x00-\x1f\x7f-\x9f]{0,198}|\.\.[^/\\\x00-\x1f\x7f-\x9f]{1,198})(?:/(?:[^/\\\x00-\x1f\x7f-\x9f.][^/\\\x00-\x1f\x7f-\x9f]{0,199}|\.[^/\\\x00-\x1f\x7f-\x9f.][^/\\\x00-\x1f\x7f-\x9f]{0,198}|\.\.[^/\\\x00-\x1f\x7f-\x9f]{1,198}))*$";

impl DagPath {
    pub fn parse(s: &str) -> Result<Self, DagPathError> {
        if s.is_empty() {
            return Err(DagPathError::Empty);
        }
        if s.len() > MAX_LEN {
            return Err(DagPathError::TooLong);
        }
        if s.starts_with('/') {
            return Err(DagPathError::Absolute);
        }
        if s.chars().any(|c| c == '\\' || c.is_control()) {
            return Err(DagPathError::BadChar);
        }
        for seg in s.split('/') {
            if seg.is_empty() || seg == "." || seg == ".." {
                return Err(DagPathError::BadSegment);
            }
            if seg.len() > MAX_SEGMENT {
                return Err(DagPathError::SegmentTooLong);
            }
        }
        Ok(Self(s.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for DagPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Where an environment's DAGs live in a bucket laid out as a directory (both planes use this).
pub fn dags_prefix(bucket: &std::path::Path, tenant: &str, env: &str) -> std::path::PathBuf {
    bucket
        .join("tenants")
        .join(tenant)
        .join("environments")
        .join(env)
        .join("dags")
}

/// Files being uploaded carry this prefix until they are renamed into place.
pub const UPLOAD_PREFIX: &str = ".hangar-upload-";

#[cfg(test)]
mod tests {
    #![allow(clippy::expect_used)]
    use super::*;
    use rstest::rstest;

    #[rstest]
    #[case("etl.py")]
    #[case("team/etl.py")]
    #[case(".airflowignore")]
    #[case("a/b/c/d.sql")]
    fn accepts_relative_paths(#[case] s: &str) {
        assert_eq!(DagPath::parse(s).map(|p| p.to_string()), Ok(s.to_owned()));
    }

    #[rstest]
    #[case("", DagPathError::Empty)]
    #[case("/etc/passwd", DagPathError::Absolute)]
    #[case("../x.py", DagPathError::BadSegment)]
    #[case("a/../../x.py", DagPathError::BadSegment)]
    #[case("a//b.py", DagPathError::BadSegment)]
    #[case("./a.py", DagPathError::BadSegment)]
    #[case("a/", DagPathError::BadSegment)]
    #[case("a\\..\\b.py", DagPathError::BadChar)]
    #[case("a\0b", DagPathError::BadChar)]
    fn refuses_anything_that_could_escape(#[case] s: &str, #[case] e: DagPathError) {
        assert_eq!(DagPath::parse(s), Err(e));
    }

    /// The document's pattern says what `parse` does, on every edge of its rules.
    #[rstest]
    #[case("etl.py")]
    #[case("team/etl.py")]
    #[case(".airflowignore")]
    #[case("..hidden")]
    #[case("a/.b/..c/...")]
    #[case("é/ü.py")]
    #[case("")]
    #[case("/etc/passwd")]
    #[case("..")]
    #[case(".")]
    #[case("a/../b")]
    #[case("a//b")]
    #[case("a/")]
    #[case("a\\b")]
    #[case("a\u{0}b")]
    #[case("a\u{85}b")]
    #[case("a\tb")]
    #[case(&"s".repeat(200))]
    #[case(&"s".repeat(201))]
    #[case(&format!("a/{}", "s".repeat(200)))]
    #[case(&format!(".{}", "s".repeat(199)))]
    #[case(&format!("..{}", "s".repeat(198)))]
    #[case(&format!("..{}", "s".repeat(199)))]
    fn the_documented_pattern_agrees_with_parse(#[case] s: &str) {
        let pattern = regex::Regex::new(PATTERN).expect("the pattern is a regex");
        assert_eq!(pattern.is_match(s), DagPath::parse(s).is_ok(), "{s:?}");
    }
}
