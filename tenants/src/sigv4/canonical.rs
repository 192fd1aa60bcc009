//! The canonical request SigV4 signs, for every service but S3, built the way botocore's
//! `SigV4Auth.canonical_request` builds it (botocore is what the AWS CLI and boto3 sign with):
//!
//! ```text
//! METHOD \n canonical URI \n canonical query \n canonical headers \n \n signed headers \n payload hash
//! ```

use percent_encoding::{percent_decode_str, percent_encode, AsciiSet, NON_ALPHANUMERIC};

use super::{Request, SigV4Error};

pub(super) const HOST: &str = "host";
pub(super) const X_AMZ_DATE: &str = "x-amz-date";
pub(super) const X_AMZ_CONTENT_SHA256: &str = "x-amz-content-sha256";

/// RFC 3986's unreserved characters stay as they are; every other byte becomes `%XX` (uppercase).
const UNRESERVED: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// The same, keeping the path's separators.
const UNRESERVED_AND_SLASH: &AsciiSet = &UNRESERVED.remove(b'/');

/// The canonical request of `req` with the headers named in `signed_headers` (lowercase, sorted)
/// and `payload_hash` (hex SHA-256 of the body). Fails if a signed header is not in the request.
pub(super) fn canonical_request(
    req: &Request<'_>,
    signed_headers: &[String],
    payload_hash: &str,
) -> Result<String, SigV4Error> {
    let mut out = format!(
        "{}\n{}\n{}\n",
        req.method,
        canonical_uri(req.path),
        canonical_query(req.query)
    );
    for name in signed_headers {
        out.push_str(name);
        out.push(':');
        out.push_str(&canonical_header_value(req, name)?);
        out.push('\n');
    }
    out.push('\n');
    out.push_str(&signed_headers.join(";"));
    out.push('\n');
    out.push_str(payload_hash);
    Ok(out)
}

/// The path with its dot segments and empty segments removed, then percent-encoded once more
/// (`%20` becomes `%2520`): services other than S3 sign the path encoded twice. The removal is
/// botocore's `remove_dot_segments`, which also drops empty segments (`//a//` is `/a/`) and keeps
/// a final `/` only when a segment remains before it.
fn canonical_uri(path: &str) -> String {
    let mut segments: Vec<&str> = Vec::new();
    for segment in path.split('/') {
        match segment {
            "" | "." => {}
            ".." => {
                segments.pop();
            }
            _ => segments.push(segment),
        }
    }
    let mut normalized = String::with_capacity(path.len() + 1);
    // botocore gives `/` for an empty path, and keeps a path without a leading `/` as it is (a
    // request line always has one).
    if path.is_empty() || path.starts_with('/') {
        normalized.push('/');
    }
    normalized.push_str(&segments.join("/"));
    if path.ends_with('/') && !segments.is_empty() {
        normalized.push('/');
    }
    percent_encode(normalized.as_bytes(), UNRESERVED_AND_SLASH).to_string()
}

/// The query's parameters, each name and value percent-decoded then encoded again the one way
/// SigV4 allows, sorted by encoded name then value, as `name=value` joined by `&` (`name=` for a
/// parameter without value). `+` is a `+`, not a space (RFC 3986, not HTML forms). For a query
/// botocore wrote this gives what botocore signed, as it encodes exactly so.
fn canonical_query(query: &str) -> String {
    if query.is_empty() {
        return String::new();
    }
    let encode = |raw: &str| {
        let bytes: Vec<u8> = percent_decode_str(raw).collect();
        percent_encode(&bytes, UNRESERVED).to_string()
    };
    let mut pairs: Vec<(String, String)> = query
        .split('&')
        .map(|pair| {
            let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
            (encode(name), encode(value))
        })
        .collect();
    pairs.sort();
    pairs
        .iter()
        .map(|(name, value)| format!("{name}={value}"))
        .collect::<Vec<_>>()
        .join("&")
}

/// Every value of the header `name` (any case) in the order received, each trimmed with its runs
/// of whitespace made one space, joined by `,`.
fn canonical_header_value(req: &Request<'_>, name: &str) -> Result<String, SigV4Error> {
    let values: Vec<String> = req
        .headers
        .iter()
        .filter(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, value)| trim_all(value))
        .collect();
    if values.is_empty() {
        return Err(SigV4Error::MissingHeader(name.to_owned()));
    }
    Ok(values.join(","))
}

