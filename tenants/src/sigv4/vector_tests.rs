//! [`verify`] against requests signed by others: AWS's SigV4 test suite and botocore's MWAA
//! client (`../sigv4_vectors/`, written by `scripts/sigv4-vectors.py`). Each must verify, give
//! the signer's canonical request, and stop verifying when any signed part changes.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use chrono::{DateTime, TimeDelta, Utc};
use rstest::rstest;
use serde::Deserialize;

use super::*;

#[derive(Debug, Clone, Copy)]
enum Source {
    AwsSuite,
    Botocore,
}

#[derive(Debug, Deserialize)]
struct Fixture {
    access_key_id: String,
    secret_access_key: String,
    region: String,
    service: String,
    vectors: Vec<Vector>,
}

#[derive(Debug, Clone, Deserialize)]
struct Vector {
    name: String,
    method: String,
    path: String,
    query: String,
    headers: Vec<(String, String)>,
    body: String,
    authorization: String,
    timestamp: String,
    canonical_request: String,
}

fn fixture(source: Source) -> Fixture {
    let json = match source {
        Source::AwsSuite => include_str!("../sigv4_vectors/aws-suite.json"),
        Source::Botocore => include_str!("../sigv4_vectors/botocore.json"),
    };
    serde_json::from_str(json).unwrap()
}

/// One verification to run: a vector's request as received, its parsed header and what the
/// server knows. The tests change one thing and verify again.
#[derive(Debug, Clone)]
struct Case {
    name: String,
    method: String,
    path: String,
    query: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
    auth: Authorization,
    secret: String,
    service: String,
    now: DateTime<Utc>,
}

impl Case {
    fn verify(&self) -> Result<(), SigV4Error> {
        let headers: Vec<(&str, &str)> = self
            .headers
            .iter()
            .map(|(n, v)| (n.as_str(), v.as_str()))
            .collect();
        let req = Request {
            method: &self.method,
            path: &self.path,
            query: &self.query,
            headers: &headers,
            body: &self.body,
        };
        verify(
            &req,
            &self.auth,
            &self.secret,
            &self.service,
            self.now,
            TimeDelta::minutes(15),
        )
    }

    fn canonical_request(&self) -> Result<String, SigV4Error> {
        let headers: Vec<(&str, &str)> = self
            .headers
            .iter()
            .map(|(n, v)| (n.as_str(), v.as_str()))
            .collect();
        let req = Request {
            method: &self.method,
            path: &self.path,
            query: &self.query,
            headers: &headers,
            body: &self.body,
        };
        canonical_request(&req, &self.auth)
    }

    fn has_header(&self, name: &str) -> bool {
        self.headers
            .iter()
            .any(|(n, _)| n.eq_ignore_ascii_case(name))
    }

    /// Every value of header `name` is replaced by `f` of it.
    fn edit_header(&mut self, name: &str, f: impl Fn(&str) -> String) {
        for (n, v) in &mut self.headers {
            if n.eq_ignore_ascii_case(name) {
                *v = f(v);
            }
        }
    }

    fn remove_header(&mut self, name: &str) {
        self.headers.retain(|(n, _)| !n.eq_ignore_ascii_case(name));
    }

    fn shift_time(&mut self, by: TimeDelta) {
        let shifted = parse_amz_date(self.amz_date()).unwrap() + by;
        let shifted = shifted.format("%Y%m%dT%H%M%SZ").to_string();
        self.edit_header(canonical::X_AMZ_DATE, |_| shifted.clone());
        self.now += by;
    }

    fn amz_date(&self) -> &str {
        let (_, v) = self
            .headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(canonical::X_AMZ_DATE))
            .unwrap();
        v
    }
}

/// Every vector of `source`, as received (the Authorization header among the headers).
fn cases(source: Source) -> Vec<(Case, String)> {
    let fixture = fixture(source);
    fixture
        .vectors
        .into_iter()
        .map(|v| {
            let auth = parse_authorization(&v.authorization).unwrap();
            assert_eq!(auth.access_key_id, fixture.access_key_id, "{}", v.name);
            assert_eq!(auth.region, fixture.region, "{}", v.name);
            let mut headers = v.headers;
            headers.push(("Authorization".into(), v.authorization));
            let case = Case {
                name: v.name,
                method: v.method,
                path: v.path,
                query: v.query,
                headers,
                body: v.body.into_bytes(),
                auth,
                secret: fixture.secret_access_key.clone(),
                service: fixture.service.clone(),
                now: parse_amz_date(&v.timestamp).unwrap(),
            };
            (case, v.canonical_request)
        })
        .collect()
}

