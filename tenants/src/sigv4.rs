//! Verification of AWS Signature Version 4 (`Authorization: AWS4-HMAC-SHA256 …`) on requests to
//! Hangar's MWAA-compatible API (service `airflow`), so that the AWS CLI, boto3 and the other AWS
//! SDKs can call it with an access key. Pure: the caller parses the header, looks the secret up by
//! its access key id, and passes the clock.
//!
//! The canonical request is the one of every service but S3, as botocore's `SigV4Auth` builds it
//! (see [`canonical_request`]); the rules follow
//! <https://docs.aws.amazon.com/IAM/latest/UserGuide/create-signed-request.html>. Tested against
//! AWS's published test suite and against requests botocore signed (`sigv4_vectors/`, written by
//! `scripts/sigv4-vectors.py`).
//!
//! Deliberately not accepted, as no MWAA client sends them: presigned URLs (the signature in the
//! query), SigV4a, a `Date` header in place of `X-Amz-Date` (botocore uses `Date` only when the
//! caller set one itself), and unsigned or streaming payloads (see [`verify`]).

mod authorization;
mod canonical;
#[cfg(test)]
mod vector_tests;

use chrono::{DateTime, NaiveDateTime, TimeDelta, Utc};
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

pub use authorization::{parse_authorization, Authorization};

/// The only algorithm accepted: SigV4 with HMAC-SHA256.
pub const ALGORITHM: &str = "AWS4-HMAC-SHA256";

/// What the verifier needs of an HTTP request, exactly as received: a signature covers the bytes
/// the client sent, so nothing may be decoded or normalized before it is checked.
#[derive(Debug, Clone, Copy)]
pub struct Request<'a> {
    /// The method as received (`GET`, `PUT`, …).
    pub method: &'a str,
    /// The path as on the wire, still percent-encoded (`/environments/my%20env`): SigV4 encodes
    /// it once more.
    pub path: &'a str,
    /// The query string as on the wire, without the `?`; `""` when there is none.
    pub query: &'a str,
    /// Every header as received: names in any case, a repeated header once per value, in the
    /// order received. Must hold `host` (under HTTP/2, the request's authority).
    pub headers: &'a [(&'a str, &'a str)],
    /// The whole body.
    pub body: &'a [u8],
}

/// Why a request's signature was not accepted. The messages can be shown to the caller: none
/// holds the secret or the signature the server computed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SigV4Error {
    /// The `Authorization` header names another scheme (SigV2, SigV4a, Bearer, …).
    #[error("unsupported authorization scheme {0:?}: only AWS4-HMAC-SHA256 is accepted")]
    UnsupportedAlgorithm(String),
    /// The `Authorization` header is not of the form SigV4 defines; says what is wrong.
    #[error("malformed Authorization header: {0}")]
    Malformed(String),
    /// The credential scope names another service than this API's.
    #[error("credential should be scoped to service {expected:?}, not {got:?}")]
    WrongService { expected: String, got: String },
    /// A header SigV4 requires to be signed is not in `SignedHeaders`.
    #[error("header {0} must be signed (listed in SignedHeaders)")]
    HeaderNotSigned(&'static str),
    /// A header the signature covers (or `X-Amz-Date`) is not in the request.
    #[error("header {0} is signed but missing from the request")]
    MissingHeader(String),
    /// `X-Amz-Date` is not one basic ISO 8601 UTC time (`20150830T123600Z`).
    #[error("X-Amz-Date {0:?} is not a time of the form yyyymmddThhmmssZ")]
    InvalidDate(String),
    /// The day of the credential scope is not the day of `X-Amz-Date`.
    #[error("credential scope date {scope} does not match X-Amz-Date {request}")]
    ScopeDateMismatch { scope: String, request: String },
    /// `X-Amz-Date` is farther from the server's clock than allowed, in either direction:
    /// what AWS reports as "Signature expired" (a replay, or a client with a wrong clock).
    #[error(
        "signature expired or not yet valid: X-Amz-Date {request_time} is more than \
         {max_skew_secs} s away from the server's time {server_time}"
    )]
    Skewed {
        request_time: DateTime<Utc>,
        server_time: DateTime<Utc>,
        max_skew_secs: i64,
    },
    /// `X-Amz-Content-SHA256` says the payload is not signed.
    #[error("unsigned payloads are not accepted: sign the request body")]
    UnsignedPayload,
    /// `X-Amz-Content-SHA256` is not the SHA-256 of the body received.
    #[error("X-Amz-Content-SHA256 does not match the SHA-256 of the request body")]
    PayloadHashMismatch,
    /// The signature is not the one the secret gives for this request.
    #[error(
        "the request signature does not match the signature computed: check the secret access \
         key and the signing method"
    )]
    SignatureMismatch,
}