/// SigV4's Trimall: no whitespace at either end, one space for each run inside. Whitespace is
/// what Python's `str.split()` splits on, as botocore trims with it: Unicode whitespace and the
/// separators U+001C to U+001F; a folded value's line breaks are whitespace too.
fn trim_all(value: &str) -> String {
    value
        .split(|c: char| c.is_whitespace() || ('\u{1c}'..='\u{1f}').contains(&c))
        .filter(|word| !word.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use rstest::rstest;

    use super::*;

    #[rstest]
    #[case("", "/")]
    #[case("/", "/")]
    #[case("//", "/")]
    #[case("/./", "/")]
    #[case("/..", "/")]
    #[case("/../../a", "/a")]
    #[case("/example/..", "/")]
    #[case("/example1/example2/../..", "/")]
    #[case("/a/./b/../c/", "/a/c/")]
    #[case("/a/.", "/a")]
    #[case("//example//", "/example/")]
    #[case("/a..b/.c/", "/a..b/.c/")]
    #[case("/environments/my-env", "/environments/my-env")]
    #[case("/environments/my%20env", "/environments/my%2520env")]
    #[case("/environments/team%2Fa", "/environments/team%252Fa")]
    #[case("/example space/", "/example%20space/")]
    #[case("/\u{1234}", "/%E1%88%B4")]
    #[case("/-._~AZaz09", "/-._~AZaz09")]
    #[case(
        "/a:b@c+d=e;f,g!h*i'j(k)l$m&n",
        "/a%3Ab%40c%2Bd%3De%3Bf%2Cg%21h%2Ai%27j%28k%29l%24m%26n"
    )]
    fn canonical_uri_normalizes_then_encodes_again(#[case] path: &str, #[case] expected: &str) {
        assert_eq!(canonical_uri(path), expected);
    }

    #[rstest]
    #[case("", "")]
    #[case("a=1", "a=1")]
    #[case("b=2&a=1", "a=1&b=2")]
    #[case("Param2=value2&Param1=value1", "Param1=value1&Param2=value2")]
    #[case("a=2&a=10&a=1", "a=1&a=10&a=2")]
    #[case("B=1&a=1", "B=1&a=1")]
    #[case("a&b=", "a=&b=")]
    #[case("a=b=c", "a=b%3Dc")]
    #[case("NextToken=abc%2Bdef", "NextToken=abc%2Bdef")]
    #[case("NextToken=abc%2bdef", "NextToken=abc%2Bdef")]
    #[case("q=a+b", "q=a%2Bb")]
    #[case("q=a%20b", "q=a%20b")]
    #[case("\u{1234}=bar", "%E1%88%B4=bar")]
    #[case(
        "Param-3=Value3&Param=Value2&%E1%88%B4=Value1",
        "%E1%88%B4=Value1&Param=Value2&Param-3=Value3"
    )]
    #[case("-._~=-._~", "-._~=-._~")]
    #[case("a=%zz", "a=%25zz")]
    fn canonical_query_reencodes_and_sorts(#[case] query: &str, #[case] expected: &str) {
        assert_eq!(canonical_query(query), expected);
    }

    #[rstest]
    #[case("value1", "value1")]
    #[case("  value1  ", "value1")]
    #[case("\"a   b   c\"", "\"a b c\"")]
    #[case("value1\n  value2\n     value3", "value1 value2 value3")]
    #[case("a\t\tb", "a b")]
    #[case("a\u{1f}b", "a b")]
    #[case("   ", "")]
    fn trim_all_collapses_whitespace(#[case] value: &str, #[case] expected: &str) {
        assert_eq!(trim_all(value), expected);
    }

    #[test]
    fn header_values_are_matched_in_any_case_and_joined_in_order() {
        let headers = [
            ("Host", "example.amazonaws.com"),
            ("My-Header1", "value4"),
            ("my-header1", " value1 "),
            ("MY-HEADER1", "value3"),
        ];
        let req = Request {
            method: "GET",
            path: "/",
            query: "",
            headers: &headers,
            body: b"",
        };
        assert_eq!(
            canonical_header_value(&req, "my-header1").unwrap(),
            "value4,value1,value3"
        );
        assert_eq!(
            canonical_header_value(&req, "my-header2"),
            Err(SigV4Error::MissingHeader("my-header2".into()))
        );
    }
}