fn all_cases(source: Source) -> Vec<Case> {
    cases(source).into_iter().map(|(case, _)| case).collect()
}

fn named(source: Source, name: &str) -> Case {
    all_cases(source)
        .into_iter()
        .find(|c| c.name == name)
        .expect("no vector of that name")
}

/// `s` with the lowest bit of its first ASCII letter or digit flipped: still one visible
/// character, so no trimming can hide the change.
fn flip_one_bit(s: &str) -> String {
    let at = s
        .find(|c: char| c.is_ascii_alphanumeric())
        .expect("a letter or digit to change");
    let mut bytes = s.as_bytes().to_vec();
    bytes[at] ^= 1;
    String::from_utf8(bytes).unwrap()
}

#[rstest]
fn the_fixtures_hold_the_vectors_relied_on(
    #[values(Source::AwsSuite, Source::Botocore)] source: Source,
) {
    let names: Vec<String> = all_cases(source).into_iter().map(|c| c.name).collect();
    let expected: &[&str] = match source {
        Source::AwsSuite => &[
            "get-vanilla",
            "get-vanilla-query-order-key-case",
            "get-vanilla-utf8-query",
            "get-header-value-trim",
            "get-header-key-duplicate",
            "get-space-normalized",
            "get-slashes-normalized",
            "get-relative-relative-normalized",
            "post-x-www-form-urlencoded",
            "post-vanilla-query",
        ],
        Source::Botocore => &[
            "create-environment-put-json",
            "update-environment-patch",
            "list-environments-query-port",
            "get-environment-space-unicode",
            "get-environment-slash",
        ],
    };
    for name in expected {
        assert!(names.iter().any(|n| n == name), "{name} missing: {names:?}");
    }
}

#[rstest]
fn canonical_request_is_the_signers(#[values(Source::AwsSuite, Source::Botocore)] source: Source) {
    for (case, expected) in cases(source) {
        assert_eq!(case.canonical_request().unwrap(), expected, "{}", case.name);
    }
}

#[rstest]
fn every_vector_verifies(#[values(Source::AwsSuite, Source::Botocore)] source: Source) {
    for case in all_cases(source) {
        assert_eq!(case.verify(), Ok(()), "{}", case.name);
    }
}

#[rstest]
fn a_signature_one_bit_off_is_refused(
    #[values(Source::AwsSuite, Source::Botocore)] source: Source,
) {
    for mut case in all_cases(source) {
        case.auth.signature[31] ^= 1;
        assert_eq!(
            case.verify(),
            Err(SigV4Error::SignatureMismatch),
            "{}",
            case.name
        );
    }
}

#[rstest]
fn a_secret_one_bit_off_is_refused(#[values(Source::AwsSuite, Source::Botocore)] source: Source) {
    for mut case in all_cases(source) {
        case.secret = flip_one_bit(&case.secret);
        assert_eq!(
            case.verify(),
            Err(SigV4Error::SignatureMismatch),
            "{}",
            case.name
        );
    }
}

#[rstest]
fn a_changed_body_is_refused(#[values(Source::AwsSuite, Source::Botocore)] source: Source) {
    for mut case in all_cases(source) {
        match case.body.first_mut() {
            Some(first) => *first ^= 1,
            None => case.body.push(b'{'),
        }
        // A body hash the client sent is checked first, and says what is wrong.
        let expected = if case.has_header(canonical::X_AMZ_CONTENT_SHA256) {
            SigV4Error::PayloadHashMismatch
        } else {
            SigV4Error::SignatureMismatch
        };
        assert_eq!(case.verify(), Err(expected), "{}", case.name);
    }
}