/// Verifies that `req` was signed as `auth` says, with `secret` (the secret of
/// `auth.access_key_id`), for `service`, at a time within `max_skew` of `now` (AWS allows 15
/// minutes).
///
/// Any region is accepted: it is part of the scope the signature covers, so the caller may
/// restrict it afterwards. `host` and `x-amz-date` must be signed, or a request could be replayed
/// to another host or at another time. The body must be signed: an `X-Amz-Content-SHA256` of
/// `UNSIGNED-PAYLOAD` (or a streaming variant) is refused, as the MWAA API is small JSON that
/// botocore always signs; any other value must be the body's SHA-256. The canonical request
/// always uses the hash of the body received, so a changed body never verifies.
pub fn verify(
    req: &Request<'_>,
    auth: &Authorization,
    secret: &str,
    service: &str,
    now: DateTime<Utc>,
    max_skew: TimeDelta,
) -> Result<(), SigV4Error> {
    if auth.service != service {
        return Err(SigV4Error::WrongService {
            expected: service.to_owned(),
            got: auth.service.clone(),
        });
    }
    for required in [canonical::HOST, canonical::X_AMZ_DATE] {
        if !auth.signed_headers.iter().any(|h| h == required) {
            return Err(SigV4Error::HeaderNotSigned(required));
        }
    }
    let amz_date = amz_date(req)?;
    let request_time = parse_amz_date(amz_date)?;
    if amz_date.get(..8) != Some(auth.date.as_str()) {
        return Err(SigV4Error::ScopeDateMismatch {
            scope: auth.date.clone(),
            request: amz_date.to_owned(),
        });
    }
    if (now - request_time).abs() > max_skew {
        return Err(SigV4Error::Skewed {
            request_time,
            server_time: now,
            max_skew_secs: max_skew.num_seconds(),
        });
    }
    let payload_hash = hex(&Sha256::digest(req.body));
    check_content_sha256(req, &payload_hash)?;
    let canonical = canonical::canonical_request(req, &auth.signed_headers, &payload_hash)?;
    let string_to_sign = string_to_sign(amz_date, auth, &canonical);
    let mut mac = mac(&signing_key(secret, auth)?)?;
    mac.update(string_to_sign.as_bytes());
    // `verify_slice` compares in constant time, so the time taken tells nothing of how much of
    // a forged signature was right.
    mac.verify_slice(&auth.signature)
        .map_err(|_| SigV4Error::SignatureMismatch)
}

/// The canonical request `req` is signed over under `auth`, the first thing to compare with the
/// client's (botocore logs its own at DEBUG) when a signature does not match. It holds nothing
/// secret.
pub fn canonical_request(req: &Request<'_>, auth: &Authorization) -> Result<String, SigV4Error> {
    let payload_hash = hex(&Sha256::digest(req.body));
    canonical::canonical_request(req, &auth.signed_headers, &payload_hash)
}

/// The one `X-Amz-Date` value: a repeated header would make the signed time ambiguous.
fn amz_date<'a>(req: &Request<'a>) -> Result<&'a str, SigV4Error> {
    let mut values = req
        .headers
        .iter()
        .filter(|(name, _)| name.eq_ignore_ascii_case(canonical::X_AMZ_DATE))
        .map(|(_, value)| *value);
    match (values.next(), values.next()) {
        (Some(value), None) => Ok(value),
        (Some(first), Some(second)) => Err(SigV4Error::InvalidDate(format!("{first},{second}"))),
        (None, _) => Err(SigV4Error::MissingHeader(canonical::X_AMZ_DATE.to_owned())),
    }
}

/// Parses the basic ISO 8601 form SigV4 uses, `yyyymmddThhmmssZ`, and no other.
fn parse_amz_date(value: &str) -> Result<DateTime<Utc>, SigV4Error> {
    let invalid = || SigV4Error::InvalidDate(value.to_owned());
    let shape_ok = value.len() == 16
        && value.bytes().enumerate().all(|(i, b)| match i {
            8 => b == b'T',
            15 => b == b'Z',
            _ => b.is_ascii_digit(),
        });
    if !shape_ok {
        return Err(invalid());
    }
    NaiveDateTime::parse_from_str(value, "%Y%m%dT%H%M%SZ")
        .map(|t| t.and_utc())
        .map_err(|_| invalid())
}