#[rstest]
fn every_signed_header_one_bit_off_is_refused(
    #[values(Source::AwsSuite, Source::Botocore)] source: Source,
) {
    for case in all_cases(source) {
        for name in &case.auth.signed_headers {
            if name == canonical::X_AMZ_DATE {
                continue; // a changed time: see a_time_one_second_off_is_refused
            }
            let mut tampered = case.clone();
            tampered.edit_header(name, flip_one_bit);
            let expected = if name == canonical::X_AMZ_CONTENT_SHA256 {
                SigV4Error::PayloadHashMismatch
            } else {
                SigV4Error::SignatureMismatch
            };
            assert_eq!(tampered.verify(), Err(expected), "{} {name}", case.name);
        }
    }
}

#[rstest]
fn a_time_one_second_off_is_refused(#[values(Source::AwsSuite, Source::Botocore)] source: Source) {
    for mut case in all_cases(source) {
        case.shift_time(TimeDelta::seconds(1));
        assert_eq!(
            case.verify(),
            Err(SigV4Error::SignatureMismatch),
            "{}",
            case.name
        );
    }
}

#[rstest]
fn a_time_on_another_day_than_the_scope_is_refused(
    #[values(Source::AwsSuite, Source::Botocore)] source: Source,
) {
    for mut case in all_cases(source) {
        case.shift_time(TimeDelta::days(1));
        assert!(
            matches!(case.verify(), Err(SigV4Error::ScopeDateMismatch { .. })),
            "{}",
            case.name
        );
    }
}

#[rstest]
fn a_changed_method_path_or_query_is_refused(
    #[values(Source::AwsSuite, Source::Botocore)] source: Source,
) {
    for case in all_cases(source) {
        let mut method = case.clone();
        method.method = if case.method == "GET" { "HEAD" } else { "GET" }.into();
        let mut path = case.clone();
        path.path = format!("{}/x", case.path.trim_end_matches('/'));
        let mut query = case.clone();
        query.query = if case.query.is_empty() {
            "a=1".into()
        } else {
            flip_one_bit(&case.query)
        };
        let mut region = case.clone();
        region.auth.region = "us-west-2".into();
        for (what, tampered) in [
            ("method", method),
            ("path", path),
            ("query", query),
            ("region", region),
        ] {
            assert_eq!(
                tampered.verify(),
                Err(SigV4Error::SignatureMismatch),
                "{} {what}",
                case.name
            );
        }
    }
}

#[rstest]
fn unsigned_headers_may_change(#[values(Source::AwsSuite, Source::Botocore)] source: Source) {
    for mut case in all_cases(source) {
        case.headers
            .push(("X-Forwarded-For".into(), "10.0.0.1".into()));
        case.edit_header("user-agent", |_| "something else".into());
        assert_eq!(case.verify(), Ok(()), "{}", case.name);
    }
}

#[rstest]
fn a_signed_header_missing_from_the_request_is_named(
    #[values(Source::AwsSuite, Source::Botocore)] source: Source,
) {
    for case in all_cases(source) {
        for name in &case.auth.signed_headers {
            let mut tampered = case.clone();
            tampered.remove_header(name);
            assert_eq!(
                tampered.verify(),
                Err(SigV4Error::MissingHeader(name.clone())),
                "{}",
                case.name
            );
        }
    }
}

#[rstest]
#[case::host("host")]
#[case::date("x-amz-date")]
fn host_and_date_must_be_signed(
    #[values(Source::AwsSuite, Source::Botocore)] source: Source,
    #[case] header: &'static str,
) {
    for mut case in all_cases(source) {
        case.auth.signed_headers.retain(|h| h != header);
        assert_eq!(
            case.verify(),
            Err(SigV4Error::HeaderNotSigned(header)),
            "{}",
            case.name
        );
    }
}

#[test]
fn another_service_is_refused_before_anything_else() {
    let mut case = named(Source::Botocore, "create-environment-put-json");
    case.service = "s3".into();
    assert_eq!(
        case.verify(),
        Err(SigV4Error::WrongService {
            expected: "s3".into(),
            got: "airflow".into()
        })
    );
}

#[rstest]
#[case::unsigned("UNSIGNED-PAYLOAD", SigV4Error::UnsignedPayload)]
#[case::streaming("STREAMING-AWS4-HMAC-SHA256-PAYLOAD", SigV4Error::UnsignedPayload)]
#[case::other_hash(
    "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
    SigV4Error::PayloadHashMismatch
)]
fn the_body_must_be_signed_with_its_hash(#[case] value: &str, #[case] expected: SigV4Error) {
    let mut case = named(Source::AwsSuite, "post-x-www-form-urlencoded");
    case.edit_header(canonical::X_AMZ_CONTENT_SHA256, |_| value.to_owned());
    assert_eq!(case.verify(), Err(expected));
}

#[rstest]
#[case::missing(None, SigV4Error::MissingHeader("x-amz-date".into()))]
#[case::extended_form(Some("2015-08-30T12:36:00Z"), SigV4Error::InvalidDate("2015-08-30T12:36:00Z".into()))]
#[case::http_date(
    Some("Sun, 30 Aug 2015 12:36:00 GMT"),
    SigV4Error::InvalidDate("Sun, 30 Aug 2015 12:36:00 GMT".into())
)]
fn x_amz_date_is_required_in_basic_form(#[case] value: Option<&str>, #[case] expected: SigV4Error) {
    let mut case = named(Source::AwsSuite, "get-vanilla");
    match value {
        Some(value) => case.edit_header(canonical::X_AMZ_DATE, |_| value.to_owned()),
        None => case.remove_header(canonical::X_AMZ_DATE),
    }
    assert_eq!(case.verify(), Err(expected));
}

#[test]
fn a_repeated_x_amz_date_is_refused() {
    let mut case = named(Source::AwsSuite, "get-vanilla");
    case.headers
        .push(("X-Amz-Date".into(), "20150830T123600Z".into()));
    assert_eq!(
        case.verify(),
        Err(SigV4Error::InvalidDate(
            "20150830T123600Z,20150830T123600Z".into()
        ))
    );
}

/// `now` is the signing time plus `offset_secs`: positive, the request is that old; negative,
/// it claims to be from the future.
#[rstest]
#[case::at_signing(0, true)]
#[case::fifteen_minutes_old(900, true)]
#[case::fifteen_minutes_ahead(-900, true)]
#[case::one_second_too_old(901, false)]
#[case::one_second_too_far_ahead(-901, false)]
#[case::a_day_old(86_400, false)]
#[case::a_day_ahead(-86_400, false)]
fn the_time_may_be_off_by_fifteen_minutes_either_way(
    #[values(
        (Source::AwsSuite, "get-vanilla"),
        (Source::Botocore, "update-environment-patch")
    )]
    vector: (Source, &str),
    #[case] offset_secs: i64,
    #[case] accepted: bool,
) {
    let mut case = named(vector.0, vector.1);
    let signed_at = case.now;
    case.now = signed_at + TimeDelta::seconds(offset_secs);
    let result = case.verify();
    if accepted {
        assert_eq!(result, Ok(()));
    } else {
        assert_eq!(
            result,
            Err(SigV4Error::Skewed {
                request_time: signed_at,
                server_time: case.now,
                max_skew_secs: 900,
            })
        );
    }
}

#[test]
fn skew_is_checked_before_the_signature() {
    // An old request is reported as expired whatever its signature, as AWS reports it.
    let mut case = named(Source::AwsSuite, "get-vanilla");
    case.auth.signature[0] ^= 1;
    case.now += TimeDelta::hours(1);
    assert!(matches!(case.verify(), Err(SigV4Error::Skewed { .. })));
}

#[test]
fn error_messages_name_the_problem_but_not_the_secret() {
    let case = named(Source::Botocore, "create-environment-put-json");
    let mut old = case.clone();
    old.now += TimeDelta::hours(1);
    let message = old.verify().unwrap_err().to_string();
    assert_eq!(
        message,
        "signature expired or not yet valid: X-Amz-Date 2025-03-14 09:26:53 UTC is more than \
         900 s away from the server's time 2025-03-14 10:26:53 UTC"
    );
    let mut forged = case.clone();
    forged.auth.signature[0] ^= 1;
    let message = forged.verify().unwrap_err().to_string();
    assert!(!message.contains(&case.secret), "{message}");
}