/// Refuses an unsigned payload and an `X-Amz-Content-SHA256` that is not the body's hash (in
/// lowercase hex, as SigV4 writes it and as it is signed).
fn check_content_sha256(req: &Request<'_>, payload_hash: &str) -> Result<(), SigV4Error> {
    for (_, value) in req
        .headers
        .iter()
        .filter(|(name, _)| name.eq_ignore_ascii_case(canonical::X_AMZ_CONTENT_SHA256))
    {
        let value = value.trim();
        if value == "UNSIGNED-PAYLOAD" || value.starts_with("STREAMING-") {
            return Err(SigV4Error::UnsignedPayload);
        }
        if value != payload_hash {
            return Err(SigV4Error::PayloadHashMismatch);
        }
    }
    Ok(())
}

/// `AWS4-HMAC-SHA256`, the time, the credential scope and the hash of the canonical request.
fn string_to_sign(amz_date: &str, auth: &Authorization, canonical_request: &str) -> String {
    format!(
        "{ALGORITHM}\n{amz_date}\n{}/{}/{}/aws4_request\n{}",
        auth.date,
        auth.region,
        auth.service,
        hex(&Sha256::digest(canonical_request.as_bytes()))
    )
}

/// The key of the day, region and service: HMAC chained from `AWS4` + secret.
fn signing_key(secret: &str, auth: &Authorization) -> Result<Vec<u8>, SigV4Error> {
    let mut key = format!("AWS4{secret}").into_bytes();
    for part in [
        auth.date.as_str(),
        auth.region.as_str(),
        auth.service.as_str(),
        "aws4_request",
    ] {
        let mut mac = mac(&key)?;
        mac.update(part.as_bytes());
        key = mac.finalize().into_bytes().to_vec();
    }
    Ok(key)
}

/// HMAC-SHA256 under `key`. HMAC takes a key of any length, so this cannot fail; were it to, the
/// request is refused rather than let through.
fn mac(key: &[u8]) -> Result<Hmac<Sha256>, SigV4Error> {
    Hmac::<Sha256>::new_from_slice(key).map_err(|_| SigV4Error::SignatureMismatch)
}

/// Lowercase hex, as SigV4 writes hashes.
fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push(char::from(DIGITS[usize::from(b >> 4)]));
        out.push(char::from(DIGITS[usize::from(b & 0xf)]));
    }
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use rstest::rstest;

    #[test]
    fn hex_is_lowercase_two_digits_per_byte() {
        assert_eq!(hex(&[0x00, 0x0f, 0xa5, 0xff]), "000fa5ff");
    }

    #[rstest]
    #[case("20150830T123600Z", Some("2015-08-30T12:36:00Z"))]
    #[case("20240229T235959Z", Some("2024-02-29T23:59:59Z"))]
    #[case("20230229T000000Z", None)]
    #[case("20150830T123600", None)]
    #[case("2015-08-30T12:36:00Z", None)]
    #[case("20150830t123600z", None)]
    #[case("+2015083T123600Z", None)]
    #[case("20150830T126000Z", None)]
    #[case("", None)]
    fn amz_date_parses_only_basic_iso8601(#[case] value: &str, #[case] expected: Option<&str>) {
        let parsed = parse_amz_date(value).ok();
        let expected = expected.map(|e| DateTime::parse_from_rfc3339(e).unwrap().to_utc());
        assert_eq!(parsed, expected);
    }

    #[test]
    fn signing_key_matches_aws_documented_example() {
        // The derived key of AWS's worked example ("Examples of how to derive a signing key"):
        // secret wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY, 20120215, us-east-1, iam.
        let auth = Authorization {
            access_key_id: "AKIDEXAMPLE".into(),
            date: "20120215".into(),
            region: "us-east-1".into(),
            service: "iam".into(),
            signed_headers: vec![],
            signature: [0; 32],
        };
        let key = signing_key("wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY", &auth).unwrap();
        assert_eq!(
            hex(&key),
            "f4780e2d9f65fa895f9c67b32ce1baf0b0d8a43505a000a1a9e090d414db404d"
        );
    }
}
